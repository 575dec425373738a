/* test_coco_index.c — the COCO JSON reader and the training index against hand-made
 * files in tests/fixtures/data/coco: MMDetection's filtering rules, contiguous labels of
 * non-contiguous ids, crowd boxes, serialization, the zstd cache, and every malformed case
 * listed in malformed.tsv (the error must name the element; nothing may crash).
 * Usage: test_coco_index FIXTURE_DIR (meson passes it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_test.h"
#include "proto/coco_json.h"
#include "worker/data/coco_index.h"

static const char *g_dir;
static char g_tmp[256];

static void fixture(char *out, size_t n, const char *name) { snprintf(out, n, "%s/coco/%s", g_dir, name); }

static void test_file_raw(void)
{
    char p[1024];
    fixture(p, sizeof p, "good.json");
    kd_coco_file f;
    kd_err e = {0};
    KD_REQUIRE(kd_coco_file_load(p, &f, &e) == KD_OK);
    KD_EXPECT(f.n_images == 5 && f.n_anns == 12 && f.n_cats == 3);
    KD_EXPECT(f.images[0].id == 40 && f.images[0].width == 640 && f.images[0].height == 480);
    KD_EXPECT(!strcmp(kd_coco_str(&f, f.images[3].file_name_off), "000009.jpg"));
    KD_EXPECT(f.anns[0].bbox[1] == 20.25 && f.anns[0].bbox[3] == 50.5 && f.anns[0].area == 4000.0);
    KD_EXPECT(f.anns[7].iscrowd == 1 && f.anns[11].iscrowd == 0); /* absent iscrowd -> 0 */
    KD_EXPECT(f.cats[0].id == 12 && !strcmp(kd_coco_str(&f, f.cats[0].name_off), "ring"));
    kd_coco_file_free(&f);
}

static void expect_box(const kd_coco_index *x, uint32_t k, float a, float b, float c, float d, int label, int ign)
{
    KD_EXPECT_MSG(x->boxes[4 * k] == a && x->boxes[4 * k + 1] == b && x->boxes[4 * k + 2] == c &&
                      x->boxes[4 * k + 3] == d,
                  "box %u = %g %g %g %g", k, x->boxes[4 * k], x->boxes[4 * k + 1], x->boxes[4 * k + 2],
                  x->boxes[4 * k + 3]);
    KD_EXPECT_MSG(x->labels[k] == label && x->ignore[k] == ign, "box %u label %d ignore %d", k, x->labels[k],
                  x->ignore[k]);
}

static void check_train_index(const kd_coco_index *x)
{
    KD_REQUIRE(x->n_images == 3 && x->n_boxes == 5 && x->n_classes == 3 && x->n_images_raw == 5);
    /* labels: ids sorted 3, 7, 12 -> 0, 1, 2 */
    KD_EXPECT(x->cat_ids[0] == 3 && x->cat_ids[1] == 7 && x->cat_ids[2] == 12);
    KD_EXPECT(!strcmp(x->strings + x->cat_name_offs[2], "ring"));
    /* image 40: boxes 1, 2 (partly outside, not clipped), crowd 8, 12 (negative corner) */
    KD_EXPECT(x->images[0].id == 40 && x->images[0].n_boxes == 4 && x->images[0].n_ignored == 1);
    KD_EXPECT(!strcmp(kd_coco_index_file_name(x, 0), "000040.jpg"));
    expect_box(x, 0, 10.5f, 20.25f, 110.5f, 70.75f, 1, 0);
    expect_box(x, 1, 600, 400, 680, 520, 2, 0);
    expect_box(x, 2, 200, 100, 350, 190, 0, 1);
    expect_box(x, 3, -10, -5, 20, 20, 0, 0);
    /* image 2 (no annotation) and 13 (20 px wide) are filtered; 9 keeps its crowd-only box;
     * 5 has a raw annotation (dropped, w < 1), so it stays with no box */
    KD_EXPECT(x->images[1].id == 9 && x->images[1].n_boxes == 1 && x->images[1].n_ignored == 1);
    expect_box(x, 4, 10, 10, 50, 50, 2, 1);
    KD_EXPECT(x->images[2].id == 5 && x->images[2].n_boxes == 0 && x->images[2].box_begin == 5);
}

static void test_index_train(void)
{
    char p[1024];
    fixture(p, sizeof p, "good.json");
    kd_coco_file f;
    kd_err e = {0};
    KD_REQUIRE(kd_coco_file_load(p, &f, &e) == KD_OK);
    kd_coco_index_opts o;
    kd_coco_index_opts_defaults(&o);
    kd_coco_index x;
    KD_REQUIRE(kd_coco_index_build(&f, &o, &x, &e) == KD_OK);
    check_train_index(&x);
    /* serialize -> bytes -> adopt (what MPI_Bcast does) */
    void *copy = malloc(x.blob_bytes);
    memcpy(copy, x.blob, x.blob_bytes);
    kd_coco_index y;
    KD_EXPECT(kd_coco_index_from_bytes(copy, x.blob_bytes, &y, &e) == KD_OK);
    check_train_index(&y);
    kd_coco_index_free(&y);
    /* damaged bytes are rejected, not trusted */
    for (size_t at = 8; at < x.blob_bytes; at += 37) {
        unsigned char *c2 = malloc(x.blob_bytes);
        memcpy(c2, x.blob, x.blob_bytes);
        c2[at] ^= 0xFF;
        kd_coco_index z;
        if (kd_coco_index_from_bytes(c2, x.blob_bytes, &z, &e) == KD_OK) {
            /* a flip inside a box coordinate or a name is undetectable by structure */
            KD_EXPECT(z.n_images <= 5);
            kd_coco_index_free(&z);
        }
    }
    kd_coco_index_free(&x);
    /* test mode keeps every image */
    o.test_mode = 1;
    KD_REQUIRE(kd_coco_index_build(&f, &o, &x, &e) == KD_OK);
    KD_EXPECT(x.n_images == 5 && x.n_boxes == 6);
    kd_coco_index_free(&x);
    /* no empty-gt filter, min_size 0: only the box filter applies */
    o.test_mode = 0;
    o.filter_empty_gt = 0;
    o.min_size = 0;
    KD_REQUIRE(kd_coco_index_build(&f, &o, &x, &e) == KD_OK);
    KD_EXPECT(x.n_images == 5);
    kd_coco_index_free(&x);
    kd_coco_file_free(&f);
}

static void test_cache(void)
{
    char src[1024], cache[300];
    fixture(src, sizeof src, "good.json");
    snprintf(cache, sizeof cache, "%s/good.kdidx", g_tmp);
    unlink(cache);
    kd_coco_index_opts o;
    kd_coco_index_opts_defaults(&o);
    kd_coco_index x;
    kd_err e = {0};
    int from_cache = -1;
    KD_REQUIRE(kd_coco_index_load(src, cache, &o, &x, &from_cache, &e) == KD_OK);
    KD_EXPECT(from_cache == 0);
    kd_coco_index_free(&x);
    KD_REQUIRE(kd_coco_index_load(src, cache, &o, &x, &from_cache, &e) == KD_OK);
    KD_EXPECT(from_cache == 1);
    check_train_index(&x);
    kd_coco_index_free(&x);
    /* other options -> the cache is stale and rebuilt */
    o.min_size = 0;
    KD_REQUIRE(kd_coco_index_cache_read(cache, src, &o, &x, &e) == KD_ECORRUPT);
    KD_EXPECT_STR_CONTAINS(e.msg, "stale");
    KD_REQUIRE(kd_coco_index_load(src, cache, &o, &x, &from_cache, &e) == KD_OK);
    KD_EXPECT(from_cache == 0 && x.n_images == 4);
    kd_coco_index_free(&x);
    /* a damaged cache is reported and not used */
    FILE *fp = fopen(cache, "r+b");
    KD_REQUIRE(fp != NULL);
    fseek(fp, -5, SEEK_END);
    fputc('X', fp);
    fclose(fp);
    KD_EXPECT(kd_coco_index_cache_read(cache, src, &o, &x, &e) == KD_ECORRUPT);
    KD_EXPECT(kd_coco_index_load(src, cache, &o, &x, &from_cache, &e) == KD_OK && from_cache == 0);
    kd_coco_index_free(&x);
    KD_EXPECT(kd_coco_index_load(src, "none", &o, &x, &from_cache, &e) == KD_OK && from_cache == 0);
    kd_coco_index_free(&x);
    unlink(cache);
}

static void test_malformed(void)
{
    char p[1024];
    fixture(p, sizeof p, "malformed.tsv");
    FILE *fp = fopen(p, "r");
    KD_REQUIRE(fp != NULL);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, fp)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        line[strcspn(line, "\n")] = 0;
        char *tab = strchr(line, '\t');
        KD_REQUIRE(tab != NULL);
        *tab = 0;
        char fp2[1100];
        fixture(fp2, sizeof fp2, line);
        kd_coco_file f;
        kd_err e = {0};
        kd_status st = kd_coco_file_load(fp2, &f, &e);
        KD_EXPECT_MSG(st == KD_EINVAL, "%s: status %s", line, kd_status_name(st));
        KD_EXPECT_STR_CONTAINS(e.msg, tab + 1);
        KD_EXPECT_STR_CONTAINS(e.msg, line); /* the file is named */
        KD_EXPECT(f.n_images == 0 && f.n_anns == 0 && f.images == NULL && f.anns == NULL);
        n++;
    }
    fclose(fp);
    KD_EXPECT(n >= 25);
    kd_coco_file f;
    kd_err e = {0};
    KD_EXPECT(kd_coco_file_load("no/such/file.json", &f, &e) == KD_ENOTFOUND);
    KD_EXPECT_STR_CONTAINS(e.msg, "no/such/file.json");
}

/* Every prefix and many random byte mutations of a good file: an error or a success,
 * never a crash (run under the sanitizer build too). */
static void test_mutations(void)
{
    char p[1024];
    fixture(p, sizeof p, "good.json");
    FILE *fp = fopen(p, "rb");
    KD_REQUIRE(fp != NULL);
    char text[8192];
    size_t n = fread(text, 1, sizeof text, fp);
    fclose(fp);
    KD_REQUIRE(n > 100 && n < sizeof text);
    kd_coco_file f;
    kd_err e = {0};
    KD_REQUIRE(kd_coco_file_parse("good.json", text, n, &f, &e) == KD_OK);
    KD_EXPECT(f.n_anns == 12);
    kd_coco_file_free(&f);
    int fails = 0;
    for (size_t cut = 0; cut + 2 < n; cut++) { /* the last bytes are "}\n" */
        kd_status st = kd_coco_file_parse("cut.json", text, cut, &f, &e);
        fails += st != KD_OK;
        if (st == KD_OK) kd_coco_file_free(&f);
        else KD_EXPECT(f.images == NULL && f.anns == NULL && f.cats == NULL && f.strings == NULL);
    }
    KD_EXPECT(fails == (int)(n - 2));
    static const char junk[] = "{}[]\",:0-.eE\"\\\x01\xff tfn9";
    uint32_t st32 = 99;
    char m[8192];
    for (int it = 0; it < 20000; it++) {
        memcpy(m, text, n);
        int k = 1 + it % 4;
        for (int q = 0; q < k; q++) {
            st32 = st32 * 1664525u + 1013904223u;
            size_t at = (st32 >> 8) % n;
            st32 = st32 * 1664525u + 1013904223u;
            m[at] = junk[(st32 >> 8) % (sizeof junk - 1)];
        }
        if (kd_coco_file_parse("mut.json", m, n, &f, &e) == KD_OK) kd_coco_file_free(&f);
        else KD_EXPECT(e.msg[0] != 0 && f.images == NULL);
    }
}

static void test_results(void)
{
    char p[1024], w[300];
    fixture(p, sizeof p, "results_ok.json");
    kd_coco_det *d;
    size_t n;
    kd_err e = {0};
    KD_REQUIRE(kd_coco_results_load(p, &d, &n, &e) == KD_OK);
    KD_REQUIRE(n == 2);
    KD_EXPECT(d[1].image_id == 2 && d[1].category_id == 12 && d[1].bbox[0] == 10.0 && d[1].bbox[1] == 0.25);
    KD_EXPECT(d[1].score == 0.123456789012345678);
    snprintf(w, sizeof w, "%s/res.json", g_tmp);
    KD_EXPECT(kd_coco_results_write(w, d, n, &e) == KD_OK);
    kd_coco_det *d2;
    size_t n2;
    KD_REQUIRE(kd_coco_results_load(w, &d2, &n2, &e) == KD_OK);
    KD_EXPECT(n2 == n && !memcmp(d, d2, n * sizeof *d));
    free(d2);
    d[0].score = 1.0 / 0.0 - 1.0 / 0.0;
    KD_EXPECT(kd_coco_results_write(w, d, n, &e) == KD_EINVAL);
    free(d);
    unlink(w);
    const char *bad[][2] = {{"results_bad_missing_score.json", "results[1]: missing field 'score'"},
                            {"results_bad_image_id.json", "results[1]: field 'image_id' must be an integer"},
                            {"results_bad_inf.json", "results[0]: field 'score' must be a finite number"}};
    for (int i = 0; i < 3; i++) {
        fixture(p, sizeof p, bad[i][0]);
        KD_EXPECT(kd_coco_results_load(p, &d, &n, &e) == KD_EINVAL);
        KD_EXPECT_STR_CONTAINS(e.msg, bad[i][1]);
        KD_EXPECT(d == NULL && n == 0);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    const char *td = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/kd_test_coco_XXXXXX", td && td[0] ? td : "/tmp");
    if (!mkdtemp(g_tmp)) return 2;
    KD_TEST_RUN(test_file_raw);
    KD_TEST_RUN(test_index_train);
    KD_TEST_RUN(test_cache);
    KD_TEST_RUN(test_malformed);
    KD_TEST_RUN(test_mutations);
    KD_TEST_RUN(test_results);
    rmdir(g_tmp);
    return kd_test_summary();
}
