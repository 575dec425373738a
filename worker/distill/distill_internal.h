/* distill_internal.h — the distiller's state, shared by its files:
 *   distill.c     creation (method checks, teacher), the step's dispatch, host copies of the
 *                 teacher outputs, valid extents, the shared prediction-level KD losses
 *   crosskd.c     the cross-head branch: forward and its input-gradient-only backward
 *   pred_mimic.c  the same KD losses on the student's own predictions
 *   pkd.c         PKD on the FPN outputs (alone, or with CrossKD)
 *   bckd.c        BCKD's binary classification and IoU-based localisation KD
 *   ld.c          LD: main and valuable-localisation-region distribution KD, main class KD
 *   rm_pfi.c      Rank Mimicking and Prediction-guided Feature Imitation
 *   delta_kd.c    CrossKD's / prediction mimicking's KD losses for ATSS and RetinaNet outputs
 *   fcos_kd.c     the same for FCOS outputs
 *   conflict.c    the paper's Fig. 3 target-conflict counts (log_conflict_ratio)
 *   kd_losses.c   the loss loops (kd_losses.h)
 * Host arrays end in _h; device buffers are reached through the backend only.
 */
#ifndef KD_DISTILL_INTERNAL_H
#define KD_DISTILL_INTERNAL_H

#include "worker/distill/distill.h"
#include "worker/distill/kd_losses.h"


/* A growable device buffer. */
typedef struct kd_dbuf {
    float *p;
    size_t cap;
} kd_dbuf;

/* A growable host buffer. */
typedef struct kd_hbuf {
    float *p;
    size_t cap;
} kd_hbuf;

float *kd_dbuf_get(const kd_backend *be, kd_dbuf *b, size_t elems);
float *kd_hbuf_get(kd_hbuf *b, size_t elems);

/* One level and tower of the cross-head branch. */
typedef struct kd_cross_lt {
    kd_shape ss;                 /* the student's held-feature shape */
    kd_shape hs;                 /* the aligned feature's (teacher channels with the adapter) */
    kd_dbuf ad;                  /* adapter output (adapter on) */
    kd_dbuf al, stats, acts, pred, ctr; /* ctr: the cross-head centerness (ATSS) */
    kd_head_tower_acts a;
} kd_cross_lt;

struct kd_distiller {
    const kd_backend *be;
    int method, idx;
    float w_cls, beta, w_reg, T, w_feat, w_ctr;
    float stds[4]; /* the student's box coder (delta-coded heads) */
    int log_conflict;
    float conflict_thr;
    kd_config *tcfg;
    kd_model *teacher;
    int L, K, R1;
    int CC;      /* cls channels: A * K (RetinaNet: 9 anchors per location) */
    int RC;      /* reg channels: GFL 4 (reg_max + 1), ATSS 4 deltas, RetinaNet 4 A */
    int has_ctr; /* the heads have a centerness output (ATSS) */
    int type;    /* kd_detector of the teacher's head: the KD losses follow its outputs */
    int stype;   /* the student's (differs for crosskd and, GFL student / ATSS teacher, for
                  * pred_mimic: paper Table 7) */
    int src_rc;  /* reg channels of the source predictions: RC, except for prediction mimicking
                  * across head types (the student's own GFL distributions) */
    int src_ctr; /* the source predictions have a centerness (ATSS teacher and ATSS student
                  * or cross-head) */
    const kd_image_gt *gts; /* the batch of the last kd_distiller_forward */
    kd_level_geom g;
    /* per level: valid extents per image, host copies (teacher, source predictions) and the
     * gradients of the source predictions */
    int vh[KD_MAX_LEVELS][64], vw[KD_MAX_LEVELS][64];
    kd_hbuf tc[KD_MAX_LEVELS], tr[KD_MAX_LEVELS], sc[KD_MAX_LEVELS], sr[KD_MAX_LEVELS];
    kd_hbuf dc[KD_MAX_LEVELS], dr[KD_MAX_LEVELS], r[KD_MAX_LEVELS];
    kd_hbuf tctr[KD_MAX_LEVELS], sctr[KD_MAX_LEVELS], dctr[KD_MAX_LEVELS]; /* centerness */
    kd_hbuf pos_mask, lw_buf; /* delta_kd.c: one level's positives and label weights */
    kd_dbuf dev_grad, dev_grad_ctr, s0, s1, dal, dad;
    /* CrossKD's optional 1x1 adapter (model.kd_cfg.adapter): one weight per tower, shape
     * (teacher channels, student channels, 1, 1), in its own trainable arena */
    int has_adapter;
    kd_params adapter;
    kd_cross_lt x[KD_MAX_LEVELS][2];
    /* feature KD: the gradient of the student's FPN outputs, levels [0, feat_levels) */
    int feat_levels;
    kd_dbuf feat_grad[KD_MAX_LEVELS], feat_stats[KD_MAX_LEVELS];
    kd_hbuf feat_h[2];
    float grad_scale; /* loss scaling: every KD gradient is multiplied by it (1 = none) */
};

/* Elements of the source prediction of tower t of a batch of n images on a level of hw positions. */
static inline size_t kd_distill_pred_elems(const kd_distiller *d, int n, int t, size_t hw)
{
    return (size_t)n * (t == KD_TOWER_CLS ? d->CC : d->src_rc) * hw;
}

/* distill.c: copy a level's (N, C, H, W) device tensor to a host buffer. */
float *kd_distill_to_host(kd_distiller *d, kd_hbuf *b, const float *dev, size_t elems);

/* distill.c: upload a host gradient to the device, times the loss scale (every KD gradient
 * reaches the device through here, so loss scaling covers all methods). */
void kd_distill_grad_to_dev(kd_distiller *d, float *dev, const float *host, size_t elems);

/* distill.c: zero the host gradients d->dc / d->dr (/ d->dctr) of a batch of n images. */
void kd_distill_zero_grads(kd_distiller *d, int n);

/* crosskd.c */
void kd_crosskd_forward(kd_distiller *d, const kd_model *st);
void kd_crosskd_backward(kd_distiller *d, kd_model *st);
void kd_crosskd_free(kd_distiller *d);

/* pred_mimic.c */
void kd_pred_mimic_sources(kd_distiller *d, const kd_model *st);
void kd_pred_mimic_backward(kd_distiller *d, kd_model *st);

/* bckd.c: BCKD's two terms on the student's outputs into d->dc / d->dr (ls: positives per
 * level) */
void kd_bckd_compute(kd_distiller *d, const kd_model *st, const kd_det_loss *ls, double P, kd_distill_terms *out);

/* ld.c: LD's main and VLR localisation KD and main class KD into d->dc / d->dr */
void kd_ld_compute(kd_distiller *d, const kd_model *st, const kd_det_loss *ls, kd_distill_terms *out);

/* rm_pfi.c: RM into d->dc, PFI into d->feat_grad */
void kd_rm_pfi_compute(kd_distiller *d, const kd_model *st, kd_distill_terms *out);

/* delta_kd.c: CrossKD's KD losses for ATSS and RetinaNet (crosskd.md §6.1, §6.2) on d->sc /
 * d->sr (/ d->sctr) against the teacher's, gradients into d->dc / d->dr (/ d->dctr); ls: the
 * student's assignment (positives, ignored anchors, RetinaNet's avg_factor) */
void kd_delta_kd_compute(kd_distiller *d, int n, const kd_det_loss *ls, double P, kd_distill_terms *out);
/* fcos_kd.c: CrossKD's KD losses for FCOS (crosskd.md §6.3), / the student's D */
void kd_fcos_kd_compute(kd_distiller *d, int n, const kd_det_loss *ls, kd_distill_terms *out);

/* conflict.c: the paper's Fig. 3 counts (conflicting rows or locations, positives) into out */
void kd_conflict_counts(const kd_distiller *d, const kd_model *student, const kd_det_loss *ls,
                        kd_distill_terms *out);

/* pkd.c: loss_feat_kd and d->feat_grad */
void kd_pkd_compute(kd_distiller *d, const kd_model *st, double *loss);
void kd_pkd_free(kd_distiller *d);

#endif
