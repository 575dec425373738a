/* backend_cpu.c — the CPU backend's table and its shared machinery: opening (thread count,
 * oneDNN engine and stream), memory operations on host memory (the CPU's "device"), the
 * grow-only scratch buffers and the oneDNN status names for fatal checks.
 *
 * Threads: kd_cpu_backend_open(threads) with 0 takes OMP_NUM_THREADS when it is set to a
 * positive integer, else every core (omp_get_num_procs). The count is applied to OpenMP
 * (this file's regions and oneDNN, built with the OpenMP runtime) and to OpenBLAS.
 * Calls come from the thread that opened the backend (omp_set_num_threads is per thread;
 * our own parallel regions also pass num_threads explicitly).
 */
#include "kernels/cpu/cpu_internal.h"

#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

/* OpenBLAS's own thread control (declared in its cblas.h, repeated for other BLAS headers). */
void openblas_set_num_threads(int num_threads);

const char *kd_cpu_dnnl_status_str(dnnl_status_t s)
{
    switch (s) {
    case dnnl_success: return "dnnl_success";
    case dnnl_out_of_memory: return "dnnl_out_of_memory";
    case dnnl_invalid_arguments: return "dnnl_invalid_arguments";
    case dnnl_unimplemented: return "dnnl_unimplemented";
    case dnnl_iterator_ends: return "dnnl_iterator_ends";
    case dnnl_runtime_error: return "dnnl_runtime_error";
    case dnnl_not_required: return "dnnl_not_required";
    default: return "unknown dnnl_status_t";
    }
}

void *kd_cpu_scratch(kd_cpu_ctx *ctx, int slot, size_t bytes)
{
    KD_CHECK(slot >= 0 && slot < KD_CPU_SCRATCH_SLOTS);
    if (ctx->scratch_bytes[slot] < bytes) {
        free(ctx->scratch[slot]);
        size_t rounded = (bytes + 63) & ~(size_t)63;
        ctx->scratch[slot] = aligned_alloc(64, rounded);
        if (!ctx->scratch[slot])
            kd_fatalf(__FILE__, __LINE__, "cpu scratch: cannot allocate %zu bytes", rounded);
        ctx->scratch_bytes[slot] = rounded;
    }
    return ctx->scratch[slot];
}

/* ---- memory ------------------------------------------------------------------------ */

static void *cpu_alloc(const kd_backend *b, size_t bytes)
{
    (void)b;
    if (bytes == 0) return NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded);
    if (!p) kd_fatalf(__FILE__, __LINE__, "cpu alloc: cannot allocate %zu bytes", rounded);
    return p;
}

static void cpu_free(const kd_backend *b, void *p)
{
    (void)b;
    free(p);
}

static void cpu_fill(const kd_backend *b, float *x, size_t elems, float value)
{
    int nt = elems >= KD_CPU_PAR_MIN_ELEMS ? b->threads : 1;
#pragma omp parallel for simd num_threads(nt) schedule(static)
    for (size_t i = 0; i < elems; i++) x[i] = value;
}

static void cpu_zero(const kd_backend *b, void *x, size_t bytes)
{
    (void)b;
    if (bytes) memset(x, 0, bytes);
}

static void cpu_copy(const kd_backend *b, void *dst, const void *src, size_t bytes)
{
    (void)b;
    if (bytes && dst != src) memmove(dst, src, bytes);
}

static void cpu_sync(const kd_backend *b) { (void)b; }

/* ---- open / close ----------------------------------------------------------------- */

static void cpu_close(const kd_backend *b)
{
    if (!b) return;
    kd_cpu_ctx *ctx = kd_cpu_ctx_of(b);
    if (ctx) {
        kd_cpu_conv_cache_free(ctx);
        for (int i = 0; i < KD_CPU_SCRATCH_SLOTS; i++) free(ctx->scratch[i]);
        if (ctx->stream) dnnl_stream_destroy(ctx->stream);
        if (ctx->engine) dnnl_engine_destroy(ctx->engine);
        free(ctx);
    }
    free((kd_backend *)b);
}

static int threads_from_env(void)
{
    const char *s = getenv("OMP_NUM_THREADS");
    if (!s || !*s) return 0;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    /* OMP_NUM_THREADS may be a list ("4,2"); its first entry is the outer level. */
    if (errno || end == s || (*end && *end != ',') || v <= 0 || v > 4096) return 0;
    return (int)v;
}

kd_status kd_cpu_backend_open(int threads, const kd_backend **out, kd_err *err)
{
    if (!out) return kd_errf(err, KD_EINVAL, "kd_cpu_backend_open: out is NULL");
    *out = NULL;
    if (threads < 0)
        return kd_errf(err, KD_EINVAL, "threads: %d is negative (0 = OMP_NUM_THREADS or all cores)",
                       threads);
    if (threads == 0) threads = threads_from_env();
    if (threads == 0) threads = omp_get_num_procs();
    if (threads < 1) threads = 1;

    kd_backend *b = calloc(1, sizeof *b);
    kd_cpu_ctx *ctx = calloc(1, sizeof *ctx);
    if (!b || !ctx) {
        free(b);
        free(ctx);
        return kd_errf(err, KD_ENOMEM, "cpu backend: out of memory");
    }
    ctx->threads = threads;
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    if (dnnl_engine_create(&ctx->engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&ctx->stream, ctx->engine, dnnl_stream_default_flags) != dnnl_success) {
        b->ctx = ctx;
        cpu_close(b);
        return kd_errf(err, KD_EUNSUPPORTED, "cpu backend: oneDNN cannot create a CPU engine");
    }

    b->name = "cpu";
    b->threads = threads;
    b->ctx = ctx;
    b->alloc = cpu_alloc;
    b->free = cpu_free;
    b->fill = cpu_fill;
    b->zero = cpu_zero;
    b->copy_from_host = cpu_copy;
    b->copy_to_host = cpu_copy;
    b->copy = cpu_copy;
    b->sync = cpu_sync;
    b->axpy = kd_cpu_axpy;
    b->scal = kd_cpu_scal;
    b->add = kd_cpu_add;
    b->sum = kd_cpu_sum;
    b->dot = kd_cpu_dot;
    b->sgd_step = kd_cpu_sgd_step;
    b->gemm = kd_cpu_gemm;
    b->conv_fwd = kd_cpu_conv_fwd;
    b->conv_bwd_data = kd_cpu_conv_bwd_data;
    b->conv_bwd_weight = kd_cpu_conv_bwd_weight;
    b->group_norm_fwd = kd_cpu_group_norm_fwd;
    b->group_norm_bwd = kd_cpu_group_norm_bwd;
    b->batch_norm_inf_fwd = kd_cpu_batch_norm_inf_fwd;
    b->batch_norm_inf_bwd = kd_cpu_batch_norm_inf_bwd;
    b->channel_stats = kd_cpu_channel_stats;
    b->align_scale_fwd = kd_cpu_align_scale_fwd;
    b->align_scale_bwd = kd_cpu_align_scale_bwd;
    b->relu_fwd = kd_cpu_relu_fwd;
    b->relu_bwd = kd_cpu_relu_bwd;
    b->sigmoid_fwd = kd_cpu_sigmoid_fwd;
    b->sigmoid_bwd = kd_cpu_sigmoid_bwd;
    b->scale_fwd = kd_cpu_scale_fwd;
    b->scale_bwd = kd_cpu_scale_bwd;
    b->softmax_fwd = kd_cpu_softmax_fwd;
    b->softmax_bwd = kd_cpu_softmax_bwd;
    b->log_softmax_fwd = kd_cpu_log_softmax_fwd;
    b->log_softmax_bwd = kd_cpu_log_softmax_bwd;
    b->max_pool_fwd = kd_cpu_max_pool_fwd;
    b->max_pool_bwd = kd_cpu_max_pool_bwd;
    b->upsample_nearest_add_fwd = kd_cpu_upsample_nearest_add_fwd;
    b->upsample_nearest_add_bwd = kd_cpu_upsample_nearest_add_bwd;
    b->close = cpu_close;
    *out = b;
    return KD_OK;
}
