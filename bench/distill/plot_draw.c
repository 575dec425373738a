/* plot_draw.c — detections drawn on a validation image, as PNG (plot.h, "draw").
 *
 * The image is read with the data path's decoder (worker/data/image_decode.h, BGR), the
 * ground truth with the COCO annotation reader and each detector's boxes with the COCO
 * results reader (proto/coco_json.h). The output is 1 + n_results panels side by side, 8
 * white pixels apart: the ground truth (crowd boxes dashed), then each results file's boxes
 * with score >= score_thr (only the max_dets best when max_dets > 0), drawn over the detection in decreasing score order so the
 * strongest box is on top. Every panel is the image enlarged by an integer factor so that it
 * is at least 384 pixels high (nearest neighbour), boxes are 2 pixels wide in the enlarged
 * image, and a box's colour is its category's (the order of the GT file's categories).
 * Written with libpng's simplified API as 8-bit RGB.
 */
#include "plot.h"

#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/coco_json.h"
#include "worker/data/image_decode.h"

enum { PANEL_GAP = 8, MIN_PANEL_H = 384, LINE_PX = 2 };

static const uint8_t colours[][3] = {{230, 25, 75},  {60, 180, 75},  {255, 225, 25}, {0, 130, 200},
                                     {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230},
                                     {210, 245, 60}, {250, 190, 212}, {0, 128, 128}, {170, 110, 40}};

typedef struct canvas {
    int w, h;
    uint8_t *rgb; /* [h][w][3] */
} canvas;

static void put(canvas *c, int x, int y, const uint8_t rgb[3])
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    memcpy(&c->rgb[((size_t)y * (size_t)c->w + (size_t)x) * 3], rgb, 3);
}

/* Box [x, y, w, h] in image pixels, panel origin ox, scale s; dashed for crowd boxes. */
static void draw_box(canvas *c, int ox, int s, const double b[4], const uint8_t rgb[3], int dashed)
{
    int x0 = ox + (int)(b[0] * s), y0 = (int)(b[1] * s);
    int x1 = ox + (int)((b[0] + b[2]) * s), y1 = (int)((b[1] + b[3]) * s);
    for (int t = 0; t < LINE_PX; t++) {
        for (int x = x0; x <= x1; x++) {
            if (dashed && (x / 6) % 2) continue;
            put(c, x, y0 + t, rgb), put(c, x, y1 - t, rgb);
        }
        for (int y = y0; y <= y1; y++) {
            if (dashed && (y / 6) % 2) continue;
            put(c, x0 + t, y, rgb), put(c, x1 - t, y, rgb);
        }
    }
}

static void blit(canvas *c, int ox, int s, const kd_image *im)
{
    for (int y = 0; y < im->h * s; y++)
        for (int x = 0; x < im->w * s; x++) {
            const uint8_t *bgr = &im->bgr[((size_t)(y / s) * (size_t)im->w + (size_t)(x / s)) * 3];
            const uint8_t rgb[3] = {bgr[2], bgr[1], bgr[0]};
            put(c, ox + x, y, rgb);
        }
}

static const uint8_t *cat_colour(const kd_coco_file *gt, int32_t cat)
{
    for (size_t i = 0; i < gt->n_cats; i++)
        if (gt->cats[i].id == cat) return colours[i % (sizeof colours / sizeof colours[0])];
    return colours[0];
}

static int det_score_cmp(const void *a, const void *b)
{
    const kd_coco_det *p = a, *q = b;
    return (p->score < q->score) - (p->score > q->score);
}

/* One results file's boxes of the image, weakest first (so the strongest is drawn last). */
static kd_status draw_results(canvas *c, int ox, int s, const kd_coco_file *gt, const char *path,
                              const kd_plot_draw_cfg *cfg, kd_err *err)
{
    kd_coco_det *d = NULL;
    size_t n = 0;
    if (kd_coco_results_load(path, &d, &n, err)) return err->code;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (d[i].image_id == cfg->image_id && d[i].score >= cfg->score_thr) d[m++] = d[i];
    qsort(d, m, sizeof *d, det_score_cmp);
    if (cfg->max_dets > 0 && m > (size_t)cfg->max_dets) m = (size_t)cfg->max_dets;
    for (size_t i = m; i-- > 0;) draw_box(c, ox, s, d[i].bbox, cat_colour(gt, d[i].category_id), 0);
    free(d);
    return KD_OK;
}

static kd_status png_write(const char *path, const canvas *c, kd_err *err)
{
    png_image p;
    memset(&p, 0, sizeof p);
    p.version = PNG_IMAGE_VERSION;
    p.width = (png_uint_32)c->w, p.height = (png_uint_32)c->h, p.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&p, path, 0, c->rgb, 0, NULL))
        return kd_errf(err, KD_EIO, "%s: cannot write PNG (%s)", path, p.message);
    return KD_OK;
}

static kd_status image_of(const kd_coco_file *gt, const kd_plot_draw_cfg *cfg, kd_image *im, kd_err *err)
{
    for (size_t i = 0; i < gt->n_images; i++) {
        if (gt->images[i].id != cfg->image_id) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", cfg->images_dir, kd_coco_str(gt, gt->images[i].file_name_off));
        kd_image_decoder d;
        if (kd_image_decoder_init(&d, err)) return err->code;
        kd_status st = kd_image_read(&d, path, im, err);
        kd_image_decoder_free(&d);
        return st;
    }
    return kd_errf(err, KD_ENOTFOUND, "%s: no image with id %lld", cfg->gt_path, cfg->image_id);
}

kd_status kd_plot_draw_run(const kd_plot_draw_cfg *cfg, kd_err *err)
{
    kd_coco_file gt;
    memset(&gt, 0, sizeof gt);
    if (kd_coco_file_load(cfg->gt_path, &gt, err)) return err->code;
    kd_image im;
    memset(&im, 0, sizeof im);
    kd_status st = image_of(&gt, cfg, &im, err);
    canvas c = {0, 0, NULL};
    if (!st) {
        int s = (MIN_PANEL_H + im.h - 1) / im.h;
        int panels = 1 + cfg->n_results, pw = im.w * s;
        c.w = panels * pw + (panels - 1) * PANEL_GAP, c.h = im.h * s;
        c.rgb = kd_xmalloc((size_t)c.w * (size_t)c.h * 3);
        memset(c.rgb, 255, (size_t)c.w * (size_t)c.h * 3);
        for (int p = 0; p < panels; p++) blit(&c, p * (pw + PANEL_GAP), s, &im);
        for (size_t i = 0; i < gt.n_anns; i++)
            if (gt.anns[i].image_id == cfg->image_id)
                draw_box(&c, 0, s, gt.anns[i].bbox, cat_colour(&gt, gt.anns[i].category_id), gt.anns[i].iscrowd);
        for (int r = 0; !st && r < cfg->n_results; r++)
            st = draw_results(&c, (r + 1) * (pw + PANEL_GAP), s, &gt, cfg->results[r], cfg, err);
        if (!st) st = png_write(cfg->out_path, &c, err);
    }
    free(c.rgb);
    kd_image_free(&im);
    kd_coco_file_free(&gt);
    return st;
}
