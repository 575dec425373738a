/* safetensors.h — the safetensors weight format (DESIGN.md §8: weights in and out with
 * MMDetection's key names; also the kernel tests' PyTorch fixtures).
 *
 * Layout: an 8-byte little-endian header length N; N bytes of JSON, an object mapping each
 * tensor name to {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} plus an
 * optional "__metadata__" object of string values; then the raw little-endian data, with
 * offsets relative to the first byte after the header.
 *
 * Reading (kd_st_load) takes the whole file into memory and validates everything: the
 * header length against the file size, the JSON, each entry's fields, dtype and shape
 * against its byte size, offsets inside the data and not overlapping. Every error names the
 * file and, where there is one, the key:
 *     "w.safetensors: tensor 'conv1.weight': shape [64,3,7,7] of F32 is 37632 bytes but
 *      data_offsets span 100"
 * Tensors keep the header's order (jansson iterates objects in insertion order).
 * A tensor's data pointer points into the file buffer and may be unaligned for its dtype:
 * copy it out with memcpy.
 *
 * Writing (kd_st_save) lays the tensors out in the order given, contiguously, after a
 * compact JSON header padded with spaces to a multiple of 8 bytes; a file this writer made,
 * loaded and saved again in file order, is byte-identical.
 */
#ifndef KD_PROTO_SAFETENSORS_H
#define KD_PROTO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "proto/status.h"

typedef enum kd_st_dtype {
    KD_ST_F32 = 0,
    KD_ST_F64,
    KD_ST_F16,
    KD_ST_BF16,
    KD_ST_I64,
    KD_ST_I32,
    KD_ST_I16,
    KD_ST_I8,
    KD_ST_U8,
    KD_ST_BOOL,
    KD_ST_DTYPE_COUNT
} kd_st_dtype;

#define KD_ST_MAX_DIMS 8

typedef struct kd_st_tensor {
    const char *name;
    kd_st_dtype dtype;
    int ndim;                        /* 0 = scalar (one element) */
    int64_t shape[KD_ST_MAX_DIMS];
    size_t data_bytes;               /* = elements * dtype size */
    const void *data;                /* into the file buffer when loaded; caller's when saving */
} kd_st_tensor;

typedef struct kd_st_meta {
    const char *key, *value;
} kd_st_meta;

typedef struct kd_st_file {
    char *path;
    unsigned char *buf;              /* the whole file */
    size_t file_bytes;
    size_t n_tensors;
    kd_st_tensor *tensors;           /* header order */
    size_t n_meta;
    kd_st_meta *meta;                /* "__metadata__" entries, header order */
    void *json_;                     /* owns the strings above */
} kd_st_file;

/* Loads and validates `path`. On error *out is NULL and err names the file and the key. */
kd_status kd_st_load(const char *path, kd_st_file **out, kd_err *err);
void kd_st_free(kd_st_file *f);

const kd_st_tensor *kd_st_find(const kd_st_file *f, const char *name);
const char *kd_st_meta_get(const kd_st_file *f, const char *key);
size_t kd_st_tensor_elems(const kd_st_tensor *t);

/* Writes n tensors (their data_bytes must equal elements * dtype size) in the given order,
 * with n_meta metadata pairs (may be 0). Writes to path + ".tmp" and renames. */
kd_status kd_st_save(const char *path, const kd_st_tensor *tensors, size_t n,
                     const kd_st_meta *meta, size_t n_meta, kd_err *err);

size_t kd_st_dtype_bytes(kd_st_dtype d);
const char *kd_st_dtype_name(kd_st_dtype d);
/* "F32" -> KD_ST_F32; returns -1 for an unknown name. */
int kd_st_dtype_parse(const char *name);

#endif
