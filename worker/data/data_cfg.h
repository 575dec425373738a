/* data_cfg.h — every parameter of the data path, as one plain struct with MMDetection's
 * defaults (configs/_base_/datasets/coco_detection.py and the GFL data preprocessor).
 * The YAML option table maps its keys onto these fields; nothing here parses YAML.
 * Strings are fixed-size arrays so the struct can be copied and broadcast as bytes.
 */
#ifndef KD_DATA_CFG_H
#define KD_DATA_CFG_H

#include <stdint.h>

#include "proto/status.h"

#define KD_DATA_PATH_BYTES 1024

typedef enum kd_bad_image_policy {
    KD_BAD_IMAGE_SKIP = 0,    /* drop the image from its batch, take the next one of the stream */
    KD_BAD_IMAGE_REPLACE = 1, /* put a mean-coloured image of the JSON size, no boxes, in its place */
} kd_bad_image_policy;

typedef struct kd_data_cfg {
    char data_root[KD_DATA_PATH_BYTES];  /* prefix of ann_file and img_prefix when they are relative */
    char ann_file[KD_DATA_PATH_BYTES];   /* e.g. "annotations/instances_train2017.json" */
    char img_prefix[KD_DATA_PATH_BYTES]; /* e.g. "train2017/" */
    char index_cache[KD_DATA_PATH_BYTES];/* "" = "<ann_file>.kdidx" beside it; "none" = no cache */
    int32_t scale_w, scale_h;            /* Resize scale, keep_ratio: (1333, 800) */
    float flip_prob;                     /* RandomFlip prob: 0.5 (0 for test) */
    float mean[3], std[3];               /* RGB order, 0-255 scale */
    int32_t to_rgb;                      /* bgr_to_rgb: 1 (mean/std are then in RGB order) */
    int32_t pad_divisor;                 /* pad_size_divisor: 32 */
    int32_t batch_size;                  /* per rank: 2 */
    int32_t num_workers;                 /* loader threads: 4 */
    int32_t prefetch_batches;            /* ready batches kept ahead of the step: 2 */
    int32_t group_by_aspect;             /* AspectRatioBatchSampler: 1 */
    int32_t shuffle;                     /* DefaultSampler(shuffle=True): 1 */
    int32_t drop_last;                   /* 0 */
    kd_bad_image_policy on_bad_image;    /* skip */
    int32_t filter_empty_gt;             /* filter_cfg.filter_empty_gt: 1 */
    int32_t min_size;                    /* filter_cfg.min_size: 32 */
    int32_t test_mode;                   /* 1 = keep every image, no filtering (val/test) */
    uint64_t seed;                       /* sampler permutation and flip decisions */
} kd_data_cfg;

/* Fill MMDetection's training defaults (paths empty). */
void kd_data_cfg_defaults(kd_data_cfg *c);
/* Check ranges; the message names the field ("data: batch_size must be >= 1"). */
kd_status kd_data_cfg_check(const kd_data_cfg *c, kd_err *err);
/* Join data_root and a relative path into out (absolute paths are kept as they are). */
void kd_data_path_join(const kd_data_cfg *c, const char *rel, char *out, size_t out_bytes);

#endif
