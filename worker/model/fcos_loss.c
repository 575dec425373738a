/* fcos_loss.c — FCOS's targets and detection losses (crosskd.md §6.3, MMDetection 3.0
 * FCOSHead with norm_on_bbox False, centerness on the cls tower, no centre sampling), with
 * their gradients, on the host.
 *
 * Targets per image and point p = ((x + 0.5) s, (y + 0.5) s): for each gt the side distances
 * (l, t, r, b) = (px - x1, py - y1, x2 - px, y2 - py); a gt is a candidate when min > 0 and
 * max lies in the level's regress range [lo, hi] (inclusive); the point takes the candidate
 * of smallest area (x2 - x1)(y2 - y1) (the first on ties), else it is a negative. Every point
 * counts (FCOS has no valid flags). Centerness target c = sqrt(min(l,r)/max(l,r) *
 * min(t,b)/max(t,b)).
 *
 * Losses, with Np = max(P, 1) (P the mean over ranks of the positives) and D the reduced
 * centerness-target sum (det_loss.c passes W = max(1e-6, mean sum), MMDetection's clamp),
 * eps = FLT_EPSILON:
 *   focal (gamma, alpha, weight) over every point and class, one-hot targets, / (Np + eps);
 *   IoU loss -log(max(IoU, 1e-6)) (weight) between the boxes decoded at the points from the
 *     predicted distances exp(reg) (reg is the head's Scale * conv_reg) and from the targets,
 *     weighted by c: sum / (D + eps); the gradient passes the exp (d/dreg = d/ddist * dist);
 *   centerness BCE-with-logits (weight) against c on positives: / (Np + eps).
 */
#include "worker/model/det_loss_internal.h"

#include <math.h>
#include <string.h>

#include "kernels/kd_math.h"

void kd_fcos_assign(const kd_level_geom *g, const float *pts, int n_gt, const float *gt, int *assigned)
{
    for (int l = 0; l < g->L; l++)
        for (size_t a = g->off[l]; a < g->off[l + 1]; a++) {
            float px = pts[4 * a], py = pts[4 * a + 1], best = 1e8f;
            assigned[a] = -1;
            for (int j = 0; j < n_gt; j++) {
                const float *b = gt + 4 * j;
                float d[4] = {px - b[0], py - b[1], b[2] - px, b[3] - py};
                float mn = fminf(fminf(d[0], d[1]), fminf(d[2], d[3]));
                float mx = fmaxf(fmaxf(d[0], d[1]), fmaxf(d[2], d[3]));
                if (!(mn > 0) || !(mx >= g->regress_lo[l] && mx <= g->regress_hi[l])) continue;
                float area = (b[2] - b[0]) * (b[3] - b[1]);
                if (area < best) best = area, assigned[a] = j;
            }
        }
}

/* Side distances of point pt to box b. */
static void sides(const float *pt, const float *b, float *d)
{
    d[0] = pt[0] - b[0];
    d[1] = pt[1] - b[1];
    d[2] = b[2] - pt[0];
    d[3] = b[3] - pt[1];
}

float kd_fcos_centerness_target(const float *pt, const float *gt)
{
    float d[4];
    sides(pt, gt, d);
    float lr = fminf(d[0], d[2]) / fmaxf(d[0], d[2]), tb = fminf(d[1], d[3]) / fmaxf(d[1], d[3]);
    return sqrtf(lr * tb);
}

/* -log(max(IoU(p, t), eps)) and its gradient in p (eps 1e-6 on the union and the IoU). */
float kd_loss_iou_log_grad(const float *p, const float *t, float *dp)
{
    const float eps = 1e-6f;
    float ap = (p[2] - p[0]) * (p[3] - p[1]), at = (t[2] - t[0]) * (t[3] - t[1]);
    float ix0 = fmaxf(p[0], t[0]), iy0 = fmaxf(p[1], t[1]), ix1 = fminf(p[2], t[2]), iy1 = fminf(p[3], t[3]);
    float iw_raw = ix1 - ix0, ih_raw = iy1 - iy0, iw = fmaxf(iw_raw, 0.0f), ih = fmaxf(ih_raw, 0.0f);
    float ov = iw * ih, un_raw = ap + at - ov, un = fmaxf(un_raw, eps), iou = ov / un;
    memset(dp, 0, 4 * sizeof(float));
    if (iou < eps) return -logf(eps); /* clamped: no gradient */
    float diou = -1.0f / iou;
    float dov = diou / un, dun = un_raw > eps ? -diou * ov / (un * un) : 0.0f;
    dov -= dun; /* un = ap + at - ov */
    dp[0] = -dun * (p[3] - p[1]);
    dp[2] = dun * (p[3] - p[1]);
    dp[1] = -dun * (p[2] - p[0]);
    dp[3] = dun * (p[2] - p[0]);
    float diw = iw_raw > 0 ? dov * ih : 0.0f, dih = ih_raw > 0 ? dov * iw : 0.0f;
    /* ix1 = min(p2, t2), ix0 = max(p0, t0): PyTorch halves the gradient on ties */
    dp[2] += diw * (p[2] < t[2] ? 1.0f : p[2] == t[2] ? 0.5f : 0.0f);
    dp[0] -= diw * (p[0] > t[0] ? 1.0f : p[0] == t[0] ? 0.5f : 0.0f);
    dp[3] += dih * (p[3] < t[3] ? 1.0f : p[3] == t[3] ? 0.5f : 0.0f);
    dp[1] -= dih * (p[1] > t[1] ? 1.0f : p[1] == t[1] ? 0.5f : 0.0f);
    return -logf(iou);
}

void kd_fcos_loss_levels(kd_det_loss *ls, const kd_model *m, double P, double W, double gs, kd_det_losses *out)
{
    const kd_level_geom *g = &ls->g;
    const kd_model_cfg *c = &m->cfg;
    int N = ls->N, K = ls->K;
    double Np = P > 1.0 ? P : 1.0;
    double gamma = c->bbox_head.loss_cls_gamma, alpha = c->bbox_head.loss_cls_alpha;
    double wc = c->bbox_head.loss_cls_weight / (Np + KD_AVG_EPS);
    double wb = c->bbox_head.loss_bbox_weight / (W + KD_AVG_EPS);
    double wctr = c->bbox_head.loss_centerness_weight / (Np + KD_AVG_EPS);
    for (int l = 0; l < g->L; l++) {
        size_t hw = (size_t)g->h[l] * g->w[l];
        memset(ls->dcls[l], 0, (size_t)N * K * hw * sizeof(float));
        memset(ls->dreg[l], 0, (size_t)N * 4 * hw * sizeof(float));
        memset(ls->dctr[l], 0, (size_t)N * hw * sizeof(float));
        double sc = 0, sb = 0, sctr = 0;
        for (int i = 0; i < N; i++)
            for (size_t a = g->off[l]; a < g->off[l + 1]; a++) {
                size_t ia = (size_t)i * ls->A + a;
                int lab = ls->label[ia];
                for (int k = 0; k < K; k++) {
                    size_t o = kd_loss_at(g, l, K, i, k, a);
                    double dx;
                    sc += kd_focal_elem(ls->cls[l][o], k == lab, gamma, alpha, &dx);
                    ls->dcls[l][o] = (float)(gs * wc * dx);
                }
                if (lab < 0) continue;
                const float *pt = ls->anchors + 4 * a;
                float d[4], t[4], bp[4], bt[4], db[4];
                for (int k = 0; k < 4; k++) d[k] = expf(ls->reg[l][kd_loss_at(g, l, 4, i, k, a)]);
                sides(pt, ls->tgt + 4 * ia, t);
                float box_p[4] = {pt[0] - d[0], pt[1] - d[1], pt[0] + d[2], pt[1] + d[3]};
                float box_t[4] = {pt[0] - t[0], pt[1] - t[1], pt[0] + t[2], pt[1] + t[3]};
                memcpy(bp, box_p, sizeof bp);
                memcpy(bt, box_t, sizeof bt);
                float w = ls->wt[ia];
                sb += (double)w * kd_loss_iou_log_grad(bp, bt, db);
                float dd[4] = {-db[0], -db[1], db[2], db[3]};
                for (int k = 0; k < 4; k++)
                    ls->dreg[l][kd_loss_at(g, l, 4, i, k, a)] = (float)(gs * wb * w * dd[k] * d[k]);
                size_t co = kd_loss_at(g, l, 1, i, 0, a);
                float x = ls->ctr[l][co];
                sctr += kd_bce_logits(x, w);
                ls->dctr[l][co] = (float)(gs * wctr * (kd_sigmoid(x) - w));
            }
        out->level_cls[l] = sc * wc;
        out->level_bbox[l] = sb * wb;
        out->level_centerness[l] = sctr * wctr;
        out->loss_cls += out->level_cls[l];
        out->loss_bbox += out->level_bbox[l];
        out->loss_centerness += out->level_centerness[l];
    }
}
