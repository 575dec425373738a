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
 *                 teacher's Scale_l for reg), activations kept for the backward
 *   backward  dX (the KD losses' gradient, from distill.c) -> teacher layers with input
 *             gradients only (no teacher parameter gradient exists: the teacher has no
 *             gradient arena) -> ReLU -> align_scale through the student's statistics ->
 *             student->d_held[l][t] (overwritten), then student->use_d_held = 1 so the
 *             student's backward adds it at block idx: the KD gradient reaches the student's
 *             blocks below idx, its FPN and backbone, never its blocks idx.. or its
 *             prediction convs.
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
            kd_shape hs = x->hs = held_shape(st, idx, l);
            size_t e = kd_shape_elems(hs);
            float *al = kd_dbuf_get(be, &x->al, e);
            float *stats = kd_dbuf_get(be, &x->stats, (size_t)hs.c * 4);
            float *mt = stats, *sdt = stats + hs.c, *ms = stats + 2 * hs.c, *ss = stats + 3 * hs.c;
            be->channel_stats(be, hs, te->held[l][t], mt, sdt);
            be->align_scale_fwd(be, hs, st->held[l][t], mt, sdt, al, ms, ss);
            if (idx > 0) be->relu_fwd(be, e, al, al);
            float *abuf = kd_dbuf_get(be, &x->acts, kd_gfl_tower_acts_elems(&te->head, hs, idx));
            kd_gfl_tower_acts_bind(&te->head, hs, idx, abuf, &x->a);
            size_t pe = (size_t)hs.n * (t == KD_TOWER_CLS ? d->K : 4 * d->R1) * hw;
            float *pred = kd_dbuf_get(be, &x->pred, pe);
            kd_gfl_tower_fwd(be, &te->head, &te->params, t, l, idx, hs, al, &x->a, pred);
            kd_distill_to_host(d, t == KD_TOWER_CLS ? &d->sc[l] : &d->sr[l], pred, pe);
        }
    }
}

void kd_crosskd_backward(kd_distiller *d, kd_model *st)
{
    const kd_backend *be = d->be;
    const kd_model *te = d->teacher;
    int idx = d->idx;
    for (int l = 0; l < d->L; l++) {
        size_t hw = (size_t)d->g.h[l] * d->g.w[l];
        for (int t = 0; t < 2; t++) {
            kd_cross_lt *x = &d->x[l][t];
            kd_shape hs = x->hs;
            size_t e = kd_shape_elems(hs);
            size_t pe = (size_t)hs.n * (t == KD_TOWER_CLS ? d->K : 4 * d->R1) * hw;
            float *dpred = kd_dbuf_get(be, &d->dev_grad, pe);
            be->copy_from_host(be, dpred, (t == KD_TOWER_CLS ? d->dc[l] : d->dr[l]).p, pe * sizeof(float));
            size_t se = (size_t)hs.n * te->head.F * hs.h * hs.w;
            if (se < e) se = e;
            float *s0 = kd_dbuf_get(be, &d->s0, se), *s1 = kd_dbuf_get(be, &d->s1, se);
            float *dal = kd_dbuf_get(be, &d->dal, e);
            kd_gfl_tower_bwd(be, &te->head, &te->params, t, l, idx, hs, x->al.p, &x->a, dpred, dal, 0, 0, -1, NULL,
                             s0, s1);
            if (idx > 0) be->relu_bwd(be, e, x->al.p, dal, dal, 0);
            float *stats = x->stats.p;
            be->align_scale_bwd(be, hs, st->held[l][t], stats + 2 * hs.c, stats + 3 * hs.c, stats + hs.c, dal,
                                st->d_held[l][t], 0);
        }
    }
    st->use_d_held = 1;
}

void kd_crosskd_free(kd_distiller *d)
{
    for (int l = 0; l < KD_MAX_LEVELS; l++)
        for (int t = 0; t < 2; t++) {
            kd_cross_lt *x = &d->x[l][t];
            kd_dbuf *b[] = {&x->al, &x->stats, &x->acts, &x->pred};
            for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) d->be->free(d->be, b[i]->p);
            memset(x, 0, sizeof *x);
        }
}
