/* setup.c — what a rank builds before the first step: the data indices (rank 0 parses or
 * reads the cache, every rank receives the same packed bytes), the loaders, the student
 * (rank 0 initialises or loads it, every rank receives the same parameters), the loss, the
 * gradient transport (MPI or NCCL, worker/grad_sync.h) with its buckets fed by the
 * student's backward as it goes, and the optimiser's schedule; with a distillation method, the
 * distiller (its frozen teacher is loaded by every rank from teacher_ckpt: it is never
 * broadcast, trained or checkpointed). The largest padded batch is computed
 * from the indices, so the activation arena is planned exactly once for it.
 */
#include "worker/train/train_internal.h"

#include <stdlib.h>
#include <string.h>

#include "proto/log.h"
#include "worker/data/transform.h"

static void data_cfg_from(const kd_config *c, const kd_dataset_cfg *ds, int train, kd_data_cfg *o)
{
    kd_data_cfg_defaults(o);
    snprintf(o->data_root, sizeof o->data_root, "%s", c->data_root);
    snprintf(o->ann_file, sizeof o->ann_file, "%s", ds->ann_file);
    snprintf(o->img_prefix, sizeof o->img_prefix, "%s", ds->img_prefix);
    o->scale_w = (int32_t)c->resize_scale.v[0];
    o->scale_h = (int32_t)c->resize_scale.v[1];
    for (int i = 0; i < 3; i++) {
        o->mean[i] = (float)c->model.data_preprocessor.mean.v[i];
        o->std[i] = (float)c->model.data_preprocessor.std.v[i];
    }
    o->to_rgb = c->model.data_preprocessor.bgr_to_rgb;
    o->pad_divisor = (int32_t)c->model.data_preprocessor.pad_size_divisor;
    o->on_bad_image = (kd_bad_image_policy)c->on_bad_image;
    o->filter_empty_gt = ds->filter_empty_gt;
    o->min_size = (int32_t)ds->min_size;
    o->seed = (uint64_t)c->seed;
    if (train) {
        o->flip_prob = (float)c->flip_prob;
        o->batch_size = (int32_t)c->train_batch_size;
        o->num_workers = (int32_t)c->train_num_workers;
        o->group_by_aspect = c->batch_sampler == 0;
        o->shuffle = c->shuffle;
    } else {
        o->flip_prob = 0;
        o->batch_size = (int32_t)c->val_batch_size;
        o->num_workers = (int32_t)c->val_num_workers;
        o->shuffle = 0;
        o->group_by_aspect = 0;
        o->test_mode = 1;
    }
}

/* Rank 0 loads the index (cache or parse); the packed bytes go to every rank. The status
 * travels first so that every rank fails together with rank 0's message. */
static kd_status load_index_bcast(kd_trainer *t, const kd_data_cfg *dc, kd_coco_index *out,
                                  int required, int *present, kd_err *err)
{
    long long hdr[2] = {0, 0}; /* status, blob bytes */
    char path[2 * KD_DATA_PATH_BYTES];
    kd_data_path_join(dc, dc->ann_file, path, sizeof path);
    kd_coco_index local = {0};
    if (t->d->rank == 0) {
        kd_coco_index_opts o;
        kd_coco_index_opts_defaults(&o);
        o.filter_empty_gt = dc->filter_empty_gt;
        o.min_size = dc->min_size;
        o.test_mode = dc->test_mode;
        int from_cache = 0;
        FILE *probe = fopen(path, "rb");
        if (!probe && !required) {
            hdr[0] = -1; /* absent and optional */
        } else {
            if (probe) fclose(probe);
            hdr[0] = kd_coco_index_load(path, NULL, &o, &local, &from_cache, err);
            if (!hdr[0]) {
                hdr[1] = (long long)local.blob_bytes;
                KD_INFO("%s: %u images (%u in the file), %u boxes, %u classes%s", path, local.n_images,
                        local.n_images_raw, local.n_boxes, local.n_classes, from_cache ? " (from the cache)" : "");
            }
        }
    }
    kd_dist_bcast(t->d, hdr, sizeof hdr, 0);
    char msg[KD_ERR_MSG_BYTES];
    snprintf(msg, sizeof msg, "%s", err && t->d->rank == 0 ? err->msg : "");
    kd_dist_bcast(t->d, msg, sizeof msg, 0);
    *present = hdr[0] != -1;
    if (hdr[0] == -1) return KD_OK;
    if (hdr[0]) return kd_errf(err, (kd_status)hdr[0], "%s", msg);
    void *blob = t->d->rank == 0 ? local.blob : kd_xmalloc((size_t)hdr[1]);
    kd_dist_bcast(t->d, blob, (size_t)hdr[1], 0);
    if (t->d->rank == 0) {
        *out = local;
        return KD_OK;
    }
    return kd_coco_index_from_bytes(blob, (size_t)hdr[1], out, err);
}

/* The largest padded image any batch of this index can hold. */
static void grow_pad(const kd_coco_index *x, const kd_data_cfg *dc, int *pad_h, int *pad_w)
{
    for (uint32_t i = 0; i < x->n_images; i++) {
        int32_t nw, nh;
        double sw, sh;
        kd_resize_shape(x->images[i].width, x->images[i].height, dc->scale_w, dc->scale_h, &nw, &nh, &sw, &sh);
        int ph = kd_pad_to(nh, dc->pad_divisor), pw = kd_pad_to(nw, dc->pad_divisor);
        if (ph > *pad_h) *pad_h = ph;
        if (pw > *pad_w) *pad_w = pw;
    }
}

kd_status kd_train_setup_data(kd_trainer *t, kd_err *err)
{
    const kd_config *c = t->cfg;
    data_cfg_from(c, &c->train_dataset, 1, &t->train_dcfg);
    data_cfg_from(c, &c->val_dataset, 0, &t->val_dcfg);
    int present = 0;
    if (kd_data_cfg_check(&t->train_dcfg, err)) return err->code;
    if (load_index_bcast(t, &t->train_dcfg, &t->train_idx, 1, &present, err)) return err->code;
    if (t->train_idx.n_images == 0)
        return kd_errf(err, KD_EINVAL, "%s: no training image left after filtering", t->train_dcfg.ann_file);
    if (load_index_bcast(t, &t->val_dcfg, &t->val_idx, 0, &t->have_val, err)) return err->code;
    if (!t->have_val) KD_WARN("no validation annotations at %s/%s: evaluation is skipped", c->data_root, c->val_dataset.ann_file);
    if (t->have_val && t->d->rank == 0) {
        char path[2 * KD_DATA_PATH_BYTES];
        kd_data_path_join(&t->val_dcfg, t->val_dcfg.ann_file, path, sizeof path);
        if (kd_coco_file_load(path, &t->val_gt, err)) return err->code;
    }
    t->pad_h = t->pad_w = 32;
    grow_pad(&t->train_idx, &t->train_dcfg, &t->pad_h, &t->pad_w);
    if (t->have_val) grow_pad(&t->val_idx, &t->val_dcfg, &t->pad_h, &t->pad_w);
    if (kd_loader_create(&t->train_dcfg, &t->train_idx, (uint32_t)t->d->size, (uint32_t)t->d->rank, &t->loader, err))
        return err->code;
    t->iters_per_epoch = kd_loader_num_batches(t->loader);
    t->max_iters = c->max_iters > 0 ? c->max_iters : c->max_epochs * t->iters_per_epoch;
    KD_INFO("data: %lld iterations per epoch (%d ranks x %lld images), %lld in all; largest padded image %dx%d",
            t->iters_per_epoch, t->d->size, c->train_batch_size, t->max_iters, t->pad_h, t->pad_w);
    return KD_OK;
}

void kd_train_broadcast_student(kd_trainer *t, int with_momentum)
{
    kd_params *P = &t->student->params;
    if (t->d->size == 1) return;
    if (t->d->rank == 0) t->be->copy_to_host(t->be, t->host_params, P->data, P->total_elems * sizeof(float));
    kd_dist_bcast(t->d, t->host_params, P->total_elems * sizeof(float), 0);
    if (t->d->rank != 0) t->be->copy_from_host(t->be, P->data, t->host_params, P->total_elems * sizeof(float));
    if (!with_momentum) return;
    if (t->d->rank == 0) t->be->copy_to_host(t->be, t->host_mom, P->mom, P->train_elems * sizeof(float));
    kd_dist_bcast(t->d, t->host_mom, P->train_elems * sizeof(float), 0);
    if (t->d->rank != 0) t->be->copy_from_host(t->be, P->mom, t->host_mom, P->train_elems * sizeof(float));
}

static void setup_schedule(kd_trainer *t)
{
    const kd_config *c = t->cfg;
    t->sgd = (kd_sgd_cfg){.momentum = c->momentum, .weight_decay = c->weight_decay};
    kd_lr_schedule *s = &t->sched;
    memset(s, 0, sizeof *s);
    s->base_lr = kd_lr_autoscale(c->lr, c->auto_scale_lr, t->d->size, c->train_batch_size, c->base_batch_size);
    s->warmup_start_factor = c->warmup_start_factor;
    s->warmup_iters = c->warmup_iters;
    s->n_milestones = c->milestones.n;
    for (int i = 0; i < c->milestones.n; i++) s->milestones[i] = (long long)c->milestones.v[i];
    s->gamma = c->gamma;
    KD_INFO("optimiser: SGD lr %.6g (config %.6g, auto scale %s for %d x %lld images), momentum %g, weight decay %g",
            s->base_lr, c->lr, c->auto_scale_lr ? "on" : "off", t->d->size, c->train_batch_size, c->momentum,
            c->weight_decay);
}

/* The student's backward finished the gradients [lo, end): start their buckets. */
static void grads_done(void *ctx, size_t lo) { kd_grad_sync_ready(ctx, lo); }

/* optim_wrapper.type/dtype/loss_scale: the backend's matrix math and the loss scaler. */
static kd_status setup_precision(kd_trainer *t, kd_err *err)
{
    const kd_config *c = t->cfg;
    if (c->amp && kd_rank_backend_set_amp(t->be, c->amp_dtype == 1, err)) return err->code;
    if (c->loss_scale > 0) { /* static: never backs off or grows */
        t->scaling = 1;
        t->scaler = kd_loss_scaler_off();
        t->scaler.scale = (float)c->loss_scale;
    } else if (c->amp && c->amp_dtype == 0) {
        t->scaling = 1;
        t->scaler = kd_loss_scaler_default();
    }
    if (c->amp || t->scaling)
        KD_INFO("precision: %s matrix math, float32 weights and accumulation; loss scale %s %g",
                c->amp ? (c->amp_dtype ? "bfloat16" : "float16") : "float32",
                !t->scaling ? "off" : c->loss_scale > 0 ? "static" : "dynamic from", (double)t->scaler.scale);
    return KD_OK;
}

kd_status kd_train_setup_model(kd_trainer *t, kd_err *err)
{
    const kd_config *c = t->cfg;
    size_t bucket_bytes = (size_t)(c->grad_bucket_mb * 1048576.0);
    kd_model_opts o = {.max_n = (int)c->train_batch_size, .max_h = t->pad_h, .max_w = t->pad_w,
                       .inference = 0, .hold_idx = kd_distill_student_hold_idx(&c->model)};
    if (c->val_batch_size > o.max_n) o.max_n = (int)c->val_batch_size;
    if (kd_model_create(t->be, &c->model, &o, &t->student, err)) return err->code;
    kd_params *P = &t->student->params;
    t->host_params = kd_xmalloc(P->total_elems * sizeof(float) + 1);
    t->host_mom = kd_xmalloc(P->train_elems * sizeof(float) + 1);
    long long st = KD_OK;
    if (t->d->rank == 0) {
        if (c->load_from[0]) st = kd_model_load(t->student, c->load_from, err);
        else kd_model_init(t->student, (uint64_t)c->seed);
    }
    kd_dist_bcast(t->d, &st, sizeof st, 0);
    if (st) return t->d->rank == 0 ? (kd_status)st : kd_errf(err, (kd_status)st, "rank 0 could not load %s", c->load_from);
    t->be->zero(t->be, P->mom, P->train_elems * sizeof(float));
    kd_train_broadcast_student(t, 0);
    KD_INFO("student: GFL ResNet-%lld (base width %lld), %zu parameters (%zu trainable), activations %.1f MiB",
            c->model.backbone.depth, c->model.backbone.base_channels, P->total_elems, P->train_elems,
            (double)kd_model_activation_bytes(t->student) / (1 << 20));
    if (c->model.kd_cfg.method != KD_KD_NONE &&
        kd_distiller_create(t->be, c, t->a->config_path, NULL, t->student, &t->distill, err))
        return err->code;
    kd_status st_comm = kd_grad_comm_open(t->d, t->be, c->dist_timeout, &t->comm, err);
    if (st_comm) return st_comm;
    if (t->distill && (t->adapter = kd_distiller_trainable(t->distill))) {
        kd_grad_sync_init(&t->adapter_sync, t->comm, t->adapter->grad, t->adapter->train_elems, bucket_bytes);
        t->host_adapter = kd_xmalloc(2 * t->adapter->train_elems * sizeof(float));
        KD_INFO("distillation: a trainable 1x1 adapter of %zu parameters (optimised and checkpointed with the student)",
                t->adapter->train_elems);
    }
    t->loss = kd_det_loss_create(t->student);
    t->gts = kd_xcalloc((size_t)o.max_n, sizeof *t->gts);
    kd_grad_sync_init(&t->sync, t->comm, P->grad, P->train_elems, bucket_bytes);
    if (c->grad_sync_overlap) {
        t->student->grads_done = grads_done;
        t->student->grads_done_ctx = &t->sync;
    }
    KD_INFO("gradients: averaged over %d rank(s) in %d bucket%s of up to %.3g MiB, transport %s, %s", t->d->size,
            t->sync.n_buckets, t->sync.n_buckets > 1 ? "s" : "", c->grad_bucket_mb, kd_grad_comm_name(t->comm),
            c->grad_sync_overlap ? "each started as soon as backward has finished it" : "all started after backward");
    setup_schedule(t);
    return setup_precision(t, err);
}

void kd_train_teardown(kd_trainer *t)
{
    if (t->loader) kd_loader_destroy(t->loader);
    if (t->loss) kd_det_loss_destroy(t->loss);
    kd_distiller_destroy(t->distill);
    kd_grad_sync_free(&t->sync);
    kd_grad_sync_free(&t->adapter_sync);
    kd_grad_comm_close(t->comm);
    free(t->host_adapter);
    if (t->student) kd_model_destroy(t->student);
    kd_coco_index_free(&t->train_idx);
    if (t->have_val) kd_coco_index_free(&t->val_idx);
    if (t->d->rank == 0 && t->have_val) kd_coco_file_free(&t->val_gt);
    free(t->gts);
    free(t->host_params);
    free(t->host_mom);
}
