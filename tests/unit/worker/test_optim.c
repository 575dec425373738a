/* test_optim.c — SGD through the CPU backend against torch.optim.SGD (fixture from
 * make_sgd_fixture.py), the same step with the element math of kernels/kd_math.h run
 * directly (bit-identical: it is what the CUDA kernel runs), gradient-norm clipping as
 * clip_grad_norm_ does it, and the learning-rate schedule against the closed forms of
 * crosskd.md §9. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kd_test.h"
#include "kernels/kd_math.h"
#include "worker/optim.h"

static const char *g_fixture;
static const kd_backend *BE;

/* A device copy of n host floats. */
static float *dev_from(const float *h, size_t n)
{
    float *d = BE->alloc(BE, n * sizeof(float));
    BE->copy_from_host(BE, d, h, n * sizeof(float));
    return d;
}

static void test_sgd_matches_torch(void)
{
    FILE *f = fopen(g_fixture, "r");
    KD_REQUIRE(f != NULL);
    char line[1024];
    KD_REQUIRE(fgets(line, sizeof line, f) != NULL); /* header */
    enum { N = 7 };
    float w[N], v[N] = {0}, g[N], w_elem[N], v_elem[N] = {0};
    for (int i = 0; i < N; i++) w[i] = w_elem[i] = (float)cos(0.7 * i);
    float *dw = dev_from(w, N), *dv = dev_from(v, N), *dg = BE->alloc(BE, N * sizeof(float));
    kd_sgd_cfg cfg = {.momentum = 0.9, .weight_decay = 1e-4};
    int steps = 0;
    for (int s; fscanf(f, "%d", &s) == 1; steps++) {
        double lr, want[N];
        KD_REQUIRE(fscanf(f, "%lf", &lr) == 1);
        for (int i = 0; i < N; i++) KD_REQUIRE(fscanf(f, "%lf", &want[i]) == 1);
        kd_lr_schedule sch = {.base_lr = 0.01, .warmup_start_factor = 0.001, .warmup_iters = 6, .gamma = 0.1};
        KD_EXPECT_NEAR(kd_lr_at(&sch, s, 0), lr, 1e-15, 1e-12);
        for (int i = 0; i < N; i++) g[i] = (float)sin(0.3 * i + s);
        BE->copy_from_host(BE, dg, g, sizeof g);
        kd_sgd_step(BE, dw, dg, dv, N, &cfg, lr);
        BE->copy_to_host(BE, w, dw, sizeof w);
        for (int i = 0; i < N; i++) kd_sgd_elem(&w_elem[i], g[i], &v_elem[i], (float)lr, 0.9f, 1e-4f);
        /* Same float32 operation order as PyTorch's scalar path: agreement to 1 ulp. */
        for (int i = 0; i < N; i++) KD_EXPECT_NEAR(w[i], want[i], 0, 2.5e-7);
        KD_EXPECT(memcmp(w, w_elem, sizeof w) == 0);
    }
    BE->copy_to_host(BE, v, dv, sizeof v);
    KD_EXPECT(memcmp(v, v_elem, sizeof v) == 0);
    BE->free(BE, dw);
    BE->free(BE, dv);
    BE->free(BE, dg);
    fclose(f);
    KD_EXPECT(steps == 6);
}

/* A long range (several threads' worth) gives the same bits as the element loop, whatever
 * the backend's thread count. */
static void test_sgd_long_range(void)
{
    enum { N = 100003 };
    static float w[N], v[N], g[N], w_ref[N], v_ref[N];
    for (int i = 0; i < N; i++) {
        w[i] = w_ref[i] = (float)sin(0.001 * i);
        v[i] = v_ref[i] = (float)cos(0.002 * i) * 0.1f;
        g[i] = (float)sin(0.37 * i + 1.0);
    }
    float *dw = dev_from(w, N), *dv = dev_from(v, N), *dg = dev_from(g, N);
    kd_sgd_cfg cfg = {.momentum = 0.9, .weight_decay = 5e-4};
    kd_sgd_step(BE, dw, dg, dv, N, &cfg, 0.02);
    for (int i = 0; i < N; i++) kd_sgd_elem(&w_ref[i], g[i], &v_ref[i], 0.02f, 0.9f, 5e-4f);
    BE->copy_to_host(BE, w, dw, sizeof w);
    BE->copy_to_host(BE, v, dv, sizeof v);
    KD_EXPECT(memcmp(w, w_ref, sizeof w) == 0);
    KD_EXPECT(memcmp(v, v_ref, sizeof v) == 0);
    BE->free(BE, dw);
    BE->free(BE, dv);
    BE->free(BE, dg);
}

static void test_schedule(void)
{
    kd_lr_schedule s = {.base_lr = 0.01, .warmup_start_factor = 0.001, .warmup_iters = 500,
                        .n_milestones = 2, .milestones = {8, 11}, .gamma = 0.1};
    KD_EXPECT_NEAR(kd_lr_at(&s, 0, 0), 0.01 * 0.001, 0, 1e-12);
    KD_EXPECT_NEAR(kd_lr_at(&s, 250, 0), 0.01 * (0.001 + 0.999 * 250 / 499.0), 0, 1e-12);
    KD_EXPECT_NEAR(kd_lr_at(&s, 499, 0), 0.01, 0, 1e-12);
    KD_EXPECT_NEAR(kd_lr_at(&s, 5000, 7), 0.01, 0, 1e-12);
    KD_EXPECT_NEAR(kd_lr_at(&s, 60000, 8), 0.001, 0, 1e-12);
    KD_EXPECT_NEAR(kd_lr_at(&s, 80000, 11), 0.0001, 0, 1e-12);
    /* Auto scaling: 8 GPUs x 2 images keeps 0.01, 1 GPU x 2 images gives 0.00125. */
    KD_EXPECT_NEAR(kd_lr_autoscale(0.01, 1, 8, 2, 16), 0.01, 0, 1e-15);
    KD_EXPECT_NEAR(kd_lr_autoscale(0.01, 1, 1, 2, 16), 0.00125, 0, 1e-15);
    KD_EXPECT_NEAR(kd_lr_autoscale(0.01, 0, 1, 2, 16), 0.01, 0, 1e-15);
}

static void test_clip(void)
{
    float g[4] = {3, 4, 0, 0}, h[2] = {0.1f, 0.1f};
    float *dg = dev_from(g, 4), *dh = dev_from(h, 2);
    /* one global norm over two ranges, as clip_grad_norm_ over a model and an adapter */
    double norm = sqrt(kd_grad_sumsq(BE, dg, 4) + kd_grad_sumsq(BE, dh, 2));
    const double want = sqrt(25.0 + 2.0 * (double)0.1f * (double)0.1f);
    KD_EXPECT_NEAR(norm, want, 0, 1e-15);
    KD_EXPECT_NEAR(sqrt(kd_grad_sumsq(BE, dg, 4)), 5.0, 0, 1e-15);
    double coef = kd_grad_clip_coef(norm, 1.0);
    KD_EXPECT_NEAR(coef, 1.0 / (want + 1e-6), 0, 1e-15);
    kd_grad_clip(BE, dg, 4, coef);
    kd_grad_clip(BE, dh, 2, coef);
    BE->copy_to_host(BE, g, dg, sizeof g);
    BE->copy_to_host(BE, h, dh, sizeof h);
    KD_EXPECT(g[0] == (float)(3.0f * (float)coef) && g[2] == 0.0f && h[1] == 0.1f * (float)coef);
    /* a norm below max_norm leaves the gradients alone */
    KD_EXPECT(kd_grad_clip_coef(0.1414, 1.0) == 1.0);
    KD_EXPECT(kd_grad_sumsq(BE, dg, 0) == 0.0);
    BE->free(BE, dg);
    BE->free(BE, dh);
}

int main(int argc, char **argv)
{
    g_fixture = argc > 1 ? argv[1] : "tests/fixtures/worker/sgd_torch.txt";
    kd_err err;
    if (kd_backend_open("cpu", 2, &BE, &err) != KD_OK) {
        fprintf(stderr, "cannot open the CPU backend: %s\n", err.msg);
        return 1;
    }
    KD_TEST_RUN(test_sgd_matches_torch);
    KD_TEST_RUN(test_sgd_long_range);
    KD_TEST_RUN(test_schedule);
    KD_TEST_RUN(test_clip);
    BE->close(BE);
    return kd_test_summary();
}
