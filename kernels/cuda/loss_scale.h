/* loss_scale.h — dynamic loss scaling for fp16 math (kd_cuda.h, KD_CUDA_MATH_FP16), with the
 * rule and defaults of PyTorch's torch.cuda.amp.GradScaler: the loss gradient is multiplied
 * by `scale` before backward; after it, the gradients are checked (kd_cuda_all_finite);
 * a step with an Inf/NaN is skipped and the scale backs off, otherwise the gradients are
 * multiplied by 1/scale, the step is taken, and after growth_interval such steps in a row
 * the scale grows. Plain C, no device: the worker keeps one per run (and in checkpoints),
 * tests/unit/cuda checks it on the host.
 *
 * Per step:
 *     seed the loss gradient with s->scale;  backward;
 *     ok = kd_cuda_all_finite(b, grads, n);
 *     if (ok) { b->scal(b, n, 1.0f / s->scale, grads); optimiser step; }
 *     kd_loss_scaler_update(s, !ok);
 * With bf16 or tf32 math (fp32 range) no scaling is needed: scale stays 1 if never updated
 * (kd_loss_scaler_off).
 */
#ifndef KD_KERNELS_CUDA_LOSS_SCALE_H
#define KD_KERNELS_CUDA_LOSS_SCALE_H

#include <math.h>

typedef struct kd_loss_scaler {
    float scale;           /* current multiplier of the loss gradient */
    float growth_factor;   /* 2.0 */
    float backoff_factor;  /* 0.5 */
    int growth_interval;   /* 2000 finite steps in a row before growing */
    int good_steps;        /* finite steps since the last change */
} kd_loss_scaler;

/* GradScaler's defaults: init_scale 2^16, growth 2, backoff 0.5, interval 2000. */
static inline kd_loss_scaler kd_loss_scaler_default(void)
{
    kd_loss_scaler s = {65536.0f, 2.0f, 0.5f, 2000, 0};
    return s;
}

/* A scaler that never scales (fp32, tf32, bf16 math). */
static inline kd_loss_scaler kd_loss_scaler_off(void)
{
    kd_loss_scaler s = {1.0f, 1.0f, 1.0f, 1 << 30, 0};
    return s;
}

/* After a step's gradient check: found_inf non-zero when a gradient was Inf/NaN (that step
 * was skipped). Returns the scale for the next step. The scale never becomes Inf or 0. */
static inline float kd_loss_scaler_update(kd_loss_scaler *s, int found_inf)
{
    if (found_inf) {
        float next = s->scale * s->backoff_factor;
        if (next > 0.0f) s->scale = next;
        s->good_steps = 0;
    } else if (++s->good_steps >= s->growth_interval) {
        float next = s->scale * s->growth_factor;
        if (isfinite(next)) s->scale = next;
        s->good_steps = 0;
    }
    return s->scale;
}

#endif
