/* batch_file.c — the ground truth of a batch file, the format crosskd-inspect reads with
 * --batch and the model and distillation tests use for their fixtures (safetensors):
 *   img          float32 (N, 3, H, W), normalised and padded
 *   img_shape    int32 (N, 2), each image's height and width before padding
 *   gt_bboxes.n  float32 (M, 4), x1 y1 x2 y2 in pixels, for image n
 *   gt_labels.n  int32 (M), labels 0..K-1
 * The kd_image_gt entries point into the file's tensors, so the file outlives them.
 */
#include "worker/model/model.h"

#include <stdio.h>
#include <stdlib.h>

kd_status kd_batch_file_gts(const kd_tfile *bf, const char *path, const kd_tf_tensor **img_out,
                            kd_image_gt **gts_out, kd_err *err)
{
    const kd_tf_tensor *img = kd_tfile_get(bf, "img"), *ish = kd_tfile_get(bf, "img_shape");
    if (!img || img->dtype != KD_TF_F32 || img->ndim != 4 || img->shape[1] != 3)
        return kd_errf(err, KD_EINVAL, "%s: 'img' must be float32 (N, 3, H, W)", path);
    int N = (int)img->shape[0];
    if (!ish || ish->dtype != KD_TF_I32 || ish->ndim != 2 || ish->shape[0] != N || ish->shape[1] != 2)
        return kd_errf(err, KD_EINVAL, "%s: 'img_shape' must be int32 (%d, 2)", path, N);
    kd_image_gt *gts = calloc((size_t)(N > 0 ? N : 1), sizeof *gts);
    if (!gts) return kd_errf(err, KD_ENOMEM, "%s: out of memory", path);
    for (int i = 0; i < N; i++) {
        char nb[64], nl[64];
        snprintf(nb, sizeof nb, "gt_bboxes.%d", i);
        snprintf(nl, sizeof nl, "gt_labels.%d", i);
        const kd_tf_tensor *b = kd_tfile_get(bf, nb), *l = kd_tfile_get(bf, nl);
        if (!b || !l || b->dtype != KD_TF_F32 || l->dtype != KD_TF_I32 || b->ndim != 2 || b->shape[1] != 4 ||
            l->ndim != 1 || l->shape[0] != b->shape[0]) {
            free(gts);
            return kd_errf(err, KD_EINVAL, "%s: image %d needs %s float32 (M, 4) and %s int32 (M)", path, i, nb, nl);
        }
        gts[i] = (kd_image_gt){(int)b->shape[0], b->data, l->data, ((const int32_t *)ish->data)[2 * i],
                               ((const int32_t *)ish->data)[2 * i + 1]};
    }
    *img_out = img;
    *gts_out = gts;
    return KD_OK;
}
