/* test_eval_unit.c — the evaluator's building blocks and in-memory API, on hand-made cases
 * whose answers follow from coco.md §2 by hand (the pycocotools comparison is in
 * test_eval_fixtures.c): thresholds, IoU, matching rules, -1 handling, caps, errors.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_test.h"
#include "worker/eval/eval.h"

/* A small GT built in memory: images 1..n_img, categories given, annotations appended. */
typedef struct gt_builder {
    kd_coco_file f;
    kd_coco_image img[16];
    kd_coco_ann ann[64];
    kd_coco_category cat[8];
} gt_builder;

static void gt_init(gt_builder *b, int n_img, const int32_t *cats, int n_cat)
{
    memset(b, 0, sizeof *b);
    for (int i = 0; i < n_img; i++) b->img[i] = (kd_coco_image){i + 1, 640, 480, 0};
    for (int k = 0; k < n_cat; k++) b->cat[k] = (kd_coco_category){cats[k], 0};
    b->f.images = b->img;
    b->f.n_images = (size_t)n_img;
    b->f.cats = b->cat;
    b->f.n_cats = (size_t)n_cat;
    b->f.anns = b->ann;
}

static void gt_add(gt_builder *b, int64_t img, int32_t cat, double x, double y, double w, double h,
                   double area, int crowd)
{
    size_t n = b->f.n_anns++;
    b->ann[n] = (kd_coco_ann){(int64_t)n + 1, img, cat, crowd, {x, y, w, h}, area};
}

static kd_coco_det det(int64_t img, int32_t cat, double x, double y, double w, double h, double s)
{
    return (kd_coco_det){img, cat, {x, y, w, h}, s};
}

static void test_thresholds(void)
{
    double iou[KD_EVAL_T], rec[KD_EVAL_R];
    kd_eval_iou_thresholds(iou);
    kd_eval_recall_thresholds(rec);
    KD_EXPECT(iou[0] == 0.5 && iou[5] == 0.75 && iou[9] == 0.95);
    KD_EXPECT(iou[8] == 0.8999999999999999 && iou[8] != 0.9);
    KD_EXPECT(rec[0] == 0.0 && rec[100] == 1.0);
    KD_EXPECT(rec[35] == 0.35000000000000003 && rec[35] > 0.35);
    KD_EXPECT(rec[70] == 0.7000000000000001);
    KD_EXPECT(rec[50] == 0.5);
}

static void test_box_iou(void)
{
    double g[4] = {0, 0, 10, 10};
    double d1[4] = {0, 0, 10, 5}, d2[4] = {5, 0, 10, 10}, d3[4] = {10, 0, 5, 5}, d4[4] = {2, 2, 4, 4};
    KD_EXPECT(kd_eval_box_iou(d1, g, 0) == 0.5);
    KD_EXPECT(kd_eval_box_iou(d2, g, 0) == 50.0 / 150.0);
    KD_EXPECT(kd_eval_box_iou(d3, g, 0) == 0.0);       /* touching edges: iw == 0 */
    KD_EXPECT(kd_eval_box_iou(d4, g, 1) == 1.0);       /* crowd: inter / detection area */
    KD_EXPECT(kd_eval_box_iou(d2, g, 1) == 0.5);
    double neg[4] = {5, 5, -3, 4};
    KD_EXPECT(kd_eval_box_iou(neg, g, 0) == 0.0);
}

static void test_pairwise(void)
{
    double x[300];
    for (int i = 0; i < 300; i++) x[i] = 1.0;
    KD_EXPECT(kd_eval_mean_pairwise(x, 300) == 1.0);
    KD_EXPECT(kd_eval_mean_pairwise(x, 0) == -1.0);
    KD_EXPECT(kd_eval_sum_pairwise(x, 7) == 7.0);
}

/* One GT, one exact detection: AP is 1/(1+eps) at every point = 0.9999999999999998. */
static void test_single_perfect(void)
{
    gt_builder b;
    int32_t cats[] = {3};
    gt_init(&b, 1, cats, 1);
    gt_add(&b, 1, 3, 10, 10, 20, 20, 400, 0);
    kd_coco_det d[] = {det(1, 3, 10, 10, 20, 20, 0.9)};
    kd_eval_result r;
    kd_err err = {0};
    KD_REQUIRE(kd_eval_coco_run(&b.f, d, 1, &r, &err) == KD_OK);
    KD_EXPECT_NEAR(r.stats[0], 1.0 / (1.0 + DBL_EPSILON), 1e-15, 0);
    KD_EXPECT(r.stats[0] < 1.0);                     /* the eps in tp / (tp + fp + eps) */
    KD_EXPECT(r.stats[3] == r.stats[0]);             /* small: area 400 */
    KD_EXPECT(r.stats[4] == -1.0 && r.stats[5] == -1.0);
    KD_EXPECT(r.stats[6] == 1.0 && r.stats[8] == 1.0);
    KD_EXPECT(r.n_cats == 1 && r.cat_ids[0] == 3 && r.cat_ap[0] == r.stats[0]);
    kd_eval_result_free(&r);
}

/* No detections at all: categories with GT score 0, the others -1. */
static void test_no_detections(void)
{
    gt_builder b;
    int32_t cats[] = {1, 2};
    gt_init(&b, 2, cats, 2);
    gt_add(&b, 1, 1, 0, 0, 50, 50, 2500, 0);
    kd_eval_result r;
    kd_err err = {0};
    KD_REQUIRE(kd_eval_coco_run(&b.f, NULL, 0, &r, &err) == KD_OK);
    KD_EXPECT(r.stats[0] == 0.0 && r.stats[8] == 0.0);
    KD_EXPECT(r.stats[3] == -1.0);                   /* no small GT */
    KD_EXPECT(r.cat_ap[0] == 0.0 && r.cat_ap[1] == -1.0);
    kd_eval_result_free(&r);
}

/* Crowd: absorbs several detections, which are then neither TP nor FP. */
static void test_crowd(void)
{
    gt_builder b;
    int32_t cats[] = {1};
    gt_init(&b, 1, cats, 1);
    gt_add(&b, 1, 1, 0, 0, 100, 100, 10000, 1);
    gt_add(&b, 1, 1, 200, 200, 20, 20, 400, 0);
    kd_coco_det d[] = {det(1, 1, 10, 10, 20, 20, 0.9), det(1, 1, 50, 50, 20, 20, 0.8),
                       det(1, 1, 200, 200, 20, 20, 0.7)};
    kd_eval_result r;
    kd_err err = {0};
    KD_REQUIRE(kd_eval_coco_run(&b.f, d, 3, &r, &err) == KD_OK);
    /* the two crowd detections (ranked first) are ignored: tp = 1, fp = 0 at the end, so
     * precision 1/(1+eps) after the envelope, at every recall threshold */
    KD_EXPECT_NEAR(r.stats[0], 1.0 / (1.0 + DBL_EPSILON), 1e-15, 0);
    KD_EXPECT(r.stats[0] < 1.0);
    KD_EXPECT(r.stats[8] == 1.0);
    kd_eval_result_free(&r);
}

/* More than 100 detections in one (image, category): only the 100 best count. */
static void test_cap_and_unknown(void)
{
    gt_builder b;
    int32_t cats[] = {1};
    gt_init(&b, 1, cats, 1);
    gt_add(&b, 1, 1, 0, 0, 10, 10, 100, 0);
    kd_coco_det d[130];
    for (int i = 0; i < 120; i++) d[i] = det(1, 1, 300, 300, 10, 10, 0.9);  /* FPs, tied */
    d[120] = det(1, 1, 0, 0, 10, 10, 0.9);   /* TP tied with the FPs, last in list: dropped */
    for (int i = 121; i < 130; i++) d[i] = det(1, 77, 0, 0, 10, 10, 0.99); /* unknown cat */
    kd_eval_result r;
    kd_err err = {0};
    KD_REQUIRE(kd_eval_coco_run(&b.f, d, 130, &r, &err) == KD_OK);
    KD_EXPECT(r.stats[0] == 0.0 && r.stats[8] == 0.0);
    KD_EXPECT(r.n_dets_over_cap == 21 && r.n_dets_unknown_cat == 9 && r.n_dets_used == 100);
    kd_eval_result_free(&r);
    d[120].score = 0.95;                      /* now first: AP 1/(1+eps) at all thresholds */
    KD_REQUIRE(kd_eval_coco_run(&b.f, d, 130, &r, &err) == KD_OK);
    KD_EXPECT_NEAR(r.stats[0], 1.0 / (1.0 + DBL_EPSILON), 1e-15, 0);
    kd_eval_result_free(&r);
}

static void test_errors(void)
{
    gt_builder b;
    int32_t cats[] = {1};
    gt_init(&b, 2, cats, 1);
    gt_add(&b, 1, 1, 0, 0, 10, 10, 100, 0);
    kd_eval_result r;
    kd_err err = {0};
    kd_coco_det d[] = {det(1, 1, 0, 0, 10, 10, 0.5), det(7, 1, 0, 0, 10, 10, 0.5)};
    KD_EXPECT(kd_eval_coco_run(&b.f, d, 2, &r, &err) == KD_ENOTFOUND);
    KD_EXPECT_STR_CONTAINS(err.msg, "detection 1: image_id 7 is not an image of the ground truth");
    d[1] = det(2, 1, 0, 0, 10, 10, NAN);
    KD_EXPECT(kd_eval_coco_run(&b.f, d, 2, &r, &err) == KD_EINVAL);
    KD_EXPECT_STR_CONTAINS(err.msg, "score is not a finite number");
    d[1] = det(2, 1, 0, INFINITY, 10, 10, 0.1);
    KD_EXPECT(kd_eval_coco_run(&b.f, d, 2, &r, &err) == KD_EINVAL);
    KD_EXPECT_STR_CONTAINS(err.msg, "bbox is not a finite number");
    /* negative sizes are legal input, handled as pycocotools: IoU 0, area w*h */
    d[1] = det(2, 1, 0, 0, -10, -10, 0.9);
    KD_REQUIRE(kd_eval_coco_run(&b.f, d, 2, &r, &err) == KD_OK);
    /* ranked: the negative box (score .9, false positive), then the true positive:
     * precision 0.5 at every recall threshold */
    KD_EXPECT(r.stats[1] == 0.5);
    kd_eval_result_free(&r);
}

/* A GT file with no images or no categories evaluates to -1 everywhere. */
static void test_empty_gt(void)
{
    gt_builder b;
    gt_init(&b, 0, NULL, 0);
    kd_eval_result r;
    kd_err err = {0};
    KD_REQUIRE(kd_eval_coco_run(&b.f, NULL, 0, &r, &err) == KD_OK);
    for (int s = 0; s < KD_EVAL_N_STATS; s++) KD_EXPECT(r.stats[s] == -1.0);
    KD_EXPECT(r.n_cats == 0);
    kd_eval_result_free(&r);
}

/* MMDetection's conversion: w = (double)x2 - (double)x1, not the float32 difference. */
static void test_det_from_xyxy(void)
{
    const float box[4] = {0.1f, 10.3f, 200.7f, 33.3f};
    kd_coco_det d = kd_eval_det_from_xyxy(42, 18, box, 0.123f);
    KD_EXPECT(d.image_id == 42 && d.category_id == 18);
    KD_EXPECT(d.bbox[0] == (double)0.1f && d.bbox[1] == (double)10.3f);
    KD_EXPECT(d.bbox[2] == (double)200.7f - (double)0.1f);
    KD_EXPECT(d.bbox[2] != (double)(200.7f - 0.1f));   /* the float32 difference rounds */
    KD_EXPECT(d.bbox[3] == (double)33.3f - (double)10.3f);
    KD_EXPECT(d.score == (double)0.123f);
}

int main(void)
{
    KD_TEST_RUN(test_thresholds);
    KD_TEST_RUN(test_box_iou);
    KD_TEST_RUN(test_pairwise);
    KD_TEST_RUN(test_single_perfect);
    KD_TEST_RUN(test_no_detections);
    KD_TEST_RUN(test_crowd);
    KD_TEST_RUN(test_cap_and_unknown);
    KD_TEST_RUN(test_errors);
    KD_TEST_RUN(test_empty_gt);
    KD_TEST_RUN(test_det_from_xyxy);
    return kd_test_summary();
}
