/* norm.c — GroupNorm (forward, backward) and BatchNorm in inference mode with a trainable
 * affine (MMDetection's norm_eval=True), each with an optional fused ReLU after the norm
 * (mmcv ConvModule order conv -> norm -> act).
 *
 * GroupNorm (PyTorch semantics): per image n and group g, over the Cg = C/G channels times
 * H*W values (contiguous in NCHW): mean, biased variance, y = (x - mean) * rstd * gamma + beta
 * with rstd = 1/sqrt(var + eps). The statistics are summed as float partials over blocks of
 * 4096 values (vectorised), combined in double, around a shift (the group's first value) so
 * that E[x^2] - E[x]^2 does not cancel when the mean is large against the spread.
 * Backward, with dy' = dy masked by y > 0 under the fused ReLU and xhat = (x - mean) * rstd:
 *   dx = rstd * (gamma*dy' - mean_g(gamma*dy') - xhat * mean_g(gamma*dy'*xhat)),
 *   dgamma_c += sum dy'*xhat,  dbeta_c += sum dy'   (sums over n, h, w).
 * BatchNorm (inference): a_c = gamma_c / sqrt(rvar_c + eps), y = (x - rmean_c) * a_c + beta_c;
 * backward dx = dy' * a_c, dgamma_c += sum dy'*(x - rmean_c)/sqrt(rvar_c + eps),
 * dbeta_c += sum dy'. The running statistics get no gradient.
 * Parallel over (n, g) for GroupNorm and over channels for BatchNorm, handed out dynamically
 * (a thread delayed by another process does not hold the others up); every task writes its
 * own outputs and parameter gradients are reduced over n in a fixed order, so results do
 * not depend on the schedule.
 */
#include "kernels/cpu/cpu_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 4096

/* Sums of (x - k) and (x - k)^2 over len values. */
static void shifted_moments(const float *x, size_t len, float k, double *s1, double *s2)
{
    double a1 = 0.0, a2 = 0.0;
    for (size_t i = 0; i < len; i += BLOCK) {
        size_t e = i + BLOCK < len ? i + BLOCK : len;
        float f1 = 0.0f, f2 = 0.0f;
#pragma omp simd reduction(+ : f1, f2)
        for (size_t j = i; j < e; j++) {
            float v = x[j] - k;
            f1 += v;
            f2 += v * v;
        }
        a1 += f1;
        a2 += f2;
    }
    *s1 = a1;
    *s2 = a2;
}

/* Sums of dy' and dy' * (x - m) over len values, dy' = dy masked by y > 0 when relu. */
static void grad_sums(const float *x, const float *y, const float *dy, size_t len, float m,
                      int relu, double *sdy, double *sdyx)
{
    double a1 = 0.0, a2 = 0.0;
    for (size_t i = 0; i < len; i += BLOCK) {
        size_t e = i + BLOCK < len ? i + BLOCK : len;
        float f1 = 0.0f, f2 = 0.0f;
        if (relu) {
#pragma omp simd reduction(+ : f1, f2)
            for (size_t j = i; j < e; j++) {
                float g = y[j] > 0.0f ? dy[j] : 0.0f;
                f1 += g;
                f2 += g * (x[j] - m);
            }
        } else {
#pragma omp simd reduction(+ : f1, f2)
            for (size_t j = i; j < e; j++) {
                f1 += dy[j];
                f2 += dy[j] * (x[j] - m);
            }
        }
        a1 += f1;
        a2 += f2;
    }
    *sdy = a1;
    *sdyx = a2;
}

/* y = x * a + c (then ReLU), over len values. */
static void affine_row(const float *x, float *y, size_t len, float a, float c, int relu)
{
    if (relu) {
#pragma omp simd
        for (size_t i = 0; i < len; i++) {
            float v = x[i] * a + c;
            y[i] = v > 0.0f ? v : 0.0f;
        }
    } else {
#pragma omp simd
        for (size_t i = 0; i < len; i++) y[i] = x[i] * a + c;
    }
}

void kd_cpu_group_norm_fwd(const kd_backend *b, kd_shape s, int groups, float eps, int relu,
                           const float *x, const float *gamma, const float *beta, float *y,
                           float *mean, float *rstd)
{
    KD_CHECK(groups >= 1 && s.c / groups * groups == s.c, "(GroupNorm: channels %d, groups %d)",
             s.c, groups);
    const int cg = s.c / groups;
    const size_t hw = (size_t)s.h * s.w, m = (size_t)cg * hw;
    const long tasks = (long)s.n * groups;
    int nt = kd_shape_elems(s) >= KD_CPU_PAR_MIN_ELEMS ? b->threads : 1;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (long t = 0; t < tasks; t++) {
        const int n = (int)(t / groups), g = (int)(t % groups);
        const size_t base = ((size_t)n * s.c + (size_t)g * cg) * hw;
        double s1 = 0.0, s2 = 0.0;
        float k = m ? x[base] : 0.0f;
        shifted_moments(x + base, m, k, &s1, &s2);
        double mu = m ? s1 / (double)m : 0.0;
        double var = m ? s2 / (double)m - mu * mu : 0.0;
        if (var < 0.0) var = 0.0;
        float mf = (float)(k + mu);
        float rs = (float)(1.0 / sqrt(var + (double)eps));
        if (mean) mean[t] = mf;
        if (rstd) rstd[t] = rs;
        for (int j = 0; j < cg; j++) {
            const int c = g * cg + j;
            float a = rs * (gamma ? gamma[c] : 1.0f);
            float off = (beta ? beta[c] : 0.0f) - mf * a;
            affine_row(x + base + (size_t)j * hw, y + base + (size_t)j * hw, hw, a, off, relu);
        }
    }
}

void kd_cpu_group_norm_bwd(const kd_backend *b, kd_shape s, int groups, int relu, const float *x,
                           const float *y, const float *dy, const float *gamma, const float *mean,
                           const float *rstd, float *dx, int accumulate, float *dgamma,
                           float *dbeta)
{
    KD_CHECK(groups >= 1 && s.c / groups * groups == s.c, "(GroupNorm: channels %d, groups %d)",
             s.c, groups);
    const int cg = s.c / groups;
    const size_t hw = (size_t)s.h * s.w, m = (size_t)cg * hw;
    const long tasks = (long)s.n * groups;
    if (tasks == 0 || m == 0) return;
    KD_CHECK(!relu || y != NULL, "(GroupNorm backward with relu needs y)");
    const size_t nc = (size_t)s.n * s.c;
    double *sdy = kd_xmalloc(2 * nc * sizeof *sdy), *sdyxh = sdy + nc;
    int nt = kd_shape_elems(s) >= KD_CPU_PAR_MIN_ELEMS ? b->threads : 1;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (long t = 0; t < tasks; t++) {
        const int n = (int)(t / groups), g = (int)(t % groups);
        const size_t base = ((size_t)n * s.c + (size_t)g * cg) * hw;
        const float mu = mean[t], rs = rstd[t];
        double m1 = 0.0, m2 = 0.0; /* sums of gamma*dy' and gamma*dy'*xhat over the group */
        /* With the ReLU and dx overwritten, pass 1 also stores the masked gradient dy' in dx,
         * so pass 2 reads two arrays (x, dy') instead of three: the group's data then stays
         * in the cache between the passes. */
        const int stash = relu && dx && !accumulate;
        for (int j = 0; j < cg; j++) {
            const int c = g * cg + j;
            const size_t o = base + (size_t)j * hw;
            double a1, a2;
            if (stash) {
                const float *yp = y + o, *dyp = dy + o;
                float *dxp = dx + o;
#pragma omp simd
                for (size_t i = 0; i < hw; i++) dxp[i] = yp[i] > 0.0f ? dyp[i] : 0.0f;
                grad_sums(x + o, NULL, dxp, hw, mu, 0, &a1, &a2);
            } else {
                grad_sums(x + o, relu ? y + o : NULL, dy + o, hw, mu, relu, &a1, &a2);
            }
            sdy[(size_t)n * s.c + c] = a1;
            sdyxh[(size_t)n * s.c + c] = a2 * rs;
            double gc = gamma ? gamma[c] : 1.0;
            m1 += gc * a1;
            m2 += gc * a2 * rs;
        }
        if (!dx) continue;
        m1 /= (double)m;
        m2 /= (double)m;
        /* dx = a_c*dy' + B*x + C0 with B = -rs^2*m2, C0 = -rs*m1 + rs^2*m2*mu */
        const float B = (float)(-(double)rs * rs * m2);
        const float C0 = (float)(-(double)rs * m1 + (double)rs * rs * m2 * mu);
        for (int j = 0; j < cg; j++) {
            const int c = g * cg + j;
            const size_t o = base + (size_t)j * hw;
            const float a = rs * (gamma ? gamma[c] : 1.0f);
            const float *xp = x + o, *dyp = dy + o, *yp = relu ? y + o : NULL;
            float *dxp = dx + o;
            if (stash || !relu) {
                const float *gp = stash ? dxp : dyp;
                if (accumulate) {
#pragma omp simd
                    for (size_t i = 0; i < hw; i++) dxp[i] += a * gp[i] + B * xp[i] + C0;
                } else {
#pragma omp simd
                    for (size_t i = 0; i < hw; i++) dxp[i] = a * gp[i] + B * xp[i] + C0;
                }
            } else { /* relu with accumulate: mask from y */
#pragma omp simd
                for (size_t i = 0; i < hw; i++) {
                    float g0 = yp[i] > 0.0f ? dyp[i] : 0.0f;
                    dxp[i] += a * g0 + B * xp[i] + C0;
                }
            }
        }
    }
    for (int c = 0; c < s.c; c++) {
        double gsum = 0.0, bsum = 0.0;
        for (int n = 0; n < s.n; n++) {
            gsum += sdyxh[(size_t)n * s.c + c];
            bsum += sdy[(size_t)n * s.c + c];
        }
        if (dgamma) dgamma[c] += (float)gsum;
        if (dbeta) dbeta[c] += (float)bsum;
    }
    free(sdy);
}

void kd_cpu_batch_norm_inf_fwd(const kd_backend *b, kd_shape s, float eps, int relu,
                               const float *x, const float *rmean, const float *rvar,
                               const float *gamma, const float *beta, float *y)
{
    const size_t hw = (size_t)s.h * s.w;
    const long planes = (long)s.n * s.c;
    int nt = kd_shape_elems(s) >= KD_CPU_PAR_MIN_ELEMS ? b->threads : 1;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (long p = 0; p < planes; p++) {
        const int c = (int)(p % s.c);
        float inv = (float)(1.0 / sqrt((double)rvar[c] + (double)eps));
        float a = inv * (gamma ? gamma[c] : 1.0f);
        float off = (beta ? beta[c] : 0.0f) - rmean[c] * a;
        affine_row(x + (size_t)p * hw, y + (size_t)p * hw, hw, a, off, relu);
    }
}

void kd_cpu_batch_norm_inf_bwd(const kd_backend *b, kd_shape s, float eps, int relu,
                               const float *x, const float *y, const float *dy,
                               const float *rmean, const float *rvar, const float *gamma,
                               float *dx, int accumulate, float *dgamma, float *dbeta)
{
    const size_t hw = (size_t)s.h * s.w;
    if (kd_shape_elems(s) == 0) return;
    KD_CHECK(!relu || y != NULL, "(BatchNorm backward with relu needs y)");
    int nt = kd_shape_elems(s) >= KD_CPU_PAR_MIN_ELEMS ? b->threads : 1;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int c = 0; c < s.c; c++) {
        const float inv = (float)(1.0 / sqrt((double)rvar[c] + (double)eps));
        const float a = inv * (gamma ? gamma[c] : 1.0f);
        double gsum = 0.0, bsum = 0.0;
        for (int n = 0; n < s.n; n++) {
            const size_t o = ((size_t)n * s.c + c) * hw;
            if (dgamma || dbeta) {
                double a1, a2;
                grad_sums(x + o, relu ? y + o : NULL, dy + o, hw, rmean[c], relu, &a1, &a2);
                bsum += a1;
                gsum += a2;
            }
            if (!dx) continue;
            const float *dyp = dy + o, *yp = relu ? y + o : NULL;
            float *dxp = dx + o;
#pragma omp simd
            for (size_t i = 0; i < hw; i++) {
                float g0 = relu ? (yp[i] > 0.0f ? dyp[i] : 0.0f) : dyp[i];
                float v = a * g0;
                dxp[i] = accumulate ? dxp[i] + v : v;
            }
        }
        if (dgamma) dgamma[c] += (float)(gsum * inv);
        if (dbeta) dbeta[c] += (float)bsum;
    }
}
