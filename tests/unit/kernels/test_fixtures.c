/* test_fixtures.c — every CPU kernel's forward (and, where the fixture carries them, its
 * gradients) against PyTorch 1.13 on the same inputs. The fixtures are committed in
 * tests/fixtures/kernels/kernels.safetensors, made by tests/unit/kernels/make_fixtures.py
 * (which documents every case); this program takes the file's path as its argument, so CI
 * needs no PyTorch. Tolerances: 1e-5 + 1e-4*|torch| (1e-4 absolute for convolutions and
 * gradients, whose float sums run in a different order from PyTorch's).
 */
#include "kt.h"
#include "proto/safetensors.h"

static kd_st_file *fx;

/* A host float copy of tensor `name` (must be F32 with `elems` elements; NULL and a failed
 * expectation otherwise). */
static float *get(const char *name, size_t elems)
{
    const kd_st_tensor *t = kd_st_find(fx, name);
    KD_EXPECT_MSG(t != NULL, "fixture tensor %s is missing", name);
    if (!t) return NULL;
    KD_EXPECT_MSG(t->dtype == KD_ST_F32 && kd_st_tensor_elems(t) == elems,
                  "%s: dtype %s, %zu elements (want F32, %zu)", name, kd_st_dtype_name(t->dtype),
                  kd_st_tensor_elems(t), elems);
    if (t->dtype != KD_ST_F32 || kd_st_tensor_elems(t) != elems) return NULL;
    float *h = calloc(elems + 1, sizeof *h);
    memcpy(h, t->data, elems * sizeof *h);
    return h;
}

static float *get_dev(const char *name, size_t elems)
{
    float *h = get(name, elems);
    float *d = h ? kt_dev(h, elems) : NULL;
    free(h);
    return d;
}

static kd_shape shape_of(const char *name)
{
    const kd_st_tensor *t = kd_st_find(fx, name);
    kd_shape s = {0, 0, 0, 0};
    if (t && t->ndim == 4) s = (kd_shape){(int)t->shape[0], (int)t->shape[1], (int)t->shape[2], (int)t->shape[3]};
    KD_EXPECT_MSG(t && t->ndim == 4, "%s: not a 4-D fixture tensor", name);
    return s;
}

static int meta_int(const char *key)
{
    const char *v = kd_st_meta_get(fx, key);
    KD_EXPECT_MSG(v != NULL, "fixture metadata %s is missing", key);
    return v ? atoi(v) : 0;
}

/* Compares device floats with the fixture tensor `name`. */
static void expect_fixture(const char *name, const float *dev, size_t elems, double atol, double rtol)
{
    float *want = get(name, elems);
    if (!want) return;
    float *got = kt_host(dev, elems);
    double *wd = calloc(elems + 1, sizeof *wd);
    for (size_t i = 0; i < elems; i++) wd[i] = want[i];
    KT_EXPECT_CLOSE(name, got, wd, elems, atol, rtol);
    free(want), free(got), free(wd);
}

static void conv_case(const char *c)
{
    char n[64];
    snprintf(n, sizeof n, "%s.x", c);
    kd_shape xs = shape_of(n);
    snprintf(n, sizeof n, "%s.w", c);
    kd_shape ws = shape_of(n);
    snprintf(n, sizeof n, "%s.b", c);
    int has_bias = kd_st_find(fx, n) != NULL;
    snprintf(n, sizeof n, "%s.stride", c);
    int stride = meta_int(n);
    snprintf(n, sizeof n, "%s.pad", c);
    int pad = meta_int(n);
    kd_conv_desc d = {xs, ws.n, ws.h, ws.w, stride, stride, pad, pad, has_bias};
    kd_shape ys = kd_conv_out_shape(&d);
    size_t xn = kd_shape_elems(xs), wn = kd_shape_elems(ws), yn = kd_shape_elems(ys);
    char nx[64], nw[64], nb[64], ndy[64];
    snprintf(nx, sizeof nx, "%s.x", c), snprintf(nw, sizeof nw, "%s.w", c);
    snprintf(nb, sizeof nb, "%s.b", c), snprintf(ndy, sizeof ndy, "%s.dy", c);
    float *x = get_dev(nx, xn), *w = get_dev(nw, wn), *b = has_bias ? get_dev(nb, (size_t)ws.n) : NULL,
          *dy = get_dev(ndy, yn), *y = kt_dev_fill(yn, 0), *dx = kt_dev_fill(xn, 0),
          *dw = kt_dev_fill(wn, 0), *db = kt_dev_fill((size_t)ws.n, 0);
    if (!x || !w || !dy || (has_bias && !b)) return;
    kt_b->conv_fwd(kt_b, &d, x, w, b, y);
    kt_b->conv_bwd_data(kt_b, &d, dy, w, dx, 0);
    kt_b->conv_bwd_weight(kt_b, &d, x, dy, dw, has_bias ? db : NULL);
    snprintf(n, sizeof n, "%s.y", c);
    expect_fixture(n, y, yn, 1e-4, 1e-4);
    snprintf(n, sizeof n, "%s.dx", c);
    expect_fixture(n, dx, xn, 1e-4, 1e-4);
    snprintf(n, sizeof n, "%s.dw", c);
    expect_fixture(n, dw, wn, 1e-4, 1e-4);
    if (has_bias) {
        snprintf(n, sizeof n, "%s.db", c);
        expect_fixture(n, db, (size_t)ws.n, 1e-4, 1e-4);
    }
    kt_dfree(x), kt_dfree(w), kt_dfree(b), kt_dfree(dy), kt_dfree(y), kt_dfree(dx), kt_dfree(dw), kt_dfree(db);
}

static void test_conv(void)
{
    conv_case("conv_a");
    conv_case("conv_b");
    conv_case("conv_c");
    conv_case("conv_d");
}

static void test_gemm(void)
{
    float *a = get_dev("gemm.a", 35), *b = get_dev("gemm.b", 21), *c = kt_dev_fill(15, 0),
          *c2 = kt_dev_fill(28, 0);
    if (!a || !b) return;
    kt_b->gemm(kt_b, 0, 0, 5, 3, 7, 1.0f, a, 7, b, 3, 0.0f, c, 3);
    expect_fixture("gemm.c", c, 15, 1e-5, 1e-4);
    kt_b->gemm(kt_b, 1, 0, 7, 4, 5, 1.0f, a, 7, a, 7, 0.0f, c2, 4);
    expect_fixture("gemm.c_tn", c2, 28, 1e-5, 1e-4);
    kt_dfree(a), kt_dfree(b), kt_dfree(c), kt_dfree(c2);
}

static void test_group_norm(void)
{
    kd_shape s = shape_of("gn.x");
    size_t n = kd_shape_elems(s), c = (size_t)s.c;
    int groups = meta_int("gn.groups");
    float *x = get_dev("gn.x", n), *ga = get_dev("gn.gamma", c), *be = get_dev("gn.beta", c),
          *dy = get_dev("gn.dy", n), *y = kt_dev_fill(n, 0), *yr = kt_dev_fill(n, 0),
          *m = kt_dev_fill((size_t)s.n * groups, 0), *r = kt_dev_fill((size_t)s.n * groups, 0),
          *dx = kt_dev_fill(n, 0), *dg = kt_dev_fill(c, 0), *db = kt_dev_fill(c, 0);
    if (!x || !ga || !be || !dy) return;
    kt_b->group_norm_fwd(kt_b, s, groups, 1e-5f, 0, x, ga, be, y, m, r);
    expect_fixture("gn.y", y, n, 1e-5, 1e-4);
    kt_b->group_norm_fwd(kt_b, s, groups, 1e-5f, 1, x, ga, be, yr, m, r);
    expect_fixture("gn.y_relu", yr, n, 1e-5, 1e-4);
    kt_b->group_norm_bwd(kt_b, s, groups, 1, x, yr, dy, ga, m, r, dx, 0, dg, db);
    expect_fixture("gn.dx_relu", dx, n, 1e-4, 1e-4);
    expect_fixture("gn.dgamma_relu", dg, c, 1e-4, 1e-4);
    expect_fixture("gn.dbeta_relu", db, c, 1e-4, 1e-4);
    kt_dfree(x), kt_dfree(ga), kt_dfree(be), kt_dfree(dy), kt_dfree(y), kt_dfree(yr), kt_dfree(m),
        kt_dfree(r), kt_dfree(dx), kt_dfree(dg), kt_dfree(db);
}

static void test_batch_norm(void)
{
    kd_shape s = shape_of("bn.x");
    size_t n = kd_shape_elems(s), c = (size_t)s.c;
    float *x = get_dev("bn.x", n), *rm = get_dev("bn.rmean", c), *rv = get_dev("bn.rvar", c),
          *ga = get_dev("bn.gamma", c), *be = get_dev("bn.beta", c), *dy = get_dev("bn.dy", n),
          *y = kt_dev_fill(n, 0), *yr = kt_dev_fill(n, 0), *dx = kt_dev_fill(n, 0),
          *dg = kt_dev_fill(c, 0), *db = kt_dev_fill(c, 0);
    if (!x || !rm || !rv || !ga || !be || !dy) return;
    kt_b->batch_norm_inf_fwd(kt_b, s, 1e-5f, 0, x, rm, rv, ga, be, y);
    expect_fixture("bn.y", y, n, 1e-5, 1e-4);
    kt_b->batch_norm_inf_fwd(kt_b, s, 1e-5f, 1, x, rm, rv, ga, be, yr);
    expect_fixture("bn.y_relu", yr, n, 1e-5, 1e-4);
    kt_b->batch_norm_inf_bwd(kt_b, s, 1e-5f, 1, x, yr, dy, rm, rv, ga, dx, 0, dg, db);
    expect_fixture("bn.dx_relu", dx, n, 1e-4, 1e-4);
    expect_fixture("bn.dgamma_relu", dg, c, 1e-4, 1e-4);
    expect_fixture("bn.dbeta_relu", db, c, 1e-4, 1e-4);
    kt_dfree(x), kt_dfree(rm), kt_dfree(rv), kt_dfree(ga), kt_dfree(be), kt_dfree(dy), kt_dfree(y),
        kt_dfree(yr), kt_dfree(dx), kt_dfree(dg), kt_dfree(db);
}

static void test_activations(void)
{
    size_t n = 3 * 4 * 5 * 6;
    float *x = get_dev("relu.x", n), *y = kt_dev_fill(n, 0);
    if (x) {
        kt_b->relu_fwd(kt_b, n, x, y);
        expect_fixture("relu.y", y, n, 0, 0);
    }
    kt_dfree(x), kt_dfree(y);
    n = 57;
    x = get_dev("sigmoid.x", n), y = kt_dev_fill(n, 0);
    float *dy = get_dev("sigmoid.dy", n), *dx = kt_dev_fill(n, 0);
    if (x && dy) {
        kt_b->sigmoid_fwd(kt_b, n, x, y);
        expect_fixture("sigmoid.y", y, n, 1e-7, 1e-6);
        kt_b->sigmoid_bwd(kt_b, n, y, dy, dx, 0);
        expect_fixture("sigmoid.dx", dx, n, 1e-7, 1e-5);
    }
    kt_dfree(x), kt_dfree(y), kt_dfree(dy), kt_dfree(dx);
    n = 2 * 5 * 3 * 4;
    float *s = get_dev("scale.s", 1);
    x = get_dev("scale.x", n), y = kt_dev_fill(n, 0);
    dy = get_dev("scale.dy", n), dx = kt_dev_fill(n, 0);
    float *ds = kt_dev_fill(1, 0);
    if (x && s && dy) {
        kt_b->scale_fwd(kt_b, n, s, x, y);
        expect_fixture("scale.y", y, n, 1e-7, 1e-6);
        kt_b->scale_bwd(kt_b, n, s, x, dy, dx, 0, ds);
        expect_fixture("scale.dx", dx, n, 1e-7, 1e-5);
        expect_fixture("scale.ds", ds, 1, 1e-5, 1e-5);
    }
    kt_dfree(x), kt_dfree(y), kt_dfree(s), kt_dfree(dy), kt_dfree(dx), kt_dfree(ds);
    n = 6 * 17;
    x = get_dev("softmax.x", n), y = kt_dev_fill(n, 0);
    float *ly = kt_dev_fill(n, 0);
    if (x) {
        kt_b->softmax_fwd(kt_b, 6, 17, x, y);
        expect_fixture("softmax.y", y, n, 1e-7, 1e-5);
        kt_b->log_softmax_fwd(kt_b, 6, 17, x, ly);
        float *got = kt_host(ly, n), *want = get("softmax.logy", n);
        for (size_t i = 0; want && i < n; i++) /* -inf where PyTorch has -inf */
            KD_EXPECT(isinf(want[i]) ? got[i] == want[i] : fabs(got[i] - want[i]) <= 1e-5 + 1e-5 * fabs(want[i]));
        free(got), free(want);
        float *g = get_dev("softmax.dy", n), *lg = get_dev("softmax.logdy", n), *d = kt_dev_fill(n, 0);
        if (g && lg) {
            kt_b->softmax_bwd(kt_b, 6, 17, y, g, d, 0);
            expect_fixture("softmax.dx", d, n, 1e-6, 1e-4);
            kt_b->log_softmax_bwd(kt_b, 6, 17, ly, lg, d, 0);
            expect_fixture("softmax.logdx", d, n, 1e-6, 1e-4);
        }
        kt_dfree(g), kt_dfree(lg), kt_dfree(d);
    }
    kt_dfree(x), kt_dfree(y), kt_dfree(ly);
}

static void test_max_pool(void)
{
    kd_shape s = shape_of("maxpool.x");
    kd_shape ys = kd_pool_out_shape(s, 3, 2, 1);
    size_t n = kd_shape_elems(s), yn = kd_shape_elems(ys);
    float *x = get_dev("maxpool.x", n), *y = kt_dev_fill(yn, 0);
    int32_t *am = kt_b->alloc(kt_b, yn * sizeof *am);
    if (!x) return;
    kt_b->max_pool_fwd(kt_b, s, 3, 2, 1, x, y, am);
    expect_fixture("maxpool.y", y, yn, 0, 0);
    const kd_st_tensor *idx = kd_st_find(fx, "maxpool.idx");
    KD_REQUIRE(idx && idx->dtype == KD_ST_I64 && kd_st_tensor_elems(idx) == yn);
    int32_t *got = calloc(yn, sizeof *got);
    kt_b->copy_to_host(kt_b, got, am, yn * sizeof *got);
    size_t bad = 0;
    for (size_t i = 0; i < yn; i++) {
        int64_t want;
        memcpy(&want, (const char *)idx->data + i * 8, 8);
        bad += got[i] != want;
    }
    KD_EXPECT_MSG(bad == 0, "%zu max-pool indices differ from PyTorch's", bad);
    free(got);
    float *dy = get_dev("maxpool.dy", yn), *dx = kt_dev_fill(n, 0);
    if (dy) {
        kt_b->max_pool_bwd(kt_b, s, 3, 2, 1, am, dy, dx, 0);
        expect_fixture("maxpool.dx", dx, n, 1e-7, 1e-6);
    }
    kt_dfree(dy), kt_dfree(dx);
    kt_dfree(x), kt_dfree(y), kt_dfree(am);
}

static void upadd_case(const char *c)
{
    char n[64];
    snprintf(n, sizeof n, "%s.top", c);
    kd_shape ts = shape_of(n);
    float *top = get_dev(n, kd_shape_elems(ts));
    snprintf(n, sizeof n, "%s.lat", c);
    kd_shape ls = shape_of(n);
    float *y = get_dev(n, kd_shape_elems(ls));
    if (!top || !y) return;
    kt_b->upsample_nearest_add_fwd(kt_b, ts, top, ls.h, ls.w, y);
    snprintf(n, sizeof n, "%s.y", c);
    expect_fixture(n, y, kd_shape_elems(ls), 0, 0);
    snprintf(n, sizeof n, "%s.dy", c);
    float *dy = get_dev(n, kd_shape_elems(ls)), *dt = kt_dev_fill(kd_shape_elems(ts), 0);
    if (dy) {
        kt_b->upsample_nearest_add_bwd(kt_b, ts, ls.h, ls.w, dy, dt, 0);
        snprintf(n, sizeof n, "%s.dtop", c);
        expect_fixture(n, dt, kd_shape_elems(ts), 1e-6, 1e-5);
    }
    kt_dfree(top), kt_dfree(y), kt_dfree(dy), kt_dfree(dt);
}

static void test_upsample_add(void)
{
    upadd_case("upadd_2x");
    upadd_case("upadd_odd");
    upadd_case("upadd_fpn");
}

static void test_align(void)
{
    kd_shape s = shape_of("align.s");
    size_t n = kd_shape_elems(s), c = (size_t)s.c;
    float *S = get_dev("align.s", n), *T = get_dev("align.t", n), *dy = get_dev("align.dy", n),
          *mt = kt_dev_fill(c, 0), *st = kt_dev_fill(c, 0), *y = kt_dev_fill(n, 0),
          *ms = kt_dev_fill(c, 0), *ss = kt_dev_fill(c, 0), *dx = kt_dev_fill(n, 0);
    if (!S || !T || !dy) return;
    kt_b->channel_stats(kt_b, s, T, mt, st);
    expect_fixture("align.t_mean", mt, c, 1e-6, 1e-5);
    expect_fixture("align.t_std", st, c, 1e-6, 1e-5);
    kt_b->align_scale_fwd(kt_b, s, S, mt, st, y, ms, ss);
    expect_fixture("align.y", y, n, 1e-5, 1e-4);
    kt_b->align_scale_bwd(kt_b, s, S, ms, ss, st, dy, dx, 0);
    expect_fixture("align.dx", dx, n, 1e-4, 1e-4);
    kt_dfree(S), kt_dfree(T), kt_dfree(dy), kt_dfree(mt), kt_dfree(st), kt_dfree(y), kt_dfree(ms),
        kt_dfree(ss), kt_dfree(dx);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s tests/fixtures/kernels/kernels.safetensors\n", argv[0]);
        return 2;
    }
    kd_err err;
    if (kd_st_load(argv[1], &fx, &err) != KD_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    kt_open();
    KD_TEST_RUN(test_conv);
    KD_TEST_RUN(test_gemm);
    KD_TEST_RUN(test_group_norm);
    KD_TEST_RUN(test_batch_norm);
    KD_TEST_RUN(test_activations);
    KD_TEST_RUN(test_max_pool);
    KD_TEST_RUN(test_upsample_add);
    KD_TEST_RUN(test_align);
    kt_b->close(kt_b);
    kd_st_free(fx);
    return kd_test_summary();
}
