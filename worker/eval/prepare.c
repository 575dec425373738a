/* prepare.c — what pycocotools does before matching (COCO.loadRes and COCOeval._prepare):
 *
 *   - images: the sorted unique GT image ids (np.unique(p.imgIds)); categories: the sorted
 *     unique GT category ids;
 *   - detections: an image id outside the GT is an error (loadRes asserts), a category id
 *     outside the GT is dropped (getAnnIds filters by catIds), a non-finite score or box is
 *     an error (pycocotools would sort NaN scores after everything; we refuse them);
 *   - GT annotations of unknown images or categories are dropped (the parser already
 *     rejects them; this keeps the in-memory API as lenient as pycocotools);
 *   - grouping by (image, category) keeps GT in file order and sorts detections by
 *     descending score, ties in list order: exactly numpy's stable mergesort on -score;
 *   - sizes of the per-category buckets: the first 100 detections of each pair.
 * Grouping is a counting sort by image followed by a small sort inside each image, so the
 * work is O(n) plus O(n log n_per_image). All arrays are allocated once, here.
 */
#include "worker/eval/eval_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* category index, then descending score, then list position */
static int cmp_dt_key(const void *a, const void *b)
{
    const kd_eval_dt_key *x = a, *y = b;
    if (x->cat != y->cat) return x->cat < y->cat ? -1 : 1;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

typedef struct gt_key {
    int32_t cat;
    uint32_t pos;
} gt_key;

static int cmp_gt_key(const void *a, const void *b)
{
    const gt_key *x = a, *y = b;
    if (x->cat != y->cat) return x->cat < y->cat ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static ptrdiff_t find_i64(const int64_t *v, size_t n, int64_t key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < key) lo = mid + 1;
        else hi = mid;
    }
    return (lo < n && v[lo] == key) ? (ptrdiff_t)lo : -1;
}

static int32_t find_i32(const int32_t *v, size_t n, int32_t key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < key) lo = mid + 1;
        else hi = mid;
    }
    return (lo < n && v[lo] == key) ? (int32_t)lo : -1;
}

static size_t unique_sorted_i64(int64_t *v, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (w == 0 || v[i] != v[w - 1]) v[w++] = v[i];
    return w;
}

static size_t unique_sorted_i32(int32_t *v, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (w == 0 || v[i] != v[w - 1]) v[w++] = v[i];
    return w;
}

static int finite4(const double b[4])
{
    return isfinite(b[0]) && isfinite(b[1]) && isfinite(b[2]) && isfinite(b[3]);
}

void kd_eval_ctx_free(kd_eval_ctx *c)
{
    free(c->img_ids);
    free(c->cat_ids);
    free(c->gt_off);
    free(c->gt_idx);
    free(c->gt_cat);
    free(c->dt_off);
    free(c->dt_keys);
    free(c->bucket_off);
    free(c->b_score);
    free(c->b_tp);
    free(c->b_ig);
    free(c->b_rank);
    free(c->npig);
    memset(c, 0, sizeof *c);
}

/* Group the GT annotations by image, then category (file order within a pair). */
static void group_gt(kd_eval_ctx *c, const int32_t *ann_img)
{
    const kd_coco_file *gt = c->gt;
    size_t I = c->I;
    c->gt_off = kd_xcalloc(I + 1, sizeof *c->gt_off);
    size_t n_kept = 0;
    for (size_t j = 0; j < gt->n_anns; j++)
        if (ann_img[j] >= 0) {
            c->gt_off[ann_img[j] + 1]++;
            n_kept++;
        }
    for (size_t i = 0; i < I; i++) c->gt_off[i + 1] += c->gt_off[i];
    c->gt_idx = kd_xmalloc((n_kept ? n_kept : 1) * sizeof *c->gt_idx);
    c->gt_cat = kd_xmalloc((n_kept ? n_kept : 1) * sizeof *c->gt_cat);
    gt_key *keys = kd_xmalloc((n_kept ? n_kept : 1) * sizeof *keys);
    size_t *fill = kd_xmalloc((I + 1) * sizeof *fill);
    memcpy(fill, c->gt_off, (I + 1) * sizeof *fill);
    for (size_t j = 0; j < gt->n_anns; j++) {
        if (ann_img[j] < 0) continue;
        int32_t k = find_i32(c->cat_ids, c->K, gt->anns[j].category_id);
        keys[fill[ann_img[j]]++] = (gt_key){k, (uint32_t)j};
    }
    for (size_t i = 0; i < I; i++) {
        size_t lo = c->gt_off[i], n = c->gt_off[i + 1] - lo;
        if (n > 1) qsort(keys + lo, n, sizeof *keys, cmp_gt_key);
        for (size_t q = lo; q < lo + n; q++) {
            c->gt_idx[q] = keys[q].pos;
            c->gt_cat[q] = keys[q].cat;
        }
    }
    free(fill);
    free(keys);
}

kd_status kd_eval_ctx_build(kd_eval_ctx *c, const kd_coco_file *gt, const kd_coco_det *dets,
                            size_t n_dets, kd_err *err)
{
    memset(c, 0, sizeof *c);
    c->gt = gt;
    c->dets = dets;
    if (n_dets > UINT32_MAX)
        return kd_errf(err, KD_EINVAL, "%zu detections: at most %u are supported", n_dets,
                       (unsigned)UINT32_MAX);
    if (gt->n_anns > UINT32_MAX)
        return kd_errf(err, KD_EINVAL, "%zu annotations: at most %u are supported",
                       gt->n_anns, (unsigned)UINT32_MAX);

    /* sorted unique image and category ids */
    c->img_ids = kd_xmalloc((gt->n_images ? gt->n_images : 1) * sizeof *c->img_ids);
    for (size_t i = 0; i < gt->n_images; i++) c->img_ids[i] = gt->images[i].id;
    qsort(c->img_ids, gt->n_images, sizeof *c->img_ids, cmp_i64);
    c->I = unique_sorted_i64(c->img_ids, gt->n_images);
    c->cat_ids = kd_xmalloc((gt->n_cats ? gt->n_cats : 1) * sizeof *c->cat_ids);
    for (size_t k = 0; k < gt->n_cats; k++) c->cat_ids[k] = gt->cats[k].id;
    qsort(c->cat_ids, gt->n_cats, sizeof *c->cat_ids, cmp_i32);
    c->K = unique_sorted_i32(c->cat_ids, gt->n_cats);

    /* ground truth: image index per annotation (-1 = not evaluated) */
    int32_t *ann_img = kd_xmalloc((gt->n_anns ? gt->n_anns : 1) * sizeof *ann_img);
    for (size_t j = 0; j < gt->n_anns; j++) {
        const kd_coco_ann *a = &gt->anns[j];
        ptrdiff_t i = find_i64(c->img_ids, c->I, a->image_id);
        int32_t k = find_i32(c->cat_ids, c->K, a->category_id);
        ann_img[j] = (i >= 0 && k >= 0) ? (int32_t)i : -1;
        if (ann_img[j] >= 0 && (!finite4(a->bbox) || !isfinite(a->area))) {
            free(ann_img);
            return kd_errf(err, KD_EINVAL,
                           "ground truth annotation %zu (id %lld): bbox or area is not finite",
                           j, (long long)a->id);
        }
    }
    group_gt(c, ann_img);
    free(ann_img);

    /* detections: check, look up, count per image */
    int32_t *dt_img = kd_xmalloc((n_dets ? n_dets : 1) * sizeof *dt_img);
    c->dt_off = kd_xcalloc(c->I + 1, sizeof *c->dt_off);
    for (size_t j = 0; j < n_dets; j++) {
        const kd_coco_det *d = &dets[j];
        if (!isfinite(d->score) || !finite4(d->bbox)) {
            free(dt_img);
            return kd_errf(err, KD_EINVAL,
                           "detection %zu (image_id %lld, category_id %d): %s is not a finite "
                           "number",
                           j, (long long)d->image_id, (int)d->category_id,
                           isfinite(d->score) ? "bbox" : "score");
        }
        ptrdiff_t i = find_i64(c->img_ids, c->I, d->image_id);
        if (i < 0) {
            free(dt_img);
            return kd_errf(err, KD_ENOTFOUND,
                           "detection %zu: image_id %lld is not an image of the ground truth "
                           "(pycocotools: 'Results do not correspond to current coco set')",
                           j, (long long)d->image_id);
        }
        if (find_i32(c->cat_ids, c->K, d->category_id) < 0) {
            dt_img[j] = -1;
            c->n_dets_unknown_cat++;
            continue;
        }
        dt_img[j] = (int32_t)i;
        c->dt_off[i + 1]++;
    }
    for (size_t i = 0; i < c->I; i++) c->dt_off[i + 1] += c->dt_off[i];
    size_t n_known = c->dt_off[c->I];
    c->dt_keys = kd_xmalloc((n_known ? n_known : 1) * sizeof *c->dt_keys);
    size_t *fill = kd_xmalloc((c->I + 1) * sizeof *fill);
    memcpy(fill, c->dt_off, (c->I + 1) * sizeof *fill);
    for (size_t j = 0; j < n_dets; j++) {
        if (dt_img[j] < 0) continue;
        int32_t k = find_i32(c->cat_ids, c->K, dets[j].category_id);
        c->dt_keys[fill[dt_img[j]]++] = (kd_eval_dt_key){dets[j].score, (uint32_t)j, k};
    }
    free(fill);
    free(dt_img);

    /* per image: category, score descending, list position; bucket sizes per category */
    c->bucket_off = kd_xcalloc(c->K + 1, sizeof *c->bucket_off);
    for (size_t i = 0; i < c->I; i++) {
        size_t lo = c->dt_off[i], hi = c->dt_off[i + 1];
        if (hi - lo > 1) qsort(c->dt_keys + lo, hi - lo, sizeof *c->dt_keys, cmp_dt_key);
        for (size_t q = lo; q < hi;) {
            size_t e = q;
            while (e < hi && c->dt_keys[e].cat == c->dt_keys[q].cat) e++;
            size_t n = e - q, used = n < KD_EVAL_MAX_DETS ? n : KD_EVAL_MAX_DETS;
            c->bucket_off[c->dt_keys[q].cat + 1] += used;
            c->n_dets_used += used;
            c->n_dets_over_cap += n - used;
            q = e;
        }
    }
    for (size_t k = 0; k < c->K; k++) c->bucket_off[k + 1] += c->bucket_off[k];
    size_t nb = c->bucket_off[c->K] ? c->bucket_off[c->K] : 1;
    c->b_score = kd_xmalloc(nb * sizeof *c->b_score);
    c->b_tp = kd_xmalloc(nb * sizeof *c->b_tp);
    c->b_ig = kd_xmalloc(nb * sizeof *c->b_ig);
    c->b_rank = kd_xmalloc(nb * sizeof *c->b_rank);
    c->npig = kd_xcalloc((c->K ? c->K : 1) * KD_EVAL_A, sizeof *c->npig);
    return KD_OK;
}
