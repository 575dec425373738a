/* pred_mimic.c — plain prediction mimicking (the CrossKD paper's "KD"/"LD" ablation rows,
 * kd-methods.md §6.2/§6.3): the same KD losses as CrossKD (KD-QFL on the class logits, KL on
 * the 17-bin side distributions weighted by the teacher's max class probability, the same
 * normalisers, distill.c; for ATSS and RetinaNet the GIoU box (and centerness) KD of
 * delta_kd.c, for FCOS fcos_kd.c's) applied to the student's OWN predictions. A GFL student
 * may mimic an ATSS teacher (paper Table 7): its own distributions are the source of
 * delta_kd.c's box KD, decoded by the integral, and it has no centerness to mimic. The gradients are added
 * to the student's d_cls / d_reg after the detection loss wrote them, so they reach every
 * student layer including the prediction convs (the conflict CrossKD avoids). The teacher
 * holds no head feature for this method. The two functions here (student outputs to the
 * host, host gradients added to d_cls / d_reg) are also the plumbing of the other methods on
 * the student's own outputs (BCKD).
 */
#include "worker/distill/distill_internal.h"

void kd_pred_mimic_sources(kd_distiller *d, const kd_model *st)
{
    for (int l = 0; l < d->L; l++) {
        size_t hw = (size_t)d->g.h[l] * d->g.w[l];
        kd_distill_to_host(d, &d->sc[l], st->cls[l], (size_t)st->n * d->CC * hw);
        kd_distill_to_host(d, &d->sr[l], st->reg[l], (size_t)st->n * d->src_rc * hw);
        if (d->src_ctr) kd_distill_to_host(d, &d->sctr[l], st->ctr[l], (size_t)st->n * hw);
    }
}

void kd_pred_mimic_backward(kd_distiller *d, kd_model *st)
{
    const kd_backend *be = d->be;
    for (int l = 0; l < d->L; l++) {
        size_t hw = (size_t)d->g.h[l] * d->g.w[l];
        for (int t = 0; t < 2; t++) {
            size_t pe = kd_distill_pred_elems(d, st->n, t, hw);
            float *g = kd_dbuf_get(be, &d->dev_grad, pe);
            kd_distill_grad_to_dev(d, g, (t == KD_TOWER_CLS ? d->dc[l] : d->dr[l]).p, pe);
            be->axpy(be, pe, 1.0f, g, t == KD_TOWER_CLS ? st->d_cls[l] : st->d_reg[l]);
        }
        if (d->src_ctr) {
            float *g = kd_dbuf_get(be, &d->dev_grad, (size_t)st->n * hw);
            kd_distill_grad_to_dev(d, g, d->dctr[l].p, (size_t)st->n * hw);
            be->axpy(be, (size_t)st->n * hw, 1.0f, g, st->d_ctr[l]);
        }
    }
}
