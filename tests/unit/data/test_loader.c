/* test_loader.c — end to end on a small generated dataset: the batch layout (NCHW,
 * padding to 32 with zeros, metadata, boxes inside the resized image, crowd apart),
 * agreement with decode + transform done by hand, identical batches with 0 and 3 worker
 * threads, resume from a cursor, data_time, and bad files (missing, truncated) under both
 * policies without stopping. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_test.h"
#include "worker/data/image_decode.h"
#include "worker/data/loader.h"
#include "worker/data/synth.h"
#include "worker/data/transform.h"

static char g_tmp[256];
static kd_coco_index g_idx;

static void make_dataset(void)
{
    kd_synth_cfg s;
    kd_synth_cfg_defaults(&s, 0);
    s.out_dir = g_tmp;
    s.n_train = 23;
    s.n_val = 1;
    s.size_min = 64;
    s.size_max = 120;
    s.seed = 3;
    s.progress = 0;
    kd_err e = {0};
    KD_REQUIRE(kd_synth_generate(&s, &e) == KD_OK);
    char p[512];
    snprintf(p, sizeof p, "%s/annotations/instances_train.json", g_tmp);
    kd_coco_index_opts o;
    kd_coco_index_opts_defaults(&o);
    o.filter_empty_gt = 0; /* an image whose objects are all hidden has no annotation */
    KD_REQUIRE(kd_coco_index_load(p, "none", &o, &g_idx, NULL, &e) == KD_OK);
    KD_EXPECT(g_idx.n_images == 23);
}

static void cfg_for(kd_data_cfg *c, int workers)
{
    kd_data_cfg_defaults(c);
    snprintf(c->data_root, sizeof c->data_root, "%s", g_tmp);
    snprintf(c->img_prefix, sizeof c->img_prefix, "train/");
    c->scale_w = 160, c->scale_h = 96;
    c->batch_size = 3;
    c->num_workers = workers;
    c->seed = 11;
}

static int same_batch(const kd_batch *a, const kd_batch *b)
{
    if (a->n != b->n || a->H != b->H || a->W != b->W || a->n_gt != b->n_gt || a->n_ig != b->n_ig) return 0;
    if (memcmp(a->img, b->img, (size_t)a->n * 3 * a->H * a->W * sizeof(float))) return 0;
    if (memcmp(a->meta, b->meta, (size_t)a->n * sizeof *a->meta)) return 0;
    return !memcmp(a->gt_boxes, b->gt_boxes, a->n_gt * 16) && !memcmp(a->gt_labels, b->gt_labels, a->n_gt * 4);
}

static void copy_batch(kd_batch *dst, const kd_batch *src)
{
    size_t img = (size_t)src->n * 3 * src->H * src->W;
    *dst = *src;
    dst->img = malloc(img * sizeof(float) + 1);
    memcpy(dst->img, src->img, img * sizeof(float));
    dst->meta = malloc((size_t)(src->n + 1) * sizeof *src->meta);
    memcpy(dst->meta, src->meta, (size_t)src->n * sizeof *src->meta);
    dst->gt_boxes = malloc(src->n_gt * 16 + 1);
    memcpy(dst->gt_boxes, src->gt_boxes, src->n_gt * 16);
    dst->gt_labels = malloc(src->n_gt * 4 + 1);
    memcpy(dst->gt_labels, src->gt_labels, src->n_gt * 4);
    dst->ig_boxes = NULL, dst->ig_labels = NULL;
}

static void test_layout_and_threads(void)
{
    kd_data_cfg c0, c3;
    cfg_for(&c0, 0);
    cfg_for(&c3, 3);
    kd_loader *l0, *l3;
    kd_err e = {0};
    KD_REQUIRE(kd_loader_create(&c0, &g_idx, 1, 0, &l0, &e) == KD_OK);
    KD_REQUIRE(kd_loader_create(&c3, &g_idx, 1, 0, &l3, &e) == KD_OK);
    KD_EXPECT(kd_loader_num_batches(l0) == 8); /* ceil(23 / 3) */
    kd_loader_start(l0, (kd_sampler_cursor){1, 0});
    kd_loader_start(l3, (kd_sampler_cursor){1, 0});
    kd_batch saved[8];
    int nb = 0, flips = 0;
    kd_image_decoder dec;
    kd_image_decoder_init(&dec, &e);
    kd_image im = {0};
    kd_transform_ws ws = {0};
    const kd_batch *a, *b;
    double wait;
    while (kd_loader_next(l0, &a, &wait) == KD_OK) {
        KD_REQUIRE(kd_loader_next(l3, &b, &wait) == KD_OK);
        KD_EXPECT(wait >= 0);
        KD_EXPECT_MSG(same_batch(a, b), "batch %d differs between 0 and 3 workers", nb);
        KD_EXPECT(a->H % 32 == 0 && a->W % 32 == 0 && a->batch_index == (uint32_t)nb && a->epoch == 1);
        for (int k = 0; k < a->n; k++) {
            const kd_batch_image *m = &a->meta[k];
            const kd_coco_index_image *ii = &g_idx.images[m->index];
            KD_EXPECT(m->image_id == ii->id && m->ori_w == ii->width && m->ori_h == ii->height);
            KD_EXPECT(m->img_w <= a->W && m->img_h <= a->H && a->W - m->img_w >= 0);
            int lo = m->img_w < m->img_h ? m->img_w : m->img_h, hi = m->img_w < m->img_h ? m->img_h : m->img_w;
            KD_EXPECT(hi <= 160 && lo <= 96 && (hi >= 159 || lo >= 95));
            flips += m->flip;
            KD_EXPECT(m->n_gt + m->n_ig == ii->n_boxes && m->n_ig == ii->n_ignored);
            for (uint32_t j = 0; j < m->n_gt; j++) {
                const float *bx = a->gt_boxes + 4 * (m->gt_begin + j);
                KD_EXPECT(bx[0] >= 0 && bx[2] <= m->img_w && bx[1] >= 0 && bx[3] <= m->img_h && bx[0] <= bx[2]);
                KD_EXPECT(a->gt_labels[m->gt_begin + j] >= 0 && a->gt_labels[m->gt_begin + j] < 8);
            }
            /* the image equals decode + transform by hand; padding is zero */
            char p[600];
            snprintf(p, sizeof p, "%s/train/%s", g_tmp, kd_coco_index_file_name(&g_idx, m->index));
            KD_REQUIRE(kd_image_read(&dec, p, &im, &e) == KD_OK);
            size_t plane = (size_t)a->H * a->W;
            float *ref = calloc(plane * 3, sizeof(float));
            kd_transform_image(&ws, im.bgr, im.w, im.h, m->img_w, m->img_h, m->flip, 1, c0.mean, c0.std, ref,
                               (size_t)a->W, plane);
            KD_EXPECT(!memcmp(ref, a->img + plane * 3 * k, plane * 3 * sizeof(float)));
            free(ref);
        }
        if (nb < 8) copy_batch(&saved[nb], a);
        nb++;
    }
    KD_EXPECT(nb == 8);
    KD_EXPECT(flips > 0 && flips < 23);
    KD_EXPECT(kd_loader_next(l3, &b, NULL) == KD_ENOTFOUND);
    kd_loader_stats st = kd_loader_get_stats(l3);
    KD_EXPECT(st.batches == 8 && st.images == 23 && st.bad_images == 0 && st.wait_seconds >= 0);
    /* resume mid-epoch: a new loader started at the cursor gives the same batches */
    kd_loader *l4;
    KD_REQUIRE(kd_loader_create(&c3, &g_idx, 1, 0, &l4, &e) == KD_OK);
    kd_loader_start(l4, (kd_sampler_cursor){1, 5});
    for (int i = 5; i < 8; i++) {
        KD_REQUIRE(kd_loader_next(l4, &b, NULL) == KD_OK);
        KD_EXPECT_MSG(same_batch(&saved[i], b), "resumed batch %d differs", i);
    }
    KD_EXPECT(kd_loader_cursor(l4).batch == 8);
    /* restart to another epoch mid-way: flips and order change */
    kd_loader_start(l4, (kd_sampler_cursor){2, 0});
    KD_REQUIRE(kd_loader_next(l4, &b, NULL) == KD_OK);
    KD_EXPECT(b->epoch == 2 && b->batch_index == 0);
    kd_loader_destroy(l4);
    for (int i = 0; i < nb && i < 8; i++) kd_batch_free(&saved[i]);
    kd_image_free(&im);
    kd_image_decoder_free(&dec);
    kd_transform_ws_free(&ws);
    kd_loader_destroy(l0);
    kd_loader_destroy(l3);
}

static void test_bad_images(void)
{
    /* damage two files: one removed, one truncated */
    char p[600];
    snprintf(p, sizeof p, "%s/train/%s", g_tmp, kd_coco_index_file_name(&g_idx, 2));
    KD_REQUIRE(unlink(p) == 0);
    snprintf(p, sizeof p, "%s/train/%s", g_tmp, kd_coco_index_file_name(&g_idx, 5));
    KD_REQUIRE(truncate(p, 300) == 0);
    for (int policy = 0; policy <= 1; policy++) {
        kd_data_cfg c;
        cfg_for(&c, 2);
        c.on_bad_image = policy ? KD_BAD_IMAGE_REPLACE : KD_BAD_IMAGE_SKIP;
        c.shuffle = 0;
        kd_loader *l;
        kd_err e = {0};
        KD_REQUIRE(kd_loader_create(&c, &g_idx, 1, 0, &l, &e) == KD_OK);
        kd_loader_start(l, (kd_sampler_cursor){0, 0});
        const kd_batch *b;
        uint32_t images = 0, bad = 0, replaced = 0;
        while (kd_loader_next(l, &b, NULL) == KD_OK) {
            images += (uint32_t)b->n;
            bad += b->n_bad;
            for (int k = 0; k < b->n; k++)
                if (b->meta[k].replaced) {
                    replaced++;
                    KD_EXPECT(b->meta[k].n_gt == 0 && b->meta[k].n_ig == 0);
                    const float *pl = b->img + (size_t)3 * b->H * b->W * k;
                    int nz = 0;
                    for (size_t i = 0; i < (size_t)3 * b->H * b->W; i++) nz += pl[i] != 0.0f;
                    KD_EXPECT(nz == 0);
                }
        }
        KD_EXPECT(bad == 2);
        KD_EXPECT_MSG(images == (policy ? 23u : 21u), "policy %d: %u images", policy, images);
        KD_EXPECT(replaced == (policy ? 2u : 0u));
        kd_loader_destroy(l);
    }
}

int main(void)
{
    const char *td = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/kd_test_loader_XXXXXX", td && td[0] ? td : "/tmp");
    if (!mkdtemp(g_tmp)) return 2;
    KD_TEST_RUN(make_dataset);
    if (g_idx.n_images == 23) {
        KD_TEST_RUN(test_layout_and_threads);
        KD_TEST_RUN(test_bad_images);
    }
    kd_coco_index_free(&g_idx);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", g_tmp);
    return kd_test_summary();
}
