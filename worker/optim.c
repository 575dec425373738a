/* optim.c — see optim.h. The step, the norm and the clipping are backend calls (the
 * element math lives in kernels/kd_math.h so the CPU and CUDA backends share it); what is
 * left here is the schedule, plain arithmetic on the host. */
#include "worker/optim.h"

#include <math.h>

void kd_sgd_step(const kd_backend *b, float *w, const float *g, float *v, size_t n_elems,
                 const kd_sgd_cfg *cfg, double lr)
{
    b->sgd_step(b, n_elems, (float)lr, (float)cfg->momentum, (float)cfg->weight_decay, w, g, v);
}

double kd_grad_sumsq(const kd_backend *b, const float *g, size_t n_elems)
{
    double s = 0.0;
    if (n_elems) b->dot(b, n_elems, g, g, &s);
    return s;
}

double kd_grad_clip_coef(double norm, double max_norm)
{
    double coef = max_norm / (norm + 1e-6);
    return coef < 1.0 ? coef : 1.0;
}

void kd_grad_clip(const kd_backend *b, float *g, size_t n_elems, double coef)
{
    if (coef < 1.0 && n_elems) b->scal(b, n_elems, (float)coef, g);
}

double kd_lr_autoscale(double lr, int enable, long long world_size, long long batch_per_rank,
                       long long base_batch_size)
{
    if (!enable || base_batch_size <= 0) return lr;
    return lr * (double)(world_size * batch_per_rank) / (double)base_batch_size;
}

double kd_lr_at(const kd_lr_schedule *s, long long iter, long long epoch)
{
    double factor = 1.0;
    if (s->warmup_iters > 1 && iter < s->warmup_iters) {
        /* mmengine LinearLR: total_iters = end - begin - 1, factor linear in iter. */
        double total = (double)(s->warmup_iters - 1);
        factor = s->warmup_start_factor + (1.0 - s->warmup_start_factor) * (double)iter / total;
    }
    for (int m = 0; m < s->n_milestones; m++)
        if (epoch >= s->milestones[m]) factor *= s->gamma;
    return s->base_lr * factor;
}
