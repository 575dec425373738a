/* crosskd.c — CrossKD's cross-head branch (crosskd.md §4.2, §4.3, §13.3), per FPN level l and
 * tower t (cls, reg):
 *
 *   forward   A = align_scale(S, mu_T, sd_T)   S = student->held[l][t] (post-ReLU output of
 *                                               student head block idx, or the FPN feature for
 *                                               idx 0); mu_T, sd_T = per-channel mean and
 *                                               unbiased std of the teacher's held feature over
 *                                               this rank's N*H*W (constants)
 *             A = ReLU(A) when idx > 0
 *             X = teacher blocks idx..S-1 (conv, GN, ReLU) and prediction conv (+ the
 *                 teacher's Scale_l for reg; + the teacher's centerness conv on the reg
 *                 tower for ATSS), activations kept for the backward
 *   backward  dX (the KD losses' gradient, from distill.c) -> teacher layers with input
 *             gradients only (no teacher parameter gradient exists: the teacher has no
 *             gradient arena) -> ReLU -> align_scale through the student's statistics ->
 *             student->d_held[l][t] (overwritten), then student->use_d_held = 1 so the
 *             student's backward adds it at block idx: the KD gradient reaches the student's
 *             blocks below idx, its FPN and backbone, never its blocks idx.. or its
 *             prediction convs.
 *
 * Adapter (model.kd_cfg.adapter; the CrossKD authors' advice when head widths differ, issues
 * #1 and #8): S is first mapped by a learned 1x1 convolution without bias (student channels
 * -> teacher channels; a bias would be removed by align_scale's mean anyway), one per tower,
 * shared by the levels. Its weight gradient accumulates into the distiller's own arena
 * (d->adapter: parameters, gradients, momentum), which the trainer all-reduces, steps with
 * SGD and checkpoints beside the student.
 *
 * Workspace: per level and tower the aligned feature, statistics, the teacher-tower
 * activations and the prediction, grown on demand (device buffers).
 */
#include "worker/distill/distill_internal.h"

#include <string.h>

static kd_shape held_shape(const kd_model *st, int idx, int l)
{
    return idx == 0 ? st->fpn.out_s[l] : st->lvl_s[l];
}

void kd_crosskd_forward(kd_distiller *d, const kd_model *st)
{
    const kd_backend *be = d->be;
    const kd_model *te = d->teacher;
    int idx = d->idx;
    for (int l = 0; l < d->L; l++) {
        size_t hw = (size_t)d->g.h[l] * d->g.w[l];
        for (int t = 0; t < 2; t++) {
            kd_cross_lt *x = &d->x[l][t];
            kd_shape hs = x->ss = x->hs = held_shape(st, idx, l);
            const float *src = st->held[l][t];
            if (d->has_adapter) {
                kd_conv_desc cd = {x->ss, (int)d->adapter.p[t].shape[0], 1, 1, 1, 1, 0, 0, 0};
                hs = x->hs = kd_conv_out_shape(&cd);
                float *ad = kd_dbuf_get(be, &x->ad, kd_shape_elems(hs));
                be->conv_fwd(be, &cd, src, kd_params_ptr(&d->adapter, t), NULL, ad);
                src = ad;
            }
            size_t e = kd_shape_elems(hs);
            float *al = kd_dbuf_get(be, &x->al, e);
            float *stats = kd_dbuf_get(be, &x->stats, (size_t)hs.c * 4);
            float *mt = stats, *sdt = stats + hs.c, *ms = stats + 2 * hs.c, *ss = stats + 3 * hs.c;
            be->channel_stats(be, hs, te->held[l][t], mt, sdt);
            be->align_scale_fwd(be, hs, src, mt, sdt, al, ms, ss);
            if (idx > 0) be->relu_fwd(be, e, al, al);
            float *abuf = kd_dbuf_get(be, &x->acts, kd_head_tower_acts_elems(&te->head, hs, idx));
            kd_head_tower_acts_bind(&te->head, hs, idx, abuf, &x->a);
            size_t pe = kd_distill_pred_elems(d, hs.n, t, hw);
            float *pred = kd_dbuf_get(be, &x->pred, pe);
            float *ctr = t == te->head.ctr_tower ? kd_dbuf_get(be, &x->ctr, (size_t)hs.n * hw) : NULL;
            kd_head_tower_fwd(be, &te->head, &te->params, t, l, idx, hs, al, &x->a, pred, ctr);
            kd_distill_to_host(d, t == KD_TOWER_CLS ? &d->sc[l] : &d->sr[l], pred, pe);
            if (ctr) kd_distill_to_host(d, &d->sctr[l], ctr, (size_t)hs.n * hw);
        }
    }
}

void kd_crosskd_backward(kd_distiller *d, kd_model *st)
{
    const kd_backend *be = d->be;
    const kd_model *te = d->teacher;
    int idx = d->idx;
    if (d->has_adapter) be->zero(be, d->adapter.grad, d->adapter.train_elems * sizeof(float));
    for (int l = 0; l < d->L; l++) {
        size_t hw = (size_t)d->g.h[l] * d->g.w[l];
        for (int t = 0; t < 2; t++) {
            kd_cross_lt *x = &d->x[l][t];
            kd_shape hs = x->hs;
            size_t e = kd_shape_elems(hs);
            size_t pe = kd_distill_pred_elems(d, hs.n, t, hw);
            float *dpred = kd_dbuf_get(be, &d->dev_grad, pe), *dctr = NULL;
            kd_distill_grad_to_dev(d, dpred, (t == KD_TOWER_CLS ? d->dc[l] : d->dr[l]).p, pe);
            if (t == te->head.ctr_tower) {
                dctr = kd_dbuf_get(be, &d->dev_grad_ctr, (size_t)hs.n * hw);
                kd_distill_grad_to_dev(d, dctr, d->dctr[l].p, (size_t)hs.n * hw);
            }
            size_t se = (size_t)hs.n * te->head.F * hs.h * hs.w;
            if (se < e) se = e;
            float *s0 = kd_dbuf_get(be, &d->s0, se), *s1 = kd_dbuf_get(be, &d->s1, se);
            float *dal = kd_dbuf_get(be, &d->dal, e);
            kd_head_tower_bwd(be, &te->head, &te->params, t, l, idx, hs, x->al.p, &x->a, dpred, dctr, dal, 0, 0, -1,
                              NULL, s0, s1);
            if (idx > 0) be->relu_bwd(be, e, x->al.p, dal, dal, 0);
            float *stats = x->stats.p;
            const float *src = d->has_adapter ? x->ad.p : st->held[l][t];
            float *dsrc = d->has_adapter ? kd_dbuf_get(be, &d->dad, e) : st->d_held[l][t];
            be->align_scale_bwd(be, hs, src, stats + 2 * hs.c, stats + 3 * hs.c, stats + hs.c, dal, dsrc, 0);
            if (d->has_adapter) {
                kd_conv_desc cd = {x->ss, hs.c, 1, 1, 1, 1, 0, 0, 0};
                be->conv_bwd_weight(be, &cd, st->held[l][t], dsrc, kd_params_grad(&d->adapter, t), NULL);
                be->conv_bwd_data(be, &cd, dsrc, kd_params_ptr(&d->adapter, t), st->d_held[l][t], 0);
            }
        }
    }
    st->use_d_held = 1;
}

void kd_crosskd_free(kd_distiller *d)
{
    for (int l = 0; l < KD_MAX_LEVELS; l++)
        for (int t = 0; t < 2; t++) {
            kd_cross_lt *x = &d->x[l][t];
            kd_dbuf *b[] = {&x->al, &x->stats, &x->acts, &x->pred, &x->ad, &x->ctr};
            for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) d->be->free(d->be, b[i]->p);
            memset(x, 0, sizeof *x);
        }
}
