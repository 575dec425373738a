/* kd_losses.h — the prediction-level distillation losses every method shares, written once.
 *
 * Element math (KD_HD, host and device, like kernels/kd_math.h):
 *   kd_kdqfl_elem      KD-QFL / BCKD's binary KD: BCE(x, t) * |sigma(x) - t|^beta with its
 *                      derivative in x (the modulating factor is differentiable, crosskd.md
 *                      §4.4; §13.2 for beta 1); beta 0 is plain sigmoid-BCE KD.
 *   kd_kl_row          KL(softmax(t/T) || softmax(x/T)) * T^2 over one row of `cols` logits,
 *                      summed (class_reduction 'sum') or averaged ('mean', LD), with its
 *                      gradient T * (q - p) (/ cols for 'mean'); a teacher probability of
 *                      0 contributes 0 (PyTorch's xlogy).
 *   (kd_giou_elem, 1 - GIoU with its gradient, is kernels/kd_giou.h: the detection losses
 *   use it too.)
 * Level loops (host, kd_losses.c) over the head-output layout (N, C, H, W): anchor a of
 * image i at position (y, x) is row (i, y, x) with one column per channel (crosskd.md §5
 * flattening); `valid` is the per-image, per-position label weight (1 valid, 0 padding).
 * Every loop adds `scale` times the element gradient to dx (accumulates) and returns the
 * scaled loss, so the caller folds weight and normaliser into `scale` once.
 */
#ifndef KD_DISTILL_KD_LOSSES_H
#define KD_DISTILL_KD_LOSSES_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kd_giou.h"
#include "kernels/kd_math.h"

/* Loss and d/dx of BCE(x, t) * |sigma(x) - t|^beta. */
KD_HD float kd_kdqfl_elem(float x, float t, float beta, float *dx)
{
    float s = kd_sigmoid(x), u = s - t, au = fabsf(u);
    float bce = kd_bce_logits(x, t);
    float mod = beta == 1.0f ? au : beta == 0.0f ? 1.0f : powf(au, beta);
    /* d|u|^beta/dx = beta |u|^(beta-1) sign(u) s (1-s) */
    float dmod = beta == 0.0f || au == 0.0f ? 0.0f
               : beta * (beta == 1.0f ? 1.0f : powf(au, beta - 1.0f)) * (u > 0 ? 1.0f : -1.0f) * s * (1.0f - s);
    *dx = u * mod + bce * dmod;
    return bce * mod;
}

/* T^2 * sum_j p_j (log p_j - log q_j) with p = softmax(t/T), q = softmax(x/T), divided by
 * cols when mean != 0. Adds g * dKL/dx_j to dx[j * stride] (x, t read with the same stride).
 * tmp: 3 * cols floats of scratch. */
KD_HD float kd_kl_row(const float *x, const float *t, size_t stride, int cols, float T, int mean,
                      float g, float *dx, float *tmp)
{
    float *xs = tmp, *lp = tmp + cols, *lq = tmp + 2 * cols;
    for (int j = 0; j < cols; j++) {
        xs[j] = x[j * stride] / T;
        lp[j] = t[j * stride] / T;
    }
    kd_log_softmax_row(lp, lp, cols);
    kd_log_softmax_row(xs, lq, cols);
    float kl = 0.0f, red = mean ? 1.0f / (float)cols : 1.0f;
    for (int j = 0; j < cols; j++) {
        float p = expf(lp[j]);
        if (p > 0.0f) kl += p * (lp[j] - lq[j]);
        if (dx) dx[j * stride] += g * red * T * (expf(lq[j]) - p);
    }
    return T * T * kl * red;
}

/* Geometry of one level for the loops: N images of H x W positions, and per image the valid
 * extent (rows y < vh[i], columns x < vw[i]; MMDetection's valid flags). */
typedef struct kd_kd_level {
    int N, H, W;
    const int *vh, *vw;
} kd_kd_level;

/* sum over valid anchors and K classes of kdqfl(x, sigma(t)), times scale; dx += scale * d. */
double kd_kdqfl_level(const kd_kd_level *lv, int K, const float *x, const float *t, float beta,
                      double scale, float *dx);

/* Per-anchor weight: r = max_c sigma(t_cls) on valid anchors, 0 elsewhere (written to r,
 * N*H*W); returns the level's sum. */
double kd_teacher_score_level(const kd_kd_level *lv, int K, const float *t_cls, float *r);

/* sum over anchors of w_a * sum over the 4 sides of KL(t || x) on the (R+1)-bin
 * distributions (reg layout N, 4(R+1), H, W), times scale; w may be NULL (all 1, valid
 * only). dx += scale * w_a * dKL. */
double kd_kl_reg_level(const kd_kd_level *lv, int R1, const float *x, const float *t,
                       const float *w, float T, int mean, double scale, float *dx);

/* sum over anchors of w_a * (1 - GIoU(box(x_a), box(t_a))), boxes decoded from the side
 * distributions (softmax expectation over R1 bins, stride units) around the anchor centre
 * (x, y) of its position; times scale; the teacher box is constant, dx += scale * w_a *
 * d/dx through the decode and the integral. w_a == 0 anchors are skipped. */
double kd_giou_dist_level(const kd_kd_level *lv, int R1, const float *x, const float *t,
                          const float *w, double scale, float *dx);

/* The same with a delta-coded teacher of one anchor per location (an ATSS teacher of a GFL
 * student, prediction mimicking across head types): the teacher box is t's deltas (layout
 * N, 4, H, W) decoded (kd_delta_decode, stds) at the anchor of centre (x stride, y stride)
 * and half-extents half_w, half_h (pixels); the source box is x's side distributions around
 * the same centre. */
double kd_giou_dist_delta_level(const kd_kd_level *lv, int R1, float stride, float half_w, float half_h,
                                const float *stds, const float *x, const float *t, const float *w, double scale,
                                float *dx);

/* Anchor-row loops (A anchors per location: row (i, pos, a) has weight index
 * (i*H*W + pos)*A + a and its K class channels a*K.., its 4 deltas a*4..). */

/* sum over anchor rows of w_a * sum_c kdqfl(x, sigma(t)) (w_a: the label weight, 0 skips
 * the row), times scale; dx += scale * w_a * d. */
double kd_kdqfl_anchor_level(const kd_kd_level *lv, int A, int K, const float *x, const float *t,
                             const float *w, float beta, double scale, float *dx);

/* r_a = sigma(max_c t_cls) of each anchor row where lw_a != 0, else 0; returns the sum. */
double kd_teacher_score_anchor_level(const kd_kd_level *lv, int A, int K, const float *t_cls,
                                     const float *lw, float *r);

/* sum over anchor rows of w_a * (1 - GIoU(box(x_a), box(t_a))), boxes delta-decoded
 * (kd_delta_decode, stds) at the anchors: centre (x*stride, y*stride), half-extents
 * half_w[a], half_h[a] (pixels); times scale; the teacher box is constant, dx += scale *
 * w_a * d/dx through the decode. w_a == 0 rows are skipped. */
double kd_giou_delta_level(const kd_kd_level *lv, int A, float stride, const float *half_w,
                           const float *half_h, const float *stds, const float *x, const float *t,
                           const float *w, double scale, float *dx);

/* FCOS: sum over every position of w_a * -log(max(IoU, 1e-6)) between the boxes decoded at
 * the points ((x + 0.5) stride, (y + 0.5) stride) from the distances exp(x) and exp(t) (reg
 * layout N, 4, H, W, log distances), times scale; dx += scale * w_a * d/dx through the exp. */
double kd_iou_logdist_level(const kd_kd_level *lv, float stride, const float *x, const float *t,
                            const float *w, double scale, float *dx);

/* sum over the anchors with pos[a] != 0 (N*H*W) of BCE(x_a, sigma(t_a)) on one-channel
 * logits, times scale; dx += scale * (sigma(x) - sigma(t)). */
double kd_bce_pos_level(const kd_kd_level *lv, const uint8_t *pos, const float *x, const float *t,
                        double scale, float *dx);

#endif
