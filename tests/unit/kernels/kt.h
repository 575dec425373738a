/* kt.h — helpers shared by the kernel tests: opening the backend, seeded random inputs kept
 * in float (what the kernel sees) and double (the same values, for the references), device
 * copies, and the finite-difference machinery.
 *
 * Gradient checks: every test writes a double-precision reference forward `ref(ctx, out)`
 * over double inputs held in its ctx. With a random upstream gradient g, the scalar
 * L = sum_i g_i * out_i has dL/dp = the backward's result for every input p, and kt_fd_grad
 * computes it by central differences of the double reference, step h (1e-6 relative to
 * the magnitude of the entry, at least 1e-6): truncation error O(h^2 * f''') and rounding
 * error O(1e-16 / h) are both far below the float kernel's own error (~1e-6 relative), so
 * a mismatch beyond the stated tolerance is a bug in the kernel, not in the check.
 */
#ifndef KD_TESTS_KT_H
#define KD_TESTS_KT_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_test.h"
#include "kernels/backend.h"

static const kd_backend *kt_b;

static inline void kt_open(void)
{
    kd_err err;
    if (kd_backend_open("cpu", 0, &kt_b, &err) != KD_OK) {
        fprintf(stderr, "cannot open the cpu backend: %s\n", err.msg);
        exit(1);
    }
}

static uint64_t kt_rng = 0x9E3779B97F4A7C15ull;

static inline void kt_seed(uint64_t s) { kt_rng = s * 0x9E3779B97F4A7C15ull + 1; }

static inline double kt_uniform(void) /* [0, 1) */
{
    kt_rng ^= kt_rng << 13;
    kt_rng ^= kt_rng >> 7;
    kt_rng ^= kt_rng << 17;
    return (double)(kt_rng >> 11) * (1.0 / 9007199254740992.0);
}

/* A pair of arrays with the same values: f (float, host) and d (double, host). */
typedef struct kt_arr {
    size_t n;
    float *f;
    double *d;
} kt_arr;

static inline kt_arr kt_arr_new(size_t n)
{
    kt_arr a = {n, calloc(n + 1, sizeof(float)), calloc(n + 1, sizeof(double))};
    return a;
}

static inline void kt_arr_free(kt_arr *a)
{
    free(a->f);
    free(a->d);
    memset(a, 0, sizeof *a);
}

/* Uniform in [lo, hi); the double copy holds exactly the float value. */
static inline kt_arr kt_rand(size_t n, double lo, double hi)
{
    kt_arr a = kt_arr_new(n);
    for (size_t i = 0; i < n; i++) {
        a.f[i] = (float)(lo + (hi - lo) * kt_uniform());
        a.d[i] = a.f[i];
    }
    return a;
}

/* Uniform magnitude in [lo, hi) with a random sign (keeps values away from 0). */
static inline kt_arr kt_rand_away(size_t n, double lo, double hi)
{
    kt_arr a = kt_rand(n, lo, hi);
    for (size_t i = 0; i < n; i++)
        if (kt_uniform() < 0.5) a.f[i] = -a.f[i], a.d[i] = -a.d[i];
    return a;
}

/* Device copy of host floats (n may be 0: returns NULL). */
static inline float *kt_dev(const float *host, size_t n)
{
    if (n == 0) return NULL;
    float *p = kt_b->alloc(kt_b, n * sizeof(float));
    kt_b->copy_from_host(kt_b, p, host, n * sizeof(float));
    return p;
}

static inline float *kt_dev_fill(size_t n, float v)
{
    if (n == 0) return NULL;
    float *p = kt_b->alloc(kt_b, n * sizeof(float));
    kt_b->fill(kt_b, p, n, v);
    return p;
}

/* Host copy (malloc'd, n+1 floats so n == 0 is fine) of device floats. */
static inline float *kt_host(const float *dev, size_t n)
{
    float *h = calloc(n + 1, sizeof(float));
    if (n) kt_b->copy_to_host(kt_b, h, dev, n * sizeof(float));
    return h;
}

static inline void kt_dfree(void *p) { kt_b->free(kt_b, p); }

/* Counts entries with |got - want| > atol + rtol*|want|, prints the worst few. */
static inline size_t kt_mismatches(const char *what, const float *got, const double *want, size_t n,
                            double atol, double rtol)
{
    size_t bad = 0;
    double worst = 0.0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        double tol = atol + rtol * fabs(want[i]);
        if (!(e <= tol)) {
            if (bad < 3)
                fprintf(stderr, "  %s[%zu]: got %.9g, want %.9g (|err| %.3g > tol %.3g)\n", what,
                        i, (double)got[i], want[i], e, tol);
            bad++;
        }
        if (e > worst || e != e) worst = e, wi = i;
    }
    if (bad) fprintf(stderr, "  %s: %zu of %zu mismatches, worst |err| %.3g at %zu\n", what, bad, n, worst, wi);
    return bad;
}

#define KT_EXPECT_CLOSE(what, got, want, n, atol, rtol) \
    KD_EXPECT_MSG(kt_mismatches((what), (got), (want), (n), (atol), (rtol)) == 0, "%s", (what))

typedef void (*kt_ref_fn)(void *ctx, double *out);

static inline double kt_dot(const double *a, const double *g, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * g[i];
    return s;
}

/* grad[j] = dL/dp[j] by central differences of L = <ref(ctx), g> (p is one of ctx's double
 * inputs; it is perturbed in place and restored). */
static inline void kt_fd_grad(kt_ref_fn ref, void *ctx, double *p, size_t n, const double *g,
                       size_t out_elems, double *grad)
{
    double *out = calloc(out_elems + 1, sizeof *out);
    for (size_t j = 0; j < n; j++) {
        double v = p[j];
        double h = 1e-6 * fmax(1.0, fabs(v));
        p[j] = v + h;
        ref(ctx, out);
        double lp = kt_dot(out, g, out_elems);
        p[j] = v - h;
        ref(ctx, out);
        double lm = kt_dot(out, g, out_elems);
        p[j] = v;
        grad[j] = (lp - lm) / (2.0 * h);
    }
    free(out);
}

/* Runs the reference once into a fresh double array (caller frees). */
static inline double *kt_ref_out(kt_ref_fn ref, void *ctx, size_t out_elems)
{
    double *out = calloc(out_elems + 1, sizeof *out);
    ref(ctx, out);
    return out;
}

/* Checks a float gradient against the finite-difference gradient of input p. */
static inline void kt_check_grad(const char *what, kt_ref_fn ref, void *ctx, double *p, size_t n,
                          const double *g, size_t out_elems, const float *got, double atol,
                          double rtol)
{
    double *fd = calloc(n + 1, sizeof *fd);
    kt_fd_grad(ref, ctx, p, n, g, out_elems, fd);
    KT_EXPECT_CLOSE(what, got, fd, n, atol, rtol);
    free(fd);
}

/* Checks that got == base + delta elementwise (accumulate mode), in float tolerance. */
static inline void kt_check_accum(const char *what, const float *got, const float *base,
                           const float *delta, size_t n)
{
    double *want = calloc(n + 1, sizeof *want);
    for (size_t i = 0; i < n; i++) want[i] = (double)base[i] + (double)delta[i];
    KT_EXPECT_CLOSE(what, got, want, n, 1e-5, 1e-5);
    free(want);
}

#endif
