/* gfl_loss.c — GFL's detection losses (crosskd.md §5.1, MMDetection 3.0 GFLHead) with
 * their gradients, on the host, given the normalisers P (mean over ranks of num_pos) and
 * W = max(1, mean of the weight sums) (det_loss.c prepares the assignment and statistics):
 *     QFL (beta, weight) over every valid anchor and class: negatives BCE(x,0)*sigma^beta,
 *       the label class of a positive BCE(x,q)*|sigma-q|^beta, q = IoU(decoded box
 *       (detached), gt) in stride units; sum / (P + eps);
 *     GIoU (weight) on positives, weighted by w_a: sum / (1 + eps) / W;
 *     DFL (weight) on positives, 4 sides, targets clamped to [0, reg_max - 0.1], weighted by
 *       w_a: sum / (4 + eps) / W;
 *   eps = FLT_EPSILON (MMDetection adds it to every avg_factor). Gradients (crosskd.md §13.2)
 *   go to the logits: QFL directly, GIoU through decode and the integral
 *   (dD/dz_j = p_j (j - D)), DFL as softmax minus the two-bin target. min/max ties split the
 *   gradient in half as PyTorch's minimum/maximum do; clamped quantities get no gradient.
 */
#include "worker/model/det_loss_internal.h"

#include <math.h>
#include <string.h>

#include "kernels/kd_giou.h"
#include "kernels/kd_math.h"

void kd_det_loss_levels(kd_det_loss *ls, const kd_model *m, double P, double W, double grad_scale,
                        kd_det_losses *out)
{
    const kd_level_geom *g = &ls->g;
    int N = ls->N, K = ls->K, R1 = ls->R + 1, RC = 4 * R1;
    double beta = m->cfg.bbox_head.loss_cls_beta;
    int beta2 = beta == 2.0; /* GFL's value: powers by multiplication (the hot loop) */
    double wc = m->cfg.bbox_head.loss_cls_weight / (P + KD_AVG_EPS);
    double wb = m->cfg.bbox_head.loss_bbox_weight / (1.0 + KD_AVG_EPS) / W;
    double wd = m->cfg.bbox_head.loss_dfl_weight / (4.0 + KD_AVG_EPS) / W;
    float prob[72], lsm[72];
    for (int l = 0; l < g->L; l++) {
        size_t hw = (size_t)g->h[l] * g->w[l];
        memset(ls->dcls[l], 0, (size_t)N * K * hw * sizeof(float));
        memset(ls->dreg[l], 0, (size_t)N * RC * hw * sizeof(float));
        float s = (float)g->stride[l];
        double sb = 0, sd = 0, sc = 0;
        /* positives: decode, GIoU, DFL, quality score */
        for (int i = 0; i < N; i++)
            for (size_t a = g->off[l]; a < g->off[l + 1]; a++) {
                size_t ia = (size_t)i * ls->A + a;
                ls->score[ia] = 0;
                if (ls->label[ia] < 0) continue;
                const float *an = ls->anchors + 4 * a;
                float px = (an[0] + an[2]) / 2.0f / s, py = (an[1] + an[3]) / 2.0f / s;
                float dist[4], z[4][72];
                for (int k = 0; k < 4; k++) {
                    for (int j = 0; j < R1; j++) z[k][j] = ls->reg[l][kd_loss_at(g, l, RC, i, k * R1 + j, a)];
                    kd_softmax_row(z[k], prob, R1);
                    float d = 0;
                    for (int j = 0; j < R1; j++) d += prob[j] * (float)j;
                    dist[k] = d;
                }
                float box[4] = {px - dist[0], py - dist[1], px + dist[2], py + dist[3]};
                const float *tg = ls->tgt + 4 * ia;
                float tb[4] = {tg[0] / s, tg[1] / s, tg[2] / s, tg[3] / s};
                float w = ls->wt[ia];
                ls->score[ia] = kd_loss_iou_aligned(box, tb);
                float dbox[4];
                float lg = kd_giou_elem(box, tb, dbox);
                sb += (double)w * lg;
                float ddist[4] = {-dbox[0], -dbox[1], dbox[2], dbox[3]};
                float t4[4] = {px - tb[0], py - tb[1], tb[2] - px, tb[3] - py};
                for (int k = 0; k < 4; k++) {
                    float t = t4[k];
                    if (t < 0) t = 0;
                    if (t > (float)ls->R - 0.1f) t = (float)ls->R - 0.1f;
                    int yl = (int)t, yr = yl + 1;
                    float wl = (float)yr - t, wr = t - (float)yl;
                    kd_softmax_row(z[k], prob, R1);
                    kd_log_softmax_row(z[k], lsm, R1);
                    sd += (double)w * (-lsm[yl] * wl - lsm[yr] * wr);
                    for (int j = 0; j < R1; j++) {
                        float gdfl = prob[j] - (j == yl ? wl : 0.0f) - (j == yr ? wr : 0.0f);
                        float gint = prob[j] * ((float)j - dist[k]) * ddist[k];
                        float gr = (float)(grad_scale * (wd * w * gdfl + wb * w * gint));
                        ls->dreg[l][kd_loss_at(g, l, RC, i, k * R1 + j, a)] += gr;
                    }
                }
            }
        /* QFL over valid anchors */
        for (int i = 0; i < N; i++)
            for (size_t a = g->off[l]; a < g->off[l + 1]; a++) {
                size_t ia = (size_t)i * ls->A + a;
                if (!ls->valid[ia]) continue;
                int lab = ls->label[ia];
                for (int c = 0; c < K; c++) {
                    size_t o = kd_loss_at(g, l, K, i, c, a);
                    float x = ls->cls[l][o], sg = kd_sigmoid(x);
                    double loss, grad;
                    if (c == lab) {
                        float q = ls->score[ia];
                        double d = (double)sg - q, ad = fabs(d);
                        double bce = kd_bce_logits(x, q);
                        loss = bce * pow(ad, beta);
                        double sgn = d > 0 ? 1 : (d < 0 ? -1 : 0);
                        grad = d * pow(ad, beta) +
                               (ad > 0 ? bce * beta * pow(ad, beta - 1) * sgn * sg * (1 - sg) : 0);
                    } else {
                        double bce = kd_bce_logits(x, 0.0f);
                        double pb = beta2 ? (double)sg * sg : pow(sg, beta);          /* sg^beta */
                        double pb1 = beta2 ? (double)sg : pow(sg, beta - 1);        /* sg^(beta-1) */
                        loss = bce * pb;
                        grad = sg * pb + bce * beta * pb1 * sg * (1 - sg);
                    }
                    sc += loss;
                    ls->dcls[l][o] = (float)(grad_scale * wc * grad);
                }
            }
        out->level_cls[l] = sc * wc;
        out->level_bbox[l] = sb * wb;
        out->level_dfl[l] = sd * wd;
        out->loss_cls += out->level_cls[l];
        out->loss_bbox += out->level_bbox[l];
        out->loss_dfl += out->level_dfl[l];
    }
}
