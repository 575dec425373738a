/* backend_cuda.c — the CUDA backend's table and its shared machinery: device discovery and
 * selection from the node-local rank, opening (streams, events, cuDNN and cuBLAS handles
 * bound to the compute stream), device memory operations, grow-only device scratch, pinned
 * host buffers and the asynchronous upload path on the copy stream.
 *
 * Conventions (kernels/backend.h, kd_cuda.h):
 *  - Memory: alloc is a plain cudaMalloc (256-byte aligned, more than the 64 promised);
 *    callers allocate their arenas once (DESIGN.md §5) and take views. free waits for the
 *    compute stream first, so no queued kernel can touch freed memory.
 *  - Every operation is enqueued on the compute stream (non-blocking with respect to the
 *    legacy default stream). Host-visible results (copy_to_host, sum) synchronise that
 *    stream; copy_from_host also does, so the caller may reuse its (pageable) source at
 *    once, as with the CPU backend. The asynchronous path is kd_cuda_upload from pinned
 *    memory on the copy stream, ordered against compute with events.
 *  - Failures inside a call are fatal (KD_CHECK_CUDA...); failures while opening are
 *    returned as a status with a message ("no CUDA device", a library that cannot start).
 *  - threads: unused (the GPU's parallelism is the grid); b->threads is 1.
 */
#include "kernels/cuda/cuda_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- device discovery and selection ---------------------------------------------------- */

int kd_cuda_device_count(const char **why)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (why) *why = NULL;
    if (e != cudaSuccess) {
        if (why) *why = cudaGetErrorString(e);
        (void)cudaGetLastError(); /* not sticky: clear it */
        return 0;
    }
    if (n == 0 && why) *why = "cudaGetDeviceCount reports 0 devices";
    return n;
}

kd_status kd_cuda_select_device(int local_rank, int local_size, int *device, kd_err *err)
{
    const char *why = NULL;
    int n = kd_cuda_device_count(&why);
    if (n <= 0) return kd_errf(err, KD_EUNSUPPORTED, "no CUDA device (%s)", why ? why : "none");
    if (local_size < 1 || local_rank < 0 || local_rank >= local_size)
        return kd_errf(err, KD_EINVAL, "cuda: local rank %d of %d is not valid", local_rank,
                       local_size);
    int dev;
    if (local_rank < n)
        dev = local_rank; /* every rank of the node sees every GPU of the node */
    else if (n == 1)
        dev = 0; /* one visible GPU per rank (CUDA_VISIBLE_DEVICES bound per task) */
    else
        return kd_errf(err, KD_EINVAL,
                       "cuda: local rank %d of %d has no GPU of its own: %d visible device(s) on "
                       "this node (one rank per GPU; check CUDA_VISIBLE_DEVICES and the ranks "
                       "per node)",
                       local_rank, local_size, n);
    cudaError_t e = cudaSetDevice(dev);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return kd_errf(err, KD_EUNSUPPORTED, "cuda: cannot use device %d: %s", dev,
                       cudaGetErrorString(e));
    }
    if (device) *device = dev;
    return KD_OK;
}

/* ---- scratch ------------------------------------------------------------------------ */

void *kd_cuda_scratch(kd_cuda_ctx *ctx, int slot, size_t bytes)
{
    KD_CHECK(slot >= 0 && slot < KD_CUDA_SCRATCH_SLOTS);
    if (ctx->scratch_bytes[slot] < bytes) {
        /* queued kernels may still read the old buffer: drain before freeing it */
        KD_CHECK_CUDA(cudaStreamSynchronize(ctx->stream));
        if (ctx->scratch[slot]) KD_CHECK_CUDA(cudaFree(ctx->scratch[slot]));
        ctx->scratch[slot] = NULL;
        ctx->scratch_bytes[slot] = 0;
        size_t rounded = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
        cudaError_t e = cudaMalloc(&ctx->scratch[slot], rounded);
        if (e != cudaSuccess)
            kd_fatalf(__FILE__, __LINE__, "cuda scratch: cannot allocate %zu bytes: %s", rounded,
                      cudaGetErrorString(e));
        ctx->scratch_bytes[slot] = rounded;
    }
    return ctx->scratch[slot];
}

/* ---- memory ------------------------------------------------------------------------ */

static void *cuda_alloc(const kd_backend *b, size_t bytes)
{
    (void)b;
    if (bytes == 0) return NULL;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        (void)cudaMemGetInfo(&free_b, &total_b);
        kd_fatalf(__FILE__, __LINE__,
                  "cuda alloc: cannot allocate %zu bytes (%s; %zu of %zu bytes free on the device)",
                  bytes, cudaGetErrorString(e), free_b, total_b);
    }
    return p;
}

static void cuda_free(const kd_backend *b, void *p)
{
    if (!p) return;
    KD_CHECK_CUDA(cudaStreamSynchronize(kd_cuda_ctx_of(b)->stream));
    KD_CHECK_CUDA(cudaFree(p));
}

static void cuda_fill(const kd_backend *b, float *x, size_t elems, float value)
{
    KD_CHECK_CUDA(kd_cu_fill(kd_cuda_ctx_of(b)->stream, x, elems, value));
}

static void cuda_zero(const kd_backend *b, void *x, size_t bytes)
{
    if (bytes) KD_CHECK_CUDA(cudaMemsetAsync(x, 0, bytes, kd_cuda_ctx_of(b)->stream));
}

static void cuda_copy_from_host(const kd_backend *b, void *dst, const void *src, size_t bytes)
{
    if (!bytes) return;
    kd_cuda_ctx *ctx = kd_cuda_ctx_of(b);
    KD_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx->stream));
    KD_CHECK_CUDA(cudaStreamSynchronize(ctx->stream));
}

static void cuda_copy_to_host(const kd_backend *b, void *dst, const void *src, size_t bytes)
{
    if (!bytes) return;
    kd_cuda_ctx *ctx = kd_cuda_ctx_of(b);
    KD_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx->stream));
    KD_CHECK_CUDA(cudaStreamSynchronize(ctx->stream));
}

/* Device to device; overlapping ranges (memmove semantics, as the CPU) go through scratch. */
static void cuda_copy(const kd_backend *b, void *dst, const void *src, size_t bytes)
{
    if (!bytes || dst == src) return;
    kd_cuda_ctx *ctx = kd_cuda_ctx_of(b);
    const char *d = dst, *s = src;
    if (d < s + bytes && s < d + bytes) {
        void *tmp = kd_cuda_scratch(ctx, KD_CUDA_SLOT_COPY, bytes);
        KD_CHECK_CUDA(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, ctx->stream));
        src = tmp;
    }
    KD_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx->stream));
}

static void cuda_sync(const kd_backend *b)
{
    kd_cuda_ctx *ctx = kd_cuda_ctx_of(b);
    KD_CHECK_CUDA(cudaStreamSynchronize(ctx->copy_stream));
    KD_CHECK_CUDA(cudaStreamSynchronize(ctx->stream));
}

/* ---- pinned host buffers and uploads ----------------------------------------------------- */

void *kd_cuda_pinned_alloc(size_t bytes)
{
    if (bytes == 0) return NULL;
    void *p = NULL;
    cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocPortable);
    if (e != cudaSuccess)
        kd_fatalf(__FILE__, __LINE__, "cuda: cannot allocate %zu bytes of pinned host memory: %s",
                  bytes, cudaGetErrorString(e));
    return p;
}

void kd_cuda_pinned_free(void *p)
{
    if (p) KD_CHECK_CUDA(cudaFreeHost(p));
}

static void cuda_close(const kd_backend *b);

kd_cuda_ctx *kd_cuda_ctx_checked(const kd_backend *b)
{
    KD_CHECK(b != NULL && b->close == cuda_close, "(not a CUDA backend)");
    return kd_cuda_ctx_of(b);
}

void kd_cuda_upload_after_compute(const kd_backend *b)
{
    kd_cuda_ctx *ctx = kd_cuda_ctx_checked(b);
    KD_CHECK_CUDA(cudaEventRecord(ctx->ev_compute, ctx->stream));
    KD_CHECK_CUDA(cudaStreamWaitEvent(ctx->copy_stream, ctx->ev_compute, 0));
}

void kd_cuda_upload(const kd_backend *b, void *dst_dev, const void *src_pinned, size_t bytes)
{
    kd_cuda_ctx *ctx = kd_cuda_ctx_checked(b);
    if (!bytes) return;
    KD_CHECK_CUDA(cudaMemcpyAsync(dst_dev, src_pinned, bytes, cudaMemcpyHostToDevice,
                                  ctx->copy_stream));
    KD_CHECK_CUDA(cudaEventRecord(ctx->ev_upload, ctx->copy_stream));
}

void kd_cuda_upload_fence(const kd_backend *b)
{
    kd_cuda_ctx *ctx = kd_cuda_ctx_checked(b);
    KD_CHECK_CUDA(cudaStreamWaitEvent(ctx->stream, ctx->ev_upload, 0));
}

void kd_cuda_upload_sync(const kd_backend *b)
{
    KD_CHECK_CUDA(cudaStreamSynchronize(kd_cuda_ctx_checked(b)->copy_stream));
}

void *kd_cuda_stream(const kd_backend *b) { return (void *)kd_cuda_ctx_checked(b)->stream; }

int kd_cuda_device(const kd_backend *b) { return kd_cuda_ctx_checked(b)->device; }

size_t kd_cuda_conv_cache_entries(const kd_backend *b)
{
    return kd_cuda_conv_cache_count(kd_cuda_ctx_checked(b));
}

void kd_cuda_set_math(const kd_backend *b, kd_cuda_math math)
{
    KD_CHECK(math >= KD_CUDA_MATH_FP32 && math <= KD_CUDA_MATH_BF16, "(math mode %d)", (int)math);
    kd_cuda_ctx_checked(b)->math = math; /* conv entries are keyed by it: nothing to flush */
}

kd_cuda_math kd_cuda_get_math(const kd_backend *b) { return kd_cuda_ctx_checked(b)->math; }

kd_status kd_cuda_math_parse(const char *name, kd_cuda_math *out, kd_err *err)
{
    static const char *const names[] = {"fp32", "tf32", "fp16", "bf16"};
    for (int i = 0; name && i < 4; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (kd_cuda_math)i;
            return KD_OK;
        }
    return kd_errf(err, KD_EINVAL, "cuda math \"%s\": expected fp32, tf32, fp16 or bf16",
                   name ? name : "(null)");
}

/* ---- open / close ----------------------------------------------------------------- */

static void cuda_close(const kd_backend *b)
{
    if (!b) return;
    kd_cuda_ctx *ctx = kd_cuda_ctx_of(b);
    if (ctx) {
        /* best effort: a broken device must not turn close into a second fatal error */
        if (ctx->copy_stream) (void)cudaStreamSynchronize(ctx->copy_stream);
        if (ctx->stream) (void)cudaStreamSynchronize(ctx->stream);
        kd_cuda_conv_cache_free(ctx);
        for (int i = 0; i < KD_CUDA_SCRATCH_SLOTS; i++)
            if (ctx->scratch[i]) (void)cudaFree(ctx->scratch[i]);
        if (ctx->cublas) (void)cublasDestroy(ctx->cublas);
        if (ctx->cudnn) (void)cudnnDestroy(ctx->cudnn);
        if (ctx->ev_compute) (void)cudaEventDestroy(ctx->ev_compute);
        if (ctx->ev_upload) (void)cudaEventDestroy(ctx->ev_upload);
        if (ctx->copy_stream) (void)cudaStreamDestroy(ctx->copy_stream);
        if (ctx->stream) (void)cudaStreamDestroy(ctx->stream);
        if (ctx->host_double) (void)cudaFreeHost(ctx->host_double);
        if (ctx->host_int) (void)cudaFreeHost(ctx->host_int);
        free(ctx);
    }
    free((kd_backend *)b);
}

/* CROSSKD_CUDNN_WORKSPACE_MB: the cuDNN workspace limit per convolution, in MiB. */
static kd_status ws_limit_from_env(size_t *limit, kd_err *err)
{
    *limit = KD_CUDA_WS_LIMIT_DEFAULT;
    const char *s = getenv("CROSSKD_CUDNN_WORKSPACE_MB");
    if (!s || !*s) return KD_OK;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > (1L << 20))
        return kd_errf(err, KD_EINVAL,
                       "CROSSKD_CUDNN_WORKSPACE_MB=\"%s\": expected MiB between 0 and 1048576", s);
    *limit = (size_t)v << 20;
    return KD_OK;
}

#define OPEN_TRY(COND, ...)                                                         \
    do {                                                                            \
        if (!(COND)) {                                                              \
            (void)cudaGetLastError();                                               \
            kd_errf(err, KD_EUNSUPPORTED, __VA_ARGS__);                             \
            cuda_close(b);                                                          \
            return KD_EUNSUPPORTED;                                                 \
        }                                                                           \
    } while (0)

kd_status kd_cuda_backend_open(int threads, const kd_backend **out, kd_err *err)
{
    if (!out) return kd_errf(err, KD_EINVAL, "kd_cuda_backend_open: out is NULL");
    *out = NULL;
    if (threads < 0)
        return kd_errf(err, KD_EINVAL, "threads: %d is negative (0 = OMP_NUM_THREADS or all cores)",
                       threads);
    const char *why = NULL;
    if (kd_cuda_device_count(&why) <= 0)
        return kd_errf(err, KD_EUNSUPPORTED, "device: \"cuda\": no CUDA device (%s)",
                       why ? why : "none");
    size_t ws_limit = 0;
    if (ws_limit_from_env(&ws_limit, err) != KD_OK) return err ? err->code : KD_EINVAL;

    kd_backend *b = calloc(1, sizeof *b);
    kd_cuda_ctx *ctx = calloc(1, sizeof *ctx);
    if (!b || !ctx) {
        free(b);
        free(ctx);
        return kd_errf(err, KD_ENOMEM, "cuda backend: out of memory");
    }
    b->ctx = ctx;
    ctx->ws_limit = ws_limit;
    cudaError_t ce;
    cudnnStatus_t ds;
    cublasStatus_t bs;
    OPEN_TRY((ce = cudaGetDevice(&ctx->device)) == cudaSuccess, "cuda: no current device: %s",
             cudaGetErrorString(ce));
    OPEN_TRY((ce = cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking)) == cudaSuccess &&
                 (ce = cudaStreamCreateWithFlags(&ctx->copy_stream, cudaStreamNonBlocking)) ==
                     cudaSuccess,
             "cuda: cannot create streams on device %d: %s", ctx->device, cudaGetErrorString(ce));
    OPEN_TRY((ce = cudaEventCreateWithFlags(&ctx->ev_compute, cudaEventDisableTiming)) ==
                     cudaSuccess &&
                 (ce = cudaEventCreateWithFlags(&ctx->ev_upload, cudaEventDisableTiming)) ==
                     cudaSuccess,
             "cuda: cannot create events: %s", cudaGetErrorString(ce));
    OPEN_TRY((ce = cudaHostAlloc((void **)&ctx->host_double, sizeof(double),
                                 cudaHostAllocDefault)) == cudaSuccess &&
                 (ce = cudaHostAlloc((void **)&ctx->host_int, sizeof(int), cudaHostAllocDefault)) ==
                     cudaSuccess,
             "cuda: cannot allocate pinned memory: %s", cudaGetErrorString(ce));
    OPEN_TRY((ds = cudnnCreate(&ctx->cudnn)) == CUDNN_STATUS_SUCCESS &&
                 (ds = cudnnSetStream(ctx->cudnn, ctx->stream)) == CUDNN_STATUS_SUCCESS,
             "cuDNN: cannot start on device %d: %s", ctx->device, cudnnGetErrorString(ds));
    OPEN_TRY((bs = cublasCreate(&ctx->cublas)) == CUBLAS_STATUS_SUCCESS &&
                 (bs = cublasSetStream(ctx->cublas, ctx->stream)) == CUBLAS_STATUS_SUCCESS &&
                 (bs = cublasSetMathMode(ctx->cublas, CUBLAS_DEFAULT_MATH)) ==
                     CUBLAS_STATUS_SUCCESS,
             "cuBLAS: cannot start on device %d: %s", ctx->device, cublasGetStatusString(bs));

    b->name = "cuda";
    b->threads = 1;
    b->alloc = cuda_alloc;
    b->free = cuda_free;
    b->fill = cuda_fill;
    b->zero = cuda_zero;
    b->copy_from_host = cuda_copy_from_host;
    b->copy_to_host = cuda_copy_to_host;
    b->copy = cuda_copy;
    b->sync = cuda_sync;
    b->axpy = kd_cuda_axpy;
    b->scal = kd_cuda_scal;
    b->add = kd_cuda_add;
    b->sum = kd_cuda_sum;
    b->dot = kd_cuda_dot;
    b->sgd_step = kd_cuda_sgd_step;
    b->gemm = kd_cuda_gemm;
    b->conv_fwd = kd_cuda_conv_fwd;
    b->conv_bwd_data = kd_cuda_conv_bwd_data;
    b->conv_bwd_weight = kd_cuda_conv_bwd_weight;
    b->group_norm_fwd = kd_cuda_group_norm_fwd;
    b->group_norm_bwd = kd_cuda_group_norm_bwd;
    b->batch_norm_inf_fwd = kd_cuda_batch_norm_inf_fwd;
    b->batch_norm_inf_bwd = kd_cuda_batch_norm_inf_bwd;
    b->channel_stats = kd_cuda_channel_stats;
    b->align_scale_fwd = kd_cuda_align_scale_fwd;
    b->align_scale_bwd = kd_cuda_align_scale_bwd;
    b->relu_fwd = kd_cuda_relu_fwd;
    b->relu_bwd = kd_cuda_relu_bwd;
    b->sigmoid_fwd = kd_cuda_sigmoid_fwd;
    b->sigmoid_bwd = kd_cuda_sigmoid_bwd;
    b->scale_fwd = kd_cuda_scale_fwd;
    b->scale_bwd = kd_cuda_scale_bwd;
    b->softmax_fwd = kd_cuda_softmax_fwd;
    b->softmax_bwd = kd_cuda_softmax_bwd;
    b->log_softmax_fwd = kd_cuda_log_softmax_fwd;
    b->log_softmax_bwd = kd_cuda_log_softmax_bwd;
    b->max_pool_fwd = kd_cuda_max_pool_fwd;
    b->max_pool_bwd = kd_cuda_max_pool_bwd;
    b->upsample_nearest_add_fwd = kd_cuda_upsample_nearest_add_fwd;
    b->upsample_nearest_add_bwd = kd_cuda_upsample_nearest_add_bwd;
    b->close = cuda_close;
    *out = b;
    return KD_OK;
}
