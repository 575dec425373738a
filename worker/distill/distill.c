/* distill.c — the distiller (distill.h): creation from the config, the frozen teacher, and
 * one step's KD losses shared by the prediction-level methods.
 *
 * Teacher: an inference-mode kd_model (opts.inference = 1) planned for the student's
 * largest batch, holding the post-ReLU output of head block idx per level and tower when the
 * method needs it (crosskd.md §4.1). Its parameters live in a parameter-only arena that no
 * optimiser, gradient all-reduce or checkpoint sees.
 *
 * The shared prediction losses (crosskd.md §5.2), on "source" predictions X (the cross-head
 * outputs for crosskd, the student's own for pred_mimic) against the teacher's T:
 *   loss_cls_kd = w_cls * sum_l sum_{valid a} sum_c BCE(Xc, sigma(Tc)) |sigma(Xc) - sigma(Tc)|^beta
 *                 / (P + eps)
 *   loss_reg_kd = w_reg * sum_l sum_a r_a sum_{4 sides} T^2 KL(softmax(Tr/T) || softmax(Xr/T))
 *                 / (4 + eps) / R,   r_a = max_c sigma(Tc) on valid anchors, R = sum_a r_a
 * with eps = FLT_EPSILON, P the reduced QFL normaliser and R local (0 when R is 0).
 *
 * Conflict ratio (paper Fig. 3, log_conflict_ratio): conflict.c.
 */
#include "worker/distill/distill_internal.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "proto/log.h"
#include "worker/model/model_internal.h"

#define AVG_EPS ((double)FLT_EPSILON)
#define MAX_IMAGES 64

float *kd_dbuf_get(const kd_backend *be, kd_dbuf *b, size_t elems)
{
    if (elems > b->cap) {
        be->free(be, b->p);
        b->p = be->alloc(be, elems * sizeof(float));
        b->cap = elems;
    }
    return b->p;
}

float *kd_hbuf_get(kd_hbuf *b, size_t elems)
{
    if (elems > b->cap) {
        free(b->p);
        b->p = kd_xmalloc(elems * sizeof(float));
        b->cap = elems;
    }
    return b->p;
}

float *kd_distill_to_host(kd_distiller *d, kd_hbuf *b, const float *dev, size_t elems)
{
    float *h = kd_hbuf_get(b, elems ? elems : 1);
    d->be->copy_to_host(d->be, h, dev, elems * sizeof(float));
    return h;
}

void kd_distill_grad_to_dev(kd_distiller *d, float *dev, const float *host, size_t elems)
{
    d->be->copy_from_host(d->be, dev, host, elems * sizeof(float));
    if (d->grad_scale != 1.0f) d->be->scal(d->be, elems, d->grad_scale, dev);
}

void kd_distiller_set_grad_scale(kd_distiller *d, float scale) { d->grad_scale = scale; }

int kd_distill_student_hold_idx(const kd_model_cfg *cfg)
{
    if (cfg->kd_cfg.method == KD_KD_CROSSKD) return (int)cfg->kd_cfg.reused_teacher_head_idx;
    /* PKD, RM+PFI: the held-feature tap at 0 is the FPN-output gradient */
    return cfg->kd_cfg.method == KD_KD_PKD || cfg->kd_cfg.method == KD_KD_RM_PFI ? 0 : -1;
}

static kd_status check_options(const kd_config *cfg, kd_err *err)
{
    static const char *const names[] = {"none", "crosskd", "pred_mimic", "ld", "pkd", "rm_pfi", "bckd"};
    const kd_model_cfg *m = &cfg->model;
    int method = m->kd_cfg.method;
    if (method == KD_KD_NONE) return kd_errf(err, KD_EINVAL, "model.kd_cfg.method is none: nothing to distil");
    if (m->kd_cfg.loss_feat_kd_weight != 0 && method != KD_KD_CROSSKD && method != KD_KD_PKD && method != KD_KD_RM_PFI)
        return kd_errf(err, KD_EINVAL,
                       "model.kd_cfg.loss_feat_kd.loss_weight: feature KD belongs to crosskd (+PKD), pkd and rm_pfi, not %s",
                       names[method]);
    if (method == KD_KD_PKD && m->kd_cfg.loss_feat_kd_weight == 0)
        return kd_errf(err, KD_EINVAL, "model.kd_cfg.loss_feat_kd.loss_weight: method pkd needs a weight > 0");
    if (m->kd_cfg.adapter && method != KD_KD_CROSSKD)
        return kd_errf(err, KD_EINVAL, "model.kd_cfg.adapter: the 1x1 adapter belongs to crosskd");
    if (m->kd_cfg.reused_teacher_head_idx > m->bbox_head.stacked_convs)
        return kd_errf(err, KD_EINVAL, "model.kd_cfg.reused_teacher_head_idx %lld exceeds bbox_head.stacked_convs %lld",
                       m->kd_cfg.reused_teacher_head_idx, m->bbox_head.stacked_convs);
    if (m->bbox_head.reg_max + 1 > 64)
        return kd_errf(err, KD_EINVAL, "bbox_head.reg_max %lld: distillation supports at most 63", m->bbox_head.reg_max);
    if (m->bbox_head.type != KD_DET_GFL && method != KD_KD_CROSSKD && method != KD_KD_PRED_MIMIC)
        return kd_errf(err, KD_EUNSUPPORTED, "model.bbox_head.type %s: only crosskd and pred_mimic distil it (%s is GFL's)",
                       kd_head_type_name(m->bbox_head.type), names[method]);
    if (m->bbox_head.type != KD_DET_GFL && (m->kd_cfg.loss_feat_kd_weight != 0 || m->kd_cfg.adapter))
        return kd_errf(err, KD_EUNSUPPORTED, "model.bbox_head.type %s: feature KD and the adapter are implemented for GFLHead only",
                       kd_head_type_name(m->bbox_head.type));
    if (!cfg->teacher_config[0]) return kd_errf(err, KD_EINVAL, "teacher_config: distillation needs the teacher's config");
    return KD_OK;
}

/* Teacher and student must agree where the method feeds one into the other. */
static kd_status check_pair(const kd_model_cfg *s, const kd_model_cfg *t, int method, int idx, const char *tpath,
                            kd_err *err)
{
    const char *what = NULL;
    int mimic_atss = method == KD_KD_PRED_MIMIC && s->bbox_head.type == KD_DET_GFL && t->bbox_head.type == KD_DET_ATSS;
    if (t->bbox_head.type != s->bbox_head.type && method != KD_KD_CROSSKD && !mimic_atss)
        what = "bbox_head.type (crosskd, which runs the teacher's own head, takes a teacher of any other anchor-based "
               "type; pred_mimic only an ATSS teacher of a GFL student: a RetinaNet teacher predicts 9 anchors per "
               "location against the student's one, so there is no prediction to mimic one to one)";
    else if ((t->bbox_head.type == KD_DET_FCOS) != (s->bbox_head.type == KD_DET_FCOS))
        what = "bbox_head.type (an FCOS teacher or student pairs only with FCOS: points, not anchors)";
    else if (t->bbox_head.num_classes != s->bbox_head.num_classes) what = "bbox_head.num_classes";
    else if (t->bbox_head.reg_max != s->bbox_head.reg_max) what = "bbox_head.reg_max";
    else if (t->neck.num_outs != s->neck.num_outs) what = "neck.num_outs";
    else if (t->bbox_head.strides.n != s->bbox_head.strides.n) what = "bbox_head.anchor_generator.strides";
    else if ((method == KD_KD_PKD || s->kd_cfg.loss_feat_kd_weight > 0) && t->neck.out_channels != s->neck.out_channels)
        what = "neck.out_channels (PKD compares FPN outputs)";
    else if (method == KD_KD_CROSSKD && !s->kd_cfg.adapter) {
        if (t->bbox_head.stacked_convs != s->bbox_head.stacked_convs) what = "bbox_head.stacked_convs";
        else if (idx > 0 && t->bbox_head.feat_channels != s->bbox_head.feat_channels)
            what = "bbox_head.feat_channels (CrossKD feeds student head features to the teacher's blocks; "
                   "model.kd_cfg.adapter maps them)";
        else if (idx == 0 && t->neck.out_channels != s->neck.out_channels)
            what = "neck.out_channels (CrossKD with index 0 feeds the student's FPN features to the teacher's "
                   "head; model.kd_cfg.adapter maps them)";
    }
    if (what) return kd_errf(err, KD_EINVAL, "%s: the teacher's %s differs from the student's", tpath, what);
    return KD_OK;
}

/* CrossKD's 1x1 adapter per tower: (teacher channels, student channels) at the held
 * position, Normal(0, 1/student channels) from the project's RNG (the same on every rank);
 * the scale does not matter, align_scale standardises its output. */
static void create_adapter(kd_distiller *d, const kd_model_cfg *s, const kd_model_cfg *t, uint64_t seed)
{
    int64_t cs = d->idx == 0 ? s->neck.out_channels : s->bbox_head.feat_channels;
    int64_t ct = d->idx == 0 ? t->neck.out_channels : t->bbox_head.feat_channels;
    kd_params_add(&d->adapter, "distill.adapter.cls.weight", 1, KD_DT_F32, 4, ct, cs, 1, 1);
    kd_params_add(&d->adapter, "distill.adapter.reg.weight", 1, KD_DT_F32, 4, ct, cs, 1, 1);
    kd_params_finish(&d->adapter, d->be, 1);
    size_t n = d->adapter.train_elems;
    float *h = kd_xmalloc(n * sizeof(float));
    kd_rng r;
    kd_rng_seed(&r, seed, 0x616461707465ull); /* "adapte" */
    for (size_t i = 0; i < n; i++) h[i] = (float)(kd_rng_normal(&r) / sqrt((double)cs));
    d->be->copy_from_host(d->be, d->adapter.data, h, n * sizeof(float));
    d->be->zero(d->be, d->adapter.mom, n * sizeof(float));
    free(h);
    d->has_adapter = 1;
}

kd_params *kd_distiller_trainable(kd_distiller *d) { return d->has_adapter ? &d->adapter : NULL; }

kd_status kd_distiller_create(const kd_backend *be, const kd_config *cfg, const char *config_path,
                              const char *teacher_ckpt, const kd_model *student, kd_distiller **out,
                              kd_err *err)
{
    *out = NULL;
    if (check_options(cfg, err)) return err->code;
    const kd_model_cfg *m = &cfg->model;
    if (student->opts.max_n > MAX_IMAGES)
        return kd_errf(err, KD_EINVAL, "distillation supports at most %d images per rank", MAX_IMAGES);
    char tpath[2 * KD_CFG_STR_BYTES];
    const char *slash = config_path ? strrchr(config_path, '/') : NULL;
    if (cfg->teacher_config[0] != '/' && slash)
        snprintf(tpath, sizeof tpath, "%.*s/%s", (int)(slash - config_path), config_path, cfg->teacher_config);
    else
        snprintf(tpath, sizeof tpath, "%s", cfg->teacher_config);
    const char *ckpt = teacher_ckpt ? teacher_ckpt : cfg->teacher_ckpt;
    if (!ckpt[0]) return kd_errf(err, KD_EINVAL, "teacher_ckpt: distillation needs the teacher's weights");
    kd_distiller *d = kd_xcalloc(1, sizeof *d);
    d->grad_scale = 1.0f;
    d->be = be;
    d->method = m->kd_cfg.method;
    d->idx = (int)m->kd_cfg.reused_teacher_head_idx;
    d->w_cls = (float)m->kd_cfg.loss_cls_kd_weight;
    d->beta = (float)m->kd_cfg.loss_cls_kd_beta;
    d->w_reg = (float)m->kd_cfg.loss_reg_kd_weight;
    d->T = (float)m->kd_cfg.loss_reg_kd_T;
    d->w_feat = (float)m->kd_cfg.loss_feat_kd_weight;
    d->w_ctr = (float)m->kd_cfg.loss_center_kd_weight;
    d->log_conflict = m->kd_cfg.log_conflict_ratio;
    d->conflict_thr = (float)m->kd_cfg.conflict_threshold;
    d->tcfg = kd_xcalloc(1, sizeof *d->tcfg);
    kd_status st = kd_options_load(d->tcfg, tpath, NULL, 0, err);
    if (!st) st = check_pair(m, &d->tcfg->model, d->method, d->idx, tpath, err);
    kd_model_opts to = {student->opts.max_n, student->opts.max_h, student->opts.max_w, 1,
                        d->method == KD_KD_CROSSKD ? d->idx : -1};
    if (!st) st = kd_model_create(be, &d->tcfg->model, &to, &d->teacher, err);
    if (!st) st = kd_model_load(d->teacher, ckpt, err);
    if (st) {
        kd_distiller_destroy(d);
        return st;
    }
    if (m->kd_cfg.adapter) create_adapter(d, m, &d->tcfg->model, (uint64_t)cfg->seed);
    d->K = (int)m->bbox_head.num_classes;
    d->R1 = (int)m->bbox_head.reg_max + 1;
    /* the KD losses follow the teacher's outputs (a CrossKD teacher may have another head
     * type than the student's, paper Table 7) */
    const kd_head *th = &d->teacher->head;
    d->type = th->type;
    d->stype = student->head.type;
    d->RC = th->reg_c;
    d->CC = th->cls_c;
    d->has_ctr = th->ctr_tower >= 0;
    int mimic_other = d->method != KD_KD_CROSSKD && d->stype != d->type; /* the student's own outputs, another type */
    d->src_rc = mimic_other ? student->head.reg_c : d->RC;
    d->src_ctr = d->has_ctr && (d->method == KD_KD_CROSSKD || student->head.ctr_tower >= 0);
    for (int k = 0; k < 4; k++) d->stds[k] = (float)d->tcfg->model.bbox_head.target_stds.v[k];
    static const char *const what[] = {"", "CrossKD", "prediction mimicking", "LD", "PKD", "RM+PFI", "BCKD"};
    KD_INFO("distillation: %s%s, teacher %s ResNet-%lld from %s (%s), %zu parameters, activations %.1f MiB",
            what[d->method], d->method == KD_KD_CROSSKD && d->w_feat > 0 ? "+PKD" : "", kd_head_type_name(th->type),
            d->tcfg->model.backbone.depth, tpath,
            ckpt, d->teacher->params.total_elems, (double)kd_model_activation_bytes(d->teacher) / (1 << 20));
    *out = d;
    return KD_OK;
}

void kd_distiller_destroy(kd_distiller *d)
{
    if (!d) return;
    kd_crosskd_free(d);
    kd_pkd_free(d);
    for (int l = 0; l < KD_MAX_LEVELS; l++) {
        kd_hbuf *hb[] = {&d->tc[l], &d->tr[l], &d->sc[l], &d->sr[l], &d->dc[l], &d->dr[l], &d->r[l],
                         &d->tctr[l], &d->sctr[l], &d->dctr[l]};
        for (size_t i = 0; i < sizeof hb / sizeof hb[0]; i++) free(hb[i]->p);
    }
    kd_dbuf *db[] = {&d->dev_grad, &d->dev_grad_ctr, &d->s0, &d->s1, &d->dal, &d->dad};
    for (size_t i = 0; i < sizeof db / sizeof db[0]; i++) d->be->free(d->be, db[i]->p);
    free(d->pos_mask.p);
    free(d->lw_buf.p);
    kd_model_destroy(d->teacher);
    if (d->has_adapter) kd_params_free(&d->adapter);
    free(d->tcfg);
    free(d);
}

const kd_model *kd_distiller_teacher(const kd_distiller *d) { return d->teacher; }

const float *kd_distiller_cross(const kd_distiller *d, int level, int tower)
{
    return d->method == KD_KD_CROSSKD ? d->x[level][tower].pred.p : NULL;
}

int kd_distiller_has_center_kd(const kd_distiller *d)
{
    return d->type == KD_DET_ATSS && d->src_ctr && (d->method == KD_KD_CROSSKD || d->method == KD_KD_PRED_MIMIC);
}

const float *kd_distiller_cross_ctr(const kd_distiller *d, int level)
{
    return d->method == KD_KD_CROSSKD && d->has_ctr ? d->x[level][KD_TOWER_REG].ctr.p : NULL;
}

kd_status kd_distiller_teacher_forward(kd_distiller *d, const float *img, int n, int h, int w, kd_err *err)
{
    return kd_model_forward(d->teacher, img, n, h, w, err);
}

/* Valid extents per level and image (MMDetection's valid flags for each image's pad shape)
 * and host copies of the teacher's outputs the method reads. */
static void prepare(kd_distiller *d, const kd_model *st, const kd_image_gt *gts)
{
    kd_level_geom_of(d->teacher, &d->g); /* the teacher's anchors: its outputs are decoded there */
    d->L = d->g.L;
    int div = (int)st->cfg.data_preprocessor.pad_size_divisor;
    for (int l = 0; l < d->L; l++) {
        for (int i = 0; i < st->n; i++) {
            int ph = (gts[i].img_h + div - 1) / div * div, pw = (gts[i].img_w + div - 1) / div * div;
            int vh = (int)ceil(ph / d->g.stride[l]), vw = (int)ceil(pw / d->g.stride[l]);
            d->vh[l][i] = vh < d->g.h[l] ? vh : d->g.h[l];
            d->vw[l][i] = vw < d->g.w[l] ? vw : d->g.w[l];
        }
        size_t hw = (size_t)d->g.h[l] * d->g.w[l];
        if (d->method != KD_KD_PKD || d->log_conflict) /* PKD alone reads only the FPN outputs */
            kd_distill_to_host(d, &d->tc[l], d->teacher->cls[l], (size_t)st->n * d->CC * hw);
        if (d->method != KD_KD_PKD)
            kd_distill_to_host(d, &d->tr[l], d->teacher->reg[l], (size_t)st->n * d->RC * hw);
        if (d->has_ctr) kd_distill_to_host(d, &d->tctr[l], d->teacher->ctr[l], (size_t)st->n * hw);
    }
}

void kd_distill_zero_grads(kd_distiller *d, int n)
{
    for (int l = 0; l < d->L; l++) {
        size_t hw = (size_t)d->g.h[l] * d->g.w[l];
        memset(kd_hbuf_get(&d->dc[l], (size_t)n * d->CC * hw), 0, (size_t)n * d->CC * hw * sizeof(float));
        memset(kd_hbuf_get(&d->dr[l], (size_t)n * d->src_rc * hw), 0, (size_t)n * d->src_rc * hw * sizeof(float));
        if (d->src_ctr) memset(kd_hbuf_get(&d->dctr[l], (size_t)n * hw), 0, (size_t)n * hw * sizeof(float));
    }
}

/* The shared prediction losses on d->sc / d->sr, gradients into d->dc / d->dr. */
static void pred_losses(kd_distiller *d, int n, double P, kd_distill_terms *out)
{
    double R = 0;
    kd_distill_zero_grads(d, n);
    for (int l = 0; l < d->L; l++) {
        size_t hw = (size_t)d->g.h[l] * d->g.w[l];
        kd_kd_level lv = {n, d->g.h[l], d->g.w[l], d->vh[l], d->vw[l]};
        R += kd_teacher_score_level(&lv, d->K, d->tc[l].p, kd_hbuf_get(&d->r[l], (size_t)n * hw));
    }
    double cs = d->w_cls / (P + AVG_EPS), rs = R > 0 ? d->w_reg / (4.0 + AVG_EPS) / R : 0;
    for (int l = 0; l < d->L; l++) {
        kd_kd_level lv = {n, d->g.h[l], d->g.w[l], d->vh[l], d->vw[l]};
        if (d->w_cls != 0) out->loss_cls_kd += kd_kdqfl_level(&lv, d->K, d->sc[l].p, d->tc[l].p, d->beta, cs, d->dc[l].p);
        if (d->w_reg != 0 && rs != 0)
            out->loss_reg_kd += kd_kl_reg_level(&lv, d->R1, d->sr[l].p, d->tr[l].p, d->r[l].p, d->T, 0, rs, d->dr[l].p);
    }
}

void kd_distiller_forward(kd_distiller *d, const kd_model *student, const kd_image_gt *gts)
{
    prepare(d, student, gts);
    d->gts = gts;
    if (d->method == KD_KD_CROSSKD) kd_crosskd_forward(d, student);
    else if (d->method != KD_KD_PKD) kd_pred_mimic_sources(d, student);
}

/* PKD alone, RM+PFI: the student holds its FPN outputs (hold_idx 0), whose held-feature gradient
 * the model adds to the FPN-output gradient for both towers: the feature gradient goes to
 * the cls tower's, zero to the reg tower's. */
static void route_feat_to_held(kd_distiller *d, kd_model *st)
{
    const kd_backend *be = d->be;
    for (int l = 0; l < d->L; l++) {
        size_t e = kd_shape_elems(st->fpn.out_s[l]);
        if (l < d->feat_levels) be->copy(be, st->d_held[l][0], d->feat_grad[l].p, e * sizeof(float));
        else be->zero(be, st->d_held[l][0], e * sizeof(float));
        be->zero(be, st->d_held[l][1], e * sizeof(float));
    }
    st->use_d_held = 1;
}

void kd_distiller_compute(kd_distiller *d, kd_model *student, const kd_det_loss *ls, double P,
                          kd_distill_terms *out)
{
    memset(out, 0, sizeof *out);
    d->feat_levels = 0;
    /* losses: prediction-level terms into d->dc / d->dr (host), feature terms into feat_grad */
    if ((d->method == KD_KD_CROSSKD || d->method == KD_KD_PRED_MIMIC) && d->type == KD_DET_FCOS)
        kd_fcos_kd_compute(d, student->n, ls, out);
    else if ((d->method == KD_KD_CROSSKD || d->method == KD_KD_PRED_MIMIC) && d->type != KD_DET_GFL)
        kd_delta_kd_compute(d, student->n, ls, P, out);
    else if (d->method == KD_KD_CROSSKD || d->method == KD_KD_PRED_MIMIC) pred_losses(d, student->n, P, out);
    else if (d->method == KD_KD_BCKD) kd_bckd_compute(d, student, ls, P, out);
    else if (d->method == KD_KD_LD) kd_ld_compute(d, student, ls, out);
    else if (d->method == KD_KD_RM_PFI) kd_rm_pfi_compute(d, student, out);
    /* gradients into the student */
    if (d->method == KD_KD_CROSSKD) kd_crosskd_backward(d, student);
    else if (d->method != KD_KD_PKD) kd_pred_mimic_backward(d, student);
    if ((d->method == KD_KD_CROSSKD || d->method == KD_KD_PKD) && d->w_feat > 0)
        kd_pkd_compute(d, student, &out->loss_feat_kd);
    if (d->method == KD_KD_PKD || d->method == KD_KD_RM_PFI) route_feat_to_held(d, student);
    if (d->log_conflict && ls) kd_conflict_counts(d, student, ls, out);
}

/* kd_model_backward plus the feature gradient added to the FPN-output gradients between
 * the head's backward and the neck's: the student's held-feature tap is taken by CrossKD's
 * block idx, so CrossKD+PKD needs this second fan-in. */
static void backward_with_feat(kd_distiller *d, kd_model *m)
{
    kd_model_backward_head(m);
    for (int l = 0; l < m->fpn.num_outs && l < d->feat_levels; l++)
        m->be->axpy(m->be, kd_shape_elems(m->fpn.out_s[l]), 1.0f, d->feat_grad[l].p, m->fpn.d_out[l]);
    kd_model_backward_trunk(m);
}

void kd_distiller_backward(kd_distiller *d, kd_model *student)
{
    if (d->method == KD_KD_CROSSKD && d->feat_levels > 0) backward_with_feat(d, student);
    else kd_model_backward(student);
}
