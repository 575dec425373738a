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
 * Cells with npig == 0 stay -1. Work per category: one O(n log n) sort, then up to 120
 * linear passes over contiguous outcome masks (a maxDets list equal to the previous one
 * reuses its results); only true positives are stored (see cell()), scratch arrays are
 * sized once for the largest category.
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

/* One (k, a, m, t) cell from the sorted outcome masks stp/sig[0..nd).
 * Shortcut, exact: the recall changes only at a true positive, and the precision rises only
 * at a true positive (a false positive lowers it, an ignored detection repeats it), so the
 * envelope value at any index is the largest precision among the true positives at or after
 * it (0 when there is none: tp is 0 there), and searchsorted lands on a true positive,
 * or on index 0 for a threshold of 0. Only the true positives' precisions are kept (ev_pr),
 * computed with the same expression as numpy, so every value is the same double. */
static void cell(const uint64_t *stp, const uint64_t *sig, size_t nd, uint64_t bit, double npig,
                 const double *rec_thr, double *ev_pr, uint32_t *ev_tp, double *prec_out,
                 size_t prec_stride, double *recall_out)
{
    const double eps = DBL_EPSILON; /* np.spacing(1) = 2^-52 */
    uint32_t tp = 0, fp = 0, n_ev = 0;
    for (size_t j = 0; j < nd; j++) {
        if (stp[j] & bit) {
            tp++;
            ev_pr[n_ev] = (double)tp / ((double)fp + (double)tp + eps);
            ev_tp[n_ev++] = tp;
        } else if (!(sig[j] & bit)) fp++;
    }
    *recall_out = nd ? (double)tp / npig : 0.0;
    for (uint32_t e = n_ev; e-- > 1;)
        if (ev_pr[e] > ev_pr[e - 1]) ev_pr[e - 1] = ev_pr[e];
    /* recall at index 0 is 0 unless index 0 is a true positive (then it is event 0) */
    uint32_t e = 0;
    for (int q = 0; q < KD_EVAL_R; q++) {
        double v;
        if (nd == 0) v = 0.0;                     /* searchsorted past the end */
        else if (rec_thr[q] <= 0.0 && (n_ev == 0 || !(stp[0] & bit)))
            v = n_ev ? ev_pr[0] : 0.0;            /* index 0, not a true positive */
        else {
            while (e < n_ev && (double)ev_tp[e] / npig < rec_thr[q]) e++;
            v = e < n_ev ? ev_pr[e] : 0.0;        /* past the end: pycocotools keeps 0 */
        }
        prec_out[(size_t)q * prec_stride] = v;
    }
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
    const size_t prec_stride = K * KD_EVAL_A * KD_EVAL_M; /* step of r in precision */

    size_t max_n = 1;
    for (size_t k = 0; k < K; k++) {
        size_t n = c->bucket_off[k + 1] - c->bucket_off[k];
        if (n > max_n) max_n = n;
    }
    uint32_t *idx = kd_xmalloc(max_n * sizeof *idx);
    uint32_t *tmp = kd_xmalloc(max_n * sizeof *tmp);
    uint64_t *stp = kd_xmalloc(max_n * sizeof *stp);
    uint64_t *sig = kd_xmalloc(max_n * sizeof *sig);
    uint32_t *ev_tp = kd_xmalloc(max_n * sizeof *ev_tp);
    double *ev_pr = kd_xmalloc(max_n * sizeof *ev_pr);

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

        size_t prev_nd = SIZE_MAX;
        for (int m = 0; m < KD_EVAL_M; m++) {
            size_t nd = 0;
            for (size_t j = 0; j < n; j++)
                if (rank[idx[j]] < kd_eval_max_dets[m]) {
                    stp[nd] = tpb[idx[j]];
                    sig[nd++] = igb[idx[j]];
                }
            for (int a = 0; a < KD_EVAL_A; a++) {
                const size_t npig = c->npig[k * KD_EVAL_A + a];
                if (npig == 0) continue;
                for (int t = 0; t < KD_EVAL_T; t++) {
                    if (nd == prev_nd) { /* same list as for the previous maxDets */
                        for (int q = 0; q < KD_EVAL_R; q++)
                            r->precision[prec_at(K, t, q, k, a, m)] = r->precision[prec_at(K, t, q, k, a, m - 1)];
                        r->recall[rec_at(K, t, k, a, m)] = r->recall[rec_at(K, t, k, a, m - 1)];
                        continue;
                    }
                    cell(stp, sig, nd, KD_EVAL_BIT(a, t), (double)npig, rec_thr, ev_pr, ev_tp,
                         r->precision + prec_at(K, t, 0, k, a, m), prec_stride,
                         r->recall + rec_at(K, t, k, a, m));
                }
            }
            prev_nd = nd;
        }
    }
    free(idx);
    free(tmp);
    free(stp);
    free(sig);
    free(ev_tp);
    free(ev_pr);
}
