/* fcos_kd.c — the KD losses of CrossKD for FCOS (crosskd.md §6.3, crosskd_fcos.py), on the
 * "source" predictions X (cross-head outputs for crosskd, the student's own for pred_mimic)
 * against the teacher's T, on EVERY point (no label weights, no valid-flag masking),
 * normalised by the student's centerness-target sum D (the W of its detection loss, reduced
 * over ranks; see fcos_loss.c for its clamp), eps = FLT_EPSILON:
 *
 *   loss_cls_kd = w_cls * sum_a sum_c KD-QFL(Xc, sigma(Tc)) (beta)          / (D + eps)
 *   loss_reg_kd = w_reg * sum_a r_a * -log(max(IoU(box(Xr_a), box(Tr_a)), 1e-6)) / (D + eps)
 *                 r_a = sigma(max_c Tc_a); boxes at the points from the distances exp(reg)
 *
 * (the paper's FCOS weights are 0.4 and 0.75, conf/crosskd_fcos.yaml). No centerness KD; the
 * cross-head centerness (cls tower) gets a zero gradient.
 */
#include "worker/distill/distill_internal.h"

#include <float.h>

void kd_fcos_kd_compute(kd_distiller *d, int n, const kd_det_loss *ls, kd_distill_terms *out)
{
    double D = kd_det_loss_box_normaliser(ls), zs = 1.0 / (D + (double)FLT_EPSILON);
    kd_distill_zero_grads(d, n);
    for (int l = 0; l < d->L; l++) {
        size_t hw = (size_t)d->g.h[l] * d->g.w[l], rows = (size_t)n * hw;
        int vh[64], vw[64];
        for (int i = 0; i < n; i++) vh[i] = d->g.h[l], vw[i] = d->g.w[l]; /* every point */
        kd_kd_level lv = {n, d->g.h[l], d->g.w[l], vh, vw};
        float *lw = kd_hbuf_get(&d->lw_buf, rows), *r = kd_hbuf_get(&d->r[l], rows);
        for (size_t k = 0; k < rows; k++) lw[k] = 1.0f;
        kd_teacher_score_anchor_level(&lv, 1, d->K, d->tc[l].p, lw, r);
        if (d->w_cls != 0)
            out->loss_cls_kd += kd_kdqfl_anchor_level(&lv, 1, d->K, d->sc[l].p, d->tc[l].p, lw, d->beta, d->w_cls * zs,
                                                      d->dc[l].p);
        if (d->w_reg != 0)
            out->loss_reg_kd += kd_iou_logdist_level(&lv, (float)d->g.stride[l], d->sr[l].p, d->tr[l].p, r,
                                                     d->w_reg * zs, d->dr[l].p);
    }
}
