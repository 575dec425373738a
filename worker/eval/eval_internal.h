/* eval_internal.h — the evaluator's working state, shared by its files (not installed).
 *
 *   prepare.c     loadRes + _prepare: id lookups, input checks, grouping of GT and
 *                 detections by (image, category), the per-pair stable score sort
 *   coco_eval.c   computeIoU + evaluateImg for every pair, and kd_eval_coco_run
 *   accumulate.c  accumulate(): precision / recall tables
 *   summarize.c   summarize(): the 12 numbers, per-category AP, printing
 *
 * Indices: i image (0..I-1, ascending GT image id), k category (0..K-1, ascending GT
 * category id), a area range, m maxDets entry, t IoU threshold. A detection's outcome for
 * area range a and threshold t is bit (a*T + t) of two masks: tp (matched to a non-ignored
 * GT with a nonzero id) and ig (ignored: matched to an ignored GT, or unmatched with its
 * own area outside the range). Neither bit set = false positive.
 */
#ifndef KD_EVAL_INTERNAL_H
#define KD_EVAL_INTERNAL_H

#include "worker/eval/eval.h"

#define KD_EVAL_BIT(a, t) ((uint64_t)1 << ((a) * KD_EVAL_T + (t)))

typedef struct kd_eval_dt_key {
    double score;
    uint32_t pos;  /* position in the results list (pycocotools' id is pos + 1) */
    int32_t cat;   /* category index k */
} kd_eval_dt_key;

typedef struct kd_eval_ctx {
    const kd_coco_file *gt;
    const kd_coco_det *dets;
    size_t I, K;
    int64_t *img_ids;        /* [I] ascending, unique */
    int32_t *cat_ids;        /* [K] ascending, unique */

    /* ground truth of image i: gt_idx[gt_off[i] .. gt_off[i+1]), annotation indices ordered
     * by category index, file order within a category; gt_cat[] holds their k. */
    size_t *gt_off;          /* [I+1] */
    uint32_t *gt_idx;
    int32_t *gt_cat;

    /* detections of image i: dt_keys[dt_off[i] .. dt_off[i+1]), ordered by category index,
     * then descending score, then list position (numpy's stable mergesort on -score). */
    size_t *dt_off;          /* [I+1] */
    kd_eval_dt_key *dt_keys;

    /* evaluated detections of category k (the first 100 of each pair), in image order then
     * rank: entries bucket_off[k] .. bucket_off[k+1]) of the b_* arrays. */
    size_t *bucket_off;      /* [K+1] */
    double *b_score;
    uint64_t *b_tp, *b_ig;
    uint8_t *b_rank;         /* rank within its (image, category), 0..99 */
    size_t *npig;            /* [K][A] non-ignored GT count */

    size_t n_dets_used, n_dets_unknown_cat, n_dets_over_cap;
} kd_eval_ctx;

/* prepare.c */
kd_status kd_eval_ctx_build(kd_eval_ctx *c, const kd_coco_file *gt, const kd_coco_det *dets,
                            size_t n_dets, kd_err *err);
void kd_eval_ctx_free(kd_eval_ctx *c);

/* coco_eval.c: fills the buckets and npig */
void kd_eval_ctx_match(kd_eval_ctx *c);

/* accumulate.c: r->precision, r->recall (allocated here) */
void kd_eval_ctx_accumulate(const kd_eval_ctx *c, kd_eval_result *r);

/* summarize.c: r->stats, r->cat_ap from r->precision / r->recall */
void kd_eval_result_summarize(kd_eval_result *r);

#endif
