/* test_distill_fixture.c — crosskd-inspect --kd against the PyTorch reference (ref_kd.py,
 * float64) on the committed fixtures (gen_kd_fixtures.py): a tiny GFL student (ResNet-18
 * base 2, 4-block head of 8 channels) and teacher (ResNet-18 base 2, other weights) on two
 * images of different sizes.
 *
 *   test_distill_fixture INSPECT FIXTURE_DIR VARIANT
 *     VARIANT = i0 | i1 | i3 | i4 | pm | pkd | i3pkd | bckd | ld | rm_pfi | atss_i3 | atss_pm |
 *               retina_i3 | retina_pm | x_atss | x_atss_pm | x_retina | fcos_i2 | fcos_pm
 * iN: CrossKD with reused_teacher_head_idx N; pm: prediction mimicking (the same KD losses
 * on the student's own outputs); pkd: PKD alone (weight 2); i3pkd: CrossKD + PKD (weight 6); bckd: BCKD
 * (binary cls KD weight 1, GIoU localisation KD weight 4); ld: LD (main + VLR LD weight 0.25
 * T 10, main KD weight 10 T 2); rm_pfi: Rank Mimicking (weight 4) + PFI (weight 1.5);
 * atss_i3 / atss_pm: CrossKD (i 3) / prediction mimicking between tiny ATSSs (kd_atss_*:
 * KD-QFL, GIoU box KD weight 1 and centerness KD weight 1, all / P), also checking
 * loss.loss_center_kd and the cross-head centerness; retina_i3 / retina_pm: the same between
 * tiny RetinaNets (kd_retina_*: 9 anchors, KD-QFL on label-weighted anchors, GIoU box KD
 * weight 1, both / the student's local avg_factor); x_atss / x_retina: CrossKD (i 3) of the
 * GFL student through the ATSS / RetinaNet teacher (paper Table 7: the teacher's own head,
 * its type's KD losses, / P); x_atss_pm: the GFL student mimicking the ATSS teacher with its
 * own outputs (Table 7's "KD": KD-QFL, GIoU box KD on its integral-decoded boxes, / P, no
 * centerness KD, so loss_center_kd must be exactly 0); fcos_i2 / fcos_pm: CrossKD (i 2) / prediction mimicking between
 * tiny FCOSs (KD-QFL 0.4 and -log IoU box KD 0.75 on every point, / the centerness sum).
 * Checked, each as its own sub-test:
 *   cross   cross-head predictions, levels 1..4 (level 0 only through the losses and
 *           gradients, to keep the fixtures small): |c - r| <= 1e-4 |r| + 1e-4 max|r|
 *           (align_scale divides by a per-channel std of as few as 4 values on the smallest
 *           level, which amplifies float32 rounding; the heads alone agree to 1e-5)
 *   losses  loss.loss_cls_kd, loss.loss_reg_kd, loss.loss_feat_kd and the total loss.loss:
 *           rtol 1e-4 (a term that is off must be exactly 0)
 *   grads   every trainable student parameter's gradient of detection + KD losses:
 *           |c - r| <= 2e-3 |r| + 1e-3 max|r| (the model tests' gradient tolerance)
 * The largest error reached is printed per group.
 *
 *   test_distill_fixture INSPECT FIXTURE_DIR VARIANT cuda
 * runs the inspector with the CUDA backend (--set device=cuda) and holds it to the same
 * tolerances twice: against the reference, and against the CPU backend's output in the
 * reference's place. Without a usable GPU: one line, exit 77 (meson: skipped). That is the
 * 'cuda' suite's distillation check. CROSSKD_CUDA_TEST_AGAINST_CPU=1 puts the CPU backend
 * on the "GPU" side: a check of the comparison itself without a GPU (suite 'cuda_host').
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_test.h"
#include "kd_test_gpu.h"
#include "worker/model/tensor_file.h"

static const char *inspect, *dir, *variant;
static kd_tfile ref, got, cpu;
static const kd_tfile *base; /* what `got` is held to: &ref, or &cpu in the CUDA comparison */
static int atss, mimic, cross_type; /* mimic: a prediction-mimicking variant (no cross-head to compare); cross_type: x_* */
/* file-name prefixes of the variant's student config, student weights and teacher weights */
static char cfg_pre[64], stu_pre[64], tea_pre[64];

/* Compares every reference tensor whose name starts with prefix (ends with '$': exactly). */
static void compare(const char *prefix, double rtol, double atol_rel)
{
    int n = 0;
    double worst_all = 0;
    size_t pl = strlen(prefix);
    int exact = pl && prefix[pl - 1] == '$';
    for (int i = 0; i < base->n; i++) {
        const kd_tf_tensor *r = &base->t[i];
        if (exact ? strlen(r->name) != pl - 1 || strncmp(r->name, prefix, pl - 1) : strncmp(r->name, prefix, pl))
            continue;
        const kd_tf_tensor *c = kd_tfile_get(&got, r->name);
        KD_EXPECT_MSG(c && c->bytes == r->bytes, "%s missing or of another size in the inspector output", r->name);
        if (!c || c->bytes != r->bytes) continue;
        n++;
        const float *rv = r->data, *cv = c->data;
        size_t e = kd_tf_elems(r), wk = 0;
        double mx = 0, worst = 0;
        for (size_t k = 0; k < e; k++) mx = fmax(mx, fabs(rv[k]));
        int bad = 0;
        for (size_t k = 0; k < e; k++) {
            double d = fabs((double)cv[k] - rv[k]);
            if (!(d <= atol_rel * mx + rtol * fabs(rv[k]))) bad++;
            double rel = d / (mx > 0 ? mx : 1);
            if (rel > worst || d != d) worst = rel, wk = k;
        }
        worst_all = fmax(worst_all, worst);
        KD_EXPECT_MSG(bad == 0, "%s: %d of %zu elements off; worst [%zu] %.9g vs ref %.9g", r->name, bad, e, wk,
                      cv[wk], rv[wk]);
    }
    KD_EXPECT_MSG(n > 0, "no %s tensors in the fixture", prefix);
    fprintf(stderr, "%s %s: %d tensors, worst |c - r| / max|r| = %.3g\n", variant, prefix, n, worst_all);
}

static void cross(void)
{
    if ((variant[0] != 'i' && variant[0] != 'x' && !strstr(variant, "_i")) || strstr(variant, "pkd") || mimic) return;
    compare("cross.", 1e-4, 1e-4);
}

static void losses(void)
{
    compare("loss.loss_cls_kd$", 1e-4, 0);
    compare("loss.loss_reg_kd$", 1e-4, 0);
    compare("loss.loss_feat_kd$", 1e-4, 0);
    if (atss && cross_type && mimic) /* a GFL student has no centerness to mimic: no such term */
        KD_EXPECT_MSG(!kd_tfile_get(&got, "loss.loss_center_kd"), "x_atss_pm: a centerness KD term was logged");
    else if (atss) compare("loss.loss_center_kd$", 1e-4, 0);
    compare("loss.loss$", 1e-4, 0);
}

static void grads(void) { compare("grad.", 2e-3, 1e-3); }

/* Runs the inspector on the variant with `device` into *into (the file is removed). */
static int run_inspector(const char *set, const char *device, kd_tfile *into)
{
    char out[256], cmd[4096];
    snprintf(out, sizeof out, "distill_fixture_%s_%s_%d.safetensors", variant, device, (int)getpid());
    snprintf(cmd, sizeof cmd,
             "'%s' --config '%s/%sstudent.yaml' --student '%s/%sstudent.weights.safetensors' "
             "--teacher '%s/%steacher.weights.safetensors' --batch '%s/kd.batch.safetensors' --out '%s' --kd %s "
             "--set device=%s",
             inspect, dir, cfg_pre, dir, stu_pre, dir, tea_pre, dir, out, set, device);
    int rc = system(cmd);
    KD_EXPECT_MSG(rc == 0, "inspector failed: %s", cmd);
    kd_err err = {0};
    int ok = !rc && kd_tfile_read(out, into, &err) == KD_OK;
    if (!rc) KD_EXPECT_MSG(ok, "cannot read the inspector output: %s", err.msg);
    remove(out);
    return ok;
}

static void run_checks(void)
{
    KD_TEST_RUN(cross);
    KD_TEST_RUN(losses);
    KD_TEST_RUN(grads);
}

int main(int argc, char **argv)
{
    if (argc != 4 && !(argc == 5 && !strcmp(argv[4], "cuda"))) {
        fprintf(stderr, "usage: %s INSPECT FIXTURE_DIR i0|i1|i3|i4|pm|pkd|i3pkd|bckd|ld|rm_pfi|atss_i3|atss_pm|"
                        "retina_i3|retina_pm|x_atss|x_atss_pm|x_retina|fcos_i2|fcos_pm [cuda]\n", argv[0]);
        return 2;
    }
    inspect = argv[1], dir = argv[2], variant = argv[3];
    int on_gpu = argc == 5;
    const char *gpu = "cuda";
    if (on_gpu && getenv("CROSSKD_CUDA_TEST_AGAINST_CPU")) gpu = "cpu";
    else if (on_gpu && kd_test_skip_without_gpu()) return 77;
    char set[256];
    atss = !strncmp(variant, "atss_", 5) || !strncmp(variant, "x_atss", 6);
    const char *last_ = strrchr(variant, '_');
    mimic = !strcmp(last_ ? last_ + 1 : variant, "pm");
    cross_type = variant[0] == 'x';
    int retina = !strncmp(variant, "retina_", 7), fcos = !strncmp(variant, "fcos_", 5);
    const char *pre = atss ? "kd_atss_" : retina ? "kd_retina_" : fcos ? "kd_fcos_" : "kd_";
    /* the cross-type variants have their own student config, kd_x_<teacher>_student.yaml
     * (x_atss_pm: kd_x_atss_student.yaml with method pred_mimic) */
    if (cross_type) snprintf(cfg_pre, sizeof cfg_pre, "kd_x_%s_", atss ? "atss" : "retina");
    else snprintf(cfg_pre, sizeof cfg_pre, "%s", pre);
    snprintf(stu_pre, sizeof stu_pre, "%s", cross_type ? "kd_" : pre);
    snprintf(tea_pre, sizeof tea_pre, "%s", cross_type ? (atss ? "kd_atss_" : "kd_retina_") : pre);
    if (mimic) snprintf(set, sizeof set, "--set model.kd_cfg.method=pred_mimic");
    else if (!strcmp(variant, "pkd"))
        snprintf(set, sizeof set, "--set model.kd_cfg.method=pkd --set model.kd_cfg.loss_feat_kd.loss_weight=2");
    else if (!strcmp(variant, "bckd")) snprintf(set, sizeof set, "--set model.kd_cfg.method=bckd");
    else if (!strcmp(variant, "rm_pfi"))
        snprintf(set, sizeof set, "--set model.kd_cfg.method=rm_pfi --set model.kd_cfg.loss_cls_kd.loss_weight=4 "
                                  "--set model.kd_cfg.loss_feat_kd.loss_weight=1.5");
    else if (!strcmp(variant, "ld"))
        snprintf(set, sizeof set, "--set model.kd_cfg.method=ld --set model.kd_cfg.loss_cls_kd.loss_weight=10 "
                                  "--set model.kd_cfg.loss_reg_kd.loss_weight=0.25 --set model.kd_cfg.loss_reg_kd.T=10");
    else if (cross_type) snprintf(set, sizeof set, " ");
    else if (!strcmp(variant, "i3pkd"))
        snprintf(set, sizeof set, "--set model.kd_cfg.loss_feat_kd.loss_weight=6");
    else snprintf(set, sizeof set, "--set model.kd_cfg.reused_teacher_head_idx=%s", strrchr(variant, 'i') + 1);
    kd_err err = {0};
    char rp[1024];
    snprintf(rp, sizeof rp, "%s/kd_%s.expected.safetensors", dir, variant);
    if (kd_tfile_read(rp, &ref, &err) != KD_OK) {
        KD_EXPECT_MSG(0, "cannot read the reference: %s", err.msg);
        return kd_test_summary();
    }
    if (run_inspector(set, on_gpu ? gpu : "cpu", &got)) {
        base = &ref;
        run_checks();
        if (on_gpu && run_inspector(set, "cpu", &cpu)) {
            fprintf(stderr, "%s: the CUDA run against the CPU run:\n", variant);
            base = &cpu;
            run_checks();
            kd_tfile_free(&cpu);
        }
        kd_tfile_free(&got);
    }
    kd_tfile_free(&ref);
    return kd_test_summary();
}
