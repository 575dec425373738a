/* transform.h — MMDetection's training transforms on one decoded image, fused into one
 * pass that writes the network input directly:
 *   Resize(scale, keep_ratio=True) (mmcv rescale_size/_scale_size + cv2 INTER_LINEAR),
 *   RandomFlip (horizontal), DetDataPreprocessor (bgr_to_rgb, (x - mean) / std, float32),
 *   and stack_batch padding (the caller zero-fills the padded batch plane).
 * Boxes follow the same rules: scaled by the per-axis ratios (as float32), clipped to the
 * resized image, then flipped as x1' = W - x2, x2' = W - x1.
 */
#ifndef KD_TRANSFORM_H
#define KD_TRANSFORM_H

#include <stddef.h>
#include <stdint.h>

/* mmcv.rescale_size: sf = min(long/max(w,h), short/min(w,h)) with long = max(scale),
 * short = min(scale); new = int(x * sf + 0.5). Writes new_w, new_h and the stored scale
 * factors new_w / w, new_h / h (doubles, as MMDetection keeps them). */
void kd_resize_shape(int32_t w, int32_t h, int32_t scale_w, int32_t scale_h, int32_t *new_w, int32_t *new_h,
                     double *w_scale, double *h_scale);

/* Round up to a multiple of divisor. */
static inline int32_t kd_pad_to(int32_t x, int32_t divisor) { return (x + divisor - 1) / divisor * divisor; }

/* Bilinear resize plan for one axis, OpenCV's INTER_LINEAR on 8-bit data: source
 * coordinate (d + 0.5) * src/dst - 0.5 computed as OpenCV does, clamped at the borders,
 * weights as 11-bit fixed point (2048). */
typedef struct kd_resize_axis {
    int32_t *ofs;   /* [dst] first source index */
    int16_t *wt;    /* [dst][2] weights of ofs and ofs+1 (sum 2048) */
    int32_t n_dst, n_src;
} kd_resize_axis;

/* Scratch memory of the fused transform; one per thread, reused across images. */
typedef struct kd_transform_ws {
    kd_resize_axis ax, ay;
    int32_t *rows;        /* two horizontally resized rows, [2][dst_w*3] */
    size_t rows_cap_elems;
    int32_t row_src[2];   /* which source row each holds */
    size_t ax_cap, ay_cap;
    uint8_t *row_u8;      /* one resized row, interleaved, and its mirror */
    size_t row_u8_cap_bytes;
} kd_transform_ws;

void kd_transform_ws_free(kd_transform_ws *ws);

/* Resize the BGR image (w x h) to (new_w x new_h) bilinearly, optionally flip, and write
 * normalised float32 planes into out: out[c][y][x] at out + c*plane_elems + y*stride + x,
 * c in output order (RGB when to_rgb). mean/std are in output channel order. */
void kd_transform_image(kd_transform_ws *ws, const uint8_t *bgr, int32_t w, int32_t h, int32_t new_w, int32_t new_h,
                        int flip, int to_rgb, const float mean[3], const float std[3], float *out, size_t stride_elems,
                        size_t plane_elems);

/* Plain uint8 bilinear resize (BGR in, BGR out), same arithmetic; for tests and benchmarks. */
void kd_resize_u8(kd_transform_ws *ws, const uint8_t *src, int32_t w, int32_t h, uint8_t *dst, int32_t new_w,
                  int32_t new_h);

/* Boxes: n boxes xyxy in original pixels -> resized pixels, clipped to (new_w, new_h),
 * then flipped when flip. */
void kd_transform_boxes(const float *in, size_t n, double w_scale, double h_scale, int32_t new_w, int32_t new_h,
                        int flip, float *out);

#endif
