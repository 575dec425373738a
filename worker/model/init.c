/* init.c — MMDetection's initialisation of a detector (GFL, ATSS, RetinaNet) trained from
 * scratch, and the project's random generator.
 *
 *   backbone convs     Kaiming normal, mode fan_out, ReLU gain: std = sqrt(2 / (c_out*k*k))
 *   backbone BN        weight 1, bias 0, running mean 0, running var 1
 *   neck convs         Xavier uniform, gain 1: U(-b, b), b = sqrt(6 / (fan_in + fan_out)),
 *                      fan = channels * k * k; bias 0
 *   head convs         Normal(0, 0.01), bias 0; the classification conv's bias (gfl_cls,
 *                      atss_cls, retina_cls) -log((1 - 0.01) / 0.01)
 *   head GN            weight 1, bias 0; Scales 1.0; integral.project = 0, 1, ..., reg_max
 *
 * RNG: PCG32 (M. O'Neill, pcg-random.org: 64-bit LCG state, XSH-RR 32-bit output). Each
 * parameter draws from its own stream (stream = its table index), so a tensor's values
 * depend only on the seed and its position in the table, not on what was drawn before.
 * Uniform doubles take 53 bits from two outputs; normals are Box-Muller pairs.
 */
#include "worker/model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void kd_model_rng_seed(kd_model_rng *r, uint64_t seed, uint64_t stream)
{
    r->state = 0;
    r->inc = (stream << 1u) | 1u;
    r->has_spare = 0;
    kd_model_rng_u32(r);
    r->state += seed;
    kd_model_rng_u32(r);
}

uint32_t kd_model_rng_u32(kd_model_rng *r)
{
    uint64_t old = r->state;
    r->state = old * 6364136223846793005ULL + r->inc;
    uint32_t xs = (uint32_t)(((old >> 18u) ^ old) >> 27u), rot = (uint32_t)(old >> 59u);
    return (xs >> rot) | (xs << ((-rot) & 31u));
}

double kd_model_rng_uniform(kd_model_rng *r)
{
    uint64_t a = kd_model_rng_u32(r) >> 5, b = kd_model_rng_u32(r) >> 6;
    return ((double)a * 67108864.0 + (double)b) / 9007199254740992.0;
}

double kd_model_rng_normal(kd_model_rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u1 = 1.0 - kd_model_rng_uniform(r), u2 = kd_model_rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
    r->spare = rad * sin(th);
    r->has_spare = 1;
    return rad * cos(th);
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

void kd_model_init(kd_model *m, uint64_t seed)
{
    const kd_params *P = &m->params;
    float *host = kd_xmalloc(P->total_elems * sizeof(float));
    for (int i = 0; i < P->n; i++) {
        const kd_param *p = &P->p[i];
        if (p->dtype == KD_DT_I64) {
            P->i64_host[p->offset] = 0;
            continue;
        }
        float *v = host + p->offset;
        kd_model_rng r;
        kd_model_rng_seed(&r, seed, (uint64_t)i);
        const char *n = p->name;
        int is_bn = strstr(n, ".bn") || strstr(n, "backbone.bn1") || strstr(n, "downsample.1");
        if (ends_with(n, "running_var") || (is_bn && ends_with(n, ".weight")) ||
            strstr(n, ".gn.weight") || strstr(n, ".scale")) {
            for (size_t k = 0; k < p->elems; k++) v[k] = 1.0f;
        } else if (ends_with(n, "integral.project")) {
            for (size_t k = 0; k < p->elems; k++) v[k] = (float)k;
        } else if (p->ndim == 4) {
            double fan_in = (double)(p->shape[1] * p->shape[2] * p->shape[3]);
            double fan_out = (double)(p->shape[0] * p->shape[2] * p->shape[3]);
            if (strncmp(n, "backbone.", 9) == 0) {
                double sd = sqrt(2.0 / fan_out);
                for (size_t k = 0; k < p->elems; k++) v[k] = (float)(sd * kd_model_rng_normal(&r));
            } else if (strncmp(n, "neck.", 5) == 0) {
                double b = sqrt(6.0 / (fan_in + fan_out));
                for (size_t k = 0; k < p->elems; k++) v[k] = (float)(b * (2.0 * kd_model_rng_uniform(&r) - 1.0));
            } else {
                for (size_t k = 0; k < p->elems; k++) v[k] = (float)(0.01 * kd_model_rng_normal(&r));
            }
        } else if (strncmp(n, "bbox_head.", 10) == 0 && ends_with(n, "_cls.bias")) {
            for (size_t k = 0; k < p->elems; k++) v[k] = (float)(-log((1.0 - 0.01) / 0.01));
        } else {
            for (size_t k = 0; k < p->elems; k++) v[k] = 0.0f; /* biases, BN bias and mean */
        }
    }
    m->be->copy_from_host(m->be, P->data, host, P->total_elems * sizeof(float));
    free(host);
}
