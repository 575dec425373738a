/* state.c — checkpoints of a training run and resuming from them (DESIGN.md §8).
 *
 * A checkpoint holds everything needed to continue as if never stopped: the student's
 * parameters and buffers (one section, byte planes), its momentum, and the progress
 * (iterations done, epoch and batch cursor, last evaluation). The learning rate is
 * recomputed from the iteration; the data order is a pure function of (seed, epoch, world,
 * rank), so the cursor is the whole sampler state; augmentation draws are per sample from
 * (seed, epoch, index), so there is no RNG state to keep. The teacher is not saved.
 *
 * Only rank 0 writes (to <work_dir>/checkpoints/, atomically, keeping the last N); the
 * outcome is broadcast so every rank agrees. A failed write is reported and training goes
 * on. Resume: rank 0 finds and verifies the checkpoint, every rank receives its contents.
 * With a trainable distillation adapter (worker/distill), its parameters and momentum are
 * one more section, "adapter" (parameters then momentum). With loss scaling, the scaler's
 * state is the section "loss_scaler" (scale and the count of finite steps), so a dynamic
 * scale resumes where it was; a checkpoint without it starts the scaler afresh.
 */
#include "worker/train/train_internal.h"

#include <string.h>
#include <sys/stat.h>

#include "proto/checkpoint.h"
#include "proto/log.h"

typedef struct kd_progress {
    int64_t iter, epoch, batch_in_epoch, last_eval_iter;
    double last_ap;
} kd_progress;

static void ckpt_dir(const kd_trainer *t, char *out, size_t cap)
{
    snprintf(out, cap, "%s/checkpoints", t->work_dir);
}

kd_status kd_train_save_checkpoint(kd_trainer *t, char *path_out, size_t cap, kd_err *err)
{
    kd_params *P = &t->student->params;
    long long st = KD_OK;
    char msg[KD_ERR_MSG_BYTES] = "";
    if (t->d->rank == 0) {
        t->be->copy_to_host(t->be, t->host_params, P->data, P->total_elems * sizeof(float));
        t->be->copy_to_host(t->be, t->host_mom, P->mom, P->train_elems * sizeof(float));
        kd_progress pr = {t->iter, t->epoch, t->batch_in_epoch, t->last_eval_iter, t->last_ap};
        kd_ckpt_section secs[] = {
            {"student.params", t->host_params, P->total_elems * sizeof(float), KD_CKPT_F32_PLANES},
            {"student.momentum", t->host_mom, P->train_elems * sizeof(float), KD_CKPT_F32_PLANES},
            {"progress", &pr, sizeof pr, KD_CKPT_RAW},
            {"adapter", t->host_adapter, 0, KD_CKPT_F32_PLANES},
            {"loss_scaler", &t->scaler, sizeof t->scaler, KD_CKPT_RAW},
        };
        int n_secs = 3;
        if (t->adapter) {
            size_t n = t->adapter->train_elems;
            t->be->copy_to_host(t->be, t->host_adapter, t->adapter->data, n * sizeof(float));
            t->be->copy_to_host(t->be, t->host_adapter + n, t->adapter->mom, n * sizeof(float));
            secs[3].bytes = 2 * n * sizeof(float);
            n_secs = 4;
        }
        if (t->scaling) secs[n_secs++] = secs[4];
        kd_ckpt_meta meta = {kd_config_hash(kd_options_table(), t->cfg), (uint64_t)t->iter,
                             (uint64_t)t->epoch, (uint32_t)t->d->size};
        kd_ckpt_write_opts o = {.threads = t->be->threads > 1 ? t->be->threads : 0, .level = 3};
        char dir[KD_CFG_STR_BYTES + 32];
        ckpt_dir(t, dir, sizeof dir);
        mkdir(dir, 0755);
        st = kd_ckpt_save(dir, &meta, secs, n_secs, &o, (int)t->cfg->max_keep_ckpts, path_out, cap, err);
        if (st) snprintf(msg, sizeof msg, "%s", err->msg);
    }
    kd_dist_bcast(t->d, &st, sizeof st, 0);
    kd_dist_bcast(t->d, msg, sizeof msg, 0);
    if (st) return kd_errf(err, (kd_status)st, "checkpoint not saved: %s", msg);
    return KD_OK;
}

/* Rank 0: find (auto) or open the checkpoint and read it into the host staging buffers. */
static kd_status read_on_rank0(kd_trainer *t, kd_progress *pr, char *path, size_t cap, kd_err *err)
{
    const char *want = t->cfg->resume;
    if (!strcmp(want, "auto")) {
        char dir[KD_CFG_STR_BYTES + 32], skipped[2048];
        ckpt_dir(t, dir, sizeof dir);
        kd_status st = kd_ckpt_find_latest(dir, path, cap, skipped, sizeof skipped, err);
        if (skipped[0]) KD_WARN("resume: skipped invalid checkpoints: %s", skipped);
        if (st == KD_ENOTFOUND) return KD_ENOTFOUND;
        if (st) return st;
    } else {
        snprintf(path, cap, "%s", want);
    }
    kd_ckpt_reader r;
    kd_status st = kd_ckpt_open(path, &r, err);
    if (st) return st;
    kd_params *P = &t->student->params;
    if (r.meta.world_size != (uint32_t)t->d->size)
        KD_WARN("resume: %s was written by %u ranks, this job has %d: the data order changes", path,
                r.meta.world_size, t->d->size);
    if (r.meta.config_hash != kd_config_hash(kd_options_table(), t->cfg))
        KD_WARN("resume: %s was written with a different config", path);
    st = kd_ckpt_read(&r, "student.params", t->host_params, P->total_elems * sizeof(float), err);
    if (!st) st = kd_ckpt_read(&r, "student.momentum", t->host_mom, P->train_elems * sizeof(float), err);
    if (!st) st = kd_ckpt_read(&r, "progress", pr, sizeof *pr, err);
    if (!st && t->adapter)
        st = kd_ckpt_read(&r, "adapter", t->host_adapter, 2 * t->adapter->train_elems * sizeof(float), err);
    if (!st && t->scaling) {
        if (kd_ckpt_find(&r, "loss_scaler")) st = kd_ckpt_read(&r, "loss_scaler", &t->scaler, sizeof t->scaler, err);
        else KD_WARN("resume: %s has no loss scaler state: it starts at %g", path, (double)t->scaler.scale);
    }
    kd_ckpt_close(&r);
    if (st) kd_err_prefix(err, "resume: ");
    return st;
}

kd_status kd_train_resume(kd_trainer *t, kd_err *err)
{
    if (!t->cfg->resume[0]) return KD_OK;
    kd_progress pr = {0};
    char path[1024] = "";
    long long st = KD_OK;
    if (t->d->rank == 0) st = read_on_rank0(t, &pr, path, sizeof path, err);
    kd_dist_bcast(t->d, &st, sizeof st, 0);
    if (st == KD_ENOTFOUND && !strcmp(t->cfg->resume, "auto")) {
        KD_INFO("resume auto: no checkpoint in %s/checkpoints, starting from scratch", t->work_dir);
        return KD_OK;
    }
    if (st) {
        char msg[KD_ERR_MSG_BYTES];
        snprintf(msg, sizeof msg, "%s", t->d->rank == 0 ? err->msg : "");
        kd_dist_bcast(t->d, msg, sizeof msg, 0);
        return kd_errf(err, (kd_status)st, "%s", msg);
    }
    kd_dist_bcast(t->d, &pr, sizeof pr, 0);
    kd_dist_bcast(t->d, &t->scaler, sizeof t->scaler, 0);
    kd_params *P = &t->student->params;
    if (t->d->rank == 0) {
        t->be->copy_from_host(t->be, P->data, t->host_params, P->total_elems * sizeof(float));
        t->be->copy_from_host(t->be, P->mom, t->host_mom, P->train_elems * sizeof(float));
    }
    kd_train_broadcast_student(t, 1);
    if (t->adapter) {
        size_t n = t->adapter->train_elems;
        kd_dist_bcast(t->d, t->host_adapter, 2 * n * sizeof(float), 0);
        t->be->copy_from_host(t->be, t->adapter->data, t->host_adapter, n * sizeof(float));
        t->be->copy_from_host(t->be, t->adapter->mom, t->host_adapter + n, n * sizeof(float));
    }
    t->iter = pr.iter;
    t->epoch = pr.epoch;
    t->batch_in_epoch = (uint32_t)pr.batch_in_epoch;
    t->last_eval_iter = pr.last_eval_iter;
    t->last_ap = pr.last_ap;
    KD_INFO("resumed from %s: iteration %lld, epoch %lld, batch %u", path, t->iter, t->epoch + 1, t->batch_in_epoch);
    return KD_OK;
}
