/* coco_eval.c — per (image, category) evaluation: pycocotools' computeIoU + evaluateImg
 * for the four area ranges and ten IoU thresholds at once, and kd_eval_coco_run, which
 * chains prepare -> match -> accumulate -> summarize.
 *
 * Per pair, with D <= 100 detections (already in stable descending-score order) and G GT:
 *   - the D x G IoU matrix is computed once (maskUtils.iou: boxes [x, y, w, h] in double,
 *     iw = min(x+w) - max(x), 0 when <= 0, same for ih, crowd union = detection area);
 *   - for each area range: gIg = crowd || area < lo || area > hi (GT 'area' field), GT
 *     visited with non-ignored first, file order kept within each group (stable sort);
 *   - for each threshold t and detection d in score order: best = min(t, 1 - 1e-10);
 *     scan GT: skip GT matched at t unless crowd; stop at the first ignored GT once a
 *     non-ignored one is matched; take g when IoU >= best (so the later of equal IoUs);
 *   - outcome bits (eval_internal.h): a match counts as a match only when the GT id is
 *     nonzero (pycocotools stores ids and tests them against 0); an unmatched detection
 *     whose w*h is outside the range is ignored.
 * The IoU matrix and the flags live in scratch arrays grown to the largest pair seen.
 * Compile with -ffp-contract=off: a fused multiply-add would change the last bit of IoUs.
 */
#include "worker/eval/eval_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const int kd_eval_max_dets[KD_EVAL_M] = {1, 10, 100};
const double kd_eval_area_ranges[KD_EVAL_A][2] = {
    {0.0, 1e10}, {0.0, 1024.0}, {1024.0, 9216.0}, {9216.0, 1e10}};

double kd_eval_box_iou(const double dt[4], const double gt[4], int gt_crowd)
{
    double dx2 = dt[2] + dt[0], gx2 = gt[2] + gt[0];
    double iw = (dx2 < gx2 ? dx2 : gx2) - (dt[0] > gt[0] ? dt[0] : gt[0]);
    if (iw <= 0) return 0.0;
    double dy2 = dt[3] + dt[1], gy2 = gt[3] + gt[1];
    double ih = (dy2 < gy2 ? dy2 : gy2) - (dt[1] > gt[1] ? dt[1] : gt[1]);
    if (ih <= 0) return 0.0;
    double inter = iw * ih;
    double da = dt[2] * dt[3];
    double uni = gt_crowd ? da : da + gt[2] * gt[3] - inter;
    return inter / uni;
}

typedef struct pair_scratch {
    double thr[KD_EVAL_T]; /* iouThrs */
    size_t cap_g;
    double *iou;       /* [D][G] */
    uint8_t *ig;       /* [G] ignore flag for the current area range */
    uint8_t *crowd;    /* [G] */
    uint8_t *id_nz;    /* [G] annotation id != 0 (pycocotools' "matched" test) */
    uint32_t *order;   /* [G] visiting order: non-ignored first */
    uint8_t *matched;  /* [G] matched at the current threshold */
    double darea[KD_EVAL_MAX_DETS];   /* w*h of each detection (loadRes' area) */
    double row_max[KD_EVAL_MAX_DETS]; /* largest IoU of each detection */
} pair_scratch;

static void scratch_reserve(pair_scratch *s, size_t G)
{
    if (G <= s->cap_g) return;
    size_t cap = s->cap_g ? s->cap_g : 64;
    while (cap < G) cap *= 2;
    s->iou = kd_xrealloc(s->iou, (size_t)KD_EVAL_MAX_DETS * cap * sizeof *s->iou);
    s->ig = kd_xrealloc(s->ig, cap * sizeof *s->ig);
    s->crowd = kd_xrealloc(s->crowd, cap * sizeof *s->crowd);
    s->id_nz = kd_xrealloc(s->id_nz, cap * sizeof *s->id_nz);
    s->order = kd_xrealloc(s->order, cap * sizeof *s->order);
    s->matched = kd_xrealloc(s->matched, cap * sizeof *s->matched);
    s->cap_g = cap;
}

/* Evaluate one pair. gts: G annotation indices (file order); keys: D detections (score
 * order, D <= 100). Writes D outcome masks and adds the non-ignored GT counts to npig[A]. */
static void eval_pair(const kd_eval_ctx *c, pair_scratch *s, const uint32_t *gts, size_t G,
                      const kd_eval_dt_key *keys, size_t D, uint64_t *tp_out,
                      uint64_t *ig_out, size_t *npig)
{
    const kd_coco_ann *anns = c->gt->anns;
    scratch_reserve(s, G);
    for (size_t g = 0; g < G; g++) {
        s->crowd[g] = anns[gts[g]].iscrowd != 0;
        s->id_nz[g] = anns[gts[g]].id != 0;
    }
    const int have_iou = D > 0 && G > 0; /* maskUtils.iou returns [] otherwise */
    for (size_t d = 0; d < D; d++) {
        const double *db = c->dets[keys[d].pos].bbox;
        s->darea[d] = db[2] * db[3];
        double mx = 0.0;
        for (size_t g = 0; g < G; g++) {
            double v = kd_eval_box_iou(db, anns[gts[g]].bbox, s->crowd[g]);
            s->iou[d * G + g] = v;
            if (v > mx) mx = v;
            else if (v != v) mx = INFINITY; /* NaN (overflowing boxes): scan as pycocotools does */
        }
        s->row_max[d] = mx;
        tp_out[d] = ig_out[d] = 0;
    }

    const double *thr = s->thr;
    const double cap = 1 - 1e-10;
    for (int a = 0; a < KD_EVAL_A; a++) {
        const double lo = kd_eval_area_ranges[a][0], hi = kd_eval_area_ranges[a][1];
        size_t n_reg = 0;
        for (size_t g = 0; g < G; g++) {
            const double area = anns[gts[g]].area;
            s->ig[g] = s->crowd[g] || area < lo || area > hi;
            n_reg += !s->ig[g];
        }
        npig[a] += n_reg;
        size_t wr = 0, wi = n_reg;
        for (size_t g = 0; g < G; g++) s->order[s->ig[g] ? wi++ : wr++] = (uint32_t)g;

        for (int t = 0; t < KD_EVAL_T; t++) {
            const uint64_t bit = KD_EVAL_BIT(a, t);
            const double best0 = thr[t] < cap ? thr[t] : cap;
            if (G) memset(s->matched, 0, G);
            for (size_t d = 0; d < D; d++) {
                const int d_out = s->darea[d] < lo || s->darea[d] > hi;
                long m = -1;
                /* a detection whose best IoU is below the threshold cannot match: skip the scan */
                if (have_iou && s->row_max[d] >= best0) {
                    double best = best0;
                    const double *row = s->iou + d * G;
                    for (size_t q = 0; q < G; q++) {
                        uint32_t g = s->order[q];
                        if (s->matched[g] && !s->crowd[g]) continue;
                        if (m >= 0 && !s->ig[m] && s->ig[g]) break;
                        if (row[g] < best) continue;
                        best = row[g];
                        m = (long)g;
                    }
                }
                int counted = 0, ignored = 0;
                if (m >= 0) {
                    s->matched[m] = 1;
                    counted = s->id_nz[m];
                    ignored = s->ig[m];
                }
                if (!counted && d_out) ignored = 1;
                if (ignored) ig_out[d] |= bit;
                else if (counted) tp_out[d] |= bit;
            }
        }
    }
}

void kd_eval_ctx_match(kd_eval_ctx *c)
{
    pair_scratch s = {0};
    kd_eval_iou_thresholds(s.thr);
    size_t *fill = kd_xmalloc((c->K + 1) * sizeof *fill);
    memcpy(fill, c->bucket_off, (c->K + 1) * sizeof *fill);
    for (size_t i = 0; i < c->I; i++) {
        size_t gq = c->gt_off[i], ge = c->gt_off[i + 1];
        size_t dq = c->dt_off[i], de = c->dt_off[i + 1];
        /* walk the categories present in either list, ascending */
        while (gq < ge || dq < de) {
            int32_t kg = gq < ge ? c->gt_cat[gq] : INT32_MAX;
            int32_t kd = dq < de ? c->dt_keys[dq].cat : INT32_MAX;
            int32_t k = kg < kd ? kg : kd;
            size_t g0 = gq, d0 = dq;
            while (gq < ge && c->gt_cat[gq] == k) gq++;
            while (dq < de && c->dt_keys[dq].cat == k) dq++;
            size_t G = gq - g0, D = dq - d0;
            if (D > KD_EVAL_MAX_DETS) D = KD_EVAL_MAX_DETS;
            size_t b = fill[k];
            eval_pair(c, &s, c->gt_idx + g0, G, c->dt_keys + d0, D, c->b_tp + b, c->b_ig + b,
                      c->npig + (size_t)k * KD_EVAL_A);
            for (size_t d = 0; d < D; d++) {
                c->b_score[b + d] = c->dt_keys[d0 + d].score;
                c->b_rank[b + d] = (uint8_t)d;
            }
            fill[k] += D;
        }
    }
    free(fill);
    free(s.iou);
    free(s.ig);
    free(s.crowd);
    free(s.id_nz);
    free(s.order);
    free(s.matched);
}

void kd_eval_result_free(kd_eval_result *r)
{
    if (!r) return;
    free(r->cat_ids);
    free(r->cat_ap);
    free(r->precision);
    free(r->recall);
    memset(r, 0, sizeof *r);
}

kd_status kd_eval_coco_run(const kd_coco_file *gt, const kd_coco_det *dets, size_t n_dets,
                           kd_eval_result *out, kd_err *err)
{
    memset(out, 0, sizeof *out);
    if (!gt || (n_dets && !dets)) return kd_errf(err, KD_EINVAL, "no ground truth or detections");
    kd_eval_ctx c;
    kd_status st = kd_eval_ctx_build(&c, gt, dets, n_dets, err);
    if (st != KD_OK) {
        kd_eval_ctx_free(&c);
        return st;
    }
    kd_eval_ctx_match(&c);
    out->n_cats = c.K;
    out->cat_ids = kd_xmalloc((c.K ? c.K : 1) * sizeof *out->cat_ids);
    memcpy(out->cat_ids, c.cat_ids, c.K * sizeof *out->cat_ids);
    out->n_images = c.I;
    out->n_dets_used = c.n_dets_used;
    out->n_dets_unknown_cat = c.n_dets_unknown_cat;
    out->n_dets_over_cap = c.n_dets_over_cap;
    kd_eval_ctx_accumulate(&c, out);
    kd_eval_ctx_free(&c);
    kd_eval_result_summarize(out);
    return KD_OK;
}
