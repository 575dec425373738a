/* test_distill_routing.c — where the distillation gradients go, and what the distiller
 * refuses, on the distillation fixtures (tests/fixtures/distill), through the distiller API
 * the trainer uses (teacher forward, student forward, loss prepare, distiller forward, loss
 * compute, distiller compute, backward).
 *
 *   test_distill_routing FIXTURE_DIR CONCERN
 *     routing   detection loss weights 0, only KD on: for i = 0, 1, 3, 4 every gradient of
 *               the student's head blocks i.. (both towers), gfl_cls, gfl_reg and the Scales
 *               is exactly 0, and the FPN's is not (the KD reached the student below i);
 *               prediction mimicking instead reaches gfl_cls / gfl_reg
 *     teacher   a full step with SGD leaves every teacher parameter bit-identical; the
 *               teacher has no gradient or momentum arena
 *     switches  cls KD alone and reg KD alone give the same term as both on and 0 for the
 *               other; both off give all-zero KD gradients
 *     adapter   CrossKD with a student head twice as wide as the teacher's through the 1x1
 *               adapter (model.kd_cfg.adapter): the adapter's analytic gradient of the KD
 *               loss against central finite differences on its largest-gradient weights
 *               (float32 loss, step 5e-4: within 3% + 1e-3 of the largest gradient; reached 0.7%)
 *     conflict  the paper's Fig. 3 counts (log_conflict_ratio, threshold 0.5) equal the
 *               reference's conflict.counts (conflicting anchors, positives) for the GFL,
 *               ATSS and RetinaNet pairs (per anchor row) and the GFL student under the
 *               ATSS (per row) and the RetinaNet teacher (per location)
 *     errors    a feature-KD weight on a method without one, the not-implemented adapter, a
 *               missing teacher checkpoint (named),
 *               a teacher whose head differs
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_test.h"
#include "proto/log.h"
#include "worker/distill/distill.h"
#include "worker/optim.h"

static const char *dir;
static const kd_backend *be;
static kd_tfile batch;
static kd_image_gt gts[2];
static float *dimg;
static int N, H, W;
/* the fixture pair a case runs on: student config, student weights, teacher weights (file
 * names in dir); the GFL pair unless a case sets another */
static const char *cfg_file = "kd_student.yaml", *stu_file = "kd_student.weights.safetensors",
                  *tea_file = "kd_teacher.weights.safetensors";

typedef struct run {
    kd_model *st;
    kd_distiller *d;
    kd_distill_terms terms;
    float *grad_h; /* host copy of the student's gradients */
} run;

static void load_cfg(kd_config *c, const char *const *sets, int n_sets)
{
    char p[1024];
    kd_err err;
    snprintf(p, sizeof p, "%s/%s", dir, cfg_file);
    KD_REQUIRE(kd_options_load(c, p, sets, n_sets, &err) == KD_OK);
}

/* One step of the trainer's sequence with config c; keeps the student and the distiller. */
static void step_init(kd_config *c, run *r, int det_off, int init);
static void step(kd_config *c, run *r, int det_off) { step_init(c, r, det_off, 0); }

/* init: random student weights from the seed instead of the fixture's (other shapes) */
static void step_init(kd_config *c, run *r, int det_off, int init)
{
    kd_err err;
    char p[1024], tw[1024];
    if (det_off) {
        c->model.bbox_head.loss_cls_weight = c->model.bbox_head.loss_bbox_weight = 0;
        c->model.bbox_head.loss_dfl_weight = 0;
    }
    kd_model_opts so = {N, H, W, 0, kd_distill_student_hold_idx(&c->model)};
    KD_REQUIRE(kd_model_create(be, &c->model, &so, &r->st, &err) == KD_OK);
    snprintf(p, sizeof p, "%s/%s", dir, stu_file);
    if (init) kd_model_init(r->st, 5);
    else KD_REQUIRE(kd_model_load(r->st, p, &err) == KD_OK);
    snprintf(p, sizeof p, "%s/%s", dir, cfg_file);
    snprintf(tw, sizeof tw, "%s/%s", dir, tea_file);
    KD_REQUIRE(kd_distiller_create(be, c, p, tw, r->st, &r->d, &err) == KD_OK);
    KD_REQUIRE(kd_distiller_teacher_forward(r->d, dimg, N, H, W, &err) == KD_OK);
    KD_REQUIRE(kd_model_forward(r->st, dimg, N, H, W, &err) == KD_OK);
    kd_det_loss *ls = kd_det_loss_create(r->st);
    kd_det_loss_stats s;
    KD_REQUIRE(kd_det_loss_prepare(ls, r->st, gts, &s, &err) == KD_OK);
    kd_distiller_forward(r->d, r->st, gts);
    double P, Wn;
    kd_det_loss_normalisers(&s, 1, &P, &Wn);
    kd_det_losses lo;
    kd_det_loss_compute(ls, r->st, P, Wn, 1.0, &lo);
    kd_distiller_compute(r->d, r->st, ls, P, &r->terms);
    kd_model_zero_grad(r->st);
    kd_distiller_backward(r->d, r->st);
    kd_det_loss_destroy(ls);
    const kd_params *Pm = &r->st->params;
    r->grad_h = malloc(Pm->train_elems * sizeof(float));
    be->copy_to_host(be, r->grad_h, Pm->grad, Pm->train_elems * sizeof(float));
}

static void done(run *r)
{
    kd_distiller_destroy(r->d);
    kd_model_destroy(r->st);
    free(r->grad_h);
}

/* Largest |gradient| over the trainable parameters whose key starts with prefix. */
static double grad_max(const run *r, const char *prefix)
{
    const kd_params *Pm = &r->st->params;
    double m = 0;
    for (int i = 0; i < Pm->n; i++) {
        if (!Pm->p[i].trainable || strncmp(Pm->p[i].name, prefix, strlen(prefix))) continue;
        for (size_t j = 0; j < Pm->p[i].elems; j++) m = fmax(m, fabs(r->grad_h[Pm->p[i].offset + j]));
    }
    return m;
}

static void routing(void)
{
    static const int idxs[] = {0, 1, 3, 4};
    for (int k = 0; k < 4; k++) {
        static kd_config c;
        char set[64];
        snprintf(set, sizeof set, "model.kd_cfg.reused_teacher_head_idx=%d", idxs[k]);
        const char *sets[] = {set};
        load_cfg(&c, sets, 1);
        run r = {0};
        step(&c, &r, 1);
        KD_EXPECT(r.terms.loss_cls_kd > 0 && r.terms.loss_reg_kd > 0);
        int S = (int)c.model.bbox_head.stacked_convs;
        for (int j = idxs[k]; j < S; j++)
            for (int t = 0; t < 2; t++) {
                char pre[64];
                snprintf(pre, sizeof pre, "bbox_head.%s_convs.%d.", t ? "reg" : "cls", j);
                KD_EXPECT_MSG(grad_max(&r, pre) == 0, "i=%d: %s has gradient %g", idxs[k], pre, grad_max(&r, pre));
            }
        for (int j = 0; j < idxs[k]; j++) {
            char pre[64];
            snprintf(pre, sizeof pre, "bbox_head.cls_convs.%d.", j);
            KD_EXPECT_MSG(grad_max(&r, pre) > 0, "i=%d: %s has no KD gradient", idxs[k], pre);
        }
        KD_EXPECT(grad_max(&r, "bbox_head.gfl_cls.") == 0);
        KD_EXPECT(grad_max(&r, "bbox_head.gfl_reg.") == 0);
        KD_EXPECT(grad_max(&r, "bbox_head.scales.") == 0);
        KD_EXPECT_MSG(grad_max(&r, "neck.") > 0, "i=%d: the KD gradient does not reach the FPN", idxs[k]);
        KD_EXPECT(grad_max(&r, "backbone.") > 0);
        done(&r);
    }
    static kd_config c;
    const char *sets[] = {"model.kd_cfg.method=pred_mimic"};
    load_cfg(&c, sets, 1);
    run r = {0};
    step(&c, &r, 1);
    KD_EXPECT(grad_max(&r, "bbox_head.gfl_cls.") > 0 && grad_max(&r, "bbox_head.gfl_reg.") > 0);
    done(&r);
}

static void teacher(void)
{
    static kd_config c;
    load_cfg(&c, NULL, 0);
    run r = {0};
    step(&c, &r, 0);
    const kd_model *te = kd_distiller_teacher(r.d);
    KD_EXPECT(te->params.grad == NULL && te->params.mom == NULL && te->opts.inference);
    size_t n = te->params.total_elems;
    float *before = malloc(n * sizeof(float)), *after = malloc(n * sizeof(float));
    be->copy_to_host(be, before, te->params.data, n * sizeof(float));
    kd_params *P = &r.st->params;
    kd_sgd_cfg sgd = {.momentum = 0.9, .weight_decay = 1e-4};
    kd_sgd_step(be, P->data, P->grad, P->mom, P->train_elems, &sgd, 0.01);
    kd_err err;
    KD_REQUIRE(kd_distiller_teacher_forward(r.d, dimg, N, H, W, &err) == KD_OK);
    be->copy_to_host(be, after, te->params.data, n * sizeof(float));
    KD_EXPECT(memcmp(before, after, n * sizeof(float)) == 0);
    free(before);
    free(after);
    done(&r);
}

static void switches(void)
{
    static kd_config c;
    run both = {0}, cls = {0}, reg = {0}, none = {0};
    load_cfg(&c, NULL, 0);
    step(&c, &both, 1);
    const char *s_cls[] = {"model.kd_cfg.loss_reg_kd.loss_weight=0"};
    load_cfg(&c, s_cls, 1);
    step(&c, &cls, 1);
    const char *s_reg[] = {"model.kd_cfg.loss_cls_kd.loss_weight=0"};
    load_cfg(&c, s_reg, 1);
    step(&c, &reg, 1);
    const char *s_none[] = {"model.kd_cfg.loss_cls_kd.loss_weight=0", "model.kd_cfg.loss_reg_kd.loss_weight=0"};
    load_cfg(&c, s_none, 2);
    step(&c, &none, 1);
    KD_EXPECT(cls.terms.loss_cls_kd == both.terms.loss_cls_kd && cls.terms.loss_reg_kd == 0);
    KD_EXPECT(reg.terms.loss_reg_kd == both.terms.loss_reg_kd && reg.terms.loss_cls_kd == 0);
    KD_EXPECT(grad_max(&none, "") == 0);
    KD_EXPECT(grad_max(&cls, "neck.") > 0 && grad_max(&reg, "neck.") > 0);
    done(&both);
    done(&cls);
    done(&reg);
    done(&none);
}

/* The KD loss of the current weights (forward only). */
static double kd_loss_again(run *r)
{
    kd_err err;
    if (kd_model_forward(r->st, dimg, N, H, W, &err)) return NAN;
    kd_det_loss *ls = kd_det_loss_create(r->st);
    kd_det_loss_stats s;
    if (kd_det_loss_prepare(ls, r->st, gts, &s, &err)) {
        kd_det_loss_destroy(ls);
        return NAN;
    }
    kd_distiller_forward(r->d, r->st, gts);
    double P, Wn;
    kd_det_loss_normalisers(&s, 1, &P, &Wn);
    kd_distill_terms t;
    kd_det_losses lo;
    kd_det_loss_compute(ls, r->st, P, Wn, 1.0, &lo);
    kd_distiller_compute(r->d, r->st, ls, P, &t);
    kd_det_loss_destroy(ls);
    return t.loss_cls_kd + t.loss_reg_kd;
}

static void adapter(void)
{
    static kd_config c;
    const char *sets[] = {"model.kd_cfg.adapter=true", "model.bbox_head.feat_channels=16"};
    load_cfg(&c, sets, 2);
    run r = {0};
    step_init(&c, &r, 1, 1);
    kd_params *A = kd_distiller_trainable(r.d);
    KD_REQUIRE(A && A->n == 2 && A->p[0].shape[0] == 8 && A->p[0].shape[1] == 16);
    size_t n = A->train_elems;
    float *g = malloc(n * sizeof(float)), *w = malloc(n * sizeof(float));
    be->copy_to_host(be, g, A->grad, n * sizeof(float));
    be->copy_to_host(be, w, A->data, n * sizeof(float));
    double gmax = 0;
    for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(g[i]));
    KD_EXPECT(gmax > 0);
    KD_EXPECT_MSG(grad_max(&r, "bbox_head.cls_convs.3.") == 0, "the student's block 3 got KD gradient");
    int checked = 0;
    for (int tower = 0; tower < 2; tower++) {
        size_t lo = A->p[tower].offset, hi = lo + A->p[tower].elems;
        for (int k = 0; k < 3; k++) { /* the three largest gradients of the tower */
            size_t best = lo;
            for (size_t i = lo; i < hi; i++)
                if (fabs(g[i]) > fabs(g[best]) && g[i] == g[i]) best = i;
            double h = 5e-4, v = w[best], lp, lm;
            w[best] = (float)(v + h);
            be->copy_from_host(be, A->data, w, n * sizeof(float));
            lp = kd_loss_again(&r);
            w[best] = (float)(v - h);
            be->copy_from_host(be, A->data, w, n * sizeof(float));
            lm = kd_loss_again(&r);
            w[best] = (float)v;
            be->copy_from_host(be, A->data, w, n * sizeof(float));
            double fd = (lp - lm) / (2 * h);
            fprintf(stderr, "adapter %s [%zu]: analytic %.6g, finite difference %.6g\n", tower ? "reg" : "cls",
                    best - lo, g[best], fd);
            KD_EXPECT_MSG(fabs(fd - g[best]) <= 0.03 * fabs(g[best]) + 1e-3 * gmax, "adapter gradient [%zu]", best);
            g[best] = 0; /* next largest */
            checked++;
        }
    }
    KD_EXPECT(checked == 6);
    free(g);
    free(w);
    done(&r);
}

/* The conflict counts of one fixture pair (CrossKD, i 3) against its reference file; the GFL
 * pair is the current one again afterwards. */
static void conflict_of(const char *cfg, const char *stu, const char *tea, const char *expected)
{
    cfg_file = cfg, stu_file = stu, tea_file = tea;
    static kd_config c;
    const char *sets[] = {"model.kd_cfg.log_conflict_ratio=true", "model.kd_cfg.conflict_threshold=0.5"};
    load_cfg(&c, sets, 2);
    run r = {0};
    step(&c, &r, 0);
    kd_tfile ref;
    kd_err err;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, expected);
    KD_REQUIRE(kd_tfile_read(p, &ref, &err) == KD_OK);
    const kd_tf_tensor *t = kd_tfile_get(&ref, "conflict.counts");
    KD_REQUIRE(t && kd_tf_elems(t) == 2);
    const float *v = t->data;
    fprintf(stderr, "%s: conflicts %g (ref %g), positives %g (ref %g)\n", expected, r.terms.conflicts, v[0],
            r.terms.positives, v[1]);
    KD_EXPECT(r.terms.conflicts == v[0] && r.terms.positives == v[1]);
    KD_EXPECT(r.terms.positives > 0 && r.terms.conflicts > 0);
    kd_tfile_free(&ref);
    done(&r);
    cfg_file = "kd_student.yaml", stu_file = "kd_student.weights.safetensors", tea_file = "kd_teacher.weights.safetensors";
}

/* Per anchor row for the one-anchor pairs (GFL, ATSS, and a GFL student with an ATSS teacher)
 * and RetinaNet's nine; per location for a GFL student under a RetinaNet teacher. */
static void conflict(void)
{
    conflict_of("kd_student.yaml", "kd_student.weights.safetensors", "kd_teacher.weights.safetensors",
                "kd_i3.expected.safetensors");
    conflict_of("kd_atss_student.yaml", "kd_atss_student.weights.safetensors", "kd_atss_teacher.weights.safetensors",
                "kd_atss_i3.expected.safetensors");
    conflict_of("kd_retina_student.yaml", "kd_retina_student.weights.safetensors",
                "kd_retina_teacher.weights.safetensors", "kd_retina_i3.expected.safetensors");
    conflict_of("kd_x_atss_student.yaml", "kd_student.weights.safetensors", "kd_atss_teacher.weights.safetensors",
                "kd_x_atss.expected.safetensors");
    conflict_of("kd_x_retina_student.yaml", "kd_student.weights.safetensors", "kd_retina_teacher.weights.safetensors",
                "kd_x_retina.expected.safetensors");
}

static void expect_create_error(const char *const *sets, int n, const char *teacher_w, const char *needle)
{
    static kd_config c;
    load_cfg(&c, sets, n);
    kd_err err = {0};
    kd_model *st;
    kd_model_opts so = {N, H, W, 0, kd_distill_student_hold_idx(&c.model)};
    KD_REQUIRE(kd_model_create(be, &c.model, &so, &st, &err) == KD_OK);
    char p[1024];
    snprintf(p, sizeof p, "%s/kd_student.yaml", dir);
    kd_distiller *d = NULL;
    KD_EXPECT(kd_distiller_create(be, &c, p, teacher_w, st, &d, &err) != KD_OK && d == NULL);
    KD_EXPECT_STR_CONTAINS(err.msg, needle);
    kd_model_destroy(st);
}

static void errors(void)
{
    char tw[1024];
    snprintf(tw, sizeof tw, "%s/kd_teacher.weights.safetensors", dir);
    const char *fw[] = {"model.kd_cfg.method=bckd", "model.kd_cfg.loss_feat_kd.loss_weight=1"};
    expect_create_error(fw, 2, tw, "loss_feat_kd.loss_weight");
    const char *ad[] = {"model.kd_cfg.adapter=true", "model.kd_cfg.method=pred_mimic"};
    expect_create_error(ad, 2, tw, "model.kd_cfg.adapter");
    expect_create_error(NULL, 0, "no-such-teacher.safetensors", "no-such-teacher.safetensors");
    expect_create_error(NULL, 0, NULL, "teacher_ckpt");
    const char *wide[] = {"model.bbox_head.feat_channels=16"};
    expect_create_error(wide, 1, tw, "feat_channels");
    /* a teacher of another head type: crosskd (its cross-head runs the teacher's head), and
     * pred_mimic of an ATSS teacher (one anchor per location, like the GFL student); not
     * pred_mimic of a RetinaNet teacher (9 anchors per location) nor any other method */
    char aw[1024], rw[1024];
    snprintf(aw, sizeof aw, "%s/kd_atss_teacher.weights.safetensors", dir);
    snprintf(rw, sizeof rw, "%s/kd_retina_teacher.weights.safetensors", dir);
    const char *xt[] = {"model.kd_cfg.method=pred_mimic", "teacher_config=kd_retina_teacher.yaml"};
    expect_create_error(xt, 2, rw, "bbox_head.type");
    const char *xb[] = {"model.kd_cfg.method=bckd", "teacher_config=kd_atss_teacher.yaml"};
    expect_create_error(xb, 2, aw, "bbox_head.type");
    /* ATSS and RetinaNet students: crosskd and pred_mimic only */
    const char *ld[] = {"model.type=ATSS", "model.bbox_head.type=ATSSHead", "model.kd_cfg.method=ld"};
    expect_create_error(ld, 3, tw, "only crosskd and pred_mimic");
}

int main(int argc, char **argv)
{
    if (argc != 3) return 2;
    dir = argv[1];
    kd_log_init(0);
    kd_log_set_level(KD_LOG_ERROR);
    kd_err err;
    char p[1024];
    snprintf(p, sizeof p, "%s/kd.batch.safetensors", dir);
    if (kd_backend_open("cpu", 0, &be, &err) || kd_tfile_read(p, &batch, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const kd_tf_tensor *img;
    kd_image_gt *g;
    if (kd_batch_file_gts(&batch, p, &img, &g, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    N = (int)img->shape[0], H = (int)img->shape[2], W = (int)img->shape[3];
    if (N > (int)(sizeof gts / sizeof gts[0])) {
        fprintf(stderr, "%s: %d images, at most %d expected\n", p, N, (int)(sizeof gts / sizeof gts[0]));
        return 1;
    }
    memcpy(gts, g, (size_t)N * sizeof *g);
    free(g);
    dimg = be->alloc(be, img->bytes);
    be->copy_from_host(be, dimg, img->data, img->bytes);
    const char *what = argv[2];
    if (!strcmp(what, "routing")) KD_TEST_RUN(routing);
    else if (!strcmp(what, "teacher")) KD_TEST_RUN(teacher);
    else if (!strcmp(what, "switches")) KD_TEST_RUN(switches);
    else if (!strcmp(what, "errors")) KD_TEST_RUN(errors);
    else if (!strcmp(what, "conflict")) KD_TEST_RUN(conflict);
    else if (!strcmp(what, "adapter")) KD_TEST_RUN(adapter);
    else return 2;
    be->free(be, dimg);
    kd_tfile_free(&batch);
    be->close(be);
    return kd_test_summary();
}
