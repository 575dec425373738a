/* test_normalisers.c — the two-phase loss with multi-rank normalisers (crosskd.md §5, §5.4).
 * Two simulated ranks each take one image of the r50 fixture batch (same padded size, so
 * every per-image computation is the same as in the batch of two). Each rank prepares its
 * local statistics; their sum gives P = mean num_pos and W = max(1, mean weight sum); each
 * rank computes its losses and gradients with those normalisers. Then, as DDP does, the
 * gradients are averaged over ranks and the logged losses too: both must equal the
 * single-rank batch-of-two result (float32 tolerance: rtol 1e-4 on the losses, 1e-4 of each
 * tensor's max on the gradients).
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

static void two_ranks(void)
{
    static kd_config cfg;
    kd_err err;
    char p[1024];
    snprintf(p, sizeof p, "%s/r50.yaml", dir);
    KD_REQUIRE(kd_options_load(&cfg, p, NULL, 0, &err) == KD_OK);
    const kd_backend *be;
    KD_REQUIRE(kd_backend_open("cpu", 0, &be, &err) == KD_OK);
    kd_tfile batch;
    snprintf(p, sizeof p, "%s/r50.batch.safetensors", dir);
    KD_REQUIRE(kd_tfile_read(p, &batch, &err) == KD_OK);
    const kd_tf_tensor *img;
    kd_image_gt *gts;
    KD_REQUIRE(kd_batch_file_gts(&batch, p, &img, &gts, &err) == KD_OK);
    int N = (int)img->shape[0], H = (int)img->shape[2], W = (int)img->shape[3];
    KD_REQUIRE(N == 2);
    kd_model *m[3];
    kd_det_loss *ls[3];
    float *dimg = be->alloc(be, img->bytes);
    be->copy_from_host(be, dimg, img->data, img->bytes);
    snprintf(p, sizeof p, "%s/r50.weights.safetensors", dir);
    for (int r = 0; r < 3; r++) { /* 0, 1: the ranks (one image each); 2: the batch of two */
        kd_model_opts o = {r < 2 ? 1 : 2, H, W, 0, -1};
        KD_REQUIRE(kd_model_create(be, &cfg.model, &o, &m[r], &err) == KD_OK);
        KD_REQUIRE(kd_model_load(m[r], p, &err) == KD_OK);
        const float *x = r < 2 ? dimg + (size_t)r * 3 * H * W : dimg;
        KD_REQUIRE(kd_model_forward(m[r], x, r < 2 ? 1 : 2, H, W, &err) == KD_OK);
        ls[r] = kd_det_loss_create(m[r]);
    }
    kd_det_loss_stats st[3], sum = {0, 0};
    for (int r = 0; r < 3; r++)
        KD_REQUIRE(kd_det_loss_prepare(ls[r], m[r], r < 2 ? &gts[r] : gts, &st[r], &err) == KD_OK);
    for (int r = 0; r < 2; r++) {
        sum.num_pos += st[r].num_pos; /* the all-reduce */
        sum.weight_sum += st[r].weight_sum;
    }
    KD_EXPECT(st[0].num_pos > 0 && st[1].num_pos > 0 && st[0].num_pos != st[1].num_pos);
    double P, Wn, P1, W1;
    kd_det_loss_normalisers(&sum, 2, &P, &Wn);
    kd_det_loss_normalisers(&st[2], 1, &P1, &W1);
    KD_EXPECT_NEAR(2 * P, P1, 0, 1e-12);
    kd_det_losses lo[3];
    for (int r = 0; r < 3; r++) {
        kd_det_loss_compute(ls[r], m[r], r < 2 ? P : P1, r < 2 ? Wn : W1, 1.0, &lo[r]);
        kd_model_zero_grad(m[r]);
        kd_model_backward(m[r]);
    }
    /* DDP: gradients and logged losses averaged over ranks */
    KD_EXPECT_NEAR((lo[0].loss_cls + lo[1].loss_cls) / 2, lo[2].loss_cls, 0, 1e-4);
    KD_EXPECT_NEAR((lo[0].loss_bbox + lo[1].loss_bbox) / 2, lo[2].loss_bbox, 0, 1e-4);
    KD_EXPECT_NEAR((lo[0].loss_dfl + lo[1].loss_dfl) / 2, lo[2].loss_dfl, 0, 1e-4);
    size_t n = m[2]->params.train_elems;
    float *g[3];
    for (int r = 0; r < 3; r++) {
        g[r] = malloc(n * sizeof(float));
        be->copy_to_host(be, g[r], m[r]->params.grad, n * sizeof(float));
    }
    double worst = 0;
    const kd_params *P2 = &m[2]->params;
    for (int i = 0; i < P2->n; i++) {
        if (!P2->p[i].trainable) continue;
        size_t o = P2->p[i].offset, e = P2->p[i].elems;
        double mx = 0, d = 0;
        for (size_t k = 0; k < e; k++) mx = fmax(mx, fabs(g[2][o + k]));
        for (size_t k = 0; k < e; k++) d = fmax(d, fabs(0.5 * (g[0][o + k] + g[1][o + k]) - g[2][o + k]));
        double rel = mx > 0 ? d / mx : d;
        KD_EXPECT_MSG(rel <= 1e-4, "%s: %.3g of its max", P2->p[i].name, rel);
        worst = fmax(worst, rel);
    }
    fprintf(stderr, "rank-averaged gradients within %.3g of each tensor's max\n", worst);
    for (int r = 0; r < 3; r++) {
        free(g[r]);
        kd_det_loss_destroy(ls[r]);
        kd_model_destroy(m[r]);
    }
    be->free(be, dimg);
    free(gts);
    kd_tfile_free(&batch);
    be->close(be);
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    dir = argv[1];
    kd_log_init(0);
    kd_log_set_level(KD_LOG_WARN);
    KD_TEST_RUN(two_ranks);
    return kd_test_summary();
}
