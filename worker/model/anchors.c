/* anchors.c — anchors and valid flags (crosskd.md §3.3, §3.4, §6.1), MMDetection's
 * AnchorGenerator with center_offset 0. The anchors of level stride s at location (x, y) are
 * centred at (x*s, y*s), one per base anchor a:
 *   GFL, ATSS   one square anchor of side octave_base_scale * s; half-side computed in
 *               double and rounded once to float32 (as before the generalisation);
 *   RetinaNet   A = ratios x scales_per_octave base anchors, ratio-major then scale:
 *               h_ratio = sqrt(r), w_ratio = 1 / h_ratio, scale = octave * 2^(i/spo),
 *               w = s * w_ratio * scale, h = s * h_ratio * scale (float32, the operation
 *               order of gen_base_anchors), anchor (cx - w/2, cy - h/2, cx + w/2, cy + h/2).
 *   FCOS        one point per location at ((x + 0.5) s, (y + 0.5) s) (MlvlPointGenerator,
 *               offset 0.5), stored as a zero-size anchor; every point is valid; the
 *               regress ranges from model.bbox_head.regress_ranges.
 * Rows run (y, x, a) row-major within a level, levels concatenated: row y*W*A + x*A + a.
 * Valid flags follow the image's pad shape (its own size rounded up to the pad divisor, not
 * the batch's): rows y >= ceil(pad_h/s) and columns x >= ceil(pad_w/s) are invalid, for
 * every base anchor of the location. Coordinates are float32 like PyTorch's.
 */
#include "worker/model/model.h"

#include <math.h>

void kd_level_geom_of(const kd_model *m, kd_level_geom *g)
{
    const kd_model_cfg *c = &m->cfg;
    g->L = m->fpn.num_outs;
    g->A = m->head.A;
    g->octave = (double)c->bbox_head.octave_base_scale;
    g->offset = m->head.type == KD_DET_FCOS ? 0.5f : 0.0f;
    g->all_valid = m->head.type == KD_DET_FCOS;
    g->off[0] = 0;
    for (int l = 0; l < g->L; l++) {
        g->h[l] = m->lvl_s[l].h;
        g->w[l] = m->lvl_s[l].w;
        g->stride[l] = m->head.strides[l];
        g->off[l + 1] = g->off[l] + (size_t)g->h[l] * g->w[l] * g->A;
        if (m->head.type == KD_DET_FCOS) { /* points; MMDetection's regress ranges */
            const kd_cfg_list *rr = &c->bbox_head.regress_ranges;
            g->half_w[l][0] = g->half_h[l][0] = 0.0f;
            g->regress_lo[l] = l == 0 ? -1.0f : (l - 1 < rr->n ? (float)rr->v[l - 1] : 1e8f);
            g->regress_hi[l] = l < rr->n ? (float)rr->v[l] : 1e8f;
            continue;
        }
        if (g->A == 1 && m->head.type != KD_DET_RETINANET) {
            float half = (float)(g->octave * g->stride[l] * 0.5);
            g->half_w[l][0] = g->half_h[l][0] = half;
            continue;
        }
        int spo = (int)c->bbox_head.scales_per_octave, a = 0;
        for (int r = 0; r < c->bbox_head.ratios.n; r++) {
            float hr = sqrtf((float)c->bbox_head.ratios.v[r]), wr = 1.0f / hr;
            for (int i = 0; i < spo; i++, a++) {
                float sc = (float)(g->octave * pow(2.0, (double)i / spo));
                float base = (float)g->stride[l];
                g->half_w[l][a] = 0.5f * (base * wr * sc);
                g->half_h[l][a] = 0.5f * (base * hr * sc);
            }
        }
    }
}

void kd_anchors_image(const kd_level_geom *g, int pad_h, int pad_w, float *anchors,
                      uint8_t *valid)
{
    int A = g->A;
    for (int l = 0; l < g->L; l++) {
        float s = (float)g->stride[l];
        int vh = (int)ceil((double)pad_h / g->stride[l]), vw = (int)ceil((double)pad_w / g->stride[l]);
        if (vh > g->h[l]) vh = g->h[l];
        if (vw > g->w[l]) vw = g->w[l];
        for (int y = 0; y < g->h[l]; y++)
            for (int x = 0; x < g->w[l]; x++)
                for (int a = 0; a < A; a++) {
                    size_t r = g->off[l] + ((size_t)y * g->w[l] + x) * A + a;
                    float cx = ((float)x + g->offset) * s, cy = ((float)y + g->offset) * s;
                    if (anchors) {
                        anchors[4 * r + 0] = cx - g->half_w[l][a];
                        anchors[4 * r + 1] = cy - g->half_h[l][a];
                        anchors[4 * r + 2] = cx + g->half_w[l][a];
                        anchors[4 * r + 3] = cy + g->half_h[l][a];
                    }
                    if (valid) valid[r] = g->all_valid || (y < vh && x < vw);
                }
    }
}
