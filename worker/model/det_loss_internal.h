/* det_loss_internal.h — the detection-loss object shared by det_loss.c (host copies,
 * anchors, assignment, statistics, dispatch), gfl_loss.c and atss_loss.c (each head's
 * loss terms and gradients). Everything here is host memory; rows of an image are its
 * anchor rows (kd_level_geom), heads' tensors are the level's (N, C, H, W) host copies.
 */
#ifndef KD_DET_LOSS_INTERNAL_H
#define KD_DET_LOSS_INTERNAL_H

#include <float.h>

#include "worker/model/model.h"

/* MMDetection adds float32 epsilon to every avg_factor. */
#define KD_AVG_EPS ((double)FLT_EPSILON)

struct kd_det_loss {
    int type; /* kd_detector of the head */
    kd_level_geom g;
    int N, K, R;
    size_t A; /* anchor rows per image */
    size_t cap_cls[KD_MAX_LEVELS], cap_reg[KD_MAX_LEVELS], cap_ctr[KD_MAX_LEVELS], cap_a;
    float *cls[KD_MAX_LEVELS], *reg[KD_MAX_LEVELS], *ctr[KD_MAX_LEVELS];
    float *dcls[KD_MAX_LEVELS], *dreg[KD_MAX_LEVELS], *dctr[KD_MAX_LEVELS];
    float *anchors; /* A x 4, one image (every image has the same anchors) */
    float *score;   /* N*A: GFL's IoU quality target */
    float *wt;      /* N*A, positives: GFL max_c sigmoid(cls); ATSS the centerness target */
    uint8_t *valid; /* N*A */
    int *assigned, *label; /* N*A: gt index, class (-1 negative) */
    float *tgt;     /* N*A*4 matched gt box */
    double num_pos, weight_sum;
    double avg_local; /* RetinaNet: sum over the local images of max(positives, 1) */
    double P_used, W_used; /* the normalisers of the last compute */
};

/* Index of (image i, channel c, anchor row a of level l) in the level's N,C,H,W tensor, one
 * anchor per location. */
static inline size_t kd_loss_at(const kd_level_geom *g, int l, int C, int i, int c, size_t a)
{
    size_t hw = (size_t)g->h[l] * g->w[l];
    return ((size_t)i * C + c) * hw + (a - g->off[l]);
}

/* The same for A anchors per location: row r of level l is location (r - off[l]) / A,
 * anchor (r - off[l]) % A, whose Cpa channels start at channel anchor * Cpa. */
static inline size_t kd_loss_at_a(const kd_level_geom *g, int l, int Cpa, int i, int c, size_t r)
{
    size_t hw = (size_t)g->h[l] * g->w[l], rr = r - g->off[l], A = (size_t)g->A;
    return ((size_t)i * A * Cpa + (rr % A) * Cpa + c) * hw + rr / A;
}

/* Aligned IoU, union clamped to >= 1e-6. */
float kd_loss_iou_aligned(const float *p, const float *t);

/* gfl_loss.c / atss_loss.c: the losses of every level into ls->d* and out. */
void kd_det_loss_levels(kd_det_loss *ls, const kd_model *m, double P, double W, double grad_scale,
                        kd_det_losses *out);
void kd_atss_loss_levels(kd_det_loss *ls, const kd_model *m, double P, double W, double grad_scale,
                         kd_det_losses *out);
void kd_retina_loss_levels(kd_det_loss *ls, const kd_model *m, double grad_scale, kd_det_losses *out);
void kd_fcos_loss_levels(kd_det_loss *ls, const kd_model *m, double P, double W, double grad_scale,
                         kd_det_losses *out);
/* fcos_loss.c: FCOS's centerness target of a point and a gt box. */
float kd_fcos_centerness_target(const float *pt, const float *gt);
/* atss_loss.c: sigmoid focal loss of one logit with a 0/1 target, and d/dx. */
double kd_focal_elem(float x, int target, double gamma, double alpha, double *dx);
/* atss_loss.c: ATSS's centerness target of an anchor (its centre) and a gt box. */
float kd_atss_centerness_target(const float *anchor, const float *gt);

#endif
