/* eltwise.cu — the CUDA backend's element-wise, row-wise and resampling kernels: fill,
 * BLAS-1 (axpy, scal, add), GEMM's k == 0 case, conv bias add, ReLU, sigmoid, Scale,
 * softmax / log-softmax over the last axis, max-pool and the FPN nearest upsample-add.
 *
 * Conventions (cu_kernels.h): launchers enqueue on the given stream and return
 * cudaGetLastError(); sizes of 0 launch nothing. The per-element math is kernels/kd_math.h
 * (the same functions the CPU backend runs, so the CPU tests cover it), the rest mirrors
 * kernels/cpu/eltwise.c, blas.c and pool.c line by line.
 * Scatter-shaped backwards (max-pool, upsample) are written as gathers: one thread per
 * input element adds its contributions in the CPU's scan order (outputs in increasing
 * index), so there are no atomics, results are deterministic and match the CPU's sums
 * bit for bit.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/cu_kernels.h"
#include "kernels/kd_math.h"

#define GRID_STRIDE(i, n)                                                               \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)(n);     \
         i += (size_t)gridDim.x * blockDim.x)

/* Blocks for a grid-stride loop over n items (capped; the loop covers the rest). */
static unsigned grid_for(size_t n)
{
    size_t b = (n + KD_CU_THREADS - 1) / KD_CU_THREADS;
    const size_t cap = (size_t)1 << 18;
    return (unsigned)(b < cap ? b : cap);
}

#define LAUNCH(n, kernel, ...)                                                          \
    do {                                                                                \
        if ((n) == 0) return cudaSuccess;                                               \
        kernel<<<grid_for(n), KD_CU_THREADS, 0, s>>>(__VA_ARGS__);                      \
        return cudaGetLastError();                                                      \
    } while (0)

/* ---- memory, BLAS-1 ------------------------------------------------------------------ */

__global__ static void k_fill(float *x, size_t n, float v)
{
    GRID_STRIDE(i, n) x[i] = v;
}

__global__ static void k_axpy(size_t n, float alpha, const float *x, float *y)
{
    GRID_STRIDE(i, n) y[i] += alpha * x[i];
}

__global__ static void k_scal(size_t n, float alpha, float *x)
{
    GRID_STRIDE(i, n) x[i] *= alpha;
}

__global__ static void k_add(size_t n, const float *a, const float *b, float *y)
{
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}

__global__ static void k_gemm_beta(int m, int n, float beta, float *c, int ldc)
{
    GRID_STRIDE(i, (size_t)m * n)
    {
        float *p = c + (i / (size_t)n) * (size_t)ldc + i % (size_t)n;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
}

__global__ static void k_bias_add(size_t total, int c, size_t hw, const float *bias, float *y,
                                  int set)
{
    GRID_STRIDE(i, total)
    {
        float b = bias ? bias[(i / hw) % (size_t)c] : 0.0f;
        y[i] = set ? b : y[i] + b;
    }
}

extern "C" cudaError_t kd_cu_fill(cudaStream_t s, float *x, size_t n, float v)
{
    LAUNCH(n, k_fill, x, n, v);
}

extern "C" cudaError_t kd_cu_axpy(cudaStream_t s, size_t n, float alpha, const float *x, float *y)
{
    LAUNCH(n, k_axpy, n, alpha, x, y);
}

extern "C" cudaError_t kd_cu_scal(cudaStream_t s, size_t n, float alpha, float *x)
{
    LAUNCH(n, k_scal, n, alpha, x);
}

extern "C" cudaError_t kd_cu_add(cudaStream_t s, size_t n, const float *a, const float *b,
                                 float *y)
{
    LAUNCH(n, k_add, n, a, b, y);
}

extern "C" cudaError_t kd_cu_gemm_beta(cudaStream_t s, int m, int n, float beta, float *c,
                                       int ldc)
{
    if (m <= 0 || n <= 0) return cudaSuccess;
    LAUNCH((size_t)m * n, k_gemm_beta, m, n, beta, c, ldc);
}

extern "C" cudaError_t kd_cu_bias_add(cudaStream_t s, int n, int c, size_t hw, const float *bias,
                                      float *y, int set)
{
    size_t total = (size_t)n * (size_t)c * hw;
    LAUNCH(total, k_bias_add, total, c, hw, bias, y, set);
}

/* ---- activations, scale ----------------------------------------------------------------- */

__global__ static void k_relu_fwd(size_t n, const float *x, float *y)
{
    GRID_STRIDE(i, n) y[i] = kd_relu(x[i]);
}

__global__ static void k_relu_bwd(size_t n, const float *y, const float *dy, float *dx, int acc)
{
    GRID_STRIDE(i, n)
    {
        float g = kd_relu_grad(y[i], dy[i]);
        dx[i] = acc ? dx[i] + g : g;
    }
}

__global__ static void k_sigmoid_fwd(size_t n, const float *x, float *y)
{
    GRID_STRIDE(i, n) y[i] = kd_sigmoid(x[i]);
}

__global__ static void k_sigmoid_bwd(size_t n, const float *y, const float *dy, float *dx,
                                     int acc)
{
    GRID_STRIDE(i, n)
    {
        float g = dy[i] * y[i] * (1.0f - y[i]);
        dx[i] = acc ? dx[i] + g : g;
    }
}

__global__ static void k_scale_fwd(size_t n, const float *scale, const float *x, float *y)
{
    const float sc = scale[0];
    GRID_STRIDE(i, n) y[i] = sc * x[i];
}

__global__ static void k_scale_dx(size_t n, const float *scale, const float *dy, float *dx,
                                  int acc)
{
    const float sc = scale[0];
    GRID_STRIDE(i, n)
    {
        float g = sc * dy[i];
        dx[i] = acc ? dx[i] + g : g;
    }
}

extern "C" cudaError_t kd_cu_relu_fwd(cudaStream_t s, size_t n, const float *x, float *y)
{
    LAUNCH(n, k_relu_fwd, n, x, y);
}

extern "C" cudaError_t kd_cu_relu_bwd(cudaStream_t s, size_t n, const float *y, const float *dy,
                                      float *dx, int accumulate)
{
    LAUNCH(n, k_relu_bwd, n, y, dy, dx, accumulate);
}

extern "C" cudaError_t kd_cu_sigmoid_fwd(cudaStream_t s, size_t n, const float *x, float *y)
{
    LAUNCH(n, k_sigmoid_fwd, n, x, y);
}

extern "C" cudaError_t kd_cu_sigmoid_bwd(cudaStream_t s, size_t n, const float *y,
                                         const float *dy, float *dx, int accumulate)
{
    LAUNCH(n, k_sigmoid_bwd, n, y, dy, dx, accumulate);
}

extern "C" cudaError_t kd_cu_scale_fwd(cudaStream_t s, size_t n, const float *scale,
                                       const float *x, float *y)
{
    LAUNCH(n, k_scale_fwd, n, scale, x, y);
}

extern "C" cudaError_t kd_cu_scale_dx(cudaStream_t s, size_t n, const float *scale,
                                      const float *dy, float *dx, int accumulate)
{
    LAUNCH(n, k_scale_dx, n, scale, dy, dx, accumulate);
}

/* ---- softmax over the last axis: one thread per row, kd_math.h's row functions ---------- */

__global__ static void k_softmax_fwd(size_t rows, int cols, int log, const float *x, float *y)
{
    GRID_STRIDE(r, rows)
    {
        size_t o = r * (size_t)cols;
        if (log)
            kd_log_softmax_row(x + o, y + o, cols);
        else
            kd_softmax_row(x + o, y + o, cols);
    }
}

__global__ static void k_softmax_bwd(size_t rows, int cols, int log, const float *y,
                                     const float *dy, float *dx, int acc)
{
    GRID_STRIDE(r, rows)
    {
        size_t o = r * (size_t)cols;
        if (log)
            kd_log_softmax_row_bwd(y + o, dy + o, dx + o, cols, acc);
        else
            kd_softmax_row_bwd(y + o, dy + o, dx + o, cols, acc);
    }
}

extern "C" cudaError_t kd_cu_softmax_fwd(cudaStream_t s, size_t rows, int cols, int log,
                                         const float *x, float *y)
{
    if (cols <= 0) return cudaSuccess;
    LAUNCH(rows, k_softmax_fwd, rows, cols, log, x, y);
}

extern "C" cudaError_t kd_cu_softmax_bwd(cudaStream_t s, size_t rows, int cols, int log,
                                         const float *y, const float *dy, float *dx,
                                         int accumulate)
{
    if (cols <= 0) return cudaSuccess;
    LAUNCH(rows, k_softmax_bwd, rows, cols, log, y, dy, dx, accumulate);
}

/* ---- max-pool ------------------------------------------------------------------------ */

/* One thread per output: the CPU's scan (rows, then columns, of the clipped window);
 * strictly greater wins, so ties keep the first; a NaN wins and ends the scan. */
__global__ static void k_max_pool_fwd(size_t total, int h, int w, int oh, int ow, int k,
                                      int stride, int pad, const float *x, float *y,
                                      int32_t *argmax)
{
    const size_t out_plane = (size_t)oh * ow, in_plane = (size_t)h * w;
    GRID_STRIDE(i, total)
    {
        const size_t p = i / out_plane, r = i % out_plane;
        const int oy = (int)(r / (size_t)ow), ox = (int)(r % (size_t)ow);
        const float *xp = x + p * in_plane;
        int h0 = oy * stride - pad, h1 = h0 + k, w0 = ox * stride - pad, w1 = w0 + k;
        if (h0 < 0) h0 = 0;
        if (h1 > h) h1 = h;
        if (w0 < 0) w0 = 0;
        if (w1 > w) w1 = w;
        float best = -INFINITY;
        int32_t bi = h0 * w + w0;
        int found_nan = 0;
        for (int yy = h0; yy < h1 && !found_nan; yy++)
            for (int xx = w0; xx < w1; xx++) {
                float v = xp[(size_t)yy * w + xx];
                if (v > best || v != v) {
                    best = v;
                    bi = yy * w + xx;
                    if (v != v) {
                        found_nan = 1;
                        break;
                    }
                }
            }
        y[i] = best;
        if (argmax) argmax[i] = bi;
    }
}

/* One thread per input element: the outputs whose window can contain it, in increasing
 * output index (the CPU's scatter order), adding dy where argmax names this element. */
__global__ static void k_max_pool_bwd(size_t total, int h, int w, int oh, int ow, int k,
                                      int stride, int pad, const int32_t *argmax,
                                      const float *dy, float *dx, int acc)
{
    const size_t out_plane = (size_t)oh * ow, in_plane = (size_t)h * w;
    GRID_STRIDE(i, total)
    {
        const size_t p = i / in_plane;
        const int idx = (int)(i % in_plane);
        const int yy = idx / w, xx = idx % w;
        /* oy*stride - pad <= yy < oy*stride - pad + k */
        int oy0 = yy + pad - k + 1, oy1 = yy + pad, ox0 = xx + pad - k + 1, ox1 = xx + pad;
        oy0 = oy0 <= 0 ? 0 : (oy0 + stride - 1) / stride;
        ox0 = ox0 <= 0 ? 0 : (ox0 + stride - 1) / stride;
        oy1 = oy1 / stride;
        ox1 = ox1 / stride;
        if (oy1 > oh - 1) oy1 = oh - 1;
        if (ox1 > ow - 1) ox1 = ow - 1;
        const int32_t *ap = argmax + p * out_plane;
        const float *gp = dy + p * out_plane;
        float v = acc ? dx[i] : 0.0f;
        for (int oy = oy0; oy <= oy1; oy++)
            for (int ox = ox0; ox <= ox1; ox++) {
                size_t o = (size_t)oy * ow + ox;
                if (ap[o] == idx) v += gp[o];
            }
        dx[i] = v;
    }
}

extern "C" cudaError_t kd_cu_max_pool_fwd(cudaStream_t s, size_t planes, int h, int w, int oh,
                                          int ow, int k, int stride, int pad, const float *x,
                                          float *y, int32_t *argmax)
{
    size_t total = planes * (size_t)oh * (size_t)ow;
    LAUNCH(total, k_max_pool_fwd, total, h, w, oh, ow, k, stride, pad, x, y, argmax);
}

extern "C" cudaError_t kd_cu_max_pool_bwd(cudaStream_t s, size_t planes, int h, int w, int oh,
                                          int ow, int k, int stride, int pad,
                                          const int32_t *argmax, const float *dy, float *dx,
                                          int accumulate)
{
    size_t total = planes * (size_t)h * (size_t)w;
    LAUNCH(total, k_max_pool_bwd, total, h, w, oh, ow, k, stride, pad, argmax, dy, dx,
           accumulate);
}

/* ---- FPN nearest upsample-add ----------------------------------------------------------- */

__global__ static void k_upsample_add_fwd(size_t total, int th, int tw, int oh, int ow,
                                          const float *top, float *y)
{
    const size_t out_plane = (size_t)oh * ow, in_plane = (size_t)th * tw;
    GRID_STRIDE(i, total)
    {
        const size_t p = i / out_plane, r = i % out_plane;
        const int oy = (int)(r / (size_t)ow), ox = (int)(r % (size_t)ow);
        y[i] += top[p * in_plane + (size_t)kd_nearest_src(oy, th, oh) * tw +
                    kd_nearest_src(ox, tw, ow)];
    }
}

/* First output index whose source is t (kd_nearest_src is non-decreasing in its index);
 * *end gets one past the last. Empty range when no output reads t. */
__device__ static int src_range(int t, int in, int out, int *end)
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

/* One thread per top element: sums dy over its preimage, rows then columns in increasing
 * order (the CPU's order). */
__global__ static void k_upsample_add_bwd(size_t total, int th, int tw, int oh, int ow,
                                          const float *dy, float *dtop, int acc)
{
    const size_t out_plane = (size_t)oh * ow, in_plane = (size_t)th * tw;
    GRID_STRIDE(i, total)
    {
        const size_t p = i / in_plane, r = i % in_plane;
        const int ty = (int)(r / (size_t)tw), tx = (int)(r % (size_t)tw);
        int y1, x1;
        const int y0 = src_range(ty, th, oh, &y1), x0 = src_range(tx, tw, ow, &x1);
        const float *gp = dy + p * out_plane;
        float v = acc ? dtop[i] : 0.0f;
        for (int oy = y0; oy < y1; oy++)
            for (int ox = x0; ox < x1; ox++) v += gp[(size_t)oy * ow + ox];
        dtop[i] = v;
    }
}

extern "C" cudaError_t kd_cu_upsample_add_fwd(cudaStream_t s, size_t planes, int th, int tw,
                                              int oh, int ow, const float *top, float *y)
{
    size_t total = planes * (size_t)oh * (size_t)ow;
    if (th <= 0 || tw <= 0) return cudaSuccess;
    LAUNCH(total, k_upsample_add_fwd, total, th, tw, oh, ow, top, y);
}

extern "C" cudaError_t kd_cu_upsample_add_bwd(cudaStream_t s, size_t planes, int th, int tw,
                                              int oh, int ow, const float *dy, float *dtop,
                                              int accumulate)
{
    size_t total = planes * (size_t)th * (size_t)tw;
    LAUNCH(total, k_upsample_add_bwd, total, th, tw, oh, ow, dy, dtop, accumulate);
}
