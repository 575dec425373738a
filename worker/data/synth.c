/* synth.c — the synthetic COCO-format dataset: scene composition, annotations from the
 * rendered pixels, JPEG files (TurboJPEG) and the two instances_*.json files (see synth.h).
 *
 * Determinism: image i of split s draws every random number from its own generator seeded
 * with (seed, s, i), so the output depends only on the options, not on timing.
 * JSON text is built in memory (the biggest, annotations-only train file, is ~0.4 GB) and
 * written once; numbers are printed with at most 2 decimals, as COCO's files do.
 */
#include "worker/data/synth.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>

/* ---- a growing text buffer ---------------------------------------------------------- */

typedef struct sbuf { char *p; size_t n, cap; int oom; } sbuf;

static void sb_reserve(sbuf *b, size_t more)
{
    if (b->n + more + 1 <= b->cap) return;
    size_t nc = b->cap ? b->cap : 1 << 16;
    while (nc < b->n + more + 1) nc *= 2;
    char *q = realloc(b->p, nc);
    if (!q) { b->oom = 1; return; }
    b->p = q;
    b->cap = nc;
}

static void sb_put(sbuf *b, const char *s, size_t len)
{
    sb_reserve(b, len);
    if (b->oom) return;
    memcpy(b->p + b->n, s, len);
    b->n += len;
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_int(sbuf *b, long long v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%lld", v);
    sb_put(b, t, (size_t)n);
}

/* A non-negative number with at most 2 decimals, shortest form ("12", "12.5", "12.25"). */
static void sb_fix2(sbuf *b, double v)
{
    long long c = llround(v * 100.0);
    char t[32];
    int n = snprintf(t, sizeof t, "%lld", c / 100);
    int frac = (int)(c % 100);
    if (frac) {
        t[n++] = '.';
        t[n++] = (char)('0' + frac / 10);
        if (frac % 10) t[n++] = (char)('0' + frac % 10);
    }
    sb_put(b, t, (size_t)n);
}

/* ---- options ------------------------------------------------------------------------ */

void kd_synth_cfg_defaults(kd_synth_cfg *c, int annotations_only)
{
    memset(c, 0, sizeof *c);
    c->seed = 0;
    c->annotations_only = annotations_only;
    c->jpeg_quality = 90;
    c->progress = 1;
    if (annotations_only) {
        c->n_train = 118287;
        c->n_val = 5000;
        c->size_min = c->size_max = 640;
        c->n_categories = 80;
        c->objects_min = 1;
        c->objects_max = 14;
    } else {
        c->n_train = 2000;
        c->n_val = 200;
        c->size_min = 192;
        c->size_max = 320;
        c->n_categories = 8;
        c->objects_min = 1;
        c->objects_max = 8;
    }
}

kd_status kd_synth_cfg_check(const kd_synth_cfg *c, kd_err *err)
{
    if (!c->out_dir || !c->out_dir[0]) return kd_errf(err, KD_EINVAL, "--out is required");
    if (c->n_train < 0 || c->n_val < 0 || c->n_train > 10000000 || c->n_val > 10000000)
        return kd_errf(err, KD_EINVAL, "--train and --val must be in [0, 10000000]");
    if (c->size_min < 32 || c->size_max < c->size_min || c->size_max > 8192)
        return kd_errf(err, KD_EINVAL, "--size-min/--size-max: need 32 <= min <= max <= 8192 (got %d, %d)",
                       c->size_min, c->size_max);
    int maxc = c->annotations_only ? KD_SYNTH_MAX_CATEGORIES_ANN : KD_SYNTH_MAX_CATEGORIES;
    if (c->n_categories < 1 || c->n_categories > maxc)
        return kd_errf(err, KD_EINVAL, "--categories must be in [1, %d]%s (got %d)", maxc,
                       c->annotations_only ? "" : " when drawing images", c->n_categories);
    if (c->objects_min < 0 || c->objects_max < c->objects_min || c->objects_max > 1000)
        return kd_errf(err, KD_EINVAL, "--objects-min/--objects-max: need 0 <= min <= max <= 1000 (got %d, %d)",
                       c->objects_min, c->objects_max);
    if (c->jpeg_quality < 1 || c->jpeg_quality > 100) return kd_errf(err, KD_EINVAL, "--quality must be in [1, 100]");
    return KD_OK;
}

static int32_t cat_id(int i) { return i + 1 + i / 3; }

/* ---- progress ----------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct progress { const char *what; int total, on, tty; double t0, last; } progress;

static void progress_tick(progress *p, int done)
{
    if (!p->on) return;
    double t = now_s();
    if (done < p->total && t - p->last < (p->tty ? 0.25 : 5.0)) return;
    p->last = t;
    double rate = done / (t - p->t0 + 1e-9);
    fprintf(stderr, "%s%s: %d/%d images (%.0f/s)%s", p->tty ? "\r" : "", p->what, done, p->total, rate,
            p->tty && done < p->total ? "" : "\n");
    fflush(stderr);
}

/* ---- one drawn image ---------------------------------------------------------------- */

typedef struct obj_rec { int cat, crowd; long full_px; } obj_rec;

static double size_for_class(kd_rng *r, int W, int H)
{
    double u = kd_rng_uniform(r), lo, hi, m = (W < H ? W : H) * 0.9;
    if (u < 0.35) lo = 8, hi = 32;          /* small: area < 32^2 */
    else if (u < 0.8 || m <= 100) lo = 32, hi = 96; /* medium */
    else lo = 96, hi = m;                    /* large: area > 96^2 */
    if (hi > m) hi = m;
    if (lo > hi) lo = hi * 0.5;
    return exp(log(lo) + (log(hi) - log(lo)) * kd_rng_uniform(r)); /* side of the box */
}

static void random_shape(kd_rng *r, kd_synth_shape *s, const kd_synth_category *cat, double side, int W, int H)
{
    double asp = exp((kd_rng_uniform(r) - 0.5) * 0.7);
    s->shape = cat->shape;
    s->texture = cat->texture;
    s->rx = side * 0.5 * sqrt(asp);
    s->ry = side * 0.5 / sqrt(asp);
    s->cx = s->rx * 0.4 + kd_rng_uniform(r) * (W - s->rx * 0.8);
    s->cy = s->ry * 0.4 + kd_rng_uniform(r) * (H - s->ry * 0.8);
    s->angle = (kd_rng_uniform(r) - 0.5) * 0.9;
    double bright = 0.8 + 0.35 * kd_rng_uniform(r);
    for (int k = 0; k < 3; k++) {
        double j = (kd_rng_uniform(r) - 0.5) * 30.0;
        double a = cat->rgb[k] * bright + j, b = cat->rgb2[k] * bright + j;
        s->rgb[k] = (uint8_t)(a < 0 ? 0 : a > 255 ? 255 : a);
        s->rgb2[k] = (uint8_t)(b < 0 ? 0 : b > 255 ? 255 : b);
    }
    s->tex_scale = 6.0 + 6.0 * kd_rng_uniform(r);
    s->tex_phase = kd_rng_uniform(r) * 6.283185307179586;
}

static void clutter_shape(kd_rng *r, kd_synth_canvas *c)
{
    kd_synth_shape s;
    kd_synth_category grey = {"", kd_rng_int(r, 0, KD_SYNTH_N_SHAPES - 1), kd_rng_int(r, 0, KD_SYNTH_N_TEXTURES - 1),
                              {0, 0, 0}, {0, 0, 0}};
    double g = 50 + 150 * kd_rng_uniform(r);
    for (int k = 0; k < 3; k++) { /* desaturated: greys and browns */
        grey.rgb[k] = (uint8_t)(g + (k == 0 ? 25 : k == 1 ? 8 : -15) * kd_rng_uniform(r));
        grey.rgb2[k] = (uint8_t)(g * 0.6);
    }
    random_shape(r, &s, &grey, size_for_class(r, c->w, c->h) * 0.8, c->w, c->h);
    kd_synth_draw_shape(c, &s, -1);
}

typedef struct img_out { sbuf *anns; long long *next_ann_id; long long image_id; } img_out;

static void emit_ann(img_out *o, int cat, int crowd, const kd_synth_canvas *c, int owner, long px, int x0, int y0, int x1,
                     int y1)
{
    sbuf *b = o->anns;
    if (b->n) sb_puts(b, ",\n");
    sb_puts(b, "{\"id\": ");
    sb_int(b, (*o->next_ann_id)++);
    sb_puts(b, ", \"image_id\": ");
    sb_int(b, o->image_id);
    sb_puts(b, ", \"category_id\": ");
    sb_int(b, cat_id(cat));
    sb_puts(b, ", \"iscrowd\": ");
    sb_int(b, crowd);
    sb_puts(b, ", \"area\": ");
    sb_int(b, px);
    sb_puts(b, ", \"bbox\": [");
    sb_int(b, x0), sb_puts(b, ", "), sb_int(b, y0), sb_puts(b, ", ");
    sb_int(b, x1 - x0 + 1), sb_puts(b, ", "), sb_int(b, y1 - y0 + 1);
    sb_puts(b, "], \"segmentation\": ");
    if (!crowd) { /* the visible box as a polygon */
        sb_puts(b, "[[");
        int pts[8] = {x0, y0, x1 + 1, y0, x1 + 1, y1 + 1, x0, y1 + 1};
        for (int k = 0; k < 8; k++) {
            if (k) sb_puts(b, ", ");
            sb_int(b, pts[k]);
        }
        sb_puts(b, "]]");
    } else { /* uncompressed RLE of the group's pixels, column-major, first run = zeros */
        sb_puts(b, "{\"counts\": [");
        long run = 0;
        int val = 0, first = 1;
        for (int x = 0; x < c->w; x++)
            for (int y = 0; y < c->h; y++) {
                int v = c->owner[(size_t)y * c->w + x] == owner;
                if (v != val) {
                    if (!first) sb_puts(b, ", ");
                    sb_int(b, run), first = 0;
                    run = 0;
                    val = v;
                }
                run++;
            }
        if (!first) sb_puts(b, ", ");
        sb_int(b, run);
        sb_puts(b, "], \"size\": [");
        sb_int(b, c->h), sb_puts(b, ", "), sb_int(b, c->w);
        sb_puts(b, "]}");
    }
    sb_puts(b, "}");
}

static kd_status draw_image(const kd_synth_cfg *cfg, kd_rng *r, kd_synth_canvas *c, img_out *o)
{
    enum { MAX_OBJ = 1100 };
    static __thread obj_rec objs[MAX_OBJ];
    kd_synth_background(c, r);
    int n_clutter = kd_rng_int(r, 1, 6), n_strokes = kd_rng_int(r, 0, 4);
    int n_obj = kd_rng_int(r, cfg->objects_min, cfg->objects_max);
    int n = 0;
    for (int i = 0; i < n_clutter / 2; i++) clutter_shape(r, c); /* under the objects */
    for (int i = 0; i < n_obj && n < MAX_OBJ - 20; i++) {
        int cat = kd_rng_int(r, 0, cfg->n_categories - 1);
        const kd_synth_category *cd = kd_synth_category_get(cat);
        kd_synth_shape s;
        if (kd_rng_uniform(r) < 0.03) { /* a crowd: many small objects of one category, one box */
            int members = kd_rng_int(r, 8, 15);
            double rw = c->w * (0.2 + 0.2 * kd_rng_uniform(r)), rh = c->h * (0.2 + 0.2 * kd_rng_uniform(r));
            double ox = kd_rng_uniform(r) * (c->w - rw), oy = kd_rng_uniform(r) * (c->h - rh);
            long px = 0;
            for (int m = 0; m < members; m++) {
                random_shape(r, &s, cd, 5.0 + 6.0 * kd_rng_uniform(r), c->w, c->h);
                s.cx = ox + kd_rng_uniform(r) * rw;
                s.cy = oy + kd_rng_uniform(r) * rh;
                px += kd_synth_draw_shape(c, &s, n);
            }
            objs[n++] = (obj_rec){cat, 1, px};
            continue;
        }
        random_shape(r, &s, cd, size_for_class(r, c->w, c->h), c->w, c->h);
        objs[n] = (obj_rec){cat, 0, kd_synth_draw_shape(c, &s, n)};
        n++;
    }
    for (int i = n_clutter / 2; i < n_clutter; i++) clutter_shape(r, c); /* occluding clutter */
    for (int i = 0; i < n_strokes; i++) kd_synth_draw_stroke(c, r);
    kd_synth_noise(c, r);
    /* visible pixels and tight boxes per object */
    static __thread int box[MAX_OBJ][4];
    static __thread long vis[MAX_OBJ];
    for (int k = 0; k < n; k++) box[k][0] = box[k][1] = 1 << 30, box[k][2] = box[k][3] = -1, vis[k] = 0;
    for (int y = 0; y < c->h; y++)
        for (int x = 0; x < c->w; x++) {
            int k = c->owner[(size_t)y * c->w + x];
            if (k < 0) continue;
            vis[k]++;
            if (x < box[k][0]) box[k][0] = x;
            if (y < box[k][1]) box[k][1] = y;
            if (x > box[k][2]) box[k][2] = x;
            if (y > box[k][3]) box[k][3] = y;
        }
    for (int k = 0; k < n; k++)
        if (vis[k] >= 4) emit_ann(o, objs[k].cat, objs[k].crowd, c, k, vis[k], box[k][0], box[k][1], box[k][2], box[k][3]);
    return KD_OK;
}

static void image_size(const kd_synth_cfg *cfg, kd_rng *r, int *W, int *H)
{
    int L = kd_rng_int(r, cfg->size_min, cfg->size_max);
    double ratio = exp((kd_rng_uniform(r) - 0.5) * 1.0); /* w/h in about [0.6, 1.65] */
    int S;
    if (ratio >= 1) { S = (int)lround(L / ratio); *W = L, *H = S < 32 ? 32 : S; }
    else { S = (int)lround(L * ratio); *H = L, *W = S < 32 ? 32 : S; }
}

/* ---- annotations-only images ------------------------------------------------------- */

static void fake_image(const kd_synth_cfg *cfg, kd_rng *r, int W, int H, img_out *o)
{
    int n_obj = kd_rng_uniform(r) < 0.009 ? 0 : kd_rng_int(r, cfg->objects_min, cfg->objects_max);
    for (int i = 0; i < n_obj; i++) {
        double side = size_for_class(r, W, H), asp = exp((kd_rng_uniform(r) - 0.5) * 1.5);
        double w = fmin(side * sqrt(asp), W - 1.0), h = fmin(side / sqrt(asp), H - 1.0);
        double x = kd_rng_uniform(r) * (W - w), y = kd_rng_uniform(r) * (H - h);
        int crowd = kd_rng_uniform(r) < 0.011;
        double area = w * h * (0.45 + 0.4 * kd_rng_uniform(r));
        sbuf *b = o->anns;
        if (b->n) sb_puts(b, ",\n");
        sb_puts(b, "{\"segmentation\": ");
        if (!crowd) {
            int k = kd_rng_int(r, 6, 45);
            sb_puts(b, "[[");
            for (int p = 0; p < k; p++) {
                double t = 6.283185307179586 * p / k, q = 0.8 + 0.2 * kd_rng_uniform(r);
                if (p) sb_puts(b, ", ");
                sb_fix2(b, x + w * 0.5 * (1 + q * cos(t)));
                sb_puts(b, ", ");
                sb_fix2(b, y + h * 0.5 * (1 + q * sin(t)));
            }
            sb_puts(b, "]]");
        } else {
            sb_puts(b, "{\"counts\": [");
            /* runs that add up to H*W, as a real RLE does */
            long total = (long)W * H, used = 0;
            int runs = kd_rng_int(r, 50, 300);
            long avg = total / runs;
            for (int p = 0; p < runs && used < total; p++) {
                long run = p == runs - 1 ? total - used : kd_rng_int(r, p == 0 ? 0 : 1, (int)(2 * avg));
                if (run > total - used) run = total - used;
                if (p) sb_puts(b, ", ");
                sb_int(b, run);
                used += run;
            }
            sb_puts(b, "], \"size\": [");
            sb_int(b, H), sb_puts(b, ", "), sb_int(b, W);
            sb_puts(b, "]}");
        }
        sb_puts(b, ", \"area\": ");
        sb_fix2(b, area);
        sb_puts(b, ", \"iscrowd\": ");
        sb_int(b, crowd);
        sb_puts(b, ", \"image_id\": ");
        sb_int(b, o->image_id);
        sb_puts(b, ", \"bbox\": [");
        sb_fix2(b, x), sb_puts(b, ", "), sb_fix2(b, y), sb_puts(b, ", "), sb_fix2(b, w), sb_puts(b, ", "), sb_fix2(b, h);
        sb_puts(b, "], \"category_id\": ");
        sb_int(b, cat_id(kd_rng_int(r, 0, cfg->n_categories - 1)));
        sb_puts(b, ", \"id\": ");
        sb_int(b, (*o->next_ann_id)++);
        sb_puts(b, "}");
    }
}

/* ---- one split ---------------------------------------------------------------------- */

static kd_status write_file(const char *path, const sbuf *parts[], int n_parts, kd_err *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) return kd_errf(err, KD_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    int ok = 1;
    for (int i = 0; i < n_parts; i++) ok = ok && fwrite(parts[i]->p, 1, parts[i]->n, fp) == parts[i]->n;
    ok = (fclose(fp) == 0) && ok;
    if (!ok || rename(tmp, path)) {
        unlink(tmp);
        return kd_errf(err, KD_EIO, "%s: write failed: %s", path, strerror(errno));
    }
    return KD_OK;
}

static kd_status gen_split(const kd_synth_cfg *cfg, int split, kd_err *err)
{
    const char *name = split == 0 ? "train" : "val";
    int n_images = split == 0 ? cfg->n_train : cfg->n_val;
    char path[4096];
    if (!cfg->annotations_only) {
        snprintf(path, sizeof path, "%s/%s", cfg->out_dir, name);
        if (mkdir(path, 0777) && errno != EEXIST) return kd_errf(err, KD_EIO, "%s: cannot create: %s", path, strerror(errno));
    }
    sbuf head = {0}, imgs = {0}, anns = {0}, tail = {0};
    char t[512];
    snprintf(t, sizeof t,
             "{\"info\": {\"description\": \"crosskd synthetic COCO-format dataset (%s)\", \"version\": \"1.0\", "
             "\"year\": 2026, \"seed\": %llu},\n\"licenses\": [],\n\"images\": [\n",
             cfg->annotations_only ? "annotations only" : "images", (unsigned long long)cfg->seed);
    sb_puts(&head, t);
    long long next_ann_id = 1;
    kd_status st = KD_OK;
    kd_synth_canvas c = {0};
    tjhandle tj = NULL;
    unsigned char *jpg = NULL;
    unsigned long jpg_cap = 0;
    if (!cfg->annotations_only) {
        size_t px = (size_t)cfg->size_max * cfg->size_max;
        c.rgb = malloc(px * 3);
        c.owner = malloc(px * sizeof *c.owner);
        tj = tjInitCompress();
        jpg_cap = tjBufSize(cfg->size_max, cfg->size_max, TJSAMP_420);
        jpg = tjAlloc((int)jpg_cap);
        if (!c.rgb || !c.owner || !tj || !jpg) { st = kd_errf(err, KD_ENOMEM, "out of memory"); goto done; }
    }
    double t_start = now_s();
    progress pg = {name, n_images, cfg->progress, isatty(2), t_start, t_start};
    for (int i = 0; i < n_images; i++) {
        kd_rng r;
        kd_rng_seed(&r, cfg->seed, ((uint64_t)split << 32) | (uint64_t)i);
        long long image_id = i + 1;
        img_out o = {&anns, &next_ann_id, image_id};
        int W, H;
        if (cfg->annotations_only) {
            static const int ratios[][2] = {{4, 3}, {4, 3}, {4, 3}, {3, 2}, {16, 9}, {1, 1}, {3, 4}, {3, 4}, {2, 3}};
            int k = kd_rng_int(&r, 0, 8), L = kd_rng_uniform(&r) < 0.9 ? cfg->size_max : kd_rng_int(&r, cfg->size_min, cfg->size_max);
            if (ratios[k][0] >= ratios[k][1]) W = L, H = L * ratios[k][1] / ratios[k][0];
            else H = L, W = L * ratios[k][0] / ratios[k][1];
            fake_image(cfg, &r, W, H, &o);
        } else {
            image_size(cfg, &r, &W, &H);
            c.w = W, c.h = H;
            draw_image(cfg, &r, &c, &o);
            unsigned long sz = jpg_cap;
            if (tjCompress2(tj, c.rgb, W, 0, H, TJPF_RGB, &jpg, &sz, TJSAMP_420, cfg->jpeg_quality,
                            TJFLAG_NOREALLOC | TJFLAG_ACCURATEDCT)) {
                st = kd_errf(err, KD_EIO, "JPEG encoding failed: %s", tjGetErrorStr2(tj));
                goto done;
            }
            snprintf(path, sizeof path, "%s/%s/%012lld.jpg", cfg->out_dir, name, image_id);
            FILE *fp = fopen(path, "wb");
            int ok = fp && fwrite(jpg, 1, sz, fp) == sz;
            if (fp) ok = (fclose(fp) == 0) && ok;
            if (!ok) { st = kd_errf(err, KD_EIO, "%s: write failed: %s", path, strerror(errno)); goto done; }
        }
        snprintf(t, sizeof t, "%s{\"id\": %lld, \"file_name\": \"%012lld.jpg\", \"width\": %d, \"height\": %d, \"license\": 0}",
                 i ? ",\n" : "", image_id, image_id, W, H);
        sb_puts(&imgs, t);
        if (anns.oom || imgs.oom) { st = kd_errf(err, KD_ENOMEM, "out of memory"); goto done; }
        progress_tick(&pg, i + 1);
    }
    if (n_images == 0) progress_tick(&pg, 0);
    sb_puts(&imgs, "\n],\n\"annotations\": [\n");
    sb_puts(&tail, "\n],\n\"categories\": [\n");
    for (int k = 0; k < cfg->n_categories; k++) {
        const kd_synth_category *cd = kd_synth_category_get(k);
        if (cd && !cfg->annotations_only) snprintf(t, sizeof t, "%s{\"id\": %d, \"name\": \"%s\", \"supercategory\": \"shape\"}",
                                                   k ? ",\n" : "", cat_id(k), cd->name);
        else snprintf(t, sizeof t, "%s{\"id\": %d, \"name\": \"class_%d\", \"supercategory\": \"thing\"}", k ? ",\n" : "",
                      cat_id(k), k);
        sb_puts(&tail, t);
    }
    sb_puts(&tail, "\n]}\n");
    if (head.oom || imgs.oom || anns.oom || tail.oom) { st = kd_errf(err, KD_ENOMEM, "out of memory"); goto done; }
    snprintf(path, sizeof path, "%s/annotations/instances_%s.json", cfg->out_dir, name);
    const sbuf *parts[] = {&head, &imgs, &anns, &tail};
    st = write_file(path, parts, 4, err);
done:
    free(head.p), free(imgs.p), free(anns.p), free(tail.p);
    free(c.rgb), free(c.owner);
    if (jpg) tjFree(jpg);
    if (tj) tjDestroy(tj);
    return st;
}

kd_status kd_synth_generate(const kd_synth_cfg *cfg, kd_err *err)
{
    kd_status st = kd_synth_cfg_check(cfg, err);
    if (st) return st;
    char path[4096];
    snprintf(path, sizeof path, "%s", cfg->out_dir);
    if (mkdir(path, 0777) && errno != EEXIST) return kd_errf(err, KD_EIO, "%s: cannot create: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/annotations", cfg->out_dir);
    if (mkdir(path, 0777) && errno != EEXIST) return kd_errf(err, KD_EIO, "%s: cannot create: %s", path, strerror(errno));
    if ((st = gen_split(cfg, 0, err))) return st;
    return gen_split(cfg, 1, err);
}
