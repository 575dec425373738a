/* eltwise.c — element-wise and row-wise operations of the CPU backend: ReLU, sigmoid, the
 * per-level Scale (one learnable scalar times a tensor) and softmax / log-softmax over the
 * last axis. The per-element math is kernels/kd_math.h, shared with the CUDA backend.
 *
 * Conventions (kernels/backend.h): backwards take the forward OUTPUT y (so forwards may run
 * in place); dx overwrites unless accumulate; dscale accumulates. Loops run on the backend's
 * OpenMP threads above KD_CPU_PAR_MIN_ELEMS elements; the dscale reduction adds per-thread
 * partials in a fixed order. The softmax forwards use a vectorised exp (exp_nonpos16 below)
 * over blocks of rows instead of kd_math.h's per-element expf; everything else is
 * kd_math.h's code.
 */
#include "kernels/cpu/cpu_internal.h"
#include "kernels/kd_math.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#define NT(elems) ((elems) >= KD_CPU_PAR_MIN_ELEMS ? b->threads : 1)

void kd_cpu_relu_fwd(const kd_backend *b, size_t elems, const float *x, float *y)
{
#pragma omp parallel for simd num_threads(NT(elems)) schedule(static)
    for (size_t i = 0; i < elems; i++) y[i] = kd_relu(x[i]);
}

void kd_cpu_relu_bwd(const kd_backend *b, size_t elems, const float *y, const float *dy,
                     float *dx, int accumulate)
{
    if (accumulate) {
#pragma omp parallel for simd num_threads(NT(elems)) schedule(static)
        for (size_t i = 0; i < elems; i++) dx[i] += kd_relu_grad(y[i], dy[i]);
    } else {
#pragma omp parallel for simd num_threads(NT(elems)) schedule(static)
        for (size_t i = 0; i < elems; i++) dx[i] = kd_relu_grad(y[i], dy[i]);
    }
}

void kd_cpu_sigmoid_fwd(const kd_backend *b, size_t elems, const float *x, float *y)
{
#pragma omp parallel for simd num_threads(NT(elems)) schedule(static)
    for (size_t i = 0; i < elems; i++) y[i] = kd_sigmoid(x[i]);
}

void kd_cpu_sigmoid_bwd(const kd_backend *b, size_t elems, const float *y, const float *dy,
                        float *dx, int accumulate)
{
#pragma omp parallel for simd num_threads(NT(elems)) schedule(static)
    for (size_t i = 0; i < elems; i++) {
        float g = dy[i] * y[i] * (1.0f - y[i]);
        dx[i] = accumulate ? dx[i] + g : g;
    }
}

void kd_cpu_scale_fwd(const kd_backend *b, size_t elems, const float *scale, const float *x,
                      float *y)
{
    const float s = scale[0];
#pragma omp parallel for simd num_threads(NT(elems)) schedule(static)
    for (size_t i = 0; i < elems; i++) y[i] = s * x[i];
}

#define MAX_THREADS 256

void kd_cpu_scale_bwd(const kd_backend *b, size_t elems, const float *scale, const float *x,
                      const float *dy, float *dx, int accumulate, float *dscale)
{
    const float s = scale[0];
    if (dscale) { /* before dx: dx may alias dy */
        double part[MAX_THREADS] = {0};
        int nt = NT(elems) < MAX_THREADS ? NT(elems) : MAX_THREADS;
#pragma omp parallel num_threads(nt)
        {
            int t = omp_get_thread_num(), T = omp_get_num_threads();
            size_t lo = elems * (size_t)t / (size_t)T, hi = elems * (size_t)(t + 1) / (size_t)T;
            double acc = 0.0;
            for (size_t i = lo; i < hi; i += 4096) {
                size_t e = i + 4096 < hi ? i + 4096 : hi;
                float f = 0.0f;
#pragma omp simd reduction(+ : f)
                for (size_t j = i; j < e; j++) f += dy[j] * x[j];
                acc += f;
            }
            part[t] = acc;
        }
        double total = 0.0;
        for (int t = 0; t < nt; t++) total += part[t];
        dscale[0] += (float)total;
    }
    if (!dx) return;
#pragma omp parallel for simd num_threads(NT(elems)) schedule(static)
    for (size_t i = 0; i < elems; i++) {
        float g = s * dy[i];
        dx[i] = accumulate ? dx[i] + g : g;
    }
}

/* exp(x) for x <= 0 on 16 floats at a time, written with GCC vector extensions (the
 * compiler's own vectoriser will not touch a libm call or, under IEEE trapping rules, the
 * clamps). Cody-Waite reduction x = n*ln2 + r, |r| <= ln2/2, Cephes' degree-5 polynomial
 * for e^r (relative error ~1e-7), 2^n built in the exponent bits. Below -87.3 (e^x < FLT_MIN,
 * and -inf) the result is 0; NaN stays NaN. */
typedef float v16sf __attribute__((vector_size(64)));
typedef int32_t v16si __attribute__((vector_size(64)));

static inline v16sf exp_nonpos16(v16sf x)
{
    const v16sf lo = (v16sf){0} - 87.3f;
    v16si below = x < lo;
    v16si nan = x != x;
    v16sf xc = (v16sf)((below & (v16si)lo) | (~below & (v16si)x));
    xc = (v16sf)(~nan & (v16si)xc); /* NaN lanes compute on 0, replaced below */
    v16si n = __builtin_convertvector(xc * 1.44269504088896341f - 0.5f, v16si);
    v16sf fn = __builtin_convertvector(n, v16sf);
    v16sf r = xc - fn * 0.693359375f + fn * 2.12194440e-4f;
    v16sf p = (v16sf){0} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    v16sf e = p * (v16sf)((n + 127) << 23);
    e = (v16sf)(~below & (v16si)e);
    return (v16sf)((nan & (v16si)x) | (~nan & (v16si)e));
}

/* e[0..n) = exp(e[0..n)) for values <= 0 (or NaN); e has room for n rounded up to 16. */
static void exp_nonpos_array(float *e, size_t n)
{
    for (size_t i = n; i % 16; i++) e[i] = 0.0f;
    for (size_t i = 0; i < n; i += 16) {
        v16sf v;
        memcpy(&v, e + i, sizeof v);
        v = exp_nonpos16(v);
        memcpy(e + i, &v, sizeof v);
    }
}

#define SM_BLOCK_ELEMS 4096

/* Softmax (log_ == 0) or log-softmax over rows [r0, r1): per-row max, then one long
 * vectorised exp over the block, then per-row sums. Same results as kd_softmax_row /
 * kd_log_softmax_row (kernels/kd_math.h) up to exp's last bits. */
static void softmax_rows(const float *x, float *y, size_t r0, size_t r1, int cols, int log_)
{
    float e[SM_BLOCK_ELEMS + 16], mx[SM_BLOCK_ELEMS];
    const size_t per = (size_t)cols <= SM_BLOCK_ELEMS ? SM_BLOCK_ELEMS / (size_t)cols : 1;
    for (size_t rb = r0; rb < r1; rb += per) {
        const size_t re = rb + per < r1 ? rb + per : r1, nr = re - rb;
        if ((size_t)cols > SM_BLOCK_ELEMS) { /* one very long row: the shared scalar path */
            if (log_) kd_log_softmax_row(x + rb * (size_t)cols, y + rb * (size_t)cols, cols);
            else kd_softmax_row(x + rb * (size_t)cols, y + rb * (size_t)cols, cols);
            continue;
        }
        const float *xb = x + rb * (size_t)cols;
        for (size_t r = 0; r < nr; r++) {
            float m = kd_row_max(xb + r * (size_t)cols, cols);
            mx[r] = m == -INFINITY ? 0.0f : m;
        }
        const size_t n = nr * (size_t)cols;
        for (size_t r = 0; r < nr; r++)
            for (int j = 0; j < cols; j++) e[r * (size_t)cols + j] = xb[r * (size_t)cols + j] - mx[r];
        exp_nonpos_array(e, n);
        float *yb = y + rb * (size_t)cols;
        for (size_t r = 0; r < nr; r++) {
            const float *er = e + r * (size_t)cols;
            float sum = 0.0f;
            for (int j = 0; j < cols; j++) sum += er[j];
            float *yr = yb + r * (size_t)cols;
            if (log_) {
                const float *xr = xb + r * (size_t)cols;
                const float ls = logf(sum), m = mx[r];
                for (int j = 0; j < cols; j++) yr[j] = (xr[j] - m) - ls;
            } else {
                const float inv = 1.0f / sum;
                for (int j = 0; j < cols; j++) yr[j] = er[j] * inv;
            }
        }
    }
}

static void softmax_any(const kd_backend *b, size_t rows, int cols, const float *x, float *y,
                        int log_)
{
    if (cols <= 0 || rows == 0) return;
    const size_t chunk = 1024; /* rows per task */
    const size_t tasks = (rows + chunk - 1) / chunk;
#pragma omp parallel for num_threads(NT(rows * (size_t)cols)) schedule(dynamic, 1)
    for (size_t t = 0; t < tasks; t++) {
        size_t r0 = t * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
        softmax_rows(x, y, r0, r1, cols, log_);
    }
}

void kd_cpu_softmax_fwd(const kd_backend *b, size_t rows, int cols, const float *x, float *y)
{
    softmax_any(b, rows, cols, x, y, 0);
}

void kd_cpu_softmax_bwd(const kd_backend *b, size_t rows, int cols, const float *y,
                        const float *dy, float *dx, int accumulate)
{
    if (cols <= 0) return;
#pragma omp parallel for num_threads(NT(rows * (size_t)cols)) schedule(dynamic, 256)
    for (size_t r = 0; r < rows; r++) {
        size_t o = r * (size_t)cols;
        kd_softmax_row_bwd(y + o, dy + o, dx + o, cols, accumulate);
    }
}

void kd_cpu_log_softmax_fwd(const kd_backend *b, size_t rows, int cols, const float *x,
                            float *y)
{
    softmax_any(b, rows, cols, x, y, 1);
}

void kd_cpu_log_softmax_bwd(const kd_backend *b, size_t rows, int cols, const float *y,
                            const float *dy, float *dx, int accumulate)
{
    if (cols <= 0) return;
#pragma omp parallel for num_threads(NT(rows * (size_t)cols)) schedule(dynamic, 256)
    for (size_t r = 0; r < rows; r++) {
        size_t o = r * (size_t)cols;
        kd_log_softmax_row_bwd(y + o, dy + o, dx + o, cols, accumulate);
    }
}
