/* bench_loader.c — does the training step wait for data? A synthetic dataset of
 * COCO-sized images (640 px long side) is loaded at (1333, 800), batch 2, while the
 * "step" sleeps STEP_MS per batch; data_time per batch is what kd_loader_next waited.
 *
 *   bench_loader DIR [WORKERS=2] [STEP_MS=50] [IMAGES=64]
 * Prints the mean and max data_time (first batch excluded: nothing can be ahead of it),
 * the loader's own throughput without a step, and the build time per batch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker/data/loader.h"
#include "worker/data/synth.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [WORKERS] [STEP_MS] [IMAGES]\n", argv[0]);
        return 2;
    }
    int workers = argc > 2 ? atoi(argv[2]) : 2, step_ms = argc > 3 ? atoi(argv[3]) : 50;
    int images = argc > 4 ? atoi(argv[4]) : 64;
    kd_synth_cfg s;
    kd_synth_cfg_defaults(&s, 0);
    s.out_dir = argv[1];
    s.n_train = images, s.n_val = 0, s.size_min = 640, s.size_max = 640, s.progress = 0;
    kd_err e = {0};
    if (kd_synth_generate(&s, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    char ann[4096];
    snprintf(ann, sizeof ann, "%s/annotations/instances_train.json", argv[1]);
    kd_coco_index_opts o;
    kd_coco_index_opts_defaults(&o);
    kd_coco_index idx;
    if (kd_coco_index_load(ann, "none", &o, &idx, NULL, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    kd_data_cfg c;
    kd_data_cfg_defaults(&c);
    snprintf(c.data_root, sizeof c.data_root, "%s", argv[1]);
    snprintf(c.img_prefix, sizeof c.img_prefix, "train/");
    c.num_workers = workers;
    kd_loader *l;
    if (kd_loader_create(&c, &idx, 1, 0, &l, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    for (int pass = 0; pass < 2; pass++) { /* pass 0: no step (throughput); pass 1: with the step */
        kd_loader_start(l, (kd_sampler_cursor){pass, 0});
        const kd_batch *b;
        double wait, sum = 0, mx = 0, t0 = now_s();
        int n = 0, imgs = 0;
        while (kd_loader_next(l, &b, &wait) == KD_OK) {
            if (n > 0) {
                sum += wait;
                if (wait > mx) mx = wait;
            }
            n++;
            imgs += b->n;
            if (pass == 1) {
                struct timespec ts = {step_ms / 1000, (long)(step_ms % 1000) * 1000000L};
                nanosleep(&ts, NULL);
            }
        }
        double t = now_s() - t0;
        if (pass == 0)
            printf("loader alone, %d worker threads: %.1f img/s (%d images, batch 2, 1333x800)\n", workers, imgs / t, imgs);
        else
            printf("with a %d ms step: data_time mean %.2f ms, max %.2f ms over %d batches (first excluded)\n", step_ms,
                   n > 1 ? 1e3 * sum / (n - 1) : 0.0, 1e3 * mx, n - 1);
    }
    kd_loader_stats st = kd_loader_get_stats(l);
    printf("build time per batch (one thread): %.1f ms\n", 1e3 * st.build_seconds / (double)st.batches);
    kd_loader_destroy(l);
    kd_coco_index_free(&idx);
    return 0;
}
