/* head.c — the dense heads of MMDetection 3.0 that crosskd trains, one tower code for all
 * (crosskd.md §3.3, §4.1, §6), selected by model.bbox_head.type:
 *
 *   GFLHead     blocks conv3x3 (no bias) -> GN -> ReLU; gfl_cls (K), gfl_reg (4*(reg_max+1))
 *               times the per-level Scale; one anchor per location.
 *   ATSSHead    the same GN blocks; atss_cls (K), atss_reg (4 deltas) times the Scale, and
 *               atss_centerness (1) on the reg tower's last features.
 *   RetinaHead  blocks conv3x3 with bias -> ReLU (no norm); retina_cls (A*K), retina_reg
 *               (A*4), A anchors per location; no Scale.
 * model.bbox_head.norm_cfg.type overrides the head type's choice of block (GN for a
 * RetinaHead, as MMDetection's norm_cfg=dict(type='GN') does; none for the others).
 *   FCOSHead    the GN blocks (the gn-head configs); conv_cls (K), conv_reg (4) times the
 *               Scale, conv_centerness (1) on the cls tower's last features. The reg output
 *               is Scale * conv_reg, the LOG of the distances: MMDetection's exp (norm_on_bbox
 *               False) is applied by its consumers (fcos_loss.c, postprocess.c, the KD).
 *
 * Per tower, stacked_convs blocks, then the prediction conv (+ Scale on the reg tower when
 * the head has one) and, on the tower that carries it, the centerness conv. The weights are
 * shared over levels except the Scales. Channel layouts are MMDetection's: cls channel
 * a*K + k is anchor a of the location, class k; reg channel a*4 + side (GFL: side*(R+1) + bin).
 *
 * The tower functions run from any block `first`, so the same code is the student's own head
 * (first = 0) and CrossKD's re-used teacher layers (first = idx, input = the aligned student
 * feature), with a backward that can skip every parameter gradient (frozen teacher).
 *
 * Keys: bbox_head.{cls,reg}_convs.{j}.conv.weight (+ .conv.bias without norm),
 * .gn.{weight,bias} with norm, bbox_head.<prefix>_{cls,reg,centerness}.{weight,bias} with
 * prefix gfl / atss / retina / conv (FCOS), bbox_head.scales.{l}.scale (a 0-d tensor), and for GFL
 * bbox_head.integral.project (buffer [0..reg_max], kept for MMDetection compatibility).
 */
#include "worker/model/model_internal.h"

#include <stdio.h>
#include <string.h>

static const char *const k_prefix[] = {"gfl", "retina", "atss", "conv"};
static const char *const k_model_type[] = {"GFL", "RetinaNet", "ATSS", "FCOS"};
static const char *const k_head_type[] = {"GFLHead", "RetinaHead", "ATSSHead", "FCOSHead"};

const char *kd_head_type_name(int type) { return type >= 0 && type <= KD_DET_FCOS ? k_head_type[type] : "?"; }

static kd_status head_shape(kd_head *h, const kd_model_cfg *cfg, int levels, kd_err *err)
{
    const char *tn = kd_head_type_name(cfg->bbox_head.type);
    h->type = (int)cfg->bbox_head.type;
    if ((int)cfg->type != h->type)
        return kd_errf(err, KD_EINVAL, "model.type %s does not match model.bbox_head.type %s",
                       k_model_type[cfg->type], tn);
    h->K = (int)cfg->bbox_head.num_classes;
    h->S = (int)cfg->bbox_head.stacked_convs;
    h->C_in = (int)cfg->neck.out_channels;
    h->F = (int)cfg->bbox_head.feat_channels;
    h->R = h->type == KD_DET_GFL ? (int)cfg->bbox_head.reg_max : 0;
    h->G = (int)cfg->bbox_head.gn_groups;
    h->L = levels;
    h->norm = cfg->bbox_head.norm_type == 0 ? h->type != KD_DET_RETINANET : cfg->bbox_head.norm_type == 1;
    h->A = h->type == KD_DET_RETINANET
               ? (int)(cfg->bbox_head.ratios.n * cfg->bbox_head.scales_per_octave)
               : 1;
    if (h->A > KD_MAX_ANCHORS)
        return kd_errf(err, KD_EINVAL, "model.bbox_head.anchor_generator: %d anchors per location, at most %d", h->A,
                       KD_MAX_ANCHORS);
    h->cls_c = h->A * h->K;
    h->reg_c = h->type == KD_DET_GFL ? 4 * (h->R + 1) : 4 * h->A;
    h->ctr_tower = h->type == KD_DET_ATSS ? KD_TOWER_REG : h->type == KD_DET_FCOS ? KD_TOWER_CLS : -1;
    h->has_scale = h->type != KD_DET_RETINANET;
    if (h->S > KD_MAX_STACKED)
        return kd_errf(err, KD_EINVAL, "model.bbox_head.stacked_convs: at most %d", KD_MAX_STACKED);
    if (h->norm && h->S > 0 && h->F % h->G != 0)
        return kd_errf(err, KD_EINVAL,
                       "model.bbox_head.norm_cfg.num_groups: %d does not divide feat_channels %d",
                       h->G, h->F);
    if (cfg->bbox_head.strides.n != levels)
        return kd_errf(err, KD_EINVAL,
                       "model.bbox_head.anchor_generator.strides: %d strides for %d FPN levels",
                       cfg->bbox_head.strides.n, levels);
    for (int l = 0; l < levels; l++) h->strides[l] = cfg->bbox_head.strides.v[l];
    return KD_OK;
}

static int add_conv(kd_params *P, const char *name, int cout, int cin, int k)
{
    return kd_params_add(P, name, 1, KD_DT_F32, 4, cout, cin, k, k);
}

static int add_vec(kd_params *P, const char *name, int n)
{
    return kd_params_add(P, name, 1, KD_DT_F32, 1, n, 0, 0, 0);
}

kd_status kd_head_build(kd_head *h, kd_params *P, const kd_model_cfg *cfg, int levels, kd_err *err)
{
    memset(h, 0, sizeof *h);
    kd_status st = head_shape(h, cfg, levels, err);
    if (st) return st;
    char nm[KD_PARAM_NAME_BYTES];
    static const char *const tn[2] = {"cls", "reg"};
    for (int t = 0; t < 2; t++)
        for (int j = 0; j < h->S; j++) {
            h->conv_b[t][j] = -1;
            snprintf(nm, sizeof nm, "bbox_head.%s_convs.%d.conv.weight", tn[t], j);
            h->conv_w[t][j] = add_conv(P, nm, h->F, j ? h->F : h->C_in, 3);
            if (!h->norm) {
                snprintf(nm, sizeof nm, "bbox_head.%s_convs.%d.conv.bias", tn[t], j);
                h->conv_b[t][j] = add_vec(P, nm, h->F);
                continue;
            }
            snprintf(nm, sizeof nm, "bbox_head.%s_convs.%d.gn.weight", tn[t], j);
            h->gn_g[t][j] = add_vec(P, nm, h->F);
            snprintf(nm, sizeof nm, "bbox_head.%s_convs.%d.gn.bias", tn[t], j);
            h->gn_b[t][j] = add_vec(P, nm, h->F);
        }
    int pc = h->S ? h->F : h->C_in;
    const char *pre = k_prefix[h->type];
    snprintf(nm, sizeof nm, "bbox_head.%s_cls.weight", pre);
    h->cls_w = add_conv(P, nm, h->cls_c, pc, 3);
    snprintf(nm, sizeof nm, "bbox_head.%s_cls.bias", pre);
    h->cls_b = add_vec(P, nm, h->cls_c);
    snprintf(nm, sizeof nm, "bbox_head.%s_reg.weight", pre);
    h->reg_w = add_conv(P, nm, h->reg_c, pc, 3);
    snprintf(nm, sizeof nm, "bbox_head.%s_reg.bias", pre);
    h->reg_b = add_vec(P, nm, h->reg_c);
    h->ctr_w = h->ctr_b = -1;
    if (h->ctr_tower >= 0) {
        snprintf(nm, sizeof nm, "bbox_head.%s_centerness.weight", pre);
        h->ctr_w = add_conv(P, nm, h->A, pc, 3);
        snprintf(nm, sizeof nm, "bbox_head.%s_centerness.bias", pre);
        h->ctr_b = add_vec(P, nm, h->A);
    }
    for (int l = 0; l < levels && h->has_scale; l++) {
        snprintf(nm, sizeof nm, "bbox_head.scales.%d.scale", l);
        h->scale[l] = kd_params_add(P, nm, 1, KD_DT_F32, 0, 0, 0, 0, 0);
    }
    h->project = -1;
    if (h->type == KD_DET_GFL)
        h->project = kd_params_add(P, "bbox_head.integral.project", 0, KD_DT_F32, 1, h->R + 1, 0, 0, 0);
    return KD_OK;
}

static kd_shape block_shape(const kd_head *h, kd_shape x) { return (kd_shape){x.n, h->F, x.h, x.w}; }

int kd_head_pred_channels(const kd_head *h, int tower) { return tower == KD_TOWER_CLS ? h->cls_c : h->reg_c; }

size_t kd_head_tower_acts_elems(const kd_head *h, kd_shape x, int first)
{
    size_t e = kd_shape_elems(block_shape(h, x)), s = (size_t)x.n * h->G, pad = 16;
    size_t per = 2 * (e + pad) + 2 * (s + pad);
    return (size_t)(h->S - first) * per + (size_t)x.n * h->reg_c * x.h * x.w + pad;
}

void kd_head_tower_acts_bind(const kd_head *h, kd_shape x, int first, float *buf, kd_head_tower_acts *a)
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
    a->pred_raw = kd_plan_take(&p, (size_t)x.n * h->reg_c * x.h * x.w, -1);
}

static kd_conv_desc block_desc(const kd_head *h, kd_shape x, int bias)
{
    return (kd_conv_desc){x, h->F, 3, 3, 1, 1, 1, 1, bias};
}

static kd_conv_desc pred_desc(kd_shape x, int cout) { return (kd_conv_desc){x, cout, 3, 3, 1, 1, 1, 1, 1}; }

static const float *opt_ptr(const kd_params *P, int idx) { return idx >= 0 ? kd_params_ptr(P, idx) : NULL; }

static float *opt_grad(const kd_params *P, int idx, int pg) { return pg && idx >= 0 ? kd_params_grad(P, idx) : NULL; }

void kd_head_tower_fwd(const kd_backend *be, const kd_head *h, const kd_params *P, int tower, int level,
                       int first, kd_shape xs, const float *x, kd_head_tower_acts *a, float *pred, float *ctr)
{
    kd_shape s = xs;
    for (int j = first; j < h->S; j++) {
        kd_conv_desc d = block_desc(h, s, !h->norm);
        be->conv_fwd(be, &d, x, kd_params_ptr(P, h->conv_w[tower][j]), opt_ptr(P, h->conv_b[tower][j]),
                     a->conv[j]);
        s = kd_conv_out_shape(&d);
        if (h->norm)
            be->group_norm_fwd(be, s, h->G, KD_GN_EPS, 1, a->conv[j], kd_params_ptr(P, h->gn_g[tower][j]),
                               kd_params_ptr(P, h->gn_b[tower][j]), a->out[j], a->mean[j], a->rstd[j]);
        else
            be->relu_fwd(be, kd_shape_elems(s), a->conv[j], a->out[j]);
        x = a->out[j];
    }
    kd_conv_desc d = pred_desc(s, kd_head_pred_channels(h, tower));
    if (tower == KD_TOWER_CLS) {
        be->conv_fwd(be, &d, x, kd_params_ptr(P, h->cls_w), kd_params_ptr(P, h->cls_b), pred);
    } else if (h->has_scale) {
        be->conv_fwd(be, &d, x, kd_params_ptr(P, h->reg_w), kd_params_ptr(P, h->reg_b), a->pred_raw);
        be->scale_fwd(be, kd_shape_elems(kd_conv_out_shape(&d)), kd_params_ptr(P, h->scale[level]),
                      a->pred_raw, pred);
    } else {
        be->conv_fwd(be, &d, x, kd_params_ptr(P, h->reg_w), kd_params_ptr(P, h->reg_b), pred);
    }
    if (tower == h->ctr_tower && ctr) {
        kd_conv_desc cd = pred_desc(s, h->A);
        be->conv_fwd(be, &cd, x, kd_params_ptr(P, h->ctr_w), kd_params_ptr(P, h->ctr_b), ctr);
    }
}

/* Block j's backward from cur (gradient of its post-activation output) into oth (gradient
 * of its conv output), with the block's parameter gradients when pg. */
static void block_bwd(const kd_backend *be, const kd_head *h, const kd_params *P, int tower, int j, kd_shape s,
                      kd_shape in_s, const float *in, const kd_head_tower_acts *a, const float *cur, float *oth,
                      int pg)
{
    if (h->norm)
        be->group_norm_bwd(be, s, h->G, 1, a->conv[j], a->out[j], cur, kd_params_ptr(P, h->gn_g[tower][j]),
                           a->mean[j], a->rstd[j], oth, 0, opt_grad(P, h->gn_g[tower][j], pg),
                           opt_grad(P, h->gn_b[tower][j], pg));
    else
        be->relu_bwd(be, kd_shape_elems(s), a->out[j], cur, oth, 0);
    kd_conv_desc bd = block_desc(h, in_s, !h->norm);
    if (pg) be->conv_bwd_weight(be, &bd, in, oth, kd_params_grad(P, h->conv_w[tower][j]),
                                opt_grad(P, h->conv_b[tower][j], pg));
}

void kd_head_tower_bwd(const kd_backend *be, const kd_head *h, const kd_params *P, int tower, int level,
                       int first, kd_shape xs, const float *x, const kd_head_tower_acts *a, float *dpred,
                       float *dctr, float *dx, int accumulate, int with_param_grads, int hold_idx,
                       const float *dheld, float *s0, float *s1)
{
    int pg = with_param_grads;
    kd_shape s = block_shape(h, xs);
    if (h->S == first) s = xs;
    const float *last_in = h->S > first ? a->out[h->S - 1] : x;
    kd_conv_desc d = pred_desc(s, kd_head_pred_channels(h, tower));
    int wi = tower == KD_TOWER_CLS ? h->cls_w : h->reg_w, bi = tower == KD_TOWER_CLS ? h->cls_b : h->reg_b;
    if (tower == KD_TOWER_REG && h->has_scale) {
        int si = h->scale[level];
        be->scale_bwd(be, kd_shape_elems(kd_conv_out_shape(&d)), kd_params_ptr(P, si), a->pred_raw,
                      dpred, dpred, 0, pg ? kd_params_grad(P, si) : NULL);
    }
    if (pg) be->conv_bwd_weight(be, &d, last_in, dpred, kd_params_grad(P, wi), kd_params_grad(P, bi));
    int with_ctr = tower == h->ctr_tower && dctr;
    kd_conv_desc cd = pred_desc(s, h->A);
    if (with_ctr && pg)
        be->conv_bwd_weight(be, &cd, last_in, dctr, kd_params_grad(P, h->ctr_w), kd_params_grad(P, h->ctr_b));
    /* cur: gradient of the current block's post-ReLU output (or of x when first == S). */
    float *cur = s0, *oth = s1;
    if (h->S == first) {
        if (dx) {
            be->conv_bwd_data(be, &d, dpred, kd_params_ptr(P, wi), dx, accumulate);
            if (with_ctr) be->conv_bwd_data(be, &cd, dctr, kd_params_ptr(P, h->ctr_w), dx, 1);
        }
        return;
    }
    be->conv_bwd_data(be, &d, dpred, kd_params_ptr(P, wi), cur, 0);
    if (with_ctr) be->conv_bwd_data(be, &cd, dctr, kd_params_ptr(P, h->ctr_w), cur, 1);
    size_t e = kd_shape_elems(s);
    if (dheld && hold_idx == h->S) be->axpy(be, e, 1.0f, dheld, cur);
    for (int j = h->S - 1; j >= first; j--) {
        kd_shape in_s = j == first ? xs : s;
        kd_conv_desc bd = block_desc(h, in_s, !h->norm);
        const float *in = j == first ? x : a->out[j - 1];
        block_bwd(be, h, P, tower, j, s, in_s, in, a, cur, oth, pg);
        if (j == first) {
            if (dx) be->conv_bwd_data(be, &bd, oth, kd_params_ptr(P, h->conv_w[tower][j]), dx, accumulate);
        } else {
            be->conv_bwd_data(be, &bd, oth, kd_params_ptr(P, h->conv_w[tower][j]), cur, 0);
            if (dheld && hold_idx == j) be->axpy(be, e, 1.0f, dheld, cur);
        }
    }
}
