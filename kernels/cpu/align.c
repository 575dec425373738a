/* align.c — CrossKD's align_scale (reference/crosskd.md §4.2, §13.3) and the per-channel
 * statistics of the teacher side.
 *
 * Per channel c, over the n = N*H*W values of the batch (no masking):
 *   mean_c, std_c = unbiased standard deviation (divisor n - 1);
 *   A = (S - mean_s) / (std_s + 1e-6) * std_t + mean_t,
 * with the student's mean_s and std_s carrying gradient. With h = std_t * dA, e = 1e-6:
 *   dS_j = (h_j - mean(h)) / (std_s + e)
 *          - [sum_k h_k (S_k - mean_s)] * (S_j - mean_s) / ((std_s + e)^2 * (n - 1) * std_s).
 * Edge cases (PyTorch gives NaN there): n < 2 gives std 0 (mean 0 when n == 0); where
 * std_s == 0 every S equals its mean and the second term is taken as 0.
 * Sums are float partials over blocks of 4096 (vectorised) added in double, around a shift
 * (the channel's first value). Parallel over channels, handed out dynamically; each channel
 * is computed by one thread, so results do not depend on the schedule.
 */
#include "kernels/cpu/cpu_internal.h"

#include <math.h>

#define BLOCK 4096
#define ALIGN_EPS 1e-6

static void channel_mean_std(kd_shape s, const float *x, int c, float *mean, float *std)
{
    const size_t hw = (size_t)s.h * s.w, cnt = (size_t)s.n * hw;
    if (cnt == 0) {
        *mean = 0.0f;
        *std = 0.0f;
        return;
    }
    const float k = x[(size_t)c * hw];
    double s1 = 0.0, s2 = 0.0;
    for (int n = 0; n < s.n; n++) {
        const float *p = x + ((size_t)n * s.c + c) * hw;
        for (size_t i = 0; i < hw; i += BLOCK) {
            size_t e = i + BLOCK < hw ? i + BLOCK : hw;
            float f1 = 0.0f, f2 = 0.0f;
#pragma omp simd reduction(+ : f1, f2)
            for (size_t j = i; j < e; j++) {
                float v = p[j] - k;
                f1 += v;
                f2 += v * v;
            }
            s1 += f1;
            s2 += f2;
        }
    }
    double mu = s1 / (double)cnt;
    double ss = s2 - s1 * mu; /* sum (x - mean)^2 */
    if (ss < 0.0) ss = 0.0;
    *mean = (float)(k + mu);
    *std = cnt >= 2 ? (float)sqrt(ss / (double)(cnt - 1)) : 0.0f;
}

void kd_cpu_channel_stats(const kd_backend *b, kd_shape s, const float *x, float *mean,
                          float *std)
{
    int nt = kd_shape_elems(s) >= KD_CPU_PAR_MIN_ELEMS ? b->threads : 1;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int c = 0; c < s.c; c++) channel_mean_std(s, x, c, &mean[c], &std[c]);
}

void kd_cpu_align_scale_fwd(const kd_backend *b, kd_shape s, const float *x,
                            const float *mean_t, const float *std_t, float *y, float *mean_x,
                            float *std_x)
{
    const size_t hw = (size_t)s.h * s.w;
    int nt = kd_shape_elems(s) >= KD_CPU_PAR_MIN_ELEMS ? b->threads : 1;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int c = 0; c < s.c; c++) {
        float mu, sd;
        channel_mean_std(s, x, c, &mu, &sd);
        mean_x[c] = mu;
        std_x[c] = sd;
        /* (x - mu) * a + mean_t, not x * a + (mean_t - mu * a): a can be ~1e6 / std */
        const float a = (float)((double)std_t[c] / ((double)sd + ALIGN_EPS));
        const float mt = mean_t[c];
        for (int n = 0; n < s.n; n++) {
            const size_t o = ((size_t)n * s.c + c) * hw;
            const float *xp = x + o;
            float *yp = y + o;
#pragma omp simd
            for (size_t i = 0; i < hw; i++) yp[i] = (xp[i] - mu) * a + mt;
        }
    }
}

void kd_cpu_align_scale_bwd(const kd_backend *b, kd_shape s, const float *x,
                            const float *mean_x, const float *std_x, const float *std_t,
                            const float *dy, float *dx, int accumulate)
{
    const size_t hw = (size_t)s.h * s.w, cnt = (size_t)s.n * hw;
    if (cnt == 0 || !dx) return;
    int nt = kd_shape_elems(s) >= KD_CPU_PAR_MIN_ELEMS ? b->threads : 1;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int c = 0; c < s.c; c++) {
        const float mu = mean_x[c];
        double sg = 0.0, sgx = 0.0; /* sum dy, sum dy*(x - mu) */
        for (int n = 0; n < s.n; n++) {
            const size_t o = ((size_t)n * s.c + c) * hw;
            const float *xp = x + o, *gp = dy + o;
            for (size_t i = 0; i < hw; i += BLOCK) {
                size_t e = i + BLOCK < hw ? i + BLOCK : hw;
                float f1 = 0.0f, f2 = 0.0f;
#pragma omp simd reduction(+ : f1, f2)
                for (size_t j = i; j < e; j++) {
                    f1 += gp[j];
                    f2 += gp[j] * (xp[j] - mu);
                }
                sg += f1;
                sgx += f2;
            }
        }
        const double st = std_t[c], sd = std_x[c], den = sd + ALIGN_EPS;
        /* dx = a*(dy - mean(dy)) + B*(x - mu), a = std_t/(std_x + e) (large when std_x is
         * small, so the mean is subtracted before scaling) */
        const double a = st / den;
        double B = 0.0;
        if (sd > 0.0 && cnt >= 2) B = -(st * sgx) / (den * den * (double)(cnt - 1) * sd);
        const float af = (float)a, Bf = (float)B, mg = (float)(sg / (double)cnt);
        for (int n = 0; n < s.n; n++) {
            const size_t o = ((size_t)n * s.c + c) * hw;
            const float *xp = x + o, *gp = dy + o;
            float *dp = dx + o;
#pragma omp simd
            for (size_t i = 0; i < hw; i++) {
                float v = af * (gp[i] - mg) + Bf * (xp[i] - mu);
                dp[i] = accumulate ? dp[i] + v : v;
            }
        }
    }
}
