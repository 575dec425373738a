/* image_decode.h — JPEG (TurboJPEG) and PNG (libpng) to 8-bit BGR, as OpenCV's
 * cv2.imdecode(buf, IMREAD_COLOR) gives it to MMDetection: interleaved B, G, R rows,
 * grayscale expanded to three equal channels, alpha dropped, and the EXIF orientation of
 * a JPEG applied (tags 2..8, as OpenCV does). JPEG decoding uses libjpeg-turbo's defaults
 * (accurate integer IDCT, fancy upsampling), as OpenCV's bundled/system libjpeg does.
 * A decoder owns its TurboJPEG handle and scratch memory: one per thread, reused.
 */
#ifndef KD_IMAGE_DECODE_H
#define KD_IMAGE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/status.h"

typedef struct kd_image {
    int32_t w, h;
    uint8_t *bgr;          /* [h][w][3] */
    size_t cap_bytes;      /* capacity of bgr; grown on demand, never shrunk */
} kd_image;

typedef struct kd_image_decoder {
    void *tj;              /* tjhandle */
    uint8_t *tmp;          /* before EXIF rotation / alpha removal */
    size_t tmp_cap_bytes;
    uint8_t *file;         /* file bytes */
    size_t file_cap_bytes;
} kd_image_decoder;

kd_status kd_image_decoder_init(kd_image_decoder *d, kd_err *err);
void kd_image_decoder_free(kd_image_decoder *d);
void kd_image_free(kd_image *im);

/* Decode bytes (JPEG or PNG, told by the signature) into im. name is used in messages. */
kd_status kd_image_decode(kd_image_decoder *d, const uint8_t *buf, size_t n_bytes, const char *name, kd_image *im,
                          kd_err *err);
/* Read a file and decode it. */
kd_status kd_image_read(kd_image_decoder *d, const char *path, kd_image *im, kd_err *err);

/* The EXIF orientation (1..8) of a JPEG, 1 when absent or unreadable. */
int kd_jpeg_exif_orientation(const uint8_t *buf, size_t n_bytes);
/* Apply an EXIF orientation to a BGR image: src (w x h) -> dst (w x h, or h x w for 5..8). */
void kd_image_orient(const uint8_t *src, int w, int h, int orientation, uint8_t *dst);

#endif
