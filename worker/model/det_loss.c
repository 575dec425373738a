/* det_loss.c — the detection-loss object every head shares (model.h, kd_det_loss), in two
 * phases so multi-rank normalisers can be reduced between them:
 *   prepare: head outputs to the host (cls, reg, centerness), anchors and valid flags per
 *            image pad shape, ATSS assignment (GFL, ATSS) or MaxIoU (RetinaNet: labels -2 on
 *            the ignored band), the matched boxes, and the local statistics: num_pos and
 *            the weight sum of the head (GFL: w_a = max_c sigmoid(cls), detached; ATSS:
 *            the centerness targets); RetinaNet's local avg_factor sum_i max(pos_i, 1)
 *            (MMDetection 3's SamplingResult.num_pos);
 *   compute: dispatches to the head's loss (gfl_loss.c, atss_loss.c), then writes the
 *            gradients to the model's d_cls / d_reg / d_ctr.
 * Also the aligned IoU the heads share (the GIoU loss with its gradient is kernels/kd_giou.h).
 */
#include "worker/model/det_loss_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kd_math.h"

kd_det_loss *kd_det_loss_create(const kd_model *m)
{
    (void)m;
    return kd_xcalloc(1, sizeof(kd_det_loss));
}

void kd_det_loss_destroy(kd_det_loss *ls)
{
    if (!ls) return;
    for (int l = 0; l < KD_MAX_LEVELS; l++) {
        float *b[] = {ls->cls[l], ls->reg[l], ls->ctr[l], ls->dcls[l], ls->dreg[l], ls->dctr[l]};
        for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) free(b[i]);
    }
    free(ls->anchors);
    free(ls->score);
    free(ls->wt);
    free(ls->valid);
    free(ls->assigned);
    free(ls->label);
    free(ls->tgt);
    free(ls);
}

const int *kd_det_loss_assigned(const kd_det_loss *ls, int image) { return ls->label + (size_t)image * ls->A; }
double kd_det_loss_box_normaliser(const kd_det_loss *ls) { return ls->W_used; }
double kd_det_loss_local_avg_factor(const kd_det_loss *ls) { return ls->avg_local; }
const float *kd_det_loss_targets(const kd_det_loss *ls, int image) { return ls->tgt + (size_t)image * ls->A * 4; }

static int level_of(const kd_level_geom *g, size_t a)
{
    int l = 0;
    while (a >= g->off[l + 1]) l++;
    return l;
}

static float max_sigmoid(const kd_det_loss *ls, int l, int i, size_t a)
{
    float m = -INFINITY;
    for (int c = 0; c < ls->K; c++) {
        float x = ls->cls[l][kd_loss_at(&ls->g, l, ls->K, i, c, a)];
        if (x > m) m = x;
    }
    return kd_sigmoid(m);
}

/* Grows a pair of host buffers (value and gradient) to n floats. */
static void grow2(float **a, float **b, size_t *cap, size_t n)
{
    if (*cap >= n) return;
    free(*a);
    free(*b);
    *a = kd_xmalloc(n * sizeof(float));
    *b = kd_xmalloc(n * sizeof(float));
    *cap = n;
}

static void copy_outputs(kd_det_loss *ls, const kd_model *m)
{
    const kd_backend *be = m->be;
    const kd_level_geom *g = &ls->g;
    const kd_head *h = &m->head;
    size_t N = (size_t)ls->N;
    for (int l = 0; l < g->L; l++) {
        size_t hw = (size_t)g->h[l] * g->w[l];
        grow2(&ls->cls[l], &ls->dcls[l], &ls->cap_cls[l], N * h->cls_c * hw);
        grow2(&ls->reg[l], &ls->dreg[l], &ls->cap_reg[l], N * h->reg_c * hw);
        be->copy_to_host(be, ls->cls[l], m->cls[l], N * h->cls_c * hw * sizeof(float));
        be->copy_to_host(be, ls->reg[l], m->reg[l], N * h->reg_c * hw * sizeof(float));
        if (h->ctr_tower >= 0) {
            grow2(&ls->ctr[l], &ls->dctr[l], &ls->cap_ctr[l], N * h->A * hw);
            be->copy_to_host(be, ls->ctr[l], m->ctr[l], N * h->A * hw * sizeof(float));
        }
    }
}

static void grow_rows(kd_det_loss *ls)
{
    size_t na = (size_t)ls->N * ls->A;
    if (ls->cap_a >= na) return;
    free(ls->anchors);
    free(ls->score);
    free(ls->wt);
    free(ls->valid);
    free(ls->assigned);
    free(ls->label);
    free(ls->tgt);
    ls->anchors = kd_xmalloc(ls->A * 4 * sizeof(float));
    ls->score = kd_xmalloc(na * sizeof(float));
    ls->wt = kd_xmalloc(na * sizeof(float));
    ls->valid = kd_xmalloc(na);
    ls->assigned = kd_xmalloc(na * sizeof(int));
    ls->label = kd_xmalloc(na * sizeof(int));
    ls->tgt = kd_xmalloc(na * 4 * sizeof(float));
    ls->cap_a = na;
}

kd_status kd_det_loss_prepare(kd_det_loss *ls, const kd_model *m, const kd_image_gt *gts,
                              kd_det_loss_stats *local, kd_err *err)
{
    kd_level_geom_of(m, &ls->g);
    const kd_level_geom *g = &ls->g;
    ls->type = m->head.type;
    ls->N = m->n;
    ls->K = m->head.K;
    ls->R = m->head.R;
    ls->A = g->off[g->L];
    int N = ls->N, K = ls->K;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < gts[i].n; j++)
            if (gts[i].labels[j] < 0 || gts[i].labels[j] >= K)
                return kd_errf(err, KD_EINVAL, "image %d box %d: label %d outside [0, %d)", i, j,
                               gts[i].labels[j], K);
    copy_outputs(ls, m);
    grow_rows(ls);
    int div = (int)m->cfg.data_preprocessor.pad_size_divisor;
    ls->num_pos = 0;
    ls->weight_sum = 0;
    ls->avg_local = 0;
    for (int i = 0; i < N; i++) {
        int ph = (gts[i].img_h + div - 1) / div * div, pw = (gts[i].img_w + div - 1) / div * div;
        uint8_t *valid = ls->valid + (size_t)i * ls->A;
        int *as = ls->assigned + (size_t)i * ls->A, *lb = ls->label + (size_t)i * ls->A;
        kd_anchors_image(g, ph, pw, ls->anchors, valid);
        const kd_model_cfg *c = &m->cfg;
        if (ls->type == KD_DET_FCOS)
            kd_fcos_assign(g, ls->anchors, gts[i].n, gts[i].boxes, as);
        else if (ls->type == KD_DET_RETINANET)
            kd_max_iou_assign(ls->A, ls->anchors, valid, c->train_cfg.pos_iou_thr, c->train_cfg.neg_iou_thr,
                              c->train_cfg.min_pos_iou, gts[i].n, gts[i].boxes, as);
        else
            kd_atss_assign(g, ls->anchors, valid, (int)c->train_cfg.topk, gts[i].n, gts[i].boxes, as);
        double npos_i = 0;
        for (size_t a = 0; a < ls->A; a++) {
            lb[a] = as[a] >= 0 ? gts[i].labels[as[a]] : as[a];
            if (as[a] < 0) continue;
            float *tg = ls->tgt + 4 * ((size_t)i * ls->A + a);
            memcpy(tg, gts[i].boxes + 4 * as[a], 4 * sizeof(float));
            ls->num_pos += 1;
            npos_i += 1;
            float w = ls->type == KD_DET_ATSS ? kd_atss_centerness_target(ls->anchors + 4 * a, tg)
                    : ls->type == KD_DET_FCOS ? kd_fcos_centerness_target(ls->anchors + 4 * a, tg)
                    : ls->type == KD_DET_GFL  ? max_sigmoid(ls, level_of(g, a), i, a)
                                              : 0.0f;
            ls->wt[(size_t)i * ls->A + a] = w;
            ls->weight_sum += w;
        }
        ls->avg_local += npos_i > 1 ? npos_i : 1;
    }
    local->num_pos = ls->num_pos;
    local->weight_sum = ls->weight_sum;
    return KD_OK;
}

void kd_det_loss_normalisers(const kd_det_loss_stats *sum, int world_size, double *P, double *W)
{
    *P = sum->num_pos / world_size;
    double w = sum->weight_sum / world_size;
    *W = w < 1e-6 ? 1e-6 : w;
}

void kd_det_loss_compute(kd_det_loss *ls, kd_model *m, double P, double W, double grad_scale,
                         kd_det_losses *out)
{
    const kd_backend *be = m->be;
    const kd_head *h = &m->head;
    memset(out, 0, sizeof *out);
    /* GFL's and ATSS's box normaliser is clamp(min=1); FCOS's centerness_denorm is
     * max(mean, 1e-6), as kd_det_loss_normalisers left it. */
    if (ls->type != KD_DET_FCOS && W < 1.0) W = 1.0;
    ls->P_used = P;
    ls->W_used = W;
    if (ls->type == KD_DET_ATSS) kd_atss_loss_levels(ls, m, P, W, grad_scale, out);
    else if (ls->type == KD_DET_RETINANET) kd_retina_loss_levels(ls, m, grad_scale, out);
    else if (ls->type == KD_DET_FCOS) kd_fcos_loss_levels(ls, m, P, W, grad_scale, out);
    else kd_det_loss_levels(ls, m, P, W, grad_scale, out);
    size_t N = (size_t)ls->N;
    for (int l = 0; l < ls->g.L; l++) {
        size_t hw = (size_t)ls->g.h[l] * ls->g.w[l];
        be->copy_from_host(be, m->d_cls[l], ls->dcls[l], N * h->cls_c * hw * sizeof(float));
        be->copy_from_host(be, m->d_reg[l], ls->dreg[l], N * h->reg_c * hw * sizeof(float));
        if (h->ctr_tower >= 0)
            be->copy_from_host(be, m->d_ctr[l], ls->dctr[l], N * h->A * hw * sizeof(float));
    }
}

float kd_loss_iou_aligned(const float *p, const float *t)
{
    float ap = (p[2] - p[0]) * (p[3] - p[1]), at_ = (t[2] - t[0]) * (t[3] - t[1]);
    float wx = fminf(p[2], t[2]) - fmaxf(p[0], t[0]), wy = fminf(p[3], t[3]) - fmaxf(p[1], t[1]);
    if (wx < 0) wx = 0;
    if (wy < 0) wy = 0;
    float ov = wx * wy, un = ap + at_ - ov;
    if (un < 1e-6f) un = 1e-6f;
    return ov / un;
}
