/* coco_index.h — the packed training index of a COCO instances file.
 *
 * Built once (rank 0) from kd_coco_file with MMDetection 3.x CocoDataset semantics:
 *   - labels: the file's category ids sorted ascending -> 0..K-1;
 *   - per annotation, in JSON order: dropped if its box has no overlap with the image,
 *     area <= 0, w < 1 or h < 1; kept boxes become xyxy = (x, y, x+w, y+h) (summed in
 *     double, stored as float32, original-image pixels, not clipped); crowd boxes are kept
 *     with ignore = 1;
 *   - images in JSON order; unless test_mode, an image is kept iff (!filter_empty_gt or it
 *     has at least one raw annotation) and min(width, height) >= min_size.
 * The whole index is one contiguous byte buffer (header + 8-byte aligned sections), so it
 * is broadcast with one MPI_Bcast and cached on disk as one zstd frame.
 */
#ifndef KD_COCO_INDEX_H
#define KD_COCO_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "proto/coco_json.h"
#include "proto/status.h"
#include "worker/data/data_cfg.h"

typedef struct kd_coco_index_opts {
    int32_t filter_empty_gt; /* 1 */
    int32_t min_size;        /* 32 */
    int32_t test_mode;       /* 0; 1 keeps every image */
} kd_coco_index_opts;

typedef struct kd_coco_index_image {
    int64_t id;
    int32_t width, height;   /* from the JSON */
    uint32_t file_name_off;  /* into strings */
    uint32_t box_begin;      /* first box of this image in boxes/labels/ignore */
    uint32_t n_boxes;        /* kept boxes, crowd included */
    uint32_t n_ignored;      /* how many of them are crowd */
} kd_coco_index_image;

typedef struct kd_coco_index {
    uint32_t n_images, n_boxes, n_classes;
    uint32_t n_images_raw;       /* images in the file before filtering */
    const kd_coco_index_image *images;
    const float *boxes;          /* [n_boxes][4] x1, y1, x2, y2 */
    const int32_t *labels;       /* [n_boxes] 0..n_classes-1 */
    const uint8_t *ignore;       /* [n_boxes] 1 = crowd */
    const int32_t *cat_ids;      /* [n_classes] label -> COCO category id */
    const uint32_t *cat_name_offs; /* [n_classes] into strings */
    const char *strings;
    void *blob;                  /* owns everything above */
    size_t blob_bytes;
} kd_coco_index;

static inline const char *kd_coco_index_file_name(const kd_coco_index *x, uint32_t i)
{
    return x->strings + x->images[i].file_name_off;
}

void kd_coco_index_opts_defaults(kd_coco_index_opts *o);
/* filter_empty_gt, min_size and test_mode of a data config. */
void kd_coco_index_opts_from_cfg(const kd_data_cfg *c, kd_coco_index_opts *o);
kd_status kd_coco_index_build(const kd_coco_file *f, const kd_coco_index_opts *o, kd_coco_index *out, kd_err *err);
/* Adopt a serialized index (e.g. received by MPI_Bcast); takes ownership of a malloc'd
 * buffer (freed on failure too) and validates every offset and count. */
kd_status kd_coco_index_from_bytes(void *blob, size_t blob_bytes, kd_coco_index *out, kd_err *err);
void kd_coco_index_free(kd_coco_index *x);

/* Cache: header (magic, version, source size and mtime, options, raw size, checksum) +
 * one zstd frame. Read returns KD_ENOTFOUND when absent, KD_ECORRUPT when stale or damaged. */
kd_status kd_coco_index_cache_write(const kd_coco_index *x, const char *cache_path, const char *src_path,
                                    const kd_coco_index_opts *o, kd_err *err);
kd_status kd_coco_index_cache_read(const char *cache_path, const char *src_path, const kd_coco_index_opts *o,
                                   kd_coco_index *out, kd_err *err);

/* Everything rank 0 does: read the cache when it is valid, else parse and build, then try to
 * write the cache (a failed write is only a warning). cache_path NULL or "" = src + ".kdidx";
 * "none" = no cache. *from_cache (may be NULL) tells which path was taken. */
kd_status kd_coco_index_load(const char *src_path, const char *cache_path, const kd_coco_index_opts *o,
                             kd_coco_index *out, int *from_cache, kd_err *err);

#endif
