/* gfl_head.c — MMDetection's GFLHead towers (crosskd.md §3.3, §4.1): per tower
 * stacked_convs blocks conv3x3 (no bias) -> GroupNorm -> ReLU (mmcv ConvModule order), then
 * gfl_cls (K channels) on the cls tower and gfl_reg (4*(reg_max+1)) times the per-level
 * Scale on the reg tower. The weights are shared over levels except the Scales.
 *
 * The tower functions run from any block `first`, so the same code is the student's own head
 * (first = 0) and CrossKD's re-used teacher layers (first = idx, input = the aligned student
 * feature), with a backward that can skip every parameter gradient (frozen teacher).
 *
 * Keys: bbox_head.{cls,reg}_convs.{j}.conv.weight, .gn.{weight,bias},
 * bbox_head.gfl_{cls,reg}.{weight,bias}, bbox_head.scales.{l}.scale (a 0-d tensor),
 * bbox_head.integral.project (buffer [0..reg_max], kept for MMDetection compatibility).
 */
#include "worker/model/model_internal.h"

#include <stdio.h>
#include <string.h>

kd_status kd_gfl_head_build(kd_gfl_head *h, kd_params *P, const kd_model_cfg *cfg, int levels,
                            kd_err *err)
{
    memset(h, 0, sizeof *h);
    h->K = (int)cfg->bbox_head.num_classes;
    h->S = (int)cfg->bbox_head.stacked_convs;
    h->C_in = (int)cfg->neck.out_channels;
    h->F = (int)cfg->bbox_head.feat_channels;
    h->R = (int)cfg->bbox_head.reg_max;
    h->G = (int)cfg->bbox_head.gn_groups;
    h->L = levels;
    if (h->S > KD_MAX_STACKED)
        return kd_errf(err, KD_EINVAL, "model.bbox_head.stacked_convs: at most %d", KD_MAX_STACKED);
    if (h->S > 0 && h->F % h->G != 0)
        return kd_errf(err, KD_EINVAL,
                       "model.bbox_head.norm_cfg.num_groups: %d does not divide feat_channels %d",
                       h->G, h->F);
    if (cfg->bbox_head.strides.n != levels)
        return kd_errf(err, KD_EINVAL,
                       "model.bbox_head.anchor_generator.strides: %d strides for %d FPN levels",
                       cfg->bbox_head.strides.n, levels);
    for (int l = 0; l < levels; l++) h->strides[l] = cfg->bbox_head.strides.v[l];
    char nm[KD_PARAM_NAME_BYTES];
    static const char *const tn[2] = {"cls", "reg"};
    for (int t = 0; t < 2; t++)
        for (int j = 0; j < h->S; j++) {
            snprintf(nm, sizeof nm, "bbox_head.%s_convs.%d.conv.weight", tn[t], j);
            h->conv_w[t][j] = kd_params_add(P, nm, 1, KD_DT_F32, 4, h->F, j ? h->F : h->C_in, 3, 3);
            snprintf(nm, sizeof nm, "bbox_head.%s_convs.%d.gn.weight", tn[t], j);
            h->gn_g[t][j] = kd_params_add(P, nm, 1, KD_DT_F32, 1, h->F, 0, 0, 0);
            snprintf(nm, sizeof nm, "bbox_head.%s_convs.%d.gn.bias", tn[t], j);
            h->gn_b[t][j] = kd_params_add(P, nm, 1, KD_DT_F32, 1, h->F, 0, 0, 0);
        }
    int pc = h->S ? h->F : h->C_in;
    h->cls_w = kd_params_add(P, "bbox_head.gfl_cls.weight", 1, KD_DT_F32, 4, h->K, pc, 3, 3);
    h->cls_b = kd_params_add(P, "bbox_head.gfl_cls.bias", 1, KD_DT_F32, 1, h->K, 0, 0, 0);
    h->reg_w = kd_params_add(P, "bbox_head.gfl_reg.weight", 1, KD_DT_F32, 4, 4 * (h->R + 1), pc, 3, 3);
    h->reg_b = kd_params_add(P, "bbox_head.gfl_reg.bias", 1, KD_DT_F32, 1, 4 * (h->R + 1), 0, 0, 0);
    for (int l = 0; l < levels; l++) {
        snprintf(nm, sizeof nm, "bbox_head.scales.%d.scale", l);
        h->scale[l] = kd_params_add(P, nm, 1, KD_DT_F32, 0, 0, 0, 0, 0);
    }
    h->project = kd_params_add(P, "bbox_head.integral.project", 0, KD_DT_F32, 1, h->R + 1, 0, 0, 0);
    return KD_OK;
}

static kd_shape block_shape(const kd_gfl_head *h, kd_shape x) { return (kd_shape){x.n, h->F, x.h, x.w}; }

size_t kd_gfl_tower_acts_elems(const kd_gfl_head *h, kd_shape x, int first)
{
    size_t e = kd_shape_elems(block_shape(h, x)), s = (size_t)x.n * h->G, pad = 16;
    size_t per = 2 * (e + pad) + 2 * (s + pad);
    return (size_t)(h->S - first) * per + (size_t)x.n * 4 * (h->R + 1) * x.h * x.w + pad;
}

void kd_gfl_tower_acts_bind(const kd_gfl_head *h, kd_shape x, int first, float *buf,
                            kd_gfl_tower_acts *a)
{
    memset(a, 0, sizeof *a);
    size_t e = kd_shape_elems(block_shape(h, x)), s = (size_t)x.n * h->G;
    kd_plan p = {0};
    p.base = (uintptr_t)buf;
    for (int j = first; j < h->S; j++) {
        a->conv[j] = kd_plan_take(&p, e, -1);
        a->out[j] = kd_plan_take(&p, e, -1);
        a->mean[j] = kd_plan_take(&p, s, -1);
        a->rstd[j] = kd_plan_take(&p, s, -1);
    }
    a->pred_raw = kd_plan_take(&p, (size_t)x.n * 4 * (h->R + 1) * x.h * x.w, -1);
}

static kd_conv_desc block_desc(const kd_gfl_head *h, kd_shape x)
{
    return (kd_conv_desc){x, h->F, 3, 3, 1, 1, 1, 1, 0};
}

static kd_conv_desc pred_desc(const kd_gfl_head *h, int tower, kd_shape x)
{
    return (kd_conv_desc){x, tower == KD_TOWER_CLS ? h->K : 4 * (h->R + 1), 3, 3, 1, 1, 1, 1, 1};
}

void kd_gfl_tower_fwd(const kd_backend *be, const kd_gfl_head *h, const kd_params *P,
                      int tower, int level, int first, kd_shape xs, const float *x,
                      kd_gfl_tower_acts *a, float *pred)
{
    kd_shape s = xs;
    for (int j = first; j < h->S; j++) {
        kd_conv_desc d = block_desc(h, s);
        be->conv_fwd(be, &d, x, kd_params_ptr(P, h->conv_w[tower][j]), NULL, a->conv[j]);
        s = kd_conv_out_shape(&d);
        be->group_norm_fwd(be, s, h->G, KD_GN_EPS, 1, a->conv[j],
                           kd_params_ptr(P, h->gn_g[tower][j]), kd_params_ptr(P, h->gn_b[tower][j]),
                           a->out[j], a->mean[j], a->rstd[j]);
        x = a->out[j];
    }
    kd_conv_desc d = pred_desc(h, tower, s);
    if (tower == KD_TOWER_CLS) {
        be->conv_fwd(be, &d, x, kd_params_ptr(P, h->cls_w), kd_params_ptr(P, h->cls_b), pred);
    } else {
        be->conv_fwd(be, &d, x, kd_params_ptr(P, h->reg_w), kd_params_ptr(P, h->reg_b), a->pred_raw);
        be->scale_fwd(be, kd_shape_elems(kd_conv_out_shape(&d)), kd_params_ptr(P, h->scale[level]),
                      a->pred_raw, pred);
    }
}

void kd_gfl_tower_bwd(const kd_backend *be, const kd_gfl_head *h, const kd_params *P,
                      int tower, int level, int first, kd_shape xs, const float *x,
                      const kd_gfl_tower_acts *a, float *dpred, float *dx, int accumulate,
                      int with_param_grads, int hold_idx, const float *dheld, float *s0,
                      float *s1)
{
    int pg = with_param_grads;
    kd_shape s = block_shape(h, xs);
    if (h->S == first) s = xs;
    const float *last_in = h->S > first ? a->out[h->S - 1] : x;
    kd_conv_desc d = pred_desc(h, tower, s);
    int wi = tower == KD_TOWER_CLS ? h->cls_w : h->reg_w, bi = tower == KD_TOWER_CLS ? h->cls_b : h->reg_b;
    if (tower == KD_TOWER_REG) {
        int si = h->scale[level];
        be->scale_bwd(be, kd_shape_elems(kd_conv_out_shape(&d)), kd_params_ptr(P, si), a->pred_raw,
                      dpred, dpred, 0, pg ? kd_params_grad(P, si) : NULL);
    }
    if (pg) be->conv_bwd_weight(be, &d, last_in, dpred, kd_params_grad(P, wi), kd_params_grad(P, bi));
    /* cur: gradient of the current block's post-ReLU output (or of x when first == S). */
    float *cur = s0, *oth = s1;
    if (h->S == first) {
        if (dx) be->conv_bwd_data(be, &d, dpred, kd_params_ptr(P, wi), dx, accumulate);
        return;
    }
    be->conv_bwd_data(be, &d, dpred, kd_params_ptr(P, wi), cur, 0);
    size_t e = kd_shape_elems(s);
    if (dheld && hold_idx == h->S) be->axpy(be, e, 1.0f, dheld, cur);
    for (int j = h->S - 1; j >= first; j--) {
        kd_shape in_s = j == first ? xs : s;
        kd_conv_desc bd = block_desc(h, in_s);
        const float *in = j == first ? x : a->out[j - 1];
        be->group_norm_bwd(be, s, h->G, 1, a->conv[j], a->out[j], cur,
                           kd_params_ptr(P, h->gn_g[tower][j]), a->mean[j], a->rstd[j], oth, 0,
                           pg ? kd_params_grad(P, h->gn_g[tower][j]) : NULL,
                           pg ? kd_params_grad(P, h->gn_b[tower][j]) : NULL);
        if (pg) be->conv_bwd_weight(be, &bd, in, oth, kd_params_grad(P, h->conv_w[tower][j]), NULL);
        if (j == first) {
            if (dx)
                be->conv_bwd_data(be, &bd, oth, kd_params_ptr(P, h->conv_w[tower][j]), dx,
                                  accumulate);
        } else {
            be->conv_bwd_data(be, &bd, oth, kd_params_ptr(P, h->conv_w[tower][j]), cur, 0);
            if (dheld && hold_idx == j) be->axpy(be, e, 1.0f, dheld, cur);
        }
    }
}
