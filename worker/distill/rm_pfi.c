/* rm_pfi.c — Rank Mimicking and Prediction-guided Feature Imitation (Li et al., AAAI 2022;
 * kd-methods.md §2). The paper's code was never released: this follows kd-methods.md's
 * recommended reconstruction ([INFER] there), from two independent reimplementations
 * (MMRazor PR #107, SparseML).
 *
 * Rank Mimicking (logged as loss_cls_kd; loss_cls_kd.loss_weight, 4 in both
 * reimplementations): per image, for each ground truth j with class c_j and the set A_j of
 * anchors ATSS assigned to it (the student's assigner; teacher and student share anchors),
 *   P^T_j = softmax_i(sigma(t_{i,c_j})), P^S_j = softmax_i(sigma(x_{i,c_j})),  i in A_j, tau 1
 *   KL_j = sum_i P^T_j(i) (log P^T_j(i) - log P^S_j(i))
 *   L_RM(image) = sum_j KL_j / M (M = the image's ground truths); L_RM = mean over the images
 *   of this rank that have ground truths (images without any are skipped: MMRazor would
 *   divide by zero there). Probabilities, not logits, enter the rank softmax (MMRazor's fix,
 *   SparseML); the MMRazor variant that sorts the scores is not replicated.
 *   d/dx_{i,c_j} = w (P^S_j(i) - P^T_j(i)) s (1 - s) / (M * images).
 * Prediction-guided Feature Imitation (logged as loss_feat_kd; loss_feat_kd.loss_weight, 1.5
 * in both): per FPN level l (all levels), at each position (n, h, w),
 *   F_dif = mean over channels (F^S - F^T)^2,  P_dif = mean over classes (p^S - p^T)^2 with
 *   p = sigma(class logits) (SparseML's probabilities; MMRazor used raw logits)
 *   L_PFI = (1/L) sum_l mean_{n,h,w} (P_dif * F_dif)
 *   P_dif is DETACHED here (a pure guidance weight, kd-methods.md's recommendation; both
 *   reimplementations let it carry gradient into the class branch), so PFI's gradient reaches
 *   the student only through its FPN outputs:
 *   dL/dF^S = w * P_dif * 2 (F^S - F^T) / (C * L * N * H * W).
 * The weighted-mean reduction is the only one both reimplementations agreed on at some point;
 * the paper's exact normalisation is unresolved (kd-methods.md §2.2, §9).
 * Gradients: RM into the student's d_cls (pred_mimic.c's plumbing), PFI into d->feat_grad,
 * routed by distill.c to the student's FPN-output gradient.
 */
#include "worker/distill/distill_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double rank_mimicking(kd_distiller *d, const kd_model *st)
{
    const kd_level_geom *g = &d->g;
    int n = st->n, K = d->K, div = (int)st->cfg.data_preprocessor.pad_size_divisor;
    size_t A = g->off[g->L];
    float *anchors = malloc(A * 4 * sizeof *anchors);
    uint8_t *valid = malloc(A);
    int *assigned = malloc(A * sizeof *assigned);
    size_t *members = malloc(A * sizeof *members);
    float *ps = malloc(A * sizeof *ps), *pt = malloc(A * sizeof *pt), *ss = malloc(A * sizeof *ss);
    int images = 0;
    for (int i = 0; i < n; i++) images += d->gts[i].n > 0;
    double total = 0;
    for (int i = 0; i < n && images > 0; i++) {
        const kd_image_gt *gt = &d->gts[i];
        if (gt->n == 0) continue;
        kd_anchors_image(g, (gt->img_h + div - 1) / div * div, (gt->img_w + div - 1) / div * div, anchors, valid);
        kd_atss_assign(g, anchors, valid, (int)st->cfg.train_cfg.topk, gt->n, gt->boxes, assigned);
        double scale = d->w_cls / ((double)gt->n * images);
        for (int j = 0; j < gt->n; j++) {
            int c = gt->labels[j], m = 0;
            for (size_t a = 0; a < A; a++)
                if (assigned[a] == j) members[m++] = a;
            if (m < 2) continue; /* one anchor: both distributions are 1, KL 0 */
            for (int k = 0; k < m; k++) {
                int l = 0;
                while (members[k] >= g->off[l + 1]) l++;
                size_t hw = (size_t)g->h[l] * g->w[l];
                size_t idx = ((size_t)i * K + c) * hw + (members[k] - g->off[l]);
                members[k] = ((size_t)l << 48) | idx; /* level and element index */
                ss[k] = kd_sigmoid(d->sc[l].p[idx]);
                ps[k] = ss[k];
                pt[k] = kd_sigmoid(d->tc[l].p[idx]);
            }
            kd_log_softmax_row(ps, ps, m);
            kd_log_softmax_row(pt, pt, m);
            double kl = 0;
            for (int k = 0; k < m; k++) {
                float p_t = expf(pt[k]), p_s = expf(ps[k]);
                kl += p_t * (pt[k] - ps[k]);
                int l = (int)(members[k] >> 48);
                size_t idx = members[k] & (((size_t)1 << 48) - 1);
                d->dc[l].p[idx] += (float)(scale * (p_s - p_t) * ss[k] * (1.0f - ss[k]));
            }
            total += scale * kl;
        }
    }
    free(anchors);
    free(valid);
    free(assigned);
    free(members);
    free(ps);
    free(pt);
    free(ss);
    return total;
}

static double feature_imitation(kd_distiller *d, const kd_model *st)
{
    const kd_backend *be = d->be;
    const kd_model *te = d->teacher;
    int K = d->K;
    double total = 0;
    for (int l = 0; l < d->L; l++) {
        kd_shape s = st->fpn.out_s[l];
        size_t hw = (size_t)s.h * s.w, e = kd_shape_elems(s);
        float *fs = kd_distill_to_host(d, &d->feat_h[0], st->fpn.out[l], e);
        float *ft = kd_distill_to_host(d, &d->feat_h[1], te->fpn.out[l], e);
        double scale = d->w_feat / ((double)d->L * s.n * hw);
        for (int i = 0; i < s.n; i++)
            for (size_t p = 0; p < hw; p++) {
                double pd = 0, fd = 0;
                for (int c = 0; c < K; c++) {
                    size_t k = ((size_t)i * K + c) * hw + p;
                    double u = kd_sigmoid(d->sc[l].p[k]) - kd_sigmoid(d->tc[l].p[k]);
                    pd += u * u;
                }
                pd /= K;
                for (int c = 0; c < s.c; c++) {
                    size_t k = ((size_t)i * s.c + c) * hw + p;
                    double u = (double)fs[k] - ft[k];
                    fd += u * u;
                    fs[k] = (float)(scale * pd * 2.0 * u / s.c); /* fs now holds the gradient */
                }
                total += scale * pd * fd / s.c;
            }
        float *dfeat = kd_dbuf_get(be, &d->feat_grad[l], e);
        kd_distill_grad_to_dev(d, dfeat, fs, e);
    }
    d->feat_levels = d->L;
    return total;
}

void kd_rm_pfi_compute(kd_distiller *d, const kd_model *st, kd_distill_terms *out)
{
    kd_distill_zero_grads(d, st->n);
    if (d->w_cls != 0) out->loss_cls_kd = rank_mimicking(d, st);
    if (d->w_feat != 0) out->loss_feat_kd = feature_imitation(d, st);
}
