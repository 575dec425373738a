/* bench_model.c — training-step throughput of the C GFL against the PyTorch reference
 * (tests/unit/model/ref_gfl.py through bench_torch.py), in the same run.
 *
 *   bench_model CONFIG N H W [STEPS REPEATS]      (run from the source root, or set
 *                                                  KD_BENCH_TORCH to bench_torch.py's path)
 *
 * One step = forward, GFL losses (ATSS, QFL, GIoU, DFL), backward, SGD (momentum 0.9,
 * weight decay 1e-4) on a synthetic batch with three boxes per image, both sides. Reported:
 *   - images/s, best of REPEATS rounds of STEPS steps, C and PyTorch alternating round by
 *     round (the machine is shared: best, not mean; also the median of the per-round ratios);
 *   - peak memory: the process's peak RSS, and its growth over the RSS before the model was
 *     built (the model's own memory; the PyTorch library alone is ~200 MB);
 *   - the machine's SGEMM peak (OpenBLAS through the backend, 2048^3, best of 3 after each
 *     round's C steps, best over the rounds; the C peak RSS is read before the first one, so
 *     its buffers do not count) and the
 *     fraction of it the whole C step reaches, counting convolution FLOPs only: forward
 *     2*Cout*Cin*k*k*Hout*Wout*N per conv, and for trainable convs twice more (backward data
 *     and weights); frozen convs count their forward only.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "proto/log.h"
#include "worker/model/model.h"
#include "worker/optim.h"
#include "worker/options.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double rss_mb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long a = 0, b = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &a, &b) != 2) b = 0;
        fclose(f);
    }
    return (double)b * (double)sysconf(_SC_PAGESIZE) / 1e6;
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1e3;
}

static double conv_flops(const kd_conv_desc *d)
{
    kd_shape y = kd_conv_out_shape(d);
    return 2.0 * y.n * y.c * y.h * y.w * (double)d->x.c * d->kh * d->kw;
}

static double step_flops(const kd_model *m)
{
    double f = 0;
    const kd_resnet *r = &m->bb;
    f += conv_flops(&r->stem.d) * (r->frozen < 0 ? 3 : 1);
    for (int i = 0; i < r->n_blk; i++) {
        int mul = r->blk[i].frozen ? 1 : 3;
        for (int k = 0; k < r->blk[i].nconv; k++) f += mul * conv_flops(&r->blk[i].c[k].d);
        if (r->blk[i].has_ds) f += mul * conv_flops(&r->blk[i].ds.d);
    }
    for (int i = 0; i < m->fpn.n_in; i++) f += 3 * conv_flops(&m->fpn.lat_d[i]);
    for (int i = 0; i < m->fpn.num_outs; i++) f += 3 * conv_flops(&m->fpn.fpn_d[i]);
    const kd_head *h = &m->head;
    for (int l = 0; l < m->fpn.num_outs; l++) {
        kd_shape x = m->fpn.out_s[l];
        for (int j = 0; j < h->S; j++) {
            kd_conv_desc d = {j ? m->lvl_s[l] : x, h->F, 3, 3, 1, 1, 1, 1, 0};
            f += 2 * 3 * conv_flops(&d);
        }
        kd_conv_desc dc = {m->lvl_s[l], h->K, 3, 3, 1, 1, 1, 1, 1};
        kd_conv_desc dr = {m->lvl_s[l], 4 * (h->R + 1), 3, 3, 1, 1, 1, 1, 1};
        f += 3 * (conv_flops(&dc) + conv_flops(&dr));
    }
    return f;
}

static double sgemm_peak(const kd_backend *be)
{
    int n = 2048;
    float *a = be->alloc(be, (size_t)n * n * 4), *b = be->alloc(be, (size_t)n * n * 4),
          *c = be->alloc(be, (size_t)n * n * 4);
    be->fill(be, a, (size_t)n * n, 0.5f);
    be->fill(be, b, (size_t)n * n, 0.25f);
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        be->gemm(be, 0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        be->sync(be);
        double g = 2.0 * n * n * (double)n / (now() - t0) / 1e9;
        if (g > best) best = g;
    }
    be->free(be, a);
    be->free(be, b);
    be->free(be, c);
    return best;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s CONFIG N H W [STEPS REPEATS]\n", argv[0]);
        return 2;
    }
    int N = atoi(argv[2]), H = atoi(argv[3]), W = atoi(argv[4]);
    int steps = argc > 5 ? atoi(argv[5]) : 5, repeats = argc > 6 ? atoi(argv[6]) : 3;
    kd_log_init(0);
    static kd_config cfg;
    kd_err err;
    if (kd_options_load(&cfg, argv[1], NULL, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const kd_backend *be;
    if (kd_backend_open("cpu", (int)cfg.threads, &be, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double base = rss_mb();
    kd_model_opts o = {N, H, W, 0, -1};
    kd_model *m;
    if (kd_model_create(be, &cfg.model, &o, &m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    kd_model_init(m, 1);
    size_t ie = (size_t)N * 3 * H * W;
    float *img = malloc(ie * 4);
    kd_model_rng r;
    kd_model_rng_seed(&r, 3, 0);
    for (size_t i = 0; i < ie; i++) img[i] = (float)kd_model_rng_normal(&r);
    float *dimg = be->alloc(be, ie * 4);
    be->copy_from_host(be, dimg, img, ie * 4);
    int K = (int)cfg.model.bbox_head.num_classes;
    float boxes[3][4] = {{0.1f * W, 0.1f * H, 0.5f * W, 0.6f * H},
                         {0.4f * W, 0.3f * H, 0.9f * W, 0.8f * H},
                         {0.2f * W, 0.5f * H, 0.45f * W, 0.95f * H}};
    int32_t labels[3] = {0, 1 % K, 2 % K};
    kd_image_gt gts[64];
    for (int i = 0; i < N && i < 64; i++) gts[i] = (kd_image_gt){3, &boxes[0][0], labels, H, W};
    kd_det_loss *ls = kd_det_loss_create(m);
    kd_sgd_cfg sgd = {0.9, 1e-4};
    const kd_model_cfg *c = &cfg.model;
    const char *script = getenv("KD_BENCH_TORCH") ? getenv("KD_BENCH_TORCH") : "bench/model/bench_torch.py";
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %lld %lld %lld %lld %lld %lld %lld %d %d %d %d %d %d %d",
             script, c->backbone.depth, c->backbone.base_channels, c->backbone.frozen_stages,
             c->neck.out_channels, c->bbox_head.stacked_convs, c->bbox_head.feat_channels,
             c->bbox_head.gn_groups, K, N, H, W, steps, 1, be->threads);
    /* Rounds alternate C and PyTorch, so both see the same share of a busy machine. */
    double best = 0, ph[4], ph_best[4] = {0, 0, 0, 0}, t_best = 0, t_peak = 0, t_base = 0;
    double c_peak = 0, peak = 0;
    double ratio[64];
    int n_ratio = 0;
    for (int rep = -1; rep < repeats; rep++) {
        memset(ph, 0, sizeof ph);
        double t0 = now();
        int n = rep < 0 ? 2 : steps; /* rep -1: warm-up (oneDNN primitives, page faults) */
        for (int s = 0; s < n; s++) {
            double ta = now();
            if (kd_model_forward(m, dimg, N, H, W, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            double tb = now();
            kd_det_loss_stats st;
            if (kd_det_loss_prepare(ls, m, gts, &st, &err)) return 1;
            double P, Wn;
            kd_det_loss_normalisers(&st, 1, &P, &Wn);
            kd_det_losses lo;
            kd_det_loss_compute(ls, m, P, Wn, 1.0, &lo);
            double tc = now();
            kd_model_zero_grad(m);
            kd_model_backward(m);
            double td = now();
            kd_sgd_step(m->be, m->params.data, m->params.grad, m->params.mom, m->params.train_elems, &sgd, 1e-3);
            double te = now();
            ph[0] += tb - ta;
            ph[1] += tc - tb;
            ph[2] += td - tc;
            ph[3] += te - td;
        }
        be->sync(be);
        double ips = N * n / (now() - t0);
        if (rep < 0) continue;
        if (rep == 0) c_peak = peak_rss_mb(); /* the model's peak is reached in the first step */
        double g = sgemm_peak(be);            /* every round: the best is the machine's peak */
        if (g > peak) peak = g;
        if (ips > best) {
            best = ips;
            for (int i = 0; i < 4; i++) ph_best[i] = ph[i] / n;
        }
        FILE *p = popen(cmd, "r");
        double t_ips = 0, pk = 0, bs = 0;
        if (!p || fscanf(p, " images_per_s=%lf peak_rss_mb=%lf base_rss_mb=%lf", &t_ips, &pk, &bs) != 3) {
            fprintf(stderr, "PyTorch reference failed: %s\n", cmd);
            if (p) pclose(p);
            return 1;
        }
        pclose(p);
        if (t_ips > t_best) t_best = t_ips;
        if (pk > t_peak) t_peak = pk, t_base = bs;
        if (n_ratio < 64) ratio[n_ratio++] = ips / t_ips;
        fprintf(stderr, "round %d: C %.3f images/s, PyTorch %.3f images/s\n", rep, ips, t_ips);
    }
    for (int i = 1; i < n_ratio; i++) /* insertion sort for the median */
        for (int j = i; j > 0 && ratio[j] < ratio[j - 1]; j--) {
            double t = ratio[j];
            ratio[j] = ratio[j - 1];
            ratio[j - 1] = t;
        }
    double flops = step_flops(m);
    double c_delta = c_peak - base;
    printf("config %s  batch %dx3x%dx%d  threads %d  (%d alternating rounds of %d steps)\n", argv[1],
           N, H, W, be->threads, repeats, steps);
    printf("  SGEMM peak (2048^3, best over rounds)  %8.1f GFLOP/s\n", peak);
    printf("  C step conv work                    %8.3f GFLOP/step\n", flops / 1e9);
    printf("  C        images/s %8.3f   %5.1f%% of SGEMM peak   peak RSS %7.1f MB (+%.1f MB for the model)\n",
           best, 100.0 * flops * best / N / 1e9 / peak, c_peak, c_delta);
    printf("           per step: forward %.1f ms, losses %.1f ms, backward %.1f ms, SGD %.1f ms\n",
           1e3 * ph_best[0], 1e3 * ph_best[1], 1e3 * ph_best[2], 1e3 * ph_best[3]);
    printf("           arenas: parameters+grad+momentum %.1f MB, activations %.1f MB\n",
           (m->params.total_elems + 2.0 * m->params.train_elems) * 4e-6,
           kd_model_activation_bytes(m) * 1e-6);
    printf("  PyTorch  images/s %8.3f   %5.1f%% of SGEMM peak   peak RSS %7.1f MB (+%.1f MB for the model)\n",
           t_best, 100.0 * flops * t_best / N / 1e9 / peak, t_peak, t_peak - t_base);
    printf("  C / PyTorch: speed %.2fx (best vs best; median of the rounds %.2fx), peak RSS %.2fx, "
           "model memory %.2fx\n",
           best / t_best, n_ratio ? ratio[n_ratio / 2] : 0.0, c_peak / t_peak, c_delta / (t_peak - t_base));
    kd_det_loss_destroy(ls);
    be->free(be, dimg);
    free(img);
    kd_model_destroy(m);
    be->close(be);
    return 0;
}
