/* control.h — the small control interface between the training loop and the coordinator
 * (DESIGN.md §7).
 *
 * Two plain-data records cross the boundary, and one mailbox carries them:
 *
 *   kd_control     the coordinator's decisions for one step boundary (checkpoint now, stop,
 *                  pause). Fixed size, no pointers: rank 0 takes it from the mailbox and
 *                  broadcasts it as bytes (MPI_Bcast of sizeof(kd_control) MPI_BYTEs), so
 *                  every rank acts on the same decisions at the same iteration boundary.
 *   kd_job_status  the snapshot the trainer on rank 0 publishes after each step: progress,
 *                  losses, speed, memory, last checkpoint and evaluation, and one row per
 *                  rank. Also plain bytes (fixed strings, fixed arrays).
 *   kd_control_board  the mailbox between the two threads of rank 0: the trainer publishes
 *                  (copy under a mutex), polls decisions (lock, copy, clear) and reports
 *                  finished checkpoints; the status server reads the snapshot and files
 *                  requests. Every call is O(sizeof record) and never waits on a client.
 *
 * The worker never calls into the daemon: it only sees this header. A board pointer may be
 * NULL (no coordinator: other ranks, or status serving disabled), in which case publish and
 * checkpoint_done do nothing and poll returns "no decision".
 *
 * Typical step loop (every rank; `board` non-NULL only on rank 0):
 *
 *     for (;;) {
 *         kd_control c;
 *         kd_control_board_poll(board, &c);                  // rank 0; others: zeroed
 *         MPI_Bcast(&c, sizeof c, MPI_BYTE, 0, comm);
 *         if (c.checkpoint_gen) { save; kd_control_board_checkpoint_done(board, c.checkpoint_gen,
 *                                 path, step, ok, msg); }
 *         if (c.flags & KD_CONTROL_STOP) break;              // after the final checkpoint
 *         if (c.flags & KD_CONTROL_PAUSE) { publish state KD_JOB_PAUSED; sleep ~50 ms; continue; }
 *         train one step;
 *         MPI_Gather(&row, sizeof row, MPI_BYTE, st.ranks, sizeof row, MPI_BYTE, 0, comm);
 *         kd_control_board_publish(board, &st);              // rank 0 (st.n_ranks rows)
 *     }
 *     publish state KD_JOB_STOPPED;                          // then kd_coord_shutdown
 *
 * (With more than KD_STATUS_RANK_MAX ranks, gather into a larger buffer and copy the first
 * rows.) What the server waits for: `checkpoint` is answered when checkpoint_done reports
 * its generation; `pause` when a published snapshot has state KD_JOB_PAUSED, `resume` when
 * one no longer has; `stop` when the final checkpoint is reported and a snapshot with
 * KD_JOB_STOPPED is published (or at shutdown).
 *
 * Semantics: a checkpoint request is an edge (returned once, then cleared; requests made
 * before one poll coalesce into one generation); pause is a level (set by pause, cleared by
 * resume: the loop re-polls while paused, so every rank holds at the same step); stop is
 * sticky, and the first poll that carries it also carries a checkpoint generation (the
 * final checkpoint, taken at the stop step even if another one was just written).
 * The board is thread-safe; the trainer's calls are meant for one thread on rank 0, and
 * the board must outlive the last of them (kd_coord_shutdown after the step loop).
 */
#ifndef KD_CONTROL_H
#define KD_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/status.h"

/* ---- decisions (broadcast to every rank) ------------------------------------------- */

enum {
    KD_CONTROL_PAUSE = 1u << 0, /* hold at this boundary; poll again */
    KD_CONTROL_STOP = 1u << 1,  /* save the final checkpoint (checkpoint_gen), then exit */
};

typedef struct kd_control {
    uint32_t flags;          /* KD_CONTROL_* */
    uint32_t reserved;       /* zero */
    uint64_t seq;            /* poll counter on rank 0, for logs and consistency checks */
    uint64_t checkpoint_gen; /* non-zero: save now and report this generation when on disk */
} kd_control;

/* Plain bytes with no padding: the same layout on every rank of one build. */
_Static_assert(sizeof(kd_control) == 24, "kd_control is broadcast as 24 bytes");

/* ---- the job-status snapshot ------------------------------------------------------- */

#define KD_STATUS_STR_BYTES 128  /* job name, host, device, loss names */
#define KD_STATUS_PATH_BYTES 512 /* config path, checkpoint path */
#define KD_STATUS_LOSS_MAX 24    /* named loss terms */
#define KD_STATUS_LOSS_NAME_BYTES 32
#define KD_STATUS_RANK_MAX 128   /* ranks listed individually; world_size may be larger */

typedef enum kd_job_state {
    KD_JOB_STARTING = 0,
    KD_JOB_RUNNING,
    KD_JOB_PAUSED,        /* every rank holds at the same step boundary */
    KD_JOB_CHECKPOINTING, /* writing a checkpoint at a step boundary */
    KD_JOB_STOPPING,      /* final checkpoint and shutdown under way */
    KD_JOB_STOPPED,
    KD_JOB_STATE_COUNT
} kd_job_state;

typedef enum kd_rank_state {
    KD_RANK_RUNNING = 0,
    KD_RANK_WAITING, /* waiting on data, a collective, a checkpoint or a pause */
    KD_RANK_STOPPED,
    KD_RANK_STATE_COUNT
} kd_rank_state;

typedef struct kd_rank_status {
    char host[64];
    char device[32];          /* "cpu", "cuda:3" */
    int32_t state;            /* kd_rank_state */
    int32_t reserved;
    int64_t iter;             /* last completed global iteration on this rank */
    double last_step_seconds; /* duration of the last step */
    double memory_bytes;      /* peak since the previous publish (device or host) */
} kd_rank_status;

_Static_assert(sizeof(kd_rank_status) == 128, "kd_rank_status is gathered as 128 bytes");

typedef struct kd_loss_term {
    char name[KD_STATUS_LOSS_NAME_BYTES]; /* "loss_cls", "loss_cls_kd", ... */
    double value;
} kd_loss_term;

typedef struct kd_job_status {
    char job_name[KD_STATUS_STR_BYTES];   /* e.g. the config's basename without .yaml */
    char config_path[KD_STATUS_PATH_BYTES];
    int32_t state;            /* kd_job_state */
    int32_t world_size;
    int64_t epoch, max_epochs;          /* 1-based epoch being trained */
    int64_t iter, total_iters;          /* completed global iterations, of total */
    int64_t iter_in_epoch, iters_per_epoch;
    int32_t n_losses, n_ranks;          /* valid rows in losses[] and ranks[] */
    kd_loss_term losses[KD_STATUS_LOSS_MAX];
    double loss_total;
    double lr;
    double images_per_second;
    double data_time_seconds;           /* mean wait for a batch, last window */
    double step_time_seconds;           /* mean step time, last window */
    double eta_seconds;                 /* < 0: unknown */
    double memory_bytes;                /* max over ranks */
    double start_wall;                  /* unix seconds when the job started */
    char last_checkpoint_path[KD_STATUS_PATH_BYTES]; /* "" = none yet */
    double last_checkpoint_wall;        /* unix seconds the file was on disk */
    int64_t last_checkpoint_step;
    double last_ap;                     /* COCO bbox mAP in [0,1]; NaN = not evaluated yet */
    int64_t last_eval_step;
    kd_rank_status ranks[KD_STATUS_RANK_MAX];
} kd_job_status;

/* A fresh snapshot: zeros, state STARTING, eta -1, last_ap NaN. */
void kd_job_status_init(kd_job_status *st);
/* Set (or add) a named loss term; returns false when the table is full. */
bool kd_job_status_set_loss(kd_job_status *st, const char *name, double value);
const char *kd_job_state_name(int state);   /* "running", ...; "unknown" when out of range */
const char *kd_rank_state_name(int state);

/* ---- the mailbox on rank 0 --------------------------------------------------------- */

typedef struct kd_control_board kd_control_board;

/* Result of a checkpoint, as reported by the trainer. */
typedef struct kd_checkpoint_result {
    uint64_t gen;                     /* generation written (0 = none yet) */
    int ok;                           /* 1 = on disk, 0 = failed */
    int64_t step;
    double wall;                      /* unix seconds when reported */
    char path[KD_STATUS_PATH_BYTES];  /* the file, when ok */
    char msg[256];                    /* the failure, when !ok */
} kd_checkpoint_result;

/* Called from the trainer's thread, with the board locked (so it must be short and must
 * not call into the board), when something a waiting client may care about happened: a
 * checkpoint finished or the job state changed. */
typedef void (*kd_control_wake_fn)(void *arg);

kd_status kd_control_board_create(kd_control_board **out, kd_err *err);
void kd_control_board_destroy(kd_control_board *b);
void kd_control_board_set_wake(kd_control_board *b, kd_control_wake_fn fn, void *arg);

/* trainer side (rank 0) — each is a copy under the mutex; NULL board = no-op */
void kd_control_board_publish(kd_control_board *b, const kd_job_status *st);
void kd_control_board_poll(kd_control_board *b, kd_control *out);
/* Report a checkpoint: gen is the kd_control.checkpoint_gen it answers, or 0 for one the
 * trainer made on its own (interval, end of the run). ok = the file is on disk (after the
 * rename and the directory fsync); otherwise msg says why. Status replies show the newest
 * successful one at once. */
void kd_control_board_checkpoint_done(kd_control_board *b, uint64_t gen, const char *path,
                                      int64_t step, int ok, const char *msg);

/* server side */
/* Copy the latest snapshot; returns false when nothing was published yet. */
bool kd_control_board_snapshot(kd_control_board *b, kd_job_status *out);
/* Ask for a checkpoint at the next boundary; returns the generation that will satisfy it. */
uint64_t kd_control_board_request_checkpoint(kd_control_board *b);
/* Ask to stop (with a final checkpoint); returns that checkpoint's generation. */
uint64_t kd_control_board_request_stop(kd_control_board *b);
void kd_control_board_request_pause(kd_control_board *b, bool pause);
/* The latest checkpoint result (gen 0 = none). */
void kd_control_board_checkpoint_result(kd_control_board *b, kd_checkpoint_result *out);
/* Requested state, for status replies: pause level and stop flag. */
void kd_control_board_requested(kd_control_board *b, bool *pause, bool *stop);

#endif
