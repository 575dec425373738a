/* reduce.cu — the CUDA backend's kernels that reduce: whole-tensor sums (sum, Scale's
 * dscale), per-channel sums (conv dbias), GroupNorm, inference BatchNorm and CrossKD's
 * align_scale with its channel statistics.
 *
 * Conventions (cu_kernels.h): launchers enqueue on the given stream and return
 * cudaGetLastError(); sizes of 0 launch nothing. Every formula is the CPU reference's
 * (kernels/cpu/norm.c, align.c, blas.c, eltwise.c): the same shifts before summing moments,
 * the same double/float roundings of the statistics, the same edge cases.
 * Determinism: a reduction target (a channel, an (n, group), a whole tensor) is owned by
 * one block of KD_CU_THREADS threads; each thread adds its strided elements in double, the
 * block adds the threads' sums in a fixed tree; whole-tensor sums use a fixed number of
 * blocks and one final block. No atomics, so every run gives the same bits. (The CPU adds
 * float partials of 4096 values in double, so CPU and GPU differ in the last bits only.)
 * Parameter gradients accumulate (+=) after their reduction, one thread per parameter.
 * The per-thread bodies are kernels/cuda/reduce_math.h, which the C compiler builds too:
 * tests/unit/cuda runs them on the host, block by block and thread by thread.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/cu_kernels.h"
#include "kernels/cuda/reduce_math.h"

/* Sums a and b over the block (blockDim.x == KD_CU_THREADS); every thread gets the totals. */
__device__ static void block_sum2(double *a, double *b)
{
    __shared__ double sa[KD_CU_THREADS], sb[KD_CU_THREADS];
    const int t = threadIdx.x;
    sa[t] = *a;
    sb[t] = *b;
    __syncthreads();
    for (int half = KD_CU_THREADS / 2; half > 0; half >>= 1) {
        if (t < half) {
            sa[t] += sa[t + half];
            sb[t] += sb[t + half];
        }
        __syncthreads();
    }
    *a = sa[0];
    *b = sb[0];
    __syncthreads(); /* the arrays are reused by the next call */
}

/* ---- whole-tensor sums ----------------------------------------------------------------- */

__global__ static void k_sum_partial(size_t n, const float *x, const float *y, double *partials)
{
    double a = 0.0, unused = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        a += y ? (double)x[i] * (double)y[i] : (double)x[i];
    block_sum2(&a, &unused);
    if (threadIdx.x == 0) partials[blockIdx.x] = a;
}

__global__ static void k_sum_final(int blocks, const double *partials, double *out_d,
                                   float *acc_f)
{
    double a = 0.0, unused = 0.0;
    for (int i = threadIdx.x; i < blocks; i += blockDim.x) a += partials[i];
    block_sum2(&a, &unused);
    if (threadIdx.x == 0) {
        if (out_d) *out_d = a;
        if (acc_f) *acc_f += (float)a;
    }
}

extern "C" cudaError_t kd_cu_sum(cudaStream_t s, size_t n, const float *x, const float *y,
                                 double *partials, double *out_d, float *acc_f)
{
    size_t want = (n + KD_CU_THREADS - 1) / KD_CU_THREADS;
    int blocks = (int)(want < KD_CU_SUM_BLOCKS ? want : KD_CU_SUM_BLOCKS);
    if (blocks > 0) {
        k_sum_partial<<<blocks, KD_CU_THREADS, 0, s>>>(n, x, y, partials);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    if (!out_d && !acc_f) return cudaSuccess;
    k_sum_final<<<1, KD_CU_THREADS, 0, s>>>(blocks, partials, out_d, acc_f);
    return cudaGetLastError();
}

/* dbias[c] += sum over n, hw of dy (one block per channel). */
__global__ static void k_channel_sum(int n, int c, size_t hw, const float *dy, float *dbias)
{
    double a = kd_chsum_partial(n, c, hw, dy, blockIdx.x, threadIdx.x, blockDim.x), unused = 0.0;
    block_sum2(&a, &unused);
    if (threadIdx.x == 0) dbias[blockIdx.x] += (float)a;
}

extern "C" cudaError_t kd_cu_channel_sum(cudaStream_t s, int n, int c, size_t hw,
                                         const float *dy, float *dbias)
{
    if (c <= 0 || n <= 0 || hw == 0 || !dbias) return cudaSuccess;
    k_channel_sum<<<c, KD_CU_THREADS, 0, s>>>(n, c, hw, dy, dbias);
    return cudaGetLastError();
}

/* ---- GroupNorm ---------------------------------------------------------------------- */

/* One block per (n, g): shifted moments of its cg*hw contiguous values, then the affine. */
__global__ static void k_gn_fwd(int c, size_t hw, int groups, float eps, int relu,
                                const float *x, const float *gamma, const float *beta, float *y,
                                float *mean, float *rstd)
{
    const int t = blockIdx.x;
    double s1, s2;
    kd_gn_fwd_partial(c, hw, groups, x, t, threadIdx.x, blockDim.x, &s1, &s2);
    block_sum2(&s1, &s2);
    float mf, rs;
    kd_gn_fwd_stats(c, hw, groups, x, t, s1, s2, eps, &mf, &rs);
    if (threadIdx.x == 0) {
        if (mean) mean[t] = mf;
        if (rstd) rstd[t] = rs;
    }
    /* in place (y == x) is safe: every read of x above precedes block_sum2's barriers */
    kd_gn_fwd_apply(c, hw, groups, relu, x, gamma, beta, t, threadIdx.x, blockDim.x, mf, rs, y);
}

extern "C" cudaError_t kd_cu_group_norm_fwd(cudaStream_t s, int n, int c, size_t hw, int groups,
                                            float eps, int relu, const float *x,
                                            const float *gamma, const float *beta, float *y,
                                            float *mean, float *rstd)
{
    long tasks = (long)n * groups;
    if (tasks <= 0) return cudaSuccess;
    k_gn_fwd<<<(unsigned)tasks, KD_CU_THREADS, 0, s>>>(c, hw, groups, eps, relu, x, gamma, beta,
                                                       y, mean, rstd);
    return cudaGetLastError();
}

/* Pass 1, one block per (n, c) plane: sdy = sum dy', sdyxh = rstd * sum dy'*(x - mean). */
__global__ static void k_gn_bwd_chan(int c, size_t hw, int groups, int relu, const float *x,
                                     const float *y, const float *dy, const float *mean,
                                     const float *rstd, double *sdy, double *sdyxh)
{
    double a1, a2;
    kd_gn_bwd_chan_partial(c, hw, groups, relu, x, y, dy, mean, blockIdx.x, threadIdx.x,
                           blockDim.x, &a1, &a2);
    block_sum2(&a1, &a2);
    if (threadIdx.x == 0) kd_gn_bwd_chan_finish(c, groups, rstd, blockIdx.x, a1, a2, sdy, sdyxh);
}

/* Pass 2, one thread per (n, g): the coefficients of dx = a_c*dy' + B*x + C0. */
__global__ static void k_gn_bwd_coef(int tasks, int c, size_t hw, int groups,
                                     const float *gamma, const float *mean, const float *rstd,
                                     const double *sdy, const double *sdyxh, float *coef_b,
                                     float *coef_c)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < tasks)
        kd_gn_bwd_coef_one(c, hw, groups, gamma, mean, rstd, sdy, sdyxh, t, coef_b, coef_c);
}

/* Pass 3, element-wise dx (reads dy[i] before writing dx[i], so dx may alias dy). */
__global__ static void k_gn_bwd_dx(size_t total, int c, size_t hw, int groups, int relu,
                                   const float *x, const float *y, const float *dy,
                                   const float *gamma, const float *rstd, const float *coef_b,
                                   const float *coef_c, float *dx, int acc)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        const float v =
            kd_gn_bwd_dx_one(c, hw, groups, relu, x, y, dy, gamma, rstd, coef_b, coef_c, i);
        dx[i] = acc ? dx[i] + v : v;
    }
}

/* Pass 4, one thread per channel: dgamma += sum_n sdyxh, dbeta += sum_n sdy (n in order). */
__global__ static void k_gn_bwd_param(int n, int c, const double *sdy, const double *sdyxh,
                                      float *dgamma, float *dbeta)
{
    const int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch < c) kd_gn_bwd_param_one(n, c, sdy, sdyxh, ch, dgamma, dbeta);
}

extern "C" size_t kd_cu_group_norm_bwd_scratch(int n, int c, int groups)
{
    return 2 * (size_t)n * c * sizeof(double) + 2 * (size_t)n * groups * sizeof(float);
}

extern "C" cudaError_t kd_cu_group_norm_bwd(cudaStream_t s, int n, int c, size_t hw, int groups,
                                            int relu, const float *x, const float *y,
                                            const float *dy, const float *gamma,
                                            const float *mean, const float *rstd, float *dx,
                                            int accumulate, float *dgamma, float *dbeta,
                                            void *scratch)
{
    const long tasks = (long)n * groups;
    const size_t nc = (size_t)n * c, total = nc * hw;
    if (tasks <= 0 || c <= 0 || hw == 0) return cudaSuccess;
    double *sdy = (double *)scratch, *sdyxh = sdy + nc;
    float *coef_b = (float *)(sdyxh + nc), *coef_c = coef_b + tasks;
    k_gn_bwd_chan<<<(unsigned)nc, KD_CU_THREADS, 0, s>>>(c, hw, groups, relu, x, y, dy, mean,
                                                         rstd, sdy, sdyxh);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    if (dx) {
        unsigned tb = (unsigned)((tasks + KD_CU_THREADS - 1) / KD_CU_THREADS);
        k_gn_bwd_coef<<<tb, KD_CU_THREADS, 0, s>>>((int)tasks, c, hw, groups, gamma, mean, rstd,
                                                   sdy, sdyxh, coef_b, coef_c);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
        size_t blocks = (total + KD_CU_THREADS - 1) / KD_CU_THREADS;
        if (blocks > ((size_t)1 << 18)) blocks = (size_t)1 << 18;
        k_gn_bwd_dx<<<(unsigned)blocks, KD_CU_THREADS, 0, s>>>(total, c, hw, groups, relu, x, y,
                                                               dy, gamma, rstd, coef_b, coef_c,
                                                               dx, accumulate);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
    }
    if (dgamma || dbeta) {
        unsigned cb = (unsigned)((c + KD_CU_THREADS - 1) / KD_CU_THREADS);
        k_gn_bwd_param<<<cb, KD_CU_THREADS, 0, s>>>(n, c, sdy, sdyxh, dgamma, dbeta);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
    }
    return cudaSuccess;
}

/* ---- BatchNorm, inference mode ---------------------------------------------------------- */

/* One block per (n, c) plane. */
__global__ static void k_bn_fwd(int c, size_t hw, float eps, int relu, const float *x,
                                const float *rmean, const float *rvar, const float *gamma,
                                const float *beta, float *y)
{
    const size_t p = blockIdx.x;
    float a, off;
    kd_bn_coefs(rmean, rvar, gamma, beta, eps, (int)(p % (size_t)c), &a, &off);
    const float *xp = x + p * hw;
    float *yp = y + p * hw;
    for (size_t i = threadIdx.x; i < hw; i += blockDim.x) {
        float v = xp[i] * a + off;
        yp[i] = relu ? (v > 0.0f ? v : 0.0f) : v;
    }
}

__global__ static void k_bn_bwd_dx(int c, size_t hw, float eps, int relu, const float *y,
                                   const float *dy, const float *rvar, const float *gamma,
                                   float *dx, int acc)
{
    const size_t p = blockIdx.x;
    const int ch = (int)(p % (size_t)c);
    const float a = kd_bn_inv(rvar, ch, eps) * (gamma ? gamma[ch] : 1.0f);
    for (size_t i = p * hw + threadIdx.x; i < (p + 1) * hw; i += blockDim.x) {
        float g0 = relu ? (y[i] > 0.0f ? dy[i] : 0.0f) : dy[i];
        float v = a * g0;
        dx[i] = acc ? dx[i] + v : v;
    }
}

/* One block per channel: dgamma += inv * sum dy'*(x - rmean), dbeta += sum dy'. */
__global__ static void k_bn_bwd_param(int n, int c, size_t hw, float eps, int relu,
                                      const float *x, const float *y, const float *dy,
                                      const float *rmean, const float *rvar, float *dgamma,
                                      float *dbeta)
{
    double a1, a2;
    kd_bn_bwd_param_partial(n, c, hw, relu, x, y, dy, rmean, blockIdx.x, threadIdx.x, blockDim.x,
                            &a1, &a2);
    block_sum2(&a1, &a2);
    if (threadIdx.x == 0) kd_bn_bwd_param_finish(rvar, eps, blockIdx.x, a1, a2, dgamma, dbeta);
}

extern "C" cudaError_t kd_cu_batch_norm_inf_fwd(cudaStream_t s, int n, int c, size_t hw,
                                                float eps, int relu, const float *x,
                                                const float *rmean, const float *rvar,
                                                const float *gamma, const float *beta, float *y)
{
    size_t planes = (size_t)n * c;
    if (planes == 0 || hw == 0) return cudaSuccess;
    k_bn_fwd<<<(unsigned)planes, KD_CU_THREADS, 0, s>>>(c, hw, eps, relu, x, rmean, rvar, gamma,
                                                        beta, y);
    return cudaGetLastError();
}

extern "C" cudaError_t kd_cu_batch_norm_inf_bwd(cudaStream_t s, int n, int c, size_t hw,
                                                float eps, int relu, const float *x,
                                                const float *y, const float *dy,
                                                const float *rmean, const float *rvar,
                                                const float *gamma, float *dx, int accumulate,
                                                float *dgamma, float *dbeta)
{
    size_t planes = (size_t)n * c;
    if (planes == 0 || hw == 0) return cudaSuccess;
    cudaError_t e;
    /* parameters first: their pass reads dy, which dx may alias */
    if (dgamma || dbeta) {
        k_bn_bwd_param<<<c, KD_CU_THREADS, 0, s>>>(n, c, hw, eps, relu, x, y, dy, rmean, rvar,
                                                   dgamma, dbeta);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
    }
    if (dx) {
        k_bn_bwd_dx<<<(unsigned)planes, KD_CU_THREADS, 0, s>>>(c, hw, eps, relu, y, dy, rvar,
                                                               gamma, dx, accumulate);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
    }
    return cudaSuccess;
}

/* ---- align_scale and channel statistics ------------------------------------------------ */

/* Mean and unbiased std of channel ch (every thread of the block gets them). */
__device__ static void chan_mean_std(int n, int c, size_t hw, const float *x, int ch,
                                     float *mean, float *std)
{
    double s1, s2;
    kd_chan_partial(n, c, hw, x, ch, threadIdx.x, blockDim.x, &s1, &s2);
    block_sum2(&s1, &s2);
    kd_chan_stats(n, hw, x, ch, s1, s2, mean, std);
}

__global__ static void k_channel_stats(int n, int c, size_t hw, const float *x, float *mean,
                                       float *std)
{
    float mu, sd;
    chan_mean_std(n, c, hw, x, blockIdx.x, &mu, &sd);
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = mu;
        std[blockIdx.x] = sd;
    }
}

/* One block per channel: statistics, then y = (x - mu) * a + mean_t. */
__global__ static void k_align_fwd(int n, int c, size_t hw, const float *x, const float *mean_t,
                                   const float *std_t, float *y, float *mean_x, float *std_x)
{
    const int ch = blockIdx.x;
    float mu, sd;
    chan_mean_std(n, c, hw, x, ch, &mu, &sd);
    if (threadIdx.x == 0) {
        mean_x[ch] = mu;
        std_x[ch] = sd;
    }
    kd_align_fwd_apply(n, c, hw, x, mean_t, std_t, ch, threadIdx.x, blockDim.x, mu, sd, y);
}

/* One block per channel: dx = a*(dy - mean(dy)) + B*(x - mu) (kernels/cpu/align.c). The
 * block reads all of its dy before writing any dx, so dx may alias dy. */
__global__ static void k_align_bwd(int n, int c, size_t hw, const float *x, const float *mean_x,
                                   const float *std_x, const float *std_t, const float *dy,
                                   float *dx, int acc)
{
    const int ch = blockIdx.x;
    const float mu = mean_x[ch];
    double sg, sgx;
    kd_align_bwd_partial(n, c, hw, x, dy, mu, ch, threadIdx.x, blockDim.x, &sg, &sgx);
    block_sum2(&sg, &sgx);
    float a, bcoef, mg;
    kd_align_bwd_coefs(n, hw, std_x, std_t, ch, sg, sgx, &a, &bcoef, &mg);
    kd_align_bwd_apply(n, c, hw, x, dy, mu, ch, threadIdx.x, blockDim.x, a, bcoef, mg, dx, acc);
}

extern "C" cudaError_t kd_cu_channel_stats(cudaStream_t s, int n, int c, size_t hw,
                                           const float *x, float *mean, float *std)
{
    if (c <= 0) return cudaSuccess;
    k_channel_stats<<<c, KD_CU_THREADS, 0, s>>>(n, c, hw, x, mean, std);
    return cudaGetLastError();
}

extern "C" cudaError_t kd_cu_align_scale_fwd(cudaStream_t s, int n, int c, size_t hw,
                                             const float *x, const float *mean_t,
                                             const float *std_t, float *y, float *mean_x,
                                             float *std_x)
{
    if (c <= 0) return cudaSuccess;
    k_align_fwd<<<c, KD_CU_THREADS, 0, s>>>(n, c, hw, x, mean_t, std_t, y, mean_x, std_x);
    return cudaGetLastError();
}

extern "C" cudaError_t kd_cu_align_scale_bwd(cudaStream_t s, int n, int c, size_t hw,
                                             const float *x, const float *mean_x,
                                             const float *std_x, const float *std_t,
                                             const float *dy, float *dx, int accumulate)
{
    if (c <= 0 || (size_t)n * hw == 0 || !dx) return cudaSuccess;
    k_align_bwd<<<c, KD_CU_THREADS, 0, s>>>(n, c, hw, x, mean_x, std_x, std_t, dy, dx,
                                            accumulate);
    return cudaGetLastError();
}
