/* cuda_internal.h — what the CUDA backend's host files share: the backend context (device,
 * streams, cuDNN and cuBLAS handles, the convolution cache, grow-only device scratch) and
 * the operation functions each file implements, which backend_cuda.c puts into the
 * kd_backend table. Private to kernels/cuda/.
 *
 * Every operation enqueues on ctx->stream (cuDNN and cuBLAS are bound to it), so the order
 * of calls is the order of execution, as on the CPU. Scratch buffers are only regrown after
 * the stream has drained, so a queued kernel never reads freed memory.
 */
#ifndef KD_KERNELS_CUDA_INTERNAL_H
#define KD_KERNELS_CUDA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/cu_kernels.h"
#include "kernels/cuda/kd_cuda.h"

#define KD_CUDA_SCRATCH_SLOTS 4

typedef struct kd_cuda_conv_cache kd_cuda_conv_cache; /* conv_cudnn.c */

typedef struct kd_cuda_ctx {
    int device;
    cudaStream_t stream;        /* compute: every operation */
    cudaStream_t copy_stream;   /* kd_cuda_upload */
    cudaEvent_t ev_compute;     /* recorded on stream by kd_cuda_upload_after_compute */
    cudaEvent_t ev_upload;      /* recorded on copy_stream after each upload */
    cudnnHandle_t cudnn;
    cublasHandle_t cublas;
    kd_cuda_conv_cache *conv_cache;
    size_t ws_limit;            /* cuDNN workspace limit per convolution */
    kd_cuda_math math;          /* matrix-engine precision (kd_cuda_set_math) */
    double *host_double;        /* pinned, receives sum() results */
    int *host_int;              /* pinned, receives kd_cuda_all_finite's flag */
    void *scratch[KD_CUDA_SCRATCH_SLOTS];
    size_t scratch_bytes[KD_CUDA_SCRATCH_SLOTS];
} kd_cuda_ctx;

static inline kd_cuda_ctx *kd_cuda_ctx_of(const kd_backend *b) { return (kd_cuda_ctx *)b->ctx; }
/* The context of b after checking that b is a CUDA backend (for the kd_cuda.h entry points). */
kd_cuda_ctx *kd_cuda_ctx_checked(const kd_backend *b);

/* Scratch slots. */
enum { KD_CUDA_SLOT_WS = 0, KD_CUDA_SLOT_SUM = 1, KD_CUDA_SLOT_NORM = 2, KD_CUDA_SLOT_COPY = 3 };
/* KD_CUDA_SLOT_SUM is also the flag of kd_cuda_all_finite (never used at the same time). */

/* Device scratch of at least `bytes` in `slot` (256-byte aligned, contents undefined). */
void *kd_cuda_scratch(kd_cuda_ctx *ctx, int slot, size_t bytes);

/* conv_cudnn.c */
void kd_cuda_conv_cache_free(kd_cuda_ctx *ctx);
size_t kd_cuda_conv_cache_count(const kd_cuda_ctx *ctx);
void kd_cuda_conv_fwd(const kd_backend *b, const kd_conv_desc *d, const float *x, const float *w,
                      const float *bias, float *y);
void kd_cuda_conv_bwd_data(const kd_backend *b, const kd_conv_desc *d, const float *dy,
                           const float *w, float *dx, int accumulate);
void kd_cuda_conv_bwd_weight(const kd_backend *b, const kd_conv_desc *d, const float *x,
                             const float *dy, float *dw, float *dbias);

/* ops_cuda.c: GEMM and BLAS-1 */
void kd_cuda_gemm(const kd_backend *b, int trans_a, int trans_b, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *bm, int ldb, float beta, float *c, int ldc);
void kd_cuda_axpy(const kd_backend *b, size_t elems, float alpha, const float *x, float *y);
void kd_cuda_scal(const kd_backend *b, size_t elems, float alpha, float *x);
void kd_cuda_add(const kd_backend *b, size_t elems, const float *a, const float *bb, float *y);
void kd_cuda_sum(const kd_backend *b, size_t elems, const float *x, double *out_host);
void kd_cuda_dot(const kd_backend *b, size_t elems, const float *x, const float *y,
                 double *out_host);
void kd_cuda_sgd_step(const kd_backend *b, size_t elems, float lr, float momentum,
                      float weight_decay, float *w, const float *g, float *v);

/* ops_cuda.c: normalisation */
void kd_cuda_group_norm_fwd(const kd_backend *b, kd_shape s, int groups, float eps, int relu,
                            const float *x, const float *gamma, const float *beta, float *y,
                            float *mean, float *rstd);
void kd_cuda_group_norm_bwd(const kd_backend *b, kd_shape s, int groups, int relu, const float *x,
                            const float *y, const float *dy, const float *gamma,
                            const float *mean, const float *rstd, float *dx, int accumulate,
                            float *dgamma, float *dbeta);
void kd_cuda_batch_norm_inf_fwd(const kd_backend *b, kd_shape s, float eps, int relu,
                                const float *x, const float *rmean, const float *rvar,
                                const float *gamma, const float *beta, float *y);
void kd_cuda_batch_norm_inf_bwd(const kd_backend *b, kd_shape s, float eps, int relu,
                                const float *x, const float *y, const float *dy,
                                const float *rmean, const float *rvar, const float *gamma,
                                float *dx, int accumulate, float *dgamma, float *dbeta);

/* ops_cuda.c: align_scale */
void kd_cuda_channel_stats(const kd_backend *b, kd_shape s, const float *x, float *mean,
                           float *std);
void kd_cuda_align_scale_fwd(const kd_backend *b, kd_shape s, const float *x,
                             const float *mean_t, const float *std_t, float *y, float *mean_x,
                             float *std_x);
void kd_cuda_align_scale_bwd(const kd_backend *b, kd_shape s, const float *x,
                             const float *mean_x, const float *std_x, const float *std_t,
                             const float *dy, float *dx, int accumulate);

/* ops_cuda.c: activations, scale, softmax */
void kd_cuda_relu_fwd(const kd_backend *b, size_t elems, const float *x, float *y);
void kd_cuda_relu_bwd(const kd_backend *b, size_t elems, const float *y, const float *dy,
                      float *dx, int accumulate);
void kd_cuda_sigmoid_fwd(const kd_backend *b, size_t elems, const float *x, float *y);
void kd_cuda_sigmoid_bwd(const kd_backend *b, size_t elems, const float *y, const float *dy,
                         float *dx, int accumulate);
void kd_cuda_scale_fwd(const kd_backend *b, size_t elems, const float *scale, const float *x,
                       float *y);
void kd_cuda_scale_bwd(const kd_backend *b, size_t elems, const float *scale, const float *x,
                       const float *dy, float *dx, int accumulate, float *dscale);
void kd_cuda_softmax_fwd(const kd_backend *b, size_t rows, int cols, const float *x, float *y);
void kd_cuda_softmax_bwd(const kd_backend *b, size_t rows, int cols, const float *y,
                         const float *dy, float *dx, int accumulate);
void kd_cuda_log_softmax_fwd(const kd_backend *b, size_t rows, int cols, const float *x,
                             float *y);
void kd_cuda_log_softmax_bwd(const kd_backend *b, size_t rows, int cols, const float *y,
                             const float *dy, float *dx, int accumulate);

/* ops_cuda.c: pooling and FPN resampling */
void kd_cuda_max_pool_fwd(const kd_backend *b, kd_shape x_shape, int k, int stride, int pad,
                          const float *x, float *y, int32_t *argmax);
void kd_cuda_max_pool_bwd(const kd_backend *b, kd_shape x_shape, int k, int stride, int pad,
                          const int32_t *argmax, const float *dy, float *dx, int accumulate);
void kd_cuda_upsample_nearest_add_fwd(const kd_backend *b, kd_shape top_shape, const float *top,
                                      int out_h, int out_w, float *y);
void kd_cuda_upsample_nearest_add_bwd(const kd_backend *b, kd_shape top_shape, int out_h,
                                      int out_w, const float *dy, float *dtop, int accumulate);

#endif
