/* ld.c — LD, Localization Distillation with its main and valuable-localisation regions
 * (kd-methods.md §4; HikariTJU/LD, LDHead.loss_single and ATSSAssigner.get_vlr_region), on
 * the student's own GFL predictions. Per image, with the student's ATSS positives:
 *
 *   Main LD (logged in loss_reg_kd; loss_reg_kd.loss_weight 0.25, loss_reg_kd.T 10):
 *     sum over positive anchors a and the 4 sides of w_a * T^2 * mean-bin KL(softmax(t/T) ||
 *     softmax(x/T)) / 4,  w_a = max_c sigma(student cls logit) (detached)
 *   VLR LD (logged in loss_reg_kd, same weight and T):
 *     sum over anchors with vlr_a > 0 of vlr_a * T^2 * mean-bin KL / 16
 *   Main KD (logged in loss_cls_kd; loss_cls_kd.loss_weight 10, T 2 fixed — no option):
 *     per level, sum over its positives of T^2 * mean-class KL(softmax(t/2) || softmax(x/2))
 *     / (the level's positive count on this rank)
 * No normalisation by the number of positives for the LD terms (constant 4 and 16, as LD's
 * code; the sums grow with images per rank — the maintainers' acknowledged pitfall: the
 * published numbers used 3 images per GPU; rescale the weight when that changes).
 *
 * VLR region (get_vlr_region): per ground truth g, thr_g = mean + unbiased std of the IoUs of
 * its ATSS candidates (the topk valid anchors nearest to its centre on each level, ties to
 * the lower index); every valid anchor a qualifies for g when 0.25 thr_g <= DIoU(a, g) <
 * thr_g (no centre-in-box test), and vlr_a = IoU(a, g*) of the qualifying g with the largest
 * IoU (the code's IoU weight, not a 0/1 mask). DIoU = IoU - centre distance^2 / (enclosing
 * diagonal^2 + 1e-6) [reconstructed: the eps of LD's DIoU was not read; 1e-6 like the IoU's].
 * Positives can fall in the VLR band too (DIoU <= IoU); they are counted in both, as in LD.
 * Gradients go to the student's d_cls / d_reg (pred_mimic.c's plumbing).
 */
#include "worker/distill/distill_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LD_CLS_T 2.0f
#define VLR_ALPHA 0.25

static double iou_of(const float *a, const float *b)
{
    double iw = fmin(a[2], b[2]) - fmax(a[0], b[0]), ih = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    double ov = (iw > 0 ? iw : 0) * (ih > 0 ? ih : 0);
    double un = (double)(a[2] - a[0]) * (a[3] - a[1]) + (double)(b[2] - b[0]) * (b[3] - b[1]) - ov;
    return ov / (un > 1e-6 ? un : 1e-6);
}

static double diou_of(const float *a, const float *b, double iou)
{
    double dx = (a[0] + a[2]) * 0.5 - (b[0] + b[2]) * 0.5, dy = (a[1] + a[3]) * 0.5 - (b[1] + b[3]) * 0.5;
    double cw = fmax(a[2], b[2]) - fmin(a[0], b[0]), ch = fmax(a[3], b[3]) - fmin(a[1], b[1]);
    return iou - (dx * dx + dy * dy) / (cw * cw + ch * ch + 1e-6);
}

/* ATSS's threshold of gt box b over the valid anchors (mean + unbiased std of the candidate
 * IoUs); dist and idx: scratch of the largest level's anchor count. */
static double atss_threshold(const kd_level_geom *g, const float *anchors, const uint8_t *valid, int topk,
                             const float *b, double *dist, size_t *idx)
{
    double gx = (b[0] + b[2]) * 0.5, gy = (b[1] + b[3]) * 0.5, s = 0, s2 = 0;
    int n = 0;
    for (int l = 0; l < g->L; l++) {
        size_t m = 0;
        for (size_t a = g->off[l]; a < g->off[l + 1]; a++) {
            if (!valid[a]) continue;
            const float *an = anchors + 4 * a;
            double dx = (an[0] + an[2]) * 0.5 - gx, dy = (an[1] + an[3]) * 0.5 - gy;
            dist[m] = sqrt(dx * dx + dy * dy);
            idx[m++] = a;
        }
        size_t k = m < (size_t)topk ? m : (size_t)topk;
        for (size_t r = 0; r < k; r++) { /* selection of the k nearest, stable */
            size_t best = r;
            for (size_t q = r + 1; q < m; q++)
                if (dist[q] < dist[best]) best = q;
            double td = dist[best];
            size_t ti = idx[best];
            memmove(dist + r + 1, dist + r, (best - r) * sizeof *dist);
            memmove(idx + r + 1, idx + r, (best - r) * sizeof *idx);
            dist[r] = td, idx[r] = ti;
            double v = iou_of(anchors + 4 * idx[r], b);
            s += v, s2 += v * v, n++;
        }
    }
    if (n < 2) return INFINITY;
    double mean = s / n, var = (s2 - n * mean * mean) / (n - 1);
    return mean + sqrt(var > 0 ? var : 0);
}

/* vlr[a] for the valid anchors of one image. */
static void vlr_region(const kd_level_geom *g, const float *anchors, const uint8_t *valid, int topk,
                       const kd_image_gt *gt, float *vlr, double *dist, size_t *idx)
{
    size_t A = g->off[g->L];
    memset(vlr, 0, A * sizeof *vlr);
    for (int j = 0; j < gt->n; j++) {
        const float *b = gt->boxes + 4 * j;
        double thr = atss_threshold(g, anchors, valid, topk, b, dist, idx);
        for (size_t a = 0; a < A; a++) {
            if (!valid[a]) continue;
            double iou = iou_of(anchors + 4 * a, b), di = diou_of(anchors + 4 * a, b, iou);
            if (di >= VLR_ALPHA * thr && di < thr && iou > vlr[a]) vlr[a] = (float)iou;
        }
    }
}

void kd_ld_compute(kd_distiller *d, const kd_model *st, const kd_det_loss *ls, kd_distill_terms *out)
{
    int n = st->n, K = d->K, R1 = d->R1;
    const kd_level_geom *g = &d->g;
    size_t A = g->off[g->L], lmax = 0;
    kd_distill_zero_grads(d, n);
    for (int l = 0; l < g->L; l++) lmax = g->off[l + 1] - g->off[l] > lmax ? g->off[l + 1] - g->off[l] : lmax;
    float *anchors = malloc(A * 4 * sizeof *anchors), *vlr = malloc(A * sizeof *vlr);
    uint8_t *valid = malloc(A);
    double *dist = malloc(lmax * sizeof *dist);
    size_t *idx = malloc(lmax * sizeof *idx);
    float *tmp = kd_hbuf_get(&d->feat_h[0], 3 * (size_t)(K > R1 ? K : R1));
    double npos[KD_MAX_LEVELS] = {0};
    for (int i = 0; i < n; i++) {
        const int *label = kd_det_loss_assigned(ls, i);
        for (int l = 0; l < g->L; l++)
            for (size_t a = g->off[l]; a < g->off[l + 1]; a++) npos[l] += label[a] >= 0;
    }
    int div = (int)st->cfg.data_preprocessor.pad_size_divisor;
    double ld_main = d->w_reg / 4.0, ld_vlr = d->w_reg / 16.0;
    for (int i = 0; i < n; i++) {
        const kd_image_gt *gt = &d->gts[i];
        kd_anchors_image(g, (gt->img_h + div - 1) / div * div, (gt->img_w + div - 1) / div * div, anchors, valid);
        vlr_region(g, anchors, valid, (int)st->cfg.train_cfg.topk, gt, vlr, dist, idx);
        const int *label = kd_det_loss_assigned(ls, i);
        for (int l = 0; l < g->L; l++) {
            size_t hw = (size_t)g->h[l] * g->w[l];
            for (size_t a = g->off[l]; a < g->off[l + 1]; a++) {
                size_t pos = a - g->off[l];
                size_t kc = (size_t)i * K * hw + pos, kr = (size_t)i * 4 * R1 * hw + pos;
                double reg_w = 0;
                if (label[a] >= 0) {
                    float m = -INFINITY;
                    for (int c = 0; c < K; c++) m = fmaxf(m, d->sc[l].p[kc + (size_t)c * hw]);
                    reg_w += ld_main * kd_sigmoid(m);
                    double cs = d->w_cls / npos[l];
                    out->loss_cls_kd += cs * kd_kl_row(d->sc[l].p + kc, d->tc[l].p + kc, hw, K, LD_CLS_T, 1,
                                                       (float)cs, d->dc[l].p + kc, tmp);
                }
                if (vlr[a] > 0) reg_w += ld_vlr * vlr[a];
                if (reg_w == 0 || d->w_reg == 0) continue;
                for (int s = 0; s < 4; s++) {
                    size_t k = kr + (size_t)s * R1 * hw;
                    out->loss_reg_kd += reg_w * kd_kl_row(d->sr[l].p + k, d->tr[l].p + k, hw, R1, d->T, 1,
                                                          (float)reg_w, d->dr[l].p + k, tmp);
                }
            }
        }
    }
    free(anchors);
    free(vlr);
    free(valid);
    free(dist);
    free(idx);
}
