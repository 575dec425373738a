/* model.c — the detector object: construction from the config (ResNet, FPN and the dense
 * head of model.bbox_head.type into one parameter table), the activation arena planned once for the largest batch
 * shape, forward (keeping what backward and CrossKD need) and backward.
 *
 * Arena: pass 1 sizes every buffer for opts.max_* (each buffer is monotone in N, H, W, so
 * smaller batches fit the same views); pass 2 binds the views. Training mode keeps every
 * activation plus the gradient buffers (FPN level gradients, backbone stage gradients, the
 * head output gradients (cls, reg, centerness), four scratch buffers as large as the largest activation).
 * The activation gradients and backward scratch (d_cls, d_reg, d_held, the FPN gradients,
 * g[]) share memory with the forward-only temporaries of frozen stages: they hold data from
 * the end of a forward to the end of the backward.
 * Inference mode (the frozen teacher, evaluation) shares intermediate buffers between
 * layers and keeps only the backbone stage outputs, the FPN outputs, the head outputs and
 * the held features. The peak per arena is logged at construction.
 */
#include "worker/model/model_internal.h"

#include <stdlib.h>
#include <string.h>

#include "proto/log.h"

/* Inference slots: resnet uses 0..4; head 5..8. */
enum { SLOT_HEAD_CONV = 5, SLOT_HEAD_A = 6, SLOT_HEAD_B = 7, SLOT_HEAD_PRED = 8 };

int kd_model_num_levels(const kd_model *m) { return m->fpn.num_outs; }

static void layout(kd_model *m, int n, int h, int w, kd_plan *plan)
{
    int training = !m->opts.inference, hold = m->opts.hold_idx;
    kd_resnet_layout(&m->bb, n, h, w, plan);
    kd_fpn_layout(&m->fpn, m->bb.out_s, plan, training);
    const kd_head *hd = &m->head;
    size_t gmax = kd_resnet_max_elems(&m->bb);
    for (int l = 0; l < m->fpn.num_outs; l++) {
        kd_shape xs = m->fpn.out_s[l];
        m->lvl_s[l] = (kd_shape){xs.n, hd->F, xs.h, xs.w};
        size_t e = kd_shape_elems(m->lvl_s[l]), s = (size_t)n * hd->G, hw = (size_t)xs.h * xs.w;
        if (e > gmax) gmax = e;
        if (kd_shape_elems(xs) > gmax) gmax = kd_shape_elems(xs);
        if (!plan) continue;
        for (int t = 0; t < 2; t++) {
            kd_head_tower_acts *a = &m->acts[l][t];
            for (int j = 0; j < hd->S; j++) {
                a->conv[j] = kd_plan_take(plan, e, SLOT_HEAD_CONV);
                a->out[j] = kd_plan_take(plan, e, j == hold - 1 ? -1 : (j % 2 ? SLOT_HEAD_B : SLOT_HEAD_A));
                a->mean[j] = kd_plan_take(plan, s, -1);
                a->rstd[j] = kd_plan_take(plan, s, -1);
            }
            a->pred_raw = t == KD_TOWER_REG
                              ? kd_plan_take(plan, (size_t)n * hd->reg_c * hw, SLOT_HEAD_PRED)
                              : NULL;
            if (hold >= 0) m->held[l][t] = hold == 0 ? m->fpn.out[l] : a->out[hold - 1];
            if (training && hold >= 0)
                m->d_held[l][t] = kd_plan_take(plan, hold == 0 ? kd_shape_elems(xs) : e, KD_PLAN_GRAD);
        }
        m->cls[l] = kd_plan_take(plan, (size_t)n * hd->cls_c * hw, -1);
        m->reg[l] = kd_plan_take(plan, (size_t)n * hd->reg_c * hw, -1);
        m->ctr[l] = hd->ctr_tower >= 0 ? kd_plan_take(plan, (size_t)n * hd->A * hw, -1) : NULL;
        if (training) {
            m->d_cls[l] = kd_plan_take(plan, (size_t)n * hd->cls_c * hw, KD_PLAN_GRAD);
            m->d_reg[l] = kd_plan_take(plan, (size_t)n * hd->reg_c * hw, KD_PLAN_GRAD);
            m->d_ctr[l] = hd->ctr_tower >= 0 ? kd_plan_take(plan, (size_t)n * hd->A * hw, KD_PLAN_GRAD) : NULL;
        }
    }
    if (plan && training) {
        for (int i = 0; i < 4; i++) m->g[i] = kd_plan_take(plan, gmax, KD_PLAN_GRAD);
        m->scratch_elems = gmax;
    }
}

/* The gradient offsets from which only head (grad_lo_head), or only neck and head
 * (grad_lo_neck), parameters follow: the end of the last trainable parameter of an earlier
 * module. The layout puts trainable entries in registration order (backbone, neck, head),
 * so these are where the neck's and the head's gradients begin. */
static void grad_suffixes(kd_model *m)
{
    const kd_params *P = &m->params;
    m->grad_lo_head = m->grad_lo_neck = 0;
    for (int i = 0; i < P->n; i++) {
        const kd_param *p = &P->p[i];
        if (!p->trainable) continue;
        size_t end = p->offset + p->elems;
        if (strncmp(p->name, "bbox_head.", 10) != 0 && end > m->grad_lo_head) m->grad_lo_head = end;
        if (strncmp(p->name, "backbone.", 9) == 0 && end > m->grad_lo_neck) m->grad_lo_neck = end;
    }
}

kd_status kd_model_create(const kd_backend *be, const kd_model_cfg *cfg,
                          const kd_model_opts *opts, kd_model **out, kd_err *err)
{
    *out = NULL;
    if (opts->max_n < 1 || opts->max_h < 32 || opts->max_w < 32)
        return kd_errf(err, KD_EINVAL, "model: planned batch shape %dx%dx%d is too small",
                       opts->max_n, opts->max_h, opts->max_w);
    if (opts->hold_idx > cfg->bbox_head.stacked_convs)
        return kd_errf(err, KD_EINVAL,
                       "model.kd_cfg.reused_teacher_head_idx: %d exceeds stacked_convs %lld",
                       opts->hold_idx, cfg->bbox_head.stacked_convs);
    kd_model *m = kd_xcalloc(1, sizeof *m);
    m->be = be;
    m->cfg = *cfg;
    m->opts = *opts;
    kd_status st;
    if ((st = kd_resnet_build(&m->bb, &m->params, cfg, err)) ||
        (st = kd_fpn_build(&m->fpn, &m->params, cfg, m->bb.out_c, err)) ||
        (st = kd_head_build(&m->head, &m->params, cfg, m->fpn.num_outs, err))) {
        kd_model_destroy(m);
        return st;
    }
    kd_params_finish(&m->params, be, !opts->inference);
    grad_suffixes(m);
    kd_plan plan = {0};
    plan.inference = opts->inference;
    layout(m, opts->max_n, opts->max_h, opts->max_w, &plan);
    size_t persist = plan.used, total = persist;
    kd_plan bind = {0};
    bind.inference = opts->inference;
    for (int s = 0; s < KD_PLAN_SLOTS; s++) {
        bind.slot_off[s] = total;
        total += plan.slot_elems[s];
    }
    bind.grad_off = persist; /* overlaps the forward-only slots */
    if (persist + plan.grad_used > total) total = persist + plan.grad_used;
    m->arena_elems = total;
    m->arena = be->alloc(be, total * sizeof(float));
    be->zero(be, m->arena, total * sizeof(float));
    bind.base = (uintptr_t)m->arena;
    layout(m, opts->max_n, opts->max_h, opts->max_w, &bind);
    KD_CHECK(bind.used == persist);
    m->n = opts->max_n;
    m->h = opts->max_h;
    m->w = opts->max_w;
    KD_INFO("model: %s R%d (base %d) %s: parameters %.2f MB (%zu trainable of %zu), gradients "
            "%.2f MB, momentum %.2f MB, activations %.2f MB for %dx3x%dx%d",
            kd_head_type_name(m->head.type), m->bb.depth, m->bb.base, opts->inference ? "inference" : "training",
            m->params.total_elems * 4e-6, m->params.train_elems, m->params.total_elems,
            m->params.grad ? m->params.train_elems * 4e-6 : 0.0,
            m->params.mom ? m->params.train_elems * 4e-6 : 0.0, total * 4e-6, opts->max_n,
            opts->max_h, opts->max_w);
    *out = m;
    return KD_OK;
}

void kd_model_destroy(kd_model *m)
{
    if (!m) return;
    if (m->be) m->be->free(m->be, m->arena);
    kd_params_free(&m->params);
    kd_resnet_free(&m->bb);
    free(m);
}

size_t kd_model_param_elems(const kd_model *m) { return m->params.total_elems; }
size_t kd_model_activation_bytes(const kd_model *m) { return m->arena_elems * sizeof(float); }

kd_status kd_model_forward(kd_model *m, const float *img, int n, int h, int w, kd_err *err)
{
    if (n < 1 || n > m->opts.max_n || h > m->opts.max_h || w > m->opts.max_w || h < 1 || w < 1)
        return kd_errf(err, KD_EINVAL, "model: batch %dx3x%dx%d exceeds the planned %dx3x%dx%d", n,
                       h, w, m->opts.max_n, m->opts.max_h, m->opts.max_w);
    const kd_backend *be = m->be;
    m->n = n;
    m->h = h;
    m->w = w;
    layout(m, n, h, w, NULL);
    m->img = img;
    kd_resnet_fwd(be, &m->bb, &m->params, img);
    kd_fpn_fwd(be, &m->fpn, &m->params, m->bb.out);
    for (int l = 0; l < m->fpn.num_outs; l++)
        for (int t = 0; t < 2; t++)
            kd_head_tower_fwd(be, &m->head, &m->params, t, l, 0, m->fpn.out_s[l], m->fpn.out[l],
                              &m->acts[l][t], t == KD_TOWER_CLS ? m->cls[l] : m->reg[l], m->ctr[l]);
    return KD_OK;
}

void kd_model_zero_grad(kd_model *m)
{
    if (m->params.grad) m->be->zero(m->be, m->params.grad, m->params.train_elems * sizeof(float));
}

void kd_model_backward_head(kd_model *m)
{
    KD_CHECK(!m->opts.inference, "backward of an inference-mode model");
    const kd_backend *be = m->be;
    int hold = m->use_d_held ? m->opts.hold_idx : -1;
    for (int l = 0; l < m->fpn.num_outs; l++) {
        for (int t = 0; t < 2; t++) {
            float *dp = t == KD_TOWER_CLS ? m->d_cls[l] : m->d_reg[l];
            kd_head_tower_bwd(be, &m->head, &m->params, t, l, 0, m->fpn.out_s[l], m->fpn.out[l],
                              &m->acts[l][t], dp, m->d_ctr[l], m->fpn.d_out[l], t, 1, hold,
                              hold > 0 ? m->d_held[l][t] : NULL, m->g[0], m->g[1]);
            if (hold == 0)
                be->axpy(be, kd_shape_elems(m->fpn.out_s[l]), 1.0f, m->d_held[l][t], m->fpn.d_out[l]);
        }
    }
    kd_model_grads_done(m, m->grad_lo_head); /* the head is shared by all levels: final only now */
}

void kd_model_backward_trunk(kd_model *m)
{
    KD_CHECK(!m->opts.inference, "backward of an inference-mode model");
    kd_fpn_bwd(m->be, &m->fpn, &m->params, m->bb.out);
    kd_model_grads_done(m, m->grad_lo_neck);
    kd_resnet_bwd(m->be, &m->bb, &m->params, m->img, m->fpn.d_in, m->g, m);
}

void kd_model_backward(kd_model *m)
{
    kd_model_backward_head(m);
    kd_model_backward_trunk(m);
}
