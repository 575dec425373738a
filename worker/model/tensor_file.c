/* tensor_file.c — safetensors read/write (see tensor_file.h). The JSON header is parsed
 * with jansson; sizes are checked before any allocation so a corrupt length cannot ask for
 * absurd memory, and every tensor's byte range must match dtype x shape and lie inside the
 * data section.
 */
#include "worker/model/tensor_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

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

static int parse_dtype(const char *s)
{
    for (int i = 0; i < KD_TF_NTYPES; i++)
        if (strcmp(s, dtype_names[i]) == 0) return i;
    return -1;
}

kd_status kd_tfile_read(const char *path, kd_tfile *f, kd_err *err)
{
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) return kd_errf(err, KD_EIO, "%s: cannot open: %s", path, strerror(errno));
    kd_status st = KD_OK;
    char *hdr = NULL, *data = NULL;
    json_t *root = NULL;
    if (fseek(fp, 0, SEEK_END) != 0) {
        st = kd_errf(err, KD_EIO, "%s: cannot seek", path);
        goto done;
    }
    long fsz = ftell(fp);
    rewind(fp);
    unsigned char lb[8];
    if (fsz < 8 || fread(lb, 1, 8, fp) != 8) {
        st = kd_errf(err, KD_ECORRUPT, "%s: truncated: %ld bytes, no 8-byte header length", path, fsz);
        goto done;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lb[i];
    if (hlen == 0 || hlen > (uint64_t)(fsz - 8) || hlen > (100u << 20)) {
        st = kd_errf(err, KD_ECORRUPT,
                     "%s: header length %llu does not fit the file (%ld bytes after the length)",
                     path, (unsigned long long)hlen, fsz - 8);
        goto done;
    }
    hdr = kd_xmalloc(hlen + 1);
    if (fread(hdr, 1, hlen, fp) != hlen) {
        st = kd_errf(err, KD_ECORRUPT, "%s: truncated header", path);
        goto done;
    }
    hdr[hlen] = 0;
    size_t dsz = (size_t)(fsz - 8) - (size_t)hlen;
    data = kd_xmalloc(dsz ? dsz : 1);
    if (dsz && fread(data, 1, dsz, fp) != dsz) {
        st = kd_errf(err, KD_EIO, "%s: short read of the data section", path);
        goto done;
    }
    json_error_t je;
    root = json_loadb(hdr, hlen, 0, &je);
    if (!root || !json_is_object(root)) {
        st = kd_errf(err, KD_ECORRUPT, "%s: header is not a JSON object (%s, column %d)", path,
                     root ? "not an object" : je.text, root ? 0 : je.column);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) continue;
        json_t *dt = json_object_get(val, "dtype"), *sh = json_object_get(val, "shape"),
               *of = json_object_get(val, "data_offsets");
        if (!json_is_object(val) || !json_is_string(dt) || !json_is_array(sh) ||
            !json_is_array(of) || json_array_size(of) != 2 ||
            json_array_size(sh) > KD_TF_MAX_DIMS) {
            st = kd_errf(err, KD_ECORRUPT, "%s: tensor '%s': malformed header entry", path, key);
            goto done;
        }
        int dtype = parse_dtype(json_string_value(dt));
        if (dtype < 0) {
            st = kd_errf(err, KD_EUNSUPPORTED, "%s: tensor '%s': unsupported dtype %s", path, key,
                         json_string_value(dt));
            goto done;
        }
        int64_t shape[KD_TF_MAX_DIMS];
        int ndim = (int)json_array_size(sh);
        size_t elems = 1;
        for (int i = 0; i < ndim; i++) {
            json_t *d = json_array_get(sh, (size_t)i);
            if (!json_is_integer(d) || json_integer_value(d) < 0) {
                st = kd_errf(err, KD_ECORRUPT, "%s: tensor '%s': bad shape", path, key);
                goto done;
            }
            shape[i] = json_integer_value(d);
            elems *= (size_t)shape[i];
        }
        json_t *o0 = json_array_get(of, 0), *o1 = json_array_get(of, 1);
        if (!json_is_integer(o0) || !json_is_integer(o1)) {
            st = kd_errf(err, KD_ECORRUPT, "%s: tensor '%s': bad data_offsets", path, key);
            goto done;
        }
        json_int_t b0 = json_integer_value(o0), b1 = json_integer_value(o1);
        if (b0 < 0 || b1 < b0 || (size_t)b1 > dsz) {
            st = kd_errf(err, KD_ECORRUPT,
                         "%s: tensor '%s': data_offsets [%lld, %lld] outside the %zu-byte data "
                         "section (truncated file?)",
                         path, key, (long long)b0, (long long)b1, dsz);
            goto done;
        }
        if ((size_t)(b1 - b0) != elems * dtype_sizes[dtype]) {
            st = kd_errf(err, KD_ECORRUPT, "%s: tensor '%s': %lld bytes for %zu %s elements", path,
                         key, (long long)(b1 - b0), elems, dtype_names[dtype]);
            goto done;
        }
        kd_tfile_add(f, key, dtype, ndim, shape, data + b0);
    }
done:
    if (root) json_decref(root);
    free(hdr);
    free(data);
    fclose(fp);
    if (st) kd_tfile_free(f);
    return st;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const kd_tf_tensor *const *)a)->name, (*(const kd_tf_tensor *const *)b)->name);
}

kd_status kd_tfile_write(const kd_tfile *f, const char *path, kd_err *err)
{
    const kd_tf_tensor **order = kd_xmalloc((size_t)(f->n ? f->n : 1) * sizeof *order);
    for (int i = 0; i < f->n; i++) order[i] = &f->t[i];
    qsort(order, (size_t)f->n, sizeof *order, cmp_tensor_name);
    json_t *root = json_object();
    size_t off = 0;
    for (int i = 0; i < f->n; i++) {
        const kd_tf_tensor *t = order[i];
        json_t *e = json_object(), *sh = json_array(), *of = json_array();
        json_object_set_new(e, "dtype", json_string(dtype_names[t->dtype]));
        for (int d = 0; d < t->ndim; d++) json_array_append_new(sh, json_integer(t->shape[d]));
        json_object_set_new(e, "shape", sh);
        json_array_append_new(of, json_integer((json_int_t)off));
        json_array_append_new(of, json_integer((json_int_t)(off + t->bytes)));
        json_object_set_new(e, "data_offsets", of);
        json_object_set_new(root, t->name, e);
        off += t->bytes;
    }
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    size_t hlen = strlen(hdr), padded = (hlen + 7) & ~(size_t)7;
    kd_status st = KD_OK;
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        st = kd_errf(err, KD_EIO, "%s: cannot create: %s", path, strerror(errno));
        goto out;
    }
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(lb, 1, 8, fp) == 8 && fwrite(hdr, 1, hlen, fp) == hlen;
    for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    for (int i = 0; ok && i < f->n; i++)
        ok = !order[i]->bytes || fwrite(order[i]->data, 1, order[i]->bytes, fp) == order[i]->bytes;
    if (fclose(fp) != 0) ok = 0;
    if (!ok) st = kd_errf(err, KD_EIO, "%s: write failed: %s", path, strerror(errno));
out:
    free(hdr);
    free(order);
    return st;
}
