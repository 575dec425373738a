/* bench_pipeline.c — the image pipeline per core: JPEG decode (bytes already in memory),
 * resize to (1333, 800) keeping the ratio, horizontal flip (every other image), BGR->RGB,
 * (x - mean) / std into a zero-padded float32 CHW buffer: what one loader thread does per
 * image. Images: COCO-sized 640x480 JPEGs (quality 90, 4:2:0) drawn by the synthetic
 * generator; they are also written to DIR so bench_pipeline_ref.py can time PIL and OpenCV
 * on the very same files.
 *
 *   bench_pipeline DIR [N=64] [REPEATS=5]
 * One thread; prints the best of REPEATS (the machine is shared).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <turbojpeg.h>

#include "worker/data/image_decode.h"
#include "worker/data/synth.h"
#include "worker/data/transform.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [N] [REPEATS]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    int n = argc > 2 ? atoi(argv[2]) : 64, reps = argc > 3 ? atoi(argv[3]) : 5;
    if (n < 1 || reps < 1) return 2;
    mkdir(dir, 0777);
    enum { IW = 640, IH = 480 };
    kd_synth_canvas c = {IW, IH, malloc(IW * IH * 3), malloc(IW * IH * sizeof(int16_t))};
    tjhandle tj = tjInitCompress();
    uint8_t **jpg = calloc((size_t)n, sizeof *jpg);
    unsigned long *jn = calloc((size_t)n, sizeof *jn);
    double total_bytes = 0;
    for (int i = 0; i < n; i++) {
        kd_rng r;
        kd_rng_seed(&r, 1234, (uint64_t)i);
        kd_synth_background(&c, &r);
        for (int k = 0; k < 12; k++) {
            kd_synth_shape s = {.shape = kd_rng_int(&r, 0, 9), .texture = kd_rng_int(&r, 0, 4),
                                .cx = kd_rng_uniform(&r) * IW, .cy = kd_rng_uniform(&r) * IH,
                                .rx = 10 + 120 * kd_rng_uniform(&r), .ry = 10 + 120 * kd_rng_uniform(&r),
                                .angle = kd_rng_uniform(&r), .rgb = {200, 40, 40}, .rgb2 = {240, 240, 240},
                                .tex_scale = 8, .tex_phase = 0};
            s.rgb[1] = (uint8_t)kd_rng_int(&r, 0, 255);
            kd_synth_draw_shape(&c, &s, -1);
            kd_synth_draw_stroke(&c, &r);
        }
        kd_synth_noise(&c, &r);
        tjCompress2(tj, c.rgb, IW, 0, IH, TJPF_RGB, &jpg[i], &jn[i], TJSAMP_420, 90, 0);
        total_bytes += jn[i];
        char p[4096];
        snprintf(p, sizeof p, "%s/%03d.jpg", dir, i);
        FILE *f = fopen(p, "wb");
        if (!f || fwrite(jpg[i], 1, jn[i], f) != jn[i]) {
            perror(p);
            return 1;
        }
        fclose(f);
    }
    kd_image_decoder d;
    kd_err e;
    kd_image_decoder_init(&d, &e);
    kd_image im = {0};
    kd_transform_ws ws = {0};
    const float mean[3] = {123.675f, 116.28f, 103.53f}, std[3] = {58.395f, 57.12f, 57.375f};
    int32_t nw, nh;
    double sw, sh;
    kd_resize_shape(IW, IH, 1333, 800, &nw, &nh, &sw, &sh);
    size_t W = (size_t)kd_pad_to(nw, 32), H = (size_t)kd_pad_to(nh, 32);
    float *out = calloc(3 * W * H, sizeof(float));
    double best_all = 1e30, best_dec = 1e30, best_tr = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s(), dec = 0;
        for (int i = 0; i < n; i++) {
            double a = now_s();
            if (kd_image_decode(&d, jpg[i], jn[i], "bench", &im, &e)) {
                fprintf(stderr, "%s\n", e.msg);
                return 1;
            }
            dec += now_s() - a;
            kd_resize_shape(im.w, im.h, 1333, 800, &nw, &nh, &sw, &sh);
            kd_transform_image(&ws, im.bgr, im.w, im.h, nw, nh, i & 1, 1, mean, std, out, W, W * H);
        }
        double t = now_s() - t0;
        if (t < best_all) best_all = t;
        if (dec < best_dec) best_dec = dec;
        if (t - dec < best_tr) best_tr = t - dec;
    }
    printf("C (libjpeg-turbo + fused resize/flip/normalise), %d images 640x480 (%.0f KB avg) -> %dx%d, best of %d:\n", n,
           total_bytes / n / 1024, nw, nh, reps);
    printf("  full pipeline %.1f img/s per core (%.2f ms/img); decode alone %.1f img/s; "
           "resize+flip+normalise alone %.1f img/s\n",
           n / best_all, 1e3 * best_all / n, n / best_dec, n / best_tr);
    for (int i = 0; i < n; i++) tjFree(jpg[i]);
    free(jpg), free(jn), free(out), free(c.rgb), free(c.owner);
    kd_image_free(&im);
    kd_image_decoder_free(&d);
    kd_transform_ws_free(&ws);
    tjDestroy(tj);
    return 0;
}
