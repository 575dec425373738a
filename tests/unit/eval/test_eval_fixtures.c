/* test_eval_fixtures.c — the evaluator against pycocotools, on the committed fixtures.
 *
 * tests/fixtures/eval/expected.txt (made by make_fixtures.py with pycocotools) holds, as
 * float hex: numpy's threshold vectors, np.mean of fixed vectors, and per case the 12
 * stats, the per-category APs and the 12 printed summary lines. Every case's GT and
 * results files are loaded with proto/coco_json and evaluated; numbers must be equal bit
 * for bit (tolerance 0), printed lines byte for byte. Argument: the fixture directory.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_test.h"
#include "worker/eval/eval.h"

static const char *g_dir;
static char *g_text;       /* expected.txt, whole */
static int g_cases, g_numbers, g_lines;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s) s[n] = '\0';
    fclose(f);
    return s;
}

/* bitwise equality (also tells -0.0 from 0.0, which no result should produce) */
static int same_bits(double a, double b)
{
    uint64_t x, y;
    memcpy(&x, &a, 8);
    memcpy(&y, &b, 8);
    return x == y;
}

/* next line of the expected file; returns NULL at the end */
static char *next_line(char **cur)
{
    if (!*cur || !**cur) return NULL;
    char *s = *cur, *nl = strchr(s, '\n');
    if (nl) {
        *nl = '\0';
        *cur = nl + 1;
    } else *cur = s + strlen(s);
    return s;
}

static void test_thresholds(void)
{
    double iou[KD_EVAL_T], rec[KD_EVAL_R];
    kd_eval_iou_thresholds(iou);
    kd_eval_recall_thresholds(rec);
    char *copy = strdup(g_text), *cur = copy, *ln;
    int seen = 0;
    while ((ln = next_line(&cur))) {
        int is_iou = !strncmp(ln, "iou_thrs ", 9), is_rec = !strncmp(ln, "rec_thrs ", 9);
        if (!is_iou && !is_rec) continue;
        char *p = ln + 9, *end;
        int n = is_iou ? KD_EVAL_T : KD_EVAL_R;
        for (int i = 0; i < n; i++) {
            double v = strtod(p, &end);
            KD_REQUIRE(end != p);
            p = end;
            double got = is_iou ? iou[i] : rec[i];
            KD_EXPECT_MSG(same_bits(got, v), "%s[%d]: %a vs numpy %a", is_iou ? "iouThrs" : "recThrs",
                          i, got, v);
        }
        seen++;
    }
    KD_EXPECT(seen == 2);
    free(copy);
}

static void test_pairwise_mean(void)
{
    char *copy = strdup(g_text), *cur = copy, *ln;
    int seen = 0;
    while ((ln = next_line(&cur))) {
        if (strncmp(ln, "mean ", 5)) continue;
        char *end;
        size_t n = strtoul(ln + 5, &end, 10);
        double want = strtod(end, NULL);
        double *x = malloc(n * sizeof *x);
        KD_REQUIRE(x);
        for (size_t i = 0; i < n; i++) x[i] = (double)((i * 7919) % 1013) / 1013.0;
        double got = kd_eval_mean_pairwise(x, n);
        KD_EXPECT_MSG(same_bits(got, want), "mean of %zu: %a vs numpy %a", n, got, want);
        free(x);
        seen++;
    }
    KD_EXPECT(seen >= 10);
    free(copy);
}

/* Evaluate one case and compare with the block that follows its 'case' line. */
static void check_case(const char *name, char **cur)
{
    char gt_path[1024], dt_path[1024];
    snprintf(gt_path, sizeof gt_path, "%s/%s.gt.json", g_dir, name);
    snprintf(dt_path, sizeof dt_path, "%s/%s.dt.json", g_dir, name);
    kd_err err = {0};
    kd_coco_file gt;
    kd_coco_det *dets = NULL;
    size_t n = 0;
    kd_status st = kd_coco_file_load(gt_path, &gt, &err);
    KD_EXPECT_MSG(st == KD_OK, "%s: %s", name, err.msg);
    if (st != KD_OK) return;
    st = kd_coco_results_load(dt_path, &dets, &n, &err);
    KD_EXPECT_MSG(st == KD_OK, "%s: %s", name, err.msg);
    kd_eval_result r;
    if (st == KD_OK) st = kd_eval_coco_run(&gt, dets, n, &r, &err);
    KD_EXPECT_MSG(st == KD_OK, "%s: %s", name, err.msg);
    if (st != KD_OK) {
        kd_coco_file_free(&gt);
        free(dets);
        return;
    }
    char *printed = NULL;
    size_t printed_len = 0;
    FILE *mem = open_memstream(&printed, &printed_len);
    kd_eval_summary_print(mem, &r);
    fclose(mem);
    const char *pcur = printed;

    char *ln;
    size_t n_cat_lines = 0;
    while ((ln = next_line(cur)) && strcmp(ln, "end")) {
        if (!strncmp(ln, "stats ", 6)) {
            char *p = ln + 6, *end;
            for (int s = 0; s < KD_EVAL_N_STATS; s++) {
                double v = strtod(p, &end);
                p = end;
                KD_EXPECT_MSG(same_bits(r.stats[s], v), "%s: stats[%d] = %.17g (%a), pycocotools %.17g (%a)",
                              name, s, r.stats[s], r.stats[s], v, v);
                g_numbers++;
            }
        } else if (!strncmp(ln, "cat ", 4)) {
            char *end;
            long id = strtol(ln + 4, &end, 10);
            double v = strtod(end, NULL);
            size_t k = 0;
            while (k < r.n_cats && r.cat_ids[k] != id) k++;
            KD_EXPECT_MSG(k < r.n_cats, "%s: category %ld missing", name, id);
            if (k < r.n_cats)
                KD_EXPECT_MSG(same_bits(r.cat_ap[k], v), "%s: AP of category %ld = %.17g, pycocotools %.17g",
                              name, id, r.cat_ap[k], v);
            n_cat_lines++;
            g_numbers++;
        } else if (!strncmp(ln, "print ", 6)) {
            const char *want = ln + 6;
            const char *nl = strchr(pcur, '\n');
            size_t len = nl ? (size_t)(nl - pcur) : strlen(pcur);
            KD_EXPECT_MSG(len == strlen(want) && !strncmp(pcur, want, len),
                          "%s: printed '%.*s', pycocotools '%s'", name, (int)len, pcur, want);
            pcur = nl ? nl + 1 : pcur + len;
            g_lines++;
        }
    }
    KD_EXPECT_MSG(n_cat_lines == r.n_cats, "%s: %zu categories, expected %zu", name, r.n_cats, n_cat_lines);
    KD_EXPECT_MSG(*pcur == '\0', "%s: extra printed output '%s'", name, pcur);
    free(printed);
    kd_eval_result_free(&r);
    kd_coco_file_free(&gt);
    free(dets);
    g_cases++;
}

static void test_cases(void)
{
    char *copy = strdup(g_text), *cur = copy, *ln;
    while ((ln = next_line(&cur)))
        if (!strncmp(ln, "case ", 5)) check_case(ln + 5, &cur);
    KD_EXPECT_MSG(g_cases >= 20, "only %d cases", g_cases);
    fprintf(stderr, "%d cases, %d numbers and %d printed lines compared with pycocotools\n", g_cases,
            g_numbers, g_lines);
    free(copy);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    char path[1024];
    snprintf(path, sizeof path, "%s/expected.txt", g_dir);
    g_text = slurp(path);
    if (!g_text) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    KD_TEST_RUN(test_thresholds);
    KD_TEST_RUN(test_pairwise_mean);
    KD_TEST_RUN(test_cases);
    free(g_text);
    return kd_test_summary();
}
