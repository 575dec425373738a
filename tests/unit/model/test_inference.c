/* test_inference.c — dense-head inference: class-aware NMS on hand-made cases (IoU exactly at
 * the threshold is kept, other classes never suppress, order by score), and kd_det_predict
 * on the fixtures against ref_gfl.predict, ref_atss.predict, ref_retina.predict and ref_fcos.predict (score threshold, top nms_pre, decode, clip to the
 * image, rescale by per-image factors, NMS 0.6, max_per_img): same count and labels, boxes
 * within 1e-3 px (float32 integral and decode against float64), scores within 1e-5.
 * Also the inference-mode model (shared activation slots) gives the same head outputs as
 * the training-mode one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_test.h"
#include "proto/log.h"
#include "worker/model/model.h"
#include "worker/options.h"

static const char *dir;
static const kd_backend *be;

static void nms_cases(void)
{
    kd_det d[5] = {
        {0, 0, 10, 10, 0.9f, 0},
        {0, 0, 10, 6, 0.8f, 0},  /* IoU 0.6 exactly with the first: kept (suppress if > 0.6) */
        {0, 0, 10, 7, 0.7f, 0},  /* IoU 0.7 with the first: suppressed */
        {0, 0, 10, 10, 0.6f, 1}, /* same box, other class: kept */
        {1, 1, 10, 10, 0.5f, 1}, /* IoU 0.81 with the previous kept class-1 box: suppressed */
    };
    uint8_t keep[5];
    kd_nms(d, 5, 0.6, keep);
    KD_EXPECT(keep[0] == 1 && keep[1] == 1 && keep[2] == 0 && keep[3] == 1 && keep[4] == 0);
    kd_nms(d, 0, 0.6, keep);
}

static kd_model *load_model(const char *name, int inference, kd_config *cfg, float **dimg,
                            kd_tfile *batch)
{
    char p[1024];
    kd_err err = {0};
    snprintf(p, sizeof p, "%s/%s.yaml", dir, name);
    if (kd_options_load(cfg, p, NULL, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    snprintf(p, sizeof p, "%s/%s.batch.safetensors", dir, name);
    if (kd_tfile_read(p, batch, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    const kd_tf_tensor *img = kd_tfile_get(batch, "img");
    int N = (int)img->shape[0], H = (int)img->shape[2], W = (int)img->shape[3];
    kd_model_opts o = {N, H, W, inference, -1};
    kd_model *m;
    if (kd_model_create(be, &cfg->model, &o, &m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    snprintf(p, sizeof p, "%s/%s.weights.safetensors", dir, name);
    if (kd_model_load(m, p, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    *dimg = be->alloc(be, img->bytes);
    be->copy_from_host(be, *dimg, img->data, img->bytes);
    if (kd_model_forward(m, *dimg, N, H, W, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    return m;
}

static void predict_fixture(const char *name)
{
    static kd_config cfg;
    kd_tfile batch, ref;
    float *dimg;
    kd_model *m = load_model(name, 1, &cfg, &dimg, &batch);
    KD_REQUIRE(m != NULL);
    char p[1024];
    kd_err err;
    snprintf(p, sizeof p, "%s/%s.expected.safetensors", dir, name);
    KD_REQUIRE(kd_tfile_read(p, &ref, &err) == KD_OK);
    static const double scales[2][2] = {{0.5, 0.8}, {1.25, 1.0}}; /* gen_fixtures.SCALES */
    const int32_t *ish = kd_tfile_get(&batch, "img_shape")->data;
    double worst_box = 0, worst_score = 0;
    for (int i = 0; i < 2; i++) {
        kd_det dets[100];
        int n = kd_det_predict(m, i, ish[2 * i], ish[2 * i + 1], scales[i][0], scales[i][1], dets);
        char k[64];
        snprintf(k, sizeof k, "det.scores.%d", i);
        const kd_tf_tensor *rs = kd_tfile_get(&ref, k);
        snprintf(k, sizeof k, "det.boxes.%d", i);
        const kd_tf_tensor *rb = kd_tfile_get(&ref, k);
        snprintf(k, sizeof k, "det.labels.%d", i);
        const kd_tf_tensor *rl = kd_tfile_get(&ref, k);
        KD_REQUIRE(rs && rb && rl);
        KD_EXPECT_MSG(n == (int)rs->shape[0], "image %d: %d detections, reference %lld", i, n,
                      (long long)rs->shape[0]);
        if (n != (int)rs->shape[0]) continue;
        for (int j = 0; j < n; j++) {
            const float *b = (const float *)rb->data + 4 * j;
            float got[4] = {dets[j].x1, dets[j].y1, dets[j].x2, dets[j].y2};
            for (int c = 0; c < 4; c++) worst_box = fmax(worst_box, fabs(got[c] - b[c]));
            worst_score = fmax(worst_score, fabs(dets[j].score - ((const float *)rs->data)[j]));
            KD_EXPECT(dets[j].label == ((const int32_t *)rl->data)[j]);
        }
    }
    fprintf(stderr, "%s: detections within %.3g px, scores within %.3g\n", name, worst_box, worst_score);
    KD_EXPECT(worst_box <= 1e-3);
    KD_EXPECT(worst_score <= 1e-5);
    kd_tfile_free(&ref);
    kd_tfile_free(&batch);
    be->free(be, dimg);
    kd_model_destroy(m);
}

static void predict_r18(void) { predict_fixture("r18"); }
static void predict_r50(void) { predict_fixture("r50"); }
/* ATSS: delta decode from the anchors, scores times sigmoid(centerness) after the top-k */
static void predict_atss(void) { predict_fixture("atss"); }
/* RetinaNet: 9 anchors per location, (anchor, class) pairs, delta decode with stds 1, NMS 0.5 */
static void predict_retina(void) { predict_fixture("retina"); }
/* FCOS: exp distances at the points ((x+0.5)s, (y+0.5)s), scores times sigmoid(centerness) */
static void predict_fcos(void) { predict_fixture("fcos"); }

/* The inference arena shares buffers between layers; the outputs must not change. */
static void inference_mode_matches_training(void)
{
    static kd_config c1, c2;
    kd_tfile b1, b2;
    float *i1, *i2;
    kd_model *mt = load_model("r50", 0, &c1, &i1, &b1), *mi = load_model("r50", 1, &c2, &i2, &b2);
    KD_REQUIRE(mt && mi);
    KD_EXPECT(kd_model_activation_bytes(mi) < kd_model_activation_bytes(mt));
    for (int l = 0; l < kd_model_num_levels(mt); l++) {
        kd_shape s = mt->lvl_s[l];
        size_t e = (size_t)s.n * 4 * (mt->head.R + 1) * s.h * s.w;
        float *a = malloc(e * 4), *b = malloc(e * 4);
        be->copy_to_host(be, a, mt->reg[l], e * 4);
        be->copy_to_host(be, b, mi->reg[l], e * 4);
        KD_EXPECT(memcmp(a, b, e * 4) == 0);
        free(a);
        free(b);
    }
    be->free(be, i1);
    be->free(be, i2);
    kd_tfile_free(&b1);
    kd_tfile_free(&b2);
    kd_model_destroy(mt);
    kd_model_destroy(mi);
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    dir = argv[1];
    kd_log_init(0);
    kd_log_set_level(KD_LOG_WARN);
    kd_err err;
    if (kd_backend_open("cpu", 0, &be, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    KD_TEST_RUN(nms_cases);
    KD_TEST_RUN(predict_r18);
    KD_TEST_RUN(predict_r50);
    KD_TEST_RUN(predict_atss);
    KD_TEST_RUN(predict_retina);
    KD_TEST_RUN(predict_fcos);
    KD_TEST_RUN(inference_mode_matches_training);
    be->close(be);
    return kd_test_summary();
}
