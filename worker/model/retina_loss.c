/* retina_loss.c — RetinaNet's detection losses (crosskd.md §6.1, MMDetection 3.0.0rc6
 * AnchorHead.loss_by_feat with FocalLoss and L1Loss) with their gradients, on the host.
 * Normaliser: Pl = sum over this rank's images of max(positives, 1) (SamplingResult.num_pos
 * of the PseudoSampler; AnchorHead does not reduce it over ranks), eps = FLT_EPSILON:
 *   focal loss (gamma, alpha, weight) over every anchor with label weight 1 (valid and not
 *     in MaxIoU's ignore band) and every class, one-hot targets: sum / (Pl + eps);
 *   L1 (weight) between the predicted deltas and the encoded targets (DeltaXYWHBBoxCoder,
 *     means 0, target_stds) on positives, 4 coordinates: sum / (Pl + eps); d|u|/du = sign(u)
 *     with sign(0) = 0 (PyTorch).
 * Rows are (location, anchor); the anchor's classes are channels a*K.. and its deltas a*4..
 * of the level's head outputs (det_loss_internal.h, kd_loss_at_a).
 */
#include "worker/model/det_loss_internal.h"

#include <math.h>
#include <string.h>

void kd_retina_loss_levels(kd_det_loss *ls, const kd_model *m, double gs, kd_det_losses *out)
{
    const kd_level_geom *g = &ls->g;
    const kd_model_cfg *c = &m->cfg;
    int N = ls->N, K = ls->K, A = g->A;
    double gamma = c->bbox_head.loss_cls_gamma, alpha = c->bbox_head.loss_cls_alpha;
    double wc = c->bbox_head.loss_cls_weight / (ls->avg_local + KD_AVG_EPS);
    double wb = c->bbox_head.loss_bbox_weight / (ls->avg_local + KD_AVG_EPS);
    float stds[4];
    for (int k = 0; k < 4; k++) stds[k] = (float)c->bbox_head.target_stds.v[k];
    for (int l = 0; l < g->L; l++) {
        size_t hw = (size_t)g->h[l] * g->w[l];
        memset(ls->dcls[l], 0, (size_t)N * A * K * hw * sizeof(float));
        memset(ls->dreg[l], 0, (size_t)N * A * 4 * hw * sizeof(float));
        double sc = 0, sb = 0;
        for (int i = 0; i < N; i++)
            for (size_t r = g->off[l]; r < g->off[l + 1]; r++) {
                size_t ir = (size_t)i * ls->A + r;
                int lab = ls->label[ir];
                if (!ls->valid[ir] || lab == KD_ASSIGN_IGNORE) continue;
                for (int k = 0; k < K; k++) {
                    size_t o = kd_loss_at_a(g, l, K, i, k, r);
                    double dx;
                    sc += kd_focal_elem(ls->cls[l][o], k == lab, gamma, alpha, &dx);
                    ls->dcls[l][o] = (float)(gs * wc * dx);
                }
                if (lab < 0) continue;
                float t[4];
                kd_delta_encode(ls->anchors + 4 * r, ls->tgt + 4 * ir, stds, t);
                for (int k = 0; k < 4; k++) {
                    size_t o = kd_loss_at_a(g, l, 4, i, k, r);
                    float u = ls->reg[l][o] - t[k];
                    sb += fabsf(u);
                    ls->dreg[l][o] = (float)(gs * wb * (u > 0 ? 1.0 : u < 0 ? -1.0 : 0.0));
                }
            }
        out->level_cls[l] = sc * wc;
        out->level_bbox[l] = sb * wb;
        out->loss_cls += out->level_cls[l];
        out->loss_bbox += out->level_bbox[l];
    }
}
