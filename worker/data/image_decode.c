/* image_decode.c — JPEG/PNG to BGR uint8 with EXIF orientation (see image_decode.h).
 *
 * EXIF: the APP1 "Exif\0\0" segment before the first SOS is parsed as TIFF (either byte
 * order); only IFD0's Orientation tag (0x0112) is read. Every offset is bounds-checked:
 * a damaged EXIF block means orientation 1, never a crash.
 */
#include "worker/data/image_decode.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

static int grow(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap) return 0;
    size_t nc = need + need / 4;
    uint8_t *q = realloc(*p, nc);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

kd_status kd_image_decoder_init(kd_image_decoder *d, kd_err *err)
{
    memset(d, 0, sizeof *d);
    d->tj = tjInitDecompress();
    if (!d->tj) return kd_errf(err, KD_ENOMEM, "cannot create a TurboJPEG decompressor: %s", tjGetErrorStr2(NULL));
    return KD_OK;
}

void kd_image_decoder_free(kd_image_decoder *d)
{
    if (d->tj) tjDestroy(d->tj);
    free(d->tmp);
    free(d->file);
    memset(d, 0, sizeof *d);
}

void kd_image_free(kd_image *im)
{
    free(im->bgr);
    memset(im, 0, sizeof *im);
}

/* ---- EXIF --------------------------------------------------------------------------- */

static unsigned rd16(const uint8_t *p, int le) { return le ? p[0] | p[1] << 8 : p[0] << 8 | p[1]; }
static uint32_t rd32(const uint8_t *p, int le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int tiff_orientation(const uint8_t *t, size_t n)
{
    if (n < 8) return 1;
    int le;
    if (t[0] == 'I' && t[1] == 'I') le = 1;
    else if (t[0] == 'M' && t[1] == 'M') le = 0;
    else return 1;
    if (rd16(t + 2, le) != 42) return 1;
    uint32_t ifd = rd32(t + 4, le);
    if (ifd > n || n - ifd < 2) return 1;
    unsigned cnt = rd16(t + ifd, le);
    for (unsigned i = 0; i < cnt; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        if (e + 12 > n) return 1;
        if (rd16(t + e, le) == 0x0112) {
            unsigned type = rd16(t + e + 2, le);
            unsigned v = type == 3 ? rd16(t + e + 8, le) : type == 4 ? rd32(t + e + 8, le) : 1;
            return v >= 1 && v <= 8 ? (int)v : 1;
        }
    }
    return 1;
}

int kd_jpeg_exif_orientation(const uint8_t *b, size_t n)
{
    if (n < 4 || b[0] != 0xFF || b[1] != 0xD8) return 1;
    size_t p = 2;
    while (p + 4 <= n) {
        if (b[p] != 0xFF) return 1;
        uint8_t m = b[p + 1];
        if (m == 0xFF) { p++; continue; }           /* fill byte */
        if (m == 0xDA || m == 0xD9) return 1;        /* start of scan / end of image */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { p += 2; continue; } /* no length */
        size_t len = (size_t)b[p + 2] << 8 | b[p + 3];
        if (len < 2 || p + 2 + len > n) return 1;
        if (m == 0xE1 && len >= 8 && !memcmp(b + p + 4, "Exif\0\0", 6))
            return tiff_orientation(b + p + 10, len - 8);
        p += 2 + len;
    }
    return 1;
}

void kd_image_orient(const uint8_t *src, int w, int h, int o, uint8_t *dst)
{
    int swap = o >= 5 && o <= 8;
    int W = swap ? h : w, H = swap ? w : h;
    for (int y = 0; y < H; y++) {
        uint8_t *drow = dst + (size_t)y * W * 3;
        for (int x = 0; x < W; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = w - 1 - x, sy = y; break;
            case 3: sx = w - 1 - x, sy = h - 1 - y; break;
            case 4: sx = x, sy = h - 1 - y; break;
            case 5: sx = y, sy = x; break;
            case 6: sx = y, sy = h - 1 - x; break;
            case 7: sx = w - 1 - y, sy = h - 1 - x; break;
            case 8: sx = w - 1 - y, sy = x; break;
            default: sx = x, sy = y; break;
            }
            const uint8_t *s = src + ((size_t)sy * w + sx) * 3;
            drow[3 * x] = s[0], drow[3 * x + 1] = s[1], drow[3 * x + 2] = s[2];
        }
    }
}

/* ---- JPEG --------------------------------------------------------------------------- */

/* After a failed call a TurboJPEG handle can keep stale state (seen with libjpeg-turbo
 * 2.1: the next header read "succeeds" with garbage sizes), so failures get a new handle. */
static kd_status jpeg_fail(kd_image_decoder *d, kd_status st)
{
    tjDestroy(d->tj);
    d->tj = tjInitDecompress();
    KD_CHECK(d->tj != NULL, "cannot re-create a TurboJPEG decompressor");
    return st;
}

static kd_status decode_jpeg(kd_image_decoder *d, const uint8_t *buf, size_t n, const char *name, kd_image *im,
                             kd_err *err)
{
    int w, h, subsamp, cs;
    if (n > 0xFFFFFFFFul) return kd_errf(err, KD_EUNSUPPORTED, "%s: JPEG too large", name);
    if (tjDecompressHeader3(d->tj, buf, (unsigned long)n, &w, &h, &subsamp, &cs))
        return jpeg_fail(d, kd_errf(err, KD_ECORRUPT, "%s: corrupt JPEG header: %s", name, tjGetErrorStr2(d->tj)));
    if (w <= 0 || h <= 0 || (int64_t)w * h > (int64_t)1 << 28)
        return kd_errf(err, KD_EUNSUPPORTED, "%s: JPEG size %dx%d not supported", name, w, h);
    int orient = kd_jpeg_exif_orientation(buf, n);
    size_t need = (size_t)w * h * 3;
    uint8_t *target;
    if (orient == 1) {
        if (grow(&im->bgr, &im->cap_bytes, need)) return kd_errf(err, KD_ENOMEM, "%s: out of memory", name);
        target = im->bgr;
    } else {
        if (grow(&d->tmp, &d->tmp_cap_bytes, need)) return kd_errf(err, KD_ENOMEM, "%s: out of memory", name);
        target = d->tmp;
    }
    /* TJFLAG_STOPONWARNING: a truncated file is an error, not a grey lower half */
    if (tjDecompress2(d->tj, buf, (unsigned long)n, target, w, 0, h, TJPF_BGR, TJFLAG_STOPONWARNING))
        return jpeg_fail(d, kd_errf(err, KD_ECORRUPT, "%s: corrupt or truncated JPEG: %s", name, tjGetErrorStr2(d->tj)));
    if (orient != 1) {
        if (grow(&im->bgr, &im->cap_bytes, need)) return kd_errf(err, KD_ENOMEM, "%s: out of memory", name);
        kd_image_orient(d->tmp, w, h, orient, im->bgr);
        if (orient >= 5) { int t = w; w = h; h = t; }
    }
    im->w = w;
    im->h = h;
    return KD_OK;
}

/* ---- PNG ---------------------------------------------------------------------------- */

static kd_status decode_png(kd_image_decoder *d, const uint8_t *buf, size_t n, const char *name, kd_image *im,
                            kd_err *err)
{
    png_image p;
    memset(&p, 0, sizeof p);
    p.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&p, buf, n))
        return kd_errf(err, KD_ECORRUPT, "%s: corrupt PNG: %s", name, p.message);
    if (p.width == 0 || p.height == 0 || (uint64_t)p.width * p.height > (uint64_t)1 << 28) {
        png_image_free(&p);
        return kd_errf(err, KD_EUNSUPPORTED, "%s: PNG size %ux%u not supported", name, p.width, p.height);
    }
    p.format = PNG_FORMAT_BGRA; /* alpha is dropped below, as IMREAD_COLOR does */
    size_t px = (size_t)p.width * p.height;
    if (grow(&d->tmp, &d->tmp_cap_bytes, px * 4) || grow(&im->bgr, &im->cap_bytes, px * 3)) {
        png_image_free(&p);
        return kd_errf(err, KD_ENOMEM, "%s: out of memory", name);
    }
    if (!png_image_finish_read(&p, NULL, d->tmp, 0, NULL)) {
        kd_errf(err, KD_ECORRUPT, "%s: corrupt or truncated PNG: %s", name, p.message);
        png_image_free(&p);
        return KD_ECORRUPT;
    }
    for (size_t i = 0; i < px; i++) {
        im->bgr[3 * i] = d->tmp[4 * i];
        im->bgr[3 * i + 1] = d->tmp[4 * i + 1];
        im->bgr[3 * i + 2] = d->tmp[4 * i + 2];
    }
    im->w = (int32_t)p.width;
    im->h = (int32_t)p.height;
    png_image_free(&p);
    return KD_OK;
}

kd_status kd_image_decode(kd_image_decoder *d, const uint8_t *buf, size_t n, const char *name, kd_image *im,
                          kd_err *err)
{
    if (n >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) return decode_jpeg(d, buf, n, name, im, err);
    if (n >= 8 && !memcmp(buf, "\x89PNG\r\n\x1a\n", 8)) return decode_png(d, buf, n, name, im, err);
    return kd_errf(err, KD_EUNSUPPORTED, "%s: neither a JPEG nor a PNG file (%zu bytes)", name, n);
}

kd_status kd_image_read(kd_image_decoder *d, const char *path, kd_image *im, kd_err *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return kd_errf(err, errno == ENOENT ? KD_ENOTFOUND : KD_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return kd_errf(err, KD_EIO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    if (grow(&d->file, &d->file_cap_bytes, n + 1)) {
        fclose(fp);
        return kd_errf(err, KD_ENOMEM, "%s: out of memory", path);
    }
    size_t got = fread(d->file, 1, n, fp);
    fclose(fp);
    if (got != n) return kd_errf(err, KD_EIO, "%s: read failed", path);
    return kd_image_decode(d, d->file, n, path, im, err);
}
