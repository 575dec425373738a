/* accumulate.c — pycocotools' COCOeval.accumulate() for the default bbox parameters, and
 * the threshold vectors of Params.setDetParams built the way numpy builds them.
 *
 * For each category k the evaluated detections of all images (image-id order, then rank
 * within the image) are stable-sorted once by descending score: numpy's
 * argsort(-scores, kind='mergesort') with ties in concatenation order. The list for
 * maxDets 1 or 10 is the subsequence of rank < maxDet, and a stable sort of a subsequence
 * is the subsequence of the stable sort, so one sort per category serves every (a, m).
 * Then, for each area range a, maxDets m and threshold t, over that list:
 *   tp_j, fp_j   cumulative counts (exact small integers, as numpy's cumsum cast to float)
 *   rc_j = tp_j / npig,   pr_j = tp_j / (fp_j + tp_j + 2^-52)      (np.spacing(1))
 *   envelope     pr_{j-1} = max(pr_{j-1}, pr_j) from the end
 *   precision[t, r, k, a, m] = pr_{j(r)},  j(r) = first j with rc_j >= recThrs[r]
 *                (searchsorted side='left'); 0 once j(r) runs past the end
 *   recall[t, k, a, m] = rc_last (0 with no detection)
 * Cells with npig == 0 stay -1. Work per category: one O(n log n) sort, then 120 linear
 * passes; scratch arrays are sized once for the largest category.
 */
#include "worker/eval/eval_internal.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

void kd_eval_linspace(double start, double stop, int num, double *out)
{
    const double div = (double)(num - 1);
    const double delta = stop - start;
    const double step = delta / div;
    for (int i = 0; i < num; i++) {
        if (step == 0) out[i] = ((double)i / div) * delta + start;
        else out[i] = (double)i * step + start;
    }
    out[num - 1] = stop;
}

void kd_eval_iou_thresholds(double out[KD_EVAL_T])
{
    kd_eval_linspace(0.5, 0.95, KD_EVAL_T, out);
}

void kd_eval_recall_thresholds(double out[KD_EVAL_R])
{
    kd_eval_linspace(0.0, 1.0, KD_EVAL_R, out);
}

/* Stable sort of idx[0..n) by descending score (bottom-up merge sort). */
static void sort_by_score_desc(uint32_t *idx, uint32_t *tmp, size_t n, const double *score)
{
    uint32_t *src = idx, *dst = tmp;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t p = lo, q = mid, o = lo;
            while (p < mid && q < hi) {
                /* take from the right run only when strictly greater: ties keep order */
                if (score[src[q]] > score[src[p]]) dst[o++] = src[q++];
                else dst[o++] = src[p++];
            }
            while (p < mid) dst[o++] = src[p++];
            while (q < hi) dst[o++] = src[q++];
        }
        uint32_t *sw = src;
        src = dst;
        dst = sw;
    }
    if (src != idx) memcpy(idx, src, n * sizeof *idx);
}

static inline size_t prec_at(size_t K, size_t t, size_t r, size_t k, size_t a, size_t m)
{
    return (((t * KD_EVAL_R + r) * K + k) * KD_EVAL_A + a) * KD_EVAL_M + m;
}

static inline size_t rec_at(size_t K, size_t t, size_t k, size_t a, size_t m)
{
    return ((t * K + k) * KD_EVAL_A + a) * KD_EVAL_M + m;
}

void kd_eval_ctx_accumulate(const kd_eval_ctx *c, kd_eval_result *r)
{
    const size_t K = c->K;
    const size_t n_prec = (size_t)KD_EVAL_T * KD_EVAL_R * K * KD_EVAL_A * KD_EVAL_M;
    const size_t n_rec = (size_t)KD_EVAL_T * K * KD_EVAL_A * KD_EVAL_M;
    r->precision = kd_xmalloc((n_prec ? n_prec : 1) * sizeof *r->precision);
    r->recall = kd_xmalloc((n_rec ? n_rec : 1) * sizeof *r->recall);
    for (size_t q = 0; q < n_prec; q++) r->precision[q] = -1.0;
    for (size_t q = 0; q < n_rec; q++) r->recall[q] = -1.0;

    double rec_thr[KD_EVAL_R];
    kd_eval_recall_thresholds(rec_thr);
    const double eps = DBL_EPSILON; /* np.spacing(1) = 2^-52 */

    size_t max_n = 1;
    for (size_t k = 0; k < K; k++) {
        size_t n = c->bucket_off[k + 1] - c->bucket_off[k];
        if (n > max_n) max_n = n;
    }
    uint32_t *idx = kd_xmalloc(max_n * sizeof *idx);
    uint32_t *tmp = kd_xmalloc(max_n * sizeof *tmp);
    uint32_t *list = kd_xmalloc(max_n * sizeof *list);
    uint32_t *tpc = kd_xmalloc(max_n * sizeof *tpc);
    double *pr = kd_xmalloc(max_n * sizeof *pr);

    for (size_t k = 0; k < K; k++) {
        const size_t base = c->bucket_off[k], n = c->bucket_off[k + 1] - base;
        int any_valid = 0;
        for (int a = 0; a < KD_EVAL_A; a++) any_valid |= c->npig[k * KD_EVAL_A + a] > 0;
        if (!any_valid) continue;
        const double *score = c->b_score + base;
        const uint64_t *tpb = c->b_tp + base, *igb = c->b_ig + base;
        const uint8_t *rank = c->b_rank + base;
        for (size_t j = 0; j < n; j++) idx[j] = (uint32_t)j;
        sort_by_score_desc(idx, tmp, n, score);

        for (int m = 0; m < KD_EVAL_M; m++) {
            size_t nd = 0;
            for (size_t j = 0; j < n; j++)
                if (rank[idx[j]] < kd_eval_max_dets[m]) list[nd++] = idx[j];
            for (int a = 0; a < KD_EVAL_A; a++) {
                const size_t npig = c->npig[k * KD_EVAL_A + a];
                if (npig == 0) continue;
                const double dn = (double)npig;
                for (int t = 0; t < KD_EVAL_T; t++) {
                    const uint64_t bit = KD_EVAL_BIT(a, t);
                    uint32_t tp = 0, fp = 0;
                    for (size_t j = 0; j < nd; j++) {
                        uint32_t e = list[j];
                        if (tpb[e] & bit) tp++;
                        else if (!(igb[e] & bit)) fp++;
                        tpc[j] = tp;
                        pr[j] = (double)tp / ((double)fp + (double)tp + eps);
                    }
                    r->recall[rec_at(K, t, k, a, m)] = nd ? (double)tpc[nd - 1] / dn : 0.0;
                    for (size_t j = nd; j-- > 1;)
                        if (pr[j] > pr[j - 1]) pr[j - 1] = pr[j];
                    size_t j = 0;
                    for (int q = 0; q < KD_EVAL_R; q++) {
                        while (j < nd && (double)tpc[j] / dn < rec_thr[q]) j++;
                        r->precision[prec_at(K, t, q, k, a, m)] = j < nd ? pr[j] : 0.0;
                    }
                }
            }
        }
    }
    free(idx);
    free(tmp);
    free(list);
    free(tpc);
    free(pr);
}
