/* eltwise.cu — the CUDA backend's element-wise, row-wise and resampling kernels: fill,
 * BLAS-1 (axpy, scal, add), the optimiser's SGD step, GEMM's k == 0 case, the non-finite check of loss scaling, conv
 * bias add, ReLU, sigmoid, Scale, softmax / log-softmax over the last axis, max-pool and the FPN nearest upsample-add.
 *
 * Conventions (cu_kernels.h): launchers enqueue on the given stream and return
 * cudaGetLastError(); sizes of 0 launch nothing. The per-element math is kernels/kd_math.h
 * (the same functions the CPU backend runs, so the CPU tests cover it), the rest mirrors
 * kernels/cpu/eltwise.c, blas.c and pool.c line by line.
 * Scatter-shaped backwards (max-pool, upsample) are written as gathers: one thread per
 * input element adds its contributions in the CPU's scan order (outputs in increasing
 * index), so there are no atomics, results are deterministic and match the CPU's sums
 * bit for bit. Their per-element bodies are kernels/cuda/pool_math.h, shared with the C
 * compiler so the CPU tests run them too.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/cu_kernels.h"
#include "kernels/cuda/pool_math.h"
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

/* kd_sgd_elem is the CPU backend's element too (kernels/cpu/blas.c): same bits. */
__global__ static void k_sgd(size_t n, float lr, float mom, float wd, float *w, const float *g,
                             float *v)
{
    GRID_STRIDE(i, n) kd_sgd_elem(&w[i], g[i], &v[i], lr, mom, wd);
}

__global__ static void k_gemm_beta(int m, int n, float beta, float *c, int ldc)
{
    GRID_STRIDE(i, (size_t)m * n)
    {
        float *p = c + (i / (size_t)n) * (size_t)ldc + i % (size_t)n;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
}

/* Every thread that sees a non-finite value stores 1: a benign race, the result is the same. */
__global__ static void k_flag_nonfinite(size_t n, const float *x, int *flag)
{
    GRID_STRIDE(i, n)
    {
        if (!isfinite(x[i])) *flag = 1;
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

extern "C" cudaError_t kd_cu_sgd_step(cudaStream_t s, size_t n, float lr, float momentum,
                                      float weight_decay, float *w, const float *g, float *v)
{
    LAUNCH(n, k_sgd, n, lr, momentum, weight_decay, w, g, v);
}

extern "C" cudaError_t kd_cu_gemm_beta(cudaStream_t s, int m, int n, float beta, float *c,
                                       int ldc)
{
    if (m <= 0 || n <= 0) return cudaSuccess;
    LAUNCH((size_t)m * n, k_gemm_beta, m, n, beta, c, ldc);
}

extern "C" cudaError_t kd_cu_flag_nonfinite(cudaStream_t s, size_t n, const float *x, int *flag)
{
    LAUNCH(n, k_flag_nonfinite, n, x, flag);
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

/* One thread per output (pool_math.h). */
__global__ static void k_max_pool_fwd(size_t total, int h, int w, int oh, int ow, int k,
                                      int stride, int pad, const float *x, float *y,
                                      int32_t *argmax)
{
    const size_t out_plane = (size_t)oh * ow, in_plane = (size_t)h * w;
    GRID_STRIDE(i, total)
    {
        const size_t p = i / out_plane, r = i % out_plane;
        float best;
        int32_t bi;
        kd_max_pool_one(x + p * in_plane, h, w, (int)(r / (size_t)ow), (int)(r % (size_t)ow), k,
                        stride, pad, &best, &bi);
        y[i] = best;
        if (argmax) argmax[i] = bi;
    }
}

/* One thread per input element, gathering in the CPU's scatter order (pool_math.h). */
__global__ static void k_max_pool_bwd(size_t total, int h, int w, int oh, int ow, int k,
                                      int stride, int pad, const int32_t *argmax,
                                      const float *dy, float *dx, int acc)
{
    const size_t out_plane = (size_t)oh * ow, in_plane = (size_t)h * w;
    GRID_STRIDE(i, total)
    {
        const size_t p = i / in_plane;
        dx[i] = kd_max_pool_bwd_one(argmax + p * out_plane, dy + p * out_plane, w, oh, ow, k,
                                    stride, pad, (int)(i % in_plane), acc ? dx[i] : 0.0f);
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

/* One thread per top element, gathering its preimage in the CPU's order (pool_math.h). */
__global__ static void k_upsample_add_bwd(size_t total, int th, int tw, int oh, int ow,
                                          const float *dy, float *dtop, int acc)
{
    const size_t out_plane = (size_t)oh * ow, in_plane = (size_t)th * tw;
    GRID_STRIDE(i, total)
    {
        const size_t p = i / in_plane, r = i % in_plane;
        dtop[i] = kd_upsample_bwd_one(dy + p * out_plane, th, tw, oh, ow, (int)(r / (size_t)tw),
                                      (int)(r % (size_t)tw), acc ? dtop[i] : 0.0f);
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
