/* test_image_decode.c — PNG (RGB, gray, RGBA: exact), JPEG with every EXIF orientation
 * (as OpenCV applies them), damaged EXIF blocks, truncated and corrupt files (errors name
 * the file; nothing crashes). Test images are made in memory with libpng and TurboJPEG. */
#include <png.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "kd_test.h"
#include "worker/data/image_decode.h"

enum { W = 37, H = 23 };

static void pattern(uint8_t *rgb, int w, int h)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = rgb + 3 * (y * w + x);
            p[0] = (uint8_t)(x * 6), p[1] = (uint8_t)(y * 10), p[2] = (uint8_t)(255 - x * 3 - y * 2);
        }
}

static void test_png(void)
{
    kd_image_decoder d;
    kd_err e = {0};
    KD_REQUIRE(kd_image_decoder_init(&d, &e) == KD_OK);
    uint8_t rgba[W * H * 4], rgb[W * H * 3];
    pattern(rgb, W, H);
    for (int i = 0; i < W * H; i++) {
        memcpy(rgba + 4 * i, rgb + 3 * i, 3);
        rgba[4 * i + 3] = (uint8_t)(i * 7); /* alpha must be dropped, not composited */
    }
    static const int fmts[] = {PNG_FORMAT_RGB, PNG_FORMAT_RGBA, PNG_FORMAT_GRAY};
    for (int f = 0; f < 3; f++) {
        png_image p;
        memset(&p, 0, sizeof p);
        p.version = PNG_IMAGE_VERSION;
        p.width = W, p.height = H, p.format = (png_uint_32)fmts[f];
        uint8_t gray[W * H];
        for (int i = 0; i < W * H; i++) gray[i] = rgb[3 * i + 1];
        const void *src = f == 0 ? (const void *)rgb : f == 1 ? (const void *)rgba : (const void *)gray;
        png_alloc_size_t sz = 0;
        KD_REQUIRE(png_image_write_to_memory(&p, NULL, &sz, 0, src, 0, NULL));
        uint8_t *mem = malloc(sz);
        KD_REQUIRE(png_image_write_to_memory(&p, mem, &sz, 0, src, 0, NULL));
        kd_image im = {0};
        KD_REQUIRE(kd_image_decode(&d, mem, sz, "t.png", &im, &e) == KD_OK);
        KD_EXPECT(im.w == W && im.h == H);
        int bad = 0;
        for (int i = 0; i < W * H; i++)
            for (int c = 0; c < 3; c++) {
                uint8_t want = f == 2 ? gray[i] : rgb[3 * i + (2 - c)]; /* BGR */
                bad += im.bgr[3 * i + c] != want;
            }
        KD_EXPECT_MSG(bad == 0, "format %d: %d wrong values", f, bad);
        /* truncated PNG */
        KD_EXPECT(kd_image_decode(&d, mem, sz / 2, "half.png", &im, &e) == KD_ECORRUPT);
        KD_EXPECT_STR_CONTAINS(e.msg, "half.png");
        kd_image_free(&im);
        free(mem);
    }
    kd_image_decoder_free(&d);
}

static uint8_t *make_jpeg(unsigned long *n)
{
    uint8_t rgb[W * H * 3];
    pattern(rgb, W, H);
    tjhandle tj = tjInitCompress();
    uint8_t *buf = NULL;
    tjCompress2(tj, rgb, W, 0, H, TJPF_RGB, &buf, n, TJSAMP_444, 100, 0);
    tjDestroy(tj);
    return buf;
}

/* Insert an APP1 Exif segment with the given orientation right after SOI. */
static uint8_t *with_exif(const uint8_t *jpg, unsigned long n, int orient, int big_endian, size_t *out_n)
{
    uint8_t seg[2 + 2 + 6 + 8 + 2 + 12 + 4];
    size_t k = 0;
    seg[k++] = 0xFF, seg[k++] = 0xE1;
    size_t len = sizeof seg - 2;
    seg[k++] = (uint8_t)(len >> 8), seg[k++] = (uint8_t)len;
    memcpy(seg + k, "Exif\0\0", 6), k += 6;
    if (big_endian) {
        const uint8_t t[] = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, (uint8_t)orient, 0, 0, 0, 0, 0, 0};
        memcpy(seg + k, t, sizeof t), k += sizeof t;
    } else {
        const uint8_t t[] = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, (uint8_t)orient, 0, 0, 0, 0, 0, 0, 0};
        memcpy(seg + k, t, sizeof t), k += sizeof t;
    }
    uint8_t *o = malloc(n + k);
    memcpy(o, jpg, 2);
    memcpy(o + 2, seg, k);
    memcpy(o + 2 + k, jpg + 2, n - 2);
    *out_n = n + k;
    return o;
}

static void test_jpeg_exif(void)
{
    kd_image_decoder d;
    kd_err e = {0};
    KD_REQUIRE(kd_image_decoder_init(&d, &e) == KD_OK);
    unsigned long n;
    uint8_t *jpg = make_jpeg(&n);
    kd_image plain = {0}, im = {0};
    KD_REQUIRE(kd_image_decode(&d, jpg, n, "p.jpg", &plain, &e) == KD_OK);
    KD_EXPECT(plain.w == W && plain.h == H);
    KD_EXPECT(kd_jpeg_exif_orientation(jpg, n) == 1);
    uint8_t *want = malloc(W * H * 3);
    for (int o = 1; o <= 8; o++)
        for (int be = 0; be <= 1; be++) {
            size_t m;
            uint8_t *x = with_exif(jpg, n, o, be, &m);
            KD_EXPECT(kd_jpeg_exif_orientation(x, m) == o);
            KD_REQUIRE(kd_image_decode(&d, x, m, "x.jpg", &im, &e) == KD_OK);
            int sw = o >= 5;
            KD_EXPECT(im.w == (sw ? H : W) && im.h == (sw ? W : H));
            kd_image_orient(plain.bgr, W, H, o, want);
            KD_EXPECT_MSG(!memcmp(want, im.bgr, W * H * 3), "orientation %d", o);
            free(x);
        }
    /* orientation 6 = rotate 90 degrees clockwise: source top-left lands top-right */
    uint8_t rot[W * H * 3];
    kd_image_orient(plain.bgr, W, H, 6, rot);
    KD_EXPECT(!memcmp(rot + 3 * (H - 1), plain.bgr, 3));
    /* orientation 8 = counter-clockwise: source top-left lands bottom-left */
    kd_image_orient(plain.bgr, W, H, 8, rot);
    KD_EXPECT(!memcmp(rot + 3 * (size_t)((W - 1) * H), plain.bgr, 3));
    /* damaged EXIF: orientation 1, no crash */
    size_t m;
    uint8_t *x = with_exif(jpg, n, 6, 0, &m);
    x[2 + 4 + 6 + 4] = 0xFF; /* IFD offset far outside */
    KD_EXPECT(kd_jpeg_exif_orientation(x, m) == 1);
    KD_EXPECT(kd_jpeg_exif_orientation(x, 30) == 1);
    for (size_t cut = 0; cut < 60; cut++) (void)kd_jpeg_exif_orientation(x, cut);
    free(x);
    /* truncated and corrupt JPEGs */
    KD_EXPECT(kd_image_decode(&d, jpg, n * 2 / 3, "cut.jpg", &im, &e) == KD_ECORRUPT);
    KD_EXPECT_STR_CONTAINS(e.msg, "cut.jpg");
    uint8_t *bad = malloc(n);
    memcpy(bad, jpg, n);
    for (unsigned long i = 200; i < n; i += 7) bad[i] = (uint8_t)(bad[i] * 31 + 7);
    kd_status st = kd_image_decode(&d, bad, n, "noise.jpg", &im, &e); /* may or may not decode: must not crash */
    KD_EXPECT(st == KD_OK || st == KD_ECORRUPT);
    KD_EXPECT(kd_image_decode(&d, (const uint8_t *)"GIF89a......", 12, "a.gif", &im, &e) == KD_EUNSUPPORTED);
    KD_EXPECT_STR_CONTAINS(e.msg, "a.gif");
    KD_EXPECT(kd_image_decode(&d, jpg, 2, "tiny.jpg", &im, &e) != KD_OK);
    /* header-truncated file, then a good one with the same decoder: the handle must recover */
    KD_EXPECT(kd_image_decode(&d, jpg, 300, "head.jpg", &im, &e) == KD_ECORRUPT);
    KD_EXPECT(kd_image_decode(&d, jpg, n, "p.jpg", &im, &e) == KD_OK && im.w == W && im.h == H);
    KD_EXPECT(!memcmp(im.bgr, plain.bgr, W * H * 3));
    KD_EXPECT(kd_image_read(&d, "no/such/image.jpg", &im, &e) == KD_ENOTFOUND);
    KD_EXPECT_STR_CONTAINS(e.msg, "no/such/image.jpg");
    free(bad), free(want);
    tjFree(jpg);
    kd_image_free(&plain), kd_image_free(&im);
    kd_image_decoder_free(&d);
}

int main(void)
{
    KD_TEST_RUN(test_png);
    KD_TEST_RUN(test_jpeg_exif);
    return kd_test_summary();
}
