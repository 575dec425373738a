/* data_cfg.c — defaults, range checks and path joining for kd_data_cfg (see data_cfg.h).
 * Defaults are MMDetection 3.x's COCO detection training settings. */
#include "worker/data/data_cfg.h"

#include <stdio.h>
#include <string.h>

void kd_data_cfg_defaults(kd_data_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->scale_w = 1333;
    c->scale_h = 800;
    c->flip_prob = 0.5f;
    c->mean[0] = 123.675f, c->mean[1] = 116.28f, c->mean[2] = 103.53f;
    c->std[0] = 58.395f, c->std[1] = 57.12f, c->std[2] = 57.375f;
    c->to_rgb = 1;
    c->pad_divisor = 32;
    c->batch_size = 2;
    c->num_workers = 4;
    c->prefetch_batches = 2;
    c->group_by_aspect = 1;
    c->shuffle = 1;
    c->drop_last = 0;
    c->on_bad_image = KD_BAD_IMAGE_SKIP;
    c->filter_empty_gt = 1;
    c->min_size = 32;
    c->test_mode = 0;
    c->seed = 0;
}

kd_status kd_data_cfg_check(const kd_data_cfg *c, kd_err *err)
{
    if (c->scale_w < 1 || c->scale_h < 1) return kd_errf(err, KD_EINVAL, "data: scale must be two positive sizes");
    if (!(c->flip_prob >= 0.0f && c->flip_prob <= 1.0f))
        return kd_errf(err, KD_EINVAL, "data: flip_prob must be in [0, 1]");
    for (int i = 0; i < 3; i++)
        if (!(c->std[i] > 0.0f)) return kd_errf(err, KD_EINVAL, "data: std[%d] must be > 0", i);
    if (c->pad_divisor < 1) return kd_errf(err, KD_EINVAL, "data: pad_divisor must be >= 1");
    if (c->batch_size < 1) return kd_errf(err, KD_EINVAL, "data: batch_size must be >= 1");
    if (c->num_workers < 0 || c->num_workers > 256)
        return kd_errf(err, KD_EINVAL, "data: num_workers must be in [0, 256]");
    if (c->prefetch_batches < 1 || c->prefetch_batches > 64)
        return kd_errf(err, KD_EINVAL, "data: prefetch_batches must be in [1, 64]");
    if (c->on_bad_image != KD_BAD_IMAGE_SKIP && c->on_bad_image != KD_BAD_IMAGE_REPLACE)
        return kd_errf(err, KD_EINVAL, "data: on_bad_image must be skip or replace");
    if (c->min_size < 0) return kd_errf(err, KD_EINVAL, "data: min_size must be >= 0");
    return KD_OK;
}

void kd_data_path_join(const kd_data_cfg *c, const char *rel, char *out, size_t out_bytes)
{
    if (rel[0] == '/' || !c->data_root[0]) {
        snprintf(out, out_bytes, "%s", rel);
        return;
    }
    size_t n = strlen(c->data_root);
    snprintf(out, out_bytes, "%s%s%s", c->data_root, c->data_root[n - 1] == '/' ? "" : "/", rel);
}
