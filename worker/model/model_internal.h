/* model_internal.h — what the model's files share and nobody else calls: building each
 * module's parameter entries, laying out its buffers for a batch shape (and planning them
 * into the arena), and running it forward and backward. Layers are free functions taking
 * the module, the parameter table and explicit buffers (llm.c style).
 */
#ifndef KD_MODEL_INTERNAL_H
#define KD_MODEL_INTERNAL_H

#include "worker/model/model.h"

#define KD_BN_EPS 1e-5f
#define KD_GN_EPS 1e-5f

/* resnet.c */
kd_status kd_resnet_build(kd_resnet *r, kd_params *P, const kd_model_cfg *cfg, kd_err *err);
/* Shapes for an input (n, 3, h, w); buffers from plan when plan != NULL. */
void kd_resnet_layout(kd_resnet *r, int n, int h, int w, kd_plan *plan);
void kd_resnet_fwd(const kd_backend *be, kd_resnet *r, const kd_params *P, const float *img);
/* d_out[i] (stage i output gradient, NULL = none) drive the backward; g: four scratch
 * buffers as large as the largest activation. notify (may be NULL): the model whose
 * grads_done hears, after each trainable block, that its gradients and all above are final. */
void kd_resnet_bwd(const kd_backend *be, kd_resnet *r, const kd_params *P, const float *img,
                   float *const d_out[4], float *g[4], const kd_model *notify);
void kd_resnet_free(kd_resnet *r);
/* Largest single activation (elements) for the current layout. */
size_t kd_resnet_max_elems(const kd_resnet *r);

/* fpn.c */
kd_status kd_fpn_build(kd_fpn *f, kd_params *P, const kd_model_cfg *cfg, const int in_c[4],
                       kd_err *err);
void kd_fpn_layout(kd_fpn *f, const kd_shape in_s[4], kd_plan *plan, int training);
void kd_fpn_fwd(const kd_backend *be, kd_fpn *f, const kd_params *P, const float *const in[4]);
/* From f->d_out (accumulated by the head) to f->d_in[i] (overwritten) for the used stages. */
void kd_fpn_bwd(const kd_backend *be, kd_fpn *f, const kd_params *P, const float *const in[4]);

/* head.c */
kd_status kd_head_build(kd_head *h, kd_params *P, const kd_model_cfg *cfg, int levels, kd_err *err);

/* convbn helpers (resnet.c) */
void kd_convbn_fwd(const kd_backend *be, const kd_convbn *c, const kd_params *P, const float *x);
void kd_convbn_bwd(const kd_backend *be, const kd_convbn *c, const kd_params *P, const float *x,
                   const float *dy, float *dtmp, float *dx, int accumulate, int param_grads);

#endif
