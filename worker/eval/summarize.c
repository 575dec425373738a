/* summarize.c — pycocotools' COCOeval.summarize() for bbox: the 12 numbers, the
 * per-category AP, and their printed forms.
 *
 * Each number is np.mean(s[s > -1]) over a slice of precision [T][R][K][A][M] or recall
 * [T][K][A][M], taken in C order (t, then r, then k), or -1 when nothing is > -1. numpy's
 * mean is the pairwise sum of np.add.reduce divided by the count; the sum is reproduced
 * here (blocks of up to 128 summed with 8 accumulators, larger arrays split in halves
 * rounded to a multiple of 8), which makes the stats bit-identical, not just close.
 * Rows (summarize order): AP .50:.95 / .50 / .75 at area all; AP small, medium, large;
 * AR at maxDets 1, 10, 100; AR small, medium, large — all AP and area rows at maxDets 100.
 * Print format: ' {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}'.
 */
#include "worker/eval/eval_internal.h"

#include <stdlib.h>

static double pairwise(const double *x, size_t n)
{
    if (n < 8) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += x[i];
        return s;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = x[j];
        size_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += x[i + j];
        double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) s += x[i];
        return s;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise(x, n2) + pairwise(x + n2, n - n2);
}

double kd_eval_sum_pairwise(const double *x, size_t n)
{
    return 0.0 + pairwise(x, n);
}

double kd_eval_mean_pairwise(const double *x, size_t n)
{
    if (n == 0) return -1.0;
    return kd_eval_sum_pairwise(x, n) / (double)n;
}

typedef struct stat_row {
    int ap;          /* 1: precision, 0: recall */
    int t;           /* IoU threshold index, -1 = all ten */
    int a;           /* area index */
    int m;           /* maxDets index */
} stat_row;

static const stat_row rows[KD_EVAL_N_STATS] = {
    {1, -1, 0, 2}, {1, 0, 0, 2}, {1, 5, 0, 2}, {1, -1, 1, 2}, {1, -1, 2, 2}, {1, -1, 3, 2},
    {0, -1, 0, 0}, {0, -1, 0, 1}, {0, -1, 0, 2}, {0, -1, 1, 2}, {0, -1, 2, 2}, {0, -1, 3, 2},
};
static const char *const area_lbl[KD_EVAL_A] = {"all", "small", "medium", "large"};

/* Mean of the entries > -1 of one summary slice; buf holds T*R*K doubles. */
static double slice_mean(const kd_eval_result *r, const stat_row *row, double *buf)
{
    const size_t K = r->n_cats;
    int t0 = row->t < 0 ? 0 : row->t, t1 = row->t < 0 ? KD_EVAL_T : row->t + 1;
    size_t n = 0;
    for (int t = t0; t < t1; t++) {
        if (row->ap) {
            for (int q = 0; q < KD_EVAL_R; q++)
                for (size_t k = 0; k < K; k++) {
                    double v = r->precision[(((t * KD_EVAL_R + q) * K + k) * KD_EVAL_A + row->a) *
                                                KD_EVAL_M + row->m];
                    if (v > -1) buf[n++] = v;
                }
        } else {
            for (size_t k = 0; k < K; k++) {
                double v = r->recall[((t * K + k) * KD_EVAL_A + row->a) * KD_EVAL_M + row->m];
                if (v > -1) buf[n++] = v;
            }
        }
    }
    return kd_eval_mean_pairwise(buf, n);
}

void kd_eval_result_summarize(kd_eval_result *r)
{
    const size_t K = r->n_cats;
    size_t cap = (size_t)KD_EVAL_T * KD_EVAL_R * (K ? K : 1);
    double *buf = kd_xmalloc(cap * sizeof *buf);
    for (int s = 0; s < KD_EVAL_N_STATS; s++) r->stats[s] = slice_mean(r, &rows[s], buf);
    /* per category: precision[:, :, k, 0, -1] (area all, maxDets 100), entries > -1 */
    r->cat_ap = kd_xmalloc((K ? K : 1) * sizeof *r->cat_ap);
    for (size_t k = 0; k < K; k++) {
        size_t n = 0;
        for (int t = 0; t < KD_EVAL_T; t++)
            for (int q = 0; q < KD_EVAL_R; q++) {
                double v = r->precision[(((t * KD_EVAL_R + q) * K + k) * KD_EVAL_A + 0) *
                                            KD_EVAL_M + (KD_EVAL_M - 1)];
                if (v > -1) buf[n++] = v;
            }
        r->cat_ap[k] = kd_eval_mean_pairwise(buf, n);
    }
    free(buf);
}

void kd_eval_summary_print(FILE *f, const kd_eval_result *r)
{
    double iou[KD_EVAL_T];
    kd_eval_iou_thresholds(iou);
    for (int s = 0; s < KD_EVAL_N_STATS; s++) {
        const stat_row *row = &rows[s];
        char iou_str[32];
        if (row->t < 0) snprintf(iou_str, sizeof iou_str, "%0.2f:%0.2f", iou[0], iou[KD_EVAL_T - 1]);
        else snprintf(iou_str, sizeof iou_str, "%0.2f", iou[row->t]);
        fprintf(f, " %-18s %s @[ IoU=%-9s | area=%6s | maxDets=%3d ] = %0.3f\n",
                row->ap ? "Average Precision" : "Average Recall", row->ap ? "(AP)" : "(AR)",
                iou_str, area_lbl[row->a], kd_eval_max_dets[row->m], r->stats[s]);
    }
}

void kd_eval_json_print(FILE *f, const kd_eval_result *r)
{
    fputs("{\"stats\": [", f);
    for (int s = 0; s < KD_EVAL_N_STATS; s++)
        fprintf(f, "%s%.17g", s ? ", " : "", r->stats[s]);
    fputs("], \"per_category\": {", f);
    for (size_t k = 0; k < r->n_cats; k++)
        fprintf(f, "%s\"%d\": %.17g", k ? ", " : "", (int)r->cat_ids[k], r->cat_ap[k]);
    fputs("}}\n", f);
}
