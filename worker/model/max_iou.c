/* max_iou.c — MMDetection's MaxIoUAssigner as RetinaNet configures it (crosskd.md §6.1:
 * pos_iou_thr 0.5, neg_iou_thr 0.4, min_pos_iou 0, gt_max_assign_all, match_low_quality,
 * ignore_iof_thr -1), for one image over its valid anchors (allowed_border -1: every valid
 * anchor takes part, invalid ones are left out of every max):
 *   IoU(anchor, gt) without +1, union clamped to >= 1e-6 (float32, as PyTorch computes it);
 *   per anchor the max IoU over the gts and its gt (the first on ties, torch.max's CPU rule);
 *   negative (0) when 0 <= max < neg_thr; positive (that gt) when max >= pos_thr; otherwise
 *   ignored (the [0.4, 0.5) band: label weight 0);
 *   then, gt by gt in order, every valid anchor whose IoU with gt j equals gt j's best IoU
 *   (when that best is >= min_pos_iou) is assigned to j — a later gt overwrites an earlier.
 * assigned[a] = gt index, KD_ASSIGN_NEG (-1) or KD_ASSIGN_IGNORE (-2); invalid anchors -1.
 */
#include "worker/model/model.h"

#include <math.h>
#include <stdlib.h>

void kd_max_iou_assign(size_t A, const float *anchors, const uint8_t *valid, double pos_thr, double neg_thr,
                       double min_pos_iou, int n_gt, const float *gt, int *assigned)
{
    for (size_t a = 0; a < A; a++) assigned[a] = KD_ASSIGN_NEG;
    if (n_gt == 0) return;
    float *ov = kd_xmalloc(A * (size_t)n_gt * sizeof(float)), *gmax = kd_xmalloc((size_t)n_gt * sizeof(float));
    for (int j = 0; j < n_gt; j++) gmax[j] = -INFINITY;
    for (size_t a = 0; a < A; a++) {
        if (!valid[a]) continue;
        float best = -INFINITY;
        int bj = 0;
        for (int j = 0; j < n_gt; j++) {
            float v = ov[a * n_gt + j] = kd_box_iou_f32(anchors + 4 * a, gt + 4 * j);
            if (v > best) best = v, bj = j;
            if (v > gmax[j]) gmax[j] = v;
        }
        if (best >= 0 && best < (float)neg_thr) assigned[a] = KD_ASSIGN_NEG;
        else if (best >= (float)pos_thr) assigned[a] = bj;
        else assigned[a] = KD_ASSIGN_IGNORE;
    }
    for (int j = 0; j < n_gt; j++) {
        if (!(gmax[j] >= (float)min_pos_iou)) continue;
        for (size_t a = 0; a < A; a++)
            if (valid[a] && ov[a * n_gt + j] == gmax[j]) assigned[a] = j;
    }
    free(ov);
    free(gmax);
}
