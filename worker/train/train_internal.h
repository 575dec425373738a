/* train_internal.h — the trainer's state, shared by its files:
 *   trainer.c   the step loop, control decisions, logs and status
 *   setup.c     data index broadcast, loaders, student creation/initialisation/broadcast
 *   state.c     checkpoint save and resume (parameters, momentum, progress)
 *   evaluate.c  inference over this rank's shard of the validation set, COCO evaluation
 */
#ifndef KD_TRAIN_INTERNAL_H
#define KD_TRAIN_INTERNAL_H

#include "proto/coco_json.h"
#include "proto/tfevents.h"
#include "worker/data/loader.h"
#include "worker/distill/distill.h"
#include "kernels/cuda/loss_scale.h"
#include "worker/grad_sync.h"
#include "worker/meter.h"
#include "worker/model/model.h"
#include "worker/optim.h"
#include "worker/train/trainer.h"

typedef struct kd_trainer {
    const kd_trainer_args *a;
    const kd_config *cfg;
    const kd_dist *d;
    const kd_backend *be;
    char work_dir[KD_CFG_STR_BYTES];

    /* data */
    kd_data_cfg train_dcfg, val_dcfg;
    kd_coco_index train_idx, val_idx;
    kd_loader *loader;
    kd_coco_file val_gt;          /* rank 0 only: the evaluator's ground truth */
    int have_val;
    int pad_h, pad_w;             /* largest padded batch image */

    /* model and optimisation */
    kd_model *student;
    kd_det_loss *loss;
    kd_distiller *distill;        /* NULL unless model.kd_cfg.method != none */
    kd_params *adapter;           /* the distiller's trainable parameters, or NULL */
    kd_grad_sync adapter_sync;
    kd_image_gt *gts;             /* [batch_size] */
    kd_grad_comm *comm;           /* gradient transport: MPI (cpu) or NCCL (cuda) */
    kd_grad_sync sync;
    double sync_wait;             /* last step's all-reduce wait, mean over ranks (seconds) */
    kd_sgd_cfg sgd;
    kd_lr_schedule sched;
    int scaling;                  /* loss scaling on (float16 mixed precision, or static) */
    kd_loss_scaler scaler;        /* its state (checkpointed as section "loss_scaler") */
    float *img_dev;               /* device copy of the batch images */
    float *host_params;           /* staging for broadcasts and checkpoints */
    float *host_mom;
    float *host_adapter;          /* staging of the adapter's parameters and momentum */

    /* progress */
    long long iter;               /* completed global iterations */
    long long epoch;              /* 0-based epoch of the next iteration */
    uint32_t batch_in_epoch;      /* batches of that epoch already done */
    long long iters_per_epoch, max_iters;
    int stop_requested;           /* 1 = control stop, 2 = signal (requeue) */

    /* logs */
    kd_meter meter;
    kd_tfevents tb;
    kd_job_status status;
    double last_ap;
    long long last_eval_iter;
} kd_trainer;

/* setup.c */
kd_status kd_train_setup_data(kd_trainer *t, kd_err *err);
kd_status kd_train_setup_model(kd_trainer *t, kd_err *err);
void kd_train_teardown(kd_trainer *t);
/* Copy the student's parameters (and momentum) from rank 0 to every rank. */
void kd_train_broadcast_student(kd_trainer *t, int with_momentum);

/* state.c */
kd_status kd_train_save_checkpoint(kd_trainer *t, char *path_out, size_t cap, kd_err *err);
/* resume = "" (nothing), "auto" or a path; on every rank (rank 0 reads, then broadcasts). */
kd_status kd_train_resume(kd_trainer *t, kd_err *err);

/* evaluate.c */
kd_status kd_train_evaluate(kd_trainer *t, double stats[12], kd_err *err);

#endif
