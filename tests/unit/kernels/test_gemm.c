/* test_gemm.c — row-major GEMM (OpenBLAS) in all four transpose combinations, with padded
 * leading dimensions, alpha/beta and empty sizes, against a double reference; its gradients
 * (dA = dC * B^T, dB = A^T * dC, themselves GEMMs) against central finite differences; and
 * the BLAS-1 operations (axpy, scal, add, sum, dot, fill, zero, copies) and the SGD step
 * (against the float64 formula; its bit-exact agreement with kd_sgd_elem is test_optim's).
 * Tolerances: 1e-5 + 1e-5*|ref| per product of <= 40 terms; gradients 1e-5 + 1e-4*|fd|.
 */
#include "kt.h"

typedef struct gm_ctx {
    int ta, tb, m, n, k, lda, ldb;
    double alpha, beta;
    double *a, *b, *c0;
} gm_ctx;

static void gemm_ref(void *vc, double *c)
{
    gm_ctx *g = vc;
    for (int i = 0; i < g->m; i++)
        for (int j = 0; j < g->n; j++) {
            double s = 0.0;
            for (int l = 0; l < g->k; l++) {
                double av = g->ta ? g->a[(size_t)l * g->lda + i] : g->a[(size_t)i * g->lda + l];
                double bv = g->tb ? g->b[(size_t)j * g->ldb + l] : g->b[(size_t)l * g->ldb + j];
                s += av * bv;
            }
            c[(size_t)i * g->n + j] = g->alpha * s + g->beta * g->c0[(size_t)i * g->n + j];
        }
}

static void check_gemm(int ta, int tb, int m, int n, int k, float alpha, float beta, uint64_t seed)
{
    kt_seed(seed);
    int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    int lda = ac + 3, ldb = bc + 1; /* padded rows */
    size_t an = (size_t)ar * lda, bn = (size_t)br * ldb, cn = (size_t)m * n;
    kt_arr a = kt_rand(an, -1, 1), b = kt_rand(bn, -1, 1), c0 = kt_rand(cn, -1, 1), g = kt_rand(cn, -1, 1);
    gm_ctx ctx = {ta, tb, m, n, k, lda, ldb, alpha, beta, a.d, b.d, c0.d};
    float *ad = kt_dev(a.f, an), *bd = kt_dev(b.f, bn), *cd = kt_dev(c0.f, cn);
    kt_b->gemm(kt_b, ta, tb, m, n, k, alpha, ad, lda, bd, ldb, beta, cd, n);
    float *c = kt_host(cd, cn);
    double *cr = kt_ref_out(gemm_ref, &ctx, cn);
    KT_EXPECT_CLOSE("gemm C", c, cr, cn, 1e-5, 1e-5);
    /* gradient of <C, g> w.r.t. A for the non-transposed case: dA = alpha * g * op(B)^T */
    if (!ta && m && k) {
        float *gd = kt_dev(g.f, cn), *dad = kt_dev_fill(an, 0);
        kt_b->gemm(kt_b, 0, !tb, m, k, n, alpha, gd, n, bd, ldb, 0.0f, dad, lda);
        float *da = kt_host(dad, an);
        double *fd = calloc(an, sizeof *fd);
        kt_fd_grad(gemm_ref, &ctx, a.d, an, g.d, cn, fd);
        for (int i = 0; i < m; i++) /* padding columns are not part of A */
            for (int l = k; l < lda; l++) fd[(size_t)i * lda + l] = 0, da[(size_t)i * lda + l] = 0;
        KT_EXPECT_CLOSE("gemm dA", da, fd, an, 1e-5, 1e-4);
        free(da), free(fd), kt_dfree(gd), kt_dfree(dad);
    }
    free(c), free(cr);
    kt_dfree(ad), kt_dfree(bd), kt_dfree(cd);
    kt_arr_free(&a), kt_arr_free(&b), kt_arr_free(&c0), kt_arr_free(&g);
}

static void test_gemm_nn(void) { check_gemm(0, 0, 7, 5, 9, 1.0f, 0.0f, 1); }
static void test_gemm_nt(void) { check_gemm(0, 1, 3, 11, 4, 0.5f, 1.0f, 2); }
static void test_gemm_tn(void) { check_gemm(1, 0, 6, 1, 13, -1.0f, 0.25f, 3); }
static void test_gemm_tt(void) { check_gemm(1, 1, 1, 8, 40, 2.0f, -1.0f, 4); }
static void test_gemm_empty(void)
{
    check_gemm(0, 0, 0, 5, 3, 1.0f, 0.0f, 5);
    check_gemm(0, 0, 4, 5, 0, 1.0f, 0.5f, 6); /* k = 0: C = beta*C */
}

static void test_blas1(void)
{
    kt_seed(7);
    size_t n = 70001; /* above the threading threshold, odd */
    kt_arr x = kt_rand(n, -1, 1), y = kt_rand(n, -1, 1);
    float *xd = kt_dev(x.f, n), *yd = kt_dev(y.f, n), *zd = kt_dev_fill(n, 0);
    double *want = calloc(n, sizeof *want);
    kt_b->axpy(kt_b, n, -0.5f, xd, yd);
    float *r = kt_host(yd, n);
    for (size_t i = 0; i < n; i++) want[i] = y.d[i] - 0.5 * x.d[i];
    KT_EXPECT_CLOSE("axpy", r, want, n, 1e-6, 1e-6);
    free(r);
    kt_b->add(kt_b, n, xd, yd, zd);
    r = kt_host(zd, n);
    for (size_t i = 0; i < n; i++) want[i] += x.d[i];
    KT_EXPECT_CLOSE("add", r, want, n, 1e-6, 1e-6);
    free(r);
    kt_b->scal(kt_b, n, 3.0f, zd);
    r = kt_host(zd, n);
    for (size_t i = 0; i < n; i++) want[i] *= 3.0;
    KT_EXPECT_CLOSE("scal", r, want, n, 1e-5, 1e-6);
    free(r);
    double s = 0, sr = 0;
    kt_b->sum(kt_b, n, xd, &s);
    for (size_t i = 0; i < n; i++) sr += x.d[i];
    KD_EXPECT_NEAR(s, sr, 1e-3, 1e-6);
    kt_b->sum(kt_b, 0, xd, &s);
    KD_EXPECT(s == 0.0);
    double dr = 0, sq = 0, sqr = 0;
    r = kt_host(yd, n);
    kt_b->dot(kt_b, n, xd, yd, &s);
    kt_b->dot(kt_b, n, xd, xd, &sq);
    for (size_t i = 0; i < n; i++) dr += (double)x.f[i] * r[i], sqr += (double)x.f[i] * x.f[i];
    free(r);
    KD_EXPECT_NEAR(s, dr, 1e-9, 1e-12); /* products and sums in double */
    KD_EXPECT_NEAR(sq, sqr, 1e-9, 1e-12);
    kt_b->dot(kt_b, 0, xd, yd, &s);
    KD_EXPECT(s == 0.0);
    kt_b->fill(kt_b, zd, n, 2.5f);
    kt_b->copy(kt_b, yd, zd, n * sizeof(float));
    r = kt_host(yd, n);
    KD_EXPECT(r[0] == 2.5f && r[n - 1] == 2.5f);
    free(r);
    kt_b->zero(kt_b, yd, n * sizeof(float));
    r = kt_host(yd, n);
    KD_EXPECT(r[0] == 0.0f && r[n / 2] == 0.0f && r[n - 1] == 0.0f);
    free(r), free(want);
    kt_dfree(xd), kt_dfree(yd), kt_dfree(zd);
    kt_arr_free(&x), kt_arr_free(&y);
    KD_EXPECT(kt_b->alloc(kt_b, 0) == NULL);
    kt_b->free(kt_b, NULL);
}

/* SGD step against the float64 formula (torch.optim.SGD, dampening 0): float32 rounding of
 * three operations per element. */
static void test_sgd_step(void)
{
    kt_seed(8);
    size_t n = 70001;
    kt_arr w = kt_rand(n, -1, 1), g = kt_rand(n, -1, 1), v = kt_rand(n, -0.1, 0.1);
    float *wd = kt_dev(w.f, n), *gd = kt_dev(g.f, n), *vd = kt_dev(v.f, n);
    const double lr = 0.02, mom = 0.9, decay = 1e-4;
    kt_b->sgd_step(kt_b, n, (float)lr, (float)mom, (float)decay, wd, gd, vd);
    double *want_w = calloc(n, sizeof *want_w), *want_v = calloc(n, sizeof *want_v);
    for (size_t i = 0; i < n; i++) {
        want_v[i] = mom * v.f[i] + g.f[i] + decay * w.f[i];
        want_w[i] = w.f[i] - lr * want_v[i];
    }
    float *rw = kt_host(wd, n), *rv = kt_host(vd, n);
    KT_EXPECT_CLOSE("sgd w", rw, want_w, n, 1e-7, 1e-6);
    KT_EXPECT_CLOSE("sgd v", rv, want_v, n, 1e-7, 1e-6);
    kt_b->sgd_step(kt_b, 0, (float)lr, (float)mom, (float)decay, wd, gd, vd); /* nothing */
    free(rw), free(rv), free(want_w), free(want_v);
    kt_dfree(wd), kt_dfree(gd), kt_dfree(vd);
    kt_arr_free(&w), kt_arr_free(&g), kt_arr_free(&v);
}

static void test_open_errors(void)
{
    const kd_backend *b = NULL;
    kd_err err;
    KD_EXPECT(kd_backend_open("tpu", 0, &b, &err) == KD_EINVAL && b == NULL);
    KD_EXPECT_STR_CONTAINS(err.msg, "tpu");
    KD_EXPECT(kd_backend_open("cpu", -1, &b, &err) == KD_EINVAL);
    KD_EXPECT_STR_CONTAINS(err.msg, "threads");
    KD_EXPECT(kd_backend_open(NULL, 0, &b, &err) == KD_EINVAL);
    KD_EXPECT(kd_backend_open("cpu", 1, &b, &err) == KD_OK && b && b->threads == 1);
    if (b) b->close(b);
    KD_EXPECT(kt_b->threads >= 1);
}

/* threads = 0 takes OMP_NUM_THREADS (its first entry), else every core. */
static void test_threads_from_env(void)
{
    const kd_backend *b = NULL;
    kd_err err;
    setenv("OMP_NUM_THREADS", "3", 1);
    KD_EXPECT(kd_backend_open("cpu", 0, &b, &err) == KD_OK && b && b->threads == 3);
    if (b) b->close(b);
    setenv("OMP_NUM_THREADS", "4,2", 1);
    KD_EXPECT(kd_backend_open("cpu", 0, &b, &err) == KD_OK && b && b->threads == 4);
    if (b) b->close(b);
    setenv("OMP_NUM_THREADS", "many", 1);
    KD_EXPECT(kd_backend_open("cpu", 0, &b, &err) == KD_OK && b && b->threads >= 1);
    if (b) b->close(b);
    KD_EXPECT(kd_backend_open("cpu", 5, &b, &err) == KD_OK && b && b->threads == 5);
    if (b) b->close(b);
    unsetenv("OMP_NUM_THREADS");
    KD_EXPECT(kd_backend_open("cpu", 0, &b, &err) == KD_OK && b && b->threads >= 1);
    if (b) b->close(b);
}

int main(void)
{
    kt_open();
    KD_TEST_RUN(test_gemm_nn);
    KD_TEST_RUN(test_gemm_nt);
    KD_TEST_RUN(test_gemm_tn);
    KD_TEST_RUN(test_gemm_tt);
    KD_TEST_RUN(test_gemm_empty);
    KD_TEST_RUN(test_blas1);
    KD_TEST_RUN(test_sgd_step);
    KD_TEST_RUN(test_open_errors);
    KD_TEST_RUN(test_threads_from_env);
    kt_b->close(kt_b);
    return kd_test_summary();
}
