/* test_eltwise.c — ReLU, sigmoid, the per-level Scale, softmax and log-softmax over the last
 * axis: forwards against double references (including extreme logits, where a naive
 * formula overflows), backwards against central finite differences, in-place forwards,
 * accumulate semantics, and the shared math (kernels/kd_math.h) for BCE-with-logits.
 * Tolerances: forwards 1e-6 + 1e-5*|ref|; gradients 1e-5 + 1e-3*|fd|.
 */
#include "kt.h"
#include "kernels/kd_math.h"

typedef struct ew_ctx {
    size_t n;
    int cols;
    double *x, *scale;
} ew_ctx;

static void relu_ref(void *vc, double *y)
{
    ew_ctx *c = vc;
    for (size_t i = 0; i < c->n; i++) y[i] = c->x[i] > 0 ? c->x[i] : 0;
}
static void sigmoid_ref(void *vc, double *y)
{
    ew_ctx *c = vc;
    for (size_t i = 0; i < c->n; i++) y[i] = 1.0 / (1.0 + exp(-c->x[i]));
}
static void scale_ref(void *vc, double *y)
{
    ew_ctx *c = vc;
    for (size_t i = 0; i < c->n; i++) y[i] = c->scale[0] * c->x[i];
}
static void softmax_ref_impl(ew_ctx *c, double *y, int log_)
{
    size_t rows = c->n / (size_t)c->cols;
    for (size_t r = 0; r < rows; r++) {
        const double *x = c->x + r * c->cols;
        double m = -INFINITY, s = 0;
        for (int j = 0; j < c->cols; j++) m = fmax(m, x[j]);
        for (int j = 0; j < c->cols; j++) s += exp(x[j] - m);
        for (int j = 0; j < c->cols; j++)
            y[r * c->cols + j] = log_ ? x[j] - m - log(s) : exp(x[j] - m) / s;
    }
}
static void softmax_ref(void *vc, double *y) { softmax_ref_impl(vc, y, 0); }
static void log_softmax_ref(void *vc, double *y) { softmax_ref_impl(vc, y, 1); }

typedef void (*fwd_fn)(const kd_backend *, size_t, const float *, float *);
typedef void (*bwd_fn)(const kd_backend *, size_t, const float *, const float *, float *, int);

static void check_unary(const char *name, fwd_fn fwd, bwd_fn bwd, kt_ref_fn ref, kt_arr x,
                        uint64_t seed)
{
    kt_seed(seed);
    size_t n = x.n;
    kt_arr g = kt_rand(n, -1, 1), base = kt_rand(n, -1, 1);
    ew_ctx c = {n, 1, x.d, NULL};
    float *xd = kt_dev(x.f, n), *yd = kt_dev_fill(n, 0.f), *gd = kt_dev(g.f, n),
          *dxd = kt_dev_fill(n, 5.f), *dx2d = kt_dev(base.f, n);
    fwd(kt_b, n, xd, yd);
    float *y = kt_host(yd, n);
    double *yr = kt_ref_out(ref, &c, n);
    KT_EXPECT_CLOSE(name, y, yr, n, 1e-6, 1e-5);
    bwd(kt_b, n, yd, gd, dxd, 0);
    float *dx = kt_host(dxd, n);
    kt_check_grad(name, ref, &c, x.d, n, g.d, n, dx, 1e-5, 1e-3);
    bwd(kt_b, n, yd, gd, dx2d, 1);
    float *dx2 = kt_host(dx2d, n);
    kt_check_accum(name, dx2, base.f, dx, n);
    /* in place: y == x, then dx == dy */
    fwd(kt_b, n, xd, xd);
    float *y2 = kt_host(xd, n);
    KD_EXPECT(n == 0 || memcmp(y, y2, n * sizeof *y) == 0);
    bwd(kt_b, n, xd, gd, gd, 0);
    float *dx3 = kt_host(gd, n);
    KD_EXPECT(n == 0 || memcmp(dx, dx3, n * sizeof *dx) == 0);
    free(y), free(yr), free(dx), free(dx2), free(y2), free(dx3);
    kt_dfree(xd), kt_dfree(yd), kt_dfree(gd), kt_dfree(dxd), kt_dfree(dx2d);
    kt_arr_free(&g), kt_arr_free(&base);
}

static void test_relu(void)
{
    kt_seed(1);
    kt_arr x = kt_rand_away(257, 0.01, 3); /* away from the kink */
    check_unary("relu", kt_b->relu_fwd, kt_b->relu_bwd, relu_ref, x, 2);
    kt_arr_free(&x);
    kt_arr e = kt_arr_new(0);
    check_unary("relu empty", kt_b->relu_fwd, kt_b->relu_bwd, relu_ref, e, 3);
    kt_arr_free(&e);
    /* large enough to run on several threads */
    kt_arr big = kt_rand_away(100003, 0.01, 3);
    ew_ctx c = {big.n, 1, big.d, NULL};
    float *xd = kt_dev(big.f, big.n), *yd = kt_dev_fill(big.n, 0.f);
    kt_b->relu_fwd(kt_b, big.n, xd, yd);
    float *y = kt_host(yd, big.n);
    double *yr = kt_ref_out(relu_ref, &c, big.n);
    KT_EXPECT_CLOSE("relu big", y, yr, big.n, 0, 0);
    free(y), free(yr), kt_dfree(xd), kt_dfree(yd), kt_arr_free(&big);
}

static void test_sigmoid(void)
{
    kt_seed(4);
    kt_arr x = kt_rand(301, -8, 8);
    check_unary("sigmoid", kt_b->sigmoid_fwd, kt_b->sigmoid_bwd, sigmoid_ref, x, 5);
    kt_arr_free(&x);
    /* extremes: no overflow, exact saturation */
    float ex[6] = {-1e4f, -100.f, -88.f, 88.f, 100.f, 1e4f};
    for (int i = 0; i < 6; i++) {
        float s = kd_sigmoid(ex[i]);
        KD_EXPECT(isfinite(s) && s >= 0.f && s <= 1.f);
        KD_EXPECT_NEAR(s, 1.0 / (1.0 + exp(-(double)ex[i])), 1e-30, 1e-6);
    }
}

static void test_bce_logits_math(void)
{
    /* kd_bce_logits against the double formula, including |x| where log(sigmoid) overflows */
    float xs[7] = {-200.f, -20.f, -1.f, 0.f, 0.5f, 20.f, 200.f}, ts[3] = {0.f, 0.3f, 1.f};
    for (int i = 0; i < 7; i++)
        for (int j = 0; j < 3; j++) {
            double x = xs[i], t = ts[j];
            double ref = fmax(x, 0) - t * x + log1p(exp(-fabs(x)));
            KD_EXPECT_NEAR(kd_bce_logits(xs[i], ts[j]), ref, 1e-6, 1e-6);
        }
    KD_EXPECT_NEAR(kd_softplus(-100.f), exp(-100.0), 1e-40, 1e-5);
    KD_EXPECT(kd_nearest_src(5, 3, 7) == 2 && kd_nearest_src(6, 3, 7) == 2);
    KD_EXPECT(kd_nearest_src(3, 4, 8) == 1 && kd_nearest_src(3, 4, 4) == 3);
}

static void test_scale(void)
{
    kt_seed(6);
    size_t n = 1000;
    kt_arr x = kt_rand(n, -2, 2), g = kt_rand(n, -1, 1), base = kt_rand(n, -1, 1);
    float s = 1.37f;
    double sd = s;
    ew_ctx c = {n, 1, x.d, &sd};
    float *xd = kt_dev(x.f, n), *sdv = kt_dev(&s, 1), *yd = kt_dev_fill(n, 0), *gd = kt_dev(g.f, n),
          *dxd = kt_dev_fill(n, 3), *dx2d = kt_dev(base.f, n), *dsd = kt_dev_fill(1, 0.25f);
    kt_b->scale_fwd(kt_b, n, sdv, xd, yd);
    float *y = kt_host(yd, n);
    double *yr = kt_ref_out(scale_ref, &c, n);
    KT_EXPECT_CLOSE("scale y", y, yr, n, 1e-6, 1e-6);
    kt_b->scale_bwd(kt_b, n, sdv, xd, gd, dxd, 0, dsd);
    float *dx = kt_host(dxd, n), *ds = kt_host(dsd, 1);
    kt_check_grad("scale dx", scale_ref, &c, x.d, n, g.d, n, dx, 1e-5, 1e-4);
    double fd;
    kt_fd_grad(scale_ref, &c, &sd, 1, g.d, n, &fd);
    fd += 0.25;
    KT_EXPECT_CLOSE("scale dscale (+=)", ds, &fd, 1, 1e-4, 1e-4);
    kt_b->scale_bwd(kt_b, n, sdv, xd, gd, dx2d, 1, NULL);
    float *dx2 = kt_host(dx2d, n);
    kt_check_accum("scale dx accumulate", dx2, base.f, dx, n);
    kt_b->scale_bwd(kt_b, n, sdv, xd, gd, NULL, 0, dsd); /* dx NULL: parameter only */
    float *ds2 = kt_host(dsd, 1);
    KD_EXPECT_NEAR(ds2[0], 2.0 * ds[0] - 0.25, 1e-4, 1e-4);
    free(y), free(yr), free(dx), free(ds), free(dx2), free(ds2);
    kt_dfree(xd), kt_dfree(sdv), kt_dfree(yd), kt_dfree(gd), kt_dfree(dxd), kt_dfree(dx2d), kt_dfree(dsd);
    kt_arr_free(&x), kt_arr_free(&g), kt_arr_free(&base);
}

typedef void (*rfwd_fn)(const kd_backend *, size_t, int, const float *, float *);
typedef void (*rbwd_fn)(const kd_backend *, size_t, int, const float *, const float *, float *, int);

static void check_rows(const char *name, rfwd_fn fwd, rbwd_fn bwd, kt_ref_fn ref, size_t rows,
                       int cols, double lo, double hi, uint64_t seed)
{
    kt_seed(seed);
    size_t n = rows * (size_t)cols;
    kt_arr x = kt_rand(n, lo, hi), g = kt_rand(n, -1, 1), base = kt_rand(n, -1, 1);
    ew_ctx c = {n, cols, x.d, NULL};
    float *xd = kt_dev(x.f, n), *yd = kt_dev_fill(n, 0), *gd = kt_dev(g.f, n),
          *dxd = kt_dev_fill(n, 2), *dx2d = kt_dev(base.f, n);
    fwd(kt_b, rows, cols, xd, yd);
    float *y = kt_host(yd, n);
    double *yr = kt_ref_out(ref, &c, n);
    KT_EXPECT_CLOSE(name, y, yr, n, 1e-6, 1e-5);
    bwd(kt_b, rows, cols, yd, gd, dxd, 0);
    float *dx = kt_host(dxd, n);
    if (hi - lo < 100) kt_check_grad(name, ref, &c, x.d, n, g.d, n, dx, 1e-5, 1e-3);
    bwd(kt_b, rows, cols, yd, gd, dx2d, 1);
    float *dx2 = kt_host(dx2d, n);
    kt_check_accum(name, dx2, base.f, dx, n);
    for (size_t i = 0; i < n; i++) KD_EXPECT(isfinite(y[i]) && isfinite(dx[i]));
    free(y), free(yr), free(dx), free(dx2);
    kt_dfree(xd), kt_dfree(yd), kt_dfree(gd), kt_dfree(dxd), kt_dfree(dx2d);
    kt_arr_free(&x), kt_arr_free(&g), kt_arr_free(&base);
}

static void test_softmax(void)
{
    check_rows("softmax 17", kt_b->softmax_fwd, kt_b->softmax_bwd, softmax_ref, 13, 17, -4, 4, 7);
    check_rows("softmax 1", kt_b->softmax_fwd, kt_b->softmax_bwd, softmax_ref, 5, 1, -4, 4, 8);
    check_rows("softmax 80", kt_b->softmax_fwd, kt_b->softmax_bwd, softmax_ref, 3, 80, -4, 4, 9);
    check_rows("softmax huge logits", kt_b->softmax_fwd, kt_b->softmax_bwd, softmax_ref, 4, 17,
               5e3, 6e3, 10);
    check_rows("softmax no rows", kt_b->softmax_fwd, kt_b->softmax_bwd, softmax_ref, 0, 17, -1, 1, 11);
    check_rows("softmax many rows", kt_b->softmax_fwd, kt_b->softmax_bwd, softmax_ref, 4001, 17,
               -1e4, 1e4, 12);
    check_rows("softmax long rows", kt_b->softmax_fwd, kt_b->softmax_bwd, softmax_ref, 2, 5000,
               -30, 30, 16);
    check_rows("softmax 300 cols", kt_b->softmax_fwd, kt_b->softmax_bwd, softmax_ref, 40, 300,
               -90, 10, 17);
}

/* NaN and -inf through the backend's vectorised exp: a NaN row is all NaN (PyTorch), a -inf
 * logit has probability 0 and log-probability -inf. */
static void test_softmax_special(void)
{
    float x[3 * 17];
    for (int i = 0; i < 3 * 17; i++) x[i] = (float)(i % 17) * 0.5f - 3.0f;
    x[5] = NAN;
    x[17 + 2] = -INFINITY;
    x[34 + 16] = -100.0f; /* e^-100 underflows to 0 relative to the others */
    float *xd = kt_dev(x, 51), *yd = kt_dev_fill(51, 0), *lyd = kt_dev_fill(51, 0);
    kt_b->softmax_fwd(kt_b, 3, 17, xd, yd);
    kt_b->log_softmax_fwd(kt_b, 3, 17, xd, lyd);
    float *y = kt_host(yd, 51), *ly = kt_host(lyd, 51);
    for (int j = 0; j < 17; j++) KD_EXPECT(isnan(y[j]) && isnan(ly[j]));
    KD_EXPECT(y[17 + 2] == 0.0f && ly[17 + 2] == -INFINITY);
    double s = 0;
    for (int j = 0; j < 17; j++) s += y[17 + j];
    KD_EXPECT_NEAR(s, 1.0, 1e-6, 0);
    KD_EXPECT(y[34 + 16] >= 0.0f && y[34 + 16] < 1e-40f);
    KD_EXPECT_NEAR(ly[34 + 16] - ly[34 + 15], (double)x[34 + 16] - x[34 + 15], 1e-4, 0);
    free(y), free(ly);
    kt_dfree(xd), kt_dfree(yd), kt_dfree(lyd);
}

static void test_log_softmax(void)
{
    check_rows("log_softmax 17", kt_b->log_softmax_fwd, kt_b->log_softmax_bwd, log_softmax_ref,
               13, 17, -4, 4, 13);
    check_rows("log_softmax 1", kt_b->log_softmax_fwd, kt_b->log_softmax_bwd, log_softmax_ref,
               5, 1, -4, 4, 14);
    check_rows("log_softmax huge logits", kt_b->log_softmax_fwd, kt_b->log_softmax_bwd,
               log_softmax_ref, 4, 17, -6e3, -5e3, 15);
    /* a -inf logit: probability 0, log-probability -inf, finite elsewhere */
    float x[3] = {-INFINITY, 0.f, 1.f}, y[3], ly[3];
    kd_softmax_row(x, y, 3);
    kd_log_softmax_row(x, ly, 3);
    KD_EXPECT(y[0] == 0.f && ly[0] == -INFINITY);
    KD_EXPECT_NEAR(y[2], exp(1.0) / (1.0 + exp(1.0)), 1e-7, 1e-6);
    KD_EXPECT_NEAR(ly[1], -log(1.0 + exp(1.0)), 1e-6, 1e-6);
}

int main(void)
{
    kt_open();
    KD_TEST_RUN(test_relu);
    KD_TEST_RUN(test_sigmoid);
    KD_TEST_RUN(test_bce_logits_math);
    KD_TEST_RUN(test_scale);
    KD_TEST_RUN(test_softmax);
    KD_TEST_RUN(test_log_softmax);
    KD_TEST_RUN(test_softmax_special);
    kt_b->close(kt_b);
    return kd_test_summary();
}
