/* atss.c — MMDetection's ATSSAssigner (crosskd.md §3.4) for one image, over its valid anchors:
 *   IoU(anchor, gt) without +1 (union clamped to >= 1e-6); Euclidean distance between the
 *   anchor and gt centres (float32, dx^2 + dy^2 then sqrt as PyTorch computes it); per level
 *   and gt the k = min(topk, valid anchors of the level) nearest anchors (ties: lower anchor
 *   index first); threshold mean + unbiased std of the candidates' IoUs; a candidate is
 *   positive when IoU >= threshold and its centre is inside the gt by more than 0.01 on all
 *   four sides; an anchor positive for several gts takes the one with the highest IoU (first
 *   on ties). The threshold statistics are taken in double (PyTorch: float32); the two differ
 *   only when an IoU equals the threshold to the last float bit.
 */
#include "worker/model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct dist_idx {
    float d;
    int a;
} dist_idx;

static int cmp_dist(const void *x, const void *y)
{
    const dist_idx *p = x, *q = y;
    if (p->d < q->d) return -1;
    if (p->d > q->d) return 1;
    return (p->a > q->a) - (p->a < q->a);
}

void kd_atss_assign(const kd_level_geom *g, const float *anchors, const uint8_t *valid,
                    int topk, int n_gt, const float *gt, int *assigned)
{
    size_t A = g->off[g->L];
    for (size_t a = 0; a < A; a++) assigned[a] = -1;
    if (n_gt == 0) return;
    float *best = kd_xmalloc(A * sizeof(float));
    for (size_t a = 0; a < A; a++) best[a] = -INFINITY;
    dist_idx *di = kd_xmalloc(A * sizeof *di);
    int *cand = kd_xmalloc((size_t)g->L * (size_t)topk * sizeof(int));
    for (int j = 0; j < n_gt; j++) {
        const float *b = gt + 4 * j;
        float gx = (b[0] + b[2]) / 2.0f, gy = (b[1] + b[3]) / 2.0f;
        int nc = 0;
        for (int l = 0; l < g->L; l++) {
            int n = 0;
            for (size_t a = g->off[l]; a < g->off[l + 1]; a++) {
                if (!valid[a]) continue;
                const float *an = anchors + 4 * a;
                float ax = (an[0] + an[2]) / 2.0f, ay = (an[1] + an[3]) / 2.0f;
                float dx = ax - gx, dy = ay - gy;
                float dx2 = dx * dx, dy2 = dy * dy;
                di[n].d = sqrtf(dx2 + dy2);
                di[n].a = (int)a;
                n++;
            }
            qsort(di, (size_t)n, sizeof *di, cmp_dist);
            int k = n < topk ? n : topk;
            for (int i = 0; i < k; i++) cand[nc++] = di[i].a;
        }
        if (nc < 2) continue; /* unbiased std of one value is NaN: nothing passes */
        double mean = 0, var = 0;
        for (int i = 0; i < nc; i++) mean += kd_box_iou_f32(anchors + 4 * cand[i], b);
        mean /= nc;
        for (int i = 0; i < nc; i++) {
            double d = kd_box_iou_f32(anchors + 4 * cand[i], b) - mean;
            var += d * d;
        }
        double thr = mean + sqrt(var / (nc - 1));
        for (int i = 0; i < nc; i++) {
            const float *an = anchors + 4 * cand[i];
            float iou = kd_box_iou_f32(an, b);
            if (!((double)iou >= thr)) continue;
            float cx = (an[0] + an[2]) / 2.0f, cy = (an[1] + an[3]) / 2.0f;
            float m = fminf(fminf(cx - b[0], cy - b[1]), fminf(b[2] - cx, b[3] - cy));
            if (!(m > 0.01f)) continue;
            if (iou > best[cand[i]]) {
                best[cand[i]] = iou;
                assigned[cand[i]] = j;
            }
        }
    }
    free(best);
    free(di);
    free(cand);
}
