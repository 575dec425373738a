/* conv_cudnn.c — 2-D convolution on the GPU through cuDNN: forward, backward to the input
 * (data) and backward to the weight, groups 1, dilation 1, plus the bias terms through our
 * own kernels (cu_kernels.h: kd_cu_bias_add, kd_cu_channel_sum).
 *
 * Conventions (kernels/backend.h): x, y, dx, dy are NCHW float32, weights OIHW (cuDNN's
 * NCHW filter layout), bias (c_out). y and dx overwrite (dx adds with accumulate, through
 * cuDNN's beta = 1); dw and dbias always accumulate (beta = 1 / +=). Zero sizes follow
 * kernels/cpu/conv_onednn.c: an empty output leaves dx zero (or untouched with accumulate)
 * and adds nothing to dw/dbias; an empty input makes y the bias (or 0).
 *
 * API: cuDNN 9's legacy convolution API (cudnnConvolution{Forward,BackwardData,
 * BackwardFilter}); it is marked deprecated in cuDNN 9 but fully supported there, and a
 * fraction of the graph API's code. The layout is NCHW: for float32 with FMA math the
 * NCHW kernels are cuDNN's reference path, and NHWC pays off only with tensor cores
 * (fp16/bf16/TF32), which this backend does not use yet.
 * Math: CUDNN_FMA_MATH on every descriptor by default, so no TF32 and no reduced precision:
 * results stay within the CPU tests' float tolerances. kd_cuda_set_math selects tensor-core
 * math instead (TF32 through CUDNN_DEFAULT_MATH, fp16 through
 * CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION; bf16 mode uses TF32 here); the mode is part of the
 * cache key.
 *
 * Algorithm choice, once per (kind, shape), kept until the backend closes (the cache):
 * cuDNN's heuristics (cudnnGetConvolution*Algorithm_v7) rank the algorithms; we take the
 * first one, in that order, that (1) succeeded, (2) is DETERMINISTIC and reported with the
 * mode's math type, and (3) whose exact workspace under our descriptor fits the limit; then, if none
 * does, the first deterministic one with any math type; only then a non-deterministic one
 * (backward data ALGO_0 and backward filter ALGO_0/ALGO_3 use atomics), with a warning in the
 * log naming the shape. The workspace is one
 * grow-only scratch buffer shared by all convolutions (the stream serialises them).
 * Lookup is linear over the entries, as on the CPU.
 */
#include "kernels/cuda/cuda_internal.h"

#include <stdlib.h>
#include <string.h>

#include "proto/log.h"

enum { CONV_FWD = 1, CONV_BWD_DATA = 2, CONV_BWD_WEIGHT = 3 };

#define MAX_ALGOS 16

typedef struct conv_key {
    int kind;
    int math; /* kd_cuda_math */
    kd_conv_desc d;
} conv_key;

typedef struct conv_entry {
    conv_key key;
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    int algo;           /* cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t of key.kind */
    size_t ws_bytes;
    int deterministic;
} conv_entry;

struct kd_cuda_conv_cache {
    conv_entry **entries;
    size_t n, cap;
};

/* One heuristic result, whatever the kind. */
typedef struct cand {
    int algo;
    cudnnStatus_t status;
    int deterministic;
    cudnnMathType_t math;
} cand;

/* The descriptor math type of a precision mode (kd_cuda.h). */
static cudnnMathType_t math_type(int math)
{
    switch (math) {
    case KD_CUDA_MATH_FP16: return CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    case KD_CUDA_MATH_TF32:
    case KD_CUDA_MATH_BF16: return CUDNN_DEFAULT_MATH; /* TF32 tensor cores for float data */
    default: return CUDNN_FMA_MATH;
    }
}

static void entry_free(conv_entry *e)
{
    if (!e) return;
    if (e->x) cudnnDestroyTensorDescriptor(e->x);
    if (e->y) cudnnDestroyTensorDescriptor(e->y);
    if (e->w) cudnnDestroyFilterDescriptor(e->w);
    if (e->conv) cudnnDestroyConvolutionDescriptor(e->conv);
    free(e);
}

void kd_cuda_conv_cache_free(kd_cuda_ctx *ctx)
{
    kd_cuda_conv_cache *c = ctx->conv_cache;
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) entry_free(c->entries[i]);
    free(c->entries);
    free(c);
    ctx->conv_cache = NULL;
}

size_t kd_cuda_conv_cache_count(const kd_cuda_ctx *ctx)
{
    return ctx->conv_cache ? ctx->conv_cache->n : 0;
}

/* The heuristics' ranking for the entry's kind, in cuDNN's order. */
static int rank_algos(kd_cuda_ctx *ctx, const conv_entry *e, cand *out)
{
    int got = 0;
    if (e->key.kind == CONV_FWD) {
        cudnnConvolutionFwdAlgoPerf_t p[MAX_ALGOS];
        KD_CHECK_CUDNN(cudnnGetConvolutionForwardAlgorithm_v7(ctx->cudnn, e->x, e->w, e->conv,
                                                              e->y, MAX_ALGOS, &got, p));
        for (int i = 0; i < got; i++)
            out[i] = (cand){(int)p[i].algo, p[i].status, p[i].determinism == CUDNN_DETERMINISTIC,
                            p[i].mathType};
    } else if (e->key.kind == CONV_BWD_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t p[MAX_ALGOS];
        KD_CHECK_CUDNN(cudnnGetConvolutionBackwardDataAlgorithm_v7(
            ctx->cudnn, e->w, e->y, e->conv, e->x, MAX_ALGOS, &got, p));
        for (int i = 0; i < got; i++)
            out[i] = (cand){(int)p[i].algo, p[i].status, p[i].determinism == CUDNN_DETERMINISTIC,
                            p[i].mathType};
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t p[MAX_ALGOS];
        KD_CHECK_CUDNN(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
            ctx->cudnn, e->x, e->y, e->conv, e->w, MAX_ALGOS, &got, p));
        for (int i = 0; i < got; i++)
            out[i] = (cand){(int)p[i].algo, p[i].status, p[i].determinism == CUDNN_DETERMINISTIC,
                            p[i].mathType};
    }
    return got < 0 ? 0 : (got > MAX_ALGOS ? MAX_ALGOS : got);
}

/* Exact workspace of `algo` under the entry's descriptors (not-supported is a status). */
static cudnnStatus_t ws_size(kd_cuda_ctx *ctx, const conv_entry *e, int algo, size_t *bytes)
{
    if (e->key.kind == CONV_FWD)
        return cudnnGetConvolutionForwardWorkspaceSize(ctx->cudnn, e->x, e->w, e->conv, e->y,
                                                       (cudnnConvolutionFwdAlgo_t)algo, bytes);
    if (e->key.kind == CONV_BWD_DATA)
        return cudnnGetConvolutionBackwardDataWorkspaceSize(
            ctx->cudnn, e->w, e->y, e->conv, e->x, (cudnnConvolutionBwdDataAlgo_t)algo, bytes);
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(
        ctx->cudnn, e->x, e->y, e->conv, e->w, (cudnnConvolutionBwdFilterAlgo_t)algo, bytes);
}

static void choose_algo(kd_cuda_ctx *ctx, conv_entry *e)
{
    cand c[MAX_ALGOS];
    int n = rank_algos(ctx, e, c);
    const cudnnMathType_t want = math_type(e->key.math);
    for (int pass = 0; pass < 3; pass++)
        for (int i = 0; i < n; i++) {
            if (c[i].status != CUDNN_STATUS_SUCCESS) continue;
            if (pass < 2 && !c[i].deterministic) continue;
            if (pass == 0 && c[i].math != want) continue;
            size_t bytes = 0;
            if (ws_size(ctx, e, c[i].algo, &bytes) != CUDNN_STATUS_SUCCESS) continue;
            if (bytes > ctx->ws_limit) continue;
            e->algo = c[i].algo;
            e->ws_bytes = bytes;
            e->deterministic = c[i].deterministic;
            if (!e->deterministic) {
                const kd_conv_desc *d = &e->key.d;
                KD_WARN("cuDNN: no deterministic algorithm fits the workspace limit (%zu bytes) "
                        "for convolution kind %d, x %dx%dx%dx%d, c_out %d, kernel %dx%d: using "
                        "non-deterministic algorithm %d (raise CROSSKD_CUDNN_WORKSPACE_MB)",
                        ctx->ws_limit, e->key.kind, d->x.n, d->x.c, d->x.h, d->x.w, d->c_out,
                        d->kh, d->kw, e->algo);
            }
            return;
        }
    const kd_conv_desc *d = &e->key.d;
    kd_fatalf(__FILE__, __LINE__,
              "cuDNN: no algorithm (of %d ranked) for convolution kind %d, x %dx%dx%dx%d, c_out %d, "
              "kernel %dx%d, stride %dx%d, pad %dx%d within the workspace limit of %zu bytes",
              n, e->key.kind, d->x.n, d->x.c, d->x.h, d->x.w, d->c_out, d->kh, d->kw,
              d->stride_h, d->stride_w, d->pad_h, d->pad_w, ctx->ws_limit);
}

static conv_entry *entry_build(kd_cuda_ctx *ctx, const conv_key *key)
{
    const kd_conv_desc *d = &key->d;
    kd_shape ys = kd_conv_out_shape(d);
    conv_entry *e = calloc(1, sizeof *e);
    KD_CHECK(e != NULL, "(out of memory)");
    e->key = *key;
    KD_CHECK_CUDNN(cudnnCreateTensorDescriptor(&e->x));
    KD_CHECK_CUDNN(cudnnCreateTensorDescriptor(&e->y));
    KD_CHECK_CUDNN(cudnnCreateFilterDescriptor(&e->w));
    KD_CHECK_CUDNN(cudnnCreateConvolutionDescriptor(&e->conv));
    KD_CHECK_CUDNN(cudnnSetTensor4dDescriptor(e->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d->x.n,
                                              d->x.c, d->x.h, d->x.w));
    KD_CHECK_CUDNN(cudnnSetTensor4dDescriptor(e->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, ys.n, ys.c,
                                              ys.h, ys.w));
    KD_CHECK_CUDNN(cudnnSetFilter4dDescriptor(e->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, d->c_out,
                                              d->x.c, d->kh, d->kw));
    KD_CHECK_CUDNN(cudnnSetConvolution2dDescriptor(e->conv, d->pad_h, d->pad_w, d->stride_h,
                                                   d->stride_w, 1, 1, CUDNN_CROSS_CORRELATION,
                                                   CUDNN_DATA_FLOAT));
    KD_CHECK_CUDNN(cudnnSetConvolutionMathType(e->conv, math_type(key->math)));
    /* cuDNN's output rule must be ours (floor), or every index below would be wrong */
    int on, oc, oh, ow;
    KD_CHECK_CUDNN(cudnnGetConvolution2dForwardOutputDim(e->conv, e->x, e->w, &on, &oc, &oh, &ow));
    KD_CHECK(on == ys.n && oc == ys.c && oh == ys.h && ow == ys.w,
             "(cuDNN output %dx%dx%dx%d, kd_conv_out_shape %dx%dx%dx%d)", on, oc, oh, ow, ys.n,
             ys.c, ys.h, ys.w);
    choose_algo(ctx, e);
    return e;
}

static conv_entry *entry_get(kd_cuda_ctx *ctx, int kind, const kd_conv_desc *d)
{
    conv_key key;
    memset(&key, 0, sizeof key);
    key.kind = kind;
    key.math = (int)ctx->math;
    key.d = *d;
    key.d.has_bias = 0; /* the bias is not cuDNN's: one entry serves both */
    if (!ctx->conv_cache) {
        ctx->conv_cache = calloc(1, sizeof *ctx->conv_cache);
        KD_CHECK(ctx->conv_cache != NULL, "(out of memory)");
    }
    kd_cuda_conv_cache *c = ctx->conv_cache;
    for (size_t i = 0; i < c->n; i++)
        if (memcmp(&c->entries[i]->key, &key, sizeof key) == 0) return c->entries[i];
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 32;
        conv_entry **ne = realloc(c->entries, cap * sizeof *ne);
        KD_CHECK(ne != NULL, "(out of memory)");
        c->entries = ne;
        c->cap = cap;
    }
    conv_entry *e = entry_build(ctx, &key);
    c->entries[c->n++] = e;
    return e;
}

static void *workspace(kd_cuda_ctx *ctx, const conv_entry *e)
{
    return e->ws_bytes ? kd_cuda_scratch(ctx, KD_CUDA_SLOT_WS, e->ws_bytes) : NULL;
}

static void check_desc(const kd_conv_desc *d)
{
    KD_CHECK(d->x.n >= 0 && d->x.c >= 0 && d->x.h >= 0 && d->x.w >= 0 && d->c_out >= 0);
    KD_CHECK(d->kh >= 1 && d->kw >= 1 && d->stride_h >= 1 && d->stride_w >= 1);
    KD_CHECK(d->pad_h >= 0 && d->pad_w >= 0);
}

void kd_cuda_conv_fwd(const kd_backend *b, const kd_conv_desc *d, const float *x, const float *w,
                      const float *bias, float *y)
{
    check_desc(d);
    kd_cuda_ctx *ctx = kd_cuda_ctx_of(b);
    kd_shape ys = kd_conv_out_shape(d);
    const size_t hw = (size_t)ys.h * ys.w;
    if (kd_shape_elems(ys) == 0) return;
    const float *bp = d->has_bias ? bias : NULL;
    if (kd_shape_elems(d->x) == 0) { /* no input values: the output is the bias (or 0) */
        KD_CHECK_CUDA(kd_cu_bias_add(ctx->stream, ys.n, ys.c, hw, bp, y, 1));
        return;
    }
    KD_CHECK(!d->has_bias || bias != NULL, "(has_bias set but bias is NULL)");
    conv_entry *e = entry_get(ctx, CONV_FWD, d);
    const float one = 1.0f, zero = 0.0f;
    KD_CHECK_CUDNN(cudnnConvolutionForward(ctx->cudnn, &one, e->x, x, e->w, w, e->conv,
                                           (cudnnConvolutionFwdAlgo_t)e->algo, workspace(ctx, e),
                                           e->ws_bytes, &zero, e->y, y));
    if (bp) KD_CHECK_CUDA(kd_cu_bias_add(ctx->stream, ys.n, ys.c, hw, bp, y, 0));
}

void kd_cuda_conv_bwd_data(const kd_backend *b, const kd_conv_desc *d, const float *dy,
                           const float *w, float *dx, int accumulate)
{
    check_desc(d);
    kd_cuda_ctx *ctx = kd_cuda_ctx_of(b);
    size_t x_elems = kd_shape_elems(d->x);
    if (x_elems == 0 || !dx) return;
    kd_shape ys = kd_conv_out_shape(d);
    if (kd_shape_elems(ys) == 0) { /* no output: the input gets no gradient */
        if (!accumulate)
            KD_CHECK_CUDA(cudaMemsetAsync(dx, 0, x_elems * sizeof *dx, ctx->stream));
        return;
    }
    conv_entry *e = entry_get(ctx, CONV_BWD_DATA, d);
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    KD_CHECK_CUDNN(cudnnConvolutionBackwardData(ctx->cudnn, &one, e->w, w, e->y, dy, e->conv,
                                                (cudnnConvolutionBwdDataAlgo_t)e->algo,
                                                workspace(ctx, e), e->ws_bytes, &beta, e->x, dx));
}

void kd_cuda_conv_bwd_weight(const kd_backend *b, const kd_conv_desc *d, const float *x,
                             const float *dy, float *dw, float *dbias)
{
    check_desc(d);
    kd_cuda_ctx *ctx = kd_cuda_ctx_of(b);
    if (!d->has_bias) dbias = NULL;
    if (!dw && !dbias) return;
    kd_shape ys = kd_conv_out_shape(d);
    if (kd_shape_elems(ys) == 0) return; /* nothing flows back: += 0 */
    if (dw && kd_shape_elems(d->x) > 0) {
        conv_entry *e = entry_get(ctx, CONV_BWD_WEIGHT, d);
        const float one = 1.0f;
        KD_CHECK_CUDNN(cudnnConvolutionBackwardFilter(ctx->cudnn, &one, e->x, x, e->y, dy, e->conv,
                                                      (cudnnConvolutionBwdFilterAlgo_t)e->algo,
                                                      workspace(ctx, e), e->ws_bytes, &one, e->w,
                                                      dw));
    }
    if (dbias)
        KD_CHECK_CUDA(kd_cu_channel_sum(ctx->stream, ys.n, ys.c, (size_t)ys.h * ys.w, dy, dbias));
}
