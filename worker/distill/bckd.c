/* bckd.c — BCKD (kd-methods.md §3; TinyTigerPan/BCKD, LDHead.loss_single with NovelKDLoss and
 * GIoULoss) on the student's own GFL predictions, per level l:
 *
 *   binary classification KD (logged as loss_cls_kd; loss_cls_kd.loss_weight, beta 1):
 *     sum over valid anchors and classes of |sigma(t) - sigma(x)|^beta * BCE(x, sigma(t))
 *     / (Ns + eps)
 *   IoU-based localisation KD (logged as loss_reg_kd; loss_reg_kd.loss_weight, 4.0 in
 *   BCKD's configs and the option's default):
 *     sum over valid anchors of v_a * (1 - GIoU(b_S, b_T)) / (Ns + eps),
 *     v_a = max_c |sigma(t_ac) - sigma(x_ac)| (detached), boxes decoded from the 17-bin
 *     distributions (softmax expectation) around the anchor centre in stride units, the
 *     teacher's constant; the gradient reaches the student's distribution through the decode
 *     and the integral
 *   Ns = max(P, 1), P the reduced positive count (MMDetection 2.x GFL's num_total_samples),
 *   eps = FLT_EPSILON (mmdet 2.28 adds it to every avg_factor).
 * BCKD's code computes both terms inside `if len(pos_inds) > 0` of each level, so a level
 * without a positive anchor in this rank's batch contributes neither; replicated here (the
 * reference implementation's behaviour, kd-methods.md §3.5).
 * Gradients go to the student's d_cls / d_reg (pred_mimic.c's plumbing).
 */
#include "worker/distill/distill_internal.h"

#include <float.h>
#include <math.h>

static int level_has_positive(const kd_distiller *d, const kd_det_loss *ls, int n, int l)
{
    for (int i = 0; i < n; i++) {
        const int *label = kd_det_loss_assigned(ls, i);
        for (size_t a = d->g.off[l]; a < d->g.off[l + 1]; a++)
            if (label[a] >= 0) return 1;
    }
    return 0;
}

/* v_a = max_c |sigma(t) - sigma(x)| on valid anchors, 0 elsewhere. */
static void gap_weights(const kd_kd_level *lv, int K, const float *x, const float *t, float *v)
{
    size_t hw = (size_t)lv->H * lv->W;
    for (int i = 0; i < lv->N; i++)
        for (int y = 0; y < lv->H; y++)
            for (int xx = 0; xx < lv->W; xx++) {
                size_t pos = (size_t)y * lv->W + xx;
                float m = 0.0f;
                if (y < lv->vh[i] && xx < lv->vw[i])
                    for (int c = 0; c < K; c++) {
                        size_t k = ((size_t)i * K + c) * hw + pos;
                        m = fmaxf(m, fabsf(kd_sigmoid(t[k]) - kd_sigmoid(x[k])));
                    }
                v[(size_t)i * hw + pos] = m;
            }
}

void kd_bckd_compute(kd_distiller *d, const kd_model *st, const kd_det_loss *ls, double P, kd_distill_terms *out)
{
    int n = st->n;
    kd_distill_zero_grads(d, n);
    double Ns = P > 1.0 ? P : 1.0;
    double cs = d->w_cls / (Ns + (double)FLT_EPSILON), rs = d->w_reg / (Ns + (double)FLT_EPSILON);
    for (int l = 0; l < d->L; l++) {
        if (!level_has_positive(d, ls, n, l)) continue;
        kd_kd_level lv = {n, d->g.h[l], d->g.w[l], d->vh[l], d->vw[l]};
        if (d->w_cls != 0)
            out->loss_cls_kd += kd_kdqfl_level(&lv, d->K, d->sc[l].p, d->tc[l].p, d->beta, cs, d->dc[l].p);
        if (d->w_reg != 0) {
            float *v = kd_hbuf_get(&d->r[l], (size_t)n * d->g.h[l] * d->g.w[l]);
            gap_weights(&lv, d->K, d->sc[l].p, d->tc[l].p, v);
            out->loss_reg_kd += kd_giou_dist_level(&lv, d->R1, d->sr[l].p, d->tr[l].p, v, rs, d->dr[l].p);
        }
    }
}
