/* loader.h — loader threads that turn the sampler's batches into network input ahead of
 * the training step, into a fixed pool of reused batch buffers.
 *
 * A batch (kd_batch) is what the model receives:
 *   img: float32 [n][3][H][W], RGB (when to_rgb), (x - mean) / std, each image at the
 *        top-left and the rest 0 (H, W = the batch's largest resized size rounded up to
 *        pad_divisor);
 *   per image (kd_batch_image): dataset index and image id, original (h, w), resized
 *        img_shape (h, w), scale factors (w, h), flip flag, and ranges into the box arrays;
 *   gt_boxes/gt_labels: x1, y1, x2, y2 in resized-image pixels (float32) and contiguous
 *        labels (int32); ig_boxes/ig_labels: crowd boxes, the same way, kept apart.
 * Batches come out in sampler order whatever the thread timing, and their content depends
 * only on (config, index, world, rank, epoch), so runs are reproducible.
 * Bad images (missing, truncated, corrupt) are logged with the file name and either
 * dropped from their batch (skip: n shrinks, possibly to 0, the step still happens so
 * ranks stay in lockstep) or replaced by an all-zero (mean-coloured) image of the JSON
 * size with no boxes (replace). The run never stops for one.
 */
#ifndef KD_LOADER_H
#define KD_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "proto/status.h"
#include "worker/data/coco_index.h"
#include "worker/data/data_cfg.h"
#include "worker/data/sampler.h"

typedef struct kd_batch_image {
    int64_t image_id;
    uint32_t index;          /* into kd_coco_index.images */
    int32_t ori_h, ori_w;    /* decoded size */
    int32_t img_h, img_w;    /* resized (img_shape) */
    double scale_w, scale_h; /* img_w / ori_w, img_h / ori_h */
    int32_t flip;
    int32_t replaced;        /* 1: the file was bad and this is a blank stand-in */
    uint32_t gt_begin, n_gt; /* into gt_boxes / gt_labels */
    uint32_t ig_begin, n_ig; /* into ig_boxes / ig_labels */
} kd_batch_image;

typedef struct kd_batch {
    int32_t n;               /* images (<= batch_size) */
    int32_t H, W;            /* padded size of img */
    float *img;              /* [n][3][H][W] */
    size_t img_cap_elems;
    kd_batch_image *meta;    /* [batch_size] */
    float *gt_boxes;         /* [n_gt][4] */
    int32_t *gt_labels;      /* [n_gt] */
    uint32_t n_gt;
    float *ig_boxes;         /* [n_ig][4] */
    int32_t *ig_labels;      /* [n_ig] */
    uint32_t n_ig;
    size_t box_cap_elems;    /* capacity of each box array, in boxes */
    int64_t epoch;
    uint32_t batch_index;    /* position in the epoch */
    uint32_t n_bad;          /* bad files met while building it */
    double build_seconds;    /* worker time spent on it */
} kd_batch;

typedef struct kd_loader_stats {
    uint64_t batches, images, bad_images;
    double wait_seconds;     /* total time kd_loader_next waited (data_time) */
    double build_seconds;    /* total worker time */
} kd_loader_stats;

typedef struct kd_loader kd_loader;

/* The index is borrowed and must outlive the loader. num_workers = 0 builds batches in
 * the caller's thread inside kd_loader_next. */
kd_status kd_loader_create(const kd_data_cfg *cfg, const kd_coco_index *idx, uint32_t world, uint32_t rank,
                           kd_loader **out, kd_err *err);
void kd_loader_destroy(kd_loader *l);
uint32_t kd_loader_num_batches(const kd_loader *l); /* per epoch, this rank */
/* (Re)start producing at a cursor (epoch, batches already consumed). */
void kd_loader_start(kd_loader *l, kd_sampler_cursor at);
/* The next batch in order; valid until the following call (the previous batch is then
 * given back to the pool). KD_ENOTFOUND at the end of the epoch. *wait_seconds (may be
 * NULL) is how long the call waited for data: the step's data_time. */
kd_status kd_loader_next(kd_loader *l, const kd_batch **out, double *wait_seconds);
/* Where to resume: epoch and batches handed out so far. */
kd_sampler_cursor kd_loader_cursor(const kd_loader *l);
kd_loader_stats kd_loader_get_stats(const kd_loader *l);

/* Build one batch from dataset indices in the caller's thread (the loader's inner step;
 * also used by tests and benchmarks). ctx is created by kd_loader_ctx_create. */
typedef struct kd_loader_ctx kd_loader_ctx;
kd_status kd_loader_ctx_create(const kd_data_cfg *cfg, const kd_coco_index *idx, kd_loader_ctx **out, kd_err *err);
void kd_loader_ctx_destroy(kd_loader_ctx *c);
void kd_loader_build_batch(kd_loader_ctx *c, const uint32_t *indices, uint32_t count, int64_t epoch, kd_batch *b);
void kd_batch_free(kd_batch *b);

#endif
