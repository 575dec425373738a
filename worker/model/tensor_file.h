/* tensor_file.h — a small owned-tensor container over proto/safetensors.h, for weights,
 * inspector batches and outputs, and test fixtures: tensors are copied out of the file (so
 * they are aligned and outlive it), can be added or replaced by name, and are written
 * ordered by name (as the Python safetensors package does).
 *
 * Reading and writing go through kd_st_load / kd_st_save: every error names the file and,
 * where there is one, the key.
 */
#ifndef KD_MODEL_TENSOR_FILE_H
#define KD_MODEL_TENSOR_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/status.h"

typedef enum { KD_TF_F32 = 0, KD_TF_F64, KD_TF_I32, KD_TF_I64, KD_TF_U8, KD_TF_NTYPES } kd_tf_dtype;

#define KD_TF_MAX_DIMS 8
typedef struct kd_tf_tensor {
    char *name;
    int dtype, ndim;
    int64_t shape[KD_TF_MAX_DIMS];
    size_t bytes;
    void *data; /* owned */
} kd_tf_tensor;

typedef struct kd_tfile {
    kd_tf_tensor *t;
    int n, cap;
} kd_tfile;

const char *kd_tf_dtype_name(int dtype);
size_t kd_tf_dtype_size(int dtype);
size_t kd_tf_elems(const kd_tf_tensor *t);

kd_status kd_tfile_read(const char *path, kd_tfile *f, kd_err *err);
const kd_tf_tensor *kd_tfile_get(const kd_tfile *f, const char *name);
/* Copies data (elems from shape times the dtype size). Replaces an existing name. */
void kd_tfile_add(kd_tfile *f, const char *name, int dtype, int ndim, const int64_t *shape,
                  const void *data);
void kd_tfile_add_f32(kd_tfile *f, const char *name, int ndim, const int64_t *shape,
                      const float *data);
kd_status kd_tfile_write(const kd_tfile *f, const char *path, kd_err *err);
void kd_tfile_free(kd_tfile *f);

#endif
