/* params.c — the parameter table and the activation-arena planner (DESIGN.md §5).
 *
 * Table: one entry per MMDetection state-dict key (name, shape, element offset, trainable,
 * dtype). kd_params_finish lays out the float arena with every trainable entry first, in
 * registration order, then the frozen parameters and the buffers (BN running statistics,
 * the integral projection). So the gradient and momentum arenas are exactly [0, train_elems)
 * of the same layout: the optimiser is one loop and an all-reduce one call per bucket.
 * int64 entries (BN num_batches_tracked) live in a small host array; they are kept so a
 * loaded MMDetection state dict saves back complete, and are never used.
 *
 * Planner: a model describes its buffers once per pass; kd_plan_take hands out element
 * offsets. Persistent takes (slot < 0) bump a counter. In inference mode a take with slot
 * s >= 0 shares region s with every other take of that slot (its size is the largest);
 * in training mode every take is persistent, except inside a stretch marked `share` (layers
 * the backward never reaches, such as frozen stages below the lowest trainable one). The sizing pass runs with base 0, the binding
 * pass with the real arena base, once the slot offsets are known.
 */
#include "worker/model/model.h"

#include <stdlib.h>
#include <string.h>

int kd_params_add(kd_params *t, const char *name, int trainable, int dtype, int ndim,
                  int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->p = kd_xrealloc(t->p, (size_t)t->cap * sizeof *t->p);
    }
    kd_param *p = &t->p[t->n];
    memset(p, 0, sizeof *p);
    KD_CHECK(strlen(name) < sizeof p->name, "%s", name);
    strcpy(p->name, name);
    p->ndim = ndim;
    int64_t d[4] = {d0, d1, d2, d3};
    p->elems = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = d[i];
        p->elems *= (size_t)d[i];
    }
    p->trainable = trainable && dtype == KD_DT_F32;
    p->dtype = dtype;
    return t->n++;
}

void kd_params_finish(kd_params *t, const kd_backend *be, int with_grads)
{
    size_t off = 0;
    for (int i = 0; i < t->n; i++)
        if (t->p[i].dtype == KD_DT_F32 && t->p[i].trainable) {
            t->p[i].offset = off;
            off += t->p[i].elems;
        }
    t->train_elems = off;
    size_t ioff = 0;
    for (int i = 0; i < t->n; i++) {
        if (t->p[i].dtype == KD_DT_I64) {
            t->p[i].offset = ioff;
            ioff += t->p[i].elems;
        } else if (!t->p[i].trainable) {
            t->p[i].offset = off;
            off += t->p[i].elems;
        }
    }
    t->total_elems = off;
    t->i64_elems = ioff;
    t->be = be;
    t->data = be->alloc(be, off * sizeof(float));
    be->zero(be, t->data, off * sizeof(float));
    t->i64_host = kd_xcalloc(ioff ? ioff : 1, sizeof(int64_t));
    if (with_grads && t->train_elems) {
        t->grad = be->alloc(be, t->train_elems * sizeof(float));
        t->mom = be->alloc(be, t->train_elems * sizeof(float));
        be->zero(be, t->grad, t->train_elems * sizeof(float));
        be->zero(be, t->mom, t->train_elems * sizeof(float));
    }
}

size_t kd_params_grad_lo(const kd_params *t, int first)
{
    for (int i = first < 0 ? 0 : first; i < t->n; i++)
        if (t->p[i].dtype == KD_DT_F32 && t->p[i].trainable) return t->p[i].offset;
    return t->train_elems;
}

int kd_params_find(const kd_params *t, const char *name)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->p[i].name, name) == 0) return i;
    return -1;
}

float *kd_params_ptr(const kd_params *t, int idx)
{
    KD_CHECK(idx >= 0 && idx < t->n && t->p[idx].dtype == KD_DT_F32);
    return t->data + t->p[idx].offset;
}

float *kd_params_grad(const kd_params *t, int idx)
{
    KD_CHECK(idx >= 0 && idx < t->n);
    if (!t->grad || !t->p[idx].trainable) return NULL;
    return t->grad + t->p[idx].offset;
}

void kd_params_free(kd_params *t)
{
    if (t->be) {
        t->be->free(t->be, t->data);
        t->be->free(t->be, t->grad);
        t->be->free(t->be, t->mom);
    }
    free(t->i64_host);
    free(t->p);
    memset(t, 0, sizeof *t);
}

float *kd_plan_take(kd_plan *p, size_t elems, int slot)
{
    elems = (elems + 15) & ~(size_t)15; /* 64-byte aligned views */
    size_t off;
    if (slot == KD_PLAN_GRAD && !p->inference) {
        off = p->grad_off + p->grad_used;
        p->grad_used += elems;
    } else if ((p->inference || p->share) && slot >= 0) {
        KD_CHECK(slot < KD_PLAN_SLOTS);
        if (elems > p->slot_elems[slot]) p->slot_elems[slot] = elems;
        off = p->slot_off[slot];
    } else {
        off = p->used;
        p->used += elems;
    }
    return (float *)(p->base + off * sizeof(float));
}
