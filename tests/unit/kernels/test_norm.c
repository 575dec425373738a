/* test_norm.c — GroupNorm and inference-mode BatchNorm (each with and without the fused
 * ReLU, with and without affine) against double-precision references: forward values, saved
 * statistics, and backward to the input, gamma and beta against central finite differences.
 * Inputs are redrawn until no pre-ReLU output lies within 1e-3 of 0, so the finite
 * differences never straddle the ReLU kink.
 * Tolerances: forward 1e-4 + 1e-4*|ref|; gradients 2e-4 + 1e-3*|fd| (GroupNorm's backward
 * subtracts group means of comparable size, losing a few bits).
 */
#include "kt.h"

typedef struct gn_ctx {
    kd_shape s;
    int groups, relu, affine;
    double eps;
    double *x, *gamma, *beta;
} gn_ctx;

static void gn_ref_pre(const gn_ctx *c, double *y) /* without ReLU */
{
    const kd_shape s = c->s;
    const int cg = s.c / c->groups;
    const size_t hw = (size_t)s.h * s.w, m = (size_t)cg * hw;
    for (int n = 0; n < s.n; n++)
        for (int g = 0; g < c->groups; g++) {
            const double *xp = c->x + ((size_t)n * s.c + (size_t)g * cg) * hw;
            double mu = 0.0, var = 0.0;
            for (size_t i = 0; i < m; i++) mu += xp[i];
            mu /= (double)m;
            for (size_t i = 0; i < m; i++) var += (xp[i] - mu) * (xp[i] - mu);
            var /= (double)m;
            double rs = 1.0 / sqrt(var + c->eps);
            for (size_t i = 0; i < m; i++) {
                int ch = g * cg + (int)(i / hw);
                double v = (xp[i] - mu) * rs;
                if (c->affine) v = v * c->gamma[ch] + c->beta[ch];
                y[((size_t)n * s.c + (size_t)g * cg) * hw + i] = v;
            }
        }
}

static void gn_ref(void *vc, double *y)
{
    gn_ctx *c = vc;
    gn_ref_pre(c, y);
    if (c->relu)
        for (size_t i = 0; i < kd_shape_elems(c->s); i++) y[i] = y[i] > 0 ? y[i] : 0;
}

static int near_kink(const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fabs(v[i]) < 1e-3) return 1;
    return 0;
}

static void check_gn(kd_shape s, int groups, int relu, int affine, uint64_t seed)
{
    const size_t n = kd_shape_elems(s), nc = (size_t)s.c, ng = (size_t)s.n * groups;
    kt_arr x, gamma, beta;
    gn_ctx c = {s, groups, relu, affine, 1e-5, NULL, NULL, NULL};
    double *pre = calloc(n + 1, sizeof *pre);
    for (uint64_t attempt = 0;; attempt++) {
        kt_seed(seed * 1000 + attempt);
        x = kt_rand(n, -2, 3), gamma = kt_rand(nc, 0.5, 1.5), beta = kt_rand(nc, -0.5, 0.5);
        c.x = x.d, c.gamma = gamma.d, c.beta = beta.d;
        gn_ref_pre(&c, pre);
        if (!relu || !near_kink(pre, n) || attempt > 50) break;
        kt_arr_free(&x), kt_arr_free(&gamma), kt_arr_free(&beta);
    }
    kt_arr g = kt_rand(n, -1, 1), base_x = kt_rand(n, -1, 1), base_g = kt_rand(nc, -1, 1),
           base_b = kt_rand(nc, -1, 1);
    float *xd = kt_dev(x.f, n), *gad = kt_dev(gamma.f, nc), *bed = kt_dev(beta.f, nc),
          *gd = kt_dev(g.f, n), *yd = kt_dev_fill(n, 9.f), *md = kt_dev_fill(ng, 0.f),
          *rd = kt_dev_fill(ng, 0.f);
    kt_b->group_norm_fwd(kt_b, s, groups, 1e-5f, relu, xd, affine ? gad : NULL,
                         affine ? bed : NULL, yd, md, rd);
    float *y = kt_host(yd, n);
    double *yr = kt_ref_out(gn_ref, &c, n);
    KT_EXPECT_CLOSE("gn y", y, yr, n, 1e-4, 1e-4);

    /* dx overwrite, then accumulate; dgamma/dbeta accumulate onto random values */
    float *dxd = kt_dev_fill(n, -5.f), *dx2d = kt_dev(base_x.f, n), *dgd = kt_dev(base_g.f, nc),
          *dbd = kt_dev(base_b.f, nc);
    kt_b->group_norm_bwd(kt_b, s, groups, relu, xd, yd, gd, affine ? gad : NULL, md, rd, dxd, 0,
                         affine ? dgd : NULL, affine ? dbd : NULL);
    float *dx = kt_host(dxd, n);
    kt_check_grad("gn dx", gn_ref, &c, x.d, n, g.d, n, dx, 2e-4, 1e-3);
    kt_b->group_norm_bwd(kt_b, s, groups, relu, xd, yd, gd, affine ? gad : NULL, md, rd, dx2d, 1,
                         NULL, NULL);
    float *dx2 = kt_host(dx2d, n);
    kt_check_accum("gn dx accumulate", dx2, base_x.f, dx, n);
    if (affine) {
        float *dga = kt_host(dgd, nc), *dbe = kt_host(dbd, nc);
        double *fd = calloc(nc + 1, sizeof *fd);
        kt_fd_grad(gn_ref, &c, gamma.d, nc, g.d, n, fd);
        for (size_t i = 0; i < nc; i++) fd[i] += base_g.f[i];
        KT_EXPECT_CLOSE("gn dgamma (+=)", dga, fd, nc, 2e-4, 1e-3);
        kt_fd_grad(gn_ref, &c, beta.d, nc, g.d, n, fd);
        for (size_t i = 0; i < nc; i++) fd[i] += base_b.f[i];
        KT_EXPECT_CLOSE("gn dbeta (+=)", dbe, fd, nc, 2e-4, 1e-3);
        free(fd), free(dga), free(dbe);
    }
    /* input-gradient-only with dx NULL too: parameters only */
    if (affine) {
        float *before = kt_host(dgd, nc);
        kt_b->group_norm_bwd(kt_b, s, groups, relu, xd, yd, gd, gad, md, rd, NULL, 0, dgd, NULL);
        float *after = kt_host(dgd, nc);
        float *delta = calloc(nc + 1, sizeof *delta);
        for (size_t i = 0; i < nc; i++) delta[i] = before[i] - base_g.f[i];
        kt_check_accum("gn dgamma with dx NULL", after, before, delta, nc);
        free(before), free(after), free(delta);
    }
    free(pre), free(y), free(yr), free(dx), free(dx2);
    kt_dfree(xd), kt_dfree(gad), kt_dfree(bed), kt_dfree(gd), kt_dfree(yd), kt_dfree(md),
        kt_dfree(rd), kt_dfree(dxd), kt_dfree(dx2d), kt_dfree(dgd), kt_dfree(dbd);
    kt_arr_free(&x), kt_arr_free(&gamma), kt_arr_free(&beta), kt_arr_free(&g),
        kt_arr_free(&base_x), kt_arr_free(&base_g), kt_arr_free(&base_b);
}

static void test_gn_affine(void) { check_gn((kd_shape){1, 6, 5, 3}, 3, 0, 1, 1); }
static void test_gn_relu_batch3(void) { check_gn((kd_shape){3, 4, 3, 5}, 2, 1, 1, 2); }
static void test_gn_no_affine(void) { check_gn((kd_shape){2, 4, 3, 3}, 4, 0, 0, 3); }
static void test_gn_one_group_relu(void) { check_gn((kd_shape){1, 5, 7, 1}, 1, 1, 1, 4); }
static void test_gn_instance_like(void) { check_gn((kd_shape){2, 3, 2, 3}, 3, 0, 1, 5); }

static void test_gn_large_mean(void)
{
    /* a group with mean 1000 and spread 1: the shifted sums keep the variance exact */
    kd_shape s = {1, 2, 16, 16};
    size_t n = kd_shape_elems(s);
    kt_seed(42);
    kt_arr x = kt_rand(n, 999, 1001);
    gn_ctx c = {s, 1, 0, 0, 1e-5, x.d, NULL, NULL};
    float *xd = kt_dev(x.f, n), *yd = kt_dev_fill(n, 0.f), *md = kt_dev_fill(1, 0.f),
          *rd = kt_dev_fill(1, 0.f);
    kt_b->group_norm_fwd(kt_b, s, 1, 1e-5f, 0, xd, NULL, NULL, yd, md, rd);
    float *y = kt_host(yd, n);
    double *yr = kt_ref_out(gn_ref, &c, n);
    KT_EXPECT_CLOSE("gn y (mean 1000)", y, yr, n, 1e-3, 1e-3);
    free(y), free(yr);
    kt_dfree(xd), kt_dfree(yd), kt_dfree(md), kt_dfree(rd);
    kt_arr_free(&x);
}

/* Forwards in place (y == x), as the frozen teacher's towers run them: same values. */
static void test_in_place(void)
{
    kd_shape s = {2, 8, 7, 5};
    size_t n = kd_shape_elems(s);
    kt_seed(77);
    kt_arr x = kt_rand(n, -2, 2), p = kt_rand(8, 0.5, 1.5);
    float *xd = kt_dev(x.f, n), *yd = kt_dev_fill(n, 0), *pd = kt_dev(p.f, 8), *m = kt_dev_fill(8, 0),
          *r = kt_dev_fill(8, 0);
    kt_b->group_norm_fwd(kt_b, s, 4, 1e-5f, 1, xd, pd, pd, yd, m, r);
    kt_b->group_norm_fwd(kt_b, s, 4, 1e-5f, 1, xd, pd, pd, xd, m, r);
    float *y = kt_host(yd, n), *y2 = kt_host(xd, n);
    KD_EXPECT(memcmp(y, y2, n * sizeof *y) == 0);
    free(y), free(y2);
    kt_b->copy_from_host(kt_b, xd, x.f, n * sizeof(float));
    kt_b->batch_norm_inf_fwd(kt_b, s, 1e-5f, 1, xd, pd, pd, pd, pd, yd);
    kt_b->batch_norm_inf_fwd(kt_b, s, 1e-5f, 1, xd, pd, pd, pd, pd, xd);
    y = kt_host(yd, n), y2 = kt_host(xd, n);
    KD_EXPECT(memcmp(y, y2, n * sizeof *y) == 0);
    free(y), free(y2);
    kt_dfree(xd), kt_dfree(yd), kt_dfree(pd), kt_dfree(m), kt_dfree(r);
    kt_arr_free(&x), kt_arr_free(&p);
}

static void test_gn_zero_size(void)
{
    check_gn((kd_shape){0, 4, 3, 3}, 2, 1, 1, 6);
    check_gn((kd_shape){2, 4, 0, 3}, 2, 0, 1, 7);
}

typedef struct bn_ctx {
    kd_shape s;
    int relu;
    double eps;
    double *x, *rm, *rv, *gamma, *beta;
} bn_ctx;

static void bn_ref_pre(const bn_ctx *c, double *y)
{
    const size_t hw = (size_t)c->s.h * c->s.w;
    for (int n = 0; n < c->s.n; n++)
        for (int ch = 0; ch < c->s.c; ch++)
            for (size_t i = 0; i < hw; i++) {
                size_t o = ((size_t)n * c->s.c + ch) * hw + i;
                y[o] = (c->x[o] - c->rm[ch]) / sqrt(c->rv[ch] + c->eps) * c->gamma[ch] + c->beta[ch];
            }
}

static void bn_ref(void *vc, double *y)
{
    bn_ctx *c = vc;
    bn_ref_pre(c, y);
    if (c->relu)
        for (size_t i = 0; i < kd_shape_elems(c->s); i++) y[i] = y[i] > 0 ? y[i] : 0;
}

static void check_bn(kd_shape s, int relu, uint64_t seed)
{
    const size_t n = kd_shape_elems(s), nc = (size_t)s.c;
    kt_arr x, rm, rv, gamma, beta;
    bn_ctx c = {s, relu, 1e-5, 0, 0, 0, 0, 0};
    double *pre = calloc(n + 1, sizeof *pre);
    for (uint64_t attempt = 0;; attempt++) {
        kt_seed(seed * 1000 + attempt);
        x = kt_rand(n, -2, 2), rm = kt_rand(nc, -0.5, 0.5), rv = kt_rand(nc, 0.2, 2),
        gamma = kt_rand(nc, -1.5, 1.5), beta = kt_rand(nc, -0.5, 0.5);
        c.x = x.d, c.rm = rm.d, c.rv = rv.d, c.gamma = gamma.d, c.beta = beta.d;
        bn_ref_pre(&c, pre);
        if (!relu || !near_kink(pre, n) || attempt > 50) break;
        kt_arr_free(&x), kt_arr_free(&rm), kt_arr_free(&rv), kt_arr_free(&gamma), kt_arr_free(&beta);
    }
    kt_arr g = kt_rand(n, -1, 1), base_g = kt_rand(nc, -1, 1), base_b = kt_rand(nc, -1, 1),
           base_x = kt_rand(n, -1, 1);
    float *xd = kt_dev(x.f, n), *rmd = kt_dev(rm.f, nc), *rvd = kt_dev(rv.f, nc),
          *gad = kt_dev(gamma.f, nc), *bed = kt_dev(beta.f, nc), *gd = kt_dev(g.f, n),
          *yd = kt_dev_fill(n, 3.f);
    kt_b->batch_norm_inf_fwd(kt_b, s, 1e-5f, relu, xd, rmd, rvd, gad, bed, yd);
    float *y = kt_host(yd, n);
    double *yr = kt_ref_out(bn_ref, &c, n);
    KT_EXPECT_CLOSE("bn y", y, yr, n, 1e-4, 1e-4);
    float *dxd = kt_dev_fill(n, 4.f), *dx2d = kt_dev(base_x.f, n), *dgd = kt_dev(base_g.f, nc),
          *dbd = kt_dev(base_b.f, nc);
    kt_b->batch_norm_inf_bwd(kt_b, s, 1e-5f, relu, xd, yd, gd, rmd, rvd, gad, dxd, 0, dgd, dbd);
    float *dx = kt_host(dxd, n), *dga = kt_host(dgd, nc), *dbe = kt_host(dbd, nc);
    kt_check_grad("bn dx", bn_ref, &c, x.d, n, g.d, n, dx, 1e-4, 1e-3);
    double *fd = calloc(nc + 1, sizeof *fd);
    kt_fd_grad(bn_ref, &c, gamma.d, nc, g.d, n, fd);
    for (size_t i = 0; i < nc; i++) fd[i] += base_g.f[i];
    KT_EXPECT_CLOSE("bn dgamma (+=)", dga, fd, nc, 1e-4, 1e-3);
    kt_fd_grad(bn_ref, &c, beta.d, nc, g.d, n, fd);
    for (size_t i = 0; i < nc; i++) fd[i] += base_b.f[i];
    KT_EXPECT_CLOSE("bn dbeta (+=)", dbe, fd, nc, 1e-4, 1e-3);
    kt_b->batch_norm_inf_bwd(kt_b, s, 1e-5f, relu, xd, yd, gd, rmd, rvd, gad, dx2d, 1, NULL, NULL);
    float *dx2 = kt_host(dx2d, n);
    kt_check_accum("bn dx accumulate", dx2, base_x.f, dx, n);
    free(fd), free(pre), free(y), free(yr), free(dx), free(dx2), free(dga), free(dbe);
    kt_dfree(xd), kt_dfree(rmd), kt_dfree(rvd), kt_dfree(gad), kt_dfree(bed), kt_dfree(gd),
        kt_dfree(yd), kt_dfree(dxd), kt_dfree(dx2d), kt_dfree(dgd), kt_dfree(dbd);
    kt_arr_free(&x), kt_arr_free(&rm), kt_arr_free(&rv), kt_arr_free(&gamma),
        kt_arr_free(&beta), kt_arr_free(&g), kt_arr_free(&base_g), kt_arr_free(&base_b),
        kt_arr_free(&base_x);
}

static void test_bn_plain(void) { check_bn((kd_shape){1, 3, 5, 7}, 0, 11); }
static void test_bn_relu_batch3(void) { check_bn((kd_shape){3, 4, 3, 3}, 1, 12); }
static void test_bn_zero_size(void) { check_bn((kd_shape){0, 4, 3, 3}, 1, 13); }

int main(void)
{
    kt_open();
    KD_TEST_RUN(test_gn_affine);
    KD_TEST_RUN(test_gn_relu_batch3);
    KD_TEST_RUN(test_gn_no_affine);
    KD_TEST_RUN(test_gn_one_group_relu);
    KD_TEST_RUN(test_gn_instance_like);
    KD_TEST_RUN(test_gn_large_mean);
    KD_TEST_RUN(test_gn_zero_size);
    KD_TEST_RUN(test_in_place);
    KD_TEST_RUN(test_bn_plain);
    KD_TEST_RUN(test_bn_relu_batch3);
    KD_TEST_RUN(test_bn_zero_size);
    kt_b->close(kt_b);
    return kd_test_summary();
}
