/* postprocess.c — dense-head inference (crosskd.md §7, coco.md §3.10, MMDetection's
 * _predict_by_feat_single and _bbox_post_process) for one image of the last forward, on the
 * host, for every head type:
 *   per level: scores = sigmoid(cls) over (prior, class) pairs in row-major order (prior =
 *   location * A + anchor); keep pairs with score > score_thr; the top nms_pre by score
 *   (descending; ties keep the lower pair index, a stable sort); decode the kept pairs'
 *   boxes — GFL: Integral(reg) * stride from the anchor centres (x*s, y*s); ATSS: delta-xywh
 *   from the anchors; FCOS: exp(reg) distances from the points ((x+0.5)s, (y+0.5)s) — and clip to [0, img_w] x [0, img_h]; a centerness head multiplies the
 *   kept scores by sigmoid(centerness) (after the threshold and top-k);
 *   all levels: divide by the resize scale factors; drop boxes with width or height not
 *   above min_bbox_size; class-aware greedy NMS (suppress IoU > threshold, no +1 in areas)
 *   in descending score order; keep the first max_per_img.
 */
#include "worker/model/det_loss_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kd_math.h"

typedef struct cand {
    float score;
    int idx; /* pair index within its level, or global order for the final sort */
    int label;
    float box[4];
} cand;

static int cmp_score_desc(const void *a, const void *b)
{
    const cand *p = a, *q = b;
    if (p->score > q->score) return -1;
    if (p->score < q->score) return 1;
    return (p->idx > q->idx) - (p->idx < q->idx);
}

static float box_iou(const kd_det *a, const kd_det *b)
{
    float w = fminf(a->x2, b->x2) - fmaxf(a->x1, b->x1), h = fminf(a->y2, b->y2) - fmaxf(a->y1, b->y1);
    if (w <= 0 || h <= 0) return 0;
    float in = w * h;
    float un = (a->x2 - a->x1) * (a->y2 - a->y1) + (b->x2 - b->x1) * (b->y2 - b->y1) - in;
    return un > 0 ? in / un : 0;
}

void kd_nms(const kd_det *d, int n, double thr, uint8_t *keep)
{
    float t = (float)thr; /* mmcv compares in float32 */
    for (int i = 0; i < n; i++) keep[i] = 1;
    for (int i = 0; i < n; i++) {
        if (!keep[i]) continue;
        for (int j = i + 1; j < n; j++)
            if (keep[j] && d[j].label == d[i].label && box_iou(&d[i], &d[j]) > t) keep[j] = 0;
    }
}

/* Box of the kept (prior, class) pair `p` (prior index within the level) of image i. */
static void decode_prior(const kd_model *m, const kd_level_geom *g, int l, const float *reg, size_t hw, int p,
                         float *b)
{
    const kd_head *h = &m->head;
    int A = h->A, pos = p / A, a = p % A, w = g->w[l];
    float st = (float)g->stride[l], px = ((float)(pos % w) + g->offset) * st, py = ((float)(pos / w) + g->offset) * st;
    if (h->type == KD_DET_FCOS) { /* distances exp(reg) in pixels at the point */
        float d[4];
        for (int k = 0; k < 4; k++) d[k] = expf(reg[(size_t)k * hw + pos]);
        b[0] = px - d[0], b[1] = py - d[1], b[2] = px + d[2], b[3] = py + d[3];
        return;
    }
    if (h->type == KD_DET_GFL) {
        int R1 = h->R + 1;
        float d[4], z[72];
        for (int side = 0; side < 4; side++) {
            for (int j = 0; j < R1; j++) z[j] = reg[(size_t)(side * R1 + j) * hw + pos];
            kd_softmax_row(z, z, R1);
            float e = 0;
            for (int j = 0; j < R1; j++) e += z[j] * (float)j;
            d[side] = e * st;
        }
        b[0] = px - d[0], b[1] = py - d[1], b[2] = px + d[2], b[3] = py + d[3];
        return;
    }
    float an[4] = {px - g->half_w[l][a], py - g->half_h[l][a], px + g->half_w[l][a], py + g->half_h[l][a]};
    float dl[4], stds[4];
    for (int k = 0; k < 4; k++) {
        dl[k] = reg[(size_t)(a * 4 + k) * hw + pos];
        stds[k] = (float)m->cfg.bbox_head.target_stds.v[k];
    }
    kd_delta_decode(an, dl, stds, b);
}

/* One level's kept pairs of image `image` (score > thr, top nms_pre, decoded and clipped,
 * times the centerness score factor when the head has one); returns their count. */
static int level_candidates(const kd_model *m, const kd_level_geom *g, int l, int image, int img_h, int img_w,
                            cand **out)
{
    const kd_backend *be = m->be;
    const kd_head *h = &m->head;
    int K = h->K, A = h->A;
    size_t hw = (size_t)g->h[l] * g->w[l];
    float *cls = kd_xmalloc(h->cls_c * hw * sizeof(float)), *reg = kd_xmalloc(h->reg_c * hw * sizeof(float));
    float *ctr = h->ctr_tower >= 0 ? kd_xmalloc(A * hw * sizeof(float)) : NULL;
    be->copy_to_host(be, cls, m->cls[l] + (size_t)image * h->cls_c * hw, h->cls_c * hw * sizeof(float));
    be->copy_to_host(be, reg, m->reg[l] + (size_t)image * h->reg_c * hw, h->reg_c * hw * sizeof(float));
    if (ctr) be->copy_to_host(be, ctr, m->ctr[l] + (size_t)image * A * hw, A * hw * sizeof(float));
    cand *cs = kd_xmalloc((h->cls_c * hw + 1) * sizeof *cs);
    int nc = 0, nms_pre = (int)m->cfg.test_cfg.nms_pre;
    float thr = (float)m->cfg.test_cfg.score_thr;
    for (size_t pos = 0; pos < hw; pos++)
        for (int a = 0; a < A; a++)
            for (int k = 0; k < K; k++) {
                float sc = kd_sigmoid(cls[(size_t)(a * K + k) * hw + pos]);
                int p = (int)(pos * A + a);
                if (sc > thr) cs[nc++] = (cand){sc, p * K + k, k, {0, 0, 0, 0}};
            }
    qsort(cs, (size_t)nc, sizeof *cs, cmp_score_desc);
    if (nc > nms_pre) nc = nms_pre;
    for (int i = 0; i < nc; i++) {
        int p = cs[i].idx / K;
        float b[4];
        decode_prior(m, g, l, reg, hw, p, b);
        b[0] = fminf(fmaxf(b[0], 0), (float)img_w);
        b[2] = fminf(fmaxf(b[2], 0), (float)img_w);
        b[1] = fminf(fmaxf(b[1], 0), (float)img_h);
        b[3] = fminf(fmaxf(b[3], 0), (float)img_h);
        memcpy(cs[i].box, b, sizeof b);
        if (ctr) cs[i].score *= kd_sigmoid(ctr[(size_t)(p % A) * hw + p / A]);
    }
    free(cls);
    free(reg);
    free(ctr);
    *out = cs;
    return nc;
}

int kd_det_predict(const kd_model *m, int image, int img_h, int img_w, double scale_h, double scale_w,
                   kd_det *dets)
{
    const kd_model_cfg *c = &m->cfg;
    kd_level_geom g;
    kd_level_geom_of(m, &g);
    cand *all = NULL;
    size_t n_all = 0;
    for (int l = 0; l < g.L; l++) {
        cand *cs;
        int nc = level_candidates(m, &g, l, image, img_h, img_w, &cs);
        all = kd_xrealloc(all, (n_all + (size_t)nc + 1) * sizeof *all);
        memcpy(all + n_all, cs, (size_t)nc * sizeof *cs);
        n_all += (size_t)nc;
        free(cs);
    }
    size_t n = 0;
    float msz = (float)c->test_cfg.min_bbox_size;
    for (size_t i = 0; i < n_all; i++) {
        cand v = all[i];
        v.box[0] /= (float)scale_w;
        v.box[2] /= (float)scale_w;
        v.box[1] /= (float)scale_h;
        v.box[3] /= (float)scale_h;
        if (!(v.box[2] - v.box[0] > msz && v.box[3] - v.box[1] > msz)) continue;
        v.idx = (int)i;
        all[n++] = v;
    }
    qsort(all, n, sizeof *all, cmp_score_desc);
    kd_det *d = kd_xmalloc((n + 1) * sizeof *d);
    for (size_t i = 0; i < n; i++)
        d[i] = (kd_det){all[i].box[0], all[i].box[1], all[i].box[2], all[i].box[3], all[i].score, all[i].label};
    uint8_t *keep = kd_xmalloc(n + 1);
    kd_nms(d, (int)n, c->test_cfg.nms_iou_threshold, keep);
    int out = 0, maxd = (int)c->test_cfg.max_per_img;
    for (size_t i = 0; i < n && out < maxd; i++)
        if (keep[i]) dets[out++] = d[i];
    free(keep);
    free(d);
    free(all);
    return out;
}
