/* model.h — the dense detectors (crosskd.md §3, §5.1, §6, §7) with MMDetection 3.0
 * semantics — GFL (the default), ATSS and RetinaNet, selected by model.bbox_head.type — what
 * the trainer, the distillation code, the inspector and the tests call.
 *
 * Objects and their files:
 *   kd_params      params.c     parameter table (MMDetection key, shape, offset, trainable) and
 *                               the arenas: parameters, gradients, momentum, one block each.
 *                               Trainable entries come first, so [0, train_elems) of the
 *                               parameter arena lines up with the gradient and momentum arenas.
 *   kd_plan        params.c     activation-arena planner (persistent buffers and shared slots).
 *   kd_resnet      resnet.c     ResNet 18/34/50/101, pytorch or caffe style, BN in inference mode.
 *   kd_fpn         fpn.c        FPN, start level, extra convs on output or input.
 *   kd_head        head.c       GFLHead / ATSSHead / RetinaHead towers, prediction convs
 *                               (+ centerness), per-level Scale; the tower pieces CrossKD
 *                               re-uses (kd_head_tower_fwd/bwd from any block).
 *   anchors.c / atss.c / max_iou.c  anchors (A per location), valid flags, the ATSS and
 *                               MaxIoU assigners (host).
 *   kd_det_loss    det_loss.c   the detection loss in two phases (local statistics, then the
 *                               loss given the reduced normalisers); per head gfl_loss.c (QFL,
 *                               GIoU, DFL), atss_loss.c (focal, GIoU on decoded deltas,
 *                               centerness; the delta coder), retina_loss.c (focal, L1).
 *   postprocess.c               inference: scores, top-k, decode, clip, score factor,
 *                               rescale, NMS.
 *   init.c                      MMDetection initialisation with the project's PCG32 RNG.
 *   weights.c / tensor_file.c   safetensors in and out with MMDetection key names.
 *   kd_model       model.c      construction, arena planning, forward, backward.
 *
 * One training step (see tests/unit/model/test_train.c):
 *     kd_model_forward -> kd_det_loss_prepare (local statistics) -> all-reduce of the
 *     statistics (caller) -> kd_det_loss_normalisers -> kd_det_loss_compute (writes d_cls,
 *     d_reg, d_ctr) -> kd_model_zero_grad -> kd_model_backward -> optimiser on
 *     params.data/grad/mom.
 * CrossKD (crosskd.md §4; worked example: tests/unit/model/test_crosskd.c): the student is
 * created with opts.hold_idx = idx and the teacher with opts.inference = 1 and the same idx;
 * after both forwards, per level l and tower t: channel_stats(teacher->held[l][t]),
 * align_scale_fwd(student->held[l][t]), ReLU when idx > 0, kd_head_tower_fwd(teacher head,
 * first = idx) -> cross-head prediction; its backward is kd_head_tower_bwd(...,
 * with_param_grads = 0), relu_bwd, align_scale_bwd into student->d_held[l][t]; then set
 * student->use_d_held = 1 before kd_model_backward, which adds d_held at block idx.
 *
 * Conventions: tensors are float32 NCHW device buffers reached only through kd_backend;
 * host arrays are named *_host. Parameter gradients accumulate (+=) and a NULL gradient
 * pointer skips them (the frozen teacher); activation gradients overwrite except at fan-in
 * points (DESIGN.md §5). Shape letters N, C, H, W, A (anchors), K (classes).
 */
#ifndef KD_MODEL_H
#define KD_MODEL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "worker/model/tensor_file.h"
#include "proto/status.h"
#include "worker/options.h"

#define KD_MAX_LEVELS 8
#define KD_MAX_STACKED 8
#define KD_PARAM_NAME_BYTES 80

/* ---- parameter table (params.c) ------------------------------------------------------ */

typedef enum { KD_DT_F32 = 0, KD_DT_I64 = 1 } kd_dtype;

typedef struct kd_param {
    char name[KD_PARAM_NAME_BYTES]; /* MMDetection state-dict key */
    int ndim;                       /* 0 for a scalar (Scale) */
    int64_t shape[4];
    size_t elems;
    size_t offset;  /* element offset in the float arena (F32) or the int64 host array (I64) */
    int trainable;  /* has a gradient and momentum (same offset in those arenas) */
    int dtype;      /* kd_dtype: I64 only for BN num_batches_tracked (kept, not used) */
} kd_param;

typedef struct kd_params {
    kd_param *p;
    int n, cap;
    size_t train_elems; /* trainable parameters: [0, train_elems) */
    size_t total_elems; /* float parameters and buffers */
    size_t i64_elems;
    const kd_backend *be;
    float *data;        /* device, total_elems */
    float *grad;        /* device, train_elems (NULL in inference mode) */
    float *mom;         /* device, train_elems (NULL in inference mode) */
    int64_t *i64_host;  /* num_batches_tracked values */
} kd_params;

int kd_params_add(kd_params *t, const char *name, int trainable, int dtype, int ndim,
                  int64_t d0, int64_t d1, int64_t d2, int64_t d3);
/* Assigns offsets (trainable first), allocates the arenas (grad/mom when with_grads). */
void kd_params_finish(kd_params *t, const kd_backend *be, int with_grads);
int kd_params_find(const kd_params *t, const char *name);
float *kd_params_ptr(const kd_params *t, int idx);
float *kd_params_grad(const kd_params *t, int idx); /* NULL: frozen, or no gradient arena */
void kd_params_free(kd_params *t);

/* ---- activation planner (params.c) --------------------------------------------------- */

#define KD_PLAN_SLOTS 16
typedef struct kd_plan {
    int inference;          /* slots >= 0 are shared regions; otherwise every take is fresh */
    int share;              /* same, for a stretch of a training model whose activations the
                               backward never reads (frozen layers below the lowest trainable) */
    uintptr_t base;         /* 0 in the sizing pass */
    size_t used;            /* persistent elements taken so far */
    size_t slot_off[KD_PLAN_SLOTS], slot_elems[KD_PLAN_SLOTS];
    size_t grad_off, grad_used; /* the backward-only region (KD_PLAN_GRAD) */
    size_t peak_elems;
} kd_plan;

/* Slot of the buffers only the loss and the backward write (activation gradients and
 * scratch): in a training plan they are bump-allocated in a region that overlaps the shared
 * forward-only slots, so they are valid from the end of a forward to the end of the
 * backward. In an inference plan they are persistent. */
#define KD_PLAN_GRAD (-2)

/* A buffer of `elems` floats: slot -1 persistent; slot >= 0 shared in inference mode (or in
 * a `share` stretch); KD_PLAN_GRAD the backward region. */
float *kd_plan_take(kd_plan *p, size_t elems, int slot);

/* ---- layers ---------------------------------------------------------------------------- */

typedef struct kd_convbn {
    int w, g, b, rm, rv; /* parameter indices */
    int cin, cout, k, stride, pad, relu;
    kd_conv_desc d;
    float *yc, *y; /* conv output, BN (+ReLU) output */
} kd_convbn;

typedef struct kd_resblock {
    int nconv, has_ds, stage, frozen;
    kd_convbn c[3], ds;
    const float *x;
    kd_shape xs;
} kd_resblock;

typedef struct kd_resnet {
    int depth, base, frozen, bottleneck, nblk[4], out_c[4], n_blk;
    kd_convbn stem;
    kd_shape pool_in, pool_out;
    float *pool_y;
    int32_t *pool_arg;
    kd_resblock *blk;
    const float *out[4];
    kd_shape out_s[4];
} kd_resnet;

typedef struct kd_fpn {
    int n_in, start, num_outs, out_c, extra; /* extra: kd_extra_convs */
    int relu_extra; /* relu_before_extra_convs (FCOS): extra level i > n_in reads ReLU(out[i-1]) */
    float *relu_in[KD_MAX_LEVELS], *d_relu[KD_MAX_LEVELS]; /* that ReLU's output, its gradient */
    int in_c[4];
    int lat_w[4], lat_b[4], fpn_w[KD_MAX_LEVELS], fpn_b[KD_MAX_LEVELS];
    kd_conv_desc lat_d[4], fpn_d[KD_MAX_LEVELS];
    float *lat[4], *out[KD_MAX_LEVELS];
    kd_shape out_s[KD_MAX_LEVELS];
    float *d_out[KD_MAX_LEVELS], *d_lat[4], *d_in[4]; /* gradient buffers (training) */
} kd_fpn;

enum { KD_TOWER_CLS = 0, KD_TOWER_REG = 1 };

/* A dense head (head.c; model.bbox_head.type). Parameter indices into the model's table; -1
 * where the head type has no such parameter. */
typedef struct kd_head {
    int type;          /* kd_detector: GFL, RetinaNet, ATSS, FCOS */
    int K, S, C_in, F, R, G, L;
    int A;             /* anchors per location (RetinaNet: ratios x scales_per_octave) */
    int norm;          /* GN in the tower blocks; without it the block convs have a bias */
    int cls_c, reg_c;  /* prediction channels: A*K; GFL 4*(R+1), others 4*A */
    int ctr_tower;     /* tower whose last features feed the centerness conv (ATSS reg, FCOS
                          cls), or -1 */
    int has_scale;     /* per-level Scale on the reg prediction */
    int conv_w[2][KD_MAX_STACKED], conv_b[2][KD_MAX_STACKED];
    int gn_g[2][KD_MAX_STACKED], gn_b[2][KD_MAX_STACKED];
    int cls_w, cls_b, reg_w, reg_b, ctr_w, ctr_b, scale[KD_MAX_LEVELS], project;
    double strides[KD_MAX_LEVELS];
} kd_head;

/* "GFLHead", "ATSSHead", "RetinaHead" (MMDetection's names). */
const char *kd_head_type_name(int type);
/* Output channels of a tower's prediction conv. */
int kd_head_pred_channels(const kd_head *h, int tower);

/* Activations of one tower on one level: block j conv output and post-ReLU output, GN
 * statistics, and (reg tower) the prediction before Scale. */
typedef struct kd_head_tower_acts {
    float *conv[KD_MAX_STACKED], *out[KD_MAX_STACKED];
    float *mean[KD_MAX_STACKED], *rstd[KD_MAX_STACKED];
    float *pred_raw;
} kd_head_tower_acts;

/* Elements kd_head_tower_fwd needs in acts for blocks first..S-1 on input shape x (training:
 * every buffer kept). Use kd_head_tower_acts_bind to lay them out in a caller buffer. */
size_t kd_head_tower_acts_elems(const kd_head *h, kd_shape x, int first);
void kd_head_tower_acts_bind(const kd_head *h, kd_shape x, int first, float *buf,
                             kd_head_tower_acts *a);

/* Runs tower `tower` of head h (parameters P) from block `first` (0..S; first == S runs only
 * the prediction conv) on x (the post-ReLU output of block first-1, or the FPN feature when
 * first == 0), then the prediction conv (+ Scale of `level` for reg) into pred (N, cls_c or
 * reg_c, H, W), and on the head's ctr_tower the centerness conv into ctr (N, A, H, W; skipped
 * when ctr is NULL). This is the student's own head AND CrossKD's "teacher blocks idx..n-1". */
void kd_head_tower_fwd(const kd_backend *be, const kd_head *h, const kd_params *P, int tower,
                       int level, int first, kd_shape xs, const float *x, kd_head_tower_acts *a,
                       float *pred, float *ctr);
/* Backward of kd_head_tower_fwd. dpred is consumed (the reg tower scales it in place); dctr
 * (ctr_tower only; NULL = no centerness gradient). with_param_grads = 0 gives the input
 * gradient only (frozen teacher). dx (= or += with accumulate) may be NULL. hold_idx/dheld:
 * when dheld != NULL, it is added to the gradient of the post-ReLU output of block
 * hold_idx-1 (hold_idx > first), the CrossKD fan-in. s0, s1: two scratch buffers of
 * N*F*H*W elements each. */
void kd_head_tower_bwd(const kd_backend *be, const kd_head *h, const kd_params *P, int tower,
                       int level, int first, kd_shape xs, const float *x,
                       const kd_head_tower_acts *a, float *dpred, float *dctr, float *dx,
                       int accumulate, int with_param_grads, int hold_idx, const float *dheld,
                       float *s0, float *s1);

/* Transitional names from when GFL was the only head (callers on other branches); static
 * inline, no link symbol. Remove once no caller uses them. */
typedef kd_head kd_gfl_head;
typedef kd_head_tower_acts kd_gfl_tower_acts;
static inline size_t kd_gfl_tower_acts_elems(const kd_head *h, kd_shape x, int first)
{
    return kd_head_tower_acts_elems(h, x, first);
}
static inline void kd_gfl_tower_acts_bind(const kd_head *h, kd_shape x, int first, float *buf,
                                          kd_head_tower_acts *a)
{
    kd_head_tower_acts_bind(h, x, first, buf, a);
}
static inline void kd_gfl_tower_fwd(const kd_backend *be, const kd_head *h, const kd_params *P,
                                    int tower, int level, int first, kd_shape xs, const float *x,
                                    kd_head_tower_acts *a, float *pred)
{
    kd_head_tower_fwd(be, h, P, tower, level, first, xs, x, a, pred, NULL);
}
static inline void kd_gfl_tower_bwd(const kd_backend *be, const kd_head *h, const kd_params *P,
                                    int tower, int level, int first, kd_shape xs, const float *x,
                                    const kd_head_tower_acts *a, float *dpred, float *dx,
                                    int accumulate, int with_param_grads, int hold_idx,
                                    const float *dheld, float *s0, float *s1)
{
    kd_head_tower_bwd(be, h, P, tower, level, first, xs, x, a, dpred, NULL, dx, accumulate,
                      with_param_grads, hold_idx, dheld, s0, s1);
}

/* ---- the model (model.c) ------------------------------------------------------------- */

typedef struct kd_model_opts {
    int max_n, max_h, max_w; /* largest batch shape (padded); the arena is planned for it */
    int inference;           /* teacher / test: no gradient or momentum arenas, activations
                                shared except the held features and the outputs */
    int hold_idx;            /* -1: none; else keep per level and tower the post-ReLU output
                                of block hold_idx (0 = the FPN feature), crosskd.md §4.1 */
} kd_model_opts;

typedef struct kd_model {
    const kd_backend *be;
    kd_model_cfg cfg;
    kd_model_opts opts;
    kd_params params;
    kd_resnet bb;
    kd_fpn fpn;
    kd_head head;
    int n, h, w;                     /* current batch shape */
    const float *img;                /* input of the last forward (read by backward) */
    float *arena;
    size_t arena_elems, scratch_elems;
    float *g[4];                     /* gradient scratch (training) */
    kd_shape lvl_s[KD_MAX_LEVELS];   /* per level N, F, H, W */
    kd_head_tower_acts acts[KD_MAX_LEVELS][2];
    float *cls[KD_MAX_LEVELS], *reg[KD_MAX_LEVELS];     /* outputs */
    float *ctr[KD_MAX_LEVELS];       /* centerness logits (N, A, H, W) when the head has them */
    /* their gradients (the loss writes): like every activation gradient, valid from the end
     * of a forward to the end of the backward (the memory is shared with forward temporaries) */
    float *d_cls[KD_MAX_LEVELS], *d_reg[KD_MAX_LEVELS], *d_ctr[KD_MAX_LEVELS];
    float *held[KD_MAX_LEVELS][2];   /* held features (hold_idx >= 0) */
    float *d_held[KD_MAX_LEVELS][2]; /* their extra gradient (training, hold_idx >= 0) */
    int use_d_held;                  /* add d_held during backward (set by the caller) */
    /* Set by the caller to overlap the gradient all-reduce with backward: called as the
     * backward finishes parameter gradients, with every gradient from element lo to the end
     * final (after the head, lo = grad_lo_head; after the neck, grad_lo_neck; then after
     * each trainable backbone block, its lowest offset), so the caller can start those
     * buckets (worker/grad_sync.h). NULL: not called. */
    void (*grads_done)(void *ctx, size_t lo);
    void *grads_done_ctx;
    size_t grad_lo_head, grad_lo_neck;
} kd_model;

/* Tells m->grads_done (when set) that the gradients [lo, train_elems) are final. */
static inline void kd_model_grads_done(const kd_model *m, size_t lo)
{
    if (m->grads_done) m->grads_done(m->grads_done_ctx, lo);
}

kd_status kd_model_create(const kd_backend *be, const kd_model_cfg *cfg,
                          const kd_model_opts *opts, kd_model **out, kd_err *err);
void kd_model_destroy(kd_model *m);
/* Forward of a padded batch img (device, N,3,H,W; H and W within the planned maximum).
 * Fills m->cls[l], m->reg[l] (N,K,H_l,W_l and N,4(R+1),H_l,W_l) and the held features. */
kd_status kd_model_forward(kd_model *m, const float *img, int n, int h, int w, kd_err *err);
/* Backward from m->d_cls / m->d_reg (and d_held when use_d_held): parameter gradients
 * accumulate into m->params.grad. Zero them first with kd_model_zero_grad. */
void kd_model_backward(kd_model *m);
/* The two halves of kd_model_backward, for a caller that adds a gradient to the FPN outputs
 * (fpn.d_out) in between (CrossKD+PKD): the head towers (d_held included), then neck and
 * backbone. */
void kd_model_backward_head(kd_model *m);
void kd_model_backward_trunk(kd_model *m);
void kd_model_zero_grad(kd_model *m);
/* Elements of the arenas, for logs and the benchmark. */
size_t kd_model_param_elems(const kd_model *m);
size_t kd_model_activation_bytes(const kd_model *m);

/* Resolved architecture numbers from the config (also used by the tests). */
int kd_model_num_levels(const kd_model *m);

/* init.c: MMDetection's initialisation (ResNet Kaiming fan_out normal, BN 1/0 with running
 * mean 0 and var 1, FPN Xavier uniform, head Normal(0, 0.01), cls bias prior 0.01, GN 1/0,
 * Scale 1) from the project's PCG32 generator seeded by `seed`. */
void kd_model_init(kd_model *m, uint64_t seed);

/* PCG32 (O'Neill's pcg32, 64-bit state, XSH-RR output) with Box-Muller normals. */
typedef struct kd_model_rng {
    uint64_t state, inc;
    int has_spare;
    double spare;
} kd_model_rng;
void kd_model_rng_seed(kd_model_rng *r, uint64_t seed, uint64_t stream);
uint32_t kd_model_rng_u32(kd_model_rng *r);
double kd_model_rng_uniform(kd_model_rng *r); /* [0, 1) with 53 random bits */
double kd_model_rng_normal(kd_model_rng *r);
/* Transitional aliases for code written against this header's first names (worker/distill):
 * static inline, so they add no link symbol (worker/data/synth.h has its own, different
 * kd_rng; a file including both headers must use the kd_model_rng_* names). Remove once no
 * caller uses them. */
typedef kd_model_rng kd_rng;
static inline void kd_rng_seed(kd_rng *r, uint64_t seed, uint64_t stream) { kd_model_rng_seed(r, seed, stream); }
static inline double kd_rng_normal(kd_rng *r) { return kd_model_rng_normal(r); }
static inline double kd_rng_uniform(kd_rng *r) { return kd_model_rng_uniform(r); }

/* ---- anchors, assignment (anchors.c, atss.c, max_iou.c) ------------------------------- */

#define KD_MAX_ANCHORS 16 /* base anchors per location */

/* Anchors of level l: location (x, y) is centred at (x*s, y*s) with A base anchors of
 * half-extents half_w/half_h (anchors.c has the rules). Valid when y < min(ceil(pad_h/s), H_l)
 * and x < min(ceil(pad_w/s), W_l). Rows per image: off[l] + (y*W_l + x)*A + a. */
typedef struct kd_level_geom {
    int L, A;
    int h[KD_MAX_LEVELS], w[KD_MAX_LEVELS];
    double stride[KD_MAX_LEVELS];
    size_t off[KD_MAX_LEVELS + 1]; /* anchor offsets per image, off[L] = total */
    double octave;
    float offset;    /* prior centre (x + offset) * s: 0 for anchors, 0.5 for FCOS's points */
    int all_valid;   /* FCOS uses every point (no valid flags) */
    float regress_lo[KD_MAX_LEVELS], regress_hi[KD_MAX_LEVELS]; /* FCOS */
    float half_w[KD_MAX_LEVELS][KD_MAX_ANCHORS], half_h[KD_MAX_LEVELS][KD_MAX_ANCHORS];
} kd_level_geom;

void kd_level_geom_of(const kd_model *m, kd_level_geom *g);
/* Anchors (rows x 4 xyxy float) and valid flags (rows) of one image with pad shape
 * (pad_h, pad_w); either may be NULL. */
void kd_anchors_image(const kd_level_geom *g, int pad_h, int pad_w, float *anchors,
                      uint8_t *valid);

/* Assignment results besides a gt index. */
#define KD_ASSIGN_NEG (-1)
#define KD_ASSIGN_IGNORE (-2) /* MaxIoU's band between the thresholds: label weight 0 */

/* MaxIoUAssigner (max_iou.c; RetinaNet: 0.5, 0.4, min_pos_iou 0, every gt's best anchors
 * taken, ties included) over the A valid-flagged anchors of one image. assigned[a] = gt
 * index, KD_ASSIGN_NEG or KD_ASSIGN_IGNORE. */
void kd_max_iou_assign(size_t A, const float *anchors, const uint8_t *valid, double pos_thr, double neg_thr,
                       double min_pos_iou, int n_gt, const float *gt_boxes, int *assigned);

/* FCOS's targets (fcos_loss.c) for the points of one image (priors as zero-size anchors):
 * the gt containing the point (strictly) whose max side distance lies in the level's
 * regress range, the smallest-area one (first on ties); -1 otherwise. */
void kd_fcos_assign(const kd_level_geom *g, const float *points, int n_gt, const float *gt_boxes,
                    int *assigned);

/* IoU of two x1 y1 x2 y2 boxes in float32, the assigners' overlap (MMDetection's
 * bbox_overlaps: union clamped at 1e-6). */
static inline float kd_box_iou_f32(const float *a, const float *b)
{
    float area1 = (a[2] - a[0]) * (a[3] - a[1]), area2 = (b[2] - b[0]) * (b[3] - b[1]);
    float w = fminf(a[2], b[2]) - fmaxf(a[0], b[0]), h = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    if (w < 0) w = 0;
    if (h < 0) h = 0;
    float ov = w * h, un = area1 + area2 - ov;
    if (un < 1e-6f) un = 1e-6f;
    return ov / un;
}

/* ATSS (crosskd.md §3.4) over the valid anchors of one image. assigned[a] = gt index or -1
 * (negative; also for invalid anchors). Scratch is allocated inside. */
void kd_atss_assign(const kd_level_geom *g, const float *anchors, const uint8_t *valid,
                    int topk, int n_gt, const float *gt_boxes, int *assigned);

/* ---- detection losses (det_loss.c; gfl_loss.c, atss_loss.c) --------------------------- */

typedef struct kd_image_gt {
    int n;                 /* boxes */
    const float *boxes;    /* n x 4, x1 y1 x2 y2 pixels */
    const int32_t *labels; /* n, 0..K-1 */
    int img_h, img_w;      /* before padding */
} kd_image_gt;

/* The ground truth of a batch file (batch_file.c: img, img_shape, gt_bboxes.n, gt_labels.n;
 * the format of crosskd-inspect --batch): *img_out is its 'img', *gts_out (free() it) one
 * entry per image pointing into the file's tensors. Errors name the file and the tensor. */
kd_status kd_batch_file_gts(const kd_tfile *bf, const char *path, const kd_tf_tensor **img_out,
                            kd_image_gt **gts_out, kd_err *err);

/* The local statistics the two normalisers need (summed over ranks by the caller). */
typedef struct kd_det_loss_stats {
    double num_pos;    /* positives over the local images */
    double weight_sum; /* GFL: sum over positives of max_c sigmoid(cls) (detached);
                          ATSS: sum of the positives' centerness targets */
} kd_det_loss_stats;

/* Loss terms under MMDetection's names; a term the head does not have stays 0. */
typedef struct kd_det_losses {
    double loss_cls, loss_bbox, loss_dfl, loss_centerness;
    double level_cls[KD_MAX_LEVELS], level_bbox[KD_MAX_LEVELS], level_dfl[KD_MAX_LEVELS];
    double level_centerness[KD_MAX_LEVELS];
} kd_det_losses;

/* The detection loss of the model's head type:
 *   GFLHead   QFL / P, GIoU (weight w_a = max sigmoid) / W, DFL / W     (gfl_loss.c)
 *   ATSSHead  focal / P, GIoU on decoded deltas weighted by the centerness targets / W,
 *             centerness BCE / P                                          (atss_loss.c)
 *   RetinaHead focal / Pl, L1 on the encoded deltas / Pl, Pl = this rank's positives
 *             (3.0.0rc6's AnchorHead does not reduce it)                 (retina_loss.c)
 * with P = mean over ranks of num_pos and W = max(1, mean over ranks of weight_sum)
 * (FCOS: max(1e-6, ...), its centerness_denorm). */
typedef struct kd_det_loss kd_det_loss;
kd_det_loss *kd_det_loss_create(const kd_model *m);
void kd_det_loss_destroy(kd_det_loss *ls);
/* Phase 1: copies the head outputs to the host, anchors, valid flags, assignment per image,
 * and the local statistics the normalisers need. */
kd_status kd_det_loss_prepare(kd_det_loss *ls, const kd_model *m, const kd_image_gt *gts,
                              kd_det_loss_stats *local, kd_err *err);
/* The normalisers from the all-reduced statistics (world size ranks, mean over ranks):
 * P = mean num_pos; W = max(1e-6, mean weight_sum). kd_det_loss_compute raises W to 1 for
 * the heads whose MMDetection code clamps it there (GFL, ATSS); FCOS keeps the 1e-6 clamp. */
void kd_det_loss_normalisers(const kd_det_loss_stats *sum_over_ranks, int world_size,
                             double *P, double *W);
/* Phase 2: the losses given P and W, and their gradients written to m->d_cls / m->d_reg /
 * m->d_ctr (overwritten), each multiplied by grad_scale. */
void kd_det_loss_compute(kd_det_loss *ls, kd_model *m, double P, double W, double grad_scale,
                         kd_det_losses *out);
/* Assignment of the last prepare (per image, one entry per anchor row): label (-1 negative,
 * -2 ignored) and gt index. */
const int *kd_det_loss_assigned(const kd_det_loss *ls, int image);
/* The W normaliser the last compute used (FCOS: the centerness-target sum, FCOS's KD
 * normaliser too). */
double kd_det_loss_box_normaliser(const kd_det_loss *ls);
/* -log(max(IoU(p, t), 1e-6)) of two xyxy boxes (MMDetection's IoULoss, mode log) and its
 * gradient in p (fcos_loss.c). */
float kd_loss_iou_log_grad(const float *p, const float *t, float *dp);
/* RetinaNet's local avg_factor of the last prepare: sum over the images of max(positives, 1). */
double kd_det_loss_local_avg_factor(const kd_det_loss *ls);
/* Per anchor row of image `image`: the matched gt box (4 floats; valid where assigned). */
const float *kd_det_loss_targets(const kd_det_loss *ls, int image);

/* DeltaXYWHBBoxCoder (atss_loss.c): decode of deltas d (4) at anchor an (xyxy) with means 0,
 * stds, dw/dh clamped to |log(16/1000)|, no clipping; and its backward: dd = dbox * dbox/dd
 * (the clamp passes no gradient outside its range). */
void kd_delta_decode(const float *an, const float *d, const float *stds, float *box);
void kd_delta_decode_bwd(const float *an, const float *d, const float *stds, const float *dbox, float *dd);
/* The encode (bbox2delta): deltas of box gt at anchor an, divided by stds. */
void kd_delta_encode(const float *an, const float *gt, const float *stds, float *d);

/* Transitional names from when GFL was the only detector (callers on other branches). */
typedef kd_det_loss kd_gfl_loss;
typedef kd_det_loss_stats kd_gfl_loss_stats;
typedef kd_det_losses kd_gfl_losses;
static inline kd_det_loss *kd_gfl_loss_create(const kd_model *m) { return kd_det_loss_create(m); }
static inline void kd_gfl_loss_destroy(kd_det_loss *ls) { kd_det_loss_destroy(ls); }
static inline kd_status kd_gfl_loss_prepare(kd_det_loss *ls, const kd_model *m, const kd_image_gt *gts,
                                            kd_det_loss_stats *local, kd_err *err)
{
    return kd_det_loss_prepare(ls, m, gts, local, err);
}
static inline void kd_gfl_loss_normalisers(const kd_det_loss_stats *s, int world_size, double *P, double *W)
{
    kd_det_loss_normalisers(s, world_size, P, W);
}
static inline void kd_gfl_loss_compute(kd_det_loss *ls, kd_model *m, double P, double W, double grad_scale,
                                       kd_det_losses *out)
{
    kd_det_loss_compute(ls, m, P, W, grad_scale, out);
}
static inline const int *kd_gfl_loss_assigned(const kd_det_loss *ls, int image) { return kd_det_loss_assigned(ls, image); }

/* ---- inference (postprocess.c) ----------------------------------------------------- */

typedef struct kd_det {
    float x1, y1, x2, y2, score;
    int label;
} kd_det;

/* Detections of image i from the last forward: sigmoid scores, score_thr, top nms_pre per
 * level, decode, clip to (img_h, img_w), divide by (scale_w, scale_h), min_bbox_size,
 * class-aware NMS, max_per_img. Returns the count written to dets (capacity max_per_img). */
int kd_det_predict(const kd_model *m, int image, int img_h, int img_w, double scale_h,
                   double scale_w, kd_det *dets);
static inline int kd_gfl_predict(const kd_model *m, int image, int img_h, int img_w, double scale_h,
                                 double scale_w, kd_det *dets)
{
    return kd_det_predict(m, image, img_h, img_w, scale_h, scale_w, dets);
}
/* Class-aware greedy NMS over n boxes sorted by descending score: keep[i] = 1 if kept.
 * A box is suppressed when IoU > thr with a kept box of the same label. */
void kd_nms(const kd_det *d, int n, double thr, uint8_t *keep);

/* ---- safetensors weights (weights.c) ------------------------------------------------ */

/* Loads every parameter and buffer by MMDetection key. Every missing, unexpected or
 * shape/dtype-mismatched key is named in err; num_batches_tracked (int64) and
 * bbox_head.integral.project are accepted. */
kd_status kd_model_load(kd_model *m, const char *path, kd_err *err);
kd_status kd_model_save(const kd_model *m, const char *path, kd_err *err);

#endif
