/* kd_distill_plot.c — main of kd-distill-plot, the distillation experiment's figures
 * (usage in plot.h): parses the command line of the two subcommands and calls plot_curve.c
 * or plot_draw.c. Exit status: 0 written, 1 bad input (message names the file), 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plot.h"

static void usage(FILE *f)
{
    fputs("usage: kd-distill-plot curve --out F.svg --key K[+K2...] [--scale S] [--title T] LABEL=FILE[,FILE...] ...\n"
          "       kd-distill-plot draw --gt GT.json --images DIR --image-id ID --out F.png [--score-thr T] [--max-dets N]\n"
          "                            RESULTS.json ...\n"
          "curve: a logged scalar (scalars.jsonl) against the iteration, one line per LABEL (mean of its files).\n"
          "draw:  the ground truth and each results file's detections on one image, side by side.\n",
          f);
}

static int parse_double(const char *opt, const char *s, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    if (!*s || *end || errno) {
        fprintf(stderr, "kd-distill-plot: %s: '%s' is not a number\n", opt, s);
        return -1;
    }
    return 0;
}

/* One LABEL=FILE[,FILE...] argument: the mean series of its files. */
static kd_status load_spec(const char *spec, const char *key, double scale, kd_plot_series *out, kd_err *err)
{
    const char *eq = strrchr(spec, '=');
    if (!eq || eq == spec || !eq[1]) return kd_errf(err, KD_EINVAL, "'%s': expected LABEL=FILE[,FILE...]", spec);
    char label[128], files[4096];
    snprintf(label, sizeof label, "%.*s", (int)(eq - spec), spec);
    snprintf(files, sizeof files, "%s", eq + 1);
    kd_plot_series parts[16];
    size_t n = 0;
    kd_status st = KD_OK;
    for (char *save = NULL, *f = strtok_r(files, ",", &save); f && !st; f = strtok_r(NULL, ",", &save)) {
        if (n == sizeof parts / sizeof parts[0]) st = kd_errf(err, KD_EINVAL, "'%s': more than 16 files", spec);
        else if (!(st = kd_plot_series_load(f, key, scale, &parts[n], err))) n++;
    }
    if (!st) kd_plot_series_mean(parts, n, label, out);
    for (size_t i = 0; i < n; i++) kd_plot_series_free(&parts[i]);
    return st;
}

static int main_curve(int argc, char **argv)
{
    const char *out = NULL, *key = NULL, *title = "";
    double scale = 1;
    kd_plot_series *s = calloc((size_t)argc, sizeof *s);
    size_t n = 0;
    kd_err err = {0};
    int rc = 0;
    for (int i = 0; i < argc && !rc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--out") && has) out = argv[++i];
        else if (!strcmp(a, "--key") && has) key = argv[++i];
        else if (!strcmp(a, "--title") && has) title = argv[++i];
        else if (!strcmp(a, "--scale") && has) rc = parse_double(a, argv[++i], &scale) ? 2 : 0;
        else if (a[0] == '-') {
            fprintf(stderr, "kd-distill-plot curve: unknown or incomplete option '%s'\n", a);
            rc = 2;
        } else if (!key) {
            fprintf(stderr, "kd-distill-plot curve: --key must come before the series\n");
            rc = 2;
        } else if (load_spec(a, key, scale, &s[n], &err)) rc = 1;
        else n++;
    }
    if (!rc && (!out || !key || n == 0)) {
        usage(stderr);
        rc = 2;
    }
    if (!rc && kd_plot_svg_write(out, title, key, s, n, &err)) rc = 1;
    if (rc == 1) fprintf(stderr, "kd-distill-plot: %s\n", err.msg);
    for (size_t i = 0; i < n; i++) kd_plot_series_free(&s[i]);
    free(s);
    return rc;
}

static int main_draw(int argc, char **argv)
{
    kd_plot_draw_cfg c = {.score_thr = 0.3, .image_id = -1};
    c.results = calloc((size_t)argc + 1, sizeof *c.results);
    int rc = 0;
    for (int i = 0; i < argc && !rc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        double v;
        if (!strcmp(a, "--gt") && has) c.gt_path = argv[++i];
        else if (!strcmp(a, "--images") && has) c.images_dir = argv[++i];
        else if (!strcmp(a, "--out") && has) c.out_path = argv[++i];
        else if (!strcmp(a, "--image-id") && has) {
            rc = parse_double(a, argv[++i], &v) ? 2 : 0;
            c.image_id = (long long)v;
        } else if (!strcmp(a, "--score-thr") && has) rc = parse_double(a, argv[++i], &c.score_thr) ? 2 : 0;
        else if (!strcmp(a, "--max-dets") && has) {
            rc = parse_double(a, argv[++i], &v) || v < 0 ? 2 : 0;
            c.max_dets = (int)v;
        }
        else if (a[0] == '-') {
            fprintf(stderr, "kd-distill-plot draw: unknown or incomplete option '%s'\n", a);
            rc = 2;
        } else c.results[c.n_results++] = a;
    }
    if (!rc && (!c.gt_path || !c.images_dir || !c.out_path || c.image_id < 0)) {
        usage(stderr);
        rc = 2;
    }
    kd_err err = {0};
    if (!rc && kd_plot_draw_run(&c, &err)) {
        fprintf(stderr, "kd-distill-plot: %s\n", err.msg);
        rc = 1;
    }
    free(c.results);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "curve")) return main_curve(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "draw")) return main_draw(argc - 2, argv + 2);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
