/* test_align.c — CrossKD align_scale and per-channel statistics against double-precision
 * references (reference/crosskd.md §4.2: unbiased std, eps 1e-6 on the std, statistics over
 * N*H*W): forward values, the saved student statistics, the backward through the
 * statistics against central finite differences, and the documented edge cases (a single
 * value per channel, a constant channel, an empty batch).
 * Tolerances: statistics and forward 1e-5 + 1e-4*|ref|; dx 2e-4 + 1e-3*|fd|.
 */
#include "kt.h"

typedef struct al_ctx {
    kd_shape s;
    double *x, *mt, *st;
} al_ctx;

static void stats_ref(kd_shape s, const double *x, double *mean, double *std)
{
    const size_t hw = (size_t)s.h * s.w, cnt = (size_t)s.n * hw;
    for (int c = 0; c < s.c; c++) {
        double mu = 0.0, ss = 0.0;
        for (int n = 0; n < s.n; n++)
            for (size_t i = 0; i < hw; i++) mu += x[((size_t)n * s.c + c) * hw + i];
        mu = cnt ? mu / (double)cnt : 0.0;
        for (int n = 0; n < s.n; n++)
            for (size_t i = 0; i < hw; i++) {
                double v = x[((size_t)n * s.c + c) * hw + i] - mu;
                ss += v * v;
            }
        mean[c] = mu;
        std[c] = cnt >= 2 ? sqrt(ss / (double)(cnt - 1)) : 0.0;
    }
}

static void align_ref(void *vc, double *y)
{
    al_ctx *a = vc;
    const kd_shape s = a->s;
    const size_t hw = (size_t)s.h * s.w;
    double *mean = calloc((size_t)s.c + 1, sizeof *mean), *std = calloc((size_t)s.c + 1, sizeof *std);
    stats_ref(s, a->x, mean, std);
    for (int n = 0; n < s.n; n++)
        for (int c = 0; c < s.c; c++)
            for (size_t i = 0; i < hw; i++) {
                size_t o = ((size_t)n * s.c + c) * hw + i;
                y[o] = (a->x[o] - mean[c]) / (std[c] + 1e-6) * a->st[c] + a->mt[c];
            }
    free(mean), free(std);
}

static void check_align(kd_shape s, uint64_t seed, int fd)
{
    kt_seed(seed);
    const size_t n = kd_shape_elems(s), nc = (size_t)s.c;
    kt_arr x = kt_rand(n, -1, 2), mt = kt_rand(nc, -0.5, 0.5), st = kt_rand(nc, 0.5, 2),
           g = kt_rand(n, -1, 1), base = kt_rand(n, -1, 1);
    al_ctx a = {s, x.d, mt.d, st.d};
    float *xd = kt_dev(x.f, n), *mtd = kt_dev(mt.f, nc), *std_ = kt_dev(st.f, nc),
          *gd = kt_dev(g.f, n), *yd = kt_dev_fill(n, 1.f), *msd = kt_dev_fill(nc, 0.f),
          *ssd = kt_dev_fill(nc, 0.f), *m2d = kt_dev_fill(nc, 0.f), *s2d = kt_dev_fill(nc, 0.f);

    /* statistics (teacher side) and the saved student statistics agree with the reference */
    double *mr = calloc(nc + 1, sizeof *mr), *sr = calloc(nc + 1, sizeof *sr);
    stats_ref(s, x.d, mr, sr);
    kt_b->channel_stats(kt_b, s, xd, m2d, s2d);
    float *m2 = kt_host(m2d, nc), *s2 = kt_host(s2d, nc);
    KT_EXPECT_CLOSE("channel mean", m2, mr, nc, 1e-5, 1e-4);
    KT_EXPECT_CLOSE("channel std (unbiased)", s2, sr, nc, 1e-5, 1e-4);

    kt_b->align_scale_fwd(kt_b, s, xd, mtd, std_, yd, msd, ssd);
    float *y = kt_host(yd, n), *ms = kt_host(msd, nc), *ss = kt_host(ssd, nc);
    double *yr = kt_ref_out(align_ref, &a, n);
    KT_EXPECT_CLOSE("align y", y, yr, n, 1e-4, 1e-4);
    KT_EXPECT_CLOSE("align saved mean", ms, mr, nc, 1e-5, 1e-4);
    KT_EXPECT_CLOSE("align saved std", ss, sr, nc, 1e-5, 1e-4);

    float *dxd = kt_dev_fill(n, 8.f), *dx2d = kt_dev(base.f, n);
    kt_b->align_scale_bwd(kt_b, s, xd, msd, ssd, std_, gd, dxd, 0);
    float *dx = kt_host(dxd, n);
    if (fd) kt_check_grad("align dx", align_ref, &a, x.d, n, g.d, n, dx, 2e-4, 1e-3);
    kt_b->align_scale_bwd(kt_b, s, xd, msd, ssd, std_, gd, dx2d, 1);
    float *dx2 = kt_host(dx2d, n);
    kt_check_accum("align dx accumulate", dx2, base.f, dx, n);
    for (size_t i = 0; i < n; i++) KD_EXPECT(isfinite(dx[i]));

    free(mr), free(sr), free(m2), free(s2), free(y), free(ms), free(ss), free(yr), free(dx), free(dx2);
    kt_dfree(xd), kt_dfree(mtd), kt_dfree(std_), kt_dfree(gd), kt_dfree(yd), kt_dfree(msd),
        kt_dfree(ssd), kt_dfree(m2d), kt_dfree(s2d), kt_dfree(dxd), kt_dfree(dx2d);
    kt_arr_free(&x), kt_arr_free(&mt), kt_arr_free(&st), kt_arr_free(&g), kt_arr_free(&base);
}

static void test_align_batch1(void) { check_align((kd_shape){1, 3, 5, 7}, 1, 1); }
static void test_align_batch3_odd(void) { check_align((kd_shape){3, 4, 3, 5}, 2, 1); }
static void test_align_1x1_maps(void) { check_align((kd_shape){3, 5, 1, 1}, 3, 1); }
/* one value per channel: std 0 by definition, y = mean_t, dx = 0 (FD of the reference too) */
static void test_align_single_value(void) { check_align((kd_shape){1, 4, 1, 1}, 4, 1); }
static void test_align_empty(void) { check_align((kd_shape){0, 4, 3, 3}, 5, 1); }

static void test_align_constant_channel(void)
{
    kd_shape s = {2, 2, 3, 3};
    size_t n = kd_shape_elems(s);
    float *x = calloc(n, sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (i / 9) % 2 ? 0.25f : (float)i * 0.1f; /* channel 1 constant */
    float mt[2] = {0.5f, -0.5f}, st[2] = {1.5f, 2.0f};
    float *xd = kt_dev(x, n), *mtd = kt_dev(mt, 2), *std_ = kt_dev(st, 2), *yd = kt_dev_fill(n, 0.f),
          *msd = kt_dev_fill(2, 0.f), *ssd = kt_dev_fill(2, 0.f), *gd = kt_dev_fill(n, 1.f),
          *dxd = kt_dev_fill(n, 0.f);
    kt_b->align_scale_fwd(kt_b, s, xd, mtd, std_, yd, msd, ssd);
    kt_b->align_scale_bwd(kt_b, s, xd, msd, ssd, std_, gd, dxd, 0);
    float *y = kt_host(yd, n), *ss = kt_host(ssd, 2), *dx = kt_host(dxd, n);
    KD_EXPECT(ss[1] == 0.0f);
    for (size_t i = 0; i < n; i++) {
        KD_EXPECT(isfinite(y[i]) && isfinite(dx[i]));
        if ((i / 9) % 2) KD_EXPECT_NEAR(y[i], -0.5, 1e-6, 0);
    }
    free(x), free(y), free(ss), free(dx);
    kt_dfree(xd), kt_dfree(mtd), kt_dfree(std_), kt_dfree(yd), kt_dfree(msd), kt_dfree(ssd),
        kt_dfree(gd), kt_dfree(dxd);
}

int main(void)
{
    kt_open();
    KD_TEST_RUN(test_align_batch1);
    KD_TEST_RUN(test_align_batch3_odd);
    KD_TEST_RUN(test_align_1x1_maps);
    KD_TEST_RUN(test_align_single_value);
    KD_TEST_RUN(test_align_empty);
    KD_TEST_RUN(test_align_constant_channel);
    kt_b->close(kt_b);
    return kd_test_summary();
}
