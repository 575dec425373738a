/* kd_losses.c — host loops of the shared KD losses (kd_losses.h) over one FPN level.
 *
 * Conventions: tensors are the head outputs in (N, C, H, W), read on the host; anchor
 * (i, y, x) is valid when y < vh[i] and x < vw[i]; losses are accumulated in double, element
 * math in float (kd_losses.h, shared with a future device version); gradients accumulate.
 * The delta-coded loops (ATSS, RetinaNet) decode with the model's kd_delta_decode; FCOS's
 * IoU loop uses the model's kd_loss_iou_log_grad.
 */
#include "worker/distill/kd_losses.h"

#include <math.h>

#include "worker/model/model.h" /* kd_delta_decode */

static int valid_at(const kd_kd_level *lv, int i, int y, int x) { return y < lv->vh[i] && x < lv->vw[i]; }

double kd_kdqfl_level(const kd_kd_level *lv, int K, const float *x, const float *t, float beta,
                      double scale, float *dx)
{
    size_t hw = (size_t)lv->H * lv->W;
    double sum = 0;
    for (int i = 0; i < lv->N; i++)
        for (int y = 0; y < lv->H; y++)
            for (int xx = 0; xx < lv->W; xx++) {
                if (!valid_at(lv, i, y, xx)) continue;
                size_t pos = (size_t)y * lv->W + xx;
                for (int c = 0; c < K; c++) {
                    size_t k = ((size_t)i * K + c) * hw + pos;
                    float d;
                    sum += kd_kdqfl_elem(x[k], kd_sigmoid(t[k]), beta, &d);
                    if (dx) dx[k] += (float)(scale * d);
                }
            }
    return sum * scale;
}

double kd_teacher_score_level(const kd_kd_level *lv, int K, const float *t_cls, float *r)
{
    size_t hw = (size_t)lv->H * lv->W;
    double sum = 0;
    for (int i = 0; i < lv->N; i++)
        for (int y = 0; y < lv->H; y++)
            for (int xx = 0; xx < lv->W; xx++) {
                size_t pos = (size_t)y * lv->W + xx, a = (size_t)i * hw + pos;
                if (!valid_at(lv, i, y, xx)) {
                    r[a] = 0;
                    continue;
                }
                float m = -INFINITY;
                for (int c = 0; c < K; c++) m = fmaxf(m, t_cls[((size_t)i * K + c) * hw + pos]);
                r[a] = kd_sigmoid(m);
                sum += r[a];
            }
    return sum;
}

double kd_kl_reg_level(const kd_kd_level *lv, int R1, const float *x, const float *t,
                       const float *w, float T, int mean, double scale, float *dx)
{
    size_t hw = (size_t)lv->H * lv->W;
    float tmp[3 * 64];
    if (R1 > 64) return NAN; /* reg_max is checked at configuration (<= 63) */
    double sum = 0;
    for (int i = 0; i < lv->N; i++)
        for (int y = 0; y < lv->H; y++)
            for (int xx = 0; xx < lv->W; xx++) {
                size_t pos = (size_t)y * lv->W + xx;
                float wa = w ? w[(size_t)i * hw + pos] : (float)valid_at(lv, i, y, xx);
                if (wa == 0.0f) continue;
                for (int s = 0; s < 4; s++) {
                    size_t k = ((size_t)i * 4 * R1 + (size_t)s * R1) * hw + pos;
                    float kl = kd_kl_row(x + k, t + k, hw, R1, T, mean, (float)(scale * wa),
                                         dx ? dx + k : NULL, tmp);
                    sum += (double)wa * kl;
                }
            }
    return sum * scale;
}

/* Distances (4 sides) of position pos of image i: softmax expectation over R1 bins; the
 * softmax of each side is kept in q (4 x R1) for the backward. */
static void integral(const float *x, size_t base, size_t hw, int R1, float *q, float *dist)
{
    for (int s = 0; s < 4; s++) {
        float *qs = q + s * R1;
        for (int j = 0; j < R1; j++) qs[j] = x[base + (size_t)(s * R1 + j) * hw];
        kd_softmax_row(qs, qs, R1);
        float e = 0.0f;
        for (int j = 0; j < R1; j++) e += qs[j] * (float)j;
        dist[s] = e;
    }
}

/* w * (1 - GIoU(box(x at base), bt)) of one position, the source box decoded from its side
 * distributions around (cx, cy) (stride units; q: 4 x R1 scratch); dx += g * d/dx through
 * the decode and the integral, g = scale * w. */
static double giou_dist_row(const float *x, size_t base, size_t hw, int R1, float cx, float cy, const float *bt,
                            float wa, double scale, float *q, float *dx)
{
    float ds[4], db[4];
    integral(x, base, hw, R1, q, ds);
    float bs[4] = {cx - ds[0], cy - ds[1], cx + ds[2], cy + ds[3]};
    double v = (double)wa * kd_giou_elem(bs, bt, db);
    if (!dx) return v;
    float dd[4] = {-db[0], -db[1], db[2], db[3]};
    for (int s = 0; s < 4; s++) {
        float g = (float)(scale * wa) * dd[s];
        for (int j = 0; j < R1; j++) /* d E / d z_j = q_j (j - E) */
            dx[base + (size_t)(s * R1 + j) * hw] += g * q[s * R1 + j] * ((float)j - ds[s]);
    }
    return v;
}

double kd_giou_dist_level(const kd_kd_level *lv, int R1, const float *x, const float *t,
                          const float *w, double scale, float *dx)
{
    size_t hw = (size_t)lv->H * lv->W;
    float qs[4 * 64], qt[4 * 64];
    if (R1 > 64) return NAN;
    double sum = 0;
    for (int i = 0; i < lv->N; i++)
        for (int y = 0; y < lv->H; y++)
            for (int xx = 0; xx < lv->W; xx++) {
                size_t pos = (size_t)y * lv->W + xx, base = (size_t)i * 4 * R1 * hw + pos;
                float wa = w[(size_t)i * hw + pos];
                if (wa == 0.0f) continue;
                float dt[4], cx = (float)xx, cy = (float)y;
                integral(t, base, hw, R1, qt, dt);
                float bt[4] = {cx - dt[0], cy - dt[1], cx + dt[2], cy + dt[3]};
                sum += giou_dist_row(x, base, hw, R1, cx, cy, bt, wa, scale, qs, dx);
            }
    return sum * scale;
}

double kd_giou_dist_delta_level(const kd_kd_level *lv, int R1, float stride, float half_w, float half_h,
                                const float *stds, const float *x, const float *t, const float *w, double scale,
                                float *dx)
{
    size_t hw = (size_t)lv->H * lv->W;
    float qs[4 * 64];
    if (R1 > 64) return NAN;
    double sum = 0;
    for (int i = 0; i < lv->N; i++)
        for (int y = 0; y < lv->H; y++)
            for (int xx = 0; xx < lv->W; xx++) {
                size_t pos = (size_t)y * lv->W + xx;
                float wa = w[(size_t)i * hw + pos];
                if (wa == 0.0f) continue;
                float cx = (float)xx, cy = (float)y, dt[4], bt[4];
                float an[4] = {cx * stride - half_w, cy * stride - half_h, cx * stride + half_w, cy * stride + half_h};
                for (int k = 0; k < 4; k++) dt[k] = t[(size_t)i * 4 * hw + (size_t)k * hw + pos];
                kd_delta_decode(an, dt, stds, bt);
                for (int k = 0; k < 4; k++) bt[k] /= stride; /* GIoU is scale-free: compare in stride units */
                sum += giou_dist_row(x, (size_t)i * 4 * R1 * hw + pos, hw, R1, cx, cy, bt, wa, scale, qs, dx);
            }
    return sum * scale;
}

double kd_kdqfl_anchor_level(const kd_kd_level *lv, int A, int K, const float *x, const float *t,
                             const float *w, float beta, double scale, float *dx)
{
    size_t hw = (size_t)lv->H * lv->W;
    double sum = 0;
    for (int i = 0; i < lv->N; i++)
        for (size_t pos = 0; pos < hw; pos++)
            for (int a = 0; a < A; a++) {
                float wa = w[((size_t)i * hw + pos) * A + a];
                if (wa == 0.0f) continue;
                for (int c = 0; c < K; c++) {
                    size_t k = ((size_t)i * A * K + (size_t)a * K + c) * hw + pos;
                    float d;
                    sum += (double)wa * kd_kdqfl_elem(x[k], kd_sigmoid(t[k]), beta, &d);
                    if (dx) dx[k] += (float)(scale * wa * d);
                }
            }
    return sum * scale;
}

double kd_teacher_score_anchor_level(const kd_kd_level *lv, int A, int K, const float *t_cls,
                                     const float *lw, float *r)
{
    size_t hw = (size_t)lv->H * lv->W;
    double sum = 0;
    for (int i = 0; i < lv->N; i++)
        for (size_t pos = 0; pos < hw; pos++)
            for (int a = 0; a < A; a++) {
                size_t ra = ((size_t)i * hw + pos) * A + a;
                if (lw[ra] == 0.0f) {
                    r[ra] = 0;
                    continue;
                }
                float m = -INFINITY;
                for (int c = 0; c < K; c++) m = fmaxf(m, t_cls[((size_t)i * A * K + (size_t)a * K + c) * hw + pos]);
                r[ra] = kd_sigmoid(m);
                sum += r[ra];
            }
    return sum;
}

double kd_giou_delta_level(const kd_kd_level *lv, int A, float stride, const float *half_w,
                           const float *half_h, const float *stds, const float *x, const float *t,
                           const float *w, double scale, float *dx)
{
    size_t hw = (size_t)lv->H * lv->W;
    double sum = 0;
    for (int i = 0; i < lv->N; i++)
        for (size_t pos = 0; pos < hw; pos++)
            for (int a = 0; a < A; a++) {
                float wa = w[((size_t)i * hw + pos) * A + a];
                if (wa == 0.0f) continue;
                size_t base = ((size_t)i * A * 4 + (size_t)a * 4) * hw + pos;
                float cx = (float)(pos % lv->W) * stride, cy = (float)(pos / lv->W) * stride;
                float an[4] = {cx - half_w[a], cy - half_h[a], cx + half_w[a], cy + half_h[a]};
                float ds[4], dt[4], bs[4], bt[4], db[4], dd[4];
                for (int k = 0; k < 4; k++) {
                    ds[k] = x[base + (size_t)k * hw];
                    dt[k] = t[base + (size_t)k * hw];
                }
                kd_delta_decode(an, ds, stds, bs);
                kd_delta_decode(an, dt, stds, bt);
                sum += (double)wa * kd_giou_elem(bs, bt, db);
                if (!dx) continue;
                for (int k = 0; k < 4; k++) db[k] *= (float)(scale * wa);
                kd_delta_decode_bwd(an, ds, stds, db, dd);
                for (int k = 0; k < 4; k++) dx[base + (size_t)k * hw] += dd[k];
            }
    return sum * scale;
}

double kd_iou_logdist_level(const kd_kd_level *lv, float stride, const float *x, const float *t,
                            const float *w, double scale, float *dx)
{
    size_t hw = (size_t)lv->H * lv->W;
    double sum = 0;
    for (int i = 0; i < lv->N; i++)
        for (size_t pos = 0; pos < hw; pos++) {
            float wa = w[(size_t)i * hw + pos];
            if (wa == 0.0f) continue;
            size_t base = (size_t)i * 4 * hw + pos;
            float px = ((float)(pos % lv->W) + 0.5f) * stride, py = ((float)(pos / lv->W) + 0.5f) * stride;
            float ds[4], dt[4], db[4];
            for (int k = 0; k < 4; k++) {
                ds[k] = expf(x[base + (size_t)k * hw]);
                dt[k] = expf(t[base + (size_t)k * hw]);
            }
            float bs[4] = {px - ds[0], py - ds[1], px + ds[2], py + ds[3]};
            float bt[4] = {px - dt[0], py - dt[1], px + dt[2], py + dt[3]};
            sum += (double)wa * kd_loss_iou_log_grad(bs, bt, db);
            if (!dx) continue;
            float dd[4] = {-db[0], -db[1], db[2], db[3]};
            for (int k = 0; k < 4; k++) dx[base + (size_t)k * hw] += (float)(scale * wa) * dd[k] * ds[k];
        }
    return sum * scale;
}

double kd_bce_pos_level(const kd_kd_level *lv, const uint8_t *pos, const float *x, const float *t,
                        double scale, float *dx)
{
    size_t n = (size_t)lv->N * lv->H * lv->W;
    double sum = 0;
    for (size_t a = 0; a < n; a++) {
        if (!pos[a]) continue;
        float tt = kd_sigmoid(t[a]);
        sum += kd_bce_logits(x[a], tt);
        if (dx) dx[a] += (float)(scale * (kd_sigmoid(x[a]) - tt));
    }
    return sum * scale;
}
