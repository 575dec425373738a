/* eval.h — COCO bbox evaluation, identical to pycocotools' COCOeval (iouType 'bbox').
 *
 * The evaluator takes the ground truth as a parsed instances file (kd_coco_file, see
 * proto/coco_json.h) and the detections as an array of kd_coco_det, so the trainer can
 * evaluate in memory and crosskd-eval can evaluate two JSON files with the same code.
 * It reproduces every rule of pycocotools (reference: shared coco.md §2):
 *   - parameters: iouThrs = linspace(.5, .95, 10), recThrs = linspace(0, 1, 101) built as
 *     numpy builds them (i*step + start, last forced to stop), maxDets [1, 10, 100], area
 *     ranges all/small/medium/large = [0,1e10], [0,1024], [1024,9216], [9216,1e10]
 *     inclusive at both ends;
 *   - loadRes: detections of an image that is not in the GT are an error (pycocotools
 *     asserts); detections of a category that is not in the GT are dropped silently;
 *     a detection's area is w*h, its id its 1-based position in the list;
 *   - per (image, category): stable sort by descending score, first 100 kept; box IoU in
 *     double (crowd: intersection / detection area); GT ignored when crowd or its 'area'
 *     field is outside the range; greedy matching as in evaluateImg;
 *   - accumulate: one stable sort per category over all images (sorted image id order),
 *     cumulative tp/fp in double, precision tp/(tp+fp+2^-52), envelope, searchsorted
 *     (side 'left') against the recall thresholds, 0 above the reached recall, -1 where a
 *     category/area has no non-ignored GT;
 *   - summarize: the 12 numbers, each a numpy-style (pairwise) mean of the entries > -1.
 * Results are bit-identical to pycocotools on the committed fixtures (tests/unit/eval).
 *
 * Conventions: arrays are in pycocotools' C order; K is the number of GT categories,
 * sorted by id; -1 marks "no ground truth" exactly as pycocotools does. One thread.
 */
#ifndef KD_EVAL_H
#define KD_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/coco_json.h"
#include "proto/status.h"

#define KD_EVAL_T 10      /* IoU thresholds .50:.05:.95 */
#define KD_EVAL_R 101     /* recall thresholds 0:.01:1 */
#define KD_EVAL_A 4       /* area ranges: all, small, medium, large */
#define KD_EVAL_M 3       /* maxDets: 1, 10, 100 */
#define KD_EVAL_MAX_DETS 100
#define KD_EVAL_N_STATS 12

typedef struct kd_eval_result {
    double stats[KD_EVAL_N_STATS]; /* summarize() order: AP, AP50, AP75, APs, APm, APl,
                                      AR1, AR10, AR100, ARs, ARm, ARl */
    size_t n_cats;                 /* K */
    int32_t *cat_ids;              /* [K] GT category ids, ascending */
    double *cat_ap;                /* [K] AP@[.50:.95], area all, maxDets 100 (mean of
                                      precision[:, :, k, 0, 2] over entries > -1);
                                      -1 when the category has no non-crowd GT */
    double *precision;             /* [T][R][K][A][M], pycocotools' eval['precision'] */
    double *recall;                /* [T][K][A][M], pycocotools' eval['recall'] */
    size_t n_images;               /* GT images (all are evaluated) */
    size_t n_dets_used;            /* detections evaluated: the first 100 of each
                                      (GT image, GT category) pair */
    size_t n_dets_unknown_cat;     /* dropped: category id not in the GT */
    size_t n_dets_over_cap;        /* beyond 100 per (image, category): never counted */
} kd_eval_result;

/* One detection as MMDetection writes it (coco.md §1.4): corners of the float32 box in
 * original-image pixels, label already mapped to its COCO category id; w and h are computed
 * in double from the exact float values, the score is the float32 value widened. */
static inline kd_coco_det kd_eval_det_from_xyxy(int64_t image_id, int32_t category_id,
                                                const float xyxy[4], float score)
{
    kd_coco_det d;
    d.image_id = image_id;
    d.category_id = category_id;
    d.bbox[0] = (double)xyxy[0];
    d.bbox[1] = (double)xyxy[1];
    d.bbox[2] = (double)xyxy[2] - (double)xyxy[0];
    d.bbox[3] = (double)xyxy[3] - (double)xyxy[1];
    d.score = (double)score;
    return d;
}

/* Evaluate dets[0..n_dets) against gt. On success fills *out (free with
 * kd_eval_result_free). Errors (KD_ENOTFOUND, KD_EINVAL) name the detection's position
 * and the offending id or value: an image id absent from the GT, a non-finite score or box.
 * Zero detections are valid here (every AP is 0 or -1); the command line refuses an empty
 * results file because pycocotools cannot load one. */
kd_status kd_eval_coco_run(const kd_coco_file *gt, const kd_coco_det *dets, size_t n_dets,
                           kd_eval_result *out, kd_err *err);
void kd_eval_result_free(kd_eval_result *r);

/* The 12 lines of COCOeval.summarize(), byte for byte, e.g.
 *  " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.372" */
void kd_eval_summary_print(FILE *f, const kd_eval_result *r);
/* One JSON object: {"stats": [12 numbers], "per_category": {"<id>": AP, ...}}, numbers
 * printed with 17 significant digits (they read back as the same doubles). */
void kd_eval_json_print(FILE *f, const kd_eval_result *r);

/* ---- building blocks, exposed for tests ------------------------------------------ */

/* numpy.linspace(start, stop, num, endpoint=True) for num >= 2. */
void kd_eval_linspace(double start, double stop, int num, double *out);
/* The parameters of Params.setDetParams. */
void kd_eval_iou_thresholds(double out[KD_EVAL_T]);
void kd_eval_recall_thresholds(double out[KD_EVAL_R]);
extern const int kd_eval_max_dets[KD_EVAL_M];
extern const double kd_eval_area_ranges[KD_EVAL_A][2];
/* numpy's pairwise summation of a contiguous float64 array (np.add.reduce), and the
 * mean np.mean computes from it; kd_eval_mean_pairwise returns -1 for n == 0, like
 * summarize() does for an empty selection. */
double kd_eval_sum_pairwise(const double *x, size_t n);
double kd_eval_mean_pairwise(const double *x, size_t n);
/* maskUtils.iou for one box pair [x, y, w, h] (crowd: union = detection area). */
double kd_eval_box_iou(const double dt[4], const double gt[4], int gt_crowd);

#endif
