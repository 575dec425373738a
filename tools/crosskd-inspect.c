/* crosskd-inspect — runs one training step's forward, losses and backward on a given batch
 * with given weights and writes every head output, loss term and parameter gradient, so
 * crosskd can be cross-checked against another implementation (DESIGN.md §2).
 *
 *   crosskd-inspect --config C.yaml [--teacher T.safetensors] --student S.safetensors
 *                   --batch B.safetensors --out O.safetensors [--threads N] [--kd] [--set k=v ...]
 *
 * Threads: --threads, else the config's threads, else OMP_NUM_THREADS or every core.
 * Device: the config's device: (cpu, or cuda on the first visible GPU), so
 * `--set device=cuda` runs the same step on the GPU (the 'cuda' test suite compares it with
 * the CPU run and the reference).
 *
 * Batch: img (float32 N,3,H,W, normalised and padded), img_shape (int32 N,2: height, width
 * before padding), per image n gt_bboxes.n (float32 M,4 x1 y1 x2 y2) and gt_labels.n (int32 M).
 * Output: student.cls.l / student.reg.l (N,C,H,W; and student.ctr.l for a head with
 * centerness), loss.loss_cls, loss.loss_bbox, loss.loss_dfl (GFL) or loss.loss_centerness
 * (ATSS), loss.loss (float32 scalars), grad.<state-dict key> for every trainable
 * student parameter, and atss.labels.n (int32 per anchor row: class of a positive, -1 negative,
 * -2 in MaxIoU's ignore band; the name is kept for every assigner).
 * With --teacher (architecture from the config's teacher_config): teacher.cls.l,
 * teacher.reg.l and the cross-head outputs cross.cls.l, cross.reg.l (crosskd.md §4; the
 * student's held feature of block reused_teacher_head_idx aligned to the teacher's
 * statistics, ReLU, then the teacher's remaining layers), all computed by the distiller
 * (worker/distill/distill.h). With --kd also the KD loss terms of model.kd_cfg
 * (loss.loss_cls_kd, loss.loss_reg_kd, loss.loss_feat_kd; ATSS also loss.loss_center_kd, and
 * teacher.ctr.l / cross.ctr.l), included in loss.loss and in every grad.*.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/log.h"
#include "worker/distill/distill.h"
#include "worker/grad_sync.h"
#include "worker/model/model.h"
#include "worker/model/tensor_file.h"
#include "worker/options.h"

enum { EXIT_USAGE = 2 };

static void usage(FILE *o)
{
    fprintf(o, "usage: crosskd-inspect --config C.yaml [--teacher T.safetensors] --student S.safetensors\n"
               "                       --batch B.safetensors --out O.safetensors [--threads N] [--kd] [--set k=v ...]\n");
}

static int fail(const kd_err *e)
{
    fprintf(stderr, "crosskd-inspect: %s\n", e->msg);
    return 1;
}

static void put_scalar(kd_tfile *f, const char *name, double v)
{
    float x = (float)v;
    kd_tfile_add_f32(f, name, 0, NULL, &x);
}

static void put_dev(kd_tfile *f, const kd_backend *be, const char *name, kd_shape s, const float *dev)
{
    size_t e = kd_shape_elems(s);
    float *h = kd_xmalloc((e ? e : 1) * sizeof(float));
    be->copy_to_host(be, h, dev, e * sizeof(float));
    int64_t shape[4] = {s.n, s.c, s.h, s.w};
    kd_tfile_add_f32(f, name, 4, shape, h);
    free(h);
}

int main(int argc, char **argv)
{
    const char *config = NULL, *teacher = NULL, *student = NULL, *batch = NULL, *outp = NULL;
    const char **sets = calloc((size_t)argc, sizeof *sets);
    int n_sets = 0, threads = 0, with_kd = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--kd")) {
            with_kd = 1;
            continue;
        }
        const char **dst = !strcmp(a, "--config") ? &config : !strcmp(a, "--teacher") ? &teacher
                         : !strcmp(a, "--student") ? &student : !strcmp(a, "--batch") ? &batch
                         : !strcmp(a, "--out") ? &outp : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return EXIT_USAGE;
        }
        if (dst) *dst = argv[++i];
        else if (!strcmp(a, "--threads")) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--set")) sets[n_sets++] = argv[++i];
        else {
            fprintf(stderr, "crosskd-inspect: unknown option '%s'\n", a);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (!config || !student || !batch || !outp) {
        usage(stderr);
        return EXIT_USAGE;
    }
    kd_log_init(0);
    kd_log_set_level(KD_LOG_WARN);
    kd_err err = {0};
    static kd_config cfg;
    if (kd_options_load(&cfg, config, sets, n_sets, &err)) return fail(&err);
    kd_tfile bf;
    if (kd_tfile_read(batch, &bf, &err)) return fail(&err);
    const kd_tf_tensor *img;
    kd_image_gt *gts;
    if (kd_batch_file_gts(&bf, batch, &img, &gts, &err)) return fail(&err);
    int N = (int)img->shape[0], H = (int)img->shape[2], W = (int)img->shape[3];
    const kd_backend *be;
    if (!threads) threads = (int)cfg.threads; /* 0 in both: OMP_NUM_THREADS or all cores */
    const char *device = cfg.device == KD_DEVICE_CUDA ? "cuda" : "cpu";
    if (kd_rank_backend_open(device, 0, 1, threads, &be, &err)) return fail(&err);
    kd_model_opts so = {N, H, W, 0, teacher ? kd_distill_student_hold_idx(&cfg.model) : -1};
    kd_model *sm;
    kd_distiller *dist = NULL;
    if (kd_model_create(be, &cfg.model, &so, &sm, &err)) return fail(&err);
    if (kd_model_load(sm, student, &err)) return fail(&err);
    float *dimg = be->alloc(be, img->bytes);
    be->copy_from_host(be, dimg, img->data, img->bytes);
    if (kd_model_forward(sm, dimg, N, H, W, &err)) return fail(&err);
    kd_tfile of = {0};
    char name[160];
    int L = kd_model_num_levels(sm);
    for (int l = 0; l < L; l++) {
        kd_shape s = sm->lvl_s[l];
        snprintf(name, sizeof name, "student.cls.%d", l);
        put_dev(&of, be, name, (kd_shape){s.n, sm->head.cls_c, s.h, s.w}, sm->cls[l]);
        snprintf(name, sizeof name, "student.reg.%d", l);
        put_dev(&of, be, name, (kd_shape){s.n, sm->head.reg_c, s.h, s.w}, sm->reg[l]);
        if (sm->ctr[l]) {
            snprintf(name, sizeof name, "student.ctr.%d", l);
            put_dev(&of, be, name, (kd_shape){s.n, sm->head.A, s.h, s.w}, sm->ctr[l]);
        }
    }
    if (teacher) {
        if (kd_distiller_create(be, &cfg, config, teacher, sm, &dist, &err)) return fail(&err);
        if (kd_distiller_teacher_forward(dist, dimg, N, H, W, &err)) return fail(&err);
        kd_distiller_forward(dist, sm, gts);
        const kd_model *tm = kd_distiller_teacher(dist);
        for (int l = 0; l < L; l++) {
            kd_shape s = tm->lvl_s[l];
            kd_shape cs = {s.n, tm->head.cls_c, s.h, s.w}, rs = {s.n, tm->head.reg_c, s.h, s.w};
            snprintf(name, sizeof name, "teacher.cls.%d", l);
            put_dev(&of, be, name, cs, tm->cls[l]);
            snprintf(name, sizeof name, "teacher.reg.%d", l);
            put_dev(&of, be, name, rs, tm->reg[l]);
            for (int t = 0; t < 2 && kd_distiller_cross(dist, l, t); t++) {
                snprintf(name, sizeof name, "cross.%s.%d", t ? "reg" : "cls", l);
                put_dev(&of, be, name, t ? rs : cs, kd_distiller_cross(dist, l, t));
            }
            kd_shape ks = {s.n, tm->head.A, s.h, s.w};
            if (tm->ctr[l]) {
                snprintf(name, sizeof name, "teacher.ctr.%d", l);
                put_dev(&of, be, name, ks, tm->ctr[l]);
            }
            if (kd_distiller_cross_ctr(dist, l)) {
                snprintf(name, sizeof name, "cross.ctr.%d", l);
                put_dev(&of, be, name, ks, kd_distiller_cross_ctr(dist, l));
            }
        }
    }
    kd_det_loss *ls = kd_det_loss_create(sm);
    kd_det_loss_stats stats;
    if (kd_det_loss_prepare(ls, sm, gts, &stats, &err)) return fail(&err);
    double P, Wn;
    kd_det_loss_normalisers(&stats, 1, &P, &Wn);
    kd_det_losses lo;
    kd_det_loss_compute(ls, sm, P, Wn, 1.0, &lo);
    kd_distill_terms kt = {0};
    if (dist && with_kd) {
        kd_distiller_compute(dist, sm, ls, P, &kt);
        put_scalar(&of, "loss.loss_cls_kd", kt.loss_cls_kd);
        put_scalar(&of, "loss.loss_reg_kd", kt.loss_reg_kd);
        put_scalar(&of, "loss.loss_feat_kd", kt.loss_feat_kd);
        if (kd_distiller_has_center_kd(dist)) put_scalar(&of, "loss.loss_center_kd", kt.loss_center_kd);
    }
    kd_model_zero_grad(sm);
    if (dist && with_kd) kd_distiller_backward(dist, sm);
    else kd_model_backward(sm);
    put_scalar(&of, "loss.loss_cls", lo.loss_cls);
    put_scalar(&of, "loss.loss_bbox", lo.loss_bbox);
    if (sm->head.type == KD_DET_GFL) put_scalar(&of, "loss.loss_dfl", lo.loss_dfl);
    if (sm->head.ctr_tower >= 0) put_scalar(&of, "loss.loss_centerness", lo.loss_centerness);
    put_scalar(&of, "loss.loss", lo.loss_cls + lo.loss_bbox + lo.loss_dfl + lo.loss_centerness + kt.loss_cls_kd +
                                     kt.loss_reg_kd + kt.loss_feat_kd + kt.loss_center_kd);
    kd_level_geom g;
    kd_level_geom_of(sm, &g);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "atss.labels.%d", i);
        int64_t A = (int64_t)g.off[g.L];
        int32_t *lab = malloc((size_t)A * sizeof *lab);
        const int *src = kd_det_loss_assigned(ls, i);
        for (int64_t a = 0; a < A; a++) lab[a] = src[a];
        kd_tfile_add(&of, name, KD_TF_I32, 1, &A, lab);
        free(lab);
    }
    const kd_params *Pm = &sm->params;
    float *gh = kd_xmalloc((Pm->train_elems ? Pm->train_elems : 1) * sizeof(float));
    be->copy_to_host(be, gh, Pm->grad, Pm->train_elems * sizeof(float));
    for (int i = 0; i < Pm->n; i++) {
        if (!Pm->p[i].trainable) continue;
        snprintf(name, sizeof name, "grad.%s", Pm->p[i].name);
        kd_tfile_add_f32(&of, name, Pm->p[i].ndim, Pm->p[i].shape, gh + Pm->p[i].offset);
    }
    free(gh);
    if (kd_tfile_write(&of, outp, &err)) return fail(&err);
    kd_tfile_free(&of);
    kd_det_loss_destroy(ls);
    be->free(be, dimg);
    kd_distiller_destroy(dist);
    kd_model_destroy(sm);
    be->close(be);
    kd_tfile_free(&bf);
    free(gts);
    free(sets);
    return 0;
}
