/* metrics.c — Prometheus text exposition of the job-status snapshot (see metrics.h).
 *
 * Written as a list of families; `family()` prints HELP and TYPE once, and the sample
 * helpers print `name{labels} value` lines for the family just opened, so a family's
 * samples are always contiguous and always follow its TYPE line.
 */
#include "daemon/metrics.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kd_build_config.h"

void kd_metrics_label_escape(kd_sbuf *b, const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\') kd_sbuf_append(b, "\\\\", 2);
        else if (*p == '"') kd_sbuf_append(b, "\\\"", 2);
        else if (*p == '\n') kd_sbuf_append(b, "\\n", 2);
        else if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) kd_sbuf_append(b, "?", 1);
        else kd_sbuf_append(b, p, 1);
    }
}

static void family(kd_sbuf *b, const char *name, const char *type, const char *help)
{
    kd_sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void value(kd_sbuf *b, double v)
{
    if (isnan(v)) kd_sbuf_puts(b, " NaN\n");
    else if (isinf(v)) kd_sbuf_puts(b, v > 0 ? " +Inf\n" : " -Inf\n");
    else kd_sbuf_printf(b, " %.10g\n", v);
}

static void sample(kd_sbuf *b, const char *name, double v)
{
    kd_sbuf_puts(b, name);
    value(b, v);
}

/* One sample with up to three labels; a NULL label name ends the list. */
static void sample_l(kd_sbuf *b, const char *name, double v, const char *k1, const char *v1,
                     const char *k2, const char *v2, const char *k3, const char *v3)
{
    const char *keys[3] = {k1, k2, k3}, *vals[3] = {v1, v2, v3};
    kd_sbuf_puts(b, name);
    kd_sbuf_puts(b, "{");
    for (int i = 0; i < 3 && keys[i]; i++) {
        kd_sbuf_printf(b, "%s%s=\"", i ? "," : "", keys[i]);
        kd_metrics_label_escape(b, vals[i] ? vals[i] : "");
        kd_sbuf_puts(b, "\"");
    }
    kd_sbuf_puts(b, "}");
    value(b, v);
}

static void server_families(kd_sbuf *b, const kd_metrics_server *srv)
{
    family(b, "crosskd_status_clients", "gauge", "Status-socket connections open now.");
    sample(b, "crosskd_status_clients", srv->clients);
    family(b, "crosskd_status_connections_total", "counter", "Status-socket connections accepted.");
    sample(b, "crosskd_status_connections_total", (double)srv->connections_total);
    family(b, "crosskd_status_requests_total", "counter", "Status-socket requests by verb.");
    for (int v = KD_VERB_AUTH; v < KD_VERB_COUNT; v++)
        sample_l(b, "crosskd_status_requests_total", (double)srv->requests_total[v], "verb",
                 kd_status_verb_name((kd_status_verb)v), NULL, NULL, NULL, NULL);
    family(b, "crosskd_status_errors_total", "counter", "Status-socket error replies by code.");
    for (int c = KD_SC_EPARSE; c < KD_SC_COUNT; c++)
        sample_l(b, "crosskd_status_errors_total", (double)srv->errors_total[c], "code",
                 kd_status_code_name((kd_status_code)c), NULL, NULL, NULL, NULL);
}

void kd_metrics_format(kd_sbuf *b, const kd_job_status *st, bool have_snapshot,
                       const kd_metrics_server *srv, double now)
{
    family(b, "crosskd_up", "gauge", "1 when the trainer has published a status snapshot.");
    sample(b, "crosskd_up", have_snapshot ? 1 : 0);
    if (!have_snapshot) {
        server_families(b, srv);
        return;
    }
    family(b, "crosskd_build_info", "gauge", "Build and job metadata (value is always 1).");
    char job[sizeof st->job_name];
    snprintf(job, sizeof job, "%.*s", (int)sizeof job - 1, st->job_name);
    sample_l(b, "crosskd_build_info", 1, "version", KD_VERSION, "job", job, NULL, NULL);

    family(b, "crosskd_job_state", "gauge", "1 for the job's current state, 0 for the others.");
    for (int s = 0; s < KD_JOB_STATE_COUNT; s++)
        sample_l(b, "crosskd_job_state", st->state == s ? 1 : 0, "state", kd_job_state_name(s),
                 NULL, NULL, NULL, NULL);
    family(b, "crosskd_world_size", "gauge", "Number of ranks.");
    sample(b, "crosskd_world_size", st->world_size);
    family(b, "crosskd_start_time_seconds", "gauge", "Unix time the job started.");
    sample(b, "crosskd_start_time_seconds", st->start_wall);

    family(b, "crosskd_epoch", "gauge", "Epoch being trained (1-based).");
    sample(b, "crosskd_epoch", (double)st->epoch);
    family(b, "crosskd_train_steps_total", "counter", "Completed training iterations.");
    sample(b, "crosskd_train_steps_total", (double)st->iter);
    family(b, "crosskd_train_steps_planned", "gauge", "Total iterations of the schedule.");
    sample(b, "crosskd_train_steps_planned", (double)st->total_iters);
    family(b, "crosskd_eta_seconds", "gauge", "Estimated time to finish (NaN when unknown).");
    sample(b, "crosskd_eta_seconds", st->eta_seconds >= 0 ? st->eta_seconds : NAN);

    family(b, "crosskd_loss", "gauge", "Training loss by term (term=\"total\" is the sum).");
    sample_l(b, "crosskd_loss", st->loss_total, "term", "total", NULL, NULL, NULL, NULL);
    int n_losses = st->n_losses < 0 ? 0 : st->n_losses > KD_STATUS_LOSS_MAX ? KD_STATUS_LOSS_MAX : st->n_losses;
    for (int i = 0; i < n_losses; i++) {
        char name[KD_STATUS_LOSS_NAME_BYTES];
        memcpy(name, st->losses[i].name, sizeof name);
        name[sizeof name - 1] = '\0';
        sample_l(b, "crosskd_loss", st->losses[i].value, "term", name, NULL, NULL, NULL, NULL);
    }
    family(b, "crosskd_learning_rate", "gauge", "Current learning rate.");
    sample(b, "crosskd_learning_rate", st->lr);
    family(b, "crosskd_images_per_second", "gauge", "Training throughput over all ranks.");
    sample(b, "crosskd_images_per_second", st->images_per_second);
    family(b, "crosskd_data_wait_seconds", "gauge", "Mean time a step waited for its batch.");
    sample(b, "crosskd_data_wait_seconds", st->data_time_seconds);
    family(b, "crosskd_iteration_seconds", "gauge", "Mean duration of one training step.");
    sample(b, "crosskd_iteration_seconds", st->step_time_seconds);
    family(b, "crosskd_memory_max_bytes", "gauge", "Peak memory, maximum over ranks.");
    sample(b, "crosskd_memory_max_bytes", st->memory_bytes);

    bool have_ckpt = st->last_checkpoint_path[0] != '\0';
    family(b, "crosskd_checkpoint_last_success_timestamp_seconds", "gauge",
           "Unix time the last checkpoint was on disk (NaN: none yet).");
    sample(b, "crosskd_checkpoint_last_success_timestamp_seconds",
           have_ckpt ? st->last_checkpoint_wall : NAN);
    family(b, "crosskd_checkpoint_age_seconds", "gauge", "Seconds since the last checkpoint.");
    sample(b, "crosskd_checkpoint_age_seconds", have_ckpt ? now - st->last_checkpoint_wall : NAN);
    family(b, "crosskd_checkpoint_last_step", "gauge", "Iteration of the last checkpoint.");
    sample(b, "crosskd_checkpoint_last_step", have_ckpt ? (double)st->last_checkpoint_step : NAN);
    family(b, "crosskd_eval_ap", "gauge", "Last COCO bbox mAP, ratio 0-1 (NaN: not evaluated yet).");
    sample(b, "crosskd_eval_ap", st->last_ap);

    int n_ranks = st->n_ranks < 0 ? 0 : st->n_ranks > KD_STATUS_RANK_MAX ? KD_STATUS_RANK_MAX : st->n_ranks;
    char rank[16];
    family(b, "crosskd_rank_info", "gauge", "Host and device of each rank (value is always 1).");
    for (int i = 0; i < n_ranks; i++) {
        char host[sizeof st->ranks[i].host], dev[sizeof st->ranks[i].device];
        snprintf(rank, sizeof rank, "%d", i);
        snprintf(host, sizeof host, "%.*s", (int)sizeof host - 1, st->ranks[i].host);
        snprintf(dev, sizeof dev, "%.*s", (int)sizeof dev - 1, st->ranks[i].device);
        sample_l(b, "crosskd_rank_info", 1, "rank", rank, "host", host, "device", dev);
    }
    family(b, "crosskd_rank_step_seconds", "gauge", "Duration of each rank's last step.");
    for (int i = 0; i < n_ranks; i++) {
        snprintf(rank, sizeof rank, "%d", i);
        sample_l(b, "crosskd_rank_step_seconds", st->ranks[i].last_step_seconds, "rank", rank,
                 NULL, NULL, NULL, NULL);
    }
    family(b, "crosskd_rank_iteration", "gauge", "Last completed iteration of each rank.");
    for (int i = 0; i < n_ranks; i++) {
        snprintf(rank, sizeof rank, "%d", i);
        sample_l(b, "crosskd_rank_iteration", (double)st->ranks[i].iter, "rank", rank, NULL, NULL,
                 NULL, NULL);
    }
    family(b, "crosskd_rank_memory_bytes", "gauge", "Peak memory of each rank.");
    for (int i = 0; i < n_ranks; i++) {
        snprintf(rank, sizeof rank, "%d", i);
        sample_l(b, "crosskd_rank_memory_bytes", st->ranks[i].memory_bytes, "rank", rank, NULL,
                 NULL, NULL, NULL);
    }
    family(b, "crosskd_rank_state", "gauge", "1 for each rank's current state, 0 for the others.");
    for (int i = 0; i < n_ranks; i++) {
        snprintf(rank, sizeof rank, "%d", i);
        for (int s = 0; s < KD_RANK_STATE_COUNT; s++)
            sample_l(b, "crosskd_rank_state", st->ranks[i].state == s ? 1 : 0, "rank", rank,
                     "state", kd_rank_state_name(s), NULL, NULL);
    }
    server_families(b, srv);
}
