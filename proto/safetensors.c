/* safetensors.c — reading and writing safetensors files (format and conventions in
 * proto/safetensors.h). The JSON header goes through jansson; every error is returned as a
 * kd_status with a message that starts with the file name and names the offending key.
 */
#include "proto/safetensors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* A header larger than this is not a weight file we will meet (the format's own readers
 * stop at 100 MB too). */
#define ST_MAX_HEADER_BYTES ((uint64_t)100 << 20)

static const struct {
    const char *name;
    size_t bytes;
} st_dtypes[KD_ST_DTYPE_COUNT] = {
    [KD_ST_F32] = {"F32", 4}, [KD_ST_F64] = {"F64", 8}, [KD_ST_F16] = {"F16", 2},
    [KD_ST_BF16] = {"BF16", 2}, [KD_ST_I64] = {"I64", 8}, [KD_ST_I32] = {"I32", 4},
    [KD_ST_I16] = {"I16", 2},  [KD_ST_I8] = {"I8", 1},   [KD_ST_U8] = {"U8", 1},
    [KD_ST_BOOL] = {"BOOL", 1},
};

size_t kd_st_dtype_bytes(kd_st_dtype d)
{
    return (unsigned)d < KD_ST_DTYPE_COUNT ? st_dtypes[d].bytes : 0;
}

const char *kd_st_dtype_name(kd_st_dtype d)
{
    return (unsigned)d < KD_ST_DTYPE_COUNT ? st_dtypes[d].name : "?";
}

int kd_st_dtype_parse(const char *name)
{
    for (int i = 0; i < KD_ST_DTYPE_COUNT; i++)
        if (strcmp(name, st_dtypes[i].name) == 0) return i;
    return -1;
}

size_t kd_st_tensor_elems(const kd_st_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

/* Bytes of a tensor of this shape and dtype; 0 with *overflow set when it does not fit. */
static size_t shape_bytes(const kd_st_tensor *t, int *overflow)
{
    size_t n = kd_st_dtype_bytes(t->dtype);
    *overflow = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0 || __builtin_mul_overflow(n, (size_t)t->shape[i], &n)) {
            *overflow = 1;
            return 0;
        }
    }
    return n;
}

static void shape_str(const kd_st_tensor *t, char *out, size_t cap)
{
    size_t len = 0;
    len += (size_t)snprintf(out + len, cap - len, "[");
    for (int i = 0; i < t->ndim && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    if (len < cap) snprintf(out + len, cap - len, "]");
}

void kd_st_free(kd_st_file *f)
{
    if (!f) return;
    free(f->path);
    free(f->buf);
    free(f->tensors);
    free(f->meta);
    if (f->json_) json_decref((json_t *)f->json_);
    free(f);
}

const kd_st_tensor *kd_st_find(const kd_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *kd_st_meta_get(const kd_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

static kd_status read_file(const char *path, unsigned char **buf, size_t *bytes, kd_err *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return kd_errf(err, errno == ENOENT ? KD_ENOTFOUND : KD_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(fp, 0, SEEK_END) != 0) {
        fclose(fp);
        return kd_errf(err, KD_EIO, "%s: cannot seek: %s", path, strerror(errno));
    }
    long len = ftell(fp);
    if (len < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        fclose(fp);
        return kd_errf(err, KD_EIO, "%s: cannot size: %s", path, strerror(errno));
    }
    unsigned char *p = malloc((size_t)len + 1);
    if (!p) {
        fclose(fp);
        return kd_errf(err, KD_ENOMEM, "%s: cannot allocate %ld bytes", path, len);
    }
    if (len > 0 && fread(p, 1, (size_t)len, fp) != (size_t)len) {
        free(p);
        fclose(fp);
        return kd_errf(err, KD_EIO, "%s: short read", path);
    }
    fclose(fp);
    *buf = p;
    *bytes = (size_t)len;
    return KD_OK;
}

/* Parses one tensor entry; the name is `key`. */
static kd_status parse_entry(const char *path, const char *key, json_t *v, size_t data_bytes,
                             kd_st_tensor *t, size_t *begin, kd_err *err)
{
    if (!json_is_object(v))
        return kd_errf(err, KD_ECORRUPT, "%s: tensor '%s': entry is not an object", path, key);
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt))
        return kd_errf(err, KD_ECORRUPT, "%s: tensor '%s': 'dtype' missing or not a string", path, key);
    int d = kd_st_dtype_parse(json_string_value(dt));
    if (d < 0)
        return kd_errf(err, KD_EUNSUPPORTED, "%s: tensor '%s': unknown dtype \"%s\"", path, key,
                       json_string_value(dt));
    if (!json_is_array(sh))
        return kd_errf(err, KD_ECORRUPT, "%s: tensor '%s': 'shape' missing or not an array", path, key);
    if (json_array_size(sh) > KD_ST_MAX_DIMS)
        return kd_errf(err, KD_EUNSUPPORTED, "%s: tensor '%s': %zu dimensions (at most %d)", path,
                       key, json_array_size(sh), KD_ST_MAX_DIMS);
    memset(t, 0, sizeof *t);
    t->name = key;
    t->dtype = (kd_st_dtype)d;
    t->ndim = (int)json_array_size(sh);
    for (int i = 0; i < t->ndim; i++) {
        json_t *e = json_array_get(sh, (size_t)i);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return kd_errf(err, KD_ECORRUPT, "%s: tensor '%s': shape[%d] is not a non-negative integer",
                           path, key, i);
        t->shape[i] = (int64_t)json_integer_value(e);
    }
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        !json_is_integer(json_array_get(off, 0)) || !json_is_integer(json_array_get(off, 1)))
        return kd_errf(err, KD_ECORRUPT, "%s: tensor '%s': 'data_offsets' must be [begin, end]", path, key);
    json_int_t b = json_integer_value(json_array_get(off, 0)), e = json_integer_value(json_array_get(off, 1));
    if (b < 0 || e < b)
        return kd_errf(err, KD_ECORRUPT, "%s: tensor '%s': data_offsets [%lld, %lld] are not ordered",
                       path, key, (long long)b, (long long)e);
    if ((uint64_t)e > data_bytes)
        return kd_errf(err, KD_ECORRUPT,
                       "%s: tensor '%s': data_offsets end %lld is past the %zu data bytes of the file",
                       path, key, (long long)e, data_bytes);
    int overflow;
    size_t want = shape_bytes(t, &overflow);
    char sbuf[160];
    shape_str(t, sbuf, sizeof sbuf);
    if (overflow || want != (size_t)(e - b))
        return kd_errf(err, KD_ECORRUPT,
                       "%s: tensor '%s': shape %s of %s is %zu bytes but data_offsets span %lld",
                       path, key, sbuf, kd_st_dtype_name(t->dtype), want, (long long)(e - b));
    t->data_bytes = want;
    *begin = (size_t)b;
    return KD_OK;
}

typedef struct span {
    size_t begin, end, index;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

kd_status kd_st_load(const char *path, kd_st_file **out, kd_err *err)
{
    if (!out) return kd_errf(err, KD_EINVAL, "kd_st_load: out is NULL");
    *out = NULL;
    kd_st_file *f = calloc(1, sizeof *f);
    if (!f) return kd_errf(err, KD_ENOMEM, "%s: out of memory", path);
    f->path = strdup(path);
    kd_status st = read_file(path, &f->buf, &f->file_bytes, err);
    if (st != KD_OK) goto fail;
    if (f->file_bytes < 8) {
        st = kd_errf(err, KD_ECORRUPT, "%s: %zu bytes is too short for a safetensors file (8-byte header length)",
                     path, f->file_bytes);
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->buf[i];
    if (hlen < 2 || hlen > ST_MAX_HEADER_BYTES || hlen > f->file_bytes - 8) {
        st = kd_errf(err, KD_ECORRUPT, "%s: header length %llu does not fit the file of %zu bytes",
                     path, (unsigned long long)hlen, f->file_bytes);
        goto fail;
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        st = kd_errf(err, KD_ECORRUPT, "%s: header JSON: %s (at byte %d of the header)", path, jerr.text,
                     jerr.position);
        goto fail;
    }
    f->json_ = root;
    if (!json_is_object(root)) {
        st = kd_errf(err, KD_ECORRUPT, "%s: header JSON is not an object", path);
        goto fail;
    }
    const size_t data_off = 8 + (size_t)hlen, data_bytes = f->file_bytes - data_off;
    size_t n = json_object_size(root);
    f->tensors = calloc(n + 1, sizeof *f->tensors);
    span *spans = calloc(n + 1, sizeof *spans);
    if (!f->tensors || !spans) {
        free(spans);
        st = kd_errf(err, KD_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v)) {
                st = kd_errf(err, KD_ECORRUPT, "%s: '__metadata__' is not an object", path);
                break;
            }
            f->meta = calloc(json_object_size(v) + 1, sizeof *f->meta);
            if (!f->meta) {
                st = kd_errf(err, KD_ENOMEM, "%s: out of memory", path);
                break;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv)
            {
                if (!json_is_string(mv)) {
                    st = kd_errf(err, KD_ECORRUPT, "%s: '__metadata__' key '%s': value is not a string", path, mk);
                    break;
                }
                f->meta[f->n_meta].key = mk;
                f->meta[f->n_meta].value = json_string_value(mv);
                f->n_meta++;
            }
            if (st != KD_OK) break;
            continue;
        }
        size_t begin = 0;
        kd_st_tensor *t = &f->tensors[f->n_tensors];
        st = parse_entry(path, key, v, data_bytes, t, &begin, err);
        if (st != KD_OK) break;
        t->data = f->buf + data_off + begin;
        spans[f->n_tensors] = (span){begin, begin + t->data_bytes, f->n_tensors};
        f->n_tensors++;
    }
    if (st == KD_OK) {
        qsort(spans, f->n_tensors, sizeof *spans, span_cmp);
        for (size_t i = 1; i < f->n_tensors; i++)
            if (spans[i].begin < spans[i - 1].end && spans[i].end > spans[i].begin) {
                st = kd_errf(err, KD_ECORRUPT, "%s: tensor '%s': data [%zu, %zu) overlaps tensor '%s' [%zu, %zu)",
                             path, f->tensors[spans[i].index].name, spans[i].begin, spans[i].end,
                             f->tensors[spans[i - 1].index].name, spans[i - 1].begin, spans[i - 1].end);
                break;
            }
    }
    free(spans);
    if (st != KD_OK) goto fail;
    *out = f;
    return KD_OK;
fail:
    kd_st_free(f);
    return st;
}

kd_status kd_st_save(const char *path, const kd_st_tensor *tensors, size_t n,
                     const kd_st_meta *meta, size_t n_meta, kd_err *err)
{
    json_t *root = json_object();
    if (!root) return kd_errf(err, KD_ENOMEM, "%s: out of memory", path);
    kd_status st = KD_OK;
    if (n_meta) {
        json_t *m = json_object();
        for (size_t i = 0; i < n_meta && m; i++)
            json_object_set_new(m, meta[i].key, json_string(meta[i].value));
        json_object_set_new(root, "__metadata__", m);
    }
    size_t offset = 0;
    for (size_t i = 0; i < n && st == KD_OK; i++) {
        const kd_st_tensor *t = &tensors[i];
        int overflow = 0;
        size_t want = 0;
        if (!t->name || !*t->name || strcmp(t->name, "__metadata__") == 0)
            st = kd_errf(err, KD_EINVAL, "%s: tensor %zu: missing or reserved name", path, i);
        else if ((unsigned)t->dtype >= KD_ST_DTYPE_COUNT || t->ndim < 0 || t->ndim > KD_ST_MAX_DIMS)
            st = kd_errf(err, KD_EINVAL, "%s: tensor '%s': bad dtype or rank", path, t->name);
        else if (json_object_get(root, t->name))
            st = kd_errf(err, KD_EINVAL, "%s: tensor '%s': name given twice", path, t->name);
        else if ((want = shape_bytes(t, &overflow)), overflow || want != t->data_bytes)
            st = kd_errf(err, KD_EINVAL, "%s: tensor '%s': data_bytes %zu but shape and dtype give %zu",
                         path, t->name, t->data_bytes, want);
        if (st != KD_OK) break;
        json_t *e = json_object(), *sh = json_array();
        json_object_set_new(e, "dtype", json_string(kd_st_dtype_name(t->dtype)));
        for (int d = 0; d < t->ndim; d++) json_array_append_new(sh, json_integer(t->shape[d]));
        json_object_set_new(e, "shape", sh);
        json_object_set_new(e, "data_offsets",
                            json_pack("[II]", (json_int_t)offset, (json_int_t)(offset + want)));
        json_object_set_new(root, t->name, e);
        offset += want;
    }
    char *hdr = st == KD_OK ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (st != KD_OK) return st;
    if (!hdr) return kd_errf(err, KD_ENOMEM, "%s: cannot encode the header", path);
    size_t hlen = strlen(hdr), padded = (hlen + 7) & ~(size_t)7;

    size_t tlen = strlen(path) + 5;
    char *tmp = malloc(tlen);
    if (!tmp) {
        free(hdr);
        return kd_errf(err, KD_ENOMEM, "%s: out of memory", path);
    }
    snprintf(tmp, tlen, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        st = kd_errf(err, KD_EIO, "%s: cannot create: %s", tmp, strerror(errno));
        free(hdr), free(tmp);
        return st;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(hdr, 1, hlen, fp) == hlen;
    for (size_t i = hlen; i < padded && ok; i++) ok = fputc(' ', fp) != EOF;
    for (size_t i = 0; i < n && ok; i++)
        if (tensors[i].data_bytes)
            ok = fwrite(tensors[i].data, 1, tensors[i].data_bytes, fp) == tensors[i].data_bytes;
    if (fclose(fp) != 0) ok = 0;
    free(hdr);
    if (!ok) {
        remove(tmp);
        free(tmp);
        return kd_errf(err, KD_EIO, "%s: write failed", path);
    }
    if (rename(tmp, path) != 0) {
        st = kd_errf(err, KD_EIO, "%s: cannot rename from %s: %s", path, tmp, strerror(errno));
        remove(tmp);
    }
    free(tmp);
    return st;
}
