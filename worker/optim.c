/* optim.c — see optim.h. Loops are plain C over contiguous ranges so the compiler
 * vectorises them; OpenMP splits the range across the rank's threads. Every element's
 * update is independent, so the result does not depend on the thread count. */
#include "worker/optim.h"

#include <math.h>

void kd_sgd_step(float *w, const float *g, float *v, size_t n_elems, const kd_sgd_cfg *cfg, double lr)
{
    const float mom = (float)cfg->momentum, wd = (float)cfg->weight_decay, flr = (float)lr;
#pragma omp parallel for schedule(static) if (n_elems > 65536)
    for (size_t i = 0; i < n_elems; i++) {
        float d = g[i] + wd * w[i];
        float vi = mom * v[i] + d;
        v[i] = vi;
        w[i] -= flr * vi;
    }
}

double kd_grad_norm(const float *g, size_t n_elems)
{
    /* Fixed-order blocked sum: deterministic whatever the thread count. */
    enum { BLOCK = 4096 };
    size_t n_blocks = (n_elems + BLOCK - 1) / BLOCK;
    double total = 0.0;
    for (size_t b = 0; b < n_blocks; b++) {
        size_t end = (b + 1) * BLOCK < n_elems ? (b + 1) * BLOCK : n_elems;
        double s = 0.0;
        for (size_t i = b * BLOCK; i < end; i++) s += (double)g[i] * g[i];
        total += s;
    }
    return sqrt(total);
}

double kd_grad_clip(float *g, size_t n_elems, double norm, double max_norm)
{
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        float c = (float)coef;
        for (size_t i = 0; i < n_elems; i++) g[i] *= c;
    }
    return norm;
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
