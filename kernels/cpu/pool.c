/* pool.c — max-pooling (the ResNet stem's 3x3 stride 2 padding 1, written for any k, stride,
 * pad) and the FPN top-down step: nearest-neighbour upsampling to a given size fused with
 * the add into the lateral.
 *
 * Max-pool (PyTorch semantics): padding never wins; ties go to the first element in scan
 * order; a NaN wins (the last NaN in scan order, as PyTorch's CPU kernel). argmax holds, per output, the index h*W + w of the winner within its
 * (n, c) input plane; the backward scatters dy there (planes are independent, so the
 * parallel loop over planes has no races).
 * Upsample-add: y[n,c,i,j] += top[n,c,src(i),src(j)] with kd_nearest_src (kernels/kd_math.h),
 * PyTorch's rule for F.interpolate(mode='nearest', size=...). Its backward sums dy over the
 * outputs that read each top element.
 */
#include "kernels/cpu/cpu_internal.h"
#include "kernels/kd_math.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NT(elems) ((elems) >= KD_CPU_PAR_MIN_ELEMS ? b->threads : 1)

/* One window, bounds already clipped: the first maximum in scan order; a NaN wins, the last
 * NaN in scan order (PyTorch's `val > max || isnan(val)`). */
static inline void window_max(const float *xp, int W, int h0, int h1, int w0, int w1, float *out,
                              int32_t *idx)
{
    float best = -INFINITY;
    int32_t bi = h0 * W + w0;
    for (int h = h0; h < h1; h++)
        for (int w = w0; w < w1; w++) {
            float v = xp[(size_t)h * W + w];
            if (v > best || v != v) {
                best = v;
                bi = h * W + w;
            }
        }
    *out = best;
    *idx = bi;
}

/* The ResNet stem's 3x3 stride 2: windows away from the border take the unrolled path, with
 * the same rule (strictly greater or NaN replaces). */
static void max_pool_3x3s2_plane(const float *xp, int H, int W, int pad, float *yp, int32_t *ap,
                                 int OH, int OW)
{
    for (int oh = 0; oh < OH; oh++) {
        const int h0 = oh * 2 - pad;
        const int row_inside = h0 >= 0 && h0 + 3 <= H;
        for (int ow = 0; ow < OW; ow++) {
            const int w0 = ow * 2 - pad;
            float best;
            int32_t bi;
            if (row_inside && w0 >= 0 && w0 + 3 <= W) {
                const float *r = xp + (size_t)h0 * W + w0;
                best = r[0];
                bi = h0 * W + w0;
#define KD_POOL_TAKE(OFF, DH, DW)                                                         \
    do {                                                                                  \
        float v_ = r[OFF];                                                                \
        if (v_ > best || v_ != v_) best = v_, bi = (h0 + DH) * W + w0 + DW;               \
    } while (0)
                KD_POOL_TAKE(1, 0, 1);
                KD_POOL_TAKE(2, 0, 2);
                KD_POOL_TAKE(W, 1, 0);
                KD_POOL_TAKE(W + 1, 1, 1);
                KD_POOL_TAKE(W + 2, 1, 2);
                KD_POOL_TAKE(2 * W, 2, 0);
                KD_POOL_TAKE(2 * W + 1, 2, 1);
                KD_POOL_TAKE(2 * W + 2, 2, 2);
#undef KD_POOL_TAKE
            } else {
                int hh0 = h0 < 0 ? 0 : h0, hh1 = h0 + 3 > H ? H : h0 + 3;
                int ww0 = w0 < 0 ? 0 : w0, ww1 = w0 + 3 > W ? W : w0 + 3;
                window_max(xp, W, hh0, hh1, ww0, ww1, &best, &bi);
            }
            yp[(size_t)oh * OW + ow] = best;
            if (ap) ap[(size_t)oh * OW + ow] = bi;
        }
    }
}

void kd_cpu_max_pool_fwd(const kd_backend *b, kd_shape xs, int k, int stride, int pad,
                         const float *x, float *y, int32_t *argmax)
{
    KD_CHECK(k >= 1 && stride >= 1 && pad >= 0 && 2 * pad <= k,
             "(max-pool: k %d stride %d pad %d)", k, stride, pad);
    kd_shape ys = kd_pool_out_shape(xs, k, stride, pad);
    const size_t in_plane = (size_t)xs.h * xs.w, out_plane = (size_t)ys.h * ys.w;
    const long planes = (long)xs.n * xs.c;
    if (out_plane == 0) return;
#pragma omp parallel for num_threads(NT(kd_shape_elems(xs))) schedule(dynamic, 1)
    for (long p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * in_plane;
        float *yp = y + (size_t)p * out_plane;
        int32_t *ap = argmax ? argmax + (size_t)p * out_plane : NULL;
        if (k == 3 && stride == 2) {
            max_pool_3x3s2_plane(xp, xs.h, xs.w, pad, yp, ap, ys.h, ys.w);
            continue;
        }
        for (int oh = 0; oh < ys.h; oh++) {
            int h0 = oh * stride - pad, h1 = h0 + k;
            if (h0 < 0) h0 = 0;
            if (h1 > xs.h) h1 = xs.h;
            for (int ow = 0; ow < ys.w; ow++) {
                int w0 = ow * stride - pad, w1 = w0 + k;
                if (w0 < 0) w0 = 0;
                if (w1 > xs.w) w1 = xs.w;
                float best;
                int32_t bi;
                window_max(xp, xs.w, h0, h1, w0, w1, &best, &bi);
                yp[(size_t)oh * ys.w + ow] = best;
                if (ap) ap[(size_t)oh * ys.w + ow] = bi;
            }
        }
    }
}

void kd_cpu_max_pool_bwd(const kd_backend *b, kd_shape xs, int k, int stride, int pad,
                         const int32_t *argmax, const float *dy, float *dx, int accumulate)
{
    kd_shape ys = kd_pool_out_shape(xs, k, stride, pad);
    const size_t in_plane = (size_t)xs.h * xs.w, out_plane = (size_t)ys.h * ys.w;
    const long planes = (long)xs.n * xs.c;
    if (in_plane == 0) return;
#pragma omp parallel for num_threads(NT(kd_shape_elems(xs))) schedule(dynamic, 1)
    for (long p = 0; p < planes; p++) {
        float *dp = dx + (size_t)p * in_plane;
        if (!accumulate) memset(dp, 0, in_plane * sizeof *dp);
        const float *gp = dy + (size_t)p * out_plane;
        const int32_t *ap = argmax + (size_t)p * out_plane;
        for (size_t i = 0; i < out_plane; i++) dp[ap[i]] += gp[i];
    }
}

void kd_cpu_upsample_nearest_add_fwd(const kd_backend *b, kd_shape ts, const float *top,
                                     int out_h, int out_w, float *y)
{
    const size_t in_plane = (size_t)ts.h * ts.w, out_plane = (size_t)out_h * out_w;
    const long planes = (long)ts.n * ts.c;
    if (out_plane == 0 || planes == 0) return;
    KD_CHECK(in_plane > 0, "(upsample from an empty %dx%d map to %dx%d)", ts.h, ts.w, out_h, out_w);
    int *src_w = kd_xmalloc((size_t)out_w * sizeof *src_w);
    for (int j = 0; j < out_w; j++) src_w[j] = kd_nearest_src(j, ts.w, out_w);
#pragma omp parallel for num_threads(NT((size_t)planes * out_plane)) schedule(dynamic, 1)
    for (long p = 0; p < planes; p++) {
        const float *tp = top + (size_t)p * in_plane;
        float *yp = y + (size_t)p * out_plane;
        for (int i = 0; i < out_h; i++) {
            const float *tr = tp + (size_t)kd_nearest_src(i, ts.h, out_h) * ts.w;
            float *yr = yp + (size_t)i * out_w;
            if (out_w == 2 * ts.w) {
#pragma omp simd
                for (int j = 0; j < out_w; j++) yr[j] += tr[j >> 1];
            } else {
                for (int j = 0; j < out_w; j++) yr[j] += tr[src_w[j]];
            }
        }
    }
    free(src_w);
}

void kd_cpu_upsample_nearest_add_bwd(const kd_backend *b, kd_shape ts, int out_h, int out_w,
                                     const float *dy, float *dtop, int accumulate)
{
    const size_t in_plane = (size_t)ts.h * ts.w, out_plane = (size_t)out_h * out_w;
    const long planes = (long)ts.n * ts.c;
    if (in_plane == 0 || planes == 0) return;
    int *src_w = kd_xmalloc(((size_t)out_w + 1) * sizeof *src_w);
    for (int j = 0; j < out_w; j++) src_w[j] = kd_nearest_src(j, ts.w, out_w);
#pragma omp parallel for num_threads(NT((size_t)planes * out_plane)) schedule(dynamic, 1)
    for (long p = 0; p < planes; p++) {
        float *tp = dtop + (size_t)p * in_plane;
        if (!accumulate) memset(tp, 0, in_plane * sizeof *tp);
        const float *gp = dy + (size_t)p * out_plane;
        for (int i = 0; i < out_h; i++) {
            float *tr = tp + (size_t)kd_nearest_src(i, ts.h, out_h) * ts.w;
            const float *gr = gp + (size_t)i * out_w;
            for (int j = 0; j < out_w; j++) tr[src_w[j]] += gr[j];
        }
    }
    free(src_w);
}
