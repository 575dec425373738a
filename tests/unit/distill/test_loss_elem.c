/* test_loss_elem.c — the element math every box and distillation loss is built from, against
 * double-precision references (values) and central finite differences of those references
 * (gradients):
 *   kd_giou_elem   (kernels/kd_giou.h: the GFL/ATSS box loss, GIoU box KD, BCKD) on random
 *                  overlapping, disjoint and nested boxes; the min/max tie half-split and the
 *                  touching-boxes clamp against their PyTorch-autograd values
 *   kd_kdqfl_elem  (worker/distill/kd_losses.h: KD-QFL, BCKD's binary KD) for beta 0, 1, 2
 *   kd_kl_row      (KL of temperature softmaxes, class_reduction sum and mean) at T 1 and 10
 * Tolerances: values 1e-6 + 1e-5 |ref|; gradients 2e-4 + 2e-3 |fd| (float32 math against a
 * double-precision difference quotient, step 1e-4 scaled to the input).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kd_test.h"
#include "worker/distill/kd_losses.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double uni(double lo, double hi)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return lo + (hi - lo) * (double)(rng >> 11) / 9007199254740992.0;
}

#define VAL_OK(got, ref) (fabs((double)(got) - (ref)) <= 1e-6 + 1e-5 * fabs(ref))
#define GRAD_OK(got, fd) (fabs((double)(got) - (fd)) <= 2e-4 + 2e-3 * fabs(fd))

/* ---- GIoU --------------------------------------------------------------------------- */

static double giou_ref(const double *p, const double *t)
{
    const double eps = 1e-6;
    double ap = (p[2] - p[0]) * (p[3] - p[1]), at = (t[2] - t[0]) * (t[3] - t[1]);
    double wx = fmax(fmin(p[2], t[2]) - fmax(p[0], t[0]), 0), wy = fmax(fmin(p[3], t[3]) - fmax(p[1], t[1]), 0);
    double ov = wx * wy, un = fmax(ap + at - ov, eps);
    double ex = fmax(fmax(p[2], t[2]) - fmin(p[0], t[0]), 0), ey = fmax(fmax(p[3], t[3]) - fmin(p[1], t[1]), 0);
    double en = fmax(ex * ey, eps);
    return 1.0 - (ov / un - (en - un) / en);
}

static void random_box(double *b, double lo, double hi)
{
    double x = uni(lo, hi), y = uni(lo, hi);
    b[0] = x, b[1] = y, b[2] = x + uni(0.5, 30), b[3] = y + uni(0.5, 30);
}

static void check_giou_pair(const double *p, const double *t)
{
    float pf[4], tf[4], dp[4];
    for (int k = 0; k < 4; k++) pf[k] = (float)p[k], tf[k] = (float)t[k];
    double pd[4], td[4];
    for (int k = 0; k < 4; k++) pd[k] = pf[k], td[k] = tf[k];
    float v = kd_giou_elem(pf, tf, dp);
    double r = giou_ref(pd, td);
    KD_EXPECT_MSG(VAL_OK(v, r), "giou value %.9g vs %.9g", v, r);
    for (int k = 0; k < 4; k++) {
        double h = 1e-4 * fmax(1.0, fabs(pd[k])), q[4] = {pd[0], pd[1], pd[2], pd[3]};
        q[k] = pd[k] + h;
        double up = giou_ref(q, td);
        q[k] = pd[k] - h;
        double fd = (up - giou_ref(q, td)) / (2 * h);
        KD_EXPECT_MSG(GRAD_OK(dp[k], fd), "giou d/dp[%d] %.9g vs fd %.9g (p %g %g %g %g, t %g %g %g %g)", k, dp[k], fd,
                      pd[0], pd[1], pd[2], pd[3], td[0], td[1], td[2], td[3]);
    }
}

static void test_giou_random(void)
{
    double p[4], t[4];
    for (int i = 0; i < 3000; i++) {
        random_box(p, 0, 40);
        random_box(t, 0, 40); /* overlapping or disjoint, at random */
        if (i % 5 == 0) { /* nested */
            t[0] = p[0] + 0.25 * (p[2] - p[0]), t[1] = p[1] + 0.25 * (p[3] - p[1]);
            t[2] = p[2] - 0.25 * (p[2] - p[0]), t[3] = p[3] - 0.25 * (p[3] - p[1]);
        }
        /* a finite difference across a min/max switch or a clamp is not a derivative */
        int near = 0;
        for (int k = 0; k < 4; k++) near |= fabs(p[k] - t[k]) < 1e-2;
        near |= fabs(p[2] - t[0]) < 1e-2 || fabs(t[2] - p[0]) < 1e-2 || fabs(p[3] - t[1]) < 1e-2 ||
                fabs(t[3] - p[1]) < 1e-2;
        if (!near) check_giou_pair(p, t);
    }
}

static void test_giou_ties(void)
{
    /* identical boxes: loss 0, and every min/max ties (shares 1/2) */
    float b[4] = {2, 3, 12, 8}, dp[4];
    float v = kd_giou_elem(b, b, dp);
    KD_EXPECT_NEAR(v, 0.0, 1e-7, 0);
    /* analytic: ov = un = en = A = 50, dun = ov/un^2 - 1/en = 0, dov = -1/50, den = 1/50;
     * dp[0] = -0.5 dwx - 0.5 dewx = -0.5 (-h/50) - 0.5 (h/50) = 0, and likewise every side */
    for (int k = 0; k < 4; k++) KD_EXPECT_NEAR(dp[k], 0.0, 1e-7, 0);
    /* one shared edge (p[0] == t[0]) and otherwise distinct: the share at that edge is 1/2,
     * so the gradient is the mean of the two one-sided difference quotients */
    double p[4] = {5, 5, 20, 15}, t[4] = {5, 8, 12, 30};
    float pf[4] = {5, 5, 20, 15}, tf[4] = {5, 8, 12, 30};
    kd_giou_elem(pf, tf, dp);
    double h = 1e-5, q[4] = {p[0], p[1], p[2], p[3]};
    q[0] = p[0] + h;
    double right = (giou_ref(q, t) - giou_ref(p, t)) / h;
    q[0] = p[0] - h;
    double left = (giou_ref(p, t) - giou_ref(q, t)) / h;
    KD_EXPECT_MSG(GRAD_OK(dp[0], 0.5 * (left + right)), "tie d/dp[0] %.9g vs mean one-sided %.9g", dp[0],
                  0.5 * (left + right));
    /* touching boxes (intersection width exactly 0): the clamp at 0 passes the gradient
     * (PyTorch's clamp(min=0) is the identity at the bound), so the loss falls as p[2] moves
     * into t: d/dp[2] is the right-hand quotient */
    double a[4] = {0, 0, 10, 10}, c[4] = {10, 0, 20, 10};
    float af[4] = {0, 0, 10, 10}, cf[4] = {10, 0, 20, 10};
    kd_giou_elem(af, cf, dp);
    q[0] = a[0], q[1] = a[1], q[2] = a[2] + h, q[3] = a[3];
    double rq = (giou_ref(q, c) - giou_ref(a, c)) / h;
    KD_EXPECT_MSG(GRAD_OK(dp[2], rq), "touching d/dp[2] %.9g vs right-hand %.9g", dp[2], rq);
    KD_EXPECT_MSG(dp[2] < 0, "touching boxes: moving p's right edge into t must lower the loss (%.9g)", dp[2]);
}

/* ---- KD-QFL ------------------------------------------------------------------------- */

static double kdqfl_ref(double x, double t, double beta)
{
    double s = 1 / (1 + exp(-x));
    double bce = fmax(x, 0) - x * t + log1p(exp(-fabs(x)));
    return bce * (beta == 0 ? 1 : pow(fabs(s - t), beta));
}

static void test_kdqfl(void)
{
    const double betas[] = {0, 1, 2};
    for (int b = 0; b < 3; b++)
        for (int i = 0; i < 2000; i++) {
            double x = uni(-12, 12), t = i % 7 == 0 ? 0.0 : uni(0, 1);
            if (fabs(1 / (1 + exp(-x)) - t) < 1e-3) continue; /* |u| has a kink at u = 0 */
            float xf = (float)x, tf = (float)t, dx;
            float v = kd_kdqfl_elem(xf, tf, (float)betas[b], &dx);
            double r = kdqfl_ref(xf, tf, betas[b]), h = 1e-4 * fmax(1.0, fabs(x));
            double fd = (kdqfl_ref(xf + h, tf, betas[b]) - kdqfl_ref(xf - h, tf, betas[b])) / (2 * h);
            KD_EXPECT_MSG(VAL_OK(v, r) || fabs(v - r) <= 1e-5 * fmax(1.0, fabs(r)), "kdqfl beta %g x %g t %g: %.9g vs %.9g",
                          betas[b], x, t, v, r);
            KD_EXPECT_MSG(GRAD_OK(dx, fd), "kdqfl beta %g x %g t %g: d/dx %.9g vs fd %.9g", betas[b], x, t, dx, fd);
        }
}

/* ---- KL of temperature softmaxes ---------------------------------------------------- */

enum { COLS = 17 };

static double kl_ref(const double *x, const double *t, double T, int mean)
{
    double mx = -INFINITY, mt = -INFINITY, sx = 0, st = 0, kl = 0;
    for (int j = 0; j < COLS; j++) mx = fmax(mx, x[j] / T), mt = fmax(mt, t[j] / T);
    for (int j = 0; j < COLS; j++) sx += exp(x[j] / T - mx), st += exp(t[j] / T - mt);
    for (int j = 0; j < COLS; j++) {
        double lp = t[j] / T - mt - log(st), lq = x[j] / T - mx - log(sx);
        kl += exp(lp) * (lp - lq);
    }
    return T * T * kl / (mean ? COLS : 1);
}

static void test_kl_row(void)
{
    const double temps[] = {1, 10};
    float tmp[3 * COLS];
    for (int m = 0; m < 2; m++)
        for (int ti = 0; ti < 2; ti++)
            for (int i = 0; i < 200; i++) {
                double x[COLS], t[COLS];
                float xf[COLS], tf[COLS], dx[COLS] = {0};
                for (int j = 0; j < COLS; j++) {
                    xf[j] = (float)uni(-6, 6), tf[j] = (float)uni(-6, 6);
                    x[j] = xf[j], t[j] = tf[j];
                }
                const float g = 0.75f;
                float v = kd_kl_row(xf, tf, 1, COLS, (float)temps[ti], m, g, dx, tmp);
                double r = kl_ref(x, t, temps[ti], m);
                KD_EXPECT_MSG(fabs(v - r) <= 1e-5 + 1e-4 * fabs(r), "kl T %g mean %d: %.9g vs %.9g", temps[ti], m, v, r);
                for (int j = 0; j < COLS; j++) {
                    double h = 1e-4 * fmax(1.0, fabs(x[j])), keep = x[j];
                    x[j] = keep + h;
                    double up = kl_ref(x, t, temps[ti], m);
                    x[j] = keep - h;
                    double fd = g * (up - kl_ref(x, t, temps[ti], m)) / (2 * h);
                    x[j] = keep;
                    KD_EXPECT_MSG(GRAD_OK(dx[j], fd), "kl T %g mean %d: d/dx[%d] %.9g vs fd %.9g", temps[ti], m, j, dx[j],
                                  fd);
                }
            }
}

int main(void)
{
    KD_TEST_RUN(test_giou_random);
    KD_TEST_RUN(test_giou_ties);
    KD_TEST_RUN(test_kdqfl);
    KD_TEST_RUN(test_kl_row);
    return kd_test_summary();
}
