/* delta_kd.c — the KD losses of CrossKD for the delta-coded heads, ATSS (crosskd.md §6.2,
 * crosskd_atss.py) and RetinaNet (§6.1, crosskd_retinanet.py), on the "source" predictions X
 * (cross-head outputs for crosskd, the student's own for pred_mimic) against the teacher's
 * T, per level and anchor row (A anchors per location), eps = FLT_EPSILON:
 *
 *   loss_cls_kd    = w_cls * sum_a lw_a sum_c KD-QFL(Xc, sigma(Tc)) (beta)      / (Z + eps)
 *   loss_reg_kd    = w_reg * sum_a r_a (1 - GIoU(dec(Xr_a), dec(Tr_a)))          / (Z + eps)
 *                    r_a = sigma(max_c Tc_a) where lw_a != 0, else 0; dec = the student's
 *                    DeltaXYWHBBoxCoder at its anchors (pixels); teacher boxes constant
 *   loss_center_kd = w_ctr * sum_{positive a} BCE(Xctr_a, sigma(Tctr_a))           / (Z + eps)
 *                    (ATSS only)
 *
 * ATSS: lw_a = 1 on valid anchors, Z = P (the mean over ranks of the GT positives).
 * RetinaNet: lw_a = 1 on valid anchors outside MaxIoU's ignore band, Z = the student's local
 * avg_factor (sum over images of max(positives, 1); AnchorHead reduces nothing).
 * A teacher of another head type than the student's (crosskd, paper Table 7; these KD
 * losses follow the teacher's outputs): Z = P; ATSS's positives are the student's (one
 * anchor per location in both); a RetinaNet teacher's lw_a = 1 on every valid anchor (the
 * student has no MaxIoU ignore band). Anchors and box coder are the teacher's.
 * Prediction mimicking of an ATSS teacher by a GFL student (d->src_rc != d->RC): the source
 * box is decoded from the student's own side distributions (kd_giou_dist_delta_level), and
 * there is no centerness KD (the student has none); Z = P.
 * (Unlike GFL's KL term, the box KD is normalised by Z, not by the weight sum.) Gradients go
 * to d->dc, d->dr and d->dctr; distill.c routes them (through the teacher's layers for
 * crosskd, onto the student's outputs for pred_mimic).
 */
#include "worker/distill/distill_internal.h"

#include <float.h>
#include <string.h>

/* Label weights (N, H, W, A) of level l and, for ATSS, the positives (N, H, W). */
static void level_weights(kd_distiller *d, int n, int l, const kd_det_loss *ls, float *lw, uint8_t *pos)
{
    int A = d->g.A, W = d->g.w[l];
    size_t hw = (size_t)d->g.h[l] * W;
    for (int i = 0; i < n; i++) {
        const int *lab = ls ? kd_det_loss_assigned(ls, i) + d->g.off[l] : NULL;
        for (size_t p = 0; p < hw; p++) {
            int valid = (int)(p / W) < d->vh[l][i] && (int)(p % W) < d->vw[l][i];
            for (int a = 0; a < A; a++) {
                size_t r = p * A + a;
                int ignored = lab && lab[r] == KD_ASSIGN_IGNORE;
                lw[(size_t)i * hw * A + r] = valid && !ignored ? 1.0f : 0.0f;
            }
            if (pos) pos[(size_t)i * hw + p] = lab && lab[p] >= 0;
        }
    }
}

void kd_delta_kd_compute(kd_distiller *d, int n, const kd_det_loss *ls, double P, kd_distill_terms *out)
{
    int A = d->g.A, same = d->stype == d->type;
    double Z = same && d->type == KD_DET_RETINANET ? kd_det_loss_local_avg_factor(ls) : P;
    /* the student's labels address the teacher's anchor rows when both have one anchor per
     * location (a GFL student's ATSS positives for an ATSS teacher); a RetinaNet teacher of
     * another student type has no ignore band: valid anchors only */
    if (!same && A != 1) ls = NULL;
    double zs = 1.0 / (Z + (double)FLT_EPSILON);
    kd_distill_zero_grads(d, n);
    for (int l = 0; l < d->L; l++) {
        size_t hw = (size_t)d->g.h[l] * d->g.w[l], rows = (size_t)n * hw * A;
        kd_kd_level lv = {n, d->g.h[l], d->g.w[l], d->vh[l], d->vw[l]};
        float *lw = kd_hbuf_get(&d->lw_buf, rows), *r = kd_hbuf_get(&d->r[l], rows);
        uint8_t *pos = d->src_ctr ? (uint8_t *)kd_hbuf_get(&d->pos_mask, ((size_t)n * hw + 3) / 4 + 1) : NULL;
        level_weights(d, n, l, ls, lw, pos);
        kd_teacher_score_anchor_level(&lv, A, d->K, d->tc[l].p, lw, r);
        if (d->w_cls != 0)
            out->loss_cls_kd += kd_kdqfl_anchor_level(&lv, A, d->K, d->sc[l].p, d->tc[l].p, lw, d->beta, d->w_cls * zs,
                                                      d->dc[l].p);
        if (d->w_reg != 0 && d->src_rc != d->RC)
            out->loss_reg_kd +=
                kd_giou_dist_delta_level(&lv, d->R1, (float)d->g.stride[l], d->g.half_w[l][0], d->g.half_h[l][0],
                                         d->stds, d->sr[l].p, d->tr[l].p, r, d->w_reg * zs, d->dr[l].p);
        else if (d->w_reg != 0)
            out->loss_reg_kd += kd_giou_delta_level(&lv, A, (float)d->g.stride[l], d->g.half_w[l], d->g.half_h[l],
                                                    d->stds, d->sr[l].p, d->tr[l].p, r, d->w_reg * zs, d->dr[l].p);
        if (d->type == KD_DET_ATSS && d->src_ctr && d->w_ctr != 0 && ls)
            out->loss_center_kd +=
                kd_bce_pos_level(&lv, pos, d->sctr[l].p, d->tctr[l].p, d->w_ctr * zs, d->dctr[l].p);
    }
}
