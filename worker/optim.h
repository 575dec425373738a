/* optim.h — SGD with momentum and weight decay, gradient-norm clipping, and the learning
 * rate schedule: MMDetection's automatic LR scaling, mmengine's LinearLR warm-up by
 * iteration and MultiStepLR by epoch, multiplied (crosskd.md §9).
 *
 * SGD follows torch.optim.SGD (dampening 0, no Nesterov), applied to flat float ranges so
 * a model's whole trainable arena is one call:
 *     g' = g + weight_decay * w;   v = momentum * v + g';   w -= lr * v
 * (PyTorch starts v at g' on the first step, which is the same as v = 0 before it.)
 * The step, the norm and the clipping run through the backend on its device buffers; the
 * element math is kernels/kd_math.h's kd_sgd_elem, the same on the CPU and the GPU.
 */
#ifndef KD_OPTIM_H
#define KD_OPTIM_H

#include <stddef.h>

#include "kernels/backend.h"

typedef struct kd_sgd_cfg {
    double momentum, weight_decay;
} kd_sgd_cfg;

/* One SGD step over n_elems parameters w with gradients g and momentum buffer v (device
 * buffers of backend b). */
void kd_sgd_step(const kd_backend *b, float *w, const float *g, float *v, size_t n_elems,
                 const kd_sgd_cfg *cfg, double lr);

/* Sum of squares of a gradient range (device), in double: the squared L2 norm. Several
 * ranges make one global norm as sqrt of the sum of their kd_grad_sumsq. */
double kd_grad_sumsq(const kd_backend *b, const float *g, size_t n_elems);
/* torch.nn.utils.clip_grad_norm_'s coefficient: max_norm / (norm + 1e-6) when that is < 1,
 * else 1 (no clipping). */
double kd_grad_clip_coef(double norm, double max_norm);
/* g *= coef (device) when coef < 1, as clip_grad_norm_ does for every range of the norm. */
void kd_grad_clip(const kd_backend *b, float *g, size_t n_elems, double coef);

typedef struct kd_lr_schedule {
    double base_lr;         /* lr after automatic scaling */
    double warmup_start_factor;
    long long warmup_iters; /* mmengine LinearLR end (begin 0); factor reaches 1 at end-1 */
    int n_milestones;
    long long milestones[16]; /* epochs */
    double gamma;
} kd_lr_schedule;

/* MMDetection's auto_scale_lr: lr * total_batch / base_batch when enabled. */
double kd_lr_autoscale(double lr, int enable, long long world_size, long long batch_per_rank,
                       long long base_batch_size);
/* Learning rate at global iteration `iter` (0-based) inside epoch `epoch` (0-based). */
double kd_lr_at(const kd_lr_schedule *s, long long iter, long long epoch);

#endif
