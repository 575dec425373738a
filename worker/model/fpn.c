/* fpn.c — MMDetection's FPN (crosskd.md §3.2): lateral 1x1 convs on backbone stages
 * start_level..3, top-down nearest upsampling added into the next lateral (size of the
 * lower level), 3x3 output convs, and extra stride-2 3x3 convs up to num_outs, fed from the
 * last output ('on_output', GFL), the last backbone stage ('on_input') or the last lateral
 * ('on_lateral'). Convs have bias, no norm, no activation, except that with
 * relu_before_extra_convs (FCOS) every extra conv after the first reads ReLU of the level
 * below (MMDetection applies it from the second extra level on).
 *
 * Keys: neck.lateral_convs.{i}.conv.{weight,bias}, neck.fpn_convs.{i}.conv.{weight,bias}.
 * Buffers: lat[i] (lateral output, the top-down sum added in place), out[l]. Gradients:
 * d_out[l] are accumulated by the head (both towers read each level), d_lat[i] scratch,
 * d_in[stage] the backbone stage gradients (stages below start_level stay NULL).
 */
#include "worker/model/model_internal.h"

#include <stdio.h>
#include <string.h>

kd_status kd_fpn_build(kd_fpn *f, kd_params *P, const kd_model_cfg *cfg, const int in_c[4],
                       kd_err *err)
{
    memset(f, 0, sizeof *f);
    f->start = (int)cfg->neck.start_level;
    f->n_in = 4 - f->start;
    f->num_outs = (int)cfg->neck.num_outs;
    f->out_c = (int)cfg->neck.out_channels;
    f->extra = cfg->neck.add_extra_convs;
    if (f->num_outs < f->n_in || f->num_outs > KD_MAX_LEVELS)
        return kd_errf(err, KD_EINVAL, "model.neck.num_outs: %d must be within [%d, %d]",
                       f->num_outs, f->n_in, KD_MAX_LEVELS);
    if (f->num_outs > f->n_in && f->extra == KD_EXTRA_NONE)
        return kd_errf(err, KD_EUNSUPPORTED,
                       "model.neck.add_extra_convs: none (max-pool levels) is not implemented");
    f->relu_extra = cfg->neck.relu_before_extra_convs;
    char nm[KD_PARAM_NAME_BYTES];
    for (int i = 0; i < 4; i++) f->in_c[i] = in_c[i];
    for (int i = 0; i < f->n_in; i++) {
        snprintf(nm, sizeof nm, "neck.lateral_convs.%d.conv.weight", i);
        f->lat_w[i] = kd_params_add(P, nm, 1, KD_DT_F32, 4, f->out_c, in_c[f->start + i], 1, 1);
        snprintf(nm, sizeof nm, "neck.lateral_convs.%d.conv.bias", i);
        f->lat_b[i] = kd_params_add(P, nm, 1, KD_DT_F32, 1, f->out_c, 0, 0, 0);
    }
    for (int i = 0; i < f->num_outs; i++) {
        int cin = (i == f->n_in && f->extra == KD_EXTRA_ON_INPUT) ? in_c[3] : f->out_c;
        snprintf(nm, sizeof nm, "neck.fpn_convs.%d.conv.weight", i);
        f->fpn_w[i] = kd_params_add(P, nm, 1, KD_DT_F32, 4, f->out_c, cin, 3, 3);
        snprintf(nm, sizeof nm, "neck.fpn_convs.%d.conv.bias", i);
        f->fpn_b[i] = kd_params_add(P, nm, 1, KD_DT_F32, 1, f->out_c, 0, 0, 0);
    }
    return KD_OK;
}

void kd_fpn_layout(kd_fpn *f, const kd_shape in_s[4], kd_plan *plan, int training)
{
    kd_shape lat_s[4];
    for (int i = 0; i < f->n_in; i++) {
        f->lat_d[i] = (kd_conv_desc){in_s[f->start + i], f->out_c, 1, 1, 1, 1, 0, 0, 1};
        lat_s[i] = kd_conv_out_shape(&f->lat_d[i]);
        f->fpn_d[i] = (kd_conv_desc){lat_s[i], f->out_c, 3, 3, 1, 1, 1, 1, 1};
        f->out_s[i] = kd_conv_out_shape(&f->fpn_d[i]);
    }
    for (int i = f->n_in; i < f->num_outs; i++) {
        kd_shape src = f->out_s[i - 1];
        if (i == f->n_in && f->extra == KD_EXTRA_ON_INPUT) src = in_s[3];
        if (i == f->n_in && f->extra == KD_EXTRA_ON_LATERAL) src = lat_s[f->n_in - 1];
        f->fpn_d[i] = (kd_conv_desc){src, f->out_c, 3, 3, 2, 2, 1, 1, 1};
        f->out_s[i] = kd_conv_out_shape(&f->fpn_d[i]);
    }
    if (!plan) return;
    for (int i = 0; i < f->n_in; i++) f->lat[i] = kd_plan_take(plan, kd_shape_elems(lat_s[i]), -1);
    for (int i = 0; i < f->num_outs; i++)
        f->out[i] = kd_plan_take(plan, kd_shape_elems(f->out_s[i]), -1);
    for (int i = f->n_in + 1; i < f->num_outs && f->relu_extra; i++) {
        f->relu_in[i] = kd_plan_take(plan, kd_shape_elems(f->out_s[i - 1]), -1);
        if (training) f->d_relu[i] = kd_plan_take(plan, kd_shape_elems(f->out_s[i - 1]), KD_PLAN_GRAD);
    }
    if (!training) return;
    for (int i = 0; i < f->num_outs; i++)
        f->d_out[i] = kd_plan_take(plan, kd_shape_elems(f->out_s[i]), KD_PLAN_GRAD);
    for (int i = 0; i < f->n_in; i++) {
        f->d_lat[i] = kd_plan_take(plan, kd_shape_elems(lat_s[i]), KD_PLAN_GRAD);
        f->d_in[f->start + i] = kd_plan_take(plan, kd_shape_elems(in_s[f->start + i]), KD_PLAN_GRAD);
    }
}

static const float *extra_src(const kd_fpn *f, int i, const float *const in[4])
{
    if (i > f->n_in) return f->relu_extra ? f->relu_in[i] : f->out[i - 1];
    if (f->extra == KD_EXTRA_ON_INPUT) return in[3];
    if (f->extra == KD_EXTRA_ON_LATERAL) return f->lat[f->n_in - 1];
    return f->out[i - 1];
}

void kd_fpn_fwd(const kd_backend *be, kd_fpn *f, const kd_params *P, const float *const in[4])
{
    for (int i = 0; i < f->n_in; i++)
        be->conv_fwd(be, &f->lat_d[i], in[f->start + i], kd_params_ptr(P, f->lat_w[i]),
                     kd_params_ptr(P, f->lat_b[i]), f->lat[i]);
    for (int i = f->n_in - 1; i > 0; i--) {
        kd_shape top = kd_conv_out_shape(&f->lat_d[i]), low = kd_conv_out_shape(&f->lat_d[i - 1]);
        be->upsample_nearest_add_fwd(be, top, f->lat[i], low.h, low.w, f->lat[i - 1]);
    }
    for (int i = 0; i < f->num_outs; i++) {
        if (i > f->n_in && f->relu_extra)
            be->relu_fwd(be, kd_shape_elems(f->out_s[i - 1]), f->out[i - 1], f->relu_in[i]);
        const float *x = i < f->n_in ? f->lat[i] : extra_src(f, i, in);
        be->conv_fwd(be, &f->fpn_d[i], x, kd_params_ptr(P, f->fpn_w[i]),
                     kd_params_ptr(P, f->fpn_b[i]), f->out[i]);
    }
}

void kd_fpn_bwd(const kd_backend *be, kd_fpn *f, const kd_params *P, const float *const in[4])
{
    int last = f->n_in - 1;
    for (int i = f->num_outs - 1; i >= f->n_in; i--) {
        const float *x = extra_src(f, i, in);
        be->conv_bwd_weight(be, &f->fpn_d[i], x, f->d_out[i], kd_params_grad(P, f->fpn_w[i]),
                            kd_params_grad(P, f->fpn_b[i]));
        float *dx = f->d_out[i - 1];
        int acc = 1;
        if (i == f->n_in && f->extra == KD_EXTRA_ON_INPUT) dx = f->d_in[3], acc = 0;
        if (i == f->n_in && f->extra == KD_EXTRA_ON_LATERAL) dx = f->d_lat[last], acc = 0;
        if (i > f->n_in && f->relu_extra) { /* through the ReLU into the level below */
            be->conv_bwd_data(be, &f->fpn_d[i], f->d_out[i], kd_params_ptr(P, f->fpn_w[i]), f->d_relu[i], 0);
            be->relu_bwd(be, kd_shape_elems(f->out_s[i - 1]), f->relu_in[i], f->d_relu[i], dx, acc);
            continue;
        }
        be->conv_bwd_data(be, &f->fpn_d[i], f->d_out[i], kd_params_ptr(P, f->fpn_w[i]), dx, acc);
    }
    for (int i = 0; i <= last; i++) {
        be->conv_bwd_weight(be, &f->fpn_d[i], f->lat[i], f->d_out[i],
                            kd_params_grad(P, f->fpn_w[i]), kd_params_grad(P, f->fpn_b[i]));
        int acc = i == last && f->num_outs > f->n_in && f->extra == KD_EXTRA_ON_LATERAL;
        be->conv_bwd_data(be, &f->fpn_d[i], f->d_out[i], kd_params_ptr(P, f->fpn_w[i]),
                          f->d_lat[i], acc);
        if (i > 0) {
            kd_shape top = kd_conv_out_shape(&f->lat_d[i]), low = kd_conv_out_shape(&f->lat_d[i - 1]);
            be->upsample_nearest_add_bwd(be, top, low.h, low.w, f->d_lat[i - 1], f->d_lat[i], 1);
        }
    }
    for (int i = 0; i <= last; i++) {
        int s = f->start + i;
        be->conv_bwd_weight(be, &f->lat_d[i], in[s], f->d_lat[i], kd_params_grad(P, f->lat_w[i]),
                            kd_params_grad(P, f->lat_b[i]));
        int acc = s == 3 && f->num_outs > f->n_in && f->extra == KD_EXTRA_ON_INPUT;
        be->conv_bwd_data(be, &f->lat_d[i], f->d_lat[i], kd_params_ptr(P, f->lat_w[i]), f->d_in[s],
                          acc);
    }
}
