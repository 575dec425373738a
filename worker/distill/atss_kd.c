/* atss_kd.c — the KD losses of CrossKD for ATSS (crosskd.md §6.2, crosskd_atss.py), on the
 * "source" predictions X (cross-head outputs for crosskd, the student's own for pred_mimic)
 * against the teacher's T, per level, with P the reduced number of GT positives (the
 * student's ATSS assignment) and eps = FLT_EPSILON:
 *
 *   loss_cls_kd    = w_cls * sum_{valid a} sum_c KD-QFL(Xc, sigma(Tc)) (beta)  / (P + eps)
 *   loss_reg_kd    = w_reg * sum_a r_a (1 - GIoU(dec(Xr_a), dec(Tr_a)))          / (P + eps)
 *                    r_a = sigma(max_c Tc_a) on valid anchors, 0 elsewhere; dec = the
 *                    student's DeltaXYWHBBoxCoder at its anchors (pixels); teacher boxes
 *                    constant
 *   loss_center_kd = w_ctr * sum_{positive a} BCE(Xctr_a, sigma(Tctr_a))           / (P + eps)
 *
 * (Unlike GFL's KL term, the box KD is normalised by P, not by the weight sum.) Gradients go
 * to d->dc, d->dr and d->dctr; distill.c routes them (through the teacher's layers for
 * crosskd, onto the student's outputs for pred_mimic).
 */
#include "worker/distill/distill_internal.h"

#include <float.h>
#include <string.h>

/* The positives of level l as an (N, H, W) mask from the student's assignment. */
static const uint8_t *positives(kd_distiller *d, int n, int l, const kd_det_loss *ls, kd_hbuf *buf)
{
    size_t hw = (size_t)d->g.h[l] * d->g.w[l];
    uint8_t *m = (uint8_t *)kd_hbuf_get(buf, ((size_t)n * hw + 3) / 4 + 1);
    for (int i = 0; i < n; i++) {
        const int *lab = kd_det_loss_assigned(ls, i) + d->g.off[l];
        for (size_t p = 0; p < hw; p++) m[(size_t)i * hw + p] = lab[p] >= 0;
    }
    return m;
}

void kd_atss_kd_compute(kd_distiller *d, int n, const kd_det_loss *ls, double P, kd_distill_terms *out)
{
    double ps = 1.0 / (P + (double)FLT_EPSILON);
    kd_distill_zero_grads(d, n);
    for (int l = 0; l < d->L; l++) {
        size_t hw = (size_t)d->g.h[l] * d->g.w[l];
        kd_kd_level lv = {n, d->g.h[l], d->g.w[l], d->vh[l], d->vw[l]};
        float *r = kd_hbuf_get(&d->r[l], (size_t)n * hw);
        kd_teacher_score_level(&lv, d->K, d->tc[l].p, r);
        if (d->w_cls != 0)
            out->loss_cls_kd += kd_kdqfl_level(&lv, d->K, d->sc[l].p, d->tc[l].p, d->beta, d->w_cls * ps, d->dc[l].p);
        if (d->w_reg != 0)
            out->loss_reg_kd += kd_giou_delta_level(&lv, (float)d->g.stride[l], d->g.half_w[l][0], d->g.half_h[l][0],
                                                    d->stds, d->sr[l].p, d->tr[l].p, r, d->w_reg * ps, d->dr[l].p);
        if (d->w_ctr != 0 && ls)
            out->loss_center_kd += kd_bce_pos_level(&lv, positives(d, n, l, ls, &d->pos_mask), d->sctr[l].p,
                                                    d->tctr[l].p, d->w_ctr * ps, d->dctr[l].p);
    }
}
