/* gfl_loss.c — GFL's detection losses (crosskd.md §5.1, MMDetection 3.0 GFLHead) with
 * their gradients, on the host, in two phases so multi-rank normalisers can be reduced
 * between them:
 *   prepare: head outputs to the host, anchors and valid flags per image pad shape, ATSS,
 *            local num_pos and the sum over positives of w_a = max_c sigmoid(cls) (detached);
 *   compute: given P = mean over ranks of num_pos and W = max(1, mean of the weight sums):
 *     QFL (beta, weight) over every valid anchor and class: negatives BCE(x,0)*sigma^beta,
 *       the label class of a positive BCE(x,q)*|sigma-q|^beta, q = IoU(decoded box
 *       (detached), gt) in stride units; sum / (P + eps);
 *     GIoU (weight) on positives, weighted by w_a: sum / (1 + eps) / W;
 *     DFL (weight) on positives, 4 sides, targets clamped to [0, reg_max - 0.1], weighted by
 *       w_a: sum / (4 + eps) / W;
 *   eps = FLT_EPSILON (MMDetection adds it to every avg_factor). Gradients (crosskd.md §13.2)
 *   go to the logits: QFL directly, GIoU through decode and the integral
 *   (dD/dz_j = p_j (j - D)), DFL as softmax minus the two-bin target. min/max ties split the
 *   gradient in half as PyTorch's minimum/maximum do; clamped quantities get no gradient.
 */
#include "worker/model/model.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kd_math.h"

#define AVG_EPS ((double)FLT_EPSILON)

struct kd_gfl_loss {
    kd_level_geom g;
    int N, K, R;
    size_t A, cap_cls[KD_MAX_LEVELS], cap_reg[KD_MAX_LEVELS], cap_a;
    float *cls[KD_MAX_LEVELS], *reg[KD_MAX_LEVELS], *dcls[KD_MAX_LEVELS], *dreg[KD_MAX_LEVELS];
    float *anchors, *score, *wt;
    uint8_t *valid;
    int *assigned, *label;
    float *tgt; /* N*A*4 matched gt box */
    double num_pos, weight_sum;
};

kd_gfl_loss *kd_gfl_loss_create(const kd_model *m)
{
    (void)m;
    return kd_xcalloc(1, sizeof(kd_gfl_loss));
}

void kd_gfl_loss_destroy(kd_gfl_loss *ls)
{
    if (!ls) return;
    for (int l = 0; l < KD_MAX_LEVELS; l++) {
        free(ls->cls[l]);
        free(ls->reg[l]);
        free(ls->dcls[l]);
        free(ls->dreg[l]);
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

const int *kd_gfl_loss_assigned(const kd_gfl_loss *ls, int image) { return ls->label + (size_t)image * ls->A; }

/* Index of (image i, channel c, anchor a of level l) in the level's N,C,H,W tensor. */
static inline size_t at(const kd_level_geom *g, int l, int C, int i, int c, size_t a)
{
    size_t hw = (size_t)g->h[l] * g->w[l];
    return ((size_t)i * C + c) * hw + (a - g->off[l]);
}

static int level_of(const kd_level_geom *g, size_t a)
{
    int l = 0;
    while (a >= g->off[l + 1]) l++;
    return l;
}

static float max_sigmoid(const kd_gfl_loss *ls, int l, int i, size_t a)
{
    float m = -INFINITY;
    for (int c = 0; c < ls->K; c++) {
        float x = ls->cls[l][at(&ls->g, l, ls->K, i, c, a)];
        if (x > m) m = x;
    }
    return kd_sigmoid(m);
}

kd_status kd_gfl_loss_prepare(kd_gfl_loss *ls, const kd_model *m, const kd_image_gt *gts,
                              kd_gfl_loss_stats *local, kd_err *err)
{
    const kd_backend *be = m->be;
    kd_level_geom_of(m, &ls->g);
    const kd_level_geom *g = &ls->g;
    ls->N = m->n;
    ls->K = m->head.K;
    ls->R = m->head.R;
    ls->A = g->off[g->L];
    int N = ls->N, K = ls->K, RC = 4 * (ls->R + 1);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < gts[i].n; j++)
            if (gts[i].labels[j] < 0 || gts[i].labels[j] >= K)
                return kd_errf(err, KD_EINVAL, "image %d box %d: label %d outside [0, %d)", i, j,
                               gts[i].labels[j], K);
    for (int l = 0; l < g->L; l++) {
        size_t hw = (size_t)g->h[l] * g->w[l];
        if (ls->cap_cls[l] < (size_t)N * K * hw) {
            free(ls->cls[l]);
            free(ls->dcls[l]);
            ls->cls[l] = kd_xmalloc((size_t)N * K * hw * sizeof(float));
            ls->dcls[l] = kd_xmalloc((size_t)N * K * hw * sizeof(float));
            ls->cap_cls[l] = (size_t)N * K * hw;
        }
        if (ls->cap_reg[l] < (size_t)N * RC * hw) {
            free(ls->reg[l]);
            free(ls->dreg[l]);
            ls->reg[l] = kd_xmalloc((size_t)N * RC * hw * sizeof(float));
            ls->dreg[l] = kd_xmalloc((size_t)N * RC * hw * sizeof(float));
            ls->cap_reg[l] = (size_t)N * RC * hw;
        }
        be->copy_to_host(be, ls->cls[l], m->cls[l], (size_t)N * K * hw * sizeof(float));
        be->copy_to_host(be, ls->reg[l], m->reg[l], (size_t)N * RC * hw * sizeof(float));
    }
    if (ls->cap_a < (size_t)N * ls->A) {
        size_t na = (size_t)N * ls->A;
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
    int div = (int)m->cfg.data_preprocessor.pad_size_divisor;
    ls->num_pos = 0;
    ls->weight_sum = 0;
    for (int i = 0; i < N; i++) {
        int ph = (gts[i].img_h + div - 1) / div * div, pw = (gts[i].img_w + div - 1) / div * div;
        uint8_t *valid = ls->valid + (size_t)i * ls->A;
        int *as = ls->assigned + (size_t)i * ls->A, *lb = ls->label + (size_t)i * ls->A;
        kd_anchors_image(g, ph, pw, ls->anchors, valid);
        kd_atss_assign(g, ls->anchors, valid, (int)m->cfg.train_cfg.topk, gts[i].n, gts[i].boxes, as);
        for (size_t a = 0; a < ls->A; a++) {
            lb[a] = as[a] >= 0 ? gts[i].labels[as[a]] : -1;
            if (as[a] < 0) continue;
            memcpy(ls->tgt + 4 * ((size_t)i * ls->A + a), gts[i].boxes + 4 * as[a], 4 * sizeof(float));
            ls->num_pos += 1;
            float w = max_sigmoid(ls, level_of(g, a), i, a);
            ls->wt[(size_t)i * ls->A + a] = w;
            ls->weight_sum += w;
        }
    }
    local->num_pos = ls->num_pos;
    local->weight_sum = ls->weight_sum;
    return KD_OK;
}

void kd_gfl_loss_normalisers(const kd_gfl_loss_stats *sum, int world_size, double *P, double *W)
{
    *P = sum->num_pos / world_size;
    double w = sum->weight_sum / world_size;
    *W = w < 1.0 ? 1.0 : w;
}

/* d/dx of max(a, b) for the a side: 1, 0, or 1/2 on ties (PyTorch maximum/minimum). */
static inline float sel(float a, float b, int want_max)
{
    if (a == b) return 0.5f;
    return want_max ? (a > b) : (a < b);
}

/* 1 - GIoU(p, t) and its gradient w.r.t. p (dp, 4), eps 1e-6 (MMDetection GIoULoss). */
static float giou_loss_grad(const float *p, const float *t, float *dp)
{
    const float eps = 1e-6f;
    float ap = (p[2] - p[0]) * (p[3] - p[1]), at_ = (t[2] - t[0]) * (t[3] - t[1]);
    float ltx = fmaxf(p[0], t[0]), lty = fmaxf(p[1], t[1]);
    float rbx = fminf(p[2], t[2]), rby = fminf(p[3], t[3]);
    float wx = rbx - ltx, wy = rby - lty;
    float cwx = wx < 0 ? 0 : wx, cwy = wy < 0 ? 0 : wy;
    float ov = cwx * cwy, un_raw = ap + at_ - ov, un = un_raw < eps ? eps : un_raw;
    float ex1 = fminf(p[0], t[0]), ey1 = fminf(p[1], t[1]), ex2 = fmaxf(p[2], t[2]), ey2 = fmaxf(p[3], t[3]);
    float ewx = ex2 - ex1, ewy = ey2 - ey1;
    float cex = ewx < 0 ? 0 : ewx, cey = ewy < 0 ? 0 : ewy;
    float en_raw = cex * cey, en = en_raw < eps ? eps : en_raw;
    float giou = ov / un - (en - un) / en;
    /* L = 1 - giou: dL/dov = -1/un, dL/dun = ov/un^2 - 1/en, dL/den = un/en^2 */
    float dov = -1.0f / un, dun = ov / (un * un) - 1.0f / en, den = un / (en * en);
    if (un_raw < eps) dun = 0; /* clamped (PyTorch's max(union, eps) passes to the larger) */
    if (en_raw < eps) den = 0;
    float dap = dun;
    dov += -dun;
    float dcwx = dov * cwy, dcwy = dov * cwx;
    float dwx = wx >= 0 ? dcwx : 0, dwy = wy >= 0 ? dcwy : 0;
    float dcex = den * cey, dcey = den * cex;
    float dewx = ewx >= 0 ? dcex : 0, dewy = ewy >= 0 ? dcey : 0;
    dp[0] = -dap * (p[3] - p[1]) - dwx * sel(p[0], t[0], 1) - dewx * sel(p[0], t[0], 0);
    dp[2] = dap * (p[3] - p[1]) + dwx * sel(p[2], t[2], 0) + dewx * sel(p[2], t[2], 1);
    dp[1] = -dap * (p[2] - p[0]) - dwy * sel(p[1], t[1], 1) - dewy * sel(p[1], t[1], 0);
    dp[3] = dap * (p[2] - p[0]) + dwy * sel(p[3], t[3], 0) + dewy * sel(p[3], t[3], 1);
    return 1.0f - giou;
}

static float iou_aligned(const float *p, const float *t)
{
    float ap = (p[2] - p[0]) * (p[3] - p[1]), at_ = (t[2] - t[0]) * (t[3] - t[1]);
    float wx = fminf(p[2], t[2]) - fmaxf(p[0], t[0]), wy = fminf(p[3], t[3]) - fmaxf(p[1], t[1]);
    if (wx < 0) wx = 0;
    if (wy < 0) wy = 0;
    float ov = wx * wy, un = ap + at_ - ov;
    if (un < 1e-6f) un = 1e-6f;
    return ov / un;
}

void kd_gfl_loss_compute(kd_gfl_loss *ls, kd_model *m, double P, double W, double grad_scale,
                         kd_gfl_losses *out)
{
    const kd_backend *be = m->be;
    const kd_level_geom *g = &ls->g;
    int N = ls->N, K = ls->K, R1 = ls->R + 1, RC = 4 * R1;
    double beta = m->cfg.bbox_head.loss_cls_beta;
    int beta2 = beta == 2.0; /* GFL's value: powers by multiplication (the hot loop) */
    double wc = m->cfg.bbox_head.loss_cls_weight / (P + AVG_EPS);
    double wb = m->cfg.bbox_head.loss_bbox_weight / (1.0 + AVG_EPS) / W;
    double wd = m->cfg.bbox_head.loss_dfl_weight / (4.0 + AVG_EPS) / W;
    memset(out, 0, sizeof *out);
    float prob[72], lsm[72];
    for (int l = 0; l < g->L; l++) {
        size_t hw = (size_t)g->h[l] * g->w[l];
        memset(ls->dcls[l], 0, (size_t)N * K * hw * sizeof(float));
        memset(ls->dreg[l], 0, (size_t)N * RC * hw * sizeof(float));
        float s = (float)g->stride[l];
        double sb = 0, sd = 0, sc = 0;
        /* positives: decode, GIoU, DFL, quality score */
        for (int i = 0; i < N; i++)
            for (size_t a = g->off[l]; a < g->off[l + 1]; a++) {
                size_t ia = (size_t)i * ls->A + a;
                ls->score[ia] = 0;
                if (ls->label[ia] < 0) continue;
                const float *an = ls->anchors + 4 * a;
                float px = (an[0] + an[2]) / 2.0f / s, py = (an[1] + an[3]) / 2.0f / s;
                float dist[4], z[4][72];
                for (int k = 0; k < 4; k++) {
                    for (int j = 0; j < R1; j++) z[k][j] = ls->reg[l][at(g, l, RC, i, k * R1 + j, a)];
                    kd_softmax_row(z[k], prob, R1);
                    float d = 0;
                    for (int j = 0; j < R1; j++) d += prob[j] * (float)j;
                    dist[k] = d;
                }
                float box[4] = {px - dist[0], py - dist[1], px + dist[2], py + dist[3]};
                const float *tg = ls->tgt + 4 * ia;
                float tb[4] = {tg[0] / s, tg[1] / s, tg[2] / s, tg[3] / s};
                float w = ls->wt[ia];
                ls->score[ia] = iou_aligned(box, tb);
                float dbox[4];
                float lg = giou_loss_grad(box, tb, dbox);
                sb += (double)w * lg;
                float ddist[4] = {-dbox[0], -dbox[1], dbox[2], dbox[3]};
                float t4[4] = {px - tb[0], py - tb[1], tb[2] - px, tb[3] - py};
                for (int k = 0; k < 4; k++) {
                    float t = t4[k];
                    if (t < 0) t = 0;
                    if (t > (float)ls->R - 0.1f) t = (float)ls->R - 0.1f;
                    int yl = (int)t, yr = yl + 1;
                    float wl = (float)yr - t, wr = t - (float)yl;
                    kd_softmax_row(z[k], prob, R1);
                    kd_log_softmax_row(z[k], lsm, R1);
                    sd += (double)w * (-lsm[yl] * wl - lsm[yr] * wr);
                    for (int j = 0; j < R1; j++) {
                        float gdfl = prob[j] - (j == yl ? wl : 0.0f) - (j == yr ? wr : 0.0f);
                        float gint = prob[j] * ((float)j - dist[k]) * ddist[k];
                        float gr = (float)(grad_scale * (wd * w * gdfl + wb * w * gint));
                        ls->dreg[l][at(g, l, RC, i, k * R1 + j, a)] += gr;
                    }
                }
            }
        /* QFL over valid anchors */
        for (int i = 0; i < N; i++)
            for (size_t a = g->off[l]; a < g->off[l + 1]; a++) {
                size_t ia = (size_t)i * ls->A + a;
                if (!ls->valid[ia]) continue;
                int lab = ls->label[ia];
                for (int c = 0; c < K; c++) {
                    size_t o = at(g, l, K, i, c, a);
                    float x = ls->cls[l][o], sg = kd_sigmoid(x);
                    double loss, grad;
                    if (c == lab) {
                        float q = ls->score[ia];
                        double d = (double)sg - q, ad = fabs(d);
                        double bce = kd_bce_logits(x, q);
                        loss = bce * pow(ad, beta);
                        double sgn = d > 0 ? 1 : (d < 0 ? -1 : 0);
                        grad = d * pow(ad, beta) +
                               (ad > 0 ? bce * beta * pow(ad, beta - 1) * sgn * sg * (1 - sg) : 0);
                    } else {
                        double bce = kd_bce_logits(x, 0.0f);
                        double pb = beta2 ? (double)sg * sg : pow(sg, beta);          /* sg^beta */
                        double pb1 = beta2 ? (double)sg : pow(sg, beta - 1);        /* sg^(beta-1) */
                        loss = bce * pb;
                        grad = sg * pb + bce * beta * pb1 * sg * (1 - sg);
                    }
                    sc += loss;
                    ls->dcls[l][o] = (float)(grad_scale * wc * grad);
                }
            }
        out->level_cls[l] = sc * wc;
        out->level_bbox[l] = sb * wb;
        out->level_dfl[l] = sd * wd;
        out->loss_cls += out->level_cls[l];
        out->loss_bbox += out->level_bbox[l];
        out->loss_dfl += out->level_dfl[l];
        be->copy_from_host(be, m->d_cls[l], ls->dcls[l], (size_t)N * K * hw * sizeof(float));
        be->copy_from_host(be, m->d_reg[l], ls->dreg[l], (size_t)N * RC * hw * sizeof(float));
    }
}
