/* trainer.h — the training job of one rank (DESIGN.md §4, §7, §8).
 *
 * kd_trainer_run is what crosskd-worker calls after MPI and the config are up: it sets up
 * the data (rank 0 builds the index, every rank receives it), the student (rank 0
 * initialises or loads it, every rank receives it), optionally resumes from a checkpoint,
 * then runs the step loop: batch -> forward -> losses with all-reduced normalisers ->
 * backward -> gradient all-reduce -> SGD -> logs and status; checkpoints every
 * `default_hooks.checkpoint.interval` epochs, evaluates every `train_cfg.val_interval`
 * epochs and at the end, and obeys the coordinator's decisions and SIGTERM/SIGUSR1 at step
 * boundaries, identically on every rank.
 *
 * Return value: the process exit status (0 done, 1 error (message logged),
 * KD_EXIT_REQUEUE after a signal-triggered checkpoint).
 */
#ifndef KD_TRAINER_H
#define KD_TRAINER_H

#include "proto/control.h"
#include "worker/dist.h"
#include "worker/options.h"

typedef struct kd_trainer_args {
    const kd_config *cfg;
    const char *config_path;     /* for logs and status */
    const char *config_text;     /* effective config (YAML), saved into work_dir */
    const kd_dist *dist;
    kd_control_board *board;     /* rank 0's coordinator mailbox; NULL elsewhere or disabled */
} kd_trainer_args;

int kd_trainer_run(const kd_trainer_args *a);

#endif
