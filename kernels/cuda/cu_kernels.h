/* cu_kernels.h — the launchers of the CUDA C kernels (eltwise.cu, reduce.cu), callable from
 * the backend's host C files. Private to kernels/cuda/.
 *
 * Conventions:
 *  - Every launcher enqueues its kernels on `s` and returns cudaGetLastError() of the last
 *    launch (cudaSuccess when there was nothing to launch); the host side checks it with
 *    KD_CHECK_CUDA, so every launch is checked. Nothing here blocks the host.
 *  - Pointers are device pointers, float32, NCHW contiguous, as in kernels/backend.h. Shapes
 *    arrive as plain integers (n, c, hw = h*w) so the .cu files need neither backend.h nor
 *    proto/status.h (the latter is not C++-clean).
 *  - Semantics match the CPU reference in kernels/cpu/ exactly (which file is named per
 *    group); zero sizes launch nothing. Reductions use a fixed grid and fixed tree order, so
 *    results are deterministic run to run.
 *  - All launches use KD_CU_THREADS threads per block; reductions rely on it.
 */
#ifndef KD_KERNELS_CUDA_CU_KERNELS_H
#define KD_KERNELS_CUDA_CU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KD_CU_THREADS 256
/* Blocks of the first pass of kd_cu_sum (its partials need that many doubles of scratch). */
#define KD_CU_SUM_BLOCKS 1024

/* ---- eltwise.cu: memory, BLAS-1 (kernels/cpu/blas.c, backend_cpu.c) ------------------ */
cudaError_t kd_cu_fill(cudaStream_t s, float *x, size_t n, float v);
cudaError_t kd_cu_axpy(cudaStream_t s, size_t n, float alpha, const float *x, float *y);
cudaError_t kd_cu_scal(cudaStream_t s, size_t n, float alpha, float *x);
cudaError_t kd_cu_add(cudaStream_t s, size_t n, const float *a, const float *b, float *y);
/* One SGD step, kernels/kd_math.h's kd_sgd_elem per element (kernels/cpu/blas.c). */
cudaError_t kd_cu_sgd_step(cudaStream_t s, size_t n, float lr, float momentum,
                           float weight_decay, float *w, const float *g, float *v);
/* C (m x n, row stride ldc) = beta * C, or 0 when beta == 0 (GEMM with k == 0). */
cudaError_t kd_cu_gemm_beta(cudaStream_t s, int m, int n, float beta, float *c, int ldc);
/* *flag = 1 if any of x[0..n) is Inf or NaN (flag untouched otherwise; clear it first). */
cudaError_t kd_cu_flag_nonfinite(cudaStream_t s, size_t n, const float *x, int *flag);
/* Conv bias: y[n, c, :] += bias[c] (set == 0), or = bias[c] / 0 when bias is NULL (set). */
cudaError_t kd_cu_bias_add(cudaStream_t s, int n, int c, size_t hw, const float *bias,
                           float *y, int set);

/* ---- eltwise.cu: activations, scale, softmax (kernels/cpu/eltwise.c) ------------------ */
cudaError_t kd_cu_relu_fwd(cudaStream_t s, size_t n, const float *x, float *y);
cudaError_t kd_cu_relu_bwd(cudaStream_t s, size_t n, const float *y, const float *dy, float *dx,
                           int accumulate);
cudaError_t kd_cu_sigmoid_fwd(cudaStream_t s, size_t n, const float *x, float *y);
cudaError_t kd_cu_sigmoid_bwd(cudaStream_t s, size_t n, const float *y, const float *dy,
                              float *dx, int accumulate);
/* y = scale[0] * x (scale on the device). */
cudaError_t kd_cu_scale_fwd(cudaStream_t s, size_t n, const float *scale, const float *x,
                            float *y);
/* dx = scale[0] * dy (=, or += with accumulate). */
cudaError_t kd_cu_scale_dx(cudaStream_t s, size_t n, const float *scale, const float *dy,
                           float *dx, int accumulate);
/* log != 0 selects log-softmax; one thread per row through kernels/kd_math.h. */
cudaError_t kd_cu_softmax_fwd(cudaStream_t s, size_t rows, int cols, int log, const float *x,
                              float *y);
cudaError_t kd_cu_softmax_bwd(cudaStream_t s, size_t rows, int cols, int log, const float *y,
                              const float *dy, float *dx, int accumulate);

/* ---- eltwise.cu: pooling, FPN resampling (kernels/cpu/pool.c) ------------------------- */
/* planes = N*C; (h, w) input, (oh, ow) output (kd_pool_out_shape). argmax may be NULL. */
cudaError_t kd_cu_max_pool_fwd(cudaStream_t s, size_t planes, int h, int w, int oh, int ow,
                               int k, int stride, int pad, const float *x, float *y,
                               int32_t *argmax);
cudaError_t kd_cu_max_pool_bwd(cudaStream_t s, size_t planes, int h, int w, int oh, int ow,
                               int k, int stride, int pad, const int32_t *argmax,
                               const float *dy, float *dx, int accumulate);
/* (th, tw) top plane size, (oh, ow) output plane size. */
cudaError_t kd_cu_upsample_add_fwd(cudaStream_t s, size_t planes, int th, int tw, int oh,
                                   int ow, const float *top, float *y);
cudaError_t kd_cu_upsample_add_bwd(cudaStream_t s, size_t planes, int th, int tw, int oh,
                                   int ow, const float *dy, float *dtop, int accumulate);

/* ---- reduce.cu: sums (kernels/cpu/blas.c sum, eltwise.c scale_bwd) -------------------- */
/* S = sum x[i] (y NULL) or sum x[i]*y[i], in double, fixed order. Writes S to *out_d when
 * out_d is non-NULL and adds (float)S to *acc_f when acc_f is non-NULL (both device).
 * partials: KD_CU_SUM_BLOCKS doubles of device scratch. */
cudaError_t kd_cu_sum(cudaStream_t s, size_t n, const float *x, const float *y,
                      double *partials, double *out_d, float *acc_f);
/* dbias[c] += sum over (n, hw) of dy (conv bias gradient). */
cudaError_t kd_cu_channel_sum(cudaStream_t s, int n, int c, size_t hw, const float *dy,
                              float *dbias);

/* ---- reduce.cu: normalisation (kernels/cpu/norm.c) ------------------------------------ */
cudaError_t kd_cu_group_norm_fwd(cudaStream_t s, int n, int c, size_t hw, int groups, float eps,
                                 int relu, const float *x, const float *gamma,
                                 const float *beta, float *y, float *mean, float *rstd);
/* scratch: 2*n*c doubles followed by 2*n*groups floats (see kd_cu_group_norm_bwd_scratch). */
size_t kd_cu_group_norm_bwd_scratch(int n, int c, int groups);
cudaError_t kd_cu_group_norm_bwd(cudaStream_t s, int n, int c, size_t hw, int groups, int relu,
                                 const float *x, const float *y, const float *dy,
                                 const float *gamma, const float *mean, const float *rstd,
                                 float *dx, int accumulate, float *dgamma, float *dbeta,
                                 void *scratch);
cudaError_t kd_cu_batch_norm_inf_fwd(cudaStream_t s, int n, int c, size_t hw, float eps,
                                     int relu, const float *x, const float *rmean,
                                     const float *rvar, const float *gamma, const float *beta,
                                     float *y);
cudaError_t kd_cu_batch_norm_inf_bwd(cudaStream_t s, int n, int c, size_t hw, float eps,
                                     int relu, const float *x, const float *y, const float *dy,
                                     const float *rmean, const float *rvar, const float *gamma,
                                     float *dx, int accumulate, float *dgamma, float *dbeta);

/* ---- reduce.cu: CrossKD align_scale (kernels/cpu/align.c) ---------------------------- */
cudaError_t kd_cu_channel_stats(cudaStream_t s, int n, int c, size_t hw, const float *x,
                                float *mean, float *std);
cudaError_t kd_cu_align_scale_fwd(cudaStream_t s, int n, int c, size_t hw, const float *x,
                                  const float *mean_t, const float *std_t, float *y,
                                  float *mean_x, float *std_x);
cudaError_t kd_cu_align_scale_bwd(cudaStream_t s, int n, int c, size_t hw, const float *x,
                                  const float *mean_x, const float *std_x, const float *std_t,
                                  const float *dy, float *dx, int accumulate);

#ifdef __cplusplus
}
#endif

#endif
