/* test_safetensors.c — proto/safetensors: a save/load round trip over every common dtype
 * (scalar, empty and multi-dimensional tensors, metadata), load-then-save byte identity,
 * and the malformed files a user can hand us (truncated, bad header length, bad JSON,
 * dtype/shape not matching the byte span, overlapping or out-of-file offsets, unknown dtype):
 * each is refused with a message naming the file and, where there is one, the key.
 * Files are written under a fresh directory in the working directory.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_test.h"
#include "proto/safetensors.h"

static char dir[64];

static const char *tmp_path(const char *name)
{
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = -1;
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const void *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, len, f);
    fclose(f);
}

/* A raw file: 8-byte length + header text + data bytes. */
static void write_raw(const char *path, const char *hdr, uint64_t hlen_override, size_t data_len)
{
    size_t hl = strlen(hdr);
    uint64_t hlen = hlen_override ? hlen_override : hl;
    unsigned char *b = calloc(8 + hl + data_len + 1, 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + 8, hdr, hl);
    spit(path, b, 8 + hl + data_len);
    free(b);
}

static float f32[6] = {1.5f, -2.f, 3.25f, 0.f, 1e-30f, -7.f};
static double f64[3] = {1.0 / 3.0, -2.5, 1e300};
static int32_t i32[4] = {1, -2, 2147483647, -2147483647 - 1};
static int64_t i64[2] = {-9000000000000000000ll, 42};
static uint8_t u8[5] = {0, 1, 127, 128, 255};

static kd_st_tensor tensor(const char *name, kd_st_dtype dt, int ndim, const int64_t *shape,
                           const void *data, size_t bytes)
{
    kd_st_tensor t;
    memset(&t, 0, sizeof t);
    t.name = name, t.dtype = dt, t.ndim = ndim, t.data = data, t.data_bytes = bytes;
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    return t;
}

static void test_round_trip(void)
{
    int64_t s_f32[2] = {2, 3}, s_f64[1] = {3}, s_i32[3] = {2, 1, 2}, s_i64[1] = {2}, s_u8[1] = {5},
            s_empty[2] = {0, 4};
    float scalar = 0.125f;
    kd_st_tensor ts[7] = {
        tensor("backbone.conv1.weight", KD_ST_F32, 2, s_f32, f32, sizeof f32),
        tensor("f64", KD_ST_F64, 1, s_f64, f64, sizeof f64),
        tensor("i32", KD_ST_I32, 3, s_i32, i32, sizeof i32),
        tensor("i64", KD_ST_I64, 1, s_i64, i64, sizeof i64),
        tensor("u8", KD_ST_U8, 1, s_u8, u8, sizeof u8),
        tensor("scalar", KD_ST_F32, 0, NULL, &scalar, 4),
        tensor("empty", KD_ST_F32, 2, s_empty, NULL, 0),
    };
    kd_st_meta meta[2] = {{"format", "pt"}, {"source", "crosskd test"}};
    kd_err err;
    const char *p1 = tmp_path("a.safetensors"), *p2 = tmp_path("b.safetensors");
    KD_REQUIRE(kd_st_save(p1, ts, 7, meta, 2, &err) == KD_OK);
    kd_st_file *f = NULL;
    KD_REQUIRE(kd_st_load(p1, &f, &err) == KD_OK);
    KD_EXPECT(f->n_tensors == 7 && f->n_meta == 2);
    for (size_t i = 0; i < 7 && i < f->n_tensors; i++) {
        const kd_st_tensor *t = &f->tensors[i];
        KD_EXPECT(strcmp(t->name, ts[i].name) == 0); /* file order = given order */
        KD_EXPECT(t->dtype == ts[i].dtype && t->ndim == ts[i].ndim && t->data_bytes == ts[i].data_bytes);
        for (int d = 0; d < t->ndim; d++) KD_EXPECT(t->shape[d] == ts[i].shape[d]);
        KD_EXPECT(t->data_bytes == 0 || memcmp(t->data, ts[i].data, t->data_bytes) == 0);
    }
    KD_EXPECT(kd_st_find(f, "i64") == &f->tensors[3]);
    KD_EXPECT(kd_st_find(f, "nope") == NULL);
    KD_EXPECT(kd_st_meta_get(f, "source") && strcmp(kd_st_meta_get(f, "source"), "crosskd test") == 0);
    KD_EXPECT(kd_st_tensor_elems(&f->tensors[5]) == 1 && kd_st_tensor_elems(&f->tensors[6]) == 0);
    /* the header is padded to 8 bytes, so F32 data is aligned in the file */
    KD_EXPECT((((const unsigned char *)f->tensors[0].data - f->buf) & 7) == 0);

    /* load -> save in file order -> the same bytes */
    KD_REQUIRE(kd_st_save(p2, f->tensors, f->n_tensors, f->meta, f->n_meta, &err) == KD_OK);
    size_t l1, l2;
    unsigned char *b1 = slurp(p1, &l1), *b2 = slurp(p2, &l2);
    KD_EXPECT(b1 && b2 && l1 == l2 && memcmp(b1, b2, l1) == 0);
    free(b1), free(b2);
    kd_st_free(f);
}

static void expect_load_error(const char *path, kd_status code, const char *needle)
{
    kd_st_file *f = (kd_st_file *)1;
    kd_err err;
    memset(&err, 0, sizeof err);
    kd_status st = kd_st_load(path, &f, &err);
    KD_EXPECT_MSG(st == code, "%s: got %s (%s)", path, kd_status_name(st), err.msg);
    KD_EXPECT(f == NULL);
    KD_EXPECT_STR_CONTAINS(err.msg, path);
    if (needle) KD_EXPECT_STR_CONTAINS(err.msg, needle);
}

static void test_truncated(void)
{
    int64_t s[1] = {6};
    kd_st_tensor t = tensor("layer.weight", KD_ST_F32, 1, s, f32, sizeof f32);
    kd_err err;
    const char *p = tmp_path("full.safetensors"), *q = tmp_path("trunc.safetensors");
    KD_REQUIRE(kd_st_save(p, &t, 1, NULL, 0, &err) == KD_OK);
    size_t len;
    unsigned char *b = slurp(p, &len);
    spit(q, b, len - 3); /* data cut short */
    expect_load_error(q, KD_ECORRUPT, "'layer.weight'");
    spit(q, b, 5); /* not even the length */
    expect_load_error(q, KD_ECORRUPT, "too short");
    spit(q, b, 20); /* header cut */
    expect_load_error(q, KD_ECORRUPT, "header length");
    free(b);
    expect_load_error(tmp_path("missing.safetensors"), KD_ENOTFOUND, "cannot open");
}

static void test_bad_header_length(void)
{
    const char *p = tmp_path("hlen.safetensors");
    write_raw(p, "{}", 1ull << 40, 0);
    expect_load_error(p, KD_ECORRUPT, "header length");
    write_raw(p, "{}", 0xFFFFFFFFFFFFFFFFull, 0);
    expect_load_error(p, KD_ECORRUPT, "header length");
}

static void test_bad_json(void)
{
    const char *p = tmp_path("json.safetensors");
    write_raw(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], ", 0, 4);
    expect_load_error(p, KD_ECORRUPT, "header JSON");
    write_raw(p, "[1, 2]", 0, 0);
    expect_load_error(p, KD_ECORRUPT, "not an object");
    write_raw(p, "{\"__metadata__\": {\"k\": 3}}", 0, 0);
    expect_load_error(p, KD_ECORRUPT, "'k'");
}

static void test_dtype_shape_mismatch(void)
{
    const char *p = tmp_path("mismatch.safetensors");
    write_raw(p, "{\"neck.fpn.bias\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 0, 24);
    expect_load_error(p, KD_ECORRUPT, "'neck.fpn.bias'");
    expect_load_error(p, KD_ECORRUPT, "[2,3]");
    write_raw(p, "{\"t\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4);
    expect_load_error(p, KD_EUNSUPPORTED, "Q4");
    write_raw(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 0, 4);
    expect_load_error(p, KD_ECORRUPT, "'t'");
    write_raw(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, 4);
    expect_load_error(p, KD_ECORRUPT, "data_offsets");
}

static void test_offsets(void)
{
    const char *p = tmp_path("offsets.safetensors");
    write_raw(p,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
              0, 12);
    expect_load_error(p, KD_ECORRUPT, "overlaps");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 0, 12);
    expect_load_error(p, KD_ECORRUPT, "past the 12 data bytes");
    write_raw(p, "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", 0, 12);
    expect_load_error(p, KD_ECORRUPT, "not ordered");
}

static void test_save_errors(void)
{
    int64_t s[1] = {3};
    kd_st_tensor t[2] = {tensor("x", KD_ST_F32, 1, s, f32, 8), tensor("x", KD_ST_F32, 1, s, f32, 12)};
    kd_err err;
    KD_EXPECT(kd_st_save(tmp_path("e.safetensors"), t, 1, NULL, 0, &err) == KD_EINVAL);
    KD_EXPECT_STR_CONTAINS(err.msg, "'x'");
    t[0].data_bytes = 12;
    KD_EXPECT(kd_st_save(tmp_path("e.safetensors"), t, 2, NULL, 0, &err) == KD_EINVAL);
    KD_EXPECT_STR_CONTAINS(err.msg, "twice");
}

/* Every truncation and 300 seeded byte mutations of a valid file: each load either succeeds
 * (consistent tensors inside the file) or fails with a message naming the file; never a
 * crash (run under ASan in the sanitizer build). */
static void test_mutations(void)
{
    int64_t s1[2] = {2, 3}, s2[1] = {5};
    kd_st_tensor ts[2] = {tensor("a.weight", KD_ST_F32, 2, s1, f32, sizeof f32),
                          tensor("b", KD_ST_U8, 1, s2, u8, sizeof u8)};
    kd_st_meta meta[1] = {{"k", "v"}};
    kd_err err;
    const char *p = tmp_path("m.safetensors"), *q = tmp_path("mut.safetensors");
    KD_REQUIRE(kd_st_save(p, ts, 2, meta, 1, &err) == KD_OK);
    size_t len;
    unsigned char *b = slurp(p, &len);
    KD_REQUIRE(b != NULL);
    for (size_t cut = 0; cut < len; cut++) {
        spit(q, b, cut);
        kd_st_file *f = NULL;
        kd_status st = kd_st_load(q, &f, &err);
        KD_EXPECT(st != KD_OK && f == NULL);
        if (st != KD_OK) KD_EXPECT_STR_CONTAINS(err.msg, q);
        kd_st_free(f);
    }
    uint32_t rng = 12345;
    unsigned char *m = malloc(len);
    for (int k = 0; k < 300; k++) {
        memcpy(m, b, len);
        for (int j = 0; j < 3; j++) {
            rng = rng * 1664525u + 1013904223u;
            size_t at = (rng >> 8) % len;
            rng = rng * 1664525u + 1013904223u;
            m[at] = (unsigned char)(rng >> 24);
        }
        spit(q, m, len);
        kd_st_file *f = NULL;
        kd_status st = kd_st_load(q, &f, &err);
        if (st == KD_OK) {
            for (size_t i = 0; i < f->n_tensors; i++) {
                const unsigned char *d = f->tensors[i].data;
                KD_EXPECT(d >= f->buf && d + f->tensors[i].data_bytes <= f->buf + f->file_bytes);
            }
        } else {
            KD_EXPECT_STR_CONTAINS(err.msg, q);
        }
        kd_st_free(f);
    }
    free(m);
    free(b);
}

int main(void)
{
    snprintf(dir, sizeof dir, "st_test_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    KD_TEST_RUN(test_round_trip);
    KD_TEST_RUN(test_truncated);
    KD_TEST_RUN(test_bad_header_length);
    KD_TEST_RUN(test_bad_json);
    KD_TEST_RUN(test_dtype_shape_mismatch);
    KD_TEST_RUN(test_offsets);
    KD_TEST_RUN(test_save_errors);
    KD_TEST_RUN(test_mutations);
    /* clean up the scratch directory */
    const char *names[] = {"a", "b", "full", "trunc", "hlen", "json", "mismatch", "offsets", "e", "m", "mut"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/%s.safetensors", dir, names[i]);
        remove(p);
    }
    rmdir(dir);
    return kd_test_summary();
}
