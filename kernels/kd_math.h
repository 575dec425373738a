/* kd_math.h — element-wise math written once for the C compiler and nvcc (DESIGN.md §6), so
 * the CPU tests cover the CUDA kernels' arithmetic too.
 *
 * KD_HD marks a function usable on host and device: `__host__ __device__ inline` under
 * nvcc, `static inline` otherwise. Everything is float; each formula is the numerically
 * stable form (no exp of a large positive argument, no log of 0 for finite inputs).
 * Where host and device must agree bit for bit (the optimiser), products and sums go
 * through kd_mul_rn / kd_add_rn: on the device those are __fmul_rn / __fadd_rn, which nvcc
 * never contracts into an FMA; the C build does not contract either (ISO C mode,
 * -ffp-contract=off).
 */
#ifndef KD_KERNELS_KD_MATH_H
#define KD_KERNELS_KD_MATH_H

#include <math.h>

#ifdef __CUDACC__
#define KD_HD __host__ __device__ inline
#else
#define KD_HD static inline
#endif

#ifdef __CUDA_ARCH__
KD_HD float kd_mul_rn(float a, float b) { return __fmul_rn(a, b); }
KD_HD float kd_add_rn(float a, float b) { return __fadd_rn(a, b); }
#else
KD_HD float kd_mul_rn(float a, float b) { return a * b; }
KD_HD float kd_add_rn(float a, float b) { return a + b; }
#endif

KD_HD float kd_relu(float x) { return x > 0.0f ? x : 0.0f; }

/* ReLU' from the output y (y > 0 exactly when x > 0). PyTorch gives 0 at x == 0. */
KD_HD float kd_relu_grad(float y, float dy) { return y > 0.0f ? dy : 0.0f; }

/* sigma(x) = 1/(1+exp(-x)) without overflow: the exp argument is always <= 0. */
KD_HD float kd_sigmoid(float x)
{
    if (x >= 0.0f) {
        float z = expf(-x);
        return 1.0f / (1.0f + z);
    }
    float z = expf(x);
    return z / (1.0f + z);
}

/* softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)). */
KD_HD float kd_softplus(float x) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }

/* Binary cross-entropy with logits, target t in [0, 1]:
 * -t*log(sigma(x)) - (1-t)*log(1-sigma(x)) = softplus(x) - t*x (PyTorch's stable form). */
KD_HD float kd_bce_logits(float x, float t) { return kd_softplus(x) - t * x; }

/* Largest element of a row (NaN propagates like PyTorch's max). */
KD_HD float kd_row_max(const float *x, int cols)
{
    float m = -INFINITY;
    for (int j = 0; j < cols; j++) {
        float v = x[j];
        if (v > m || v != v) m = v;
        if (m != m) break;
    }
    return m;
}

/* y = softmax(x) over one row: exp(x - max) / sum. cols >= 1. y may alias x. */
KD_HD void kd_softmax_row(const float *x, float *y, int cols)
{
    float m = kd_row_max(x, cols);
    if (m == -INFINITY) m = 0.0f;
    float s = 0.0f;
    for (int j = 0; j < cols; j++) {
        float e = expf(x[j] - m);
        y[j] = e;
        s += e;
    }
    float inv = 1.0f / s;
    for (int j = 0; j < cols; j++) y[j] *= inv;
}

/* y = log_softmax(x) over one row: (x - max) - log(sum exp(x - max)), subtracting the max
 * first so large logits lose no precision. y may alias x. */
KD_HD void kd_log_softmax_row(const float *x, float *y, int cols)
{
    float m = kd_row_max(x, cols);
    if (m == -INFINITY) m = 0.0f;
    float s = 0.0f;
    for (int j = 0; j < cols; j++) s += expf(x[j] - m);
    float ls = logf(s);
    for (int j = 0; j < cols; j++) y[j] = (x[j] - m) - ls;
}

/* Backward of softmax from its output: dx_j = y_j * (dy_j - sum_k dy_k y_k). */
KD_HD void kd_softmax_row_bwd(const float *y, const float *dy, float *dx, int cols, int accumulate)
{
    float dot = 0.0f;
    for (int j = 0; j < cols; j++) dot += dy[j] * y[j];
    for (int j = 0; j < cols; j++) {
        float g = y[j] * (dy[j] - dot);
        dx[j] = accumulate ? dx[j] + g : g;
    }
}

/* Backward of log_softmax from its output: dx_j = dy_j - exp(y_j) * sum_k dy_k. */
KD_HD void kd_log_softmax_row_bwd(const float *y, const float *dy, float *dx, int cols,
                                  int accumulate)
{
    float s = 0.0f;
    for (int j = 0; j < cols; j++) s += dy[j];
    for (int j = 0; j < cols; j++) {
        float g = dy[j] - expf(y[j]) * s;
        dx[j] = accumulate ? dx[j] + g : g;
    }
}

/* Source index of nearest-neighbour resampling from in_size to out_size, PyTorch's rule for
 * F.interpolate(mode='nearest', size=...): identity when equal, i/2 for exact doubling,
 * else min(floor(i * (in/out as float)), in - 1). */
KD_HD int kd_nearest_src(int i, int in_size, int out_size)
{
    if (out_size == in_size) return i;
    if (out_size == 2 * in_size) return i >> 1;
    float scale = (float)in_size / (float)out_size;
    int s = (int)floorf((float)i * scale);
    return s < in_size - 1 ? s : in_size - 1;
}

/* One element of an SGD step, torch.optim.SGD with dampening 0 and no Nesterov, in float32
 * and in PyTorch's order: d = g + wd*w; v = mom*v + d; w = w - lr*v (v starting at 0 is
 * the same as PyTorch starting it at d). The CPU backend's sgd_step and the CUDA kernel run
 * exactly this, so both give the same bits for the same inputs. */
KD_HD void kd_sgd_elem(float *w, float g, float *v, float lr, float mom, float wd)
{
    float d = kd_add_rn(g, kd_mul_rn(wd, *w));
    float vi = kd_add_rn(kd_mul_rn(mom, *v), d);
    *v = vi;
    *w = kd_add_rn(*w, -kd_mul_rn(lr, vi));
}

#endif
