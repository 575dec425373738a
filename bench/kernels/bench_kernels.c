/* bench_kernels.c — CPU kernel benchmark (not a test): the GFL head convolution (3x3,
 * 256->256, 100x152, batch 2), two ResNet stage convolutions, GroupNorm+ReLU and CrossKD's
 * standardisation (align_scale) at the head shape, forward and forward+backward, next to
 * the machine's SGEMM peak (OpenBLAS sgemm on a large square) and PyTorch's time for the
 * same operation, both measured in this run (bench/kernels/bench_torch.py, started here).
 *
 * PyTorch runs as a child process (bench_torch.py --serve) and every single run of ours
 * alternates with a single run of PyTorch's on the same operation, so that both sides meet
 * the same load on a shared machine; every time is the best of --rounds x --reps runs after
 * a warm-up (the minimum is the least noisy estimate). Run from the repository root:
 *     build-kernels/bench/kernels/bench_kernels --threads 2 --rounds 3 --reps 5
 * Options: --threads N (0 = OMP_NUM_THREADS or all cores), --reps R, --rounds K, --quick
 * (small shapes, a smoke test), --no-torch, --torch PATH (the script; default
 * bench/kernels/bench_torch.py). Output: a markdown table on stdout, progress on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "kernels/backend.h"

static int reps = 5;
static double sgemm_peak;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef void (*op_fn)(void *ctx);

static double best_ms(op_fn fn, void *ctx)
{
    fn(ctx); /* warm-up: primitive creation, page faults */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        fn(ctx);
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    return best * 1e3;
}

static float *dev_rand(const kd_backend *b, size_t n, float scale)
{
    float *h = malloc(n * sizeof *h);
    uint32_t s = 12345u + (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        h[i] = scale * ((float)(s >> 8) / 16777216.0f * 2.0f - 1.0f);
    }
    float *d = b->alloc(b, n * sizeof *d);
    b->copy_from_host(b, d, h, n * sizeof *d);
    free(h);
    return d;
}

/* ---- SGEMM peak ------------------------------------------------------------------ */
typedef struct { int n; float *a, *b, *c; } sgemm_ctx;
static void run_sgemm(void *v)
{
    sgemm_ctx *s = v;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->n, s->n, s->n, 1.0f, s->a, s->n,
                s->b, s->n, 0.0f, s->c, s->n);
}

/* ---- convolution ----------------------------------------------------------------- */
typedef struct {
    const kd_backend *b;
    kd_conv_desc d;
    float *x, *w, *y, *dy, *dx, *dw;
} conv_ctx;
static void conv_f(void *v)
{
    conv_ctx *c = v;
    c->b->conv_fwd(c->b, &c->d, c->x, c->w, NULL, c->y);
}
static void conv_fb(void *v)
{
    conv_ctx *c = v;
    c->b->conv_fwd(c->b, &c->d, c->x, c->w, NULL, c->y);
    c->b->conv_bwd_data(c->b, &c->d, c->dy, c->w, c->dx, 0);
    c->b->conv_bwd_weight(c->b, &c->d, c->x, c->dy, c->dw, NULL);
}

/* ---- GroupNorm + ReLU ------------------------------------------------------------ */
typedef struct {
    const kd_backend *b;
    kd_shape s;
    int groups;
    float *x, *gamma, *beta, *y, *mean, *rstd, *dy, *dx, *dg, *db;
} gn_ctx;
static void gn_f(void *v)
{
    gn_ctx *g = v;
    g->b->group_norm_fwd(g->b, g->s, g->groups, 1e-5f, 1, g->x, g->gamma, g->beta, g->y, g->mean, g->rstd);
}
static void gn_fb(void *v)
{
    gn_ctx *g = v;
    gn_f(v);
    g->b->group_norm_bwd(g->b, g->s, g->groups, 1, g->x, g->y, g->dy, g->gamma, g->mean, g->rstd,
                         g->dx, 0, g->dg, g->db);
}

/* ---- align_scale (teacher statistics included, as in CrossKD's function) ------------- */
typedef struct {
    const kd_backend *b;
    kd_shape s;
    float *x, *t, *mt, *st, *y, *ms, *ss, *dy, *dx;
} al_ctx;
static void al_f(void *v)
{
    al_ctx *a = v;
    a->b->channel_stats(a->b, a->s, a->t, a->mt, a->st);
    a->b->align_scale_fwd(a->b, a->s, a->x, a->mt, a->st, a->y, a->ms, a->ss);
}
static void al_fb(void *v)
{
    al_ctx *a = v;
    al_f(v);
    a->b->align_scale_bwd(a->b, a->s, a->x, a->ms, a->ss, a->st, a->dy, a->dx, 0);
}

/* ---- max-pool (ResNet stem), FPN upsample-add, softmax over the 17 DFL bins ----------- */
typedef struct {
    const kd_backend *b;
    kd_shape s;
    float *x, *y, *dy, *dx;
    int32_t *am;
} mp_ctx;
static void mp_f(void *v)
{
    mp_ctx *m = v;
    m->b->max_pool_fwd(m->b, m->s, 3, 2, 1, m->x, m->y, m->am);
}
static void mp_fb(void *v)
{
    mp_ctx *m = v;
    mp_f(v);
    m->b->max_pool_bwd(m->b, m->s, 3, 2, 1, m->am, m->dy, m->dx, 0);
}
typedef struct {
    const kd_backend *b;
    kd_shape top;
    float *t, *lat;
} up_ctx;
static void up_f(void *v)
{
    up_ctx *u = v;
    u->b->upsample_nearest_add_fwd(u->b, u->top, u->t, 2 * u->top.h, 2 * u->top.w, u->lat);
}
typedef struct {
    const kd_backend *b;
    size_t rows;
    float *x, *y, *dy, *dx;
} sm_ctx;
static void sm_f(void *v)
{
    sm_ctx *m = v;
    m->b->softmax_fwd(m->b, m->rows, 17, m->x, m->y);
}
static void sm_fb(void *v)
{
    sm_ctx *m = v;
    sm_f(v);
    m->b->softmax_bwd(m->b, m->rows, 17, m->y, m->dy, m->dx, 0);
}

/* ---- PyTorch side: bench_torch.py --serve as a child, one operation per request ------ */
static FILE *torch_in, *torch_out;
static pid_t torch_pid;

static int torch_start(const char *script, int threads, int quick)
{
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) return -1;
    torch_pid = fork();
    if (torch_pid < 0) return -1;
    if (torch_pid == 0) {
        dup2(to_child[0], 0);
        dup2(from_child[1], 1);
        close(to_child[1]), close(from_child[0]);
        char th[16];
        snprintf(th, sizeof th, "%d", threads);
        execl("/usr/bin/python3", "python3", script, "--serve", "--threads", th,
              quick ? "--quick" : (char *)NULL, (char *)NULL);
        _exit(127);
    }
    close(to_child[0]), close(from_child[1]);
    torch_in = fdopen(to_child[1], "w");
    torch_out = fdopen(from_child[0], "r");
    char line[256];
    if (!torch_in || !torch_out || !fgets(line, sizeof line, torch_out) || strncmp(line, "ready", 5) != 0)
        return -1;
    return 0;
}

/* One run of `key` in PyTorch, in milliseconds (0 when the child is gone). */
static double torch_once(const char *key)
{
    char line[256], k[64];
    double ms;
    if (!torch_in || fprintf(torch_in, "%s\n", key) < 0 || fflush(torch_in) != 0) return 0.0;
    if (!fgets(line, sizeof line, torch_out) || sscanf(line, "%63s %lf", k, &ms) != 2 || ms != ms)
        return 0.0;
    return ms;
}

static void torch_stop(void)
{
    if (torch_in) fclose(torch_in);
    if (torch_out) fclose(torch_out);
    if (torch_pid > 0) waitpid(torch_pid, NULL, 0);
}

static void row(const char *what, const char *shape, double ms, double tms, double gflop)
{
    char ours[32] = "-", pct[32] = "-", theirs[32] = "-", ratio[32] = "-", tms_s[32] = "-";
    if (gflop > 0) {
        snprintf(ours, sizeof ours, "%.1f", gflop / (ms * 1e-3));
        snprintf(pct, sizeof pct, "%.0f%%", 100.0 * gflop / (ms * 1e-3) / sgemm_peak);
    }
    if (tms > 0) {
        snprintf(tms_s, sizeof tms_s, "%.2f", tms);
        if (gflop > 0) snprintf(theirs, sizeof theirs, "%.1f", gflop / (tms * 1e-3));
        snprintf(ratio, sizeof ratio, "%.2f", tms / ms);
    }
    printf("| %s | %s | %.2f | %s | %s | %s | %s | %s |\n", what, shape, ms, ours, pct, tms_s, theirs, ratio);
    fflush(stdout);
}

typedef struct bench_case {
    char key[48], name[96], shape[96];
    double gflop;
    op_fn fn;
    void *ctx;
    double best_ms, torch_ms;
} bench_case;

#define MAX_CASES 24
static bench_case cases[MAX_CASES];
static int n_cases;

static void add_case(const char *key, const char *name, const char *shape, double gflop, op_fn fn,
                     void *ctx)
{
    bench_case *c = &cases[n_cases++];
    snprintf(c->key, sizeof c->key, "%s", key);
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->shape, sizeof c->shape, "%s", shape);
    c->gflop = gflop, c->fn = fn, c->ctx = ctx, c->best_ms = 1e30, c->torch_ms = 1e30;
}

int main(int argc, char **argv)
{
    int threads = 0, quick = 0, torch = 1, rounds = 3;
    const char *script = "bench/kernels/bench_torch.py";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--torch") && i + 1 < argc) script = argv[++i];
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--no-torch")) torch = 0;
        else {
            fprintf(stderr, "usage: %s [--threads N] [--reps R] [--rounds K] [--quick] [--no-torch] [--torch PATH]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (rounds < 1) rounds = 1;
    /* PyTorch's child first: fork before OpenBLAS and OpenMP have started their threads */
    int want_threads = threads;
    if (want_threads == 0) {
        const char *e = getenv("OMP_NUM_THREADS");
        want_threads = e && atoi(e) > 0 ? atoi(e) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    }
    if (torch && torch_start(script, want_threads, quick) != 0) {
        fprintf(stderr, "bench: cannot start /usr/bin/python3 %s --serve; run with --no-torch\n", script);
        return 1;
    }
    const kd_backend *b;
    kd_err err;
    if (kd_backend_open("cpu", threads, &b, &err) != KD_OK) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }

    /* convolutions */
    struct {
        const char *key, *name;
        kd_conv_desc d;
    } convs[3] = {
        {"conv_head", "conv 3x3 256->256 (GFL head)", {{2, 256, 100, 152}, 256, 3, 3, 1, 1, 1, 1, 0}},
        {"conv_res", "conv 3x3 128->128 (ResNet layer2)", {{2, 128, 100, 168}, 128, 3, 3, 1, 1, 1, 1, 0}},
        {"conv_res1x1", "conv 1x1 256->64 (ResNet layer1)", {{2, 256, 200, 336}, 64, 1, 1, 1, 1, 0, 0, 0}},
    };
    if (quick) {
        convs[0].d = (kd_conv_desc){{1, 32, 20, 24}, 32, 3, 3, 1, 1, 1, 1, 0};
        convs[1].d = (kd_conv_desc){{1, 16, 24, 20}, 16, 3, 3, 1, 1, 1, 1, 0};
        convs[2].d = (kd_conv_desc){{1, 32, 24, 20}, 16, 1, 1, 1, 1, 0, 0, 0};
    }
    conv_ctx cc[3];
    for (int i = 0; i < 3; i++) {
        conv_ctx *c = &cc[i];
        *c = (conv_ctx){b, convs[i].d, 0, 0, 0, 0, 0, 0};
        kd_shape ys = kd_conv_out_shape(&c->d);
        size_t xn = kd_shape_elems(c->d.x), yn = kd_shape_elems(ys),
               wn = (size_t)c->d.c_out * c->d.x.c * c->d.kh * c->d.kw;
        c->x = dev_rand(b, xn, 1.f), c->w = dev_rand(b, wn, 0.01f), c->y = dev_rand(b, yn, 1.f),
        c->dy = dev_rand(b, yn, 1.f), c->dx = dev_rand(b, xn, 1.f), c->dw = dev_rand(b, wn, 1.f);
        double gf = 2.0 * (double)yn * c->d.x.c * c->d.kh * c->d.kw * 1e-9;
        char shape[96], key[64], name[128];
        snprintf(shape, sizeof shape, "N%d C%d %dx%d -> %d", c->d.x.n, c->d.x.c, c->d.x.h, c->d.x.w, c->d.c_out);
        snprintf(key, sizeof key, "%s_fwd", convs[i].key);
        snprintf(name, sizeof name, "%s fwd", convs[i].name);
        add_case(key, name, shape, gf, conv_f, c);
        snprintf(key, sizeof key, "%s_fb", convs[i].key);
        snprintf(name, sizeof name, "%s fwd+bwd", convs[i].name);
        add_case(key, name, shape, 3 * gf, conv_fb, c);
    }

    kd_shape hs = quick ? (kd_shape){1, 32, 20, 24} : (kd_shape){2, 256, 100, 152};
    int groups = quick ? 8 : 32;
    size_t hn = kd_shape_elems(hs), hc = (size_t)hs.c;
    char shape[96];
    snprintf(shape, sizeof shape, "N%d C%d %dx%d", hs.n, hs.c, hs.h, hs.w);
    gn_ctx g = {b, hs, groups, dev_rand(b, hn, 1.f), dev_rand(b, hc, 1.f), dev_rand(b, hc, .1f),
                dev_rand(b, hn, 1.f), dev_rand(b, (size_t)hs.n * groups, 1.f),
                dev_rand(b, (size_t)hs.n * groups, 1.f), dev_rand(b, hn, 1.f), dev_rand(b, hn, 1.f),
                dev_rand(b, hc, 1.f), dev_rand(b, hc, 1.f)};
    add_case("gn_relu_fwd", "GroupNorm(32)+ReLU fwd", shape, 0, gn_f, &g);
    add_case("gn_relu_fb", "GroupNorm(32)+ReLU fwd+bwd", shape, 0, gn_fb, &g);
    al_ctx a = {b, hs, dev_rand(b, hn, 1.f), dev_rand(b, hn, 1.f), dev_rand(b, hc, 1.f),
                dev_rand(b, hc, 1.f), dev_rand(b, hn, 1.f), dev_rand(b, hc, 1.f),
                dev_rand(b, hc, 1.f), dev_rand(b, hn, 1.f), dev_rand(b, hn, 1.f)};
    b->relu_fwd(b, hn, a.x, a.x);
    b->relu_fwd(b, hn, a.t, a.t);
    add_case("align_fwd", "align_scale (+ teacher stats) fwd", shape, 0, al_f, &a);
    add_case("align_fb", "align_scale (+ teacher stats) fwd+bwd", shape, 0, al_fb, &a);

    kd_shape mps = quick ? (kd_shape){1, 8, 20, 24} : (kd_shape){2, 64, 400, 672};
    kd_shape mys = kd_pool_out_shape(mps, 3, 2, 1);
    size_t mn = kd_shape_elems(mps), myn = kd_shape_elems(mys);
    mp_ctx mp = {b, mps, dev_rand(b, mn, 1.f), dev_rand(b, myn, 1.f), dev_rand(b, myn, 1.f),
                 dev_rand(b, mn, 1.f), b->alloc(b, myn * sizeof(int32_t))};
    char mshape[96];
    snprintf(mshape, sizeof mshape, "N%d C%d %dx%d", mps.n, mps.c, mps.h, mps.w);
    add_case("maxpool_fwd", "max-pool 3x3 s2 p1 (ResNet stem) fwd", mshape, 0, mp_f, &mp);
    add_case("maxpool_fb", "max-pool 3x3 s2 p1 (ResNet stem) fwd+bwd", mshape, 0, mp_fb, &mp);

    kd_shape us = quick ? (kd_shape){1, 16, 10, 12} : (kd_shape){2, 256, 50, 84};
    up_ctx up = {b, us, dev_rand(b, kd_shape_elems(us), 1.f), dev_rand(b, 4 * kd_shape_elems(us), 1.f)};
    char ushape[96];
    snprintf(ushape, sizeof ushape, "N%d C%d %dx%d -> %dx%d", us.n, us.c, us.h, us.w, 2 * us.h, 2 * us.w);
    add_case("upadd_fwd", "FPN nearest upsample + add fwd", ushape, 0, up_f, &up);

    size_t rows = quick ? 1000 : (size_t)2 * 100 * 152 * 4;
    sm_ctx sm = {b, rows, dev_rand(b, rows * 17, 4.f), dev_rand(b, rows * 17, 1.f),
                 dev_rand(b, rows * 17, 1.f), dev_rand(b, rows * 17, 1.f)};
    char sshape[96];
    snprintf(sshape, sizeof sshape, "%zu rows x 17", rows);
    add_case("softmax_fwd", "softmax over 17 bins fwd", sshape, 0, sm_f, &sm);
    add_case("softmax_fb", "softmax over 17 bins fwd+bwd", sshape, 0, sm_fb, &sm);

    /* Each round measures the SGEMM peak, then for every case alternates single runs of
     * PyTorch (the child) and crosskd, --reps times, so that both sides meet the same quiet
     * and busy moments of a shared machine; every figure is the best over all runs. */
    double peak = 0.0;
    sgemm_ctx sg = {quick ? 512 : 3072, 0, 0, 0};
    size_t sn = (size_t)sg.n * sg.n;
    sg.a = dev_rand(b, sn, 1.f), sg.b = dev_rand(b, sn, 1.f), sg.c = dev_rand(b, sn, 1.f);
    for (int i = 0; i < n_cases; i++) cases[i].fn(cases[i].ctx); /* warm-up */
    for (int r = 0; r < rounds; r++) {
        double sg_ms = best_ms(run_sgemm, &sg);
        double p = 2.0 * sg.n * (double)sg.n * sg.n / (sg_ms * 1e-3) * 1e-9;
        if (p > peak) peak = p;
        /* OpenBLAS's threads spin for ~0.1 s after a call: let them sleep before timing */
        struct timespec pause = {0, 500 * 1000 * 1000};
        nanosleep(&pause, NULL);
        for (int i = 0; i < n_cases; i++)
            for (int k = 0; k < reps; k++) {
                /* a short pause before each run: the other side's OpenMP threads spin for a
                 * while after their last region and would slow the start of this one */
                struct timespec gap = {0, 30 * 1000 * 1000};
                if (torch) {
                    nanosleep(&gap, NULL);
                    double t = torch_once(cases[i].key);
                    if (t > 0 && t < cases[i].torch_ms) cases[i].torch_ms = t;
                }
                nanosleep(&gap, NULL);
                double t0 = now_s();
                cases[i].fn(cases[i].ctx);
                double ms = (now_s() - t0) * 1e3;
                if (ms < cases[i].best_ms) cases[i].best_ms = ms;
            }
        fprintf(stderr, "bench: round %d of %d done\n", r + 1, rounds);
    }
    sgemm_peak = peak;
    b->free(b, sg.a), b->free(b, sg.b), b->free(b, sg.c);

    printf("crosskd CPU kernels, %d threads; every time is the best of %d rounds x %d runs after "
           "a warm-up, PyTorch %s\n\n", b->threads, rounds, reps,
           torch ? "runs alternating with ours" : "not run");
    printf("OpenBLAS SGEMM %dx%dx%d: %.1f GFLOP/s (the machine's measured peak)\n\n", sg.n, sg.n,
           sg.n, peak);
    printf("| operation | shape | crosskd ms | crosskd GFLOP/s | %% of SGEMM peak | PyTorch ms | PyTorch GFLOP/s | PyTorch ms / crosskd ms |\n");
    printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < n_cases; i++)
        row(cases[i].name, cases[i].shape, cases[i].best_ms,
            cases[i].torch_ms < 1e30 ? cases[i].torch_ms : 0.0, cases[i].gflop);
    printf("\nGFLOP/s counts 2*N*C_out*H_out*W_out*C_in*k*k per pass, three passes for fwd+bwd.\n");

    for (int i = 0; i < 3; i++)
        b->free(b, cc[i].x), b->free(b, cc[i].w), b->free(b, cc[i].y), b->free(b, cc[i].dy),
            b->free(b, cc[i].dx), b->free(b, cc[i].dw);
    b->free(b, g.x), b->free(b, g.gamma), b->free(b, g.beta), b->free(b, g.y), b->free(b, g.mean),
        b->free(b, g.rstd), b->free(b, g.dy), b->free(b, g.dx), b->free(b, g.dg), b->free(b, g.db);
    b->free(b, a.x), b->free(b, a.t), b->free(b, a.mt), b->free(b, a.st), b->free(b, a.y),
        b->free(b, a.ms), b->free(b, a.ss), b->free(b, a.dy), b->free(b, a.dx);
    b->free(b, mp.x), b->free(b, mp.y), b->free(b, mp.dy), b->free(b, mp.dx), b->free(b, mp.am);
    b->free(b, up.t), b->free(b, up.lat);
    b->free(b, sm.x), b->free(b, sm.y), b->free(b, sm.dy), b->free(b, sm.dx);
    b->close(b);
    torch_stop();
    return 0;
}
