/* dist_eval.h — the trainer's periodic COCO evaluation across ranks.
 *
 * Each rank runs inference on its shard of the validation images and holds its detections
 * as kd_coco_det (COCO category ids, boxes [x, y, w, h] in original-image pixels, w computed
 * in double as x2 - x1 from the float32 corners, score = (double)score_f32 — coco.md §1.4).
 * kd_eval_dist_run then, collectively on every rank:
 *   1. gathers all detections on rank 0 (rank order), and stable-sorts them by image id,
 *      so the list, the written file and every number are the same for any world size
 *      (pycocotools' result depends on list order only within one image and category,
 *      and one image is always inferred by one rank);
 *   2. on rank 0: evaluates them against the ground truth with kd_eval_coco_run and, when
 *      results_path is given, writes them in COCO results format (kd_coco_results_write:
 *      round-trip digits, so crosskd-eval or pycocotools on that file give the same numbers);
 *   3. broadcasts the status, the message and the 12 stats, so every rank returns the same
 *      status and the same out->stats (rank 0 also gets the per-category arrays).
 * The ground truth is only read on rank 0 (gt may be NULL elsewhere). An error on rank 0
 * (an image id absent from the GT, a non-finite score, a write failure) is returned on every
 * rank with the same message. MPI failures are fatal, as everywhere in the worker.
 */
#ifndef KD_DIST_EVAL_H
#define KD_DIST_EVAL_H

#include "worker/dist.h"
#include "worker/eval/eval.h"

kd_status kd_eval_dist_run(const kd_dist *d, const kd_coco_file *gt, const kd_coco_det *local,
                           size_t n_local, const char *results_path, kd_eval_result *out,
                           kd_err *err);

#endif
