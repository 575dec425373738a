/* test_distill_fixture.c — crosskd-inspect --kd against the PyTorch reference (ref_kd.py,
 * float64) on the committed fixtures (gen_kd_fixtures.py): a tiny GFL student (ResNet-18
 * base 2, 4-block head of 8 channels) and teacher (ResNet-18 base 2, other weights) on two
 * images of different sizes.
 *
 *   test_distill_fixture INSPECT FIXTURE_DIR VARIANT
 *     VARIANT = i0 | i1 | i3 | i4 | pm | pkd | i3pkd | bckd | ld | rm_pfi | atss_i3 | atss_pm |
 *               retina_i3 | retina_pm | x_atss | x_retina | fcos_i2 | fcos_pm
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
 * its type's KD losses, / P); fcos_i2 / fcos_pm: CrossKD (i 2) / prediction mimicking between
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
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_test.h"
#include "worker/model/tensor_file.h"

static const char *inspect, *dir, *variant;
static kd_tfile ref, got;
static int have, atss;

/* Compares every reference tensor whose name starts with prefix (ends with '$': exactly). */
static void compare(const char *prefix, double rtol, double atol_rel)
{
    int n = 0;
    double worst_all = 0;
    size_t pl = strlen(prefix);
    int exact = pl && prefix[pl - 1] == '$';
    for (int i = 0; i < ref.n; i++) {
        const kd_tf_tensor *r = &ref.t[i];
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
    if ((variant[0] != 'i' && variant[0] != 'x' && !strstr(variant, "_i")) || strstr(variant, "pkd")) return;
    compare("cross.", 1e-4, 1e-4);
}

static void losses(void)
{
    compare("loss.loss_cls_kd$", 1e-4, 0);
    compare("loss.loss_reg_kd$", 1e-4, 0);
    compare("loss.loss_feat_kd$", 1e-4, 0);
    if (atss) compare("loss.loss_center_kd$", 1e-4, 0);
    compare("loss.loss$", 1e-4, 0);
}

static void grads(void) { compare("grad.", 2e-3, 1e-3); }

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s INSPECT FIXTURE_DIR i0|i1|i3|i4|pm|pkd|i3pkd|bckd|ld|rm_pfi|atss_i3|atss_pm|retina_i3|retina_pm|x_atss|x_retina|fcos_i2|fcos_pm\n", argv[0]);
        return 2;
    }
    inspect = argv[1], dir = argv[2], variant = argv[3];
    char out[256], cmd[4096], set[256];
    atss = !strncmp(variant, "atss_", 5) || !strcmp(variant, "x_atss");
    int cross_type = variant[0] == 'x';
    int retina = !strncmp(variant, "retina_", 7), fcos = !strncmp(variant, "fcos_", 5);
    const char *pre = atss ? "kd_atss_" : retina ? "kd_retina_" : fcos ? "kd_fcos_" : "kd_";
    if (!strcmp(variant, "pm") || !strcmp(variant, "atss_pm") || !strcmp(variant, "retina_pm") || !strcmp(variant, "fcos_pm")) snprintf(set, sizeof set, "--set model.kd_cfg.method=pred_mimic");
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
    char cfgpre[64]; /* the cross-type variants have their own student config, kd_x_<teacher>_student.yaml */
    snprintf(cfgpre, sizeof cfgpre, cross_type ? "kd_%s_" : "%s", cross_type ? variant : pre);
    snprintf(out, sizeof out, "distill_fixture_%s_%d.safetensors", variant, (int)getpid());
    snprintf(cmd, sizeof cmd,
             "'%s' --config '%s/%sstudent.yaml' --student '%s/%sstudent.weights.safetensors' "
             "--teacher '%s/%steacher.weights.safetensors' --batch '%s/kd.batch.safetensors' --out '%s' --kd %s",
             inspect, dir, cfgpre, dir, cross_type ? "kd_" : pre, dir,
             cross_type ? (atss ? "kd_atss_" : "kd_retina_") : pre, dir, out, set);
    int rc = system(cmd);
    KD_EXPECT_MSG(rc == 0, "inspector failed: %s", cmd);
    kd_err err;
    char rp[1024];
    snprintf(rp, sizeof rp, "%s/kd_%s.expected.safetensors", dir, variant);
    if (!rc && kd_tfile_read(rp, &ref, &err) == KD_OK && kd_tfile_read(out, &got, &err) == KD_OK) have = 1;
    else KD_EXPECT_MSG(0, "cannot read the reference or the inspector output: %s", err.msg);
    remove(out);
    if (have) {
        KD_TEST_RUN(cross);
        KD_TEST_RUN(losses);
        KD_TEST_RUN(grads);
        kd_tfile_free(&ref);
        kd_tfile_free(&got);
    }
    return kd_test_summary();
}
