/* trainer.c — the step loop of one rank (see trainer.h).
 *
 * One iteration, identically on every rank:
 *   boundary  rank 0 takes the coordinator's decisions, every rank's signal flags are
 *             combined (all-reduce MAX), the result is broadcast: checkpoint, pause, stop
 *   batch     the loader's next batch of this rank's shard (data_time = the wait)
 *   forward   teacher forward (with a distiller), student forward, loss phase 1
 *             (assignment, local statistics)
 *   reduce    the normalisers' statistics summed over ranks (P, W of crosskd.md §5.4)
 *   backward  loss phase 2 (values and output gradients), the distiller's KD losses and
 *             their gradients (worker/distill/distill.h), model backward
 *   sync      gradients averaged over ranks (worker/grad_sync.h: bucketed MPI or NCCL
 *             all-reduce, the buckets started by the backward as it finishes them)
 *   update    with loss scaling, the check for Inf/NaN (the step is skipped) and the
 *             unscale; gradient clipping when configured; SGD with the scheduled learning
 *             rate; all on the backend's device buffers
 *   report    meter, log line every N iterations (text, JSON lines, TensorBoard), status
 * A rank whose batch is empty (every image of it was bad and skipped) still takes part in
 * every collective with zero statistics and zero gradients, so ranks never diverge.
 * Epoch ends trigger checkpoints and evaluation as configured; the end of training saves
 * a final checkpoint and evaluates once more.
 */
#include "worker/train/train_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proto/log.h"
#include "worker/signals.h"

/* ---- run directory and logs ----------------------------------------------------------- */

/* The effective config, one log line per YAML line (as MMDetection prints it at start). */
static void log_config(const char *text, const char *path)
{
    if (!text) return;
    KD_INFO("effective config (also in %s):", path);
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        int n = e ? (int)(e - p) : (int)strlen(p);
        KD_INFO("  %.*s", n, p);
        p += n + (e != NULL);
    }
}

static kd_status open_run_dir(kd_trainer *t, kd_err *err)
{
    snprintf(t->work_dir, sizeof t->work_dir, "%s", t->cfg->work_dir);
    if (t->d->rank != 0) return KD_OK;
    char path[KD_CFG_STR_BYTES + 64];
    /* mkdir -p of work_dir */
    for (char *p = t->work_dir + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(t->work_dir, 0755);
            *p = '/';
        }
    mkdir(t->work_dir, 0755);
    snprintf(path, sizeof path, "%s/logs", t->work_dir);
    mkdir(path, 0755);
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d_%H%M%S", &tm);
    snprintf(path, sizeof path, "%s/logs/%s.log", t->work_dir, stamp);
    if (kd_log_open_file(path)) return kd_errf(err, KD_EIO, "%s: cannot create the log file", path);
    snprintf(path, sizeof path, "%s/logs/scalars.jsonl", t->work_dir);
    if (kd_log_open_jsonl(path)) return kd_errf(err, KD_EIO, "%s: cannot create", path);
    snprintf(path, sizeof path, "%s/tf_logs", t->work_dir);
    mkdir(path, 0755);
    if (kd_tfevents_open(&t->tb, path, err)) return err->code;
    snprintf(path, sizeof path, "%s/config.yaml", t->work_dir);
    FILE *f = fopen(path, "w");
    if (!f) return kd_errf(err, KD_EIO, "%s: cannot write the effective config", path);
    fputs(t->a->config_text ? t->a->config_text : "", f);
    fclose(f);
    log_config(t->a->config_text, path);
    return KD_OK;
}

/* ---- status --------------------------------------------------------------------------- */

static void publish(kd_trainer *t, int state, double step_seconds, const double *loss_vals,
                    const char *const *loss_names, int n_losses, double lr)
{
    kd_rank_status row = {0};
    snprintf(row.host, sizeof row.host, "%s", t->d->host);
    snprintf(row.device, sizeof row.device, "%s", t->be->name);
    row.state = state == KD_JOB_PAUSED ? KD_RANK_WAITING : state == KD_JOB_STOPPED ? KD_RANK_STOPPED : KD_RANK_RUNNING;
    row.iter = t->iter;
    row.last_step_seconds = step_seconds;
    row.memory_bytes = kd_meter_peak_rss_mib() * 1048576.0;
    kd_rank_status *rows = t->d->rank == 0 ? kd_xmalloc(sizeof *rows * (size_t)t->d->size) : NULL;
    kd_dist_gather(t->d, &row, sizeof row, rows, 0);
    if (t->d->rank != 0) return;
    kd_job_status *st = &t->status;
    st->state = state;
    if (t->iters_per_epoch <= 0) {
        kd_control_board_publish(t->a->board, st);
        free(rows);
        return;
    }
    st->world_size = t->d->size;
    st->epoch = t->epoch + 1;
    st->max_epochs = (t->max_iters + t->iters_per_epoch - 1) / t->iters_per_epoch;
    st->iter = t->iter;
    st->total_iters = t->max_iters;
    st->iter_in_epoch = t->batch_in_epoch;
    st->iters_per_epoch = t->iters_per_epoch;
    for (int i = 0; i < n_losses; i++) {
        if (!strcmp(loss_names[i], "loss")) st->loss_total = loss_vals[i];
        else kd_job_status_set_loss(st, loss_names[i], loss_vals[i]);
    }
    st->lr = lr;
    double mean = kd_meter_mean_iter_time(&t->meter);
    st->step_time_seconds = mean;
    st->images_per_second = mean > 0 ? t->meter.images_per_iter / mean : 0;
    st->eta_seconds = mean > 0 ? mean * (double)(t->max_iters - t->iter) : -1;
    st->n_ranks = t->d->size < KD_STATUS_RANK_MAX ? t->d->size : KD_STATUS_RANK_MAX;
    st->memory_bytes = 0;
    for (int r = 0; r < t->d->size; r++) {
        if (r < KD_STATUS_RANK_MAX) st->ranks[r] = rows[r];
        if (rows[r].memory_bytes > st->memory_bytes) st->memory_bytes = rows[r].memory_bytes;
    }
    st->last_ap = t->last_ap;
    st->last_eval_step = t->last_eval_iter;
    free(rows);
    kd_control_board_publish(t->a->board, st);
}

/* ---- one step -------------------------------------------------------------------------- */

/* Logged terms: the detection losses, then (with a distiller) the KD terms its method has,
 * under MMDetection's names, and the paper's Fig. 3 target-conflict ratio when asked for.
 * train_step fills all of them; the total "loss" is the sum of the loss_* terms. */
/* losses_center_kd: CrossKD-ATSS's own log name (crosskd.md §6.2). */
enum { T_LOSS, T_CLS, T_BBOX, T_DFL, T_CTR, T_CLS_KD, T_REG_KD, T_FEAT_KD, T_CTR_KD, T_CONFLICT, N_TERMS_MAX };
static const char *const k_terms[N_TERMS_MAX] = {"loss", "loss_cls", "loss_bbox", "loss_dfl", "loss_centerness",
                                                 "loss_cls_kd", "loss_reg_kd", "loss_feat_kd", "losses_center_kd",
                                                 "conflict_ratio"};

/* Which terms this run logs (the same every step). */
static int term_shown(const kd_trainer *t, int i)
{
    const kd_model_cfg *m = &t->cfg->model;
    int method = m->kd_cfg.method;
    if (i == T_DFL) return m->bbox_head.type == KD_DET_GFL;
    if (i == T_CTR) return t->student->head.ctr_tower >= 0;
    if (i < T_CLS_KD) return 1;
    if (!t->distill) return 0;
    if (i == T_CLS_KD || i == T_REG_KD) return method != KD_KD_PKD;
    if (i == T_CTR_KD) return kd_distiller_has_center_kd(t->distill);
    if (i == T_FEAT_KD) return method == KD_KD_PKD || method == KD_KD_RM_PFI || m->kd_cfg.loss_feat_kd_weight > 0;
    return m->kd_cfg.log_conflict_ratio;
}

/* Compacts the shown terms of all[] into vals/names; returns their count. */
static int shown_terms(const kd_trainer *t, const double *all, double *vals, const char **names)
{
    int n = 0;
    for (int i = 0; i < N_TERMS_MAX; i++)
        if (term_shown(t, i)) vals[n] = all[i], names[n++] = k_terms[i];
    return n;
}

/* optim_wrapper.clip_grad: clip_grad_norm_ over every parameter of the optimiser (the
 * student's and the adapter's, one global norm), after the average over ranks, so every
 * rank scales by the same coefficient. */
static void clip_gradients(kd_trainer *t)
{
    double max_norm = t->cfg->clip_grad_max_norm;
    if (max_norm <= 0) return;
    kd_params *P = &t->student->params, *A = t->adapter;
    double sq = kd_grad_sumsq(t->be, P->grad, P->train_elems);
    if (A) sq += kd_grad_sumsq(t->be, A->grad, A->train_elems);
    double coef = kd_grad_clip_coef(sqrt(sq), max_norm);
    kd_grad_clip(t->be, P->grad, P->train_elems, coef);
    if (A) kd_grad_clip(t->be, A->grad, A->train_elems, coef);
}

/* Loss scaling: the averaged gradients are checked with one sum of squares (an Inf or NaN
 * anywhere makes it non-finite), the scaler is updated (GradScaler's rule), and the
 * gradients are divided by the scale they were made with. Every rank holds the same averaged
 * gradients, so every rank decides alike. Returns 0 when the step must be skipped. */
static int unscale_gradients(kd_trainer *t)
{
    if (!t->scaling) return 1;
    kd_params *P = &t->student->params, *A = t->adapter;
    double sq = kd_grad_sumsq(t->be, P->grad, P->train_elems);
    if (A) sq += kd_grad_sumsq(t->be, A->grad, A->train_elems);
    const float scale = t->scaler.scale;
    const int found_inf = !isfinite(sq);
    kd_loss_scaler_update(&t->scaler, found_inf);
    if (found_inf) {
        KD_WARN("iteration %lld: gradients not finite at loss scale %g: step skipped, scale now %g", t->iter + 1,
                (double)scale, (double)t->scaler.scale);
        return 0;
    }
    t->be->scal(t->be, P->train_elems, 1.0f / scale, P->grad);
    if (A) t->be->scal(t->be, A->train_elems, 1.0f / scale, A->grad);
    return 1;
}

static kd_status train_step(kd_trainer *t, const kd_batch *b, double lr, double out[N_TERMS_MAX], kd_err *err)
{
    kd_model *m = t->student;
    kd_params *P = &m->params;
    kd_det_loss_stats local = {0, 0};
    kd_model_zero_grad(m);
    if (b->n > 0) {
        size_t bytes = (size_t)b->n * 3 * b->H * b->W * sizeof(float);
        t->be->copy_from_host(t->be, t->img_dev, b->img, bytes);
        if (t->distill && kd_distiller_teacher_forward(t->distill, t->img_dev, b->n, b->H, b->W, err)) return err->code;
        if (kd_model_forward(m, t->img_dev, b->n, b->H, b->W, err)) return err->code;
        for (int i = 0; i < b->n; i++) {
            const kd_batch_image *mi = &b->meta[i];
            t->gts[i] = (kd_image_gt){(int)mi->n_gt, b->gt_boxes + 4 * (size_t)mi->gt_begin,
                                      b->gt_labels + mi->gt_begin, mi->img_h, mi->img_w};
        }
        if (kd_det_loss_prepare(t->loss, m, t->gts, &local, err)) return err->code;
        if (t->distill) kd_distiller_forward(t->distill, m, t->gts);
    }
    double sums[2] = {local.num_pos, local.weight_sum};
    kd_dist_allreduce_sum(t->d, sums, 2);
    kd_det_loss_stats total = {sums[0], sums[1]};
    double Pn, W;
    kd_det_loss_normalisers(&total, t->d->size, &Pn, &W);
    kd_det_losses L;
    memset(&L, 0, sizeof L);
    kd_distill_terms kd = {0};
    if (b->n > 0) {
        const float grad_scale = t->scaling ? t->scaler.scale : 1.0f;
        kd_det_loss_compute(t->loss, m, Pn, W, grad_scale, &L);
        if (t->distill) {
            kd_distiller_set_grad_scale(t->distill, grad_scale);
            kd_distiller_compute(t->distill, m, t->loss, Pn, &kd);
            kd_distiller_backward(t->distill, m);
        } else {
            kd_model_backward(m);
        }
    }
    kd_grad_sync_finish(&t->sync); /* the backward started the buckets it finished */
    kd_params *A = t->adapter;     /* the distiller's trainable adapter: same reduction and SGD */
    if (A) {
        if (b->n == 0) t->be->zero(t->be, A->grad, A->train_elems * sizeof(float));
        kd_grad_sync_finish(&t->adapter_sync);
    }
    if (unscale_gradients(t)) {
        clip_gradients(t);
        kd_sgd_step(t->be, P->data, P->grad, P->mom, P->train_elems, &t->sgd, lr);
        if (A) kd_sgd_step(t->be, A->data, A->grad, A->mom, A->train_elems, &t->sgd, lr);
    }
    /* Logged values are the mean over ranks, as MMDetection logs them; the conflict ratio is
     * the ratio of the sums over ranks. */
    double v[N_TERMS_MAX + 2] = {0, L.loss_cls, L.loss_bbox, L.loss_dfl, L.loss_centerness, kd.loss_cls_kd, kd.loss_reg_kd,
                                 kd.loss_feat_kd, kd.loss_center_kd, kd.conflicts, kd.positives,
                                 t->sync.wait_seconds + t->adapter_sync.wait_seconds};
    for (int i = T_CLS; i < T_CONFLICT; i++) v[T_LOSS] += v[i];
    kd_dist_allreduce_sum(t->d, v, N_TERMS_MAX + 2);
    t->sync_wait = v[N_TERMS_MAX + 1] / t->d->size; /* mean over ranks */
    for (int i = 0; i < T_CONFLICT; i++) out[i] = v[i] / t->d->size;
    out[T_CONFLICT] = v[T_CONFLICT] / (v[N_TERMS_MAX] > 0 ? v[N_TERMS_MAX] : 1);
    return KD_OK;
}

/* ---- boundaries: decisions, checkpoints, evaluation ------------------------------------------ */

static void take_decisions(kd_trainer *t, kd_control *c)
{
    memset(c, 0, sizeof *c);
    if (t->d->rank == 0) kd_control_board_poll(t->a->board, c);
    int sig = kd_signals_pending();
    KD_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &sig, 1, MPI_INT, MPI_BOR, t->d->comm));
    kd_dist_bcast(t->d, c, sizeof *c, 0);
    if (sig && !t->stop_requested) {
        KD_WARN("%s received: saving a checkpoint and stopping at iteration %lld",
                sig & KD_SIG_STOP ? "SIGTERM/SIGUSR1" : "SIGINT", t->iter);
        t->stop_requested = sig & KD_SIG_STOP ? 2 : 3;
    }
    if ((c->flags & KD_CONTROL_STOP) && !t->stop_requested) t->stop_requested = 1;
}

static void checkpoint(kd_trainer *t, uint64_t gen)
{
    char path[1024] = "";
    kd_err err = {0};
    double t0 = MPI_Wtime();
    kd_status st = kd_train_save_checkpoint(t, path, sizeof path, &err);
    if (st) KD_ERROR("%s (training goes on)", err.msg);
    else KD_INFO("checkpoint %s saved in %.2f s", path, MPI_Wtime() - t0);
    if (t->d->rank == 0) {
        if (!st) {
            snprintf(t->status.last_checkpoint_path, sizeof t->status.last_checkpoint_path, "%s", path);
            t->status.last_checkpoint_wall = (double)time(NULL);
            t->status.last_checkpoint_step = t->iter;
        }
        if (gen) kd_control_board_checkpoint_done(t->a->board, gen, path, t->iter, st == KD_OK, err.msg);
    }
}

static void evaluate(kd_trainer *t)
{
    if (!t->have_val) return;
    double stats[12];
    kd_err err = {0};
    if (kd_train_evaluate(t, stats, &err)) {
        KD_ERROR("evaluation failed: %s", err.msg);
        return;
    }
    t->last_ap = stats[0];
    t->last_eval_iter = t->iter;
    if (t->d->rank != 0) return;
    static const char *names[12] = {"bbox_mAP", "bbox_mAP_50", "bbox_mAP_75", "bbox_mAP_s", "bbox_mAP_m",
                                    "bbox_mAP_l", "AR_1", "AR_10", "AR_100", "AR_s", "AR_m", "AR_l"};
    kd_jsonl j;
    kd_jsonl_begin(&j);
    kd_jsonl_int(&j, "iter", t->iter);
    kd_jsonl_int(&j, "epoch", t->epoch);
    for (int i = 0; i < 12; i++) {
        char tag[64];
        kd_jsonl_num(&j, names[i], stats[i]);
        snprintf(tag, sizeof tag, "val/%s", names[i]);
        kd_tfevents_scalar(&t->tb, tag, t->iter, (float)stats[i], &err);
    }
    kd_log_jsonl(&j);
    KD_INFO("Epoch(val) [%lld]  bbox_mAP: %.4f  bbox_mAP_50: %.4f  bbox_mAP_75: %.4f  bbox_mAP_s: %.4f  "
            "bbox_mAP_m: %.4f  bbox_mAP_l: %.4f",
            t->epoch, stats[0], stats[1], stats[2], stats[3], stats[4], stats[5]);
}

static void log_window(kd_trainer *t, double lr)
{
    kd_meter_line at = {t->epoch + 1, (t->max_iters + t->iters_per_epoch - 1) / t->iters_per_epoch,
                        t->batch_in_epoch, t->iters_per_epoch, t->iter, t->max_iters, lr};
    char text[2048], json[4096];
    kd_meter_flush(&t->meter, &at, text, sizeof text, json, sizeof json);
    if (t->d->rank != 0) return;
    KD_INFO("%s", text);
    kd_log_json_line(json);
    kd_err err = {0};
    for (int i = 0; i < t->meter.n_terms; i++) {
        char tag[64];
        snprintf(tag, sizeof tag, "train/%s", t->meter.names[i]);
        kd_tfevents_scalar(&t->tb, tag, t->iter, (float)t->meter.last[i], &err);
    }
    kd_tfevents_scalar(&t->tb, "train/lr", t->iter, (float)lr, &err);
    kd_tfevents_flush(&t->tb);
}

/* The trained student as safetensors with MMDetection key names: <work_dir>/final.safetensors
 * (usable as load_from, as a teacher_ckpt, or converted back for MMDetection). */
static kd_status save_final_weights(kd_trainer *t, kd_err *err)
{
    long long st = KD_OK;
    char path[KD_CFG_STR_BYTES + 32];
    snprintf(path, sizeof path, "%s/final.safetensors", t->work_dir);
    if (t->d->rank == 0) {
        st = kd_model_save(t->student, path, err);
        if (!st) KD_INFO("weights saved to %s", path);
    }
    kd_dist_bcast(t->d, &st, sizeof st, 0);
    return st && t->d->rank != 0 ? kd_errf(err, (kd_status)st, "rank 0 could not save %s", path) : (kd_status)st;
}

/* ---- the loop ---------------------------------------------------------------------------- */

static kd_status run_loop(kd_trainer *t, kd_err *err)
{
    const kd_config *c = t->cfg;
    kd_loader_start(t->loader, (kd_sampler_cursor){t->epoch, t->batch_in_epoch});
    double last = MPI_Wtime();
    while (t->iter < t->max_iters) {
        kd_control ctl;
        take_decisions(t, &ctl);
        if (ctl.checkpoint_gen || t->stop_requested) checkpoint(t, ctl.checkpoint_gen);
        if (t->stop_requested) return KD_OK;
        if (ctl.flags & KD_CONTROL_PAUSE) {
            publish(t, KD_JOB_PAUSED, 0, NULL, NULL, 0, 0);
            usleep(50 * 1000);
            last = MPI_Wtime();
            continue;
        }
        const kd_batch *b = NULL;
        double wait = 0;
        kd_status st = kd_loader_next(t->loader, &b, &wait);
        if (st) return kd_errf(err, st, "the loader ended epoch %lld after %u of %lld batches", t->epoch + 1,
                               t->batch_in_epoch, t->iters_per_epoch);
        if (b->n_bad) KD_WARN("batch %u of epoch %lld: %u bad image(s) %s", b->batch_index, t->epoch + 1, b->n_bad,
                              c->on_bad_image ? "replaced" : "skipped");
        double lr = kd_lr_at(&t->sched, t->iter, t->epoch), all[N_TERMS_MAX] = {0}, vals[N_TERMS_MAX];
        if (train_step(t, b, lr, all, err)) return err->code;
        const char *names[N_TERMS_MAX];
        int nt = shown_terms(t, all, vals, names);
        for (int i = 0; i < nt; i++)
            if (!isfinite(vals[i])) return kd_errf(err, KD_EINVAL, "%s is %g at iteration %lld: training diverged", names[i], vals[i], t->iter + 1);
        t->iter++;
        t->batch_in_epoch++;
        double now = MPI_Wtime();
        kd_meter_add(&t->meter, names, vals, nt, now - last, wait);
        if (t->d->size > 1) kd_meter_add_sync(&t->meter, t->sync_wait);
        if (t->d->size > 1 && t->iter == 1)
            KD_INFO("gradient all-reduce: %d of %d buckets started during backward in the first step", t->sync.early_last,
                    t->sync.n_buckets);
        last = now;
        if (t->iter % c->log_interval == 0 || t->iter == t->max_iters) log_window(t, lr);
        publish(t, KD_JOB_RUNNING, kd_meter_mean_iter_time(&t->meter), vals, names, nt, lr);
        if (t->batch_in_epoch == (uint32_t)t->iters_per_epoch) {
            t->epoch++;
            t->batch_in_epoch = 0;
            int last_iter = t->iter == t->max_iters;
            if (!last_iter && t->epoch % c->checkpoint_interval == 0) checkpoint(t, 0);
            if (!last_iter && c->val_interval > 0 && t->epoch % c->val_interval == 0) evaluate(t);
            if (!last_iter) kd_loader_start(t->loader, (kd_sampler_cursor){t->epoch, 0});
            last = MPI_Wtime();
        }
    }
    checkpoint(t, 0);
    evaluate(t);
    return save_final_weights(t, err);
}

/* threads: 0 = OMP_NUM_THREADS when set, else the node's cores shared by its ranks (two
 * ranks on two cores get one thread each instead of fighting over both). */
static int default_threads(const kd_trainer_args *a)
{
    if (a->cfg->threads > 0 || getenv("OMP_NUM_THREADS")) return (int)a->cfg->threads;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int per_rank = (int)(cores / (a->dist->local_size > 0 ? a->dist->local_size : 1));
    return per_rank > 0 ? per_rank : 1;
}

/* The rank's backend (device: cpu, or cuda on the GPU of its node-local rank). Every rank
 * learns whether all of them could open theirs, so a job fails together, at once, with the
 * failing rank's message, instead of leaving the others waiting in a collective. */
static kd_status open_device(kd_trainer *t, kd_err *err)
{
    const char *device = t->cfg->device == KD_DEVICE_CUDA ? "cuda" : "cpu";
    kd_status st = kd_rank_backend_open(device, t->d->local_rank, t->d->local_size, default_threads(t->a),
                                        &t->be, err);
    int bad = st != KD_OK;
    KD_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, t->d->comm));
    if (st || !bad) return st;
    t->be->close(t->be);
    t->be = NULL;
    return kd_errf(err, KD_EUNSUPPORTED, "device: %s: another rank could not open it (see its message)", device);
}

int kd_trainer_run(const kd_trainer_args *a)
{
    kd_trainer *t = kd_xcalloc(1, sizeof *t);
    t->a = a;
    t->cfg = a->cfg;
    t->d = a->dist;
    t->last_ap = NAN;
    t->last_eval_iter = -1;
    kd_job_status_init(&t->status);
    snprintf(t->status.config_path, sizeof t->status.config_path, "%s", a->config_path);
    snprintf(t->status.job_name, sizeof t->status.job_name, "%s", a->cfg->work_dir);
    t->status.start_wall = (double)time(NULL);
    kd_err err = {0};
    int rc = 1;
    kd_signals_install();
    kd_status st = open_device(t, &err);
    if (!st) st = open_run_dir(t, &err);
    if (!st) KD_INFO("rank %d of %d on %s, device %s with %d threads; config %s", t->d->rank, t->d->size,
                     t->d->host, t->be->name, t->be->threads, a->config_path);
    if (!st) st = kd_train_setup_data(t, &err);
    if (!st) st = kd_train_setup_model(t, &err);
    if (!st) {
        size_t img_bytes = (size_t)t->student->opts.max_n * 3 * t->pad_h * t->pad_w * sizeof(float);
        t->img_dev = t->be->alloc(t->be, img_bytes);
        st = kd_train_resume(t, &err);
    }
    if (!st) {
        kd_meter_init(&t->meter, (double)(t->d->size * a->cfg->train_batch_size));
        publish(t, KD_JOB_RUNNING, 0, NULL, NULL, 0, 0);
        double t0 = MPI_Wtime();
        st = run_loop(t, &err);
        if (!st)
            KD_INFO("%s after %lld iterations in %.1f s; last bbox_mAP %.4f",
                    t->stop_requested ? "stopped" : "training finished", t->iter, MPI_Wtime() - t0, t->last_ap);
    }
    if (st) KD_ERROR("%s", err.msg);
    else rc = t->stop_requested == 2 ? KD_EXIT_REQUEUE : t->stop_requested == 3 ? 130 : 0;
    if (t->be) {
        publish(t, KD_JOB_STOPPED, 0, NULL, NULL, 0, 0);
        if (t->img_dev) t->be->free(t->be, t->img_dev);
        kd_train_teardown(t);
        t->be->close(t->be);
    }
    kd_tfevents_close(&t->tb);
    free(t);
    return rc;
}
