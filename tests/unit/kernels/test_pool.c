/* test_pool.c — max-pooling and the FPN's fused nearest-upsample-add against double
 * references: forwards, backwards against central finite differences (max-pool inputs are
 * distinct by at least 1e-3, so a 1e-6 step never changes a window's winner), ties (the
 * first in scan order wins, as in PyTorch), accumulate semantics and empty maps.
 * Tolerances: forwards exact for max-pool, 1e-6 for the add; gradients 1e-5 + 1e-4*|fd|.
 */
#include "kt.h"

typedef struct mp_ctx {
    kd_shape s;
    int k, stride, pad;
    double *x;
} mp_ctx;

static void maxpool_ref(void *vc, double *y)
{
    mp_ctx *c = vc;
    kd_shape ys = kd_pool_out_shape(c->s, c->k, c->stride, c->pad);
    for (int p = 0; p < c->s.n * c->s.c; p++)
        for (int oh = 0; oh < ys.h; oh++)
            for (int ow = 0; ow < ys.w; ow++) {
                double m = -INFINITY;
                for (int i = 0; i < c->k; i++)
                    for (int j = 0; j < c->k; j++) {
                        int h = oh * c->stride - c->pad + i, w = ow * c->stride - c->pad + j;
                        if (h < 0 || w < 0 || h >= c->s.h || w >= c->s.w) continue;
                        m = fmax(m, c->x[((size_t)p * c->s.h + h) * c->s.w + w]);
                    }
                y[((size_t)p * ys.h + oh) * ys.w + ow] = m;
            }
}

static void check_maxpool(kd_shape s, int k, int stride, int pad, uint64_t seed)
{
    kt_seed(seed);
    kd_shape ys = kd_pool_out_shape(s, k, stride, pad);
    size_t n = kd_shape_elems(s), yn = kd_shape_elems(ys);
    kt_arr x = kt_arr_new(n), g = kt_rand(yn, -1, 1), base = kt_rand(n, -1, 1);
    for (size_t i = 0; i < n; i++) x.d[i] = (double)i; /* distinct values, shuffled */
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(kt_uniform() * (double)i);
        double t = x.d[i - 1];
        x.d[i - 1] = x.d[j], x.d[j] = t;
    }
    for (size_t i = 0; i < n; i++) x.f[i] = (float)(x.d[i] * 1e-3 - 0.2), x.d[i] = x.f[i];
    mp_ctx c = {s, k, stride, pad, x.d};
    float *xd = kt_dev(x.f, n), *yd = kt_dev_fill(yn, 0), *gd = kt_dev(g.f, yn),
          *dxd = kt_dev_fill(n, 4), *dx2d = kt_dev(base.f, n), *y2d = kt_dev_fill(yn, 0);
    int32_t *am = yn ? kt_b->alloc(kt_b, yn * sizeof(int32_t)) : NULL;
    kt_b->max_pool_fwd(kt_b, s, k, stride, pad, xd, yd, am);
    kt_b->max_pool_fwd(kt_b, s, k, stride, pad, xd, y2d, NULL);
    float *y = kt_host(yd, yn), *y2 = kt_host(y2d, yn);
    double *yr = kt_ref_out(maxpool_ref, &c, yn);
    KT_EXPECT_CLOSE("maxpool y", y, yr, yn, 0, 0);
    KT_EXPECT_CLOSE("maxpool y (no argmax)", y2, yr, yn, 0, 0);
    kt_b->max_pool_bwd(kt_b, s, k, stride, pad, am, gd, dxd, 0);
    float *dx = kt_host(dxd, n);
    kt_check_grad("maxpool dx", maxpool_ref, &c, x.d, n, g.d, yn, dx, 1e-5, 1e-4);
    kt_b->max_pool_bwd(kt_b, s, k, stride, pad, am, gd, dx2d, 1);
    float *dx2 = kt_host(dx2d, n);
    kt_check_accum("maxpool dx accumulate", dx2, base.f, dx, n);
    free(y), free(y2), free(yr), free(dx), free(dx2);
    kt_dfree(xd), kt_dfree(yd), kt_dfree(gd), kt_dfree(dxd), kt_dfree(dx2d), kt_dfree(y2d), kt_dfree(am);
    kt_arr_free(&x), kt_arr_free(&g), kt_arr_free(&base);
}

static void test_maxpool_stem_odd(void) { check_maxpool((kd_shape){1, 2, 7, 9}, 3, 2, 1, 1); }
static void test_maxpool_stem_even_batch3(void) { check_maxpool((kd_shape){3, 2, 8, 6}, 3, 2, 1, 2); }
static void test_maxpool_2x2(void) { check_maxpool((kd_shape){2, 3, 5, 4}, 2, 2, 0, 3); }
static void test_maxpool_3x3_s1(void) { check_maxpool((kd_shape){1, 1, 4, 5}, 3, 1, 1, 4); }
static void test_maxpool_tiny_and_empty(void)
{
    check_maxpool((kd_shape){2, 2, 1, 1}, 3, 2, 1, 5);
    check_maxpool((kd_shape){0, 2, 5, 5}, 3, 2, 1, 6);
    check_maxpool((kd_shape){1, 2, 0, 5}, 3, 2, 1, 7);
}

static void test_maxpool_ties(void)
{
    kd_shape s = {1, 1, 3, 3};
    float x[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, g[4] = {1, 2, 3, 4};
    float *xd = kt_dev(x, 9), *yd = kt_dev_fill(4, 0), *gd = kt_dev(g, 4), *dxd = kt_dev_fill(9, 0);
    int32_t *am = kt_b->alloc(kt_b, 4 * sizeof(int32_t));
    kt_b->max_pool_fwd(kt_b, s, 3, 2, 1, xd, yd, am);
    kt_b->max_pool_bwd(kt_b, s, 3, 2, 1, am, gd, dxd, 0);
    float *dx = kt_host(dxd, 9);
    /* windows start at (-1,-1), (-1,1), (1,-1), (1,1): first valid element of each */
    float want[9] = {1, 2, 0, 3, 4, 0, 0, 0, 0};
    KD_EXPECT(memcmp(dx, want, sizeof want) == 0);
    free(dx);
    kt_dfree(xd), kt_dfree(yd), kt_dfree(gd), kt_dfree(dxd), kt_dfree(am);
}

/* Ties and NaN in interior windows (the unrolled 3x3 stride-2 path) and at the border: the
 * first maximum in scan order, the last NaN (indices checked against PyTorch 1.13). */
static void test_maxpool_interior_ties_nan(void)
{
    kd_shape s = {1, 1, 7, 7};
    float x[49];
    for (int i = 0; i < 49; i++) x[i] = 2.0f;
    x[3 * 7 + 4] = NAN; /* inside the windows of outputs (1,1), (1,2), (2,2) ... */
    x[3 * 7 + 5] = NAN;
    float *xd = kt_dev(x, 49), *yd = kt_dev_fill(16, 0);
    int32_t *am = kt_b->alloc(kt_b, 16 * sizeof(int32_t));
    kt_b->max_pool_fwd(kt_b, s, 3, 2, 1, xd, yd, am);
    float y[16];
    int32_t a[16];
    kt_b->copy_to_host(kt_b, y, yd, sizeof y);
    kt_b->copy_to_host(kt_b, a, am, sizeof a);
    /* output (1,1): window rows 1..3, cols 1..3: all 2, first is (1,1) */
    KD_EXPECT(y[1 * 4 + 1] == 2.0f && a[1 * 4 + 1] == 1 * 7 + 1);
    /* output (1,2): rows 1..3, cols 3..5: the last NaN in scan order is (3,5) */
    KD_EXPECT(isnan(y[1 * 4 + 2]) && a[1 * 4 + 2] == 3 * 7 + 5);
    /* output (2,2): rows 3..5, cols 3..5: (3,5) again */
    KD_EXPECT(isnan(y[2 * 4 + 2]) && a[2 * 4 + 2] == 3 * 7 + 5);
    /* output (0,3) (border): rows 0..1, cols 5..6: all 2, the first is (0,5) */
    KD_EXPECT(y[3] == 2.0f && a[3] == 5);
    /* output (2,3): rows 3..5, cols 5..6 (border path): (3,5) */
    KD_EXPECT(isnan(y[2 * 4 + 3]) && a[2 * 4 + 3] == 3 * 7 + 5);
    kt_dfree(xd), kt_dfree(yd), kt_dfree(am);
}

typedef struct up_ctx {
    kd_shape top;
    int oh, ow;
    double *t, *lat;
} up_ctx;

static int nearest(int i, int in, int out) /* PyTorch's rule, in double-free integer form */
{
    if (in == out) return i;
    if (out == 2 * in) return i / 2;
    int s = (int)floorf((float)i * ((float)in / (float)out));
    return s < in - 1 ? s : in - 1;
}

static void upadd_ref(void *vc, double *y)
{
    up_ctx *c = vc;
    for (int p = 0; p < c->top.n * c->top.c; p++)
        for (int i = 0; i < c->oh; i++)
            for (int j = 0; j < c->ow; j++) {
                size_t o = ((size_t)p * c->oh + i) * c->ow + j;
                y[o] = c->lat[o] + c->t[((size_t)p * c->top.h + nearest(i, c->top.h, c->oh)) * c->top.w +
                                        nearest(j, c->top.w, c->ow)];
            }
}

static void check_upadd(kd_shape ts, int oh, int ow, uint64_t seed)
{
    kt_seed(seed);
    size_t tn = kd_shape_elems(ts), yn = (size_t)ts.n * ts.c * oh * ow;
    kt_arr t = kt_rand(tn, -1, 1), lat = kt_rand(yn, -1, 1), g = kt_rand(yn, -1, 1),
           base = kt_rand(tn, -1, 1);
    up_ctx c = {ts, oh, ow, t.d, lat.d};
    float *td = kt_dev(t.f, tn), *yd = kt_dev(lat.f, yn), *gd = kt_dev(g.f, yn),
          *dtd = kt_dev_fill(tn, 6), *dt2d = kt_dev(base.f, tn);
    kt_b->upsample_nearest_add_fwd(kt_b, ts, td, oh, ow, yd);
    float *y = kt_host(yd, yn);
    double *yr = kt_ref_out(upadd_ref, &c, yn);
    KT_EXPECT_CLOSE("upsample-add y", y, yr, yn, 1e-6, 1e-6);
    kt_b->upsample_nearest_add_bwd(kt_b, ts, oh, ow, gd, dtd, 0);
    float *dt = kt_host(dtd, tn);
    kt_check_grad("upsample-add dtop", upadd_ref, &c, t.d, tn, g.d, yn, dt, 1e-5, 1e-4);
    kt_b->upsample_nearest_add_bwd(kt_b, ts, oh, ow, gd, dt2d, 1);
    float *dt2 = kt_host(dt2d, tn);
    kt_check_accum("upsample-add dtop accumulate", dt2, base.f, dt, tn);
    /* the lateral's gradient is dy itself: check the reference agrees */
    kt_check_grad("upsample-add dlateral", upadd_ref, &c, lat.d, yn, g.d, yn, g.f, 1e-5, 1e-4);
    free(y), free(yr), free(dt), free(dt2);
    kt_dfree(td), kt_dfree(yd), kt_dfree(gd), kt_dfree(dtd), kt_dfree(dt2d);
    kt_arr_free(&t), kt_arr_free(&lat), kt_arr_free(&g), kt_arr_free(&base);
}

static void test_upadd_2x(void) { check_upadd((kd_shape){2, 3, 4, 5}, 8, 10, 21); }
static void test_upadd_odd(void) { check_upadd((kd_shape){1, 2, 3, 5}, 7, 11, 22); }
static void test_upadd_fpn_level(void) { check_upadd((kd_shape){3, 2, 13, 21}, 25, 42, 23); }
static void test_upadd_same_and_down(void)
{
    check_upadd((kd_shape){1, 2, 4, 4}, 4, 4, 24);
    check_upadd((kd_shape){1, 1, 6, 5}, 4, 3, 25);
}
static void test_upadd_empty(void)
{
    check_upadd((kd_shape){0, 2, 3, 3}, 6, 6, 26);
    check_upadd((kd_shape){1, 2, 3, 3}, 0, 6, 27);
}

int main(void)
{
    kt_open();
    KD_TEST_RUN(test_maxpool_stem_odd);
    KD_TEST_RUN(test_maxpool_stem_even_batch3);
    KD_TEST_RUN(test_maxpool_2x2);
    KD_TEST_RUN(test_maxpool_3x3_s1);
    KD_TEST_RUN(test_maxpool_tiny_and_empty);
    KD_TEST_RUN(test_maxpool_ties);
    KD_TEST_RUN(test_maxpool_interior_ties_nan);
    KD_TEST_RUN(test_upadd_2x);
    KD_TEST_RUN(test_upadd_odd);
    KD_TEST_RUN(test_upadd_fpn_level);
    KD_TEST_RUN(test_upadd_same_and_down);
    KD_TEST_RUN(test_upadd_empty);
    kt_b->close(kt_b);
    return kd_test_summary();
}
