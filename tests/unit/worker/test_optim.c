/* test_optim.c — SGD against torch.optim.SGD (fixture from make_sgd_fixture.py), and the
 * learning-rate schedule against the closed forms of crosskd.md §9. */
#include <math.h>
#include <stdio.h>

#include "kd_test.h"
#include "worker/optim.h"

static const char *g_fixture;

static void test_sgd_matches_torch(void)
{
    FILE *f = fopen(g_fixture, "r");
    KD_REQUIRE(f != NULL);
    char line[1024];
    KD_REQUIRE(fgets(line, sizeof line, f) != NULL); /* header */
    enum { N = 7 };
    float w[N], v[N] = {0}, g[N];
    for (int i = 0; i < N; i++) w[i] = (float)cos(0.7 * i);
    kd_sgd_cfg cfg = {.momentum = 0.9, .weight_decay = 1e-4};
    int steps = 0;
    for (int s; fscanf(f, "%d", &s) == 1; steps++) {
        double lr, want[N];
        KD_REQUIRE(fscanf(f, "%lf", &lr) == 1);
        for (int i = 0; i < N; i++) KD_REQUIRE(fscanf(f, "%lf", &want[i]) == 1);
        kd_lr_schedule sch = {.base_lr = 0.01, .warmup_start_factor = 0.001, .warmup_iters = 6, .gamma = 0.1};
        KD_EXPECT_NEAR(kd_lr_at(&sch, s, 0), lr, 1e-15, 1e-12);
        for (int i = 0; i < N; i++) g[i] = (float)sin(0.3 * i + s);
        kd_sgd_step(w, g, v, N, &cfg, lr);
        /* Same float32 operation order as PyTorch's scalar path: agreement to 1 ulp. */
        for (int i = 0; i < N; i++) KD_EXPECT_NEAR(w[i], want[i], 0, 2.5e-7);
    }
    fclose(f);
    KD_EXPECT(steps == 6);
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
    float g[4] = {3, 4, 0, 0};
    double norm = kd_grad_norm(g, 4);
    KD_EXPECT_NEAR(norm, 5.0, 0, 1e-15);
    kd_grad_clip(g, 4, norm, 1.0);
    KD_EXPECT_NEAR(g[0], 3.0 / (5.0 + 1e-6), 0, 1e-6);
    float h[2] = {0.1f, 0.1f};
    kd_grad_clip(h, 2, kd_grad_norm(h, 2), 1.0);
    KD_EXPECT(h[0] == 0.1f);
}

int main(int argc, char **argv)
{
    g_fixture = argc > 1 ? argv[1] : "tests/fixtures/worker/sgd_torch.txt";
    KD_TEST_RUN(test_sgd_matches_torch);
    KD_TEST_RUN(test_schedule);
    KD_TEST_RUN(test_clip);
    return kd_test_summary();
}
