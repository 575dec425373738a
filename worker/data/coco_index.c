/* coco_index.c — MMDetection's COCO filtering into a packed index; serialization and the
 * zstd cache (see coco_index.h).
 *
 * Blob layout (host byte order; the cache is not meant to move between architectures):
 *   blob_hdr | images[n_images] | boxes[n_boxes*4] f32 | labels[n_boxes] i32 |
 *   cat_ids[K] i32 | cat_name_offs[K] u32 | ignore[n_boxes] u8 | strings
 * every section starting on an 8-byte boundary. The layout is a pure function of the
 * counts, so kd_coco_index_from_bytes recomputes it and rejects any buffer that disagrees.
 */
#include "worker/data/coco_index.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "proto/log.h"

#define BLOB_MAGIC "KDCOIDX1"
#define BLOB_VERSION 1u
#define CACHE_MAGIC "KDIDXZS1"
#define CACHE_VERSION 1u

typedef struct blob_hdr {
    char magic[8];
    uint32_t version, n_images, n_boxes, n_classes, n_images_raw, reserved;
    uint64_t strings_bytes;
    uint64_t off_images, off_boxes, off_labels, off_cat_ids, off_cat_names, off_ignore, off_strings;
    uint64_t total_bytes;
} blob_hdr;

static uint64_t align8(uint64_t x) { return (x + 7) & ~(uint64_t)7; }

static void blob_layout(blob_hdr *h)
{
    uint64_t o = align8(sizeof(blob_hdr));
    h->off_images = o;
    o = align8(o + (uint64_t)h->n_images * sizeof(kd_coco_index_image));
    h->off_boxes = o;
    o = align8(o + (uint64_t)h->n_boxes * 4 * sizeof(float));
    h->off_labels = o;
    o = align8(o + (uint64_t)h->n_boxes * sizeof(int32_t));
    h->off_cat_ids = o;
    o = align8(o + (uint64_t)h->n_classes * sizeof(int32_t));
    h->off_cat_names = o;
    o = align8(o + (uint64_t)h->n_classes * sizeof(uint32_t));
    h->off_ignore = o;
    o = align8(o + h->n_boxes);
    h->off_strings = o;
    h->total_bytes = align8(o + h->strings_bytes);
}

static void index_point(kd_coco_index *x, void *blob, size_t bytes)
{
    const blob_hdr *h = blob;
    char *b = blob;
    x->n_images = h->n_images;
    x->n_boxes = h->n_boxes;
    x->n_classes = h->n_classes;
    x->n_images_raw = h->n_images_raw;
    x->images = (const kd_coco_index_image *)(b + h->off_images);
    x->boxes = (const float *)(b + h->off_boxes);
    x->labels = (const int32_t *)(b + h->off_labels);
    x->cat_ids = (const int32_t *)(b + h->off_cat_ids);
    x->cat_name_offs = (const uint32_t *)(b + h->off_cat_names);
    x->ignore = (const uint8_t *)(b + h->off_ignore);
    x->strings = b + h->off_strings;
    x->blob = blob;
    x->blob_bytes = bytes;
}

void kd_coco_index_opts_defaults(kd_coco_index_opts *o)
{
    o->filter_empty_gt = 1;
    o->min_size = 32;
    o->test_mode = 0;
}

void kd_coco_index_opts_from_cfg(const kd_data_cfg *c, kd_coco_index_opts *o)
{
    o->filter_empty_gt = c->filter_empty_gt;
    o->min_size = c->min_size;
    o->test_mode = c->test_mode;
}

void kd_coco_index_free(kd_coco_index *x)
{
    if (!x) return;
    free(x->blob);
    memset(x, 0, sizeof *x);
}

typedef struct id_pos { int64_t id; uint32_t pos; } id_pos;

static int cmp_id_pos(const void *a, const void *b)
{
    const id_pos *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Position of id in the sorted table t, or -1. */
static int64_t rank_of(const id_pos *t, size_t n, int64_t id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && t[lo].id == id ? (int64_t)lo : -1;
}

/* MMDetection's parse_data_info test for one annotation (2 and 3 of coco.md §1.5). */
static int ann_usable(const kd_coco_ann *a, int32_t W, int32_t H)
{
    double x = a->bbox[0], y = a->bbox[1], w = a->bbox[2], h = a->bbox[3];
    double iw = fmax(0.0, fmin(x + w, (double)W) - fmax(x, 0.0));
    double ih = fmax(0.0, fmin(y + h, (double)H) - fmax(y, 0.0));
    if (iw * ih == 0.0) return 0;
    if (a->area <= 0.0 || w < 1.0 || h < 1.0) return 0;
    return 1;
}

kd_status kd_coco_index_build(const kd_coco_file *f, const kd_coco_index_opts *o, kd_coco_index *out, kd_err *err)
{
    memset(out, 0, sizeof *out);
    if (f->n_images > UINT32_MAX / 2 || f->n_anns > UINT32_MAX / 2)
        return kd_errf(err, KD_EUNSUPPORTED, "COCO index: too many images or annotations");
    size_t ni = f->n_images, na = f->n_anns, nc = f->n_cats;
    id_pos *imgs = malloc((ni + 1) * sizeof *imgs);
    id_pos *cats = malloc((nc + 1) * sizeof *cats);
    uint32_t *count = calloc(ni + 1, sizeof *count);
    uint32_t *start = malloc((ni + 1) * sizeof *start);
    uint32_t *order = malloc((na + 1) * sizeof *order);
    uint32_t *ann_img = malloc((na + 1) * sizeof *ann_img);
    void *blob = NULL;
    kd_status st = KD_OK;
    if (!imgs || !cats || !count || !start || !order || !ann_img) {
        st = kd_errf(err, KD_ENOMEM, "COCO index: out of memory");
        goto done;
    }
    for (size_t i = 0; i < ni; i++) imgs[i] = (id_pos){f->images[i].id, (uint32_t)i};
    qsort(imgs, ni, sizeof *imgs, cmp_id_pos);
    for (size_t i = 0; i < nc; i++) cats[i] = (id_pos){f->cats[i].id, (uint32_t)i};
    qsort(cats, nc, sizeof *cats, cmp_id_pos); /* label = rank of the id */
    /* group annotations by image, keeping JSON order inside each image */
    for (size_t a = 0; a < na; a++) {
        int64_t p = rank_of(imgs, ni, f->anns[a].image_id);
        if (p < 0) {
            st = kd_errf(err, KD_EINVAL, "COCO index: annotations[%zu] (id %lld): image_id %lld is not in images", a,
                         (long long)f->anns[a].id, (long long)f->anns[a].image_id);
            goto done;
        }
        p = imgs[p].pos;
        ann_img[a] = (uint32_t)p;
        count[p]++;
    }
    uint32_t acc = 0;
    for (size_t i = 0; i < ni; i++) { start[i] = acc; acc += count[i]; }
    for (size_t a = 0; a < na; a++) order[start[ann_img[a]]++] = (uint32_t)a;
    for (size_t i = 0; i < ni; i++) start[i] -= count[i];

    /* pass 1: counts */
    blob_hdr h = {0};
    memcpy(h.magic, BLOB_MAGIC, 8);
    h.version = BLOB_VERSION;
    h.n_classes = (uint32_t)nc;
    h.n_images_raw = (uint32_t)ni;
    for (size_t i = 0; i < ni; i++) {
        const kd_coco_image *im = &f->images[i];
        if (!o->test_mode) {
            if (o->filter_empty_gt && count[i] == 0) continue;
            if ((im->width < im->height ? im->width : im->height) < o->min_size) continue;
        }
        h.n_images++;
        h.strings_bytes += strlen(kd_coco_str(f, im->file_name_off)) + 1;
        for (uint32_t k = 0; k < count[i]; k++)
            h.n_boxes += (uint32_t)ann_usable(&f->anns[order[start[i] + k]], im->width, im->height);
    }
    for (size_t c = 0; c < nc; c++) h.strings_bytes += strlen(kd_coco_str(f, f->cats[c].name_off)) + 1;
    blob_layout(&h);
    blob = calloc(1, h.total_bytes);
    if (!blob) {
        st = kd_errf(err, KD_ENOMEM, "COCO index: cannot allocate %llu bytes", (unsigned long long)h.total_bytes);
        goto done;
    }
    memcpy(blob, &h, sizeof h);
    char *b = blob;
    kd_coco_index_image *oi = (kd_coco_index_image *)(b + h.off_images);
    float *ob = (float *)(b + h.off_boxes);
    int32_t *ol = (int32_t *)(b + h.off_labels);
    uint8_t *og = (uint8_t *)(b + h.off_ignore);
    int32_t *oc = (int32_t *)(b + h.off_cat_ids);
    uint32_t *on = (uint32_t *)(b + h.off_cat_names);
    char *os = b + h.off_strings;
    uint64_t so = 0;
    for (size_t c = 0; c < nc; c++) {
        const char *name = kd_coco_str(f, f->cats[cats[c].pos].name_off);
        size_t l = strlen(name) + 1;
        oc[c] = f->cats[cats[c].pos].id;
        on[c] = (uint32_t)so;
        memcpy(os + so, name, l);
        so += l;
    }
    /* pass 2: fill */
    uint32_t nimg = 0, nbox = 0;
    for (size_t i = 0; i < ni; i++) {
        const kd_coco_image *im = &f->images[i];
        if (!o->test_mode) {
            if (o->filter_empty_gt && count[i] == 0) continue;
            if ((im->width < im->height ? im->width : im->height) < o->min_size) continue;
        }
        kd_coco_index_image *d = &oi[nimg++];
        const char *fn = kd_coco_str(f, im->file_name_off);
        size_t l = strlen(fn) + 1;
        memcpy(os + so, fn, l);
        *d = (kd_coco_index_image){.id = im->id, .width = im->width, .height = im->height,
                                   .file_name_off = (uint32_t)so, .box_begin = nbox};
        so += l;
        for (uint32_t k = 0; k < count[i]; k++) {
            const kd_coco_ann *a = &f->anns[order[start[i] + k]];
            if (!ann_usable(a, im->width, im->height)) continue;
            int64_t lab = rank_of(cats, nc, a->category_id);
            if (lab < 0) {
                st = kd_errf(err, KD_EINVAL, "COCO index: annotations (id %lld): category_id %d is not in categories",
                             (long long)a->id, a->category_id);
                goto done;
            }
            ob[4 * nbox + 0] = (float)a->bbox[0];
            ob[4 * nbox + 1] = (float)a->bbox[1];
            ob[4 * nbox + 2] = (float)(a->bbox[0] + a->bbox[2]);
            ob[4 * nbox + 3] = (float)(a->bbox[1] + a->bbox[3]);
            ol[nbox] = (int32_t)lab;
            og[nbox] = (uint8_t)(a->iscrowd != 0);
            d->n_ignored += og[nbox];
            d->n_boxes++;
            nbox++;
        }
    }
    KD_CHECK(nimg == h.n_images && nbox == h.n_boxes && so == h.strings_bytes);
    index_point(out, blob, h.total_bytes);
    blob = NULL;
done:
    free(blob);
    free(imgs);
    free(cats);
    free(count);
    free(start);
    free(order);
    free(ann_img);
    return st;
}

kd_status kd_coco_index_from_bytes(void *blob, size_t blob_bytes, kd_coco_index *out, kd_err *err)
{
    memset(out, 0, sizeof *out);
    blob_hdr h;
    if (!blob || blob_bytes < sizeof h) goto bad;
    memcpy(&h, blob, sizeof h);
    if (memcmp(h.magic, BLOB_MAGIC, 8) || h.version != BLOB_VERSION) goto bad;
    blob_hdr want = h;
    blob_layout(&want);
    if (memcmp(&want, &h, sizeof h) || h.total_bytes != blob_bytes || h.n_images > h.n_images_raw) goto bad;
    kd_coco_index x;
    index_point(&x, blob, blob_bytes);
    if (h.strings_bytes == 0 || x.strings[h.strings_bytes - 1] != '\0') goto bad;
    uint64_t next = 0;
    for (uint32_t i = 0; i < x.n_images; i++) {
        const kd_coco_index_image *im = &x.images[i];
        if (im->box_begin != next || im->n_ignored > im->n_boxes || im->file_name_off >= h.strings_bytes) goto bad;
        next += im->n_boxes;
    }
    if (next != x.n_boxes) goto bad;
    for (uint32_t k = 0; k < x.n_boxes; k++)
        if (x.labels[k] < 0 || (uint32_t)x.labels[k] >= x.n_classes || x.ignore[k] > 1) goto bad;
    for (uint32_t c = 0; c < x.n_classes; c++)
        if (x.cat_name_offs[c] >= h.strings_bytes) goto bad;
    *out = x;
    return KD_OK;
bad:
    free(blob);
    return kd_errf(err, KD_ECORRUPT, "COCO index: serialized index is malformed (%zu bytes)", blob_bytes);
}

/* ---- cache ------------------------------------------------------------------------ */

typedef struct cache_hdr {
    char magic[8];
    uint32_t version, filter_empty_gt;
    int32_t min_size, test_mode;
    uint64_t src_size;
    int64_t src_mtime_sec, src_mtime_nsec;
    uint64_t raw_bytes, comp_bytes, raw_hash;
} cache_hdr;

/* 64-bit hash of a buffer whose length is a multiple of 8 (the blob always is). */
static uint64_t hash64(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h0 = 0x9E3779B97F4A7C15ull ^ n, h1 = 0xC2B2AE3D27D4EB4Full, h2 = 0x165667B19E3779F9ull,
             h3 = 0x27D4EB2F165667C5ull;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t w[4];
        memcpy(w, b + i, 32);
        h0 = (h0 ^ w[0]) * 0x100000001B3ull;
        h1 = (h1 ^ w[1]) * 0x100000001B3ull;
        h2 = (h2 ^ w[2]) * 0x100000001B3ull;
        h3 = (h3 ^ w[3]) * 0x100000001B3ull;
    }
    for (; i < n; i++) h0 = (h0 ^ b[i]) * 0x100000001B3ull;
    uint64_t h = h0 ^ (h1 << 1 | h1 >> 63) ^ (h2 << 7 | h2 >> 57) ^ (h3 << 13 | h3 >> 51);
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    return h;
}

static kd_status src_stamp(const char *src, cache_hdr *c, kd_err *err)
{
    struct stat st;
    if (stat(src, &st)) return kd_errf(err, KD_ENOTFOUND, "%s: %s", src, strerror(errno));
    c->src_size = (uint64_t)st.st_size;
    c->src_mtime_sec = (int64_t)st.st_mtim.tv_sec;
    c->src_mtime_nsec = (int64_t)st.st_mtim.tv_nsec;
    return KD_OK;
}

static void cache_opts(cache_hdr *c, const kd_coco_index_opts *o)
{
    c->filter_empty_gt = (uint32_t)(o->filter_empty_gt != 0);
    c->min_size = o->min_size;
    c->test_mode = o->test_mode != 0;
}

kd_status kd_coco_index_cache_write(const kd_coco_index *x, const char *cache_path, const char *src_path,
                                    const kd_coco_index_opts *o, kd_err *err)
{
    cache_hdr c = {0};
    memcpy(c.magic, CACHE_MAGIC, 8);
    c.version = CACHE_VERSION;
    cache_opts(&c, o);
    kd_status st = src_stamp(src_path, &c, err);
    if (st) return st;
    c.raw_bytes = x->blob_bytes;
    c.raw_hash = hash64(x->blob, x->blob_bytes);
    size_t cap = ZSTD_compressBound(x->blob_bytes);
    void *z = malloc(cap);
    if (!z) return kd_errf(err, KD_ENOMEM, "%s: out of memory", cache_path);
    size_t zn = ZSTD_compress(z, cap, x->blob, x->blob_bytes, 3);
    if (ZSTD_isError(zn)) {
        free(z);
        return kd_errf(err, KD_EIO, "%s: zstd: %s", cache_path, ZSTD_getErrorName(zn));
    }
    c.comp_bytes = zn;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", cache_path, (long)getpid());
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        free(z);
        return kd_errf(err, KD_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    int ok = fwrite(&c, sizeof c, 1, fp) == 1 && fwrite(z, 1, zn, fp) == zn;
    ok = (fclose(fp) == 0) && ok;
    free(z);
    if (!ok || rename(tmp, cache_path)) {
        int e = errno;
        unlink(tmp);
        return kd_errf(err, KD_EIO, "%s: cannot write: %s", cache_path, strerror(e));
    }
    return KD_OK;
}

kd_status kd_coco_index_cache_read(const char *cache_path, const char *src_path, const kd_coco_index_opts *o,
                                   kd_coco_index *out, kd_err *err)
{
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(cache_path, "rb");
    if (!fp) return kd_errf(err, KD_ENOTFOUND, "%s: %s", cache_path, strerror(errno));
    cache_hdr c, want = {0};
    kd_status st;
    if (fread(&c, sizeof c, 1, fp) != 1) {
        fclose(fp);
        return kd_errf(err, KD_ECORRUPT, "%s: truncated header", cache_path);
    }
    cache_opts(&want, o);
    if ((st = src_stamp(src_path, &want, err))) {
        fclose(fp);
        return st;
    }
    if (memcmp(c.magic, CACHE_MAGIC, 8) || c.version != CACHE_VERSION || c.filter_empty_gt != want.filter_empty_gt ||
        c.min_size != want.min_size || c.test_mode != want.test_mode || c.src_size != want.src_size ||
        c.src_mtime_sec != want.src_mtime_sec || c.src_mtime_nsec != want.src_mtime_nsec ||
        c.comp_bytes > ((uint64_t)1 << 40) || c.raw_bytes > ((uint64_t)1 << 40)) {
        fclose(fp);
        return kd_errf(err, KD_ECORRUPT, "%s: stale (source or options changed) or not an index cache", cache_path);
    }
    void *z = malloc(c.comp_bytes ? c.comp_bytes : 1), *raw = malloc(c.raw_bytes ? c.raw_bytes : 1);
    if (!z || !raw) {
        fclose(fp);
        free(z);
        free(raw);
        return kd_errf(err, KD_ENOMEM, "%s: out of memory", cache_path);
    }
    size_t got = fread(z, 1, c.comp_bytes, fp);
    fclose(fp);
    size_t rn = got == c.comp_bytes ? ZSTD_decompress(raw, c.raw_bytes, z, c.comp_bytes) : 0;
    free(z);
    if (got != c.comp_bytes || ZSTD_isError(rn) || rn != c.raw_bytes || hash64(raw, rn) != c.raw_hash) {
        free(raw);
        return kd_errf(err, KD_ECORRUPT, "%s: damaged (size, zstd frame or checksum)", cache_path);
    }
    st = kd_coco_index_from_bytes(raw, rn, out, err);
    if (st) kd_err_prefix(err, "%s: ", cache_path);
    return st;
}

kd_status kd_coco_index_load(const char *src_path, const char *cache_path, const kd_coco_index_opts *o,
                             kd_coco_index *out, int *from_cache, kd_err *err)
{
    char cp[4096];
    int use_cache = !(cache_path && !strcmp(cache_path, "none"));
    if (use_cache) {
        if (cache_path && cache_path[0]) snprintf(cp, sizeof cp, "%s", cache_path);
        else snprintf(cp, sizeof cp, "%s.kdidx", src_path);
    }
    if (from_cache) *from_cache = 0;
    if (use_cache) {
        kd_err e2 = {0};
        kd_status st = kd_coco_index_cache_read(cp, src_path, o, out, &e2);
        if (st == KD_OK) {
            if (from_cache) *from_cache = 1;
            return KD_OK;
        }
        if (st != KD_ENOTFOUND) KD_WARN("index cache not used: %s", e2.msg);
    }
    kd_coco_file f;
    kd_status st = kd_coco_file_load(src_path, &f, err);
    if (st) return st;
    st = kd_coco_index_build(&f, o, out, err);
    kd_coco_file_free(&f);
    if (st) return st;
    if (use_cache) {
        kd_err e3 = {0};
        if (kd_coco_index_cache_write(out, cp, src_path, o, &e3)) KD_WARN("index cache not written: %s", e3.msg);
    }
    return KD_OK;
}
