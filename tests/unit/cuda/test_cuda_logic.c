/* test_cuda_logic.c — the CUDA backend's GPU code that the C compiler can build, run on the
 * host against the CPU backend, on every machine with a CUDA build (no GPU needed):
 *  - the max-pool and upsample kernels' per-thread bodies (kernels/cuda/pool_math.h), every
 *    thread of the grid, bit for bit against the CPU's scatter loops (same additions in the
 *    same order);
 *  - the reduction kernels' bodies (kernels/cuda/reduce_math.h), block by block and thread
 *    by thread (KD_CU_THREADS threads) exactly as reduce.cu calls them, the block sum done
 *    serially: GroupNorm, BatchNorm, channel statistics, align_scale, conv dbias, against
 *    the CPU backend with the tolerances of test_cuda_backend.c;
 *  - the row- to column-major GEMM mapping of the cuBLAS call (kernels/cuda/gemm_map.h)
 *    through a column-major cblas_sgemm, against the CPU backend's row-major GEMM;
 *  - the loss scaler of fp16 math (kernels/cuda/loss_scale.h): GradScaler's rule.
 * The CPU backend's "device" memory is host memory, so it runs on plain host arrays here.
 * What stays unchecked without a GPU: the launch code, cuDNN, cuBLAS and NCCL themselves.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "kd_test.h"
#include "kernels/backend.h"
#include "kernels/cuda/cu_kernels.h"
#include "kernels/cuda/gemm_map.h"
#include "kernels/cuda/loss_scale.h"
#include "kernels/cuda/pool_math.h"
#include "kernels/cuda/reduce_math.h"

static const kd_backend *CPU;

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static void seed(uint64_t s) { rng = s * 0x9E3779B97F4A7C15ull + 1; }
static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}

/* The CUDA kernels' per-thread bodies, run on the host for every thread of the grid. */
static void emulate_pool(kd_shape s, int k, int stride, int pad, uint64_t sd)
{
    seed(sd);
    kd_shape ys = kd_pool_out_shape(s, k, stride, pad);
    size_t n = kd_shape_elems(s), yn = kd_shape_elems(ys), planes = (size_t)s.n * s.c;
    size_t in_plane = (size_t)s.h * s.w, out_plane = (size_t)ys.h * ys.w;
    float *x = calloc(n + 1, sizeof *x), *g = calloc(yn + 1, sizeof *g);
    float *y_ref = calloc(yn + 1, sizeof *y_ref), *y_emu = calloc(yn + 1, sizeof *y_emu);
    float *dx_ref = calloc(n + 1, sizeof *dx_ref), *dx_emu = calloc(n + 1, sizeof *dx_emu);
    int32_t *a_ref = calloc(yn + 1, sizeof *a_ref), *a_emu = calloc(yn + 1, sizeof *a_emu);
    for (size_t i = 0; i < n; i++) x[i] = (i % 89 == 3) ? NAN : (float)floor(8 * urand()) / 4;
    for (size_t i = 0; i < yn; i++) g[i] = (float)(urand() - 0.5);
    for (size_t i = 0; i < n; i++) dx_ref[i] = dx_emu[i] = (float)urand();
    CPU->max_pool_fwd(CPU, s, k, stride, pad, x, y_ref, a_ref); /* CPU memory is host memory */
    CPU->max_pool_bwd(CPU, s, k, stride, pad, a_ref, g, dx_ref, 1);
    for (size_t i = 0; i < yn; i++) {
        size_t p = i / out_plane, r = i % out_plane;
        kd_max_pool_one(x + p * in_plane, s.h, s.w, (int)(r / (size_t)ys.w), (int)(r % (size_t)ys.w),
                        k, stride, pad, &y_emu[i], &a_emu[i]);
    }
    for (size_t i = 0; i < planes * in_plane; i++) {
        size_t p = i / in_plane;
        dx_emu[i] = kd_max_pool_bwd_one(a_emu + p * out_plane, g + p * out_plane, s.w, ys.h, ys.w,
                                        k, stride, pad, (int)(i % in_plane), dx_emu[i]);
    }
    KD_EXPECT_MSG(memcmp(y_ref, y_emu, yn * sizeof *y_ref) == 0 &&
                      memcmp(a_ref, a_emu, yn * sizeof *a_ref) == 0,
                  "max-pool forward %dx%dx%dx%d k%d s%d p%d", s.n, s.c, s.h, s.w, k, stride, pad);
    KD_EXPECT_MSG(memcmp(dx_ref, dx_emu, n * sizeof *dx_ref) == 0,
                  "max-pool backward %dx%dx%dx%d k%d s%d p%d", s.n, s.c, s.h, s.w, k, stride, pad);
    free(x), free(g), free(y_ref), free(y_emu), free(dx_ref), free(dx_emu), free(a_ref), free(a_emu);
}

static void emulate_upsample(kd_shape ts, int oh, int ow, uint64_t sd)
{
    seed(sd);
    size_t tn = kd_shape_elems(ts), yn = (size_t)ts.n * ts.c * oh * ow;
    size_t in_plane = (size_t)ts.h * ts.w, out_plane = (size_t)oh * ow;
    float *g = calloc(yn + 1, sizeof *g), *ref = calloc(tn + 1, sizeof *ref),
          *emu = calloc(tn + 1, sizeof *emu);
    for (size_t i = 0; i < yn; i++) g[i] = (float)(urand() - 0.5);
    for (size_t i = 0; i < tn; i++) ref[i] = emu[i] = (float)urand();
    CPU->upsample_nearest_add_bwd(CPU, ts, oh, ow, g, ref, 1);
    for (size_t i = 0; i < tn; i++) {
        size_t p = i / in_plane, r = i % in_plane;
        emu[i] = kd_upsample_bwd_one(g + p * out_plane, ts.h, ts.w, oh, ow, (int)(r / (size_t)ts.w),
                                     (int)(r % (size_t)ts.w), emu[i]);
    }
    KD_EXPECT_MSG(memcmp(ref, emu, tn * sizeof *ref) == 0, "upsample backward %dx%d -> %dx%d",
                  ts.h, ts.w, oh, ow);
    free(g), free(ref), free(emu);
}

/* ---- host emulation of the reduction kernels (reduce.cu's skeletons) -------------------- */

#define NTH KD_CU_THREADS

static float *hrand(size_t n, double lo, double hi)
{
    float *h = calloc(n + 1, sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = (float)(lo + (hi - lo) * urand());
    return h;
}

static float *hcopy(const float *a, size_t n)
{
    float *h = calloc(n + 1, sizeof *h);
    if (n) memcpy(h, a, n * sizeof *h);
    return h;
}

static void host_close(const char *what, const float *got, const float *want, size_t n,
                       double atol, double rtol)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)want[i]);
        if (!(e <= atol + rtol * fabs((double)want[i]))) {
            if (bad < 3)
                fprintf(stderr, "  %s[%zu]: emulated %.9g, cpu %.9g\n", what, i, (double)got[i],
                        (double)want[i]);
            bad++;
        }
    }
    KD_EXPECT_MSG(bad == 0, "%s: %zu of %zu differ", what, bad, n);
}

static void emu_gn(kd_shape s, int groups, int relu, int affine, uint64_t sd)
{
    seed(sd);
    const float eps = 1e-5f;
    const size_t hw = (size_t)s.h * s.w, n = kd_shape_elems(s), nc = (size_t)s.n * s.c;
    const int tasks = s.n * groups;
    float *x = hrand(n, -2, 3), *gam = hrand((size_t)s.c, 0.5, 1.5), *bet = hrand((size_t)s.c, -0.5, 0.5);
    float *g = hrand(n, -1, 1), *dx0 = hrand(n, -1, 1), *dg0 = hrand((size_t)s.c, -1, 1),
          *db0 = hrand((size_t)s.c, -1, 1);
    float *y_r = calloc(n + 1, 4), *m_r = calloc((size_t)tasks + 1, 4), *r_r = calloc((size_t)tasks + 1, 4);
    float *y_e = calloc(n + 1, 4), *m_e = calloc((size_t)tasks + 1, 4), *r_e = calloc((size_t)tasks + 1, 4);
    const float *gp = affine ? gam : NULL, *bp = affine ? bet : NULL;
    CPU->group_norm_fwd(CPU, s, groups, eps, relu, x, gp, bp, y_r, m_r, r_r);
    for (int t = 0; t < tasks; t++) { /* k_gn_fwd, block t */
        double s1 = 0, s2 = 0;
        for (int tid = 0; tid < NTH; tid++) {
            double a1, a2;
            kd_gn_fwd_partial(s.c, hw, groups, x, t, tid, NTH, &a1, &a2);
            s1 += a1, s2 += a2;
        }
        kd_gn_fwd_stats(s.c, hw, groups, x, t, s1, s2, eps, &m_e[t], &r_e[t]);
        for (int tid = 0; tid < NTH; tid++)
            kd_gn_fwd_apply(s.c, hw, groups, relu, x, gp, bp, t, tid, NTH, m_e[t], r_e[t], y_e);
    }
    host_close("emulated gn y", y_e, y_r, n, 2e-4, 1e-3);
    host_close("emulated gn mean", m_e, m_r, (size_t)tasks, 1e-5, 1e-5);
    host_close("emulated gn rstd", r_e, r_r, (size_t)tasks, 1e-5, 1e-4);

    float *dx_r = hcopy(dx0, n), *dg_r = hcopy(dg0, (size_t)s.c), *db_r = hcopy(db0, (size_t)s.c);
    float *dx_e = hcopy(dx0, n), *dg_e = hcopy(dg0, (size_t)s.c), *db_e = hcopy(db0, (size_t)s.c);
    CPU->group_norm_bwd(CPU, s, groups, relu, x, y_r, g, gp, m_r, r_r, dx_r, 1, dg_r, db_r);
    if (tasks > 0 && s.c > 0 && hw > 0) { /* kd_cu_group_norm_bwd */
        double *sdy = calloc(2 * nc + 1, sizeof *sdy), *sdyxh = sdy + nc;
        float *cb = calloc((size_t)tasks + 1, 4), *cc = calloc((size_t)tasks + 1, 4);
        for (size_t p = 0; p < nc; p++) { /* k_gn_bwd_chan */
            double a1 = 0, a2 = 0;
            for (int tid = 0; tid < NTH; tid++) {
                double b1, b2;
                kd_gn_bwd_chan_partial(s.c, hw, groups, relu, x, y_r, g, m_r, (int)p, tid, NTH,
                                       &b1, &b2);
                a1 += b1, a2 += b2;
            }
            kd_gn_bwd_chan_finish(s.c, groups, r_r, (int)p, a1, a2, sdy, sdyxh);
        }
        for (int t = 0; t < tasks; t++)
            kd_gn_bwd_coef_one(s.c, hw, groups, gp, m_r, r_r, sdy, sdyxh, t, cb, cc);
        for (size_t i = 0; i < n; i++)
            dx_e[i] += kd_gn_bwd_dx_one(s.c, hw, groups, relu, x, y_r, g, gp, r_r, cb, cc, i);
        for (int ch = 0; ch < s.c; ch++) kd_gn_bwd_param_one(s.n, s.c, sdy, sdyxh, ch, dg_e, db_e);
        free(sdy), free(cb), free(cc);
    }
    host_close("emulated gn dx", dx_e, dx_r, n, 2e-4, 1e-3);
    host_close("emulated gn dgamma", dg_e, dg_r, (size_t)s.c, 2e-4, 1e-3);
    host_close("emulated gn dbeta", db_e, db_r, (size_t)s.c, 2e-4, 1e-3);
    free(x), free(gam), free(bet), free(g), free(dx0), free(dg0), free(db0), free(y_r), free(m_r);
    free(r_r), free(y_e), free(m_e), free(r_e), free(dx_r), free(dg_r), free(db_r), free(dx_e);
    free(dg_e), free(db_e);
}

static void emu_bn(kd_shape s, int relu, uint64_t sd)
{
    seed(sd);
    const float eps = 1e-5f;
    const size_t hw = (size_t)s.h * s.w, n = kd_shape_elems(s), nc = (size_t)s.n * s.c;
    float *x = hrand(n, -2, 2), *rm = hrand((size_t)s.c, -0.5, 0.5), *rv = hrand((size_t)s.c, 0.2, 2),
          *gam = hrand((size_t)s.c, 0.5, 1.5), *bet = hrand((size_t)s.c, -0.5, 0.5),
          *g = hrand(n, -1, 1), *dx0 = hrand(n, -1, 1), *dg0 = hrand((size_t)s.c, -1, 1),
          *db0 = hrand((size_t)s.c, -1, 1);
    float *y_r = calloc(n + 1, 4), *y_e = calloc(n + 1, 4);
    CPU->batch_norm_inf_fwd(CPU, s, eps, relu, x, rm, rv, gam, bet, y_r);
    for (size_t p = 0; p < nc; p++) { /* k_bn_fwd, block p */
        float a, off;
        kd_bn_coefs(rm, rv, gam, bet, eps, (int)(p % (size_t)s.c), &a, &off);
        for (size_t i = 0; i < hw; i++) {
            float v = x[p * hw + i] * a + off;
            y_e[p * hw + i] = relu ? (v > 0.0f ? v : 0.0f) : v;
        }
    }
    host_close("emulated bn y", y_e, y_r, n, 1e-5, 1e-5);
    float *dx_r = hcopy(dx0, n), *dg_r = hcopy(dg0, (size_t)s.c), *db_r = hcopy(db0, (size_t)s.c);
    float *dx_e = hcopy(dx0, n), *dg_e = hcopy(dg0, (size_t)s.c), *db_e = hcopy(db0, (size_t)s.c);
    CPU->batch_norm_inf_bwd(CPU, s, eps, relu, x, y_r, g, rm, rv, gam, dx_r, 1, dg_r, db_r);
    if (nc > 0 && hw > 0) {
        for (int ch = 0; ch < s.c; ch++) { /* k_bn_bwd_param */
            double a1 = 0, a2 = 0;
            for (int tid = 0; tid < NTH; tid++) {
                double b1, b2;
                kd_bn_bwd_param_partial(s.n, s.c, hw, relu, x, y_r, g, rm, ch, tid, NTH, &b1, &b2);
                a1 += b1, a2 += b2;
            }
            kd_bn_bwd_param_finish(rv, eps, ch, a1, a2, dg_e, db_e);
        }
        for (size_t p = 0; p < nc; p++) { /* k_bn_bwd_dx */
            const int ch = (int)(p % (size_t)s.c);
            const float a = kd_bn_inv(rv, ch, eps) * gam[ch];
            for (size_t i = p * hw; i < (p + 1) * hw; i++)
                dx_e[i] += a * (relu ? (y_r[i] > 0.0f ? g[i] : 0.0f) : g[i]);
        }
    }
    host_close("emulated bn dx", dx_e, dx_r, n, 1e-5, 1e-5);
    host_close("emulated bn dgamma", dg_e, dg_r, (size_t)s.c, 2e-4, 1e-3);
    host_close("emulated bn dbeta", db_e, db_r, (size_t)s.c, 2e-4, 1e-3);
    free(x), free(rm), free(rv), free(gam), free(bet), free(g), free(dx0), free(dg0), free(db0);
    free(y_r), free(y_e), free(dx_r), free(dg_r), free(db_r), free(dx_e), free(dg_e), free(db_e);
}

static void emu_align(kd_shape s, uint64_t sd)
{
    seed(sd);
    const size_t hw = (size_t)s.h * s.w, n = kd_shape_elems(s), c = (size_t)s.c;
    float *x = hrand(n, -1, 2), *mt = hrand(c, -1, 1), *st = hrand(c, 0.5, 2), *g = hrand(n, -1, 1),
          *dx0 = hrand(n, -1, 1);
    float *y_r = calloc(n + 1, 4), *mx_r = calloc(c + 1, 4), *sx_r = calloc(c + 1, 4);
    float *y_e = calloc(n + 1, 4), *mx_e = calloc(c + 1, 4), *sx_e = calloc(c + 1, 4);
    float *cm_r = calloc(c + 1, 4), *cs_r = calloc(c + 1, 4);
    CPU->channel_stats(CPU, s, x, cm_r, cs_r);
    CPU->align_scale_fwd(CPU, s, x, mt, st, y_r, mx_r, sx_r);
    for (int ch = 0; ch < s.c; ch++) { /* k_align_fwd, block ch (k_channel_stats is its head) */
        double s1 = 0, s2 = 0;
        for (int tid = 0; tid < NTH; tid++) {
            double a1, a2;
            kd_chan_partial(s.n, s.c, hw, x, ch, tid, NTH, &a1, &a2);
            s1 += a1, s2 += a2;
        }
        kd_chan_stats(s.n, hw, x, ch, s1, s2, &mx_e[ch], &sx_e[ch]);
        for (int tid = 0; tid < NTH; tid++)
            kd_align_fwd_apply(s.n, s.c, hw, x, mt, st, ch, tid, NTH, mx_e[ch], sx_e[ch], y_e);
    }
    host_close("emulated channel mean", mx_e, cm_r, c, 1e-5, 1e-5);
    host_close("emulated channel std", sx_e, cs_r, c, 1e-5, 1e-5);
    host_close("emulated align y", y_e, y_r, n, 2e-4, 1e-3);
    float *dx_r = hcopy(dx0, n), *dx_e = hcopy(dx0, n);
    CPU->align_scale_bwd(CPU, s, x, mx_r, sx_r, st, g, dx_r, 1);
    if (n > 0)
        for (int ch = 0; ch < s.c; ch++) { /* k_align_bwd */
            double sg = 0, sgx = 0;
            for (int tid = 0; tid < NTH; tid++) {
                double a1, a2;
                kd_align_bwd_partial(s.n, s.c, hw, x, g, mx_r[ch], ch, tid, NTH, &a1, &a2);
                sg += a1, sgx += a2;
            }
            float a, bc, mg;
            kd_align_bwd_coefs(s.n, hw, sx_r, st, ch, sg, sgx, &a, &bc, &mg);
            for (int tid = 0; tid < NTH; tid++)
                kd_align_bwd_apply(s.n, s.c, hw, x, g, mx_r[ch], ch, tid, NTH, a, bc, mg, dx_e, 1);
        }
    host_close("emulated align dx", dx_e, dx_r, n, 2e-4, 1e-3);
    free(x), free(mt), free(st), free(g), free(dx0), free(y_r), free(mx_r), free(sx_r), free(y_e);
    free(mx_e), free(sx_e), free(cm_r), free(cs_r), free(dx_r), free(dx_e);
}

static void emu_bias_grad(int n, int c, int h, int w, uint64_t sd)
{
    seed(sd);
    kd_conv_desc d = {{n, c, h, w}, c, 1, 1, 1, 1, 0, 0, 1}; /* 1x1: y has x's shape */
    const size_t hw = (size_t)h * w, yn = (size_t)n * c * hw;
    float *x = hrand(yn, -1, 1), *dy = hrand(yn, -1, 1), *b_r = hrand((size_t)c, -1, 1);
    float *b_e = hcopy(b_r, (size_t)c);
    CPU->conv_bwd_weight(CPU, &d, x, dy, NULL, b_r);
    for (int ch = 0; ch < c; ch++) { /* k_channel_sum */
        double a = 0;
        for (int tid = 0; tid < NTH; tid++) a += kd_chsum_partial(n, c, hw, dy, ch, tid, NTH);
        b_e[ch] += (float)a;
    }
    host_close("emulated conv dbias", b_e, b_r, (size_t)c, 1e-4, 1e-4);
    free(x), free(dy), free(b_r), free(b_e);
}

static void test_reduce_logic(void)
{
    emu_gn((kd_shape){1, 6, 5, 3}, 3, 0, 1, 1);
    emu_gn((kd_shape){3, 4, 3, 5}, 2, 1, 1, 2);
    emu_gn((kd_shape){2, 4, 3, 3}, 4, 0, 0, 3);
    emu_gn((kd_shape){1, 5, 7, 1}, 1, 1, 1, 4);
    emu_gn((kd_shape){2, 3, 2, 3}, 3, 0, 1, 5);
    emu_gn((kd_shape){0, 4, 3, 3}, 2, 1, 1, 6);
    emu_gn((kd_shape){2, 4, 0, 3}, 2, 0, 1, 7);
    emu_gn((kd_shape){2, 64, 20, 24}, 32, 1, 1, 8);
    emu_bn((kd_shape){1, 3, 5, 7}, 0, 11);
    emu_bn((kd_shape){3, 4, 3, 3}, 1, 12);
    emu_bn((kd_shape){0, 4, 3, 3}, 1, 13);
    emu_bn((kd_shape){4, 64, 25, 21}, 1, 14);
    emu_align((kd_shape){1, 3, 5, 7}, 1);
    emu_align((kd_shape){3, 4, 3, 5}, 2);
    emu_align((kd_shape){3, 5, 1, 1}, 3);
    emu_align((kd_shape){1, 4, 1, 1}, 4);
    emu_align((kd_shape){0, 4, 3, 3}, 5);
    emu_align((kd_shape){2, 16, 40, 30}, 6);
    emu_bias_grad(2, 5, 7, 3, 21);
    emu_bias_grad(3, 32, 20, 24, 22);
}

/* The cuBLAS call's argument mapping, executed by a column-major BLAS on the host. */
static void check_gemm_mapping(int ta, int tb, int m, int n, int k, int pad, uint64_t sd)
{
    seed(sd);
    int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    size_t an = (size_t)(ta ? k : m) * lda, bn = (size_t)(tb ? n : k) * ldb, cn = (size_t)m * ldc;
    float *a = calloc(an + 1, sizeof *a), *b = calloc(bn + 1, sizeof *b);
    float *c1 = calloc(cn + 1, sizeof *c1), *c2 = calloc(cn + 1, sizeof *c2);
    for (size_t i = 0; i < an; i++) a[i] = (float)(urand() - 0.5);
    for (size_t i = 0; i < bn; i++) b[i] = (float)(urand() - 0.5);
    for (size_t i = 0; i < cn; i++) c1[i] = c2[i] = (float)(urand() - 0.5);
    CPU->gemm(CPU, ta, tb, m, n, k, 0.75f, a, lda, b, ldb, 0.5f, c1, ldc);
    kd_colmajor_gemm g = kd_gemm_row_to_col(ta, tb, m, n, k, a, lda, b, ldb);
    cblas_sgemm(CblasColMajor, g.trans_first ? CblasTrans : CblasNoTrans,
                g.trans_second ? CblasTrans : CblasNoTrans, g.m, g.n, g.k, 0.75f, g.first,
                g.ld_first, g.second, g.ld_second, 0.5f, c2, ldc);
    size_t bad = 0;
    for (size_t i = 0; i < cn; i++) bad += !(fabsf(c1[i] - c2[i]) <= 1e-5f + 1e-5f * fabsf(c1[i]));
    KD_EXPECT_MSG(bad == 0, "gemm mapping %c%c %dx%dx%d: %zu of %zu differ", ta ? 't' : 'n',
                  tb ? 't' : 'n', m, n, k, bad, cn);
    free(a), free(b), free(c1), free(c2);
}

static void test_gemm_mapping(void)
{
    uint64_t sd = 300;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_gemm_mapping(ta, tb, 7, 5, 9, 0, sd++);
            check_gemm_mapping(ta, tb, 1, 8, 40, 2, sd++);
            check_gemm_mapping(ta, tb, 33, 17, 3, 1, sd++);
        }
}

static void test_gather_logic(void)
{
    uint64_t sd = 100;
    for (int k = 1; k <= 4; k++)
        for (int stride = 1; stride <= 3; stride++)
            for (int pad = 0; 2 * pad <= k; pad++)
                for (int h = 1; h <= 9; h += 2)
                    emulate_pool((kd_shape){2, 3, h, h + 3}, k, stride, pad, sd++);
    emulate_pool((kd_shape){1, 4, 100, 84}, 3, 2, 1, sd++);
    for (int in = 1; in <= 13; in++)
        for (int out = 0; out <= 40; out += 3) emulate_upsample((kd_shape){2, 2, in, 14 - in}, out,
                                                                out + 1, sd++);
    emulate_upsample((kd_shape){1, 3, 13, 21}, 25, 42, sd++);
    emulate_upsample((kd_shape){1, 3, 50, 42}, 100, 84, sd++);
}

static void test_loss_scaler(void)
{
    kd_loss_scaler s = kd_loss_scaler_default();
    KD_EXPECT(s.scale == 65536.0f);
    KD_EXPECT(kd_loss_scaler_update(&s, 1) == 32768.0f && s.good_steps == 0);
    for (int i = 0; i < 1999; i++) kd_loss_scaler_update(&s, 0);
    KD_EXPECT(s.scale == 32768.0f && s.good_steps == 1999);
    KD_EXPECT(kd_loss_scaler_update(&s, 0) == 65536.0f && s.good_steps == 0);
    for (int i = 0; i < 1000; i++) kd_loss_scaler_update(&s, 0);
    KD_EXPECT(kd_loss_scaler_update(&s, 1) == 32768.0f && s.good_steps == 0); /* run reset */
    for (int i = 0; i < 400; i++) kd_loss_scaler_update(&s, 1); /* never reaches 0 */
    KD_EXPECT(s.scale > 0.0f);
    s.scale = 3e38f;
    s.good_steps = s.growth_interval - 1;
    KD_EXPECT(kd_loss_scaler_update(&s, 0) == 3e38f); /* never reaches Inf */
    kd_loss_scaler off = kd_loss_scaler_off();
    for (int i = 0; i < 5000; i++) kd_loss_scaler_update(&off, i % 7 == 0);
    KD_EXPECT(off.scale == 1.0f);
}

int main(void)
{
    kd_err err = {0};
    if (kd_backend_open("cpu", 0, &CPU, &err) != KD_OK) {
        fprintf(stderr, "cannot open the cpu backend: %s\n", err.msg);
        return 1;
    }
    KD_TEST_RUN(test_gather_logic);
    KD_TEST_RUN(test_reduce_logic);
    KD_TEST_RUN(test_gemm_mapping);
    KD_TEST_RUN(test_loss_scaler);
    CPU->close(CPU);
    return kd_test_summary();
}
