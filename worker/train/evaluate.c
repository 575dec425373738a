/* evaluate.c — periodic COCO evaluation of the student during training.
 *
 * Every validation image is inferred exactly once whatever the world size: rank r takes
 * the images i with i % world == r (no sampler padding), in batches of
 * val_dataloader.batch_size, without flip. Detections are converted to COCO results
 * (category id from the index, [x, y, w, h] with w and h computed in double from the float
 * corners, score widened to double), then kd_eval_dist_run gathers them on rank 0,
 * evaluates them against the ground truth, writes <work_dir>/results/iter_<N>.bbox.json and
 * broadcasts the 12 numbers. Images go through the trainer's device batch buffer (planned
 * for the largest training or validation batch), so evaluation allocates no device memory.
 */
#include "worker/train/train_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "proto/log.h"
#include "worker/eval/dist_eval.h"

static size_t infer_batch(kd_trainer *t, const kd_batch *b, kd_coco_det **dets, size_t *n, size_t *cap,
                          kd_det *tmp, kd_err *err)
{
    if (b->n == 0) return 0;
    size_t bytes = (size_t)b->n * 3 * b->H * b->W * sizeof(float);
    float *img = t->img_dev; /* the training batch's device buffer, planned for both */
    t->be->copy_from_host(t->be, img, b->img, bytes);
    kd_status st = kd_model_forward(t->student, img, b->n, b->H, b->W, err);
    size_t added = 0;
    for (int i = 0; !st && i < b->n; i++) {
        const kd_batch_image *mi = &b->meta[i];
        int k = kd_det_predict(t->student, i, mi->img_h, mi->img_w, mi->scale_h, mi->scale_w, tmp);
        if (*n + (size_t)k > *cap) {
            *cap = (*n + (size_t)k) * 2;
            *dets = kd_xrealloc(*dets, *cap * sizeof **dets);
        }
        for (int j = 0; j < k; j++) {
            kd_coco_det *o = &(*dets)[(*n)++];
            o->image_id = mi->image_id;
            o->category_id = t->val_idx.cat_ids[tmp[j].label];
            o->bbox[0] = tmp[j].x1;
            o->bbox[1] = tmp[j].y1;
            o->bbox[2] = (double)tmp[j].x2 - (double)tmp[j].x1;
            o->bbox[3] = (double)tmp[j].y2 - (double)tmp[j].y1;
            o->score = tmp[j].score;
            added++;
        }
    }
    return st ? (size_t)-1 : added;
}

kd_status kd_train_evaluate(kd_trainer *t, double stats[12], kd_err *err)
{
    kd_loader_ctx *ctx = NULL;
    if (kd_loader_ctx_create(&t->val_dcfg, &t->val_idx, &ctx, err)) return err->code;
    const int world = t->d->size, rank = t->d->rank, bs = (int)t->cfg->val_batch_size;
    uint32_t *idx = kd_xmalloc(sizeof *idx * (size_t)bs);
    kd_det *tmp = kd_xmalloc(sizeof *tmp * (size_t)t->cfg->model.test_cfg.max_per_img);
    kd_coco_det *dets = NULL;
    size_t n = 0, cap = 0;
    kd_batch b;
    memset(&b, 0, sizeof b);
    kd_status st = KD_OK;
    double t0 = MPI_Wtime();
    for (uint32_t i = (uint32_t)rank; !st && i < t->val_idx.n_images;) {
        uint32_t count = 0;
        for (; count < (uint32_t)bs && i < t->val_idx.n_images; i += (uint32_t)world) idx[count++] = i;
        kd_loader_build_batch(ctx, idx, count, 0, &b);
        if (infer_batch(t, &b, &dets, &n, &cap, tmp, err) == (size_t)-1) st = err->code;
    }
    kd_batch_free(&b);
    kd_loader_ctx_destroy(ctx);
    free(idx);
    free(tmp);
    /* Every rank takes part in the gather, even after a local failure (then with nothing). */
    long long local_st = st, any = st;
    KD_CHECK_MPI(MPI_Allreduce(&local_st, &any, 1, MPI_LONG_LONG, MPI_MAX, t->d->comm));
    if (any) {
        free(dets);
        return st ? st : kd_errf(err, KD_EINVAL, "evaluation failed on another rank");
    }
    char dir[KD_CFG_STR_BYTES + 16], path[KD_CFG_STR_BYTES + 64];
    snprintf(dir, sizeof dir, "%s/results", t->work_dir);
    if (rank == 0) mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/iter_%lld.bbox.json", dir, t->iter);
    kd_eval_result r;
    memset(&r, 0, sizeof r);
    st = kd_eval_dist_run(t->d, rank == 0 ? &t->val_gt : NULL, dets, n, path, &r, err);
    free(dets);
    if (st) return st;
    memcpy(stats, r.stats, sizeof r.stats);
    if (rank == 0) {
        KD_INFO("Epoch(val) [%lld] %u images in %.1f s, results in %s", t->epoch, t->val_idx.n_images,
                MPI_Wtime() - t0, path);
        kd_eval_summary_print(stderr, &r);
    }
    kd_eval_result_free(&r);
    return KD_OK;
}
