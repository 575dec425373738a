/* control.c — the rank-0 mailbox between the training loop and the status server
 * (see control.h for the records and their semantics).
 *
 * One mutex guards everything; every operation is a bounded copy, so the trainer never
 * waits longer than a concurrent snapshot copy (a few tens of kilobytes). The wake
 * callback runs with the mutex held, so that once kd_control_board_set_wake(b, NULL, NULL)
 * returns no call to the old callback is in flight (the server frees its state after
 * that); the callback must therefore be short and must not call back into the board
 * (the status server's writes one eventfd counter).
 */
#include "proto/control.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct kd_control_board {
    pthread_mutex_t mu;
    kd_job_status snap;
    bool have_snap;
    /* requests from the server */
    uint64_t ckpt_requested;  /* highest generation asked for */
    uint64_t ckpt_polled;     /* highest generation handed to the trainer */
    uint64_t next_gen;        /* generations are 1, 2, 3 ... */
    bool pause, stop;
    uint64_t seq;
    /* results from the trainer */
    kd_checkpoint_result ckpt;    /* of the latest requested generation */
    char last_path[KD_STATUS_PATH_BYTES]; /* latest successful checkpoint, any generation */
    double last_wall;
    int64_t last_step;
    kd_control_wake_fn wake;
    void *wake_arg;
};

static const char *const k_job_states[KD_JOB_STATE_COUNT] = {
    "starting", "running", "paused", "checkpointing", "stopping", "stopped"};
static const char *const k_rank_states[KD_RANK_STATE_COUNT] = {"running", "waiting", "stopped"};

const char *kd_job_state_name(int state)
{
    return state >= 0 && state < KD_JOB_STATE_COUNT ? k_job_states[state] : "unknown";
}

const char *kd_rank_state_name(int state)
{
    return state >= 0 && state < KD_RANK_STATE_COUNT ? k_rank_states[state] : "unknown";
}

void kd_job_status_init(kd_job_status *st)
{
    memset(st, 0, sizeof *st);
    st->state = KD_JOB_STARTING;
    st->eta_seconds = -1.0;
    st->last_ap = NAN;
    st->last_eval_step = -1;
    st->last_checkpoint_step = -1;
}

bool kd_job_status_set_loss(kd_job_status *st, const char *name, double value)
{
    int n = st->n_losses < 0 ? 0 : st->n_losses;
    for (int i = 0; i < n && i < KD_STATUS_LOSS_MAX; i++)
        if (strncmp(st->losses[i].name, name, KD_STATUS_LOSS_NAME_BYTES) == 0) {
            st->losses[i].value = value;
            return true;
        }
    if (n >= KD_STATUS_LOSS_MAX) return false;
    size_t len = strlen(name);
    if (len >= KD_STATUS_LOSS_NAME_BYTES) len = KD_STATUS_LOSS_NAME_BYTES - 1;
    memcpy(st->losses[n].name, name, len);
    st->losses[n].name[len] = '\0';
    st->losses[n].value = value;
    st->n_losses = n + 1;
    return true;
}

kd_status kd_control_board_create(kd_control_board **out, kd_err *err)
{
    kd_control_board *b = calloc(1, sizeof *b);
    if (!b) return kd_errf(err, KD_ENOMEM, "control board: out of memory");
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b);
        return kd_errf(err, KD_ENOMEM, "control board: pthread_mutex_init failed");
    }
    kd_job_status_init(&b->snap);
    b->next_gen = 1;
    *out = b;
    return KD_OK;
}

void kd_control_board_destroy(kd_control_board *b)
{
    if (!b) return;
    pthread_mutex_destroy(&b->mu);
    free(b);
}

void kd_control_board_set_wake(kd_control_board *b, kd_control_wake_fn fn, void *arg)
{
    pthread_mutex_lock(&b->mu);
    b->wake = fn;
    b->wake_arg = arg;
    pthread_mutex_unlock(&b->mu);
}

/* ---- trainer side ------------------------------------------------------------------- */

/* The board reports the newest checkpoint it was told about, even if the published
 * snapshot does not show it yet (the trainer publishes after its next step). */
static void merge_last_locked(kd_control_board *b)
{
    if (b->last_path[0] && b->last_wall > b->snap.last_checkpoint_wall) {
        memcpy(b->snap.last_checkpoint_path, b->last_path, sizeof b->last_path);
        b->snap.last_checkpoint_wall = b->last_wall;
        b->snap.last_checkpoint_step = b->last_step;
    }
}

void kd_control_board_publish(kd_control_board *b, const kd_job_status *st)
{
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    int old_state = b->have_snap ? b->snap.state : -1;
    memcpy(&b->snap, st, sizeof *st);
    /* Defensive clamps: the server formats these rows, so keep counts in range and
     * strings terminated whatever the publisher wrote. */
    if (b->snap.n_losses < 0) b->snap.n_losses = 0;
    if (b->snap.n_losses > KD_STATUS_LOSS_MAX) b->snap.n_losses = KD_STATUS_LOSS_MAX;
    if (b->snap.n_ranks < 0) b->snap.n_ranks = 0;
    if (b->snap.n_ranks > KD_STATUS_RANK_MAX) b->snap.n_ranks = KD_STATUS_RANK_MAX;
    b->snap.job_name[KD_STATUS_STR_BYTES - 1] = '\0';
    b->snap.config_path[KD_STATUS_PATH_BYTES - 1] = '\0';
    b->snap.last_checkpoint_path[KD_STATUS_PATH_BYTES - 1] = '\0';
    for (int i = 0; i < b->snap.n_losses; i++)
        b->snap.losses[i].name[KD_STATUS_LOSS_NAME_BYTES - 1] = '\0';
    for (int i = 0; i < b->snap.n_ranks; i++) {
        b->snap.ranks[i].host[sizeof b->snap.ranks[i].host - 1] = '\0';
        b->snap.ranks[i].device[sizeof b->snap.ranks[i].device - 1] = '\0';
    }
    merge_last_locked(b);
    b->have_snap = true;
    if (old_state != b->snap.state && b->wake) b->wake(b->wake_arg);
    pthread_mutex_unlock(&b->mu);
}

void kd_control_board_poll(kd_control_board *b, kd_control *out)
{
    memset(out, 0, sizeof *out);
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    out->seq = ++b->seq;
    if (b->pause) out->flags |= KD_CONTROL_PAUSE;
    if (b->stop) out->flags |= KD_CONTROL_STOP;
    if (b->ckpt_requested > b->ckpt_polled) {
        out->checkpoint_gen = b->ckpt_requested;
        b->ckpt_polled = b->ckpt_requested;
    }
    pthread_mutex_unlock(&b->mu);
}

void kd_control_board_checkpoint_done(kd_control_board *b, uint64_t gen, const char *path,
                                      int64_t step, int ok, const char *msg)
{
    if (!b) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double wall = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    pthread_mutex_lock(&b->mu);
    if (gen > 0 && gen >= b->ckpt.gen) {
        b->ckpt.gen = gen;
        b->ckpt.ok = ok ? 1 : 0;
        b->ckpt.step = step;
        b->ckpt.wall = wall;
        snprintf(b->ckpt.path, sizeof b->ckpt.path, "%s", path ? path : "");
        snprintf(b->ckpt.msg, sizeof b->ckpt.msg, "%s", msg ? msg : "");
    }
    if (ok) { /* the status shows it at once, not only after the next publish */
        snprintf(b->last_path, sizeof b->last_path, "%s", path ? path : "");
        b->last_wall = wall;
        b->last_step = step;
        merge_last_locked(b);
    }
    if (b->wake) b->wake(b->wake_arg);
    pthread_mutex_unlock(&b->mu);
}

/* ---- server side --------------------------------------------------------------------- */

bool kd_control_board_snapshot(kd_control_board *b, kd_job_status *out)
{
    pthread_mutex_lock(&b->mu);
    bool have = b->have_snap;
    memcpy(out, &b->snap, sizeof *out);
    pthread_mutex_unlock(&b->mu);
    return have;
}

/* A request made after the trainer polled the current generation needs a new one; a
 * request made before that poll shares the pending generation. */
static uint64_t request_gen_locked(kd_control_board *b)
{
    if (b->ckpt_requested <= b->ckpt_polled) b->ckpt_requested = b->next_gen++;
    return b->ckpt_requested;
}

uint64_t kd_control_board_request_checkpoint(kd_control_board *b)
{
    pthread_mutex_lock(&b->mu);
    uint64_t gen = request_gen_locked(b);
    pthread_mutex_unlock(&b->mu);
    return gen;
}

uint64_t kd_control_board_request_stop(kd_control_board *b)
{
    pthread_mutex_lock(&b->mu);
    uint64_t gen = b->stop ? b->ckpt_requested : request_gen_locked(b);
    b->stop = true;
    pthread_mutex_unlock(&b->mu);
    return gen;
}

void kd_control_board_request_pause(kd_control_board *b, bool pause)
{
    pthread_mutex_lock(&b->mu);
    b->pause = pause;
    pthread_mutex_unlock(&b->mu);
}

void kd_control_board_checkpoint_result(kd_control_board *b, kd_checkpoint_result *out)
{
    pthread_mutex_lock(&b->mu);
    memcpy(out, &b->ckpt, sizeof *out);
    pthread_mutex_unlock(&b->mu);
}

void kd_control_board_requested(kd_control_board *b, bool *pause, bool *stop)
{
    pthread_mutex_lock(&b->mu);
    if (pause) *pause = b->pause;
    if (stop) *stop = b->stop;
    pthread_mutex_unlock(&b->mu);
}
