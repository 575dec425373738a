/* test_transform.c — resize shape, box scaling/clipping/flip against the independent
 * Python reference (tests/unit/data/ref_transform.py -> fixtures/data/transform_ref.txt),
 * coco.md's table, bilinear pixels against a double-precision half-pixel reference
 * (within 1 LSB), flip = mirror of the unflipped output, normalisation and channel order.
 * Usage: test_transform FIXTURE_DIR */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_test.h"
#include "worker/data/transform.h"

static const char *g_dir;

static void test_table(void)
{
    /* coco.md §3.4 */
    static const int cases[][4] = {{640, 480, 1067, 800}, {640, 427, 1199, 800}, {480, 640, 800, 1067},
                                   {640, 360, 1333, 750}, {640, 640, 800, 800}};
    static const int padded[][2] = {{1088, 800}, {1216, 800}, {800, 1088}, {1344, 768}, {800, 800}};
    for (int i = 0; i < 5; i++) {
        int32_t nw, nh;
        double ws, hs;
        kd_resize_shape(cases[i][0], cases[i][1], 1333, 800, &nw, &nh, &ws, &hs);
        KD_EXPECT_MSG(nw == cases[i][2] && nh == cases[i][3], "%dx%d -> %dx%d", cases[i][0], cases[i][1], nw, nh);
        KD_EXPECT(kd_pad_to(nw, 32) == padded[i][0] && kd_pad_to(nh, 32) == padded[i][1]);
        KD_EXPECT(ws == (double)nw / cases[i][0] && hs == (double)nh / cases[i][1]);
    }
}

static void test_reference_file(void)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/transform_ref.txt", g_dir);
    FILE *fp = fopen(p, "r");
    KD_REQUIRE(fp != NULL);
    char line[1024];
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, fp)) {
        if (line[0] == '#') continue;
        int w, h, sw, sh, enw, enh, flip;
        double ews, ehs, in[4], ex[4];
        if (sscanf(line, "%d %d %d %d %d %d %lf %lf %d %lf %lf %lf %lf %lf %lf %lf %lf", &w, &h, &sw, &sh, &enw, &enh,
                   &ews, &ehs, &flip, &in[0], &in[1], &in[2], &in[3], &ex[0], &ex[1], &ex[2], &ex[3]) != 17) {
            bad++;
            continue;
        }
        int32_t nw, nh;
        double ws, hs;
        kd_resize_shape(w, h, sw, sh, &nw, &nh, &ws, &hs);
        KD_EXPECT_MSG(nw == enw && nh == enh && ws == ews && hs == ehs, "%dx%d scale %dx%d: %dx%d %.17g %.17g", w, h,
                      sw, sh, nw, nh, ws, hs);
        float box[4] = {(float)in[0], (float)in[1], (float)in[2], (float)in[3]}, out[4];
        kd_transform_boxes(box, 1, ws, hs, nw, nh, flip, out);
        for (int k = 0; k < 4; k++)
            KD_EXPECT_MSG(out[k] == (float)ex[k], "%dx%d flip %d coord %d: %.9g vs %.9g", w, h, flip, k, out[k], ex[k]);
        n++;
    }
    fclose(fp);
    KD_EXPECT(bad == 0 && n > 500);
}

/* double-precision half-pixel bilinear on one channel, clamped at the borders */
static double ref_bilinear(const uint8_t *src, int w, int h, int c, int nw, int nh, int x, int y)
{
    double fx = (x + 0.5) * ((double)w / nw) - 0.5, fy = (y + 0.5) * ((double)h / nh) - 0.5;
    if (fx < 0) fx = 0;
    if (fy < 0) fy = 0;
    int x0 = (int)fx, y0 = (int)fy;
    if (x0 >= w - 1) x0 = w - 1, fx = x0;
    if (y0 >= h - 1) y0 = h - 1, fy = y0;
    int x1 = x0 + 1 < w ? x0 + 1 : x0, y1 = y0 + 1 < h ? y0 + 1 : y0;
    double ax = fx - x0, ay = fy - y0;
    double a = src[(y0 * w + x0) * 3 + c] * (1 - ax) + src[(y0 * w + x1) * 3 + c] * ax;
    double b = src[(y1 * w + x0) * 3 + c] * (1 - ax) + src[(y1 * w + x1) * 3 + c] * ax;
    return a * (1 - ay) + b * ay;
}

static void test_pixels(void)
{
    static const int sizes[][4] = {{64, 48, 107, 80}, {37, 91, 20, 50}, {100, 100, 100, 100}, {5, 3, 17, 11},
                                   {200, 150, 61, 47}};
    kd_transform_ws ws = {0};
    uint32_t st = 12345;
    for (int t = 0; t < 5; t++) {
        int w = sizes[t][0], h = sizes[t][1], nw = sizes[t][2], nh = sizes[t][3];
        uint8_t *src = malloc((size_t)w * h * 3), *dst = malloc((size_t)nw * nh * 3);
        for (int i = 0; i < w * h * 3; i++) {
            st = st * 1664525u + 1013904223u;
            /* smooth-ish content plus noise */
            src[i] = (uint8_t)((i / 3 % w) * 2 + (i / 3 / w) + (st >> 28));
        }
        kd_resize_u8(&ws, src, w, h, dst, nw, nh);
        double worst = 0;
        for (int y = 0; y < nh; y++)
            for (int x = 0; x < nw; x++)
                for (int c = 0; c < 3; c++) {
                    double r = ref_bilinear(src, w, h, c, nw, nh, x, y);
                    double d = fabs(dst[(y * nw + x) * 3 + c] - r);
                    if (d > worst) worst = d;
                }
        KD_EXPECT_MSG(worst <= 1.0, "%dx%d -> %dx%d: worst %.3f", w, h, nw, nh, worst);
        if (w == nw && h == nh) KD_EXPECT(!memcmp(src, dst, (size_t)w * h * 3)); /* identity is exact */
        /* fused transform: RGB planes, normalised, flip mirrors */
        float mean[3] = {123.675f, 116.28f, 103.53f}, std[3] = {58.395f, 57.12f, 57.375f};
        size_t stride = (size_t)kd_pad_to(nw, 32), plane = stride * (size_t)kd_pad_to(nh, 32);
        float *a = calloc(plane * 3, sizeof(float)), *b = calloc(plane * 3, sizeof(float));
        kd_transform_image(&ws, src, w, h, nw, nh, 0, 1, mean, std, a, stride, plane);
        kd_transform_image(&ws, src, w, h, nw, nh, 1, 1, mean, std, b, stride, plane);
        int bad = 0;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < nh; y++)
                for (int x = 0; x < nw; x++) {
                    float v = a[c * plane + y * stride + x];
                    float want = ((float)dst[(y * nw + x) * 3 + (2 - c)] - mean[c]) / std[c];
                    bad += v != want;
                    bad += b[c * plane + y * stride + (nw - 1 - x)] != v;
                }
        for (int c = 0; c < 3; c++) /* padding untouched */
            for (size_t y = 0; y < (size_t)kd_pad_to(nh, 32); y++)
                for (size_t x = 0; x < stride; x++)
                    if (x >= (size_t)nw || y >= (size_t)nh) bad += a[c * plane + y * stride + x] != 0.0f;
        KD_EXPECT_MSG(bad == 0, "%d mismatches in the fused transform", bad);
        free(a), free(b), free(src), free(dst);
    }
    kd_transform_ws_free(&ws);
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    g_dir = argv[1];
    KD_TEST_RUN(test_table);
    KD_TEST_RUN(test_reference_file);
    KD_TEST_RUN(test_pixels);
    return kd_test_summary();
}
