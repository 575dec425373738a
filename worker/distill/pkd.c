/* pkd.c — PKD, Pearson-correlation feature imitation on the FPN outputs (kd-methods.md §5;
 * crosskd.md §5.3 for CrossKD+PKD), alone (method pkd) or added to CrossKD
 * (loss_feat_kd.loss_weight > 0).
 *
 * Per distilled level l, with F_s, F_t the student's and the teacher's FPN outputs (same
 * shape N, C, H, W; teacher constant):
 *   norm(F) per channel over this rank's N*H*W: (F - mean) / (unbiased std + 1e-6)
 *   L_pkd(l) = w * sum (norm(F_s) - norm(F_t))^2 / 2 / (N*C*H*W)
 * loss_feat_kd = sum over the distilled levels. norm() is align_scale with target mean 0 and
 * std 1, so the backend's align_scale_fwd/bwd (gradient through the student's statistics)
 * do the normalisation both ways; the squared difference and its gradient
 *   g = w * (norm(F_s) - norm(F_t)) / (N*C*H*W)
 * are element-wise on the host.
 * Levels: PKD alone distils the first four FPN outputs (MMRazor's configs, P3..P6);
 * CrossKD+PKD all of them (the CrossKD repository's configs).
 * The gradient goes to d->feat_grad[l] (device); distill.c routes it into the student's FPN
 * output gradient.
 */
#include "worker/distill/distill_internal.h"

#include <stdlib.h>

void kd_pkd_compute(kd_distiller *d, const kd_model *st, double *loss)
{
    const kd_backend *be = d->be;
    const kd_model *te = d->teacher;
    int levels = d->method == KD_KD_PKD && d->L > 4 ? 4 : d->L;
    d->feat_levels = levels;
    *loss = 0;
    for (int l = 0; l < levels; l++) {
        kd_shape s = st->fpn.out_s[l];
        size_t e = kd_shape_elems(s);
        int C = s.c;
        float *stats = kd_dbuf_get(be, &d->feat_stats[l], (size_t)C * 6);
        float *zero = stats, *one = stats + C, *ms = stats + 2 * C, *ss = stats + 3 * C;
        float *mt = stats + 4 * C, *sdt = stats + 5 * C;
        be->fill(be, zero, (size_t)C, 0.0f);
        be->fill(be, one, (size_t)C, 1.0f);
        float *ns = kd_dbuf_get(be, &d->dal, e), *nt = kd_dbuf_get(be, &d->s0, e);
        be->align_scale_fwd(be, s, st->fpn.out[l], zero, one, ns, ms, ss);
        be->align_scale_fwd(be, s, te->fpn.out[l], zero, one, nt, mt, sdt);
        float *hs = kd_hbuf_get(&d->feat_h[0], e), *ht = kd_hbuf_get(&d->feat_h[1], e);
        be->copy_to_host(be, hs, ns, e * sizeof(float));
        be->copy_to_host(be, ht, nt, e * sizeof(float));
        double scale = d->w_feat / (double)e, sum = 0;
        for (size_t k = 0; k < e; k++) {
            float diff = hs[k] - ht[k];
            sum += (double)diff * diff;
            hs[k] = (float)(scale * diff);
        }
        *loss += 0.5 * scale * sum;
        kd_distill_grad_to_dev(d, nt, hs, e);
        float *dfeat = kd_dbuf_get(be, &d->feat_grad[l], e);
        be->align_scale_bwd(be, s, st->fpn.out[l], ms, ss, one, nt, dfeat, 0);
    }
}

void kd_pkd_free(kd_distiller *d)
{
    for (int l = 0; l < KD_MAX_LEVELS; l++) {
        d->be->free(d->be, d->feat_grad[l].p);
        d->be->free(d->be, d->feat_stats[l].p);
    }
    free(d->feat_h[0].p);
    free(d->feat_h[1].p);
}
