/* ops_cuda.c — the CUDA backend's operations other than convolution and memory: GEMM through
 * cuBLAS, and host wrappers that check the arguments like the CPU reference, size scratch
 * and launch the CUDA C kernels of eltwise.cu / reduce.cu (every launch checked with
 * KD_CHECK_CUDA).
 *
 * GEMM: the interface is row-major; cuBLAS is column-major. A row-major M (r x c, stride ld)
 * is the column-major M^T with the same ld, so C = op(A) op(B) is computed as
 * C^T = op(B)^T op(A)^T: cublasSgemm(opB, opA, n, m, k, B, ldb, A, lda, C, ldc)
 * (gemm_map.h, which the CPU test checks through a column-major cblas_sgemm). cuBLAS
 * runs with CUBLAS_DEFAULT_MATH (no TF32 for float), on the compute stream, host scalars;
 * under a reduced-precision math mode (kd_cuda_set_math) it is cublasGemmEx on the same
 * float buffers with a FAST_TF32/16F/16BF compute type.
 * k == 0 is done by our own kernel (C = beta*C, 0 when beta == 0), as the CPU does.
 * Semantics, edge cases and argument checks are those of the CPU files in kernels/cpu/, file by file.
 */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/gemm_map.h"

#include <string.h>

#define STREAM(b) (kd_cuda_ctx_of(b)->stream)

/* ---- GEMM and BLAS-1 ----------------------------------------------------------------- */

void kd_cuda_gemm(const kd_backend *b, int trans_a, int trans_b, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *bm, int ldb, float beta, float *c, int ldc)
{
    KD_CHECK(m >= 0 && n >= 0 && k >= 0);
    if (m == 0 || n == 0) return;
    KD_CHECK(ldc >= n, "(gemm: ldc %d < n %d)", ldc, n);
    if (k == 0) {
        KD_CHECK_CUDA(kd_cu_gemm_beta(STREAM(b), m, n, beta, c, ldc));
        return;
    }
    KD_CHECK(lda >= (trans_a ? m : k) && ldb >= (trans_b ? k : n),
             "(gemm: lda %d ldb %d too small)", lda, ldb);
    kd_cuda_ctx *ctx = kd_cuda_ctx_of(b);
    kd_colmajor_gemm g = kd_gemm_row_to_col(trans_a, trans_b, m, n, k, a, lda, bm, ldb);
    const cublasOperation_t op1 = g.trans_first ? CUBLAS_OP_T : CUBLAS_OP_N,
                            op2 = g.trans_second ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (ctx->math == KD_CUDA_MATH_FP32) {
        KD_CHECK_CUBLAS(cublasSgemm(ctx->cublas, op1, op2, g.m, g.n, g.k, &alpha, g.first,
                                    g.ld_first, g.second, g.ld_second, &beta, c, ldc));
        return;
    }
    /* float storage, tensor-core math: inputs down-converted, fp32 accumulation */
    const cublasComputeType_t ct = ctx->math == KD_CUDA_MATH_TF32   ? CUBLAS_COMPUTE_32F_FAST_TF32
                                   : ctx->math == KD_CUDA_MATH_FP16 ? CUBLAS_COMPUTE_32F_FAST_16F
                                                                    : CUBLAS_COMPUTE_32F_FAST_16BF;
    KD_CHECK_CUBLAS(cublasGemmEx(ctx->cublas, op1, op2, g.m, g.n, g.k, &alpha, g.first, CUDA_R_32F,
                                 g.ld_first, g.second, CUDA_R_32F, g.ld_second, &beta, c,
                                 CUDA_R_32F, ldc, ct, CUBLAS_GEMM_DEFAULT));
}

void kd_cuda_axpy(const kd_backend *b, size_t elems, float alpha, const float *x, float *y)
{
    KD_CHECK_CUDA(kd_cu_axpy(STREAM(b), elems, alpha, x, y));
}

void kd_cuda_scal(const kd_backend *b, size_t elems, float alpha, float *x)
{
    KD_CHECK_CUDA(kd_cu_scal(STREAM(b), elems, alpha, x));
}

void kd_cuda_add(const kd_backend *b, size_t elems, const float *a, const float *bb, float *y)
{
    KD_CHECK_CUDA(kd_cu_add(STREAM(b), elems, a, bb, y));
}

/* sum x[i] (y NULL) or x[i]*y[i] in double, to the host (synchronises the stream). */
static double sum_to_host(const kd_backend *b, size_t elems, const float *x, const float *y)
{
    kd_cuda_ctx *ctx = kd_cuda_ctx_of(b);
    if (elems == 0) return 0.0;
    double *scratch = kd_cuda_scratch(ctx, KD_CUDA_SLOT_SUM, (KD_CU_SUM_BLOCKS + 1) * sizeof(double));
    double *out_d = scratch + KD_CU_SUM_BLOCKS;
    KD_CHECK_CUDA(kd_cu_sum(ctx->stream, elems, x, y, scratch, out_d, NULL));
    KD_CHECK_CUDA(cudaMemcpyAsync(ctx->host_double, out_d, sizeof(double), cudaMemcpyDeviceToHost,
                                  ctx->stream));
    KD_CHECK_CUDA(cudaStreamSynchronize(ctx->stream));
    return *ctx->host_double;
}

void kd_cuda_sum(const kd_backend *b, size_t elems, const float *x, double *out_host)
{
    *out_host = sum_to_host(b, elems, x, NULL);
}

void kd_cuda_dot(const kd_backend *b, size_t elems, const float *x, const float *y,
                 double *out_host)
{
    *out_host = sum_to_host(b, elems, x, y);
}

void kd_cuda_sgd_step(const kd_backend *b, size_t elems, float lr, float momentum,
                      float weight_decay, float *w, const float *g, float *v)
{
    KD_CHECK_CUDA(kd_cu_sgd_step(STREAM(b), elems, lr, momentum, weight_decay, w, g, v));
}

int kd_cuda_all_finite(const kd_backend *b, const float *x, size_t elems)
{
    kd_cuda_ctx *ctx = kd_cuda_ctx_checked(b);
    if (elems == 0) return 1;
    int *flag = kd_cuda_scratch(ctx, KD_CUDA_SLOT_SUM, (KD_CU_SUM_BLOCKS + 1) * sizeof(double));
    KD_CHECK_CUDA(cudaMemsetAsync(flag, 0, sizeof *flag, ctx->stream));
    KD_CHECK_CUDA(kd_cu_flag_nonfinite(ctx->stream, elems, x, flag));
    KD_CHECK_CUDA(cudaMemcpyAsync(ctx->host_int, flag, sizeof *flag, cudaMemcpyDeviceToHost,
                                  ctx->stream));
    KD_CHECK_CUDA(cudaStreamSynchronize(ctx->stream));
    return *ctx->host_int == 0;
}

/* ---- normalisation ---------------------------------------------------------------------- */

static void check_groups(kd_shape s, int groups)
{
    KD_CHECK(groups >= 1 && s.c / groups * groups == s.c, "(GroupNorm: channels %d, groups %d)",
             s.c, groups);
}

void kd_cuda_group_norm_fwd(const kd_backend *b, kd_shape s, int groups, float eps, int relu,
                            const float *x, const float *gamma, const float *beta, float *y,
                            float *mean, float *rstd)
{
    check_groups(s, groups);
    KD_CHECK_CUDA(kd_cu_group_norm_fwd(STREAM(b), s.n, s.c, (size_t)s.h * s.w, groups, eps, relu,
                                       x, gamma, beta, y, mean, rstd));
}

void kd_cuda_group_norm_bwd(const kd_backend *b, kd_shape s, int groups, int relu, const float *x,
                            const float *y, const float *dy, const float *gamma,
                            const float *mean, const float *rstd, float *dx, int accumulate,
                            float *dgamma, float *dbeta)
{
    check_groups(s, groups);
    const size_t hw = (size_t)s.h * s.w;
    if ((long)s.n * groups == 0 || s.c == 0 || hw == 0) return;
    KD_CHECK(!relu || y != NULL, "(GroupNorm backward with relu needs y)");
    kd_cuda_ctx *ctx = kd_cuda_ctx_of(b);
    void *scratch = kd_cuda_scratch(ctx, KD_CUDA_SLOT_NORM,
                                    kd_cu_group_norm_bwd_scratch(s.n, s.c, groups));
    KD_CHECK_CUDA(kd_cu_group_norm_bwd(ctx->stream, s.n, s.c, hw, groups, relu, x, y, dy, gamma,
                                       mean, rstd, dx, accumulate, dgamma, dbeta, scratch));
}

void kd_cuda_batch_norm_inf_fwd(const kd_backend *b, kd_shape s, float eps, int relu,
                                const float *x, const float *rmean, const float *rvar,
                                const float *gamma, const float *beta, float *y)
{
    KD_CHECK_CUDA(kd_cu_batch_norm_inf_fwd(STREAM(b), s.n, s.c, (size_t)s.h * s.w, eps, relu, x,
                                           rmean, rvar, gamma, beta, y));
}

void kd_cuda_batch_norm_inf_bwd(const kd_backend *b, kd_shape s, float eps, int relu,
                                const float *x, const float *y, const float *dy,
                                const float *rmean, const float *rvar, const float *gamma,
                                float *dx, int accumulate, float *dgamma, float *dbeta)
{
    if (kd_shape_elems(s) == 0) return;
    KD_CHECK(!relu || y != NULL, "(BatchNorm backward with relu needs y)");
    KD_CHECK_CUDA(kd_cu_batch_norm_inf_bwd(STREAM(b), s.n, s.c, (size_t)s.h * s.w, eps, relu, x,
                                           y, dy, rmean, rvar, gamma, dx, accumulate, dgamma,
                                           dbeta));
}

/* ---- align_scale ------------------------------------------------------------------------ */

void kd_cuda_channel_stats(const kd_backend *b, kd_shape s, const float *x, float *mean,
                           float *std)
{
    KD_CHECK_CUDA(kd_cu_channel_stats(STREAM(b), s.n, s.c, (size_t)s.h * s.w, x, mean, std));
}

void kd_cuda_align_scale_fwd(const kd_backend *b, kd_shape s, const float *x,
                             const float *mean_t, const float *std_t, float *y, float *mean_x,
                             float *std_x)
{
    KD_CHECK_CUDA(kd_cu_align_scale_fwd(STREAM(b), s.n, s.c, (size_t)s.h * s.w, x, mean_t, std_t,
                                        y, mean_x, std_x));
}

void kd_cuda_align_scale_bwd(const kd_backend *b, kd_shape s, const float *x,
                             const float *mean_x, const float *std_x, const float *std_t,
                             const float *dy, float *dx, int accumulate)
{
    KD_CHECK_CUDA(kd_cu_align_scale_bwd(STREAM(b), s.n, s.c, (size_t)s.h * s.w, x, mean_x, std_x,
                                        std_t, dy, dx, accumulate));
}

/* ---- activations, scale, softmax -------------------------------------------------------- */

void kd_cuda_relu_fwd(const kd_backend *b, size_t elems, const float *x, float *y)
{
    KD_CHECK_CUDA(kd_cu_relu_fwd(STREAM(b), elems, x, y));
}

void kd_cuda_relu_bwd(const kd_backend *b, size_t elems, const float *y, const float *dy,
                      float *dx, int accumulate)
{
    KD_CHECK_CUDA(kd_cu_relu_bwd(STREAM(b), elems, y, dy, dx, accumulate));
}

void kd_cuda_sigmoid_fwd(const kd_backend *b, size_t elems, const float *x, float *y)
{
    KD_CHECK_CUDA(kd_cu_sigmoid_fwd(STREAM(b), elems, x, y));
}

void kd_cuda_sigmoid_bwd(const kd_backend *b, size_t elems, const float *y, const float *dy,
                         float *dx, int accumulate)
{
    KD_CHECK_CUDA(kd_cu_sigmoid_bwd(STREAM(b), elems, y, dy, dx, accumulate));
}

void kd_cuda_scale_fwd(const kd_backend *b, size_t elems, const float *scale, const float *x,
                       float *y)
{
    KD_CHECK_CUDA(kd_cu_scale_fwd(STREAM(b), elems, scale, x, y));
}

void kd_cuda_scale_bwd(const kd_backend *b, size_t elems, const float *scale, const float *x,
                       const float *dy, float *dx, int accumulate, float *dscale)
{
    kd_cuda_ctx *ctx = kd_cuda_ctx_of(b);
    if (dscale && elems) { /* before dx: dx may alias dy (stream order keeps it first) */
        double *scratch =
            kd_cuda_scratch(ctx, KD_CUDA_SLOT_SUM, (KD_CU_SUM_BLOCKS + 1) * sizeof(double));
        KD_CHECK_CUDA(kd_cu_sum(ctx->stream, elems, dy, x, scratch, NULL, dscale));
    }
    if (!dx) return;
    KD_CHECK_CUDA(kd_cu_scale_dx(ctx->stream, elems, scale, dy, dx, accumulate));
}

void kd_cuda_softmax_fwd(const kd_backend *b, size_t rows, int cols, const float *x, float *y)
{
    KD_CHECK_CUDA(kd_cu_softmax_fwd(STREAM(b), rows, cols, 0, x, y));
}

void kd_cuda_softmax_bwd(const kd_backend *b, size_t rows, int cols, const float *y,
                         const float *dy, float *dx, int accumulate)
{
    KD_CHECK_CUDA(kd_cu_softmax_bwd(STREAM(b), rows, cols, 0, y, dy, dx, accumulate));
}

void kd_cuda_log_softmax_fwd(const kd_backend *b, size_t rows, int cols, const float *x,
                             float *y)
{
    KD_CHECK_CUDA(kd_cu_softmax_fwd(STREAM(b), rows, cols, 1, x, y));
}

void kd_cuda_log_softmax_bwd(const kd_backend *b, size_t rows, int cols, const float *y,
                             const float *dy, float *dx, int accumulate)
{
    KD_CHECK_CUDA(kd_cu_softmax_bwd(STREAM(b), rows, cols, 1, y, dy, dx, accumulate));
}

/* ---- pooling and FPN resampling ---------------------------------------------------------- */

void kd_cuda_max_pool_fwd(const kd_backend *b, kd_shape xs, int k, int stride, int pad,
                          const float *x, float *y, int32_t *argmax)
{
    KD_CHECK(k >= 1 && stride >= 1 && pad >= 0 && 2 * pad <= k,
             "(max-pool: k %d stride %d pad %d)", k, stride, pad);
    kd_shape ys = kd_pool_out_shape(xs, k, stride, pad);
    KD_CHECK_CUDA(kd_cu_max_pool_fwd(STREAM(b), (size_t)xs.n * xs.c, xs.h, xs.w, ys.h, ys.w, k,
                                     stride, pad, x, y, argmax));
}

void kd_cuda_max_pool_bwd(const kd_backend *b, kd_shape xs, int k, int stride, int pad,
                          const int32_t *argmax, const float *dy, float *dx, int accumulate)
{
    KD_CHECK(k >= 1 && stride >= 1 && pad >= 0, "(max-pool: k %d stride %d pad %d)", k, stride,
             pad);
    kd_shape ys = kd_pool_out_shape(xs, k, stride, pad);
    KD_CHECK_CUDA(kd_cu_max_pool_bwd(STREAM(b), (size_t)xs.n * xs.c, xs.h, xs.w, ys.h, ys.w, k,
                                     stride, pad, argmax, dy, dx, accumulate));
}

void kd_cuda_upsample_nearest_add_fwd(const kd_backend *b, kd_shape ts, const float *top,
                                      int out_h, int out_w, float *y)
{
    const size_t planes = (size_t)ts.n * ts.c, out_plane = (size_t)out_h * out_w;
    if (out_plane == 0 || planes == 0) return;
    KD_CHECK((size_t)ts.h * ts.w > 0, "(upsample from an empty %dx%d map to %dx%d)", ts.h, ts.w,
             out_h, out_w);
    KD_CHECK_CUDA(kd_cu_upsample_add_fwd(STREAM(b), planes, ts.h, ts.w, out_h, out_w, top, y));
}

void kd_cuda_upsample_nearest_add_bwd(const kd_backend *b, kd_shape ts, int out_h, int out_w,
                                      const float *dy, float *dtop, int accumulate)
{
    KD_CHECK_CUDA(kd_cu_upsample_add_bwd(STREAM(b), (size_t)ts.n * ts.c, ts.h, ts.w, out_h, out_w,
                                         dy, dtop, accumulate));
}
