/* transform.c — resize (OpenCV INTER_LINEAR arithmetic on uint8), flip, normalise and the
 * box rules of MMDetection (see transform.h).
 *
 * Resize: separable. Horizontal pass per needed source row: D[x] = S[ox]*a0 + S[ox+1]*a1
 * (weights sum to 2048, int32). Vertical pass as OpenCV's vectorised 8-bit path computes
 * it: (((b0*(D0>>4))>>16) + ((b1*(D1>>4))>>16) + 2) >> 2, saturated to uint8 (its scalar
 * tail, FixedPtCast (D0*b0 + D1*b1 + 2^21) >> 22, can differ by 1 on the last pixels).
 * At most two horizontally resized rows are kept; consecutive output rows reuse them.
 */
#include "worker/data/transform.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "proto/status.h"

void kd_resize_shape(int32_t w, int32_t h, int32_t scale_w, int32_t scale_h, int32_t *new_w, int32_t *new_h,
                     double *w_scale, double *h_scale)
{
    double long_e = scale_w > scale_h ? scale_w : scale_h, short_e = scale_w > scale_h ? scale_h : scale_w;
    double a = long_e / (double)(w > h ? w : h), b = short_e / (double)(w > h ? h : w);
    double sf = a < b ? a : b;
    *new_w = (int32_t)((double)w * sf + 0.5);
    *new_h = (int32_t)((double)h * sf + 0.5);
    *w_scale = (double)*new_w / (double)w;
    *h_scale = (double)*new_h / (double)h;
}

static void axis_plan(kd_resize_axis *a, size_t *cap, int32_t n_src, int32_t n_dst)
{
    if ((size_t)n_dst > *cap) {
        a->ofs = kd_xrealloc(a->ofs, (size_t)n_dst * sizeof *a->ofs);
        a->wt = kd_xrealloc(a->wt, (size_t)n_dst * 2 * sizeof *a->wt);
        *cap = (size_t)n_dst;
    }
    a->n_src = n_src;
    a->n_dst = n_dst;
    double scale = 1.0 / ((double)n_dst / (double)n_src); /* OpenCV: 1./inv_scale */
    for (int32_t d = 0; d < n_dst; d++) {
        float f = (float)((d + 0.5) * scale - 0.5);
        int32_t s = (int32_t)floorf(f);
        f -= (float)s;
        if (s < 0) s = 0, f = 0.0f;
        if (s >= n_src - 1) s = n_src - 1, f = 0.0f;
        int32_t w0 = (int32_t)lrintf((1.0f - f) * 2048.0f);
        if (w0 > 32767) w0 = 32767;
        a->ofs[d] = s;
        a->wt[2 * d] = (int16_t)w0;
        a->wt[2 * d + 1] = (int16_t)(2048 - w0);
    }
}

void kd_transform_ws_free(kd_transform_ws *ws)
{
    free(ws->ax.ofs), free(ws->ax.wt), free(ws->ay.ofs), free(ws->ay.wt), free(ws->rows), free(ws->row_u8);
    memset(ws, 0, sizeof *ws);
}

static void hresize_row(const kd_resize_axis *ax, const uint8_t *src_row, int32_t src_w, int32_t *out)
{
    for (int32_t x = 0; x < ax->n_dst; x++) {
        int32_t s = ax->ofs[x], s1 = s + 1 < src_w ? s + 1 : s;
        int32_t w0 = ax->wt[2 * x], w1 = ax->wt[2 * x + 1];
        const uint8_t *p0 = src_row + 3 * s, *p1 = src_row + 3 * s1;
        out[3 * x] = p0[0] * w0 + p1[0] * w1;
        out[3 * x + 1] = p0[1] * w0 + p1[1] * w1;
        out[3 * x + 2] = p0[2] * w0 + p1[2] * w1;
    }
}

/* Prepare plans and return pointers to the two horizontally resized rows for output row y. */
static void prepare(kd_transform_ws *ws, int32_t w, int32_t h, int32_t new_w, int32_t new_h)
{
    axis_plan(&ws->ax, &ws->ax_cap, w, new_w);
    axis_plan(&ws->ay, &ws->ay_cap, h, new_h);
    size_t need = (size_t)new_w * 3 * 2;
    if (need > ws->rows_cap_elems) {
        ws->rows = kd_xrealloc(ws->rows, need * sizeof *ws->rows);
        ws->rows_cap_elems = need;
    }
    ws->row_src[0] = ws->row_src[1] = -1;
}

static int slot_of(const kd_transform_ws *ws, int32_t src_row)
{
    return ws->row_src[0] == src_row ? 0 : ws->row_src[1] == src_row ? 1 : -1;
}

static void rows_for(kd_transform_ws *ws, const uint8_t *src, int32_t w, int32_t h, int32_t y, const int32_t **r0,
                     const int32_t **r1)
{
    int32_t s0 = ws->ay.ofs[y], s1 = s0 + 1 < h ? s0 + 1 : s0;
    size_t row_elems = (size_t)ws->ax.n_dst * 3;
    int a = slot_of(ws, s0);
    if (a < 0) {
        a = slot_of(ws, s1) == 0 ? 1 : 0;
        hresize_row(&ws->ax, src + (size_t)s0 * w * 3, w, ws->rows + (size_t)a * row_elems);
        ws->row_src[a] = s0;
    }
    int b = slot_of(ws, s1);
    if (b < 0) {
        b = 1 - a;
        hresize_row(&ws->ax, src + (size_t)s1 * w * 3, w, ws->rows + (size_t)b * row_elems);
        ws->row_src[b] = s1;
    }
    *r0 = ws->rows + (size_t)a * row_elems;
    *r1 = ws->rows + (size_t)b * row_elems;
}

static inline int32_t vmix(int32_t a, int32_t b, int32_t w0, int32_t w1)
{
    int32_t v = (((w0 * (a >> 4)) >> 16) + ((w1 * (b >> 4)) >> 16) + 2) >> 2;
    return v < 0 ? 0 : v > 255 ? 255 : v;
}

void kd_resize_u8(kd_transform_ws *ws, const uint8_t *src, int32_t w, int32_t h, uint8_t *dst, int32_t new_w,
                  int32_t new_h)
{
    prepare(ws, w, h, new_w, new_h);
    for (int32_t y = 0; y < new_h; y++) {
        const int32_t *r0, *r1;
        rows_for(ws, src, w, h, y, &r0, &r1);
        int32_t b0 = ws->ay.wt[2 * y], b1 = ws->ay.wt[2 * y + 1];
        uint8_t *d = dst + (size_t)y * new_w * 3;
        for (int32_t i = 0; i < new_w * 3; i++) d[i] = (uint8_t)vmix(r0[i], r1[i], b0, b1);
    }
}

void kd_transform_image(kd_transform_ws *ws, const uint8_t *bgr, int32_t w, int32_t h, int32_t new_w, int32_t new_h,
                        int flip, int to_rgb, const float mean[3], const float std[3], float *out, size_t stride_elems,
                        size_t plane_elems)
{
    prepare(ws, w, h, new_w, new_h);
    if ((size_t)new_w * 6 > ws->row_u8_cap_bytes) {
        ws->row_u8 = kd_xrealloc(ws->row_u8, (size_t)new_w * 6);
        ws->row_u8_cap_bytes = (size_t)new_w * 6;
    }
    uint8_t *row = ws->row_u8;
    /* output channel c reads interleaved channel src_ch[c] */
    int src_ch[3] = {to_rgb ? 2 : 0, 1, to_rgb ? 0 : 2};
    int32_t n3 = new_w * 3;
    for (int32_t y = 0; y < new_h; y++) {
        const int32_t *r0, *r1;
        rows_for(ws, bgr, w, h, y, &r0, &r1);
        int32_t b0 = ws->ay.wt[2 * y], b1 = ws->ay.wt[2 * y + 1];
        uint8_t *mix = flip ? row + n3 : row;
        for (int32_t i = 0; i < n3; i++) mix[i] = (uint8_t)vmix(r0[i], r1[i], b0, b1);
        if (flip) /* mirror the pixel order once, in uint8, so the loop below stays vectorised */
            for (int32_t x = 0; x < new_w; x++) {
                const uint8_t *q = mix + 3 * (new_w - 1 - x);
                row[3 * x] = q[0], row[3 * x + 1] = q[1], row[3 * x + 2] = q[2];
            }
        for (int c = 0; c < 3; c++) {
            float *o = out + (size_t)c * plane_elems + (size_t)y * stride_elems;
            const uint8_t *a = row + src_ch[c];
            const float m = mean[c], sd = std[c];
            /* per channel with a true division: vectorises (measured faster than a
             * 256-entry table) and equals MMDetection's float32 (x - mean) / std */
            for (int32_t x = 0; x < new_w; x++) o[x] = ((float)a[3 * x] - m) / sd;
        }
    }
}

void kd_transform_boxes(const float *in, size_t n, double w_scale, double h_scale, int32_t new_w, int32_t new_h,
                        int flip, float *out)
{
    float sx = (float)w_scale, sy = (float)h_scale, W = (float)new_w, H = (float)new_h;
    for (size_t i = 0; i < n; i++) {
        float x1 = in[4 * i] * sx, y1 = in[4 * i + 1] * sy, x2 = in[4 * i + 2] * sx, y2 = in[4 * i + 3] * sy;
        x1 = fminf(fmaxf(x1, 0.0f), W);
        x2 = fminf(fmaxf(x2, 0.0f), W);
        y1 = fminf(fmaxf(y1, 0.0f), H);
        y2 = fminf(fmaxf(y2, 0.0f), H);
        if (flip) {
            float t = W - x2;
            x2 = W - x1;
            x1 = t;
        }
        out[4 * i] = x1, out[4 * i + 1] = y1, out[4 * i + 2] = x2, out[4 * i + 3] = y2;
    }
}
