/* coco_json.h — the COCO JSON formats: an `instances_*.json` annotation file and a
 * detection results file, parsed into flat arrays exactly as written (no filtering:
 * the training index (worker/data) and the evaluator (worker/eval) apply their own rules).
 *
 * Numbers are kept as double so the evaluator can match pycocotools bit for bit.
 * Every malformed element is reported with its path, e.g.
 *   "instances_val.json: annotations[12] (id 907): field 'bbox' must be an array of 4 numbers"
 *   "instances_val.json: annotations[3] (id 18): image_id 999 is not in images"
 *   "instances_val.json: annotations[3] (id 18): category_id 12 is not in categories"
 * and nothing is kept of a file that failed (the output is left empty).
 */
#ifndef KD_COCO_JSON_H
#define KD_COCO_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "proto/status.h"

typedef struct kd_coco_image {
    int64_t id;
    int32_t width, height;
    uint32_t file_name_off; /* offset into kd_coco_file.strings */
} kd_coco_image;

typedef struct kd_coco_ann {
    int64_t id, image_id;
    int32_t category_id;
    int32_t iscrowd;  /* 0 or 1 */
    double bbox[4];   /* x, y, w, h in pixels, as written */
    double area;      /* the annotation's 'area' field (pycocotools uses it for area ranges) */
} kd_coco_ann;

typedef struct kd_coco_category {
    int32_t id;
    uint32_t name_off; /* offset into kd_coco_file.strings */
} kd_coco_category;

typedef struct kd_coco_file {
    kd_coco_image *images;
    size_t n_images;
    kd_coco_ann *anns;
    size_t n_anns;
    kd_coco_category *cats;
    size_t n_cats;
    char *strings; /* NUL-terminated file and category names */
    size_t strings_bytes;
} kd_coco_file;

/* Parse an instances file. Checks types and required fields (images: id, width, height,
 * file_name; annotations: id, image_id, category_id, bbox, area, iscrowd (default 0 when
 * absent); categories: id, name), duplicate ids, dangling image ids and unknown category ids. */
kd_status kd_coco_file_load(const char *path, kd_coco_file *out, kd_err *err);
/* The same from memory (name is used in messages); text need not be NUL-terminated. */
kd_status kd_coco_file_parse(const char *name, const char *text, size_t n_bytes, kd_coco_file *out, kd_err *err);
void kd_coco_file_free(kd_coco_file *f);
static inline const char *kd_coco_str(const kd_coco_file *f, uint32_t off) { return f->strings + off; }

/* One detection of a results file: [{"image_id", "category_id", "bbox": [x,y,w,h], "score"}]. */
typedef struct kd_coco_det {
    int64_t image_id;
    int32_t category_id;
    double bbox[4];
    double score;
} kd_coco_det;

/* Parse a results file (a JSON array). Type errors and non-finite numbers are reported with
 * the element's index; semantic checks against a ground-truth file are the evaluator's job. */
kd_status kd_coco_results_load(const char *path, kd_coco_det **out, size_t *n_out, kd_err *err);
/* Write detections in the same format (bbox and score with enough digits to round-trip). */
kd_status kd_coco_results_write(const char *path, const kd_coco_det *dets, size_t n, kd_err *err);

#endif
