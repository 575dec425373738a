/* atss_loss.c — ATSS's detection losses (crosskd.md §6.2, MMDetection 3.0 ATSSHead
 * loss_by_feat) with their gradients, on the host, given P (mean over ranks of num_pos)
 * and W = max(1, mean over ranks of the centerness-target sums) (det_loss.c prepares the
 * ATSS assignment and the targets):
 *   focal loss (gamma, alpha, weight) over every valid anchor and class, one-hot targets
 *     (negatives all zero): BCE(x, t) * (alpha t + (1 - alpha)(1 - t)) * pt^gamma with
 *     pt = (1 - p) t + p (1 - t), p = sigmoid(x), the factor differentiated too; / (P + eps);
 *   GIoU (weight) on positives between the boxes decoded from the deltas at the anchors
 *     (DeltaXYWHBBoxCoder, means 0, target_stds, dw/dh clamped to |log(16/1000)|, no
 *     clipping) and the matched gt boxes, in pixels, weighted by the centerness target c_a:
 *     sum / (1 + eps) / W;
 *   centerness BCE-with-logits (weight) of the centerness logit against c_a on positives:
 *     sum / (P + eps);
 *   c_a = sqrt(min(l, r)/max(l, r) * min(t, b)/max(t, b)) of the anchor centre in its gt.
 * eps = FLT_EPSILON (MMDetection's avg_factor epsilon). The delta decode and its backward
 * are here for every delta-coded head (ATSS, RetinaNet, their box KD).
 */
#include "worker/model/det_loss_internal.h"

#include <math.h>
#include <string.h>

#include "kernels/kd_giou.h"
#include "kernels/kd_math.h"

/* |log(16/1000)|: MMDetection's wh_ratio_clip bound on dw, dh. */
#define KD_DELTA_MAX_RATIO 4.135166556742356

float kd_atss_centerness_target(const float *an, const float *gt)
{
    float cx = (an[2] + an[0]) / 2.0f, cy = (an[3] + an[1]) / 2.0f;
    float l = cx - gt[0], t = cy - gt[1], r = gt[2] - cx, b = gt[3] - cy;
    float lr = fminf(l, r) / fmaxf(l, r), tb = fminf(t, b) / fmaxf(t, b);
    return sqrtf(lr * tb);
}

void kd_delta_decode(const float *an, const float *d, const float *stds, float *box)
{
    const float mr = (float)KD_DELTA_MAX_RATIO;
    float px = (an[0] + an[2]) * 0.5f, py = (an[1] + an[3]) * 0.5f;
    float pw = an[2] - an[0], ph = an[3] - an[1];
    float dw = fminf(fmaxf(d[2] * stds[2], -mr), mr), dh = fminf(fmaxf(d[3] * stds[3], -mr), mr);
    float gx = px + pw * (d[0] * stds[0]), gy = py + ph * (d[1] * stds[1]);
    float gw = pw * expf(dw), gh = ph * expf(dh);
    box[0] = gx - gw * 0.5f;
    box[1] = gy - gh * 0.5f;
    box[2] = gx + gw * 0.5f;
    box[3] = gy + gh * 0.5f;
}

void kd_delta_decode_bwd(const float *an, const float *d, const float *stds, const float *dbox, float *dd)
{
    const float mr = (float)KD_DELTA_MAX_RATIO;
    float pw = an[2] - an[0], ph = an[3] - an[1];
    float dw = d[2] * stds[2], dh = d[3] * stds[3];
    float gw = pw * expf(fminf(fmaxf(dw, -mr), mr)), gh = ph * expf(fminf(fmaxf(dh, -mr), mr));
    float dgx = dbox[0] + dbox[2], dgy = dbox[1] + dbox[3];
    float dgw = 0.5f * (dbox[2] - dbox[0]), dgh = 0.5f * (dbox[3] - dbox[1]);
    dd[0] = dgx * pw * stds[0];
    dd[1] = dgy * ph * stds[1];
    dd[2] = fabsf(dw) <= mr ? dgw * gw * stds[2] : 0.0f; /* clamp passes no gradient outside */
    dd[3] = fabsf(dh) <= mr ? dgh * gh * stds[3] : 0.0f;
}

void kd_delta_encode(const float *an, const float *gt, const float *stds, float *d)
{
    float px = (an[0] + an[2]) * 0.5f, py = (an[1] + an[3]) * 0.5f, pw = an[2] - an[0], ph = an[3] - an[1];
    float gx = (gt[0] + gt[2]) * 0.5f, gy = (gt[1] + gt[3]) * 0.5f, gw = gt[2] - gt[0], gh = gt[3] - gt[1];
    d[0] = (gx - px) / pw / stds[0];
    d[1] = (gy - py) / ph / stds[1];
    d[2] = logf(gw / pw) / stds[2];
    d[3] = logf(gh / ph) / stds[3];
}

double kd_focal_elem(float x, int target, double gamma, double alpha, double *dx)
{
    double p = kd_sigmoid(x), bce = kd_bce_logits(x, target ? 1.0f : 0.0f);
    double pt = target ? 1.0 - p : p, aw = target ? alpha : 1.0 - alpha;
    double ptg = pow(pt, gamma);
    /* d pt / dx = (1 - 2t) p (1 - p); d bce / dx = p - t */
    double dpt = (target ? -1.0 : 1.0) * p * (1.0 - p);
    double dptg = pt > 0 ? gamma * pow(pt, gamma - 1.0) * dpt : 0.0;
    *dx = aw * (dptg * bce + ptg * (p - (target ? 1.0 : 0.0)));
    return aw * ptg * bce;
}

static void stds_of(const kd_model *m, float *stds)
{
    for (int k = 0; k < 4; k++) stds[k] = (float)m->cfg.bbox_head.target_stds.v[k];
}

/* Positives of level l: GIoU on decoded boxes and centerness BCE; returns via sums. */
static void atss_positives(kd_det_loss *ls, const kd_model *m, int l, double wb, double wctr, double gs,
                           double *sb, double *sctr)
{
    const kd_level_geom *g = &ls->g;
    float stds[4];
    stds_of(m, stds);
    for (int i = 0; i < ls->N; i++)
        for (size_t a = g->off[l]; a < g->off[l + 1]; a++) {
            size_t ia = (size_t)i * ls->A + a;
            if (ls->label[ia] < 0) continue;
            const float *an = ls->anchors + 4 * a, *tg = ls->tgt + 4 * ia;
            float d[4], box[4], dbox[4], dd[4];
            for (int k = 0; k < 4; k++) d[k] = ls->reg[l][kd_loss_at(g, l, 4, i, k, a)];
            kd_delta_decode(an, d, stds, box);
            float w = ls->wt[ia];
            *sb += (double)w * kd_giou_elem(box, tg, dbox);
            for (int k = 0; k < 4; k++) dbox[k] *= w;
            kd_delta_decode_bwd(an, d, stds, dbox, dd);
            for (int k = 0; k < 4; k++) ls->dreg[l][kd_loss_at(g, l, 4, i, k, a)] = (float)(gs * wb * dd[k]);
            size_t co = kd_loss_at(g, l, 1, i, 0, a);
            float x = ls->ctr[l][co];
            *sctr += kd_bce_logits(x, w);
            ls->dctr[l][co] = (float)(gs * wctr * (kd_sigmoid(x) - w));
        }
}

void kd_atss_loss_levels(kd_det_loss *ls, const kd_model *m, double P, double W, double gs, kd_det_losses *out)
{
    const kd_level_geom *g = &ls->g;
    const kd_model_cfg *c = &m->cfg;
    int N = ls->N, K = ls->K;
    double gamma = c->bbox_head.loss_cls_gamma, alpha = c->bbox_head.loss_cls_alpha;
    double wc = c->bbox_head.loss_cls_weight / (P + KD_AVG_EPS);
    double wb = c->bbox_head.loss_bbox_weight / (1.0 + KD_AVG_EPS) / W;
    double wctr = c->bbox_head.loss_centerness_weight / (P + KD_AVG_EPS);
    for (int l = 0; l < g->L; l++) {
        size_t hw = (size_t)g->h[l] * g->w[l];
        memset(ls->dcls[l], 0, (size_t)N * K * hw * sizeof(float));
        memset(ls->dreg[l], 0, (size_t)N * 4 * hw * sizeof(float));
        memset(ls->dctr[l], 0, (size_t)N * hw * sizeof(float));
        double sc = 0, sb = 0, sctr = 0;
        for (int i = 0; i < N; i++)
            for (size_t a = g->off[l]; a < g->off[l + 1]; a++) {
                size_t ia = (size_t)i * ls->A + a;
                if (!ls->valid[ia]) continue;
                for (int k = 0; k < K; k++) {
                    size_t o = kd_loss_at(g, l, K, i, k, a);
                    double dx;
                    sc += kd_focal_elem(ls->cls[l][o], k == ls->label[ia], gamma, alpha, &dx);
                    ls->dcls[l][o] = (float)(gs * wc * dx);
                }
            }
        atss_positives(ls, m, l, wb, wctr, gs, &sb, &sctr);
        out->level_cls[l] = sc * wc;
        out->level_bbox[l] = sb * wb;
        out->level_centerness[l] = sctr * wctr;
        out->loss_cls += out->level_cls[l];
        out->loss_bbox += out->level_bbox[l];
        out->loss_centerness += out->level_centerness[l];
    }
}
