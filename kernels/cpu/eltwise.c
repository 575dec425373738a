/* eltwise.c — element-wise and row-wise operations of the CPU backend: ReLU, sigmoid, the
 * per-level Scale (one learnable scalar times a tensor) and softmax / log-softmax over the
 * last axis. The per-element math is kernels/kd_math.h, shared with the CUDA backend.
 *
 * Conventions (kernels/backend.h): backwards take the forward OUTPUT y (so forwards may run
 * in place); dx overwrites unless accumulate; dscale accumulates. Loops run on the backend's
 * OpenMP threads above KD_CPU_PAR_MIN_ELEMS elements; the dscale reduction adds per-thread
 * partials in a fixed order.
 */
#include "kernels/cpu/cpu_internal.h"
#include "kernels/kd_math.h"

#include <omp.h>

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

void kd_cpu_softmax_fwd(const kd_backend *b, size_t rows, int cols, const float *x, float *y)
{
    if (cols <= 0) return;
#pragma omp parallel for num_threads(NT(rows * (size_t)cols)) schedule(dynamic, 256)
    for (size_t r = 0; r < rows; r++)
        kd_softmax_row(x + r * (size_t)cols, y + r * (size_t)cols, cols);
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
    if (cols <= 0) return;
#pragma omp parallel for num_threads(NT(rows * (size_t)cols)) schedule(dynamic, 256)
    for (size_t r = 0; r < rows; r++)
        kd_log_softmax_row(x + r * (size_t)cols, y + r * (size_t)cols, cols);
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
