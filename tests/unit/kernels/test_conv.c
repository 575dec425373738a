/* test_conv.c — 2-D convolution (oneDNN) against a double-precision direct convolution:
 * forward values, backward to the input / weight / bias against central finite differences
 * of the double reference, overwrite vs accumulate semantics, NULL parameter gradients,
 * zero-size cases, and that the primitive cache creates nothing on a known shape.
 * Tolerances: forward |err| <= 1e-4 + 1e-4*|ref| (float sums of <= 150 terms of size < 1);
 * gradients |err| <= 1e-4 + 1e-3*|fd|.
 */
#include "kt.h"
#include "kernels/cpu/cpu_internal.h"

typedef struct conv_ctx {
    kd_conv_desc d;
    double *x, *w, *bias;
} conv_ctx;

static void conv_ref(void *vc, double *y)
{
    conv_ctx *c = vc;
    const kd_conv_desc *d = &c->d;
    kd_shape ys = kd_conv_out_shape(d);
    for (int n = 0; n < ys.n; n++)
        for (int o = 0; o < ys.c; o++)
            for (int oh = 0; oh < ys.h; oh++)
                for (int ow = 0; ow < ys.w; ow++) {
                    double s = d->has_bias ? c->bias[o] : 0.0;
                    for (int i = 0; i < d->x.c; i++)
                        for (int kh = 0; kh < d->kh; kh++)
                            for (int kw = 0; kw < d->kw; kw++) {
                                int h = oh * d->stride_h - d->pad_h + kh;
                                int w = ow * d->stride_w - d->pad_w + kw;
                                if (h < 0 || h >= d->x.h || w < 0 || w >= d->x.w) continue;
                                s += c->x[(((size_t)n * d->x.c + i) * d->x.h + h) * d->x.w + w] *
                                     c->w[(((size_t)o * d->x.c + i) * d->kh + kh) * d->kw + kw];
                            }
                    y[(((size_t)n * ys.c + o) * ys.h + oh) * ys.w + ow] = s;
                }
}

static kd_conv_desc desc(int n, int c, int h, int w, int co, int kh, int kw, int sh, int sw,
                         int ph, int pw, int bias)
{
    kd_conv_desc d = {{n, c, h, w}, co, kh, kw, sh, sw, ph, pw, bias};
    return d;
}

static void check_conv(kd_conv_desc d, uint64_t seed)
{
    kt_seed(seed);
    kd_shape ys = kd_conv_out_shape(&d);
    size_t xn = kd_shape_elems(d.x), wn = (size_t)d.c_out * d.x.c * d.kh * d.kw,
           yn = kd_shape_elems(ys), bn = (size_t)d.c_out;
    kt_arr x = kt_rand(xn, -1, 1), w = kt_rand(wn, -0.5, 0.5), bias = kt_rand(bn, -0.5, 0.5),
           g = kt_rand(yn, -1, 1), base_x = kt_rand(xn, -1, 1), base_w = kt_rand(wn, -1, 1),
           base_b = kt_rand(bn, -1, 1);
    conv_ctx c = {d, x.d, w.d, bias.d};
    float *xd = kt_dev(x.f, xn), *wd = kt_dev(w.f, wn), *bd = kt_dev(bias.f, bn),
          *gd = kt_dev(g.f, yn), *yd = kt_dev_fill(yn, 123.0f);

    /* forward */
    kt_b->conv_fwd(kt_b, &d, xd, wd, d.has_bias ? bd : NULL, yd);
    float *y = kt_host(yd, yn);
    double *yr = kt_ref_out(conv_ref, &c, yn);
    KT_EXPECT_CLOSE("conv y", y, yr, yn, 1e-4, 1e-4);

    /* backward to the input: overwrite (dx starts as garbage), then accumulate */
    float *dxd = kt_dev_fill(xn, -77.0f);
    kt_b->conv_bwd_data(kt_b, &d, gd, wd, dxd, 0);
    float *dx = kt_host(dxd, xn);
    kt_check_grad("conv dx", conv_ref, &c, x.d, xn, g.d, yn, dx, 1e-4, 1e-3);
    float *dx2d = kt_dev(base_x.f, xn);
    kt_b->conv_bwd_data(kt_b, &d, gd, wd, dx2d, 1);
    float *dx2 = kt_host(dx2d, xn);
    kt_check_accum("conv dx accumulate", dx2, base_x.f, dx, xn);

    /* backward to weight and bias: both accumulate onto random starting values */
    float *dwd = kt_dev(base_w.f, wn), *dbd = kt_dev(base_b.f, bn);
    kt_b->conv_bwd_weight(kt_b, &d, xd, gd, dwd, d.has_bias ? dbd : NULL);
    float *dw = kt_host(dwd, wn), *db = kt_host(dbd, bn);
    double *fdw = calloc(wn + 1, sizeof *fdw), *fdb = calloc(bn + 1, sizeof *fdb);
    kt_fd_grad(conv_ref, &c, w.d, wn, g.d, yn, fdw);
    for (size_t i = 0; i < wn; i++) fdw[i] += base_w.f[i];
    KT_EXPECT_CLOSE("conv dw (+=)", dw, fdw, wn, 1e-4, 1e-3);
    if (d.has_bias) {
        kt_fd_grad(conv_ref, &c, bias.d, bn, g.d, yn, fdb);
        for (size_t i = 0; i < bn; i++) fdb[i] += base_b.f[i];
        KT_EXPECT_CLOSE("conv dbias (+=)", db, fdb, bn, 1e-4, 1e-3);

        /* dw NULL: only the bias moves (by the same amount again) */
        kt_b->conv_bwd_weight(kt_b, &d, xd, gd, NULL, dbd);
        float *db2 = kt_host(dbd, bn);
        float *delta = calloc(bn + 1, sizeof *delta);
        for (size_t i = 0; i < bn; i++) delta[i] = db[i] - base_b.f[i];
        kt_check_accum("conv dbias with dw NULL", db2, db, delta, bn);
        free(delta);
        free(db2);
    }
    /* dbias NULL: only the weights move */
    kt_b->conv_bwd_weight(kt_b, &d, xd, gd, dwd, NULL);
    float *dw2 = kt_host(dwd, wn);
    float *wdelta = calloc(wn + 1, sizeof *wdelta);
    for (size_t i = 0; i < wn; i++) wdelta[i] = dw[i] - base_w.f[i];
    kt_check_accum("conv dw with dbias NULL", dw2, dw, wdelta, wn);

    free(wdelta), free(dw2), free(fdw), free(fdb), free(dw), free(db), free(dx), free(dx2),
        free(y), free(yr);
    kt_dfree(xd), kt_dfree(wd), kt_dfree(bd), kt_dfree(gd), kt_dfree(yd), kt_dfree(dxd),
        kt_dfree(dx2d), kt_dfree(dwd), kt_dfree(dbd);
    kt_arr_free(&x), kt_arr_free(&w), kt_arr_free(&bias), kt_arr_free(&g),
        kt_arr_free(&base_x), kt_arr_free(&base_w), kt_arr_free(&base_b);
}

static void test_conv_3x3_same_bias(void) { check_conv(desc(1, 3, 7, 5, 4, 3, 3, 1, 1, 1, 1, 1), 1); }
static void test_conv_3x3_stride2_batch3(void) { check_conv(desc(3, 2, 8, 9, 3, 3, 3, 2, 2, 1, 1, 0), 2); }
/* 1x1 stride 2 on an even map: oneDNN's right padding is negative here */
static void test_conv_1x1_stride2(void) { check_conv(desc(2, 4, 6, 6, 3, 1, 1, 2, 2, 0, 0, 1), 3); }
static void test_conv_7x7_stem(void) { check_conv(desc(1, 3, 11, 13, 2, 7, 7, 2, 2, 3, 3, 1), 4); }
static void test_conv_odd_no_pad(void) { check_conv(desc(3, 5, 5, 4, 2, 3, 3, 1, 1, 0, 0, 1), 5); }
static void test_conv_rect_kernel(void) { check_conv(desc(1, 2, 5, 6, 3, 3, 1, 2, 1, 1, 0, 1), 6); }
static void test_conv_wide_channels(void) { check_conv(desc(2, 17, 5, 3, 19, 3, 3, 1, 1, 1, 1, 1), 7); }

static void test_conv_zero_size(void)
{
    check_conv(desc(0, 3, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1), 8);  /* empty batch */
    check_conv(desc(2, 0, 4, 3, 2, 3, 3, 1, 1, 1, 1, 1), 9);  /* no input channels: y = bias */
    check_conv(desc(1, 2, 1, 5, 2, 3, 3, 1, 1, 0, 1, 1), 10); /* kernel taller than the map */
    check_conv(desc(1, 2, 4, 4, 0, 3, 3, 1, 1, 1, 1, 0), 11); /* no output channels */
}

static void test_conv_cache_reuse(void)
{
    kd_conv_desc d = desc(2, 8, 9, 7, 8, 3, 3, 1, 1, 1, 1, 1);
    kd_shape ys = kd_conv_out_shape(&d);
    size_t xn = kd_shape_elems(d.x), yn = kd_shape_elems(ys), wn = 8 * 8 * 9;
    float *x = kt_dev_fill(xn, 0.5f), *w = kt_dev_fill(wn, 0.1f), *bias = kt_dev_fill(8, 0.f),
          *y = kt_dev_fill(yn, 0.f), *dx = kt_dev_fill(xn, 0.f), *dw = kt_dev_fill(wn, 0.f);
    kt_b->conv_fwd(kt_b, &d, x, w, bias, y);
    kt_b->conv_bwd_data(kt_b, &d, y, w, dx, 0);
    kt_b->conv_bwd_weight(kt_b, &d, x, y, dw, bias);
    size_t before = kd_cpu_conv_cache_entries(kt_b);
    for (int i = 0; i < 3; i++) {
        kt_b->conv_fwd(kt_b, &d, x, w, bias, y);
        kt_b->conv_bwd_data(kt_b, &d, y, w, dx, i & 1);
        kt_b->conv_bwd_weight(kt_b, &d, x, y, dw, NULL);
    }
    KD_EXPECT(kd_cpu_conv_cache_entries(kt_b) == before);
    d.has_bias = 0; /* a different key: exactly one new entry */
    kt_b->conv_fwd(kt_b, &d, x, w, NULL, y);
    KD_EXPECT(kd_cpu_conv_cache_entries(kt_b) == before + 1);
    kt_dfree(x), kt_dfree(w), kt_dfree(bias), kt_dfree(y), kt_dfree(dx), kt_dfree(dw);
}

/* A bounded cache: with room for 3 entries, 5 shapes evict the oldest, and a shape whose
 * primitives were dropped is rebuilt and still right. */
static void test_conv_cache_eviction(void)
{
    kd_cpu_conv_cache_set_capacity(kt_b, 3);
    for (int i = 0; i < 5; i++) check_conv(desc(1, 2, 4 + i, 5, 2, 3, 3, 1, 1, 1, 1, 1), 40 + (uint64_t)i);
    KD_EXPECT(kd_cpu_conv_cache_entries(kt_b) == 3);
    check_conv(desc(1, 2, 4, 5, 2, 3, 3, 1, 1, 1, 1, 1), 40);
    KD_EXPECT(kd_cpu_conv_cache_entries(kt_b) == 3);
    kd_cpu_conv_cache_set_capacity(kt_b, KD_CPU_CONV_CACHE_ENTRIES);
}

/* Same inputs, same thread count: bit-identical results (DESIGN.md §7). */
static void test_conv_deterministic(void)
{
    kd_conv_desc d = desc(2, 16, 13, 11, 16, 3, 3, 2, 2, 1, 1, 1);
    kd_shape ys = kd_conv_out_shape(&d);
    size_t xn = kd_shape_elems(d.x), yn = kd_shape_elems(ys), wn = 16 * 16 * 9;
    kt_seed(99);
    kt_arr x = kt_rand(xn, -1, 1), w = kt_rand(wn, -1, 1), g = kt_rand(yn, -1, 1);
    float *xd = kt_dev(x.f, xn), *wd = kt_dev(w.f, wn), *gd = kt_dev(g.f, yn), *bd = kt_dev_fill(16, 0.1f);
    float *out[2][4];
    for (int r = 0; r < 2; r++) {
        float *y = kt_dev_fill(yn, 0), *dx = kt_dev_fill(xn, 0), *dw = kt_dev_fill(wn, 0),
              *db = kt_dev_fill(16, 0);
        kt_b->conv_fwd(kt_b, &d, xd, wd, bd, y);
        kt_b->conv_bwd_data(kt_b, &d, gd, wd, dx, 0);
        kt_b->conv_bwd_weight(kt_b, &d, xd, gd, dw, db);
        out[r][0] = kt_host(y, yn), out[r][1] = kt_host(dx, xn), out[r][2] = kt_host(dw, wn),
        out[r][3] = kt_host(db, 16);
        kt_dfree(y), kt_dfree(dx), kt_dfree(dw), kt_dfree(db);
    }
    size_t len[4] = {yn, xn, wn, 16};
    for (int k = 0; k < 4; k++) {
        KD_EXPECT(memcmp(out[0][k], out[1][k], len[k] * sizeof(float)) == 0);
        free(out[0][k]), free(out[1][k]);
    }
    kt_dfree(xd), kt_dfree(wd), kt_dfree(gd), kt_dfree(bd);
    kt_arr_free(&x), kt_arr_free(&w), kt_arr_free(&g);
}

int main(void)
{
    kt_open();
    KD_TEST_RUN(test_conv_3x3_same_bias);
    KD_TEST_RUN(test_conv_3x3_stride2_batch3);
    KD_TEST_RUN(test_conv_1x1_stride2);
    KD_TEST_RUN(test_conv_7x7_stem);
    KD_TEST_RUN(test_conv_odd_no_pad);
    KD_TEST_RUN(test_conv_rect_kernel);
    KD_TEST_RUN(test_conv_wide_channels);
    KD_TEST_RUN(test_conv_zero_size);
    KD_TEST_RUN(test_conv_cache_reuse);
    KD_TEST_RUN(test_conv_deterministic);
    KD_TEST_RUN(test_conv_cache_eviction);
    kt_b->close(kt_b);
    return kd_test_summary();
}
