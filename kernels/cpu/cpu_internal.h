/* cpu_internal.h — what the CPU backend's files share: the backend context (oneDNN engine,
 * stream, primitive cache, scratch buffers), the oneDNN fatal checker and the operation
 * functions each file implements, which backend_cpu.c puts into the kd_backend table.
 * Private to kernels/cpu/.
 */
#ifndef KD_KERNELS_CPU_INTERNAL_H
#define KD_KERNELS_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "kernels/backend.h"

/* oneDNN fatal check (status.h's generator): prints the statement and dnnl's status name. */
const char *kd_cpu_dnnl_status_str(dnnl_status_t s);
#define KD_CHECK_DNNL(STMT) \
    KD_CHECK_GEN(dnnl_status_t, "oneDNN", _kd_r == dnnl_success, kd_cpu_dnnl_status_str(_kd_r), STMT)

/* Below this many elements an element-wise loop runs on one thread (the fork costs more). */
#define KD_CPU_PAR_MIN_ELEMS 32768

#define KD_CPU_SCRATCH_SLOTS 6

/* Convolution primitives kept per backend: a GFL ResNet-50 student with a ResNet-101 teacher
 * needs about 1000 (three kinds per convolution shape) for one batch shape; this keeps a few
 * batch shapes' worth. */
#define KD_CPU_CONV_CACHE_ENTRIES 4096

typedef struct kd_conv_cache kd_conv_cache; /* conv_onednn.c */

typedef struct kd_cpu_ctx {
    int threads;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    kd_conv_cache *conv_cache;
    /* Grow-only scratch buffers, one per slot; an operation uses distinct slots. */
    void *scratch[KD_CPU_SCRATCH_SLOTS];
    size_t scratch_bytes[KD_CPU_SCRATCH_SLOTS];
} kd_cpu_ctx;

static inline kd_cpu_ctx *kd_cpu_ctx_of(const kd_backend *b) { return (kd_cpu_ctx *)b->ctx; }

/* A scratch buffer of at least `bytes` (64-byte aligned) in slot `slot`; contents undefined. */
void *kd_cpu_scratch(kd_cpu_ctx *ctx, int slot, size_t bytes);

/* conv_onednn.c */
void kd_cpu_conv_cache_free(kd_cpu_ctx *ctx);
size_t kd_cpu_conv_cache_entries(const kd_backend *b);
void kd_cpu_conv_cache_set_capacity(const kd_backend *b, size_t entries); /* tests */
void kd_cpu_conv_fwd(const kd_backend *b, const kd_conv_desc *d, const float *x, const float *w,
                     const float *bias, float *y);
void kd_cpu_conv_bwd_data(const kd_backend *b, const kd_conv_desc *d, const float *dy,
                          const float *w, float *dx, int accumulate);
void kd_cpu_conv_bwd_weight(const kd_backend *b, const kd_conv_desc *d, const float *x,
                            const float *dy, float *dw, float *dbias);

/* blas.c */
void kd_cpu_gemm(const kd_backend *b, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *bm, int ldb, float beta, float *c, int ldc);
void kd_cpu_axpy(const kd_backend *b, size_t elems, float alpha, const float *x, float *y);
void kd_cpu_scal(const kd_backend *b, size_t elems, float alpha, float *x);
void kd_cpu_add(const kd_backend *b, size_t elems, const float *a, const float *bb, float *y);
void kd_cpu_sum(const kd_backend *b, size_t elems, const float *x, double *out_host);
void kd_cpu_dot(const kd_backend *b, size_t elems, const float *x, const float *y,
                double *out_host);
void kd_cpu_sgd_step(const kd_backend *b, size_t elems, float lr, float momentum,
                     float weight_decay, float *w, const float *g, float *v);

/* norm.c */
void kd_cpu_group_norm_fwd(const kd_backend *b, kd_shape s, int groups, float eps, int relu,
                           const float *x, const float *gamma, const float *beta, float *y,
                           float *mean, float *rstd);
void kd_cpu_group_norm_bwd(const kd_backend *b, kd_shape s, int groups, int relu, const float *x,
                           const float *y, const float *dy, const float *gamma, const float *mean,
                           const float *rstd, float *dx, int accumulate, float *dgamma,
                           float *dbeta);
void kd_cpu_batch_norm_inf_fwd(const kd_backend *b, kd_shape s, float eps, int relu,
                               const float *x, const float *rmean, const float *rvar,
                               const float *gamma, const float *beta, float *y);
void kd_cpu_batch_norm_inf_bwd(const kd_backend *b, kd_shape s, float eps, int relu,
                               const float *x, const float *y, const float *dy,
                               const float *rmean, const float *rvar, const float *gamma,
                               float *dx, int accumulate, float *dgamma, float *dbeta);

/* align.c */
void kd_cpu_channel_stats(const kd_backend *b, kd_shape s, const float *x, float *mean,
                          float *std);
void kd_cpu_align_scale_fwd(const kd_backend *b, kd_shape s, const float *x,
                            const float *mean_t, const float *std_t, float *y, float *mean_x,
                            float *std_x);
void kd_cpu_align_scale_bwd(const kd_backend *b, kd_shape s, const float *x,
                            const float *mean_x, const float *std_x, const float *std_t,
                            const float *dy, float *dx, int accumulate);

/* eltwise.c */
void kd_cpu_relu_fwd(const kd_backend *b, size_t elems, const float *x, float *y);
void kd_cpu_relu_bwd(const kd_backend *b, size_t elems, const float *y, const float *dy,
                     float *dx, int accumulate);
void kd_cpu_sigmoid_fwd(const kd_backend *b, size_t elems, const float *x, float *y);
void kd_cpu_sigmoid_bwd(const kd_backend *b, size_t elems, const float *y, const float *dy,
                        float *dx, int accumulate);
void kd_cpu_scale_fwd(const kd_backend *b, size_t elems, const float *scale, const float *x,
                      float *y);
void kd_cpu_scale_bwd(const kd_backend *b, size_t elems, const float *scale, const float *x,
                      const float *dy, float *dx, int accumulate, float *dscale);
void kd_cpu_softmax_fwd(const kd_backend *b, size_t rows, int cols, const float *x, float *y);
void kd_cpu_softmax_bwd(const kd_backend *b, size_t rows, int cols, const float *y,
                        const float *dy, float *dx, int accumulate);
void kd_cpu_log_softmax_fwd(const kd_backend *b, size_t rows, int cols, const float *x,
                            float *y);
void kd_cpu_log_softmax_bwd(const kd_backend *b, size_t rows, int cols, const float *y,
                            const float *dy, float *dx, int accumulate);

/* pool.c */
void kd_cpu_max_pool_fwd(const kd_backend *b, kd_shape x_shape, int k, int stride, int pad,
                         const float *x, float *y, int32_t *argmax);
void kd_cpu_max_pool_bwd(const kd_backend *b, kd_shape x_shape, int k, int stride, int pad,
                         const int32_t *argmax, const float *dy, float *dx, int accumulate);
void kd_cpu_upsample_nearest_add_fwd(const kd_backend *b, kd_shape top_shape, const float *top,
                                     int out_h, int out_w, float *y);
void kd_cpu_upsample_nearest_add_bwd(const kd_backend *b, kd_shape top_shape, int out_h,
                                     int out_w, const float *dy, float *dtop, int accumulate);

#endif
