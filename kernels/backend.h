/* backend.h — the one interface through which model code runs tensor operations
 * (DESIGN.md §6). A backend is a struct of function pointers chosen at start-up by device
 * name ("cpu"; "cuda" later); the CPU backend is the reference every other must match.
 *
 * Conventions, for every operation below:
 *  - Tensors are plain `float *` to DEVICE memory (from b->alloc), float32, NCHW, contiguous.
 *    Their shape travels in a kd_shape {n, c, h, w} (letters fixed project-wide: N, C, H, W;
 *    A anchors and K classes where a kernel needs them). Row-wise operations (softmax, ...)
 *    take (rows, cols) over a contiguous row-major matrix: the "last axis" is cols.
 *  - Element counts are size_t `*_elems`, byte counts size_t `*_bytes`.
 *  - Gradients (DESIGN.md §5): PARAMETER gradients (dw, dbias, dgamma, dbeta, dscale)
 *    ACCUMULATE (+=) and may be NULL, which skips them (input-gradient-only backward, used
 *    through the frozen teacher layers of CrossKD). INPUT/activation gradients (dx) OVERWRITE
 *    (=) unless `accumulate` is non-zero, then they are added (+=), for fan-in points
 *    (residual adds, FPN top-down adds, the held feature CrossKD reads twice).
 *    dx may be NULL where documented, which skips it.
 *  - In-place: element-wise forwards allow y == x; element-wise backwards allow dx == dy
 *    (only with accumulate == 0). The GroupNorm, BatchNorm and align_scale forwards allow
 *    y == x when no backward follows (their backwards read x: the frozen teacher's towers).
 *    Everything else requires distinct buffers.
 *  - Zero-size tensors (any dimension 0) are valid and do nothing (parameter gradients get
 *    nothing added).
 *  - Shape arguments are trusted: they come from the model's planned shapes, not from users.
 *    A call with impossible arguments is a bug and fails through a fatal check.
 *  - Calls are made from one host thread per backend (the training step); the backend uses
 *    all its threads inside each call. Results are deterministic for a given thread count.
 */
#ifndef KD_KERNELS_BACKEND_H
#define KD_KERNELS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "proto/status.h"

typedef struct kd_shape {
    int n, c, h, w;
} kd_shape;

static inline size_t kd_shape_elems(kd_shape s)
{
    return (size_t)s.n * (size_t)s.c * (size_t)s.h * (size_t)s.w;
}

/* A 2-D convolution, groups = 1, dilation = 1. Weights are (c_out, x.c, kh, kw), OIHW. */
typedef struct kd_conv_desc {
    kd_shape x;            /* input N, C, H, W */
    int c_out;             /* output channels */
    int kh, kw;            /* kernel size */
    int stride_h, stride_w;
    int pad_h, pad_w;      /* symmetric zero padding */
    int has_bias;          /* forward adds a bias of c_out; backward may produce dbias */
} kd_conv_desc;

/* Output shape: H_out = (H + 2*pad_h - kh) / stride_h + 1 (floor), same for W. */
static inline kd_shape kd_conv_out_shape(const kd_conv_desc *d)
{
    kd_shape y = {d->x.n, d->c_out, (d->x.h + 2 * d->pad_h - d->kh) / d->stride_h + 1,
                  (d->x.w + 2 * d->pad_w - d->kw) / d->stride_w + 1};
    if (y.h < 0) y.h = 0;
    if (y.w < 0) y.w = 0;
    return y;
}

/* Max-pool output shape (PyTorch's floor mode, ceil_mode=False). */
static inline kd_shape kd_pool_out_shape(kd_shape x, int k, int stride, int pad)
{
    kd_shape y = {x.n, x.c, (x.h + 2 * pad - k) / stride + 1, (x.w + 2 * pad - k) / stride + 1};
    if (x.h == 0 || y.h < 0) y.h = 0;
    if (x.w == 0 || y.w < 0) y.w = 0;
    return y;
}

typedef struct kd_backend kd_backend;

struct kd_backend {
    const char *name;      /* "cpu" or "cuda" */
    int threads;           /* threads the backend uses inside each call */
    void *ctx;             /* backend-private state (oneDNN engine/stream, primitive cache) */

    /* ---- memory ------------------------------------------------------------------ */
    /* Device allocation, 64-byte aligned; a failure is fatal. alloc(0) returns NULL. */
    void *(*alloc)(const kd_backend *b, size_t bytes);
    void (*free)(const kd_backend *b, void *p);                    /* NULL is a no-op */
    void (*fill)(const kd_backend *b, float *x, size_t elems, float value);
    void (*zero)(const kd_backend *b, void *x, size_t bytes);
    void (*copy_from_host)(const kd_backend *b, void *dst_dev, const void *src_host,
                           size_t bytes);
    void (*copy_to_host)(const kd_backend *b, void *dst_host, const void *src_dev, size_t bytes);
    void (*copy)(const kd_backend *b, void *dst_dev, const void *src_dev, size_t bytes);
    /* Blocks until every queued operation has finished (no-op on the CPU). */
    void (*sync)(const kd_backend *b);

    /* ---- element-wise and BLAS-1 -------------------------------------------------- */
    void (*axpy)(const kd_backend *b, size_t elems, float alpha, const float *x, float *y); /* y += alpha*x */
    void (*scal)(const kd_backend *b, size_t elems, float alpha, float *x);                 /* x *= alpha */
    /* y = a + b' (elementwise; y may alias a or b'). */
    void (*add)(const kd_backend *b, size_t elems, const float *a, const float *bb, float *y);
    /* Sum of all elements in double, written to *out_host (a host pointer). */
    void (*sum)(const kd_backend *b, size_t elems, const float *x, double *out_host);
    /* Sum of x[i]*y[i] in double (y may be x: the squared L2 norm), to *out_host. Fixed
     * order: deterministic for a given thread count. */
    void (*dot)(const kd_backend *b, size_t elems, const float *x, const float *y,
                double *out_host);

    /* ---- optimiser (worker/optim.h) ----------------------------------------------- */
    /* One SGD step over elems parameters w with gradients g and momentum v, each element
     * kernels/kd_math.h's kd_sgd_elem (bit-identical across backends for the same inputs). */
    void (*sgd_step)(const kd_backend *b, size_t elems, float lr, float momentum,
                     float weight_decay, float *w, const float *g, float *v);

    /* ---- GEMM (OpenBLAS on the CPU), row-major ----------------------------------- */
    /* C(m x n) = alpha * op(A)(m x k) * op(B)(k x n) + beta * C; op = transpose when trans_*.
     * lda/ldb/ldc are row strides of A, B, C as stored. */
    void (*gemm)(const kd_backend *b, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *bm, int ldb, float beta, float *c, int ldc);

    /* ---- convolution (oneDNN on the CPU; primitives cached per shape) ------------- */
    /* y = conv(x, w) + bias; bias is read only when d->has_bias (may be NULL otherwise). */
    void (*conv_fwd)(const kd_backend *b, const kd_conv_desc *d, const float *x, const float *w,
                     const float *bias, float *y);
    /* dx (=, or += with accumulate) from dy and w. */
    void (*conv_bwd_data)(const kd_backend *b, const kd_conv_desc *d, const float *dy,
                          const float *w, float *dx, int accumulate);
    /* dw += dW(x, dy); dbias += sum of dy over N, H, W (only when d->has_bias and non-NULL).
     * dw may be NULL to compute only dbias. */
    void (*conv_bwd_weight)(const kd_backend *b, const kd_conv_desc *d, const float *x,
                            const float *dy, float *dw, float *dbias);

    /* ---- normalisation ------------------------------------------------------------ */
    /* GroupNorm over each image separately: groups divide c; biased variance; eps inside the
     * square root (PyTorch). gamma/beta (c) may be NULL (affine off). When relu is non-zero
     * the output is ReLU(GN(x)) (mmcv ConvModule order conv -> norm -> act, fused).
     * mean and rstd (n*groups each) are written for the backward. */
    void (*group_norm_fwd)(const kd_backend *b, kd_shape s, int groups, float eps, int relu,
                           const float *x, const float *gamma, const float *beta, float *y,
                           float *mean, float *rstd);
    /* y is read only when relu is non-zero (it masks dy by y > 0). dx may be NULL. */
    void (*group_norm_bwd)(const kd_backend *b, kd_shape s, int groups, int relu, const float *x,
                           const float *y, const float *dy, const float *gamma, const float *mean,
                           const float *rstd, float *dx, int accumulate, float *dgamma,
                           float *dbeta);
    /* BatchNorm in inference mode (MMDetection norm_eval=True): running statistics are
     * constants, gamma/beta are trainable. y = (x - rmean) / sqrt(rvar + eps) * gamma + beta,
     * then ReLU when relu is non-zero. */
    void (*batch_norm_inf_fwd)(const kd_backend *b, kd_shape s, float eps, int relu,
                               const float *x, const float *rmean, const float *rvar,
                               const float *gamma, const float *beta, float *y);
    /* y read only when relu. dx may be NULL. */
    void (*batch_norm_inf_bwd)(const kd_backend *b, kd_shape s, float eps, int relu,
                               const float *x, const float *y, const float *dy,
                               const float *rmean, const float *rvar, const float *gamma,
                               float *dx, int accumulate, float *dgamma, float *dbeta);

    /* ---- CrossKD align_scale (reference/crosskd.md §4.2, §13.3) -------------------- */
    /* Per-channel mean and UNBIASED std over N*H*W (the teacher side). With N*H*W < 2 the
     * std is 0 (PyTorch would give NaN), and with N*H*W == 0 the mean is 0 too. */
    void (*channel_stats)(const kd_backend *b, kd_shape s, const float *x, float *mean,
                          float *std);
    /* y = (x - mean_x) / (std_x + 1e-6) * std_t + mean_t per channel, with mean_x/std_x the
     * student statistics (computed here, written to mean_x/std_x for the backward). */
    void (*align_scale_fwd)(const kd_backend *b, kd_shape s, const float *x, const float *mean_t,
                            const float *std_t, float *y, float *mean_x, float *std_x);
    /* dx through the statistics (they carry gradient). Where std_x == 0 the statistics'
     * term is taken as 0 (every x equals the mean). */
    void (*align_scale_bwd)(const kd_backend *b, kd_shape s, const float *x, const float *mean_x,
                            const float *std_x, const float *std_t, const float *dy, float *dx,
                            int accumulate);

    /* ---- activations, scale -------------------------------------------------------- */
    void (*relu_fwd)(const kd_backend *b, size_t elems, const float *x, float *y);
    /* dx = dy * (y > 0); y is the forward output (so in-place forwards are fine). */
    void (*relu_bwd)(const kd_backend *b, size_t elems, const float *y, const float *dy,
                     float *dx, int accumulate);
    void (*sigmoid_fwd)(const kd_backend *b, size_t elems, const float *x, float *y);
    /* dx = dy * y * (1 - y), y the forward output. */
    void (*sigmoid_bwd)(const kd_backend *b, size_t elems, const float *y, const float *dy,
                        float *dx, int accumulate);
    /* y = scale[0] * x, scale a device scalar (the per-level Scale of the GFL head). */
    void (*scale_fwd)(const kd_backend *b, size_t elems, const float *scale, const float *x,
                      float *y);
    /* dx = scale*dy (dx may be NULL); dscale[0] += sum(dy * x) (dscale may be NULL). */
    void (*scale_bwd)(const kd_backend *b, size_t elems, const float *scale, const float *x,
                      const float *dy, float *dx, int accumulate, float *dscale);

    /* ---- softmax over the last axis (rows x cols, numerically stable) ------------- */
    void (*softmax_fwd)(const kd_backend *b, size_t rows, int cols, const float *x, float *y);
    /* dx = y * (dy - sum_j dy_j y_j), y the forward output. */
    void (*softmax_bwd)(const kd_backend *b, size_t rows, int cols, const float *y,
                        const float *dy, float *dx, int accumulate);
    void (*log_softmax_fwd)(const kd_backend *b, size_t rows, int cols, const float *x,
                            float *y);
    /* dx = dy - exp(y) * sum_j dy_j, y the forward output (log-probabilities). */
    void (*log_softmax_bwd)(const kd_backend *b, size_t rows, int cols, const float *y,
                            const float *dy, float *dx, int accumulate);

    /* ---- pooling and FPN resampling ---------------------------------------------- */
    /* Max-pool k x k with stride and padding; padding never wins (PyTorch: -inf padding).
     * argmax (int32, one per output element: the input index h*W+w within its (n, c) plane)
     * is written when non-NULL and is what the backward reads. Ties: the first in scan
     * order; a NaN wins, the last NaN in scan order (PyTorch's CPU kernel). */
    void (*max_pool_fwd)(const kd_backend *b, kd_shape x_shape, int k, int stride, int pad,
                         const float *x, float *y, int32_t *argmax);
    void (*max_pool_bwd)(const kd_backend *b, kd_shape x_shape, int k, int stride, int pad,
                         const int32_t *argmax, const float *dy, float *dx, int accumulate);
    /* FPN top-down step fused: y (N, C, out_h, out_w) += nearest_upsample(top, out_h, out_w),
     * PyTorch's F.interpolate(mode='nearest', size=...) index rule. The lateral's gradient
     * is dy itself (the caller routes it); this backward gives the top's. */
    void (*upsample_nearest_add_fwd)(const kd_backend *b, kd_shape top_shape, const float *top,
                                     int out_h, int out_w, float *y);
    void (*upsample_nearest_add_bwd)(const kd_backend *b, kd_shape top_shape, int out_h,
                                     int out_w, const float *dy, float *dtop, int accumulate);

    /* Releases the backend (its context, cache and scratch). Device buffers the caller
     * allocated must be freed before. */
    void (*close)(const kd_backend *b);
};

/* Opens the backend named `device` ("cpu"). threads: 0 = OMP_NUM_THREADS when set, else all
 * cores; otherwise that many. Errors (unknown or unavailable device, bad thread count) are
 * returned as a status with a message. *out stays valid until (*out)->close(*out). */
kd_status kd_backend_open(const char *device, int threads, const kd_backend **out, kd_err *err);

/* The CPU backend's constructor (kernels/cpu/backend_cpu.c), used by kd_backend_open. */
kd_status kd_cpu_backend_open(int threads, const kd_backend **out, kd_err *err);
/* The guarded CPU backend (kernels/cpu/guard.c): kd_backend_open("cpu") wraps the CPU
 * backend in it when kd_cpu_guard_requested() (CROSSKD_GUARD_DEVICE_MEMORY set, not "0").
 * Its buffers are inaccessible to the host outside backend calls, as a GPU's are. The wrap
 * takes over `in` (closed with it, or at once on failure). */
int kd_cpu_guard_requested(void);
kd_status kd_cpu_guard_wrap(const kd_backend *in, const kd_backend **out, kd_err *err);

#endif
