/* weights.c — model weights in and out as safetensors with MMDetection's state-dict keys
 * (tensor_file.c does the format). Loading checks every key of the model's table against
 * the file and fails naming every missing, unexpected and dtype- or shape-mismatched key;
 * what MMDetection state dicts also carry is accepted: BN num_batches_tracked (int64, kept
 * and saved back) and bbox_head.integral.project (float, checked for shape). A 0-d Scale
 * also accepts shape [1]. Saving writes every table entry, so a loaded file saves back with
 * byte-identical tensors.
 */
#include "worker/model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void append(char *buf, size_t cap, int *count, const char *fmt, const char *a, const char *b)
{
    size_t len = strlen(buf);
    if (*count < 8 && len + 8 < cap) snprintf(buf + len, cap - len, fmt, *count ? ", " : "", a, b);
    else if (*count == 8 && len + 8 < cap) snprintf(buf + len, cap - len, ", ...");
    (*count)++;
}

static void shape_str(char *out, size_t cap, int ndim, const int64_t *shape)
{
    size_t len = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (len < cap) snprintf(out + len, cap - len, "]");
}

static int shape_ok(const kd_param *p, const kd_tf_tensor *t)
{
    if (p->ndim == 0) return t->ndim == 0 || (t->ndim == 1 && t->shape[0] == 1);
    if (t->ndim != p->ndim) return 0;
    for (int i = 0; i < p->ndim; i++)
        if (t->shape[i] != p->shape[i]) return 0;
    return 1;
}

kd_status kd_model_load(kd_model *m, const char *path, kd_err *err)
{
    kd_tfile f;
    kd_status st = kd_tfile_read(path, &f, err);
    if (st) return st;
    kd_params *P = &m->params;
    char miss[400] = "", unexp[400] = "", bad[600] = "";
    int n_miss = 0, n_unexp = 0, n_bad = 0;
    for (int i = 0; i < P->n; i++) {
        const kd_param *p = &P->p[i];
        const kd_tf_tensor *t = kd_tfile_get(&f, p->name);
        int optional = p->dtype == KD_DT_I64 || strcmp(p->name, "bbox_head.integral.project") == 0;
        if (!t) {
            if (!optional) append(miss, sizeof miss, &n_miss, "%s%s%s", p->name, "");
            continue;
        }
        int want = p->dtype == KD_DT_I64 ? KD_TF_I64 : KD_TF_F32;
        if (t->dtype != want || !shape_ok(p, t)) {
            char a[96], b[96], d[300];
            shape_str(a, sizeof a, t->ndim, t->shape);
            shape_str(b, sizeof b, p->ndim, p->shape);
            snprintf(d, sizeof d, " (file %s %s, model %s %s)", kd_tf_dtype_name(t->dtype), a,
                     kd_tf_dtype_name(want), b);
            append(bad, sizeof bad, &n_bad, "%s%s%s", p->name, d);
        }
    }
    for (int i = 0; i < f.n; i++)
        if (kd_params_find(P, f.t[i].name) < 0)
            append(unexp, sizeof unexp, &n_unexp, "%s%s%s", f.t[i].name, "");
    if (n_miss || n_unexp || n_bad) {
        st = kd_errf(err, KD_EINVAL, "%s: does not match the model:%s%s%s%s%s%s%s%s%s", path,
                     n_miss ? " missing keys: " : "", miss, n_miss ? ";" : "",
                     n_unexp ? " unexpected keys: " : "", unexp, n_unexp ? ";" : "",
                     n_bad ? " dtype/shape mismatch: " : "", bad, n_bad ? ";" : "");
        kd_tfile_free(&f);
        return st;
    }
    float *host = kd_xmalloc(P->total_elems * sizeof(float));
    m->be->copy_to_host(m->be, host, P->data, P->total_elems * sizeof(float));
    for (int i = 0; i < P->n; i++) {
        const kd_param *p = &P->p[i];
        const kd_tf_tensor *t = kd_tfile_get(&f, p->name);
        if (!t) continue;
        if (p->dtype == KD_DT_I64) memcpy(P->i64_host + p->offset, t->data, t->bytes);
        else memcpy(host + p->offset, t->data, t->bytes);
    }
    m->be->copy_from_host(m->be, P->data, host, P->total_elems * sizeof(float));
    free(host);
    kd_tfile_free(&f);
    return KD_OK;
}

kd_status kd_model_save(const kd_model *m, const char *path, kd_err *err)
{
    const kd_params *P = &m->params;
    float *host = kd_xmalloc(P->total_elems * sizeof(float));
    m->be->copy_to_host(m->be, host, P->data, P->total_elems * sizeof(float));
    kd_tfile f = {0};
    for (int i = 0; i < P->n; i++) {
        const kd_param *p = &P->p[i];
        if (p->dtype == KD_DT_I64)
            kd_tfile_add(&f, p->name, KD_TF_I64, p->ndim, p->shape, P->i64_host + p->offset);
        else
            kd_tfile_add(&f, p->name, KD_TF_F32, p->ndim, p->shape, host + p->offset);
    }
    kd_status st = kd_tfile_write(&f, path, err);
    kd_tfile_free(&f);
    free(host);
    return st;
}
