/* guard.c — the CPU backend with GPU-like memory, a debugging aid: kd_backend_open("cpu")
 * returns it when CROSSKD_GUARD_DEVICE_MEMORY is set to a non-empty value other than "0".
 * Its "device" buffers come from one reserved address range that is PROT_NONE whenever no
 * backend call is running, so host code that reads or writes device memory directly (which
 * works on the CPU backend but not on a GPU) dies at once with SIGSEGV at the faulting
 * line, instead of on the first real GPU. The tests run the trainer, the inspector and the
 * evaluator under it (tests/unit/model, tests/unit/distill, tests/integration/train).
 *
 * Conventions:
 *  - Every operation of the table is the CPU backend's own, bracketed by opening the used
 *    part of the range (read-write) and closing it again; results are the CPU backend's bits.
 *  - Allocation is a bump pointer (64-byte aligned) in a 64 GiB reservation of addresses
 *    (memory is committed only where used); free keeps the buffer, so nothing is ever
 *    reused and a stale pointer never reaches another buffer. Running out is fatal. The
 *    model and distiller allocate their arenas once, so a run stays near its real size.
 *  - Only for one rank: the MPI gradient transport reads the buffers on the host by design
 *    (worker/grad_sync.c), as NCCL does on a GPU, which the guard would report.
 */
#include "kernels/cpu/cpu_internal.h"

#include "proto/log.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUARD_RESERVE_BYTES ((size_t)64 << 30)

typedef struct guard_ctx {
    const kd_backend *in; /* the CPU backend doing the work */
    char *base;
    size_t used, page;    /* bytes handed out; page size */
    int depth;            /* nesting of open() */
} guard_ctx;

/* The table and its state in one block; b->ctx stays the CPU backend's context, so the CPU
 * backend's test hooks (kd_cpu_conv_cache_entries, ...) work on the guarded table too. */
typedef struct guarded {
    kd_backend table; /* first: a kd_backend * is a guarded * */
    guard_ctx g;
} guarded;

static guard_ctx *G(const kd_backend *b) { return &((guarded *)(uintptr_t)b)->g; }

static size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

static void guard_open(const kd_backend *b)
{
    guard_ctx *g = G(b);
    if (g->depth++ == 0 && g->used)
        KD_CHECK(mprotect(g->base, round_up(g->used, g->page), PROT_READ | PROT_WRITE) == 0);
}

static void guard_close(const kd_backend *b)
{
    guard_ctx *g = G(b);
    if (--g->depth == 0 && g->used) KD_CHECK(mprotect(g->base, round_up(g->used, g->page), PROT_NONE) == 0);
}

#define IN(b) (G(b)->in)
/* A table entry: the CPU backend's operation with the range open around it. */
#define GUARDED(name, params, args)                                                     \
    static void g_##name params                                                         \
    {                                                                                   \
        guard_open(b);                                                                  \
        IN(b)->name args;                                                               \
        guard_close(b);                                                                 \
    }

static void *g_alloc(const kd_backend *b, size_t bytes)
{
    guard_ctx *g = G(b);
    if (bytes == 0) return NULL;
    size_t off = round_up(g->used, 64);
    if (off + bytes > GUARD_RESERVE_BYTES)
        kd_fatalf(__FILE__, __LINE__, "guarded cpu backend: the %zu-byte reservation is used up",
                  GUARD_RESERVE_BYTES);
    g->used = off + bytes;
    if (g->depth > 0) /* allocated inside an open bracket: open the new pages too */
        KD_CHECK(mprotect(g->base, round_up(g->used, g->page), PROT_READ | PROT_WRITE) == 0);
    return g->base + off;
}

static void g_free(const kd_backend *b, void *p)
{
    (void)b;
    (void)p; /* the buffer stays reserved and guarded (see the conventions above) */
}

GUARDED(fill, (const kd_backend *b, float *x, size_t elems, float value), (IN(b), x, elems, value))
GUARDED(zero, (const kd_backend *b, void *x, size_t bytes), (IN(b), x, bytes))
GUARDED(copy_from_host, (const kd_backend *b, void *dst, const void *src, size_t bytes),
        (IN(b), dst, src, bytes))
GUARDED(copy_to_host, (const kd_backend *b, void *dst, const void *src, size_t bytes),
        (IN(b), dst, src, bytes))
GUARDED(copy, (const kd_backend *b, void *dst, const void *src, size_t bytes), (IN(b), dst, src, bytes))
GUARDED(sync, (const kd_backend *b), (IN(b)))
GUARDED(axpy, (const kd_backend *b, size_t n, float a, const float *x, float *y), (IN(b), n, a, x, y))
GUARDED(scal, (const kd_backend *b, size_t n, float a, float *x), (IN(b), n, a, x))
GUARDED(add, (const kd_backend *b, size_t n, const float *a, const float *bb, float *y),
        (IN(b), n, a, bb, y))
GUARDED(sum, (const kd_backend *b, size_t n, const float *x, double *out), (IN(b), n, x, out))
GUARDED(dot, (const kd_backend *b, size_t n, const float *x, const float *y, double *out),
        (IN(b), n, x, y, out))
GUARDED(sgd_step, (const kd_backend *b, size_t n, float lr, float m, float wd, float *w, const float *g, float *v),
        (IN(b), n, lr, m, wd, w, g, v))
GUARDED(gemm, (const kd_backend *b, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
               const float *bm, int ldb, float beta, float *c, int ldc),
        (IN(b), ta, tb, m, n, k, alpha, a, lda, bm, ldb, beta, c, ldc))
GUARDED(conv_fwd, (const kd_backend *b, const kd_conv_desc *d, const float *x, const float *w, const float *bias,
                   float *y),
        (IN(b), d, x, w, bias, y))
GUARDED(conv_bwd_data, (const kd_backend *b, const kd_conv_desc *d, const float *dy, const float *w, float *dx,
                        int acc),
        (IN(b), d, dy, w, dx, acc))
GUARDED(conv_bwd_weight, (const kd_backend *b, const kd_conv_desc *d, const float *x, const float *dy, float *dw,
                          float *dbias),
        (IN(b), d, x, dy, dw, dbias))
GUARDED(group_norm_fwd, (const kd_backend *b, kd_shape s, int groups, float eps, int relu, const float *x,
                         const float *gamma, const float *beta, float *y, float *mean, float *rstd),
        (IN(b), s, groups, eps, relu, x, gamma, beta, y, mean, rstd))
GUARDED(group_norm_bwd, (const kd_backend *b, kd_shape s, int groups, int relu, const float *x, const float *y,
                         const float *dy, const float *gamma, const float *mean, const float *rstd, float *dx,
                         int acc, float *dgamma, float *dbeta),
        (IN(b), s, groups, relu, x, y, dy, gamma, mean, rstd, dx, acc, dgamma, dbeta))
GUARDED(batch_norm_inf_fwd, (const kd_backend *b, kd_shape s, float eps, int relu, const float *x,
                             const float *rmean, const float *rvar, const float *gamma, const float *beta, float *y),
        (IN(b), s, eps, relu, x, rmean, rvar, gamma, beta, y))
GUARDED(batch_norm_inf_bwd, (const kd_backend *b, kd_shape s, float eps, int relu, const float *x, const float *y,
                             const float *dy, const float *rmean, const float *rvar, const float *gamma, float *dx,
                             int acc, float *dgamma, float *dbeta),
        (IN(b), s, eps, relu, x, y, dy, rmean, rvar, gamma, dx, acc, dgamma, dbeta))
GUARDED(channel_stats, (const kd_backend *b, kd_shape s, const float *x, float *mean, float *std),
        (IN(b), s, x, mean, std))
GUARDED(align_scale_fwd, (const kd_backend *b, kd_shape s, const float *x, const float *mean_t, const float *std_t,
                          float *y, float *mean_x, float *std_x),
        (IN(b), s, x, mean_t, std_t, y, mean_x, std_x))
GUARDED(align_scale_bwd, (const kd_backend *b, kd_shape s, const float *x, const float *mean_x, const float *std_x,
                          const float *std_t, const float *dy, float *dx, int acc),
        (IN(b), s, x, mean_x, std_x, std_t, dy, dx, acc))
GUARDED(relu_fwd, (const kd_backend *b, size_t n, const float *x, float *y), (IN(b), n, x, y))
GUARDED(relu_bwd, (const kd_backend *b, size_t n, const float *y, const float *dy, float *dx, int acc),
        (IN(b), n, y, dy, dx, acc))
GUARDED(sigmoid_fwd, (const kd_backend *b, size_t n, const float *x, float *y), (IN(b), n, x, y))
GUARDED(sigmoid_bwd, (const kd_backend *b, size_t n, const float *y, const float *dy, float *dx, int acc),
        (IN(b), n, y, dy, dx, acc))
GUARDED(scale_fwd, (const kd_backend *b, size_t n, const float *scale, const float *x, float *y),
        (IN(b), n, scale, x, y))
GUARDED(scale_bwd, (const kd_backend *b, size_t n, const float *scale, const float *x, const float *dy, float *dx,
                    int acc, float *dscale),
        (IN(b), n, scale, x, dy, dx, acc, dscale))
GUARDED(softmax_fwd, (const kd_backend *b, size_t rows, int cols, const float *x, float *y), (IN(b), rows, cols, x, y))
GUARDED(softmax_bwd, (const kd_backend *b, size_t rows, int cols, const float *y, const float *dy, float *dx,
                      int acc),
        (IN(b), rows, cols, y, dy, dx, acc))
GUARDED(log_softmax_fwd, (const kd_backend *b, size_t rows, int cols, const float *x, float *y),
        (IN(b), rows, cols, x, y))
GUARDED(log_softmax_bwd, (const kd_backend *b, size_t rows, int cols, const float *y, const float *dy, float *dx,
                          int acc),
        (IN(b), rows, cols, y, dy, dx, acc))
GUARDED(max_pool_fwd, (const kd_backend *b, kd_shape xs, int k, int stride, int pad, const float *x, float *y,
                       int32_t *argmax),
        (IN(b), xs, k, stride, pad, x, y, argmax))
GUARDED(max_pool_bwd, (const kd_backend *b, kd_shape xs, int k, int stride, int pad, const int32_t *argmax,
                       const float *dy, float *dx, int acc),
        (IN(b), xs, k, stride, pad, argmax, dy, dx, acc))
GUARDED(upsample_nearest_add_fwd, (const kd_backend *b, kd_shape ts, const float *top, int oh, int ow, float *y),
        (IN(b), ts, top, oh, ow, y))
GUARDED(upsample_nearest_add_bwd, (const kd_backend *b, kd_shape ts, int oh, int ow, const float *dy, float *dtop,
                                   int acc),
        (IN(b), ts, oh, ow, dy, dtop, acc))

static void g_close(const kd_backend *b)
{
    guard_ctx *g = G(b);
    IN(b)->close(IN(b));
    munmap(g->base, GUARD_RESERVE_BYTES);
    free((guarded *)(uintptr_t)b);
}

int kd_cpu_guard_requested(void)
{
    const char *s = getenv("CROSSKD_GUARD_DEVICE_MEMORY");
    return s && *s && strcmp(s, "0") != 0;
}

kd_status kd_cpu_guard_wrap(const kd_backend *in, const kd_backend **out, kd_err *err)
{
    void *base = mmap(NULL, GUARD_RESERVE_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        in->close(in);
        return kd_errf(err, KD_ENOMEM, "CROSSKD_GUARD_DEVICE_MEMORY: cannot reserve %zu bytes of addresses",
                       GUARD_RESERVE_BYTES);
    }
    guarded *gb = kd_xcalloc(1, sizeof *gb);
    gb->g.in = in;
    gb->g.base = base;
    gb->g.page = (size_t)sysconf(_SC_PAGESIZE);
    kd_backend *b = &gb->table;
    *b = *in; /* name, threads, ctx; every operation is replaced below */
    b->alloc = g_alloc;
    b->free = g_free;
#define SET(name) b->name = g_##name
    SET(fill), SET(zero), SET(copy_from_host), SET(copy_to_host), SET(copy), SET(sync);
    SET(axpy), SET(scal), SET(add), SET(sum), SET(dot), SET(sgd_step), SET(gemm);
    SET(conv_fwd), SET(conv_bwd_data), SET(conv_bwd_weight);
    SET(group_norm_fwd), SET(group_norm_bwd), SET(batch_norm_inf_fwd), SET(batch_norm_inf_bwd);
    SET(channel_stats), SET(align_scale_fwd), SET(align_scale_bwd);
    SET(relu_fwd), SET(relu_bwd), SET(sigmoid_fwd), SET(sigmoid_bwd), SET(scale_fwd), SET(scale_bwd);
    SET(softmax_fwd), SET(softmax_bwd), SET(log_softmax_fwd), SET(log_softmax_bwd);
    SET(max_pool_fwd), SET(max_pool_bwd), SET(upsample_nearest_add_fwd), SET(upsample_nearest_add_bwd);
    SET(close);
#undef SET
    KD_INFO("CROSSKD_GUARD_DEVICE_MEMORY: cpu backend buffers are guarded (the host may not touch them)");
    *out = b;
    return KD_OK;
}
