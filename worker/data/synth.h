/* synth.h — a synthetic COCO-format detection dataset, deterministic from a seed.
 *
 * Layout written under out_dir (the same as COCO's, so the same loader reads both):
 *   train/<012d id>.jpg, val/<012d id>.jpg,
 *   annotations/instances_train.json, annotations/instances_val.json
 * Each category is a (shape, colour, texture) triple; categories share shapes, colours or
 * textures with others, so no single cue separates them. Each image has a textured
 * background, distractor clutter (shapes and strokes of no category), objects at COCO's
 * small/medium/large sizes with overlaps and partial occlusion, occasional crowd groups
 * (one iscrowd=1 box), pixel noise, and its own size and aspect ratio. Boxes are the tight
 * boxes of each object's visible pixels; `area` is its visible pixel count.
 * Category ids are non-contiguous (like COCO's): id = i + 1 + i / 3.
 *
 * Annotations-only mode writes the JSON files without images, with COCO-like 640-pixel
 * image sizes and polygon/RLE segmentation payloads shaped like COCO's, for load
 * benchmarks (defaults: 118,287 train and 5,000 val images, about 860k train boxes).
 */
#ifndef KD_SYNTH_H
#define KD_SYNTH_H

#include <stdint.h>

#include "proto/status.h"

#define KD_SYNTH_MAX_CATEGORIES 24     /* drawn categories */
#define KD_SYNTH_MAX_CATEGORIES_ANN 80 /* annotations-only mode */

typedef struct kd_synth_cfg {
    const char *out_dir;
    uint64_t seed;              /* 0 */
    int32_t n_train, n_val;     /* 2000, 200 (annotations-only: 118287, 5000) */
    int32_t size_min, size_max; /* image long side in pixels: 192..320 (annotations-only: 640) */
    int32_t n_categories;       /* 8 (1..KD_SYNTH_MAX_CATEGORIES) */
    int32_t objects_min, objects_max; /* objects per image: 1..8 (annotations-only: 1..14) */
    int32_t jpeg_quality;       /* 90 */
    int32_t annotations_only;   /* 0 */
    int32_t progress;           /* 1: a progress line on stderr */
} kd_synth_cfg;

void kd_synth_cfg_defaults(kd_synth_cfg *c, int annotations_only);
kd_status kd_synth_cfg_check(const kd_synth_cfg *c, kd_err *err);
kd_status kd_synth_generate(const kd_synth_cfg *c, kd_err *err);

/* ---- internals shared by synth.c and synth_draw.c ---------------------------------- */

typedef struct kd_rng { uint64_t s[4]; } kd_rng;
void kd_rng_seed(kd_rng *r, uint64_t seed, uint64_t stream);
uint64_t kd_rng_next(kd_rng *r);
double kd_rng_uniform(kd_rng *r);                 /* [0, 1) */
int kd_rng_int(kd_rng *r, int lo, int hi);        /* [lo, hi] */

typedef struct kd_synth_category {
    const char *name;
    int shape, texture;
    uint8_t rgb[3], rgb2[3];    /* main and texture colour */
} kd_synth_category;

/* The category table (deterministic; independent of the seed). */
const kd_synth_category *kd_synth_category_get(int i);

typedef struct kd_synth_canvas {
    int w, h;
    uint8_t *rgb;    /* [h][w][3] */
    int16_t *owner;  /* [h][w] object index drawn last at the pixel, -1 background/clutter */
} kd_synth_canvas;

/* One shape instance: centre, half sizes, rotation, colours, texture. */
typedef struct kd_synth_shape {
    int shape, texture;
    double cx, cy, rx, ry, angle;
    uint8_t rgb[3], rgb2[3];
    double tex_scale, tex_phase;
} kd_synth_shape;

enum { KD_SYNTH_N_SHAPES = 10, KD_SYNTH_N_TEXTURES = 5 };

void kd_synth_background(kd_synth_canvas *c, kd_rng *r);
/* Draw a shape; pixels it covers get owner = owner_id (use -1 for clutter). Returns how
 * many pixels it owns (at least half covered). */
long kd_synth_draw_shape(kd_synth_canvas *c, const kd_synth_shape *s, int owner_id);
void kd_synth_draw_stroke(kd_synth_canvas *c, kd_rng *r);
void kd_synth_noise(kd_synth_canvas *c, kd_rng *r);

#endif
