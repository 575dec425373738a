/* conv_onednn.c — 2-D convolution on the CPU through oneDNN's C API (v2.6): forward,
 * backward to the input (data) and backward to weight and bias, groups 1, dilation 1.
 *
 * Conventions (kernels/backend.h): user tensors are NCHW float32 (x, y, dx, dy), weights
 * OIHW, bias (c_out). oneDNN picks its own blocked layouts (format_tag_any, nChw16c on
 * AVX-512), so each call reorders inputs into scratch buffers, runs the convolution and
 * reorders the result back — the same thing PyTorch's mkldnn path does.
 * Outputs: y and dx overwrite (dx adds with accumulate: a reorder with a sum post-op);
 * dw and dbias always accumulate (+=).
 *
 * Cache: one entry per (kind, kd_conv_desc), created on first use: the primitive, its memory
 * objects and the reorder primitives. A call on a known shape creates nothing. Entries live
 * in a hash table with an LRU list, at most KD_CPU_CONV_CACHE_ENTRIES of them (the least
 * recently used goes first): a keep-ratio data pipeline meets new batch shapes all the time.
 * oneDNN's right padding is derived so that the output size is PyTorch's floor rule:
 * pad_r = (out - 1) * stride + k - in - pad_l (it may be negative, which oneDNN accepts).
 */
#include "kernels/cpu/cpu_internal.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { CONV_FWD = 1, CONV_BWD_DATA = 2, CONV_BWD_WEIGHT = 3 };

/* Scratch slots used here. */
enum { SLOT_A = 0, SLOT_B = 1, SLOT_C = 2, SLOT_BIAS = 3 };

typedef struct conv_key {
    int kind;
    kd_conv_desc d;
} conv_key;

typedef struct reorder {
    dnnl_primitive_t prim; /* NULL when the layouts are equal and no sum is needed */
    dnnl_memory_t src, dst;
} reorder;

/* Roles: fwd a=src b=weights c=dst; bwd_data a=diff_dst b=weights c=diff_src;
 * bwd_weight a=src b=diff_dst c=diff_weights (+ diff_bias). */
typedef struct conv_entry {
    conv_key key;
    dnnl_primitive_t prim;
    dnnl_memory_t m_a, m_b, m_c, m_bias;
    size_t bytes_a, bytes_b, bytes_c;
    reorder in_a, in_b;
    reorder out_c;     /* internal -> user, overwrite (prim NULL when the layouts are equal) */
    reorder out_c_sum; /* internal -> user, dst += src */
    struct conv_entry *chain;          /* next in the hash bucket */
    struct conv_entry *newer, *older;  /* LRU list */
} conv_entry;

/* Hash table of entries with an LRU list; at most `capacity` entries (the least recently
 * used is dropped), since a multi-scale or keep-ratio data pipeline meets a new batch shape
 * often and every layer then needs new primitives. */
#define CONV_BUCKETS 4096
struct kd_conv_cache {
    conv_entry *bucket[CONV_BUCKETS];
    conv_entry *newest, *oldest;
    size_t n, capacity;
};

static dnnl_memory_t mem_new(kd_cpu_ctx *ctx, const dnnl_memory_desc_t *md)
{
    dnnl_memory_t m = NULL;
    KD_CHECK_DNNL(dnnl_memory_create(&m, md, ctx->engine, DNNL_MEMORY_NONE));
    return m;
}

static void mem_set(dnnl_memory_t m, const void *p)
{
    KD_CHECK_DNNL(dnnl_memory_set_data_handle(m, (void *)p));
}

static reorder reorder_new(kd_cpu_ctx *ctx, const dnnl_memory_desc_t *src,
                           const dnnl_memory_desc_t *dst, int sum)
{
    reorder r = {0};
    if (!sum && dnnl_memory_desc_equal(src, dst)) return r;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    if (sum) {
        KD_CHECK_DNNL(dnnl_primitive_attr_create(&attr));
        KD_CHECK_DNNL(dnnl_post_ops_create(&po));
        KD_CHECK_DNNL(dnnl_post_ops_append_sum(po, 1.0f));
        KD_CHECK_DNNL(dnnl_primitive_attr_set_post_ops(attr, po));
    }
    dnnl_primitive_desc_t pd = NULL;
    KD_CHECK_DNNL(dnnl_reorder_primitive_desc_create(&pd, src, ctx->engine, dst, ctx->engine, attr));
    KD_CHECK_DNNL(dnnl_primitive_create(&r.prim, pd));
    KD_CHECK_DNNL(dnnl_primitive_desc_destroy(pd));
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    r.src = mem_new(ctx, src);
    r.dst = mem_new(ctx, dst);
    return r;
}

static void reorder_free(reorder *r)
{
    if (r->prim) dnnl_primitive_destroy(r->prim);
    if (r->src) dnnl_memory_destroy(r->src);
    if (r->dst) dnnl_memory_destroy(r->dst);
    memset(r, 0, sizeof *r);
}

static void reorder_run(kd_cpu_ctx *ctx, reorder *r, const void *src, void *dst)
{
    mem_set(r->src, src);
    mem_set(r->dst, dst);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, r->src}, {DNNL_ARG_TO, r->dst}};
    KD_CHECK_DNNL(dnnl_primitive_execute(r->prim, ctx->stream, 2, args));
}

static void entry_free(conv_entry *e)
{
    if (!e) return;
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->m_a) dnnl_memory_destroy(e->m_a);
    if (e->m_b) dnnl_memory_destroy(e->m_b);
    if (e->m_c) dnnl_memory_destroy(e->m_c);
    if (e->m_bias) dnnl_memory_destroy(e->m_bias);
    reorder_free(&e->in_a);
    reorder_free(&e->in_b);
    reorder_free(&e->out_c);
    reorder_free(&e->out_c_sum);
    free(e);
}

void kd_cpu_conv_cache_free(kd_cpu_ctx *ctx)
{
    kd_conv_cache *c = ctx->conv_cache;
    if (!c) return;
    for (conv_entry *e = c->newest, *next; e; e = next) {
        next = e->older;
        entry_free(e);
    }
    free(c);
    ctx->conv_cache = NULL;
}

static kd_conv_cache *cache_of(kd_cpu_ctx *ctx)
{
    if (!ctx->conv_cache) {
        ctx->conv_cache = calloc(1, sizeof *ctx->conv_cache);
        KD_CHECK(ctx->conv_cache != NULL, "(out of memory)");
        ctx->conv_cache->capacity = KD_CPU_CONV_CACHE_ENTRIES;
    }
    return ctx->conv_cache;
}

size_t kd_cpu_conv_cache_entries(const kd_backend *b)
{
    kd_conv_cache *c = kd_cpu_ctx_of(b)->conv_cache;
    return c ? c->n : 0;
}

void kd_cpu_conv_cache_set_capacity(const kd_backend *b, size_t entries)
{
    cache_of(kd_cpu_ctx_of(b))->capacity = entries ? entries : 1;
}

static size_t key_hash(const conv_key *k)
{
    const unsigned char *p = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ p[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29)) & (CONV_BUCKETS - 1);
}

static void lru_unlink(kd_conv_cache *c, conv_entry *e)
{
    if (e->newer) e->newer->older = e->older;
    else c->newest = e->older;
    if (e->older) e->older->newer = e->newer;
    else c->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push_newest(kd_conv_cache *c, conv_entry *e)
{
    e->older = c->newest;
    e->newer = NULL;
    if (c->newest) c->newest->newer = e;
    c->newest = e;
    if (!c->oldest) c->oldest = e;
}

static void cache_evict_oldest(kd_conv_cache *c)
{
    conv_entry *e = c->oldest;
    if (!e) return;
    lru_unlink(c, e);
    conv_entry **pp = &c->bucket[key_hash(&e->key)];
    while (*pp && *pp != e) pp = &(*pp)->chain;
    if (*pp) *pp = e->chain;
    entry_free(e);
    c->n--;
}

/* The user-layout descriptors of one convolution and its oneDNN geometry. */
typedef struct conv_geom {
    dnnl_memory_desc_t x_user, w_user, y_user, bias_user;
    dnnl_memory_desc_t x_any, w_any, y_any, bias_any;
    dnnl_dims_t strides, pad_l, pad_r;
} conv_geom;

static void geom_init(const kd_conv_desc *d, conv_geom *g)
{
    kd_shape ys = kd_conv_out_shape(d);
    dnnl_dims_t xd = {d->x.n, d->x.c, d->x.h, d->x.w};
    dnnl_dims_t wd = {d->c_out, d->x.c, d->kh, d->kw};
    dnnl_dims_t yd = {ys.n, ys.c, ys.h, ys.w};
    dnnl_dims_t bd = {d->c_out};
    KD_CHECK_DNNL(dnnl_memory_desc_init_by_tag(&g->x_user, 4, xd, dnnl_f32, dnnl_nchw));
    KD_CHECK_DNNL(dnnl_memory_desc_init_by_tag(&g->w_user, 4, wd, dnnl_f32, dnnl_oihw));
    KD_CHECK_DNNL(dnnl_memory_desc_init_by_tag(&g->y_user, 4, yd, dnnl_f32, dnnl_nchw));
    KD_CHECK_DNNL(dnnl_memory_desc_init_by_tag(&g->bias_user, 1, bd, dnnl_f32, dnnl_x));
    KD_CHECK_DNNL(dnnl_memory_desc_init_by_tag(&g->x_any, 4, xd, dnnl_f32, dnnl_format_tag_any));
    KD_CHECK_DNNL(dnnl_memory_desc_init_by_tag(&g->w_any, 4, wd, dnnl_f32, dnnl_format_tag_any));
    KD_CHECK_DNNL(dnnl_memory_desc_init_by_tag(&g->y_any, 4, yd, dnnl_f32, dnnl_format_tag_any));
    KD_CHECK_DNNL(dnnl_memory_desc_init_by_tag(&g->bias_any, 1, bd, dnnl_f32, dnnl_x));
    g->strides[0] = d->stride_h;
    g->strides[1] = d->stride_w;
    g->pad_l[0] = d->pad_h;
    g->pad_l[1] = d->pad_w;
    g->pad_r[0] = (ys.h - 1) * d->stride_h + d->kh - d->x.h - d->pad_h;
    g->pad_r[1] = (ys.w - 1) * d->stride_w + d->kw - d->x.w - d->pad_w;
}

static dnnl_primitive_desc_t fwd_pd_new(kd_cpu_ctx *ctx, const kd_conv_desc *d, conv_geom *g)
{
    dnnl_convolution_desc_t cd;
    KD_CHECK_DNNL(dnnl_convolution_forward_desc_init(
        &cd, dnnl_forward_training, dnnl_convolution_direct, &g->x_any, &g->w_any,
        d->has_bias ? &g->bias_any : NULL, &g->y_any, g->strides, g->pad_l, g->pad_r));
    dnnl_primitive_desc_t pd = NULL;
    KD_CHECK_DNNL(dnnl_primitive_desc_create(&pd, &cd, NULL, ctx->engine, NULL));
    return pd;
}

static const dnnl_memory_desc_t *q(dnnl_primitive_desc_t pd, dnnl_query_t what)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, what, 0);
    KD_CHECK(md != NULL, "(oneDNN primitive descriptor has no such memory)");
    return md;
}

static conv_entry *entry_build(kd_cpu_ctx *ctx, const conv_key *key)
{
    const kd_conv_desc *d = &key->d;
    conv_geom g;
    geom_init(d, &g);
    conv_entry *e = calloc(1, sizeof *e);
    KD_CHECK(e != NULL, "(out of memory)");
    e->key = *key;

    dnnl_primitive_desc_t fwd_pd = fwd_pd_new(ctx, d, &g);
    dnnl_primitive_desc_t pd = NULL;
    const dnnl_memory_desc_t *a_user, *b_user, *c_user;
    dnnl_query_t qa, qb, qc;
    if (key->kind == CONV_FWD) {
        pd = fwd_pd;
        fwd_pd = NULL;
        a_user = &g.x_user, b_user = &g.w_user, c_user = &g.y_user;
        qa = dnnl_query_src_md, qb = dnnl_query_weights_md, qc = dnnl_query_dst_md;
    } else if (key->kind == CONV_BWD_DATA) {
        dnnl_convolution_desc_t cd;
        KD_CHECK_DNNL(dnnl_convolution_backward_data_desc_init(
            &cd, dnnl_convolution_direct, &g.x_any, &g.w_any, &g.y_any, g.strides, g.pad_l,
            g.pad_r));
        KD_CHECK_DNNL(dnnl_primitive_desc_create(&pd, &cd, NULL, ctx->engine, fwd_pd));
        a_user = &g.y_user, b_user = &g.w_user, c_user = &g.x_user;
        qa = dnnl_query_diff_dst_md, qb = dnnl_query_weights_md, qc = dnnl_query_diff_src_md;
    } else {
        dnnl_convolution_desc_t cd;
        KD_CHECK_DNNL(dnnl_convolution_backward_weights_desc_init(
            &cd, dnnl_convolution_direct, &g.x_any, &g.w_any, d->has_bias ? &g.bias_any : NULL,
            &g.y_any, g.strides, g.pad_l, g.pad_r));
        KD_CHECK_DNNL(dnnl_primitive_desc_create(&pd, &cd, NULL, ctx->engine, fwd_pd));
        a_user = &g.x_user, b_user = &g.y_user, c_user = &g.w_user;
        qa = dnnl_query_src_md, qb = dnnl_query_diff_dst_md, qc = dnnl_query_diff_weights_md;
    }
    const dnnl_memory_desc_t *a_md = q(pd, qa), *b_md = q(pd, qb), *c_md = q(pd, qc);
    e->m_a = mem_new(ctx, a_md);
    e->m_b = mem_new(ctx, b_md);
    e->m_c = mem_new(ctx, c_md);
    if (d->has_bias) e->m_bias = mem_new(ctx, &g.bias_user);
    e->bytes_a = dnnl_memory_desc_get_size(a_md);
    e->bytes_b = dnnl_memory_desc_get_size(b_md);
    e->bytes_c = dnnl_memory_desc_get_size(c_md);
    e->in_a = reorder_new(ctx, a_user, a_md, 0);
    e->in_b = reorder_new(ctx, b_user, b_md, 0);
    e->out_c = reorder_new(ctx, c_md, c_user, 0);
    e->out_c_sum = reorder_new(ctx, c_md, c_user, 1);
    KD_CHECK_DNNL(dnnl_primitive_create(&e->prim, pd));
    KD_CHECK_DNNL(dnnl_primitive_desc_destroy(pd));
    if (fwd_pd) KD_CHECK_DNNL(dnnl_primitive_desc_destroy(fwd_pd));
    return e;
}

static conv_entry *entry_get(kd_cpu_ctx *ctx, int kind, const kd_conv_desc *d)
{
    conv_key key;
    memset(&key, 0, sizeof key);
    key.kind = kind;
    key.d = *d;
    key.d.has_bias = d->has_bias ? 1 : 0;
    kd_conv_cache *c = cache_of(ctx);
    size_t h = key_hash(&key);
    for (conv_entry *e = c->bucket[h]; e; e = e->chain)
        if (memcmp(&e->key, &key, sizeof key) == 0) {
            if (c->newest != e) {
                lru_unlink(c, e);
                lru_push_newest(c, e);
            }
            return e;
        }
    while (c->n >= c->capacity) cache_evict_oldest(c);
    conv_entry *e = entry_build(ctx, &key);
    e->chain = c->bucket[h];
    c->bucket[h] = e;
    lru_push_newest(c, e);
    c->n++;
    return e;
}

/* Puts user input `p` into the primitive's memory `m`, reordering through scratch if needed. */
static void bind_input(kd_cpu_ctx *ctx, reorder *r, dnnl_memory_t m, size_t bytes, int slot,
                       const void *p)
{
    if (r->prim) {
        void *s = kd_cpu_scratch(ctx, slot, bytes);
        reorder_run(ctx, r, p, s);
        mem_set(m, s);
    } else {
        mem_set(m, p);
    }
}

/* oneDNN (OpenMP runtime) sizes its work by omp_get_max_threads() of the calling thread,
 * at creation and at execution: pin it to this backend's count (another backend opened in
 * the same process may have changed it). */
static void use_threads(const kd_backend *b)
{
    if (omp_get_max_threads() != b->threads) omp_set_num_threads(b->threads);
}

static void check_desc(const kd_conv_desc *d)
{
    KD_CHECK(d->x.n >= 0 && d->x.c >= 0 && d->x.h >= 0 && d->x.w >= 0 && d->c_out >= 0);
    KD_CHECK(d->kh >= 1 && d->kw >= 1 && d->stride_h >= 1 && d->stride_w >= 1);
    KD_CHECK(d->pad_h >= 0 && d->pad_w >= 0);
}

/* Runs e->prim with output c written to `out` (overwrite, or += when accumulate). */
static void run_with_output(kd_cpu_ctx *ctx, conv_entry *e, int nargs, dnnl_exec_arg_t *args,
                            void *out, int accumulate)
{
    if (!accumulate && !e->out_c.prim) {
        mem_set(e->m_c, out);
        KD_CHECK_DNNL(dnnl_primitive_execute(e->prim, ctx->stream, nargs, args));
        return;
    }
    void *s = kd_cpu_scratch(ctx, SLOT_C, e->bytes_c);
    mem_set(e->m_c, s);
    KD_CHECK_DNNL(dnnl_primitive_execute(e->prim, ctx->stream, nargs, args));
    if (out) reorder_run(ctx, accumulate ? &e->out_c_sum : &e->out_c, s, out);
}

void kd_cpu_conv_fwd(const kd_backend *b, const kd_conv_desc *d, const float *x, const float *w,
                     const float *bias, float *y)
{
    check_desc(d);
    use_threads(b);
    kd_shape ys = kd_conv_out_shape(d);
    size_t y_elems = kd_shape_elems(ys);
    if (y_elems == 0) return;
    size_t plane = (size_t)ys.h * ys.w;
    if (d->x.c == 0) { /* no input channels: the output is the bias (or 0) */
        for (size_t i = 0; i < y_elems; i++)
            y[i] = d->has_bias && bias ? bias[(i / plane) % (size_t)ys.c] : 0.0f;
        return;
    }
    KD_CHECK(!d->has_bias || bias != NULL, "(has_bias set but bias is NULL)");
    kd_cpu_ctx *ctx = kd_cpu_ctx_of(b);
    conv_entry *e = entry_get(ctx, CONV_FWD, d);
    bind_input(ctx, &e->in_a, e->m_a, e->bytes_a, SLOT_A, x);
    bind_input(ctx, &e->in_b, e->m_b, e->bytes_b, SLOT_B, w);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->m_a}, {DNNL_ARG_WEIGHTS, e->m_b},
                               {DNNL_ARG_DST, e->m_c}, {DNNL_ARG_BIAS, e->m_bias}};
    if (d->has_bias) mem_set(e->m_bias, bias);
    run_with_output(ctx, e, d->has_bias ? 4 : 3, args, y, 0);
}

void kd_cpu_conv_bwd_data(const kd_backend *b, const kd_conv_desc *d, const float *dy,
                          const float *w, float *dx, int accumulate)
{
    check_desc(d);
    use_threads(b);
    size_t x_elems = kd_shape_elems(d->x);
    if (x_elems == 0 || !dx) return;
    kd_shape ys = kd_conv_out_shape(d);
    if (kd_shape_elems(ys) == 0) { /* no output: the input gets no gradient */
        if (!accumulate) memset(dx, 0, x_elems * sizeof *dx);
        return;
    }
    kd_cpu_ctx *ctx = kd_cpu_ctx_of(b);
    conv_entry *e = entry_get(ctx, CONV_BWD_DATA, d);
    bind_input(ctx, &e->in_a, e->m_a, e->bytes_a, SLOT_A, dy);
    bind_input(ctx, &e->in_b, e->m_b, e->bytes_b, SLOT_B, w);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, e->m_a}, {DNNL_ARG_WEIGHTS, e->m_b},
                               {DNNL_ARG_DIFF_SRC, e->m_c}};
    run_with_output(ctx, e, 3, args, dx, accumulate);
}

void kd_cpu_conv_bwd_weight(const kd_backend *b, const kd_conv_desc *d, const float *x,
                            const float *dy, float *dw, float *dbias)
{
    check_desc(d);
    use_threads(b);
    if (!d->has_bias) dbias = NULL;
    if (!dw && !dbias) return;
    kd_shape ys = kd_conv_out_shape(d);
    size_t y_elems = kd_shape_elems(ys);
    if (y_elems == 0) return; /* nothing flows back: += 0 */
    if (kd_shape_elems(d->x) == 0) { /* no input channels: only the bias has a gradient */
        if (!dbias) return;
        size_t plane = (size_t)ys.h * ys.w;
        for (int n = 0; n < ys.n; n++)
            for (int c = 0; c < ys.c; c++) {
                const float *p = dy + ((size_t)n * ys.c + c) * plane;
                double s = 0.0;
                for (size_t i = 0; i < plane; i++) s += p[i];
                dbias[c] += (float)s;
            }
        return;
    }
    kd_cpu_ctx *ctx = kd_cpu_ctx_of(b);
    conv_entry *e = entry_get(ctx, CONV_BWD_WEIGHT, d);
    bind_input(ctx, &e->in_a, e->m_a, e->bytes_a, SLOT_A, x);
    bind_input(ctx, &e->in_b, e->m_b, e->bytes_b, SLOT_B, dy);
    float *db_tmp = NULL;
    if (d->has_bias) {
        db_tmp = kd_cpu_scratch(ctx, SLOT_BIAS, (size_t)d->c_out * sizeof(float));
        mem_set(e->m_bias, db_tmp);
    }
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->m_a}, {DNNL_ARG_DIFF_DST, e->m_b},
                               {DNNL_ARG_DIFF_WEIGHTS, e->m_c}, {DNNL_ARG_DIFF_BIAS, e->m_bias}};
    run_with_output(ctx, e, d->has_bias ? 4 : 3, args, dw, 1);
    if (dbias)
        for (int c = 0; c < d->c_out; c++) dbias[c] += db_tmp[c];
}
