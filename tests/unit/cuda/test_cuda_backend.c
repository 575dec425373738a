/* test_cuda_backend.c — the CUDA backend against the CPU reference (issue #10): every
 * operation of kernels/backend.h runs on the same random inputs through both backends and
 * the results are compared, on the shapes of tests/unit/kernels (including the zero sizes
 * and degenerate cases) plus one larger shape per family that spans many blocks. Also the
 * overwrite/accumulate and NULL-gradient semantics, in-place calls, the conv algorithm
 * cache, pinned uploads, a one-rank NCCL communicator, the tensor-core math modes (looser
 * tolerances, stated there) and the non-finite check of loss scaling.
 *
 * Without a CUDA device (or driver) the program checks that kd_backend_open("cuda") says
 * "no CUDA device", prints "skipped: no CUDA device (...)" and exits 77 (meson: SKIP).
 * CROSSKD_CUDA_TEST_AGAINST_CPU=1 puts the CPU backend on both sides instead: a check of
 * this program itself on machines without a GPU (the CUDA-only cases are then skipped).
 * The GPU code that can run on the host (the kernels' bodies, the GEMM mapping) is checked
 * on every machine by test_cuda_logic.c.
 *
 * Tolerances: |gpu - cpu| <= atol + rtol*|cpu| with the CPU tests' numbers (both backends
 * are held to them against exact values, so their difference fits with the same margin):
 * element-wise 1e-6/1e-5 (kd_math.h is shared; only expf/log1pf may differ by an ulp),
 * convolution 1e-4/1e-4 forward and 1e-4/1e-3 backward (cuDNN sums in another order than
 * oneDNN, like the finite differences the CPU is checked against), norms and align_scale
 * 2e-4/1e-3, GEMM 1e-4/1e-4 scaled by k/10 for long sums, dot (double products) 1e-9/1e-12.
 * Max-pool values and argmax, upsample-add and the SGD step must be identical (no
 * arithmetic, the same order of additions, or the same non-contracted float operations).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_test.h"
#include "kernels/backend.h"
#include "kernels/cuda/kd_cuda.h"
#include "kernels/cuda/nccl_comm.h"

static const kd_backend *CPU, *GPU;
static int against_cpu; /* both sides are the CPU backend */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static void seed(uint64_t s) { rng = s * 0x9E3779B97F4A7C15ull + 1; }
static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}

/* One tensor held by both backends with the same contents. */
typedef struct tp {
    size_t n; /* floats (or int32) */
    float *c, *g;
} tp;

#define P(t) (side ? (t).g : (t).c)
/* Runs STMT once per backend: B is the backend, P(t) its copy of tensor t. */
#define ON_BOTH(STMT)                                                                   \
    do {                                                                                \
        for (int side = 0; side < 2; side++) {                                          \
            const kd_backend *B = side ? GPU : CPU;                                     \
            STMT;                                                                       \
        }                                                                               \
    } while (0)

static tp tp_from(const float *h, size_t n)
{
    tp t = {n, NULL, NULL};
    if (!n) return t;
    t.c = CPU->alloc(CPU, n * sizeof(float));
    t.g = GPU->alloc(GPU, n * sizeof(float));
    CPU->copy_from_host(CPU, t.c, h, n * sizeof(float));
    GPU->copy_from_host(GPU, t.g, h, n * sizeof(float));
    return t;
}

static tp tp_rand(size_t n, double lo, double hi)
{
    float *h = malloc((n + 1) * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = (float)(lo + (hi - lo) * urand());
    tp t = tp_from(h, n);
    free(h);
    return t;
}

static tp tp_const(size_t n, float v)
{
    float *h = malloc((n + 1) * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = v;
    tp t = tp_from(h, n);
    free(h);
    return t;
}

static void tp_free(tp *t)
{
    CPU->free(CPU, t->c);
    GPU->free(GPU, t->g);
    memset(t, 0, sizeof *t);
}

static float *host_of(const kd_backend *b, const void *d, size_t n)
{
    float *h = calloc(n + 1, sizeof *h);
    if (n) b->copy_to_host(b, h, d, n * sizeof *h);
    return h;
}

/* Compares the two copies of t; NaN matches NaN. */
static void expect_close(const char *what, tp t, double atol, double rtol)
{
    float *c = host_of(CPU, t.c, t.n), *g = host_of(GPU, t.g, t.n);
    size_t bad = 0, wi = 0;
    double worst = 0.0;
    for (size_t i = 0; i < t.n; i++) {
        if (isnan(c[i]) && isnan(g[i])) continue;
        double e = fabs((double)g[i] - (double)c[i]);
        if (!(e <= atol + rtol * fabs((double)c[i]))) {
            if (bad < 3)
                fprintf(stderr, "  %s[%zu]: gpu %.9g, cpu %.9g\n", what, i, (double)g[i],
                        (double)c[i]);
            bad++;
        }
        if (!(e <= worst)) worst = e, wi = i;
    }
    KD_EXPECT_MSG(bad == 0, "%s: %zu of %zu differ (worst |err| %.3g at %zu; atol %g rtol %g)",
                  what, bad, t.n, worst, wi, atol, rtol);
    free(c);
    free(g);
}

static void expect_identical(const char *what, tp t)
{
    float *c = host_of(CPU, t.c, t.n), *g = host_of(GPU, t.g, t.n);
    KD_EXPECT_MSG(memcmp(c, g, t.n * sizeof *c) == 0, "%s: not bit-identical", what);
    free(c);
    free(g);
}

/* ---- memory and BLAS ------------------------------------------------------------------ */

static void test_memory(void)
{
    KD_EXPECT(GPU->alloc(GPU, 0) == NULL);
    GPU->free(GPU, NULL);
    seed(1);
    tp x = tp_rand(1000, -1, 1), y = tp_const(1000, 5.f);
    ON_BOTH(B->fill(B, P(y), 300, -2.5f));
    ON_BOTH(B->zero(B, P(y) + 300, 100 * sizeof(float)));
    ON_BOTH(B->copy(B, P(y) + 400, P(x), 200 * sizeof(float)));
    ON_BOTH(B->copy(B, P(y) + 450, P(y) + 400, 300 * sizeof(float))); /* overlapping */
    ON_BOTH(B->copy(B, P(y) + 10, P(y) + 20, 50 * sizeof(float)));    /* overlapping, down */
    GPU->sync(GPU);
    expect_identical("fill/zero/copy", y);
    size_t sizes[] = {0, 1, 1000, 1000003};
    for (int i = 0; i < 4; i++) {
        tp s = tp_rand(sizes[i], -1, 2);
        double r[2] = {-1, -1};
        ON_BOTH(B->sum(B, s.n, P(s), &r[side]));
        KD_EXPECT_NEAR(r[1], r[0], 1e-6, 1e-5);
        tp_free(&s);
    }
    tp_free(&x);
    tp_free(&y);
}

static void test_blas1(void)
{
    seed(2);
    size_t n = 100003;
    tp x = tp_rand(n, -1, 1), y = tp_rand(n, -1, 1), z = tp_const(n, 0.f);
    ON_BOTH(B->axpy(B, n, 0.75f, P(x), P(y)));
    expect_close("axpy", y, 1e-6, 1e-6);
    ON_BOTH(B->scal(B, n, -1.5f, P(y)));
    expect_close("scal", y, 1e-6, 1e-6);
    ON_BOTH(B->add(B, n, P(x), P(y), P(z)));
    ON_BOTH(B->add(B, n, P(z), P(x), P(z))); /* y aliases a */
    expect_close("add", z, 1e-6, 1e-6);
    ON_BOTH(B->axpy(B, 0, 1.f, P(x), P(y)));
    double d[2] = {-1, -1}, q[2] = {-1, -1};
    ON_BOTH(B->dot(B, n, P(x), P(y), &d[side]));
    ON_BOTH(B->dot(B, n, P(x), P(x), &q[side]));
    KD_EXPECT_NEAR(d[1], d[0], 1e-9, 1e-12); /* double products, another summation order */
    KD_EXPECT_NEAR(q[1], q[0], 1e-9, 1e-12);
    tp_free(&x), tp_free(&y), tp_free(&z);
}

/* The SGD step runs kd_sgd_elem on both sides with no FMA contraction on the device: the
 * same bits. */
static void test_sgd_step(void)
{
    seed(12);
    size_t sizes[] = {0, 1, 1000003};
    for (int i = 0; i < 3; i++) {
        size_t n = sizes[i];
        tp w = tp_rand(n, -1, 1), g = tp_rand(n, -1, 1), v = tp_rand(n, -0.1, 0.1);
        for (int step = 0; step < 3; step++)
            ON_BOTH(B->sgd_step(B, n, 0.02f, 0.9f, 1e-4f, P(w), P(g), P(v)));
        expect_identical("sgd w", w);
        expect_identical("sgd v", v);
        tp_free(&w), tp_free(&g), tp_free(&v);
    }
}

static void check_gemm(int ta, int tb, int m, int n, int k, float alpha, float beta, int pad,
                       uint64_t s)
{
    seed(s);
    int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    size_t an = (size_t)(ta ? k : m) * lda, bn = (size_t)(tb ? n : k) * ldb, cn = (size_t)m * ldc;
    tp a = tp_rand(an, -1, 1), b = tp_rand(bn, -1, 1), c = tp_rand(cn, -1, 1);
    ON_BOTH(B->gemm(B, ta, tb, m, n, k, alpha, P(a), lda, P(b), ldb, beta, P(c), ldc));
    double scale = k > 10 ? k / 10.0 : 1.0;
    char what[64];
    snprintf(what, sizeof what, "gemm %c%c %dx%dx%d", ta ? 't' : 'n', tb ? 't' : 'n', m, n, k);
    expect_close(what, c, 1e-4 * scale, 1e-4);
    tp_free(&a), tp_free(&b), tp_free(&c);
}

static void test_gemm(void)
{
    check_gemm(0, 0, 7, 5, 9, 1.0f, 0.0f, 0, 1);
    check_gemm(0, 1, 3, 11, 4, 0.5f, 1.0f, 0, 2);
    check_gemm(1, 0, 6, 1, 13, -1.0f, 0.25f, 0, 3);
    check_gemm(1, 1, 1, 8, 40, 2.0f, -1.0f, 0, 4);
    check_gemm(0, 0, 0, 5, 3, 1.0f, 0.0f, 0, 5);
    check_gemm(0, 0, 4, 5, 0, 1.0f, 0.5f, 0, 6);
    check_gemm(0, 0, 4, 5, 0, 1.0f, 0.0f, 0, 7);
    check_gemm(0, 1, 70, 90, 150, 1.0f, 0.0f, 3, 8); /* strided, many tiles */
    check_gemm(1, 0, 257, 33, 64, 1.0f, 1.0f, 1, 9);
}

/* ---- convolution -------------------------------------------------------------------- */

static kd_conv_desc desc(int n, int c, int h, int w, int co, int kh, int kw, int sh, int sw,
                         int ph, int pw, int bias)
{
    kd_conv_desc d = {{n, c, h, w}, co, kh, kw, sh, sw, ph, pw, bias};
    return d;
}

static void check_conv(kd_conv_desc d, uint64_t s, double gtol)
{
    seed(s);
    kd_shape ys = kd_conv_out_shape(&d);
    size_t xn = kd_shape_elems(d.x), wn = (size_t)d.c_out * d.x.c * d.kh * d.kw,
           yn = kd_shape_elems(ys), bn = (size_t)d.c_out;
    tp x = tp_rand(xn, -1, 1), w = tp_rand(wn, -0.5, 0.5), bias = tp_rand(bn, -0.5, 0.5),
       g = tp_rand(yn, -1, 1), y = tp_const(yn, 123.f), dx = tp_const(xn, -77.f),
       dx2 = tp_rand(xn, -1, 1), dw = tp_rand(wn, -1, 1), db = tp_rand(bn, -1, 1),
       dw2 = tp_rand(wn, -1, 1), db2 = tp_rand(bn, -1, 1);
    ON_BOTH(B->conv_fwd(B, &d, P(x), P(w), d.has_bias ? P(bias) : NULL, P(y)));
    expect_close("conv y", y, 1e-4, 1e-4);
    ON_BOTH(B->conv_bwd_data(B, &d, P(g), P(w), P(dx), 0));
    expect_close("conv dx", dx, gtol, 1e-3);
    ON_BOTH(B->conv_bwd_data(B, &d, P(g), P(w), P(dx2), 1));
    expect_close("conv dx accumulate", dx2, gtol, 1e-3);
    ON_BOTH(B->conv_bwd_weight(B, &d, P(x), P(g), P(dw), d.has_bias ? P(db) : NULL));
    expect_close("conv dw", dw, gtol, 1e-3);
    expect_close("conv dbias", db, gtol, 1e-3);
    ON_BOTH(B->conv_bwd_weight(B, &d, P(x), P(g), NULL, P(db2)));
    expect_close("conv dbias with dw NULL", db2, gtol, 1e-3);
    ON_BOTH(B->conv_bwd_weight(B, &d, P(x), P(g), P(dw2), NULL));
    expect_close("conv dw with dbias NULL", dw2, gtol, 1e-3);
    tp_free(&x), tp_free(&w), tp_free(&bias), tp_free(&g), tp_free(&y), tp_free(&dx);
    tp_free(&dx2), tp_free(&dw), tp_free(&db), tp_free(&dw2), tp_free(&db2);
}

static void test_conv(void)
{
    check_conv(desc(1, 3, 7, 5, 4, 3, 3, 1, 1, 1, 1, 1), 1, 1e-4);
    check_conv(desc(3, 2, 8, 9, 3, 3, 3, 2, 2, 1, 1, 0), 2, 1e-4);
    check_conv(desc(2, 4, 6, 6, 3, 1, 1, 2, 2, 0, 0, 1), 3, 1e-4);
    check_conv(desc(1, 3, 11, 13, 2, 7, 7, 2, 2, 3, 3, 1), 4, 1e-4);
    check_conv(desc(3, 5, 5, 4, 2, 3, 3, 1, 1, 0, 0, 1), 5, 1e-4);
    check_conv(desc(1, 2, 5, 6, 3, 3, 1, 2, 1, 1, 0, 1), 6, 1e-4);
    check_conv(desc(2, 17, 5, 3, 19, 3, 3, 1, 1, 1, 1, 1), 7, 1e-4);
    check_conv(desc(0, 3, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1), 8, 1e-4);  /* empty batch */
    check_conv(desc(2, 0, 4, 3, 2, 3, 3, 1, 1, 1, 1, 1), 9, 1e-4);  /* no input channels */
    check_conv(desc(1, 2, 1, 5, 2, 3, 3, 1, 1, 0, 1, 1), 10, 1e-4); /* kernel taller than map */
    check_conv(desc(1, 2, 4, 4, 0, 3, 3, 1, 1, 1, 1, 0), 11, 1e-4); /* no output channels */
    /* a head-sized layer: sums of 2*20*24 terms in the weight gradient */
    check_conv(desc(2, 32, 20, 24, 32, 3, 3, 1, 1, 1, 1, 1), 12, 1e-3);
}

static void test_conv_cache(void)
{
    if (against_cpu) return;
    kd_conv_desc d = desc(2, 8, 9, 7, 8, 3, 3, 1, 1, 1, 1, 1);
    check_conv(d, 13, 1e-4);
    size_t before = kd_cuda_conv_cache_entries(GPU);
    KD_EXPECT(before >= 3); /* forward, backward data, backward weight */
    check_conv(d, 14, 1e-4);
    d.has_bias = 0; /* the bias is not part of the cuDNN key */
    check_conv(d, 15, 1e-4);
    KD_EXPECT_MSG(kd_cuda_conv_cache_entries(GPU) == before, "%zu entries, was %zu",
                  kd_cuda_conv_cache_entries(GPU), before);
}

/* ---- normalisation and align_scale ----------------------------------------------------- */

static void check_gn(kd_shape s, int groups, int relu, int affine, uint64_t sd)
{
    seed(sd);
    size_t n = kd_shape_elems(s), nc = (size_t)s.c, ng = (size_t)s.n * groups;
    tp x = tp_rand(n, -2, 3), gamma = tp_rand(nc, 0.5, 1.5), beta = tp_rand(nc, -0.5, 0.5),
       y = tp_const(n, 9.f), mean = tp_const(ng, 9.f), rstd = tp_const(ng, 9.f),
       g = tp_rand(n, -1, 1), dx = tp_const(n, -7.f), dx2 = tp_rand(n, -1, 1),
       dgam = tp_rand(nc, -1, 1), dbet = tp_rand(nc, -1, 1), yin = tp_const(n, 0.f);
    ON_BOTH(B->group_norm_fwd(B, s, groups, 1e-5f, relu, P(x), affine ? P(gamma) : NULL,
                              affine ? P(beta) : NULL, P(y), P(mean), P(rstd)));
    expect_close("gn y", y, 2e-4, 1e-3);
    expect_close("gn mean", mean, 1e-5, 1e-5);
    expect_close("gn rstd", rstd, 1e-5, 1e-4);
    ON_BOTH(B->group_norm_bwd(B, s, groups, relu, P(x), P(y), P(g), affine ? P(gamma) : NULL,
                              P(mean), P(rstd), P(dx), 0, affine ? P(dgam) : NULL,
                              affine ? P(dbet) : NULL));
    expect_close("gn dx", dx, 2e-4, 1e-3);
    expect_close("gn dgamma", dgam, 2e-4, 1e-3);
    expect_close("gn dbeta", dbet, 2e-4, 1e-3);
    ON_BOTH(B->group_norm_bwd(B, s, groups, relu, P(x), P(y), P(g), affine ? P(gamma) : NULL,
                              P(mean), P(rstd), P(dx2), 1, NULL, NULL));
    expect_close("gn dx accumulate", dx2, 2e-4, 1e-3);
    ON_BOTH(B->group_norm_bwd(B, s, groups, relu, P(x), P(y), P(g), affine ? P(gamma) : NULL,
                              P(mean), P(rstd), NULL, 0, P(dgam), P(dbet)));
    expect_close("gn dgamma with dx NULL", dgam, 2e-4, 1e-3);
    expect_close("gn dbeta with dx NULL", dbet, 2e-4, 1e-3);
    /* in place */
    ON_BOTH(B->copy(B, P(yin), P(x), n * sizeof(float)));
    ON_BOTH(B->group_norm_fwd(B, s, groups, 1e-5f, relu, P(yin), affine ? P(gamma) : NULL,
                              affine ? P(beta) : NULL, P(yin), NULL, NULL));
    expect_close("gn y in place", yin, 2e-4, 1e-3);
    tp_free(&x), tp_free(&gamma), tp_free(&beta), tp_free(&y), tp_free(&mean), tp_free(&rstd);
    tp_free(&g), tp_free(&dx), tp_free(&dx2), tp_free(&dgam), tp_free(&dbet), tp_free(&yin);
}

static void test_group_norm(void)
{
    check_gn((kd_shape){1, 6, 5, 3}, 3, 0, 1, 1);
    check_gn((kd_shape){3, 4, 3, 5}, 2, 1, 1, 2);
    check_gn((kd_shape){2, 4, 3, 3}, 4, 0, 0, 3);
    check_gn((kd_shape){1, 5, 7, 1}, 1, 1, 1, 4);
    check_gn((kd_shape){2, 3, 2, 3}, 3, 0, 1, 5);
    check_gn((kd_shape){0, 4, 3, 3}, 2, 1, 1, 6);
    check_gn((kd_shape){2, 4, 0, 3}, 2, 0, 1, 7);
    check_gn((kd_shape){2, 64, 20, 24}, 32, 1, 1, 8); /* GN(32) of the heads */
}

static void check_bn(kd_shape s, int relu, uint64_t sd)
{
    seed(sd);
    size_t n = kd_shape_elems(s), nc = (size_t)s.c;
    tp x = tp_rand(n, -2, 2), rm = tp_rand(nc, -0.5, 0.5), rv = tp_rand(nc, 0.2, 2),
       gamma = tp_rand(nc, 0.5, 1.5), beta = tp_rand(nc, -0.5, 0.5), y = tp_const(n, 9.f),
       g = tp_rand(n, -1, 1), dx = tp_const(n, -7.f), dx2 = tp_rand(n, -1, 1),
       dgam = tp_rand(nc, -1, 1), dbet = tp_rand(nc, -1, 1);
    ON_BOTH(B->batch_norm_inf_fwd(B, s, 1e-5f, relu, P(x), P(rm), P(rv), P(gamma), P(beta), P(y)));
    expect_close("bn y", y, 1e-5, 1e-5);
    ON_BOTH(B->batch_norm_inf_bwd(B, s, 1e-5f, relu, P(x), P(y), P(g), P(rm), P(rv), P(gamma),
                                  P(dx), 0, P(dgam), P(dbet)));
    expect_close("bn dx", dx, 1e-5, 1e-5);
    expect_close("bn dgamma", dgam, 2e-4, 1e-3);
    expect_close("bn dbeta", dbet, 2e-4, 1e-3);
    ON_BOTH(B->batch_norm_inf_bwd(B, s, 1e-5f, relu, P(x), P(y), P(g), P(rm), P(rv), P(gamma),
                                  P(dx2), 1, NULL, NULL));
    expect_close("bn dx accumulate", dx2, 1e-5, 1e-5);
    ON_BOTH(B->batch_norm_inf_bwd(B, s, 1e-5f, relu, P(x), P(y), P(g), P(rm), P(rv), P(gamma),
                                  NULL, 0, P(dgam), NULL));
    expect_close("bn dgamma with dx NULL", dgam, 2e-4, 1e-3);
    ON_BOTH(B->batch_norm_inf_fwd(B, s, 1e-5f, relu, P(x), P(rm), P(rv), P(gamma), P(beta), P(x)));
    expect_close("bn y in place", x, 1e-5, 1e-5);
    tp_free(&x), tp_free(&rm), tp_free(&rv), tp_free(&gamma), tp_free(&beta), tp_free(&y);
    tp_free(&g), tp_free(&dx), tp_free(&dx2), tp_free(&dgam), tp_free(&dbet);
}

static void test_batch_norm(void)
{
    check_bn((kd_shape){1, 3, 5, 7}, 0, 11);
    check_bn((kd_shape){3, 4, 3, 3}, 1, 12);
    check_bn((kd_shape){0, 4, 3, 3}, 1, 13);
    check_bn((kd_shape){4, 64, 25, 21}, 1, 14);
}

static void check_align(kd_shape s, uint64_t sd)
{
    seed(sd);
    size_t n = kd_shape_elems(s), nc = (size_t)s.c;
    tp x = tp_rand(n, -1, 2), mt = tp_rand(nc, -1, 1), st = tp_rand(nc, 0.5, 2),
       cm = tp_const(nc, 9.f), cs = tp_const(nc, 9.f), y = tp_const(n, 9.f), mx = tp_const(nc, 9.f),
       sx = tp_const(nc, 9.f), g = tp_rand(n, -1, 1), dx = tp_const(n, -7.f),
       dx2 = tp_rand(n, -1, 1);
    ON_BOTH(B->channel_stats(B, s, P(x), P(cm), P(cs)));
    expect_close("channel mean", cm, 1e-5, 1e-5);
    expect_close("channel std", cs, 1e-5, 1e-5);
    ON_BOTH(B->align_scale_fwd(B, s, P(x), P(mt), P(st), P(y), P(mx), P(sx)));
    expect_close("align y", y, 2e-4, 1e-3);
    expect_close("align mean_x", mx, 1e-5, 1e-5);
    expect_close("align std_x", sx, 1e-5, 1e-5);
    ON_BOTH(B->align_scale_bwd(B, s, P(x), P(mx), P(sx), P(st), P(g), P(dx), 0));
    expect_close("align dx", dx, 2e-4, 1e-3);
    ON_BOTH(B->align_scale_bwd(B, s, P(x), P(mx), P(sx), P(st), P(g), P(dx2), 1));
    expect_close("align dx accumulate", dx2, 2e-4, 1e-3);
    ON_BOTH(B->align_scale_bwd(B, s, P(x), P(mx), P(sx), P(st), P(g), P(g), 0)); /* dx == dy */
    expect_close("align dx in place", g, 2e-4, 1e-3);
    ON_BOTH(B->align_scale_fwd(B, s, P(x), P(mt), P(st), P(x), P(mx), P(sx))); /* y == x */
    expect_close("align y in place", x, 2e-4, 1e-3);
    tp_free(&x), tp_free(&mt), tp_free(&st), tp_free(&cm), tp_free(&cs), tp_free(&y);
    tp_free(&mx), tp_free(&sx), tp_free(&g), tp_free(&dx), tp_free(&dx2);
}

static void test_align(void)
{
    check_align((kd_shape){1, 3, 5, 7}, 1);
    check_align((kd_shape){3, 4, 3, 5}, 2);
    check_align((kd_shape){3, 5, 1, 1}, 3);
    check_align((kd_shape){1, 4, 1, 1}, 4);
    check_align((kd_shape){0, 4, 3, 3}, 5);
    check_align((kd_shape){2, 16, 40, 30}, 6);
}

/* ---- activations, scale, softmax ------------------------------------------------------ */

static void check_unary(const char *name, size_t n, double lo, double hi, uint64_t sd, int which)
{
    seed(sd);
    tp x = tp_rand(n, lo, hi), y = tp_const(n, 9.f), g = tp_rand(n, -1, 1), dx = tp_const(n, 7.f),
       dx2 = tp_rand(n, -1, 1);
    char what[96];
    if (which == 0) {
        ON_BOTH(B->relu_fwd(B, n, P(x), P(y)));
        ON_BOTH(B->relu_bwd(B, n, P(y), P(g), P(dx), 0));
        ON_BOTH(B->relu_bwd(B, n, P(y), P(g), P(dx2), 1));
        ON_BOTH(B->relu_bwd(B, n, P(y), P(g), P(g), 0)); /* dx == dy */
    } else {
        ON_BOTH(B->sigmoid_fwd(B, n, P(x), P(y)));
        ON_BOTH(B->sigmoid_bwd(B, n, P(y), P(g), P(dx), 0));
        ON_BOTH(B->sigmoid_bwd(B, n, P(y), P(g), P(dx2), 1));
        ON_BOTH(B->sigmoid_bwd(B, n, P(y), P(g), P(g), 0));
    }
    snprintf(what, sizeof what, "%s y", name);
    expect_close(what, y, 1e-6, 1e-5);
    snprintf(what, sizeof what, "%s dx", name);
    expect_close(what, dx, 1e-6, 1e-5);
    snprintf(what, sizeof what, "%s dx accumulate", name);
    expect_close(what, dx2, 1e-6, 1e-5);
    snprintf(what, sizeof what, "%s dx in place", name);
    expect_close(what, g, 1e-6, 1e-5);
    ON_BOTH(B->relu_fwd(B, n, P(x), P(x))); /* in-place forward */
    snprintf(what, sizeof what, "%s relu in place", name);
    expect_close(what, x, 0, 0);
    tp_free(&x), tp_free(&y), tp_free(&g), tp_free(&dx), tp_free(&dx2);
}

static void test_activations(void)
{
    check_unary("relu", 1001, -2, 2, 2, 0);
    check_unary("relu empty", 0, -2, 2, 3, 0);
    check_unary("relu big", 3000017, -2, 2, 4, 0);
    check_unary("sigmoid", 1001, -30, 30, 5, 1);
    check_unary("sigmoid big", 3000017, -90, 90, 6, 1);
}

static void check_scale(size_t n, uint64_t sd)
{
    seed(sd);
    tp x = tp_rand(n, -1, 1), sc = tp_rand(1, 0.5, 1.5), y = tp_const(n, 9.f),
       g = tp_rand(n, -1, 1), dx = tp_const(n, 7.f), dx2 = tp_rand(n, -1, 1),
       ds = tp_rand(1, -1, 1);
    ON_BOTH(B->scale_fwd(B, n, P(sc), P(x), P(y)));
    expect_close("scale y", y, 1e-6, 1e-6);
    ON_BOTH(B->scale_bwd(B, n, P(sc), P(x), P(g), P(dx), 0, P(ds)));
    expect_close("scale dx", dx, 1e-6, 1e-6);
    expect_close("scale dscale", ds, 1e-4, 1e-5);
    ON_BOTH(B->scale_bwd(B, n, P(sc), P(x), P(g), P(dx2), 1, NULL));
    expect_close("scale dx accumulate", dx2, 1e-6, 1e-6);
    ON_BOTH(B->scale_bwd(B, n, P(sc), P(x), P(g), NULL, 0, P(ds)));
    expect_close("scale dscale with dx NULL", ds, 1e-4, 1e-5);
    ON_BOTH(B->scale_bwd(B, n, P(sc), P(x), P(g), P(g), 0, P(ds))); /* dx == dy */
    expect_close("scale dx in place", g, 1e-6, 1e-6);
    expect_close("scale dscale in place", ds, 1e-4, 1e-5);
    tp_free(&x), tp_free(&sc), tp_free(&y), tp_free(&g), tp_free(&dx), tp_free(&dx2), tp_free(&ds);
}

static void test_scale(void)
{
    check_scale(1001, 1);
    check_scale(0, 2);
    check_scale(700001, 3);
}

static void check_rows(const char *name, int log, size_t rows, int cols, double lo, double hi,
                       uint64_t sd)
{
    seed(sd);
    size_t n = rows * (size_t)cols;
    tp x = tp_rand(n, lo, hi), y = tp_const(n, 9.f), g = tp_rand(n, -1, 1), dx = tp_const(n, 7.f),
       dx2 = tp_rand(n, -1, 1);
    if (log) {
        ON_BOTH(B->log_softmax_fwd(B, rows, cols, P(x), P(y)));
        ON_BOTH(B->log_softmax_bwd(B, rows, cols, P(y), P(g), P(dx), 0));
        ON_BOTH(B->log_softmax_bwd(B, rows, cols, P(y), P(g), P(dx2), 1));
    } else {
        ON_BOTH(B->softmax_fwd(B, rows, cols, P(x), P(y)));
        ON_BOTH(B->softmax_bwd(B, rows, cols, P(y), P(g), P(dx), 0));
        ON_BOTH(B->softmax_bwd(B, rows, cols, P(y), P(g), P(dx2), 1));
    }
    char what[96];
    snprintf(what, sizeof what, "%s y", name);
    expect_close(what, y, 1e-6, 1e-5);
    snprintf(what, sizeof what, "%s dx", name);
    expect_close(what, dx, 1e-6, 1e-4);
    snprintf(what, sizeof what, "%s dx accumulate", name);
    expect_close(what, dx2, 1e-6, 1e-4);
    ON_BOTH(B->softmax_fwd(B, rows, cols, P(x), P(x))); /* in place */
    snprintf(what, sizeof what, "%s softmax in place", name);
    expect_close(what, x, 1e-6, 1e-5);
    tp_free(&x), tp_free(&y), tp_free(&g), tp_free(&dx), tp_free(&dx2);
}

static void test_softmax(void)
{
    check_rows("softmax 17", 0, 13, 17, -4, 4, 7);
    check_rows("softmax 1", 0, 5, 1, -4, 4, 8);
    check_rows("softmax 80", 0, 3, 80, -4, 4, 9);
    check_rows("softmax huge logits", 0, 4, 17, 5e3, 6e3, 10);
    check_rows("softmax no rows", 0, 0, 17, -1, 1, 11);
    check_rows("softmax many rows", 0, 4001, 17, -1e4, 1e4, 12);
    check_rows("log_softmax 17", 1, 13, 17, -4, 4, 13);
    check_rows("log_softmax 1", 1, 5, 1, -4, 4, 14);
    check_rows("log_softmax huge logits", 1, 4, 17, -6e3, -5e3, 15);
    check_rows("log_softmax many rows", 1, 20011, 80, -8, 8, 16);
}

/* ---- pooling and upsampling ----------------------------------------------------------- */

static void check_maxpool(kd_shape s, int k, int stride, int pad, uint64_t sd, int ties)
{
    seed(sd);
    kd_shape ys = kd_pool_out_shape(s, k, stride, pad);
    size_t n = kd_shape_elems(s), yn = kd_shape_elems(ys);
    float *h = malloc((n + 1) * sizeof *h);
    for (size_t i = 0; i < n; i++) {
        double v = -2 + 4 * urand();
        h[i] = ties ? (float)floor(v * 2) / 2 : (float)v; /* many equal values: first wins */
        if (ties && i % 97 == 5) h[i] = NAN;                /* a NaN wins */
    }
    tp x = tp_from(h, n), y = tp_const(yn, 9.f), am = tp_const(yn, 0.f), g = tp_rand(yn, -1, 1),
       dx = tp_const(n, 7.f), dx2 = tp_rand(n, -1, 1), y2 = tp_const(yn, 9.f);
    free(h);
    ON_BOTH(B->max_pool_fwd(B, s, k, stride, pad, P(x), P(y), (int32_t *)P(am)));
    expect_identical("maxpool y", y);
    expect_identical("maxpool argmax", am);
    ON_BOTH(B->max_pool_fwd(B, s, k, stride, pad, P(x), P(y2), NULL));
    expect_identical("maxpool y without argmax", y2);
    ON_BOTH(B->max_pool_bwd(B, s, k, stride, pad, (const int32_t *)P(am), P(g), P(dx), 0));
    expect_identical("maxpool dx", dx);
    ON_BOTH(B->max_pool_bwd(B, s, k, stride, pad, (const int32_t *)P(am), P(g), P(dx2), 1));
    expect_identical("maxpool dx accumulate", dx2);
    tp_free(&x), tp_free(&y), tp_free(&am), tp_free(&g), tp_free(&dx), tp_free(&dx2), tp_free(&y2);
}

static void test_maxpool(void)
{
    check_maxpool((kd_shape){1, 2, 7, 9}, 3, 2, 1, 1, 0);
    check_maxpool((kd_shape){3, 2, 8, 6}, 3, 2, 1, 2, 0);
    check_maxpool((kd_shape){2, 3, 5, 4}, 2, 2, 0, 3, 0);
    check_maxpool((kd_shape){1, 1, 4, 5}, 3, 1, 1, 4, 0);
    check_maxpool((kd_shape){2, 2, 1, 1}, 3, 2, 1, 5, 0);
    check_maxpool((kd_shape){0, 2, 5, 5}, 3, 2, 1, 6, 0);
    check_maxpool((kd_shape){1, 2, 0, 5}, 3, 2, 1, 7, 0);
    check_maxpool((kd_shape){2, 8, 41, 33}, 3, 2, 1, 8, 1); /* ties and NaNs */
    check_maxpool((kd_shape){2, 64, 100, 84}, 3, 2, 1, 9, 0);
}

static void check_upadd(kd_shape ts, int oh, int ow, uint64_t sd)
{
    seed(sd);
    size_t tn = kd_shape_elems(ts), yn = (size_t)ts.n * ts.c * oh * ow;
    tp t = tp_rand(tn, -1, 1), y = tp_rand(yn, -1, 1), g = tp_rand(yn, -1, 1),
       dt = tp_const(tn, 7.f), dt2 = tp_rand(tn, -1, 1);
    ON_BOTH(B->upsample_nearest_add_fwd(B, ts, P(t), oh, ow, P(y)));
    expect_identical("upsample-add y", y);
    ON_BOTH(B->upsample_nearest_add_bwd(B, ts, oh, ow, P(g), P(dt), 0));
    expect_identical("upsample-add dtop", dt);
    ON_BOTH(B->upsample_nearest_add_bwd(B, ts, oh, ow, P(g), P(dt2), 1));
    expect_identical("upsample-add dtop accumulate", dt2);
    tp_free(&t), tp_free(&y), tp_free(&g), tp_free(&dt), tp_free(&dt2);
}

static void test_upsample_add(void)
{
    check_upadd((kd_shape){2, 3, 4, 5}, 8, 10, 21);
    check_upadd((kd_shape){1, 2, 3, 5}, 7, 11, 22);
    check_upadd((kd_shape){3, 2, 13, 21}, 25, 42, 23);
    check_upadd((kd_shape){1, 2, 4, 4}, 4, 4, 24);
    check_upadd((kd_shape){1, 1, 6, 5}, 4, 3, 25);
    check_upadd((kd_shape){0, 2, 3, 3}, 6, 6, 26);
    check_upadd((kd_shape){1, 2, 3, 3}, 0, 6, 27);
    check_upadd((kd_shape){2, 64, 50, 42}, 100, 84, 28);
}

/* ---- CUDA-only: uploads and NCCL ------------------------------------------------------- */

static void test_upload(void)
{
    if (against_cpu) return;
    size_t n = 1 << 20;
    float *h = kd_cuda_pinned_alloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = (float)i * 0.5f;
    float *d = GPU->alloc(GPU, n * sizeof *d);
    GPU->fill(GPU, d, n, 1.f);
    kd_cuda_upload_after_compute(GPU);
    kd_cuda_upload(GPU, d, h, n * sizeof *h);
    kd_cuda_upload_fence(GPU);
    GPU->scal(GPU, n, 2.f, d); /* ordered after the upload by the fence */
    kd_cuda_upload_sync(GPU);
    float *back = host_of(GPU, d, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += back[i] != (float)i;
    KD_EXPECT_MSG(bad == 0, "%zu of %zu uploaded values wrong", bad, n);
    free(back);
    GPU->free(GPU, d);
    kd_cuda_pinned_free(h);
    KD_EXPECT(kd_cuda_pinned_alloc(0) == NULL);
}

static void test_nccl_one_rank(void)
{
    if (against_cpu) return;
    unsigned char id[KD_NCCL_ID_BYTES];
    kd_err err = {0};
    kd_nccl *nc = NULL;
    KD_REQUIRE(kd_nccl_unique_id(id, &err) == KD_OK);
    KD_REQUIRE(kd_nccl_init(id, 0, 1, kd_cuda_device(GPU), 60.0, &nc, &err) == KD_OK);
    KD_EXPECT(kd_nccl_rank(nc) == 0 && kd_nccl_size(nc) == 1);
    size_t n = 100000;
    float *h = malloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = (float)(i % 1000) - 500.f;
    float *d = GPU->alloc(GPU, n * sizeof *d);
    GPU->copy_from_host(GPU, d, h, n * sizeof *h);
    void *s = kd_cuda_stream(GPU);
    KD_EXPECT(kd_nccl_allreduce(nc, d, n / 2, KD_NCCL_SUM, s, 0) == 1);
    KD_EXPECT(kd_nccl_allreduce(nc, d + n / 2, n - n / 2, KD_NCCL_AVG, s, 1) == 2);
    KD_EXPECT(kd_nccl_allreduce(nc, d, 0, KD_NCCL_SUM, s, 2) == 0);
    kd_nccl_order_before(nc, s);
    kd_nccl_wait(nc);
    float *back = host_of(GPU, d, n);
    KD_EXPECT(memcmp(back, h, n * sizeof *h) == 0); /* one rank: sum and mean are identity */
    free(back);
    free(h);
    GPU->free(GPU, d);
    KD_EXPECT(kd_nccl_finalize(nc, &err) == KD_OK);
}

/* Tensor-core math modes against the fp32 CPU: inputs lose mantissa bits (TF32 and fp16
 * keep 10, bf16 7), so products carry ~eps relative error and a sum of k of them about
 * eps*sqrt(k): tolerances 4*eps*sqrt(k) absolute, 4*eps relative. */
static void test_math_modes(void)
{
    if (against_cpu) return;
    kd_err err = {0};
    kd_cuda_math m = KD_CUDA_MATH_FP32;
    KD_EXPECT(kd_cuda_math_parse("bf16", &m, &err) == KD_OK && m == KD_CUDA_MATH_BF16);
    KD_EXPECT(kd_cuda_math_parse("fp8", &m, &err) == KD_EINVAL);
    KD_EXPECT_STR_CONTAINS(err.msg, "expected fp32, tf32, fp16 or bf16");
    const kd_cuda_math modes[3] = {KD_CUDA_MATH_TF32, KD_CUDA_MATH_FP16, KD_CUDA_MATH_BF16};
    const double eps[3] = {1.0 / 1024, 1.0 / 1024, 1.0 / 128};
    const char *names[3] = {"tf32", "fp16", "bf16"};
    for (int i = 0; i < 3; i++) {
        kd_cuda_set_math(GPU, modes[i]);
        KD_EXPECT(kd_cuda_get_math(GPU) == modes[i]);
        seed(40 + (uint64_t)i);
        int gm = 64, gn = 48, gk = 144;
        tp a = tp_rand((size_t)gm * gk, -1, 1), bb = tp_rand((size_t)gk * gn, -1, 1),
           c = tp_rand((size_t)gm * gn, -1, 1);
        ON_BOTH(B->gemm(B, 0, 0, gm, gn, gk, 1.0f, P(a), gk, P(bb), gn, 0.5f, P(c), gn));
        char what[64];
        snprintf(what, sizeof what, "gemm in %s", names[i]);
        expect_close(what, c, 4 * eps[i] * sqrt((double)gk), 4 * eps[i]);
        kd_conv_desc d = desc(2, 16, 12, 10, 24, 3, 3, 1, 1, 1, 1, 1);
        kd_shape ys = kd_conv_out_shape(&d);
        size_t xn = kd_shape_elems(d.x), wn = (size_t)24 * 16 * 9, yn = kd_shape_elems(ys);
        tp x = tp_rand(xn, -1, 1), w = tp_rand(wn, -0.5, 0.5), bias = tp_rand(24, -0.5, 0.5),
           y = tp_const(yn, 0.f), g = tp_rand(yn, -1, 1), dx = tp_const(xn, 0.f),
           dw = tp_const(wn, 0.f);
        ON_BOTH(B->conv_fwd(B, &d, P(x), P(w), P(bias), P(y)));
        ON_BOTH(B->conv_bwd_data(B, &d, P(g), P(w), P(dx), 0));
        ON_BOTH(B->conv_bwd_weight(B, &d, P(x), P(g), P(dw), NULL));
        double k_fwd = 16 * 9, k_dw = 2 * 12 * 10;
        snprintf(what, sizeof what, "conv y in %s", names[i]);
        expect_close(what, y, 4 * eps[i] * sqrt(k_fwd), 4 * eps[i]);
        snprintf(what, sizeof what, "conv dx in %s", names[i]);
        expect_close(what, dx, 4 * eps[i] * sqrt(24 * 9.0), 4 * eps[i]);
        snprintf(what, sizeof what, "conv dw in %s", names[i]);
        expect_close(what, dw, 4 * eps[i] * sqrt(k_dw), 4 * eps[i]);
        tp_free(&a), tp_free(&bb), tp_free(&c), tp_free(&x), tp_free(&w), tp_free(&bias);
        tp_free(&y), tp_free(&g), tp_free(&dx), tp_free(&dw);
    }
    kd_cuda_set_math(GPU, KD_CUDA_MATH_FP32);
}

static void test_all_finite(void)
{
    if (against_cpu) return;
    seed(50);
    size_t n = 1000003;
    tp x = tp_rand(n, -1e30, 1e30);
    KD_EXPECT(kd_cuda_all_finite(GPU, x.g, n) == 1);
    KD_EXPECT(kd_cuda_all_finite(GPU, x.g, 0) == 1);
    const float bad[2] = {NAN, INFINITY};
    for (int i = 0; i < 2; i++) {
        GPU->copy_from_host(GPU, x.g + n - 1 - (size_t)i * 500000, &bad[i], sizeof(float));
        KD_EXPECT(kd_cuda_all_finite(GPU, x.g, n) == 0);
        KD_EXPECT(kd_cuda_all_finite(GPU, x.g, n - 1 - (size_t)i * 500000) == 1);
        float ok = 1.0f;
        GPU->copy_from_host(GPU, x.g + n - 1 - (size_t)i * 500000, &ok, sizeof(float));
    }
    KD_EXPECT(kd_cuda_all_finite(GPU, x.g, n) == 1);
    tp_free(&x);
}

static void test_select_device(void)
{
    if (against_cpu) return;
    kd_err err = {0};
    int dev = -1, n = kd_cuda_device_count(NULL);
    KD_EXPECT(kd_cuda_select_device(-1, 2, &dev, &err) == KD_EINVAL);
    KD_EXPECT(kd_cuda_select_device(2, 2, &dev, &err) == KD_EINVAL);
    KD_EXPECT(kd_cuda_select_device(n - 1, n, &dev, &err) == KD_OK && dev == n - 1);
    if (n > 1) { /* more ranks than GPUs, each seeing them all */
        KD_EXPECT(kd_cuda_select_device(n, n + 1, &dev, &err) == KD_EINVAL);
        KD_EXPECT_STR_CONTAINS(err.msg, "no GPU of its own");
    } else { /* one visible GPU: every rank takes it (per-task binding) */
        KD_EXPECT(kd_cuda_select_device(3, 4, &dev, &err) == KD_OK && dev == 0);
    }
    KD_EXPECT(kd_cuda_select_device(0, 1, &dev, &err) == KD_OK && dev == 0);
}

int main(void)
{
    const char *want_cpu = getenv("CROSSKD_CUDA_TEST_AGAINST_CPU");
    against_cpu = want_cpu && strcmp(want_cpu, "1") == 0;
    kd_err err = {0};
    if (!against_cpu) {
        const char *why = NULL;
        if (kd_cuda_device_count(&why) <= 0) {
            /* the registration must say so clearly */
            const kd_backend *b = NULL;
            kd_status st = kd_backend_open("cuda", 0, &b, &err);
            if (st != KD_EUNSUPPORTED || !strstr(err.msg, "no CUDA device")) {
                fprintf(stderr, "kd_backend_open(\"cuda\") without a device: status %d, \"%s\"\n",
                        (int)st, err.msg);
                return 1;
            }
            printf("skipped: no CUDA device (%s)\n", why ? why : "none");
            return KD_TEST_SKIP;
        }
    }
    if (kd_backend_open("cpu", 0, &CPU, &err) != KD_OK ||
        kd_backend_open(against_cpu ? "cpu" : "cuda", 0, &GPU, &err) != KD_OK) {
        fprintf(stderr, "cannot open the backends: %s\n", err.msg);
        return 1;
    }
    KD_TEST_RUN(test_memory);
    KD_TEST_RUN(test_blas1);
    KD_TEST_RUN(test_sgd_step);
    KD_TEST_RUN(test_gemm);
    KD_TEST_RUN(test_conv);
    KD_TEST_RUN(test_conv_cache);
    KD_TEST_RUN(test_group_norm);
    KD_TEST_RUN(test_batch_norm);
    KD_TEST_RUN(test_align);
    KD_TEST_RUN(test_activations);
    KD_TEST_RUN(test_scale);
    KD_TEST_RUN(test_softmax);
    KD_TEST_RUN(test_maxpool);
    KD_TEST_RUN(test_upsample_add);
    KD_TEST_RUN(test_upload);
    KD_TEST_RUN(test_nccl_one_rank);
    KD_TEST_RUN(test_math_modes);
    KD_TEST_RUN(test_all_finite);
    KD_TEST_RUN(test_select_device);
    GPU->close(GPU);
    CPU->close(CPU);
    return kd_test_summary();
}
