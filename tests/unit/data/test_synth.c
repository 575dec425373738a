/* test_synth.c — the synthetic dataset generator: determinism from the seed, sane COCO
 * content (boxes inside images, non-contiguous category ids, sequential annotation ids,
 * COCO size classes present), and the same per-split summary that pycocotools computed
 * on this output when tests/unit/data/check_pycocotools.py wrote
 * tests/fixtures/data/synth_record.txt (CI has no pycocotools; this keeps the check).
 * Usage: test_synth FIXTURE_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_test.h"
#include "proto/coco_json.h"
#include "worker/data/synth.h"

static const char *g_dir;
static char g_tmp[256];

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static kd_status gen(const char *sub, uint64_t seed, int ann_only, int n_train, int n_val)
{
    kd_synth_cfg c;
    kd_synth_cfg_defaults(&c, ann_only);
    char out[400];
    snprintf(out, sizeof out, "%s/%s", g_tmp, sub);
    c.out_dir = out;
    c.seed = seed;
    c.n_train = n_train;
    c.n_val = n_val;
    c.progress = 0;
    if (!ann_only) c.size_min = 64, c.size_max = 128;
    kd_err e = {0};
    kd_status st = kd_synth_generate(&c, &e);
    if (st) fprintf(stderr, "generate: %s\n", e.msg);
    return st;
}

static void summary(const char *sub, const char *split, char *line, size_t n)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s/annotations/instances_%s.json", g_tmp, sub, split);
    kd_coco_file f;
    kd_err e = {0};
    line[0] = 0;
    if (kd_coco_file_load(p, &f, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return;
    }
    double area = 0, bbox = 0;
    size_t crowd = 0;
    for (size_t i = 0; i < f.n_anns; i++) {
        const kd_coco_ann *a = &f.anns[i];
        area += a->area;
        bbox += (((0.0 + a->bbox[0]) + a->bbox[1]) + a->bbox[2]) + a->bbox[3];
        crowd += (size_t)a->iscrowd;
    }
    snprintf(line, n, "split %s images %zu annotations %zu crowd %zu categories %zu area_sum %.2f bbox_sum %.2f", split,
             f.n_images, f.n_anns, crowd, f.n_cats, area, bbox);
    kd_coco_file_free(&f);
}

static void test_record(void)
{
    KD_REQUIRE(gen("img", 7, 0, 30, 4) == KD_OK);
    KD_REQUIRE(gen("ann", 7, 1, 300, 4) == KD_OK);
    char p[600], want[4][256], got[4][256];
    snprintf(p, sizeof p, "%s/synth_record.txt", g_dir);
    FILE *f = fopen(p, "r");
    KD_REQUIRE(f != NULL);
    int n = 0;
    char line[512];
    while (fgets(line, sizeof line, f) && n < 4) {
        if (line[0] == '#') continue;
        line[strcspn(line, "\n")] = 0;
        snprintf(want[n++], sizeof want[0], "%s", line);
    }
    fclose(f);
    KD_REQUIRE(n == 4);
    summary("img", "train", got[0], sizeof got[0]);
    summary("img", "val", got[1], sizeof got[1]);
    summary("ann", "train", got[2], sizeof got[2]);
    summary("ann", "val", got[3], sizeof got[3]);
    for (int i = 0; i < 4; i++) KD_EXPECT_MSG(!strcmp(want[i], got[i]), "\n  got  %s\n  want %s", got[i], want[i]);
}

static void test_determinism_and_content(void)
{
    KD_REQUIRE(gen("a", 5, 0, 12, 2) == KD_OK);
    KD_REQUIRE(gen("b", 5, 0, 12, 2) == KD_OK);
    KD_REQUIRE(gen("c", 6, 0, 12, 2) == KD_OK);
    const char *files[] = {"annotations/instances_train.json", "annotations/instances_val.json",
                           "train/000000000007.jpg", "val/000000000002.jpg"};
    for (int i = 0; i < 4; i++) {
        char pa[600], pb[600], pc[600];
        snprintf(pa, sizeof pa, "%s/a/%s", g_tmp, files[i]);
        snprintf(pb, sizeof pb, "%s/b/%s", g_tmp, files[i]);
        snprintf(pc, sizeof pc, "%s/c/%s", g_tmp, files[i]);
        size_t na, nb, nc;
        char *a = slurp(pa, &na), *b = slurp(pb, &nb), *c = slurp(pc, &nc);
        KD_REQUIRE(a && b && c);
        KD_EXPECT_MSG(na == nb && !memcmp(a, b, na), "%s differs for the same seed", files[i]);
        KD_EXPECT_MSG(na != nc || memcmp(a, c, na), "%s is the same for another seed", files[i]);
        free(a), free(b), free(c);
    }
    char p[600];
    snprintf(p, sizeof p, "%s/a/annotations/instances_train.json", g_tmp);
    kd_coco_file f;
    kd_err e = {0};
    KD_REQUIRE(kd_coco_file_load(p, &f, &e) == KD_OK);
    KD_EXPECT(f.n_images == 12 && f.n_cats == 8);
    static const int ids[8] = {1, 2, 3, 5, 6, 7, 9, 10};
    for (int k = 0; k < 8; k++) KD_EXPECT(f.cats[k].id == ids[k]);
    int sizes[3] = {0, 0, 0};
    for (size_t i = 0; i < f.n_anns; i++) {
        const kd_coco_ann *a = &f.anns[i];
        KD_EXPECT(a->id == (int64_t)i + 1);
        const kd_coco_image *im = &f.images[a->image_id - 1];
        KD_EXPECT(im->id == a->image_id);
        KD_EXPECT(a->bbox[0] >= 0 && a->bbox[1] >= 0 && a->bbox[2] >= 1 && a->bbox[3] >= 1);
        KD_EXPECT(a->bbox[0] + a->bbox[2] <= im->width && a->bbox[1] + a->bbox[3] <= im->height);
        KD_EXPECT(a->area > 0 && a->area <= a->bbox[2] * a->bbox[3]);
        sizes[a->area < 1024 ? 0 : a->area < 9216 ? 1 : 2]++;
    }
    for (size_t i = 0; i < f.n_images; i++) {
        int lo = f.images[i].width < f.images[i].height ? f.images[i].width : f.images[i].height;
        int hi = f.images[i].width + f.images[i].height - lo;
        KD_EXPECT(hi >= 64 && hi <= 128 && lo >= 32);
    }
    KD_EXPECT_MSG(sizes[0] > 0 && sizes[1] > 0, "small %d medium %d large %d", sizes[0], sizes[1], sizes[2]);
    kd_coco_file_free(&f);
}

static void test_options(void)
{
    kd_synth_cfg c;
    kd_err e = {0};
    kd_synth_cfg_defaults(&c, 0);
    KD_EXPECT(kd_synth_cfg_check(&c, &e) == KD_EINVAL); /* no --out */
    c.out_dir = g_tmp;
    KD_EXPECT(kd_synth_cfg_check(&c, &e) == KD_OK);
    c.n_categories = 30;
    KD_EXPECT(kd_synth_cfg_check(&c, &e) == KD_EINVAL);
    KD_EXPECT_STR_CONTAINS(e.msg, "--categories");
    c.n_categories = 8;
    c.size_min = 400, c.size_max = 300;
    KD_EXPECT(kd_synth_cfg_check(&c, &e) == KD_EINVAL);
    KD_EXPECT_STR_CONTAINS(e.msg, "--size-min");
    kd_synth_cfg_defaults(&c, 1);
    c.out_dir = g_tmp;
    c.n_categories = 80;
    KD_EXPECT(kd_synth_cfg_check(&c, &e) == KD_OK);
    KD_EXPECT(c.n_train == 118287 && c.n_val == 5000);
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    g_dir = argv[1];
    const char *td = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/kd_test_synth_XXXXXX", td && td[0] ? td : "/tmp");
    if (!mkdtemp(g_tmp)) return 2;
    KD_TEST_RUN(test_record);
    KD_TEST_RUN(test_determinism_and_content);
    KD_TEST_RUN(test_options);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", g_tmp);
    return kd_test_summary();
}
