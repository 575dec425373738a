/* test_weights_io.c — safetensors weights in and out with MMDetection keys:
 *  - a file written by the PyTorch side (with int64 num_batches_tracked and
 *    bbox_head.integral.project) loads, and saves back with the same keys and byte-identical
 *    tensors; save -> load -> save is byte-identical as a file;
 *  - bad files fail with a message naming the problem and the key: truncated, wrong header
 *    length, dtype mismatch, shape mismatch, missing key, unexpected key;
 *  - initialisation is deterministic from the seed and follows MMDetection's schemes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_test.h"
#include "proto/log.h"
#include "worker/model/model.h"
#include "worker/options.h"

static const char *dir;
static const kd_backend *be;
static kd_config cfg;
static char tmp[3][256];

static kd_model *make_model(void)
{
    kd_model_opts o = {1, 64, 64, 0, -1};
    kd_model *m = NULL;
    kd_err err;
    if (kd_model_create(be, &cfg.model, &o, &m, &err)) fprintf(stderr, "%s\n", err.msg);
    return m;
}

static int file_bytes(const char *p, unsigned char **out, long *n)
{
    FILE *f = fopen(p, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    rewind(f);
    *out = malloc((size_t)*n + 1);
    size_t r = fread(*out, 1, (size_t)*n, f);
    fclose(f);
    return r == (size_t)*n ? 0 : -1;
}

static void roundtrip(void)
{
    kd_model *m = make_model();
    KD_REQUIRE(m);
    char src[1024];
    snprintf(src, sizeof src, "%s/r50.weights.safetensors", dir);
    kd_err err;
    KD_REQUIRE(kd_model_load(m, src, &err) == KD_OK);
    KD_REQUIRE(kd_model_save(m, tmp[0], &err) == KD_OK);
    kd_tfile a, b;
    KD_REQUIRE(kd_tfile_read(src, &a, &err) == KD_OK);
    KD_REQUIRE(kd_tfile_read(tmp[0], &b, &err) == KD_OK);
    KD_EXPECT(a.n == b.n);
    int same = 0;
    for (int i = 0; i < a.n; i++) {
        const kd_tf_tensor *t = kd_tfile_get(&b, a.t[i].name);
        KD_EXPECT_MSG(t != NULL, "%s not saved", a.t[i].name);
        if (t && t->dtype == a.t[i].dtype && t->ndim == a.t[i].ndim && t->bytes == a.t[i].bytes &&
            memcmp(t->data, a.t[i].data, t->bytes) == 0)
            same++;
        else
            fprintf(stderr, "differs: %s\n", a.t[i].name);
    }
    KD_EXPECT(same == a.n);
    /* save -> load -> save: the same file */
    kd_model *m2 = make_model();
    KD_REQUIRE(kd_model_load(m2, tmp[0], &err) == KD_OK);
    KD_REQUIRE(kd_model_save(m2, tmp[1], &err) == KD_OK);
    unsigned char *x, *y;
    long nx, ny;
    KD_REQUIRE(file_bytes(tmp[0], &x, &nx) == 0 && file_bytes(tmp[1], &y, &ny) == 0);
    KD_EXPECT(nx == ny && memcmp(x, y, (size_t)nx) == 0);
    free(x);
    free(y);
    kd_tfile_free(&a);
    kd_tfile_free(&b);
    kd_model_destroy(m);
    kd_model_destroy(m2);
}

/* Writes a modified copy of the fixture weights and checks that loading it fails with a
 * message containing each of `needles`. */
static void expect_load_error(const kd_tfile *f, const char *n1, const char *n2)
{
    kd_err err = {0};
    KD_REQUIRE(kd_tfile_write(f, tmp[2], &err) == KD_OK);
    kd_model *m = make_model();
    KD_REQUIRE(m);
    kd_status st = kd_model_load(m, tmp[2], &err);
    KD_EXPECT(st != KD_OK);
    KD_EXPECT_STR_CONTAINS(err.msg, n1);
    if (n2) KD_EXPECT_STR_CONTAINS(err.msg, n2);
    kd_model_destroy(m);
}

static void bad_files(void)
{
    char src[1024];
    snprintf(src, sizeof src, "%s/r50.weights.safetensors", dir);
    kd_tfile f;
    kd_err err;
    KD_REQUIRE(kd_tfile_read(src, &f, &err) == KD_OK);
    const char *key = "neck.fpn_convs.2.conv.weight";
    kd_tf_tensor *t = (kd_tf_tensor *)kd_tfile_get(&f, key);
    KD_REQUIRE(t);
    /* dtype mismatch: the same values as float64 */
    size_t e = kd_tf_elems(t);
    double *dv = malloc(e * sizeof(double));
    for (size_t i = 0; i < e; i++) dv[i] = ((float *)t->data)[i];
    kd_tfile g = {0};
    for (int i = 0; i < f.n; i++) kd_tfile_add(&g, f.t[i].name, f.t[i].dtype, f.t[i].ndim, f.t[i].shape, f.t[i].data);
    kd_tfile_add(&g, key, KD_TF_F64, t->ndim, t->shape, dv);
    expect_load_error(&g, key, "mismatch");
    /* shape mismatch */
    int64_t sh[4] = {t->shape[0], t->shape[1], 1, 9};
    kd_tfile_add(&g, key, KD_TF_F32, 4, sh, t->data);
    expect_load_error(&g, key, "[8, 8, 1, 9]");
    /* unexpected key */
    kd_tfile_add(&g, key, t->dtype, t->ndim, t->shape, t->data);
    kd_tfile_add(&g, "bbox_head.extra.weight", KD_TF_F32, 1, sh, t->data);
    expect_load_error(&g, "unexpected keys: bbox_head.extra.weight", NULL);
    kd_tfile_free(&g);
    /* missing key */
    for (int i = 0; i < f.n; i++)
        if (strcmp(f.t[i].name, key)) kd_tfile_add(&g, f.t[i].name, f.t[i].dtype, f.t[i].ndim, f.t[i].shape, f.t[i].data);
    expect_load_error(&g, "missing keys: neck.fpn_convs.2.conv.weight", NULL);
    kd_tfile_free(&g);
    free(dv);
    kd_tfile_free(&f);
    /* truncated file and wrong header length */
    unsigned char *bytes;
    long n;
    KD_REQUIRE(file_bytes(src, &bytes, &n) == 0);
    FILE *o = fopen(tmp[2], "wb");
    fwrite(bytes, 1, (size_t)(n - 1000), o);
    fclose(o);
    kd_model *m = make_model();
    KD_EXPECT(kd_model_load(m, tmp[2], &err) != KD_OK);
    KD_EXPECT_STR_CONTAINS(err.msg, "past the");
    KD_EXPECT_STR_CONTAINS(err.msg, "tensor '");
    bytes[0] = 0xff;
    bytes[3] = 0x7f;
    o = fopen(tmp[2], "wb");
    fwrite(bytes, 1, (size_t)n, o);
    fclose(o);
    KD_EXPECT(kd_model_load(m, tmp[2], &err) != KD_OK);
    KD_EXPECT_STR_CONTAINS(err.msg, "header length");
    o = fopen(tmp[2], "wb");
    fwrite(bytes, 1, 5, o);
    fclose(o);
    KD_EXPECT(kd_model_load(m, tmp[2], &err) != KD_OK);
    KD_EXPECT_STR_CONTAINS(err.msg, "too short");
    KD_EXPECT(kd_model_load(m, "no/such/file.safetensors", &err) == KD_ENOTFOUND);
    free(bytes);
    kd_model_destroy(m);
}

static void init_schemes(void)
{
    kd_model *a = make_model(), *b = make_model();
    KD_REQUIRE(a && b);
    kd_model_init(a, 5);
    kd_model_init(b, 5);
    size_t bytes = a->params.total_elems * sizeof(float);
    float *pa = malloc(bytes), *pb = malloc(bytes);
    be->copy_to_host(be, pa, a->params.data, bytes);
    be->copy_to_host(be, pb, b->params.data, bytes);
    KD_EXPECT(memcmp(pa, pb, bytes) == 0);
    kd_model_init(b, 6);
    be->copy_to_host(be, pb, b->params.data, bytes);
    KD_EXPECT(memcmp(pa, pb, bytes) != 0);
    const kd_params *P = &a->params;
    for (int i = 0; i < P->n; i++) {
        const kd_param *p = &P->p[i];
        if (p->dtype != KD_DT_F32) continue;
        const float *v = pa + p->offset;
        double s = 0, s2 = 0, mx = 0;
        for (size_t k = 0; k < p->elems; k++) {
            s += v[k];
            s2 += (double)v[k] * v[k];
            mx = fmax(mx, fabs(v[k]));
        }
        double sd = sqrt(s2 / p->elems);
        if (!strcmp(p->name, "bbox_head.gfl_cls.bias")) KD_EXPECT_NEAR(v[0], -4.59512, 1e-5, 0);
        if (!strcmp(p->name, "bbox_head.cls_convs.1.conv.weight")) KD_EXPECT_NEAR(sd, 0.01, 0.001, 0);
        if (!strcmp(p->name, "backbone.layer3.0.conv2.weight"))
            KD_EXPECT_NEAR(sd, sqrt(2.0 / (p->shape[0] * 9)), 0, 0.1);
        if (!strcmp(p->name, "neck.fpn_convs.0.conv.weight")) {
            double bound = sqrt(6.0 / (2.0 * p->shape[0] * 9));
            KD_EXPECT(mx <= bound);
            KD_EXPECT_NEAR(sd, bound / sqrt(3.0), 0, 0.1);
        }
        if (strstr(p->name, "running_var") || strstr(p->name, ".scale") || strstr(p->name, "gn.weight"))
            KD_EXPECT(s == (double)p->elems);
        if (strstr(p->name, "running_mean") || strstr(p->name, "conv.bias")) KD_EXPECT(mx == 0);
    }
    free(pa);
    free(pb);
    kd_model_destroy(a);
    kd_model_destroy(b);
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    dir = argv[1];
    kd_log_init(0);
    kd_log_set_level(KD_LOG_WARN);
    for (int i = 0; i < 3; i++) snprintf(tmp[i], sizeof tmp[i], "model_weights_%d_%d.safetensors", (int)getpid(), i);
    kd_err err;
    char p[1024];
    snprintf(p, sizeof p, "%s/r50.yaml", dir);
    if (kd_options_load(&cfg, p, NULL, 0, &err) || kd_backend_open("cpu", 0, &be, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    KD_TEST_RUN(roundtrip);
    KD_TEST_RUN(bad_files);
    KD_TEST_RUN(init_schemes);
    for (int i = 0; i < 3; i++) remove(tmp[i]);
    be->close(be);
    return kd_test_summary();
}
