/* distill.h — the distiller: what the trainer, the inspector and the tests call to add a
 * distillation method (model.kd_cfg.method) to a GFL student's training step.
 *
 * A distiller owns the frozen teacher (an inference-mode kd_model: no gradient or momentum
 * arenas, activations shared except its outputs and held features; weights from
 * teacher_ckpt, architecture from the model section of teacher_config; never saved with the
 * student) and the method's workspace. GFLHead students take every method; ATSSHead and
 * RetinaHead students crosskd and pred_mimic. The teacher has the student's head type,
 * except for crosskd, whose cross-head runs through the teacher's own head (any type:
 * paper Table 7) and whose KD losses are the ones of the teacher's head type. Per step, after the student's forward and
 * kd_det_loss_compute (which overwrites the student's d_cls / d_reg):
 *
 *   kd_distiller_teacher_forward(d, img, n, h, w)    teacher on the same batch tensor
 *   (student forward, kd_det_loss_prepare)
 *   kd_distiller_forward(d, student, gts)            cross-head branch (crosskd)
 *   (all-reduce of [num_pos, W], kd_det_loss_compute)
 *   kd_distiller_compute(d, student, ls, P, &terms)
 *       KD losses (values in terms, already weighted and normalised) and their gradients:
 *       crosskd   -> the student's held-feature gradient (student->d_held, use_d_held = 1):
 *                    cross-head backward through the teacher's layers (input gradients only)
 *       pred_mimic-> added to the student's d_cls / d_reg
 *       pkd       -> the student's FPN-output gradient (held-feature tap at index 0)
 *       crosskd with loss_feat_kd.loss_weight > 0 (CrossKD+PKD) -> both
 *       bckd, ld  -> added to the student's d_cls / d_reg
 *       rm_pfi    -> RM to d_cls, PFI to the FPN-output gradient (tap at index 0)
 *   kd_distiller_backward(d, student)                the student's backward with the KD
 *                                                    gradients (instead of kd_model_backward)
 *
 * Normalisers (crosskd.md §5.2, §5.4): the classification KD divides by P, the QFL's
 * normaliser (mean over ranks of the positives, so the caller passes the reduced value);
 * the regression KD divides by R, the sum of the teacher's max class probabilities over this
 * rank's valid anchors (local, not reduced). So no statistics beyond the detection loss's
 * are reduced, and the compute is a single phase after the all-reduce of [num_pos, W].
 *
 * Methods (kd_kd_method): crosskd, pred_mimic, pkd, CrossKD+PKD, bckd, ld and rm_pfi.
 *
 * Trainable state of its own: with model.kd_cfg.adapter (crosskd), the 1x1 adapter's
 * parameter table (kd_distiller_trainable: data, grad, momentum arenas, keys
 * distill.adapter.{cls,reg}.weight). Its gradient is complete after kd_distiller_compute
 * (overwritten there); the caller all-reduces it, steps it with the student's SGD and saves
 * it in checkpoints. Initialised identically on every rank from the config's seed.
 */
#ifndef KD_DISTILL_H
#define KD_DISTILL_H

#include "worker/model/model.h"
#include "worker/options.h"

/* KD loss terms of one step under MMDetection's log names (0 when a term is off). */
typedef struct kd_distill_terms {
    double loss_cls_kd, loss_reg_kd, loss_feat_kd;
    double loss_center_kd; /* ATSS's centerness KD (MMDetection logs it as losses_center_kd) */
    /* paper Fig. 3 (log_conflict_ratio, else 0): target-conflict and positive anchors of
     * this rank; the ratio is conflicts / positives (sum both over ranks first) */
    double conflicts, positives;
} kd_distill_terms;

typedef struct kd_distiller kd_distiller;

/* The hold_idx the student must be created with for cfg's method (-1: none). */
int kd_distill_student_hold_idx(const kd_model_cfg *cfg);

/* Checks the method and options, loads the teacher architecture from cfg->teacher_config
 * (relative to the directory of config_path unless absolute) and its weights from
 * teacher_ckpt (or cfg->teacher_ckpt when NULL), planned for the student's largest batch.
 * Errors name the file or key. */
kd_status kd_distiller_create(const kd_backend *be, const kd_config *cfg, const char *config_path,
                              const char *teacher_ckpt, const kd_model *student,
                              kd_distiller **out, kd_err *err);
void kd_distiller_destroy(kd_distiller *d);

kd_status kd_distiller_teacher_forward(kd_distiller *d, const float *img, int n, int h, int w,
                                       kd_err *err);
/* After the student's forward: the method's forward on the held features or outputs
 * (crosskd: the cross-head branch) and host copies for the losses. gts: the batch's images
 * (their valid areas). */
void kd_distiller_forward(kd_distiller *d, const kd_model *student, const kd_image_gt *gts);
/* After kd_det_loss_compute: the KD losses and their gradients into the student (see
 * above). ls: the student's loss (its assignment feeds the conflict ratio); P: the reduced
 * QFL normaliser. */
void kd_distiller_compute(kd_distiller *d, kd_model *student, const kd_det_loss *ls, double P,
                          kd_distill_terms *out);

/* Loss scaling (fp16 mixed precision, worker/train): the KD gradients of the following
 * computes are multiplied by scale (the loss values are not). 1 by default. */
void kd_distiller_set_grad_scale(kd_distiller *d, float scale);

/* The adapter's parameter table, or NULL when the method has nothing trainable. */
kd_params *kd_distiller_trainable(kd_distiller *d);

/* The student's backward including every KD gradient of the last compute. */
void kd_distiller_backward(kd_distiller *d, kd_model *student);

const kd_model *kd_distiller_teacher(const kd_distiller *d);
/* crosskd: the cross-head prediction of level l and tower t (device, the teacher's cls or
 * reg output shape) of the last compute; NULL for other methods. */
const float *kd_distiller_cross(const kd_distiller *d, int level, int tower);
/* crosskd with a centerness head (ATSS): the cross-head centerness logits of level l (device,
 * N, 1, H, W); NULL otherwise. */
const float *kd_distiller_cross_ctr(const kd_distiller *d, int level);
/* The method has ATSS's centerness KD (loss_center_kd): an ATSSHead teacher. */
int kd_distiller_has_center_kd(const kd_distiller *d);

#endif
