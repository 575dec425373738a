/* anchors.c — GFL's anchors and valid flags (crosskd.md §3.3, §3.4), MMDetection's
 * AnchorGenerator with one ratio-1 anchor per location, scale octave_base_scale,
 * center_offset 0: the anchor of level stride s at (x, y) is
 * (x*s - o*s/2, y*s - o*s/2, x*s + o*s/2, y*s + o*s/2), o = octave_base_scale, rows in
 * (y, x) row-major order, levels concatenated. Valid flags follow the image's pad shape
 * (its own size rounded up to the pad divisor, not the batch's): rows y >= ceil(pad_h/s)
 * and columns x >= ceil(pad_w/s) are invalid. Coordinates are float32 like PyTorch's.
 */
#include "worker/model/model.h"

#include <math.h>

void kd_level_geom_of(const kd_model *m, kd_level_geom *g)
{
    g->L = m->fpn.num_outs;
    g->octave = (double)m->cfg.bbox_head.octave_base_scale;
    g->off[0] = 0;
    for (int l = 0; l < g->L; l++) {
        g->h[l] = m->lvl_s[l].h;
        g->w[l] = m->lvl_s[l].w;
        g->stride[l] = m->head.strides[l];
        g->off[l + 1] = g->off[l] + (size_t)g->h[l] * g->w[l];
    }
}

void kd_anchors_image(const kd_level_geom *g, int pad_h, int pad_w, float *anchors,
                      uint8_t *valid)
{
    for (int l = 0; l < g->L; l++) {
        float s = (float)g->stride[l], half = (float)(g->octave * g->stride[l] * 0.5);
        int vh = (int)ceil((double)pad_h / g->stride[l]), vw = (int)ceil((double)pad_w / g->stride[l]);
        if (vh > g->h[l]) vh = g->h[l];
        if (vw > g->w[l]) vw = g->w[l];
        for (int y = 0; y < g->h[l]; y++)
            for (int x = 0; x < g->w[l]; x++) {
                size_t a = g->off[l] + (size_t)y * g->w[l] + x;
                float cx = (float)x * s, cy = (float)y * s;
                if (anchors) {
                    anchors[4 * a + 0] = cx - half;
                    anchors[4 * a + 1] = cy - half;
                    anchors[4 * a + 2] = cx + half;
                    anchors[4 * a + 3] = cy + half;
                }
                if (valid) valid[a] = y < vh && x < vw;
            }
    }
}
