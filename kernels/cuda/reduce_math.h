/* reduce_math.h — the bodies of the CUDA reduction kernels (reduce.cu) as host/device
 * functions (KD_HD, kernels/kd_math.h), so the C compiler builds the very same index and
 * formula code and tests/unit/cuda runs it on the host against the CPU backend, on any
 * machine.
 *
 * Shape of a reduction kernel: one block per target (a channel, an (n, group) pair, ...);
 * every thread `tid` of `nth` calls a *_partial function that sums its strided elements in
 * double; the block adds the partials (reduce.cu: fixed tree); then every thread calls the
 * *_stats / *_coefs / *_apply functions with the totals. Per-element kernels call *_one.
 * Formulas, shifts and roundings are the CPU reference's (kernels/cpu/norm.c, align.c):
 * moments are summed around the target's first value; statistics are rounded to float the
 * same way. Tensors are NCHW; hw = H*W; n, c as in kd_shape.
 */
#ifndef KD_KERNELS_CUDA_REDUCE_MATH_H
#define KD_KERNELS_CUDA_REDUCE_MATH_H

#include <math.h>
#include <stddef.h>

#include "kernels/kd_math.h"

#define KD_ALIGN_EPS 1e-6

/* ---- conv dbias: sum over (n, hw) of channel ch ---------------------------------------- */

KD_HD double kd_chsum_partial(int n, int c, size_t hw, const float *dy, int ch, int tid, int nth)
{
    double a = 0.0;
    for (int b = 0; b < n; b++) {
        const float *p = dy + ((size_t)b * c + ch) * hw;
        for (size_t i = (size_t)tid; i < hw; i += (size_t)nth) a += p[i];
    }
    return a;
}

/* ---- GroupNorm forward, target t = n*groups + g: cg*hw contiguous values --------------- */

KD_HD size_t kd_gn_base(int c, size_t hw, int groups, int t)
{
    const int n = t / groups, g = t % groups, cg = c / groups;
    return ((size_t)n * c + (size_t)g * cg) * hw;
}

KD_HD void kd_gn_fwd_partial(int c, size_t hw, int groups, const float *x, int t, int tid, int nth,
                             double *s1, double *s2)
{
    const size_t m = (size_t)(c / groups) * hw, base = kd_gn_base(c, hw, groups, t);
    const float k = m ? x[base] : 0.0f;
    double a1 = 0.0, a2 = 0.0;
    for (size_t i = (size_t)tid; i < m; i += (size_t)nth) {
        float v = x[base + i] - k;
        a1 += v;
        a2 += (double)v * v;
    }
    *s1 = a1;
    *s2 = a2;
}

/* Mean and 1/sqrt(biased var + eps), from the block's shifted sums. */
KD_HD void kd_gn_fwd_stats(int c, size_t hw, int groups, const float *x, int t, double s1,
                           double s2, float eps, float *mean, float *rstd)
{
    const size_t m = (size_t)(c / groups) * hw, base = kd_gn_base(c, hw, groups, t);
    const float k = m ? x[base] : 0.0f;
    double mu = m ? s1 / (double)m : 0.0;
    double var = m ? s2 / (double)m - mu * mu : 0.0;
    if (var < 0.0) var = 0.0;
    *mean = (float)(k + mu);
    *rstd = (float)(1.0 / sqrt(var + (double)eps));
}

KD_HD void kd_gn_fwd_apply(int c, size_t hw, int groups, int relu, const float *x,
                           const float *gamma, const float *beta, int t, int tid, int nth,
                           float mean, float rstd, float *y)
{
    const int g = t % groups, cg = c / groups;
    const size_t m = (size_t)cg * hw, base = kd_gn_base(c, hw, groups, t);
    for (size_t i = (size_t)tid; i < m; i += (size_t)nth) {
        const int ch = g * cg + (int)(i / hw);
        const float a = rstd * (gamma ? gamma[ch] : 1.0f);
        const float off = (beta ? beta[ch] : 0.0f) - mean * a;
        float v = x[base + i] * a + off;
        y[base + i] = relu ? (v > 0.0f ? v : 0.0f) : v;
    }
}

/* ---- GroupNorm backward (kernels/cpu/norm.c's four steps) ------------------------------ */

/* The (n, g) index of plane nc = n*c + ch. */
KD_HD int kd_gn_task_of_plane(int c, int groups, int nc)
{
    const int n = nc / c, ch = nc % c;
    return n * groups + ch / (c / groups);
}

/* Pass 1, target plane nc: sums of dy' and dy'*(x - mean) (dy' = dy masked by y > 0). */
KD_HD void kd_gn_bwd_chan_partial(int c, size_t hw, int groups, int relu, const float *x,
                                  const float *y, const float *dy, const float *mean, int nc,
                                  int tid, int nth, double *a1, double *a2)
{
    const float mu = mean[kd_gn_task_of_plane(c, groups, nc)];
    const size_t o = (size_t)nc * hw;
    double s1 = 0.0, s2 = 0.0;
    for (size_t i = (size_t)tid; i < hw; i += (size_t)nth) {
        float g = relu ? (y[o + i] > 0.0f ? dy[o + i] : 0.0f) : dy[o + i];
        s1 += g;
        s2 += (double)g * (double)(x[o + i] - mu);
    }
    *a1 = s1;
    *a2 = s2;
}

KD_HD void kd_gn_bwd_chan_finish(int c, int groups, const float *rstd, int nc, double a1,
                                 double a2, double *sdy, double *sdyxh)
{
    sdy[nc] = a1;
    sdyxh[nc] = a2 * rstd[kd_gn_task_of_plane(c, groups, nc)];
}

/* Pass 2, target t: dx = a_c*dy' + B*x + C0 over the group. */
KD_HD void kd_gn_bwd_coef_one(int c, size_t hw, int groups, const float *gamma, const float *mean,
                              const float *rstd, const double *sdy, const double *sdyxh, int t,
                              float *coef_b, float *coef_c)
{
    const int n = t / groups, g = t % groups, cg = c / groups;
    const double m = (double)cg * (double)hw;
    double m1 = 0.0, m2 = 0.0;
    for (int j = 0; j < cg; j++) {
        const int ch = g * cg + j;
        const double gc = gamma ? gamma[ch] : 1.0;
        m1 += gc * sdy[(size_t)n * c + ch];
        m2 += gc * sdyxh[(size_t)n * c + ch];
    }
    m1 /= m;
    m2 /= m;
    const double rs = rstd[t], mu = mean[t];
    coef_b[t] = (float)(-rs * rs * m2);
    coef_c[t] = (float)(-rs * m1 + rs * rs * m2 * mu);
}

/* Pass 3, element i: the value added to (or written into) dx[i]. */
KD_HD float kd_gn_bwd_dx_one(int c, size_t hw, int groups, int relu, const float *x,
                             const float *y, const float *dy, const float *gamma,
                             const float *rstd, const float *coef_b, const float *coef_c,
                             size_t i)
{
    const size_t nc = i / hw;
    const int ch = (int)(nc % (size_t)c);
    const int t = kd_gn_task_of_plane(c, groups, (int)nc);
    const float a = rstd[t] * (gamma ? gamma[ch] : 1.0f);
    const float g0 = relu ? (y[i] > 0.0f ? dy[i] : 0.0f) : dy[i];
    return a * g0 + coef_b[t] * x[i] + coef_c[t];
}

/* Pass 4, channel ch: dgamma += sum_n sdyxh, dbeta += sum_n sdy, n in order. */
KD_HD void kd_gn_bwd_param_one(int n, int c, const double *sdy, const double *sdyxh, int ch,
                               float *dgamma, float *dbeta)
{
    double gs = 0.0, bs = 0.0;
    for (int b = 0; b < n; b++) {
        gs += sdyxh[(size_t)b * c + ch];
        bs += sdy[(size_t)b * c + ch];
    }
    if (dgamma) dgamma[ch] += (float)gs;
    if (dbeta) dbeta[ch] += (float)bs;
}

/* ---- BatchNorm, inference mode ------------------------------------------------------ */

/* 1/sqrt(rvar + eps) rounded to float, as the CPU computes it. */
KD_HD float kd_bn_inv(const float *rvar, int ch, float eps)
{
    return (float)(1.0 / sqrt((double)rvar[ch] + (double)eps));
}

/* y = x*a + off (then ReLU) for channel ch. */
KD_HD void kd_bn_coefs(const float *rmean, const float *rvar, const float *gamma,
                       const float *beta, float eps, int ch, float *a, float *off)
{
    *a = kd_bn_inv(rvar, ch, eps) * (gamma ? gamma[ch] : 1.0f);
    *off = (beta ? beta[ch] : 0.0f) - rmean[ch] * *a;
}

/* Target channel ch: sums of dy' and dy'*(x - rmean) over (n, hw). */
KD_HD void kd_bn_bwd_param_partial(int n, int c, size_t hw, int relu, const float *x,
                                   const float *y, const float *dy, const float *rmean, int ch,
                                   int tid, int nth, double *a1, double *a2)
{
    const float rm = rmean[ch];
    double s1 = 0.0, s2 = 0.0;
    for (int b = 0; b < n; b++) {
        const size_t o = ((size_t)b * c + ch) * hw;
        for (size_t i = (size_t)tid; i < hw; i += (size_t)nth) {
            float g = relu ? (y[o + i] > 0.0f ? dy[o + i] : 0.0f) : dy[o + i];
            s1 += g;
            s2 += (double)g * (double)(x[o + i] - rm);
        }
    }
    *a1 = s1;
    *a2 = s2;
}

KD_HD void kd_bn_bwd_param_finish(const float *rvar, float eps, int ch, double a1, double a2,
                                  float *dgamma, float *dbeta)
{
    if (dgamma) dgamma[ch] += (float)(a2 * (double)kd_bn_inv(rvar, ch, eps));
    if (dbeta) dbeta[ch] += (float)a1;
}

/* ---- channel statistics and align_scale (kernels/cpu/align.c) -------------------------- */

/* Target channel ch: sums of (x - k) and (x - k)^2 over (n, hw), k its first value. */
KD_HD void kd_chan_partial(int n, int c, size_t hw, const float *x, int ch, int tid, int nth,
                           double *s1, double *s2)
{
    const size_t cnt = (size_t)n * hw;
    const float k = cnt ? x[(size_t)ch * hw] : 0.0f;
    double a1 = 0.0, a2 = 0.0;
    for (int b = 0; b < n; b++) {
        const float *p = x + ((size_t)b * c + ch) * hw;
        for (size_t i = (size_t)tid; i < hw; i += (size_t)nth) {
            float v = p[i] - k;
            a1 += v;
            a2 += (double)v * v;
        }
    }
    *s1 = a1;
    *s2 = a2;
}

/* Mean and unbiased std; cnt < 2 gives std 0, cnt == 0 mean 0 too. */
KD_HD void kd_chan_stats(int n, size_t hw, const float *x, int ch, double s1, double s2,
                         float *mean, float *std)
{
    const size_t cnt = (size_t)n * hw;
    if (cnt == 0) {
        *mean = 0.0f;
        *std = 0.0f;
        return;
    }
    const float k = x[(size_t)ch * hw];
    const double mu = s1 / (double)cnt;
    double ss = s2 - s1 * mu;
    if (ss < 0.0) ss = 0.0;
    *mean = (float)(k + mu);
    *std = cnt >= 2 ? (float)sqrt(ss / (double)(cnt - 1)) : 0.0f;
}

/* y = (x - mu) * a + mean_t over channel ch, a = std_t / (std_x + 1e-6). */
KD_HD void kd_align_fwd_apply(int n, int c, size_t hw, const float *x, const float *mean_t,
                              const float *std_t, int ch, int tid, int nth, float mu, float sd,
                              float *y)
{
    const float a = (float)((double)std_t[ch] / ((double)sd + KD_ALIGN_EPS));
    const float mt = mean_t[ch];
    for (int b = 0; b < n; b++) {
        const size_t o = ((size_t)b * c + ch) * hw;
        for (size_t i = (size_t)tid; i < hw; i += (size_t)nth) y[o + i] = (x[o + i] - mu) * a + mt;
    }
}

/* Target channel ch: sums of dy and dy*(x - mean_x). */
KD_HD void kd_align_bwd_partial(int n, int c, size_t hw, const float *x, const float *dy,
                                float mu, int ch, int tid, int nth, double *sg, double *sgx)
{
    double a1 = 0.0, a2 = 0.0;
    for (int b = 0; b < n; b++) {
        const size_t o = ((size_t)b * c + ch) * hw;
        for (size_t i = (size_t)tid; i < hw; i += (size_t)nth) {
            a1 += dy[o + i];
            a2 += (double)dy[o + i] * (double)(x[o + i] - mu);
        }
    }
    *sg = a1;
    *sgx = a2;
}

/* dx = a*(dy - mean(dy)) + B*(x - mu): a, B and mean(dy) from the sums. Where std_x == 0
 * the statistics' term B is 0. */
KD_HD void kd_align_bwd_coefs(int n, size_t hw, const float *std_x, const float *std_t, int ch,
                              double sg, double sgx, float *a, float *bcoef, float *mg)
{
    const size_t cnt = (size_t)n * hw;
    const double st = std_t[ch], sd = std_x[ch], den = sd + KD_ALIGN_EPS;
    double bb = 0.0;
    if (sd > 0.0 && cnt >= 2) bb = -(st * sgx) / (den * den * (double)(cnt - 1) * sd);
    *a = (float)(st / den);
    *bcoef = (float)bb;
    *mg = (float)(sg / (double)cnt);
}

KD_HD void kd_align_bwd_apply(int n, int c, size_t hw, const float *x, const float *dy, float mu,
                              int ch, int tid, int nth, float a, float bcoef, float mg, float *dx,
                              int acc)
{
    for (int b = 0; b < n; b++) {
        const size_t o = ((size_t)b * c + ch) * hw;
        for (size_t i = (size_t)tid; i < hw; i += (size_t)nth) {
            float v = a * (dy[o + i] - mg) + bcoef * (x[o + i] - mu);
            dx[o + i] = acc ? dx[o + i] + v : v;
        }
    }
}

#endif
