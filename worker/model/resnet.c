/* resnet.c — MMDetection's ResNet (crosskd.md §3.1): depth 18/34 (BasicBlock) and 50/101
 * (Bottleneck), style 'pytorch' (stride on the 3x3 conv) or 'caffe' (on the first 1x1), stem conv7x7/2 + BN + ReLU +
 * max-pool 3x3/2 pad 1, stage widths base * 2^i (x4 for Bottleneck), BatchNorm always in
 * inference mode (running statistics, eps 1e-5) with a trainable affine, frozen_stages.
 *
 * Keys: backbone.conv1.weight, backbone.bn1.*, backbone.layer{i}.{j}.conv{k}.weight,
 * .bn{k}.*, .downsample.0.weight, .downsample.1.* (BN: weight, bias, running_mean,
 * running_var, num_batches_tracked).
 *
 * Buffers: each conv keeps its output yc and its BN(+ReLU) output y; the last BN of a
 * block writes the block output, to which the identity (or the downsample) is added and
 * ReLU applied in place. Backward runs blocks in reverse with four scratch gradient
 * buffers and stops below the lowest trainable stage (no input gradient is needed there).
 */
#include "worker/model/model_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void bn_params(kd_params *P, const char *pre, int c, int trainable, kd_convbn *cb)
{
    char nm[KD_PARAM_NAME_BYTES];
    snprintf(nm, sizeof nm, "%s.weight", pre);
    cb->g = kd_params_add(P, nm, trainable, KD_DT_F32, 1, c, 0, 0, 0);
    snprintf(nm, sizeof nm, "%s.bias", pre);
    cb->b = kd_params_add(P, nm, trainable, KD_DT_F32, 1, c, 0, 0, 0);
    snprintf(nm, sizeof nm, "%s.running_mean", pre);
    cb->rm = kd_params_add(P, nm, 0, KD_DT_F32, 1, c, 0, 0, 0);
    snprintf(nm, sizeof nm, "%s.running_var", pre);
    cb->rv = kd_params_add(P, nm, 0, KD_DT_F32, 1, c, 0, 0, 0);
    snprintf(nm, sizeof nm, "%s.num_batches_tracked", pre);
    kd_params_add(P, nm, 0, KD_DT_I64, 0, 0, 0, 0, 0);
}

static void convbn_add(kd_params *P, kd_convbn *cb, const char *conv_name, const char *bn_name,
                       int cin, int cout, int k, int stride, int relu, int trainable)
{
    char nm[KD_PARAM_NAME_BYTES];
    snprintf(nm, sizeof nm, "%s.weight", conv_name);
    cb->w = kd_params_add(P, nm, trainable, KD_DT_F32, 4, cout, cin, k, k);
    bn_params(P, bn_name, cout, trainable, cb);
    cb->cin = cin;
    cb->cout = cout;
    cb->k = k;
    cb->stride = stride;
    cb->pad = k / 2;
    cb->relu = relu;
}

kd_status kd_resnet_build(kd_resnet *r, kd_params *P, const kd_model_cfg *cfg, kd_err *err)
{
    memset(r, 0, sizeof *r);
    r->depth = (int)cfg->backbone.depth;
    r->base = (int)cfg->backbone.base_channels;
    r->frozen = (int)cfg->backbone.frozen_stages;
    static const int b18[4] = {2, 2, 2, 2}, b34[4] = {3, 4, 6, 3}, b101[4] = {3, 4, 23, 3};
    const int *nb;
    switch (r->depth) {
    case 18: nb = b18; break;
    case 34: nb = b34; break;
    case 50: nb = b34; break;
    case 101: nb = b101; break;
    default: return kd_errf(err, KD_EINVAL, "model.backbone.depth: %d is not 18, 34, 50 or 101", r->depth);
    }
    int caffe = cfg->backbone.style != 0; /* stride on the bottleneck's 1x1 conv1, not its 3x3 */
    if (!cfg->backbone.norm_eval)
        return kd_errf(err, KD_EUNSUPPORTED,
                       "model.backbone.norm_eval: false (training-mode BatchNorm) is not implemented");
    r->bottleneck = r->depth >= 50;
    int exp = r->bottleneck ? 4 : 1;
    memcpy(r->nblk, nb, sizeof r->nblk);
    for (int i = 0; i < 4; i++) r->n_blk += nb[i];
    r->blk = kd_xcalloc((size_t)r->n_blk, sizeof *r->blk);
    convbn_add(P, &r->stem, "backbone.conv1", "backbone.bn1", 3, r->base, 7, 2, 1, r->frozen < 0);
    int inpl = r->base, bi = 0;
    char cn[KD_PARAM_NAME_BYTES], bn[KD_PARAM_NAME_BYTES];
    for (int s = 0; s < 4; s++) {
        int planes = r->base << s, trainable = r->frozen < s + 1;
        for (int j = 0; j < nb[s]; j++, bi++) {
            kd_resblock *b = &r->blk[bi];
            int stride = (j == 0 && s > 0) ? 2 : 1;
            b->stage = s;
            b->frozen = !trainable;
            b->nconv = r->bottleneck ? 3 : 2;
            for (int k = 0; k < b->nconv; k++) {
                snprintf(cn, sizeof cn, "backbone.layer%d.%d.conv%d", s + 1, j, k + 1);
                snprintf(bn, sizeof bn, "backbone.layer%d.%d.bn%d", s + 1, j, k + 1);
                int last = k == b->nconv - 1;
                int cin = k == 0 ? inpl : planes, cout = last ? planes * exp : planes;
                int ks = r->bottleneck ? (k == 1 ? 3 : 1) : 3;
                int st = (r->bottleneck ? k == (caffe ? 0 : 1) : k == 0) ? stride : 1;
                convbn_add(P, &b->c[k], cn, bn, cin, cout, ks, st, !last, trainable);
            }
            if (stride != 1 || inpl != planes * exp) {
                b->has_ds = 1;
                snprintf(cn, sizeof cn, "backbone.layer%d.%d.downsample.0", s + 1, j);
                snprintf(bn, sizeof bn, "backbone.layer%d.%d.downsample.1", s + 1, j);
                convbn_add(P, &b->ds, cn, bn, inpl, planes * exp, 1, stride, 0, trainable);
            }
            inpl = planes * exp;
        }
        r->out_c[s] = inpl;
    }
    return KD_OK;
}

void kd_resnet_free(kd_resnet *r)
{
    free(r->blk);
    r->blk = NULL;
}

/* Conv output in slot_c, BN output in slot_y. Where no backward follows (inference, or a
 * shared stretch) and the two slots are equal, BN runs in place (backend.h allows it). */
static kd_shape convbn_layout(kd_convbn *c, kd_shape x, kd_plan *plan, int slot_c, int slot_y)
{
    c->d = (kd_conv_desc){x, c->cout, c->k, c->k, c->stride, c->stride, c->pad, c->pad, 0};
    kd_shape y = kd_conv_out_shape(&c->d);
    if (plan) {
        c->yc = kd_plan_take(plan, kd_shape_elems(y), slot_c);
        if (slot_c == slot_y && slot_c >= 0 && (plan->inference || plan->share))
            c->y = c->yc;
        else
            c->y = kd_plan_take(plan, kd_shape_elems(y), slot_y);
    }
    return y;
}

/* Blocks below this one (and the stem when frozen) are never reached by the backward. */
static int lowest_trainable(const kd_resnet *r)
{
    for (int bi = 0; bi < r->n_blk; bi++)
        if (!r->blk[bi].frozen) return bi;
    return r->n_blk;
}

void kd_resnet_layout(kd_resnet *r, int n, int h, int w, kd_plan *plan)
{
    int lowest = r->frozen < 0 ? -1 : lowest_trainable(r);
    kd_shape x = {n, 3, h, w};
    if (plan) plan->share = lowest >= 0;
    x = convbn_layout(&r->stem, x, plan, 1, 1);
    r->pool_in = x;
    r->pool_out = kd_pool_out_shape(x, 3, 2, 1);
    if (plan) {
        /* the first block's input: persistent when its weight gradient reads it */
        r->pool_y = kd_plan_take(plan, kd_shape_elems(r->pool_out), lowest == 0 ? -1 : 3);
        r->pool_arg = (plan->inference || plan->share)
                          ? NULL
                          : (int32_t *)kd_plan_take(plan, kd_shape_elems(r->pool_out), -1);
    }
    x = r->pool_out;
    const float *in = r->pool_y;
    int in_slot = 3;
    for (int bi = 0; bi < r->n_blk; bi++) {
        kd_resblock *b = &r->blk[bi];
        if (plan) plan->share = bi < lowest;
        /* the output of the last shared block is the input the lowest trainable block's
         * weight gradient reads: persistent */
        int stage_end = bi == r->n_blk - 1 || r->blk[bi + 1].stage != b->stage || bi + 1 == lowest;
        int out_slot = stage_end ? -1 : (in_slot == 3 ? 4 : 3);
        b->xs = x;
        if (plan) b->x = in;
        kd_shape y = x;
        for (int k = 0; k < b->nconv; k++) {
            int last = k == b->nconv - 1;
            int sy = last ? out_slot : (k % 2 ? 2 : 1);
            y = convbn_layout(&b->c[k], y, plan, sy >= 0 ? sy : 0, sy);
        }
        if (b->has_ds) convbn_layout(&b->ds, x, plan, 0, 0);
        x = y;
        in = b->c[b->nconv - 1].y;
        in_slot = out_slot; /* -1 (persistent): the next output may take either slot */
        if (bi == r->n_blk - 1 || r->blk[bi + 1].stage != b->stage) {
            r->out[b->stage] = in;
            r->out_s[b->stage] = x;
        }
    }
    if (plan) plan->share = 0;
}

size_t kd_resnet_max_elems(const kd_resnet *r)
{
    /* only what the backward touches: the stem when trainable, blocks from the lowest
     * trainable one, and the gradient of that block's input */
    size_t m = r->frozen < 0 ? kd_shape_elems(kd_conv_out_shape(&r->stem.d)) : 0;
    int lowest = r->frozen < 0 ? 0 : lowest_trainable(r);
    if (lowest < r->n_blk && kd_shape_elems(r->blk[lowest].xs) > m) m = kd_shape_elems(r->blk[lowest].xs);
    for (int bi = lowest; bi < r->n_blk; bi++)
        for (int k = 0; k < r->blk[bi].nconv; k++) {
            size_t e = kd_shape_elems(kd_conv_out_shape(&r->blk[bi].c[k].d));
            if (e > m) m = e;
        }
    return m;
}

void kd_convbn_fwd(const kd_backend *be, const kd_convbn *c, const kd_params *P, const float *x)
{
    be->conv_fwd(be, &c->d, x, kd_params_ptr(P, c->w), NULL, c->yc);
    be->batch_norm_inf_fwd(be, kd_conv_out_shape(&c->d), KD_BN_EPS, c->relu, c->yc,
                           kd_params_ptr(P, c->rm), kd_params_ptr(P, c->rv),
                           kd_params_ptr(P, c->g), kd_params_ptr(P, c->b), c->y);
}

/* dy: gradient of c->y (with ReLU applied inside when c->relu). dtmp receives the gradient
 * of the conv output; dx (may be NULL) the input gradient. */
void kd_convbn_bwd(const kd_backend *be, const kd_convbn *c, const kd_params *P, const float *x,
                   const float *dy, float *dtmp, float *dx, int accumulate, int param_grads)
{
    be->batch_norm_inf_bwd(be, kd_conv_out_shape(&c->d), KD_BN_EPS, c->relu, c->yc, c->y, dy,
                           kd_params_ptr(P, c->rm), kd_params_ptr(P, c->rv),
                           kd_params_ptr(P, c->g), dtmp, 0,
                           param_grads ? kd_params_grad(P, c->g) : NULL,
                           param_grads ? kd_params_grad(P, c->b) : NULL);
    if (param_grads && kd_params_grad(P, c->w))
        be->conv_bwd_weight(be, &c->d, x, dtmp, kd_params_grad(P, c->w), NULL);
    if (dx) be->conv_bwd_data(be, &c->d, dtmp, kd_params_ptr(P, c->w), dx, accumulate);
}

void kd_resnet_fwd(const kd_backend *be, kd_resnet *r, const kd_params *P, const float *img)
{
    kd_convbn_fwd(be, &r->stem, P, img);
    be->max_pool_fwd(be, r->pool_in, 3, 2, 1, r->stem.y, r->pool_y, r->pool_arg);
    for (int bi = 0; bi < r->n_blk; bi++) {
        kd_resblock *b = &r->blk[bi];
        const float *x = b->x;
        for (int k = 0; k < b->nconv; k++) {
            kd_convbn_fwd(be, &b->c[k], P, x);
            x = b->c[k].y;
        }
        float *out = b->c[b->nconv - 1].y;
        size_t e = kd_shape_elems(kd_conv_out_shape(&b->c[b->nconv - 1].d));
        if (b->has_ds) {
            kd_convbn_fwd(be, &b->ds, P, b->x);
            be->add(be, e, out, b->ds.y, out);
        } else {
            be->add(be, e, out, b->x, out);
        }
        be->relu_fwd(be, e, out, out);
    }
}

/* The lowest gradient offset of block b's trainable parameters (the trainable entries are
 * laid out in registration order, so every gradient above it belongs to later blocks, the
 * neck or the head), or (size_t)-1 when the block has none. */
static size_t block_grad_lo(const kd_resblock *b, const kd_params *P)
{
    size_t lo = (size_t)-1;
    const kd_convbn *cs[4] = {&b->c[0], &b->c[1], &b->c[2], b->has_ds ? &b->ds : NULL};
    for (int k = 0; k < 4; k++) {
        if (!cs[k] || (k < 3 && k >= b->nconv)) continue;
        const int idx[3] = {cs[k]->w, cs[k]->g, cs[k]->b};
        for (int j = 0; j < 3; j++)
            if (idx[j] >= 0 && P->p[idx[j]].trainable && P->p[idx[j]].offset < lo) lo = P->p[idx[j]].offset;
    }
    return lo;
}

void kd_resnet_bwd(const kd_backend *be, kd_resnet *r, const kd_params *P, const float *img,
                   float *const d_out[4], float *g[4], const kd_model *notify)
{
    /* Lowest block that has trainable parameters: nothing below it needs a gradient. */
    int lowest = lowest_trainable(r);
    int stem_trainable = r->frozen < 0;
    float *A = g[0], *B = g[1], *C = g[2], *D = g[3];
    int have = 0; /* A holds the gradient of the current block output */
    for (int bi = r->n_blk - 1; bi >= 0 && bi >= lowest; bi--) {
        kd_resblock *b = &r->blk[bi];
        int stage_end = bi == r->n_blk - 1 || r->blk[bi + 1].stage != b->stage;
        kd_shape os = kd_conv_out_shape(&b->c[b->nconv - 1].d);
        size_t e = kd_shape_elems(os);
        if (stage_end && d_out[b->stage]) {
            if (have) be->axpy(be, e, 1.0f, d_out[b->stage], A);
            else be->copy(be, A, d_out[b->stage], e * sizeof(float));
            have = 1;
        }
        if (!have) continue;
        int need_dx = bi > lowest || stem_trainable;
        int pg = !b->frozen;
        float *out = b->c[b->nconv - 1].y;
        be->relu_bwd(be, e, out, A, A, 0);
        if (b->has_ds) {
            kd_convbn_bwd(be, &b->ds, P, b->x, A, C, need_dx ? B : NULL, 0, pg);
        } else if (need_dx) {
            be->copy(be, B, A, e * sizeof(float));
        }
        const float *dy = A;
        for (int k = b->nconv - 1; k >= 0; k--) {
            const float *x = k ? b->c[k - 1].y : b->x;
            float *dx = k ? D : (need_dx ? B : NULL);
            kd_convbn_bwd(be, &b->c[k], P, x, dy, C, dx, k ? 0 : 1, pg);
            dy = D;
        }
        float *t = A;
        A = B;
        B = t;
        if (!need_dx) have = 0;
        size_t lo = notify && pg ? block_grad_lo(b, P) : (size_t)-1;
        if (lo != (size_t)-1) kd_model_grads_done(notify, lo);
    }
    if (!stem_trainable || !have || lowest > 0) return;
    /* A: gradient of the max-pool output. */
    be->max_pool_bwd(be, r->pool_in, 3, 2, 1, r->pool_arg, A, B, 0);
    kd_convbn_bwd(be, &r->stem, P, img, B, C, NULL, 0, 1);
}
