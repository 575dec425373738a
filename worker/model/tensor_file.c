/* tensor_file.c — the model's tensor container (see tensor_file.h) over proto/safetensors:
 * reading validates through kd_st_load (header length, JSON, dtype x shape against the byte
 * ranges, errors naming file and key) and copies the tensors out; writing sorts by name and
 * saves through kd_st_save.
 */
#include "worker/model/tensor_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/safetensors.h"

static const char *const dtype_names[KD_TF_NTYPES] = {"F32", "F64", "I32", "I64", "U8"};

static const size_t dtype_sizes[KD_TF_NTYPES] = {4, 8, 4, 8, 1};

const char *kd_tf_dtype_name(int d) { return d >= 0 && d < KD_TF_NTYPES ? dtype_names[d] : "?"; }
size_t kd_tf_dtype_size(int d) { return d >= 0 && d < KD_TF_NTYPES ? dtype_sizes[d] : 0; }

size_t kd_tf_elems(const kd_tf_tensor *t)
{
    size_t e = 1;
    for (int i = 0; i < t->ndim; i++) e *= (size_t)t->shape[i];
    return e;
}

const kd_tf_tensor *kd_tfile_get(const kd_tfile *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

void kd_tfile_free(kd_tfile *f)
{
    for (int i = 0; i < f->n; i++) {
        free(f->t[i].name);
        free(f->t[i].data);
    }
    free(f->t);
    memset(f, 0, sizeof *f);
}

void kd_tfile_add(kd_tfile *f, const char *name, int dtype, int ndim, const int64_t *shape,
                  const void *data)
{
    KD_CHECK(ndim >= 0 && ndim <= KD_TF_MAX_DIMS && dtype >= 0 && dtype < KD_TF_NTYPES);
    kd_tf_tensor *t = (kd_tf_tensor *)kd_tfile_get(f, name);
    if (t) {
        free(t->data);
    } else {
        if (f->n == f->cap) {
            f->cap = f->cap ? 2 * f->cap : 64;
            f->t = kd_xrealloc(f->t, (size_t)f->cap * sizeof *f->t);
        }
        t = &f->t[f->n++];
        memset(t, 0, sizeof *t);
        t->name = strdup(name);
        KD_CHECK(t->name != NULL);
    }
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->bytes = kd_tf_elems(t) * dtype_sizes[dtype];
    t->data = kd_xmalloc(t->bytes ? t->bytes : 1);
    if (t->bytes) memcpy(t->data, data, t->bytes);
}

void kd_tfile_add_f32(kd_tfile *f, const char *name, int ndim, const int64_t *shape,
                      const float *data)
{
    kd_tfile_add(f, name, KD_TF_F32, ndim, shape, data);
}

/* kd_tf dtype <-> proto/safetensors dtype */
static const kd_st_dtype to_st[KD_TF_NTYPES] = {KD_ST_F32, KD_ST_F64, KD_ST_I32, KD_ST_I64, KD_ST_U8};

kd_status kd_tfile_read(const char *path, kd_tfile *f, kd_err *err)
{
    memset(f, 0, sizeof *f);
    kd_st_file *sf = NULL;
    kd_status st = kd_st_load(path, &sf, err);
    if (st) return st;
    for (size_t i = 0; i < sf->n_tensors; i++) {
        const kd_st_tensor *t = &sf->tensors[i];
        int d = -1;
        for (int k = 0; k < KD_TF_NTYPES; k++)
            if (to_st[k] == t->dtype) d = k;
        if (d < 0) {
            st = kd_errf(err, KD_EUNSUPPORTED, "%s: tensor '%s': dtype %s is not supported here",
                         path, t->name, kd_st_dtype_name(t->dtype));
            kd_tfile_free(f);
            break;
        }
        kd_tfile_add(f, t->name, d, t->ndim, t->shape, t->data);
    }
    kd_st_free(sf);
    return st;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const kd_st_tensor *)a)->name, ((const kd_st_tensor *)b)->name);
}

kd_status kd_tfile_write(const kd_tfile *f, const char *path, kd_err *err)
{
    kd_st_tensor *ts = kd_xcalloc((size_t)(f->n ? f->n : 1), sizeof *ts);
    for (int i = 0; i < f->n; i++) {
        const kd_tf_tensor *t = &f->t[i];
        ts[i].name = t->name;
        ts[i].dtype = to_st[t->dtype];
        ts[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) ts[i].shape[d] = t->shape[d];
        ts[i].data_bytes = t->bytes;
        ts[i].data = t->data;
    }
    qsort(ts, (size_t)f->n, sizeof *ts, cmp_tensor_name);
    kd_status st = kd_st_save(path, ts, (size_t)f->n, NULL, 0, err);
    free(ts);
    return st;
}
