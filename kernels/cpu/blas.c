/* blas.c — GEMM through OpenBLAS and the BLAS-1 style operations of the CPU backend
 * (axpy, scal, add, sum, dot) and the optimiser's SGD step.
 *
 * Conventions (kernels/backend.h): row-major GEMM, C = alpha*op(A)*op(B) + beta*C with the
 * leading dimensions as stored. The element-wise loops run on the backend's OpenMP threads
 * above KD_CPU_PAR_MIN_ELEMS elements. sum() adds per-thread partial sums in a fixed order,
 * so it is deterministic for a given thread count; dot() does the same with per-element
 * products in double. sgd_step runs kernels/kd_math.h's kd_sgd_elem per element (the CUDA
 * kernel runs the same function); elements are independent, so the thread count does not
 * change the result.
 */
#include "kernels/cpu/cpu_internal.h"

#include "kernels/kd_math.h"

#include <omp.h>

#include <cblas.h>

void openblas_set_num_threads(int num_threads);

/* OpenBLAS's thread count is process-wide: set it when a backend with another count calls. */
static int blas_threads;

void kd_cpu_gemm(const kd_backend *b, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *bm, int ldb, float beta, float *c, int ldc)
{
    KD_CHECK(m >= 0 && n >= 0 && k >= 0);
    if (m == 0 || n == 0) return;
    if (k == 0) { /* op(A)*op(B) is all zeros; BLAS handles it, but keep it explicit */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
        return;
    }
    if (blas_threads != b->threads) {
        openblas_set_num_threads(b->threads);
        blas_threads = b->threads;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, bm, ldb, beta, c, ldc);
}

void kd_cpu_axpy(const kd_backend *b, size_t elems, float alpha, const float *x, float *y)
{
    int nt = elems >= KD_CPU_PAR_MIN_ELEMS ? b->threads : 1;
#pragma omp parallel for simd num_threads(nt) schedule(static)
    for (size_t i = 0; i < elems; i++) y[i] += alpha * x[i];
}

void kd_cpu_scal(const kd_backend *b, size_t elems, float alpha, float *x)
{
    int nt = elems >= KD_CPU_PAR_MIN_ELEMS ? b->threads : 1;
#pragma omp parallel for simd num_threads(nt) schedule(static)
    for (size_t i = 0; i < elems; i++) x[i] *= alpha;
}

void kd_cpu_add(const kd_backend *b, size_t elems, const float *a, const float *bb, float *y)
{
    int nt = elems >= KD_CPU_PAR_MIN_ELEMS ? b->threads : 1;
#pragma omp parallel for simd num_threads(nt) schedule(static)
    for (size_t i = 0; i < elems; i++) y[i] = a[i] + bb[i];
}

#define SUM_MAX_THREADS 256

void kd_cpu_sum(const kd_backend *b, size_t elems, const float *x, double *out_host)
{
    double part[SUM_MAX_THREADS] = {0};
    int nt = elems >= KD_CPU_PAR_MIN_ELEMS ? b->threads : 1;
    if (nt > SUM_MAX_THREADS) nt = SUM_MAX_THREADS;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        size_t lo = elems * (size_t)t / (size_t)T, hi = elems * (size_t)(t + 1) / (size_t)T;
        double s = 0.0;
        /* float partials over blocks of 4096 (vectorised), added in double */
        for (size_t i = lo; i < hi; i += 4096) {
            size_t e = i + 4096 < hi ? i + 4096 : hi;
            float f = 0.0f;
#pragma omp simd reduction(+ : f)
            for (size_t j = i; j < e; j++) f += x[j];
            s += f;
        }
        part[t] = s;
    }
    double s = 0.0;
    for (int t = 0; t < nt; t++) s += part[t];
    *out_host = s;
}

void kd_cpu_dot(const kd_backend *b, size_t elems, const float *x, const float *y, double *out_host)
{
    double part[SUM_MAX_THREADS] = {0};
    int nt = elems >= KD_CPU_PAR_MIN_ELEMS ? b->threads : 1;
    if (nt > SUM_MAX_THREADS) nt = SUM_MAX_THREADS;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        size_t lo = elems * (size_t)t / (size_t)T, hi = elems * (size_t)(t + 1) / (size_t)T;
        double s = 0.0;
        for (size_t i = lo; i < hi; i++) s += (double)x[i] * (double)y[i];
        part[t] = s;
    }
    double s = 0.0;
    for (int t = 0; t < nt; t++) s += part[t];
    *out_host = s;
}

void kd_cpu_sgd_step(const kd_backend *b, size_t elems, float lr, float momentum,
                     float weight_decay, float *w, const float *g, float *v)
{
    int nt = elems >= KD_CPU_PAR_MIN_ELEMS ? b->threads : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t i = 0; i < elems; i++) kd_sgd_elem(&w[i], g[i], &v[i], lr, momentum, weight_decay);
}
