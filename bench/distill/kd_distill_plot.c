/* kd_distill_plot.c — kd-distill-plot, the distillation experiment's figures (usage in
 * plot.h): the command line of both subcommands, and the "draw" subcommand itself; the
 * "curve" one is plot_curve.c. Exit status: 0 written, 1 bad input (message names the
 * file), 2 usage.
 *
 * Drawing: the image is read with the data path's decoder (worker/data/image_decode.h, BGR),
 * the ground truth with the COCO annotation reader and each detector's boxes with the COCO
 * results reader (proto/coco_json.h). The output is 1 + n_results panels side by side, 8
 * white pixels apart: the ground truth (crowd boxes dashed), then each results file's boxes
 * with score >= score_thr (only the max_dets best when max_dets > 0), drawn weakest first so
 * the strongest box is on top. Every panel is the image enlarged by an integer factor so that
 * it is at least 384 pixels high (nearest neighbour), boxes are 2 pixels wide in the enlarged
 * image, and a box's colour is its category's (the order of the GT file's categories).
 * Written with libpng's simplified API as 8-bit RGB.
 */
#include <errno.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plot.h"
#include "proto/coco_json.h"
#include "worker/data/image_decode.h"

enum { PANEL_GAP = 8, MIN_PANEL_H = 384, LINE_PX = 2 };

static const uint8_t colours[][3] = {{230, 25, 75},  {60, 180, 75},  {255, 225, 25}, {0, 130, 200},
                                     {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230},
                                     {210, 245, 60}, {250, 190, 212}, {0, 128, 128}, {170, 110, 40}};

typedef struct canvas {
    int w, h;
    uint8_t *rgb; /* [h][w][3] */
} canvas;

static void put(canvas *c, int x, int y, const uint8_t rgb[3])
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    memcpy(&c->rgb[((size_t)y * (size_t)c->w + (size_t)x) * 3], rgb, 3);
}

/* Box [x, y, w, h] in image pixels, panel origin ox, scale s; dashed for crowd boxes. */
static void draw_box(canvas *c, int ox, int s, const double b[4], const uint8_t rgb[3], int dashed)
{
    int x0 = ox + (int)(b[0] * s), y0 = (int)(b[1] * s);
    int x1 = ox + (int)((b[0] + b[2]) * s), y1 = (int)((b[1] + b[3]) * s);
    for (int t = 0; t < LINE_PX; t++) {
        for (int x = x0; x <= x1; x++) {
            if (dashed && (x / 6) % 2) continue;
            put(c, x, y0 + t, rgb), put(c, x, y1 - t, rgb);
        }
        for (int y = y0; y <= y1; y++) {
            if (dashed && (y / 6) % 2) continue;
            put(c, x0 + t, y, rgb), put(c, x1 - t, y, rgb);
        }
    }
}

static void blit(canvas *c, int ox, int s, const kd_image *im)
{
    for (int y = 0; y < im->h * s; y++)
        for (int x = 0; x < im->w * s; x++) {
            const uint8_t *bgr = &im->bgr[((size_t)(y / s) * (size_t)im->w + (size_t)(x / s)) * 3];
            const uint8_t rgb[3] = {bgr[2], bgr[1], bgr[0]};
            put(c, ox + x, y, rgb);
        }
}

static const uint8_t *cat_colour(const kd_coco_file *gt, int32_t cat)
{
    for (size_t i = 0; i < gt->n_cats; i++)
        if (gt->cats[i].id == cat) return colours[i % (sizeof colours / sizeof colours[0])];
    return colours[0];
}

static int det_score_cmp(const void *a, const void *b)
{
    const kd_coco_det *p = a, *q = b;
    return (p->score < q->score) - (p->score > q->score);
}

/* One results file's boxes of the image, weakest first (so the strongest is drawn last). */
static kd_status draw_results(canvas *c, int ox, int s, const kd_coco_file *gt, const char *path,
                              const kd_plot_draw_cfg *cfg, kd_err *err)
{
    kd_coco_det *d = NULL;
    size_t n = 0;
    if (kd_coco_results_load(path, &d, &n, err)) return err->code;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (d[i].image_id == cfg->image_id && d[i].score >= cfg->score_thr) d[m++] = d[i];
    qsort(d, m, sizeof *d, det_score_cmp);
    if (cfg->max_dets > 0 && m > (size_t)cfg->max_dets) m = (size_t)cfg->max_dets;
    for (size_t i = m; i-- > 0;) draw_box(c, ox, s, d[i].bbox, cat_colour(gt, d[i].category_id), 0);
    free(d);
    return KD_OK;
}

static kd_status png_write(const char *path, const canvas *c, kd_err *err)
{
    png_image p;
    memset(&p, 0, sizeof p);
    p.version = PNG_IMAGE_VERSION;
    p.width = (png_uint_32)c->w, p.height = (png_uint_32)c->h, p.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&p, path, 0, c->rgb, 0, NULL))
        return kd_errf(err, KD_EIO, "%s: cannot write PNG (%s)", path, p.message);
    return KD_OK;
}

static kd_status image_of(const kd_coco_file *gt, const kd_plot_draw_cfg *cfg, kd_image *im, kd_err *err)
{
    for (size_t i = 0; i < gt->n_images; i++) {
        if (gt->images[i].id != cfg->image_id) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", cfg->images_dir, kd_coco_str(gt, gt->images[i].file_name_off));
        kd_image_decoder d;
        if (kd_image_decoder_init(&d, err)) return err->code;
        kd_status st = kd_image_read(&d, path, im, err);
        kd_image_decoder_free(&d);
        return st;
    }
    return kd_errf(err, KD_ENOTFOUND, "%s: no image with id %lld", cfg->gt_path, cfg->image_id);
}

kd_status kd_plot_draw_run(const kd_plot_draw_cfg *cfg, kd_err *err)
{
    kd_coco_file gt;
    memset(&gt, 0, sizeof gt);
    if (kd_coco_file_load(cfg->gt_path, &gt, err)) return err->code;
    kd_image im;
    memset(&im, 0, sizeof im);
    kd_status st = image_of(&gt, cfg, &im, err);
    canvas c = {0, 0, NULL};
    if (!st) {
        int s = (MIN_PANEL_H + im.h - 1) / im.h;
        int panels = 1 + cfg->n_results, pw = im.w * s;
        c.w = panels * pw + (panels - 1) * PANEL_GAP, c.h = im.h * s;
        c.rgb = kd_xmalloc((size_t)c.w * (size_t)c.h * 3);
        memset(c.rgb, 255, (size_t)c.w * (size_t)c.h * 3);
        for (int p = 0; p < panels; p++) blit(&c, p * (pw + PANEL_GAP), s, &im);
        for (size_t i = 0; i < gt.n_anns; i++)
            if (gt.anns[i].image_id == cfg->image_id)
                draw_box(&c, 0, s, gt.anns[i].bbox, cat_colour(&gt, gt.anns[i].category_id), gt.anns[i].iscrowd);
        for (int r = 0; !st && r < cfg->n_results; r++)
            st = draw_results(&c, (r + 1) * (pw + PANEL_GAP), s, &gt, cfg->results[r], cfg, err);
        if (!st) st = png_write(cfg->out_path, &c, err);
    }
    free(c.rgb);
    kd_image_free(&im);
    kd_coco_file_free(&gt);
    return st;
}

/* ---- command line ---------------------------------------------------------------------- */

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
