/* pool_math.h — the per-element bodies of the CUDA max-pool and nearest upsample-add kernels
 * (eltwise.cu), written once for nvcc and the C compiler (KD_HD from kernels/kd_math.h) so
 * the CPU can run exactly the GPU's index logic: tests/unit/cuda checks them against the
 * CPU backend on every machine, GPU or not.
 *
 * The CPU backend scatters (each output adds into the input it came from); a GPU thread
 * per input element instead gathers: it visits the outputs that can read its element, in
 * increasing output index, which is the CPU's scatter order, so the float sums are the same
 * additions in the same order (bit-identical) and no atomics are needed.
 * Planes are single (n, c) planes, row-major; indices are within the plane.
 */
#ifndef KD_KERNELS_CUDA_POOL_MATH_H
#define KD_KERNELS_CUDA_POOL_MATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kd_math.h"

/* Max over the window of output (oy, ox), clipped to the map; padding never wins; strictly
 * greater replaces (ties keep the first in scan order); a NaN wins and ends the scan. */
KD_HD void kd_max_pool_one(const float *xp, int h, int w, int oy, int ox, int k, int stride,
                           int pad, float *best_out, int32_t *idx_out)
{
    int h0 = oy * stride - pad, h1 = h0 + k, w0 = ox * stride - pad, w1 = w0 + k;
    if (h0 < 0) h0 = 0;
    if (h1 > h) h1 = h;
    if (w0 < 0) w0 = 0;
    if (w1 > w) w1 = w;
    float best = -INFINITY;
    int32_t bi = h0 * w + w0;
    for (int yy = h0; yy < h1; yy++)
        for (int xx = w0; xx < w1; xx++) {
            float v = xp[(size_t)yy * w + xx];
            if (v > best || v != v) {
                best = v;
                bi = yy * w + xx;
                if (v != v) {
                    *best_out = best;
                    *idx_out = bi;
                    return;
                }
            }
        }
    *best_out = best;
    *idx_out = bi;
}

/* Gradient of input element idx (= yy*w + xx) of one plane: init plus dy of every output
 * whose argmax is idx, outputs in increasing index. Those outputs satisfy
 * oy*stride - pad <= yy < oy*stride - pad + k (and the same for x). */
KD_HD float kd_max_pool_bwd_one(const int32_t *ap, const float *gp, int w, int oh, int ow, int k,
                                int stride, int pad, int idx, float init)
{
    const int yy = idx / w, xx = idx % w;
    int oy0 = yy + pad - k + 1, oy1 = yy + pad, ox0 = xx + pad - k + 1, ox1 = xx + pad;
    oy0 = oy0 <= 0 ? 0 : (oy0 + stride - 1) / stride;
    ox0 = ox0 <= 0 ? 0 : (ox0 + stride - 1) / stride;
    oy1 = oy1 / stride;
    ox1 = ox1 / stride;
    if (oy1 > oh - 1) oy1 = oh - 1;
    if (ox1 > ow - 1) ox1 = ow - 1;
    float v = init;
    for (int oy = oy0; oy <= oy1; oy++)
        for (int ox = ox0; ox <= ox1; ox++) {
            size_t o = (size_t)oy * ow + ox;
            if (ap[o] == idx) v += gp[o];
        }
    return v;
}

/* The outputs i (0 <= i < out) with kd_nearest_src(i, in, out) == t: [first, *end). The
 * source index is non-decreasing in i, so they are contiguous; empty when none. */
KD_HD int kd_nearest_range(int t, int in, int out, int *end)
{
    if (out <= 0 || in <= 0) {
        *end = 0;
        return 0;
    }
    int i = (int)((long long)t * out / in);
    if (i > out - 1) i = out - 1;
    while (i > 0 && kd_nearest_src(i - 1, in, out) >= t) i--;
    while (i < out && kd_nearest_src(i, in, out) < t) i++;
    int e = i;
    while (e < out && kd_nearest_src(e, in, out) == t) e++;
    *end = e;
    return i;
}

/* Gradient of top element (ty, tx) of one plane: init plus dy over its preimage, rows then
 * columns in increasing order. */
KD_HD float kd_upsample_bwd_one(const float *gp, int th, int tw, int oh, int ow, int ty, int tx,
                                float init)
{
    int y1, x1;
    const int y0 = kd_nearest_range(ty, th, oh, &y1), x0 = kd_nearest_range(tx, tw, ow, &x1);
    float v = init;
    for (int oy = y0; oy < y1; oy++)
        for (int ox = x0; ox < x1; ox++) v += gp[(size_t)oy * ow + ox];
    return v;
}

#endif
