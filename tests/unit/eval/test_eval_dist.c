/* test_eval_dist.c — kd_eval_dist_run under a real mpirun (tests/unit/eval/mpi_run.sh).
 *
 *   mpirun -np N test_eval_dist FIXTURE_DIR OUT_DIR
 *
 * Every rank keeps the detections of a fixture case whose image falls in its shard (image
 * index modulo N, list order kept); after the gather, rank 0 evaluates. Checks, on every
 * rank: the broadcast stats equal pycocotools' (expected.txt) bit for bit, whatever N is;
 * rank 0: the written results file re-evaluates to the same numbers; and an error found on
 * rank 0 (a detection of an unknown image, contributed by the last rank) comes back on every
 * rank with the same status and message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_test.h"
#include "worker/dist.h"
#include "worker/eval/dist_eval.h"

static const char *g_dir, *g_out;
static kd_dist g_d;
static const char *const CASE = "random_7";

static int expected_stats(const char *name, double stats[KD_EVAL_N_STATS])
{
    char path[1024], line[4096];
    snprintf(path, sizeof path, "%s/expected.txt", g_dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int on = 0, found = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!strncmp(line, "case ", 5)) on = !strcmp(line + 5, name);
        else if (on && !strncmp(line, "stats ", 6)) {
            char *p = line + 6, *end;
            for (int s = 0; s < KD_EVAL_N_STATS; s++, p = end) stats[s] = strtod(p, &end);
            found = 1;
        }
    }
    fclose(f);
    return found ? 0 : -1;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* this rank's detections: images whose index in sorted-id order is rank modulo size */
static size_t shard(const kd_coco_file *gt, const kd_coco_det *all, size_t n, kd_coco_det *mine)
{
    int64_t *ids = malloc(gt->n_images * sizeof *ids);
    for (size_t i = 0; i < gt->n_images; i++) ids[i] = gt->images[i].id;
    qsort(ids, gt->n_images, sizeof *ids, cmp_i64);
    size_t m = 0;
    for (size_t j = 0; j < n; j++) {
        int64_t *p = bsearch(&all[j].image_id, ids, gt->n_images, sizeof *ids, cmp_i64);
        if (p && (p - ids) % g_d.size == g_d.rank) mine[m++] = all[j];
    }
    free(ids);
    return m;
}

static void test_gather_evaluate(void)
{
    char gt_path[1024], dt_path[1024], res_path[1100];
    snprintf(gt_path, sizeof gt_path, "%s/%s.gt.json", g_dir, CASE);
    snprintf(dt_path, sizeof dt_path, "%s/%s.dt.json", g_dir, CASE);
    snprintf(res_path, sizeof res_path, "%s/dist_results_np%d.json", g_out, g_d.size);
    kd_err err = {0};
    kd_coco_file gt;
    kd_coco_det *all = NULL;
    size_t n = 0;
    KD_REQUIRE(kd_coco_file_load(gt_path, &gt, &err) == KD_OK);
    KD_REQUIRE(kd_coco_results_load(dt_path, &all, &n, &err) == KD_OK);
    double want[KD_EVAL_N_STATS];
    KD_REQUIRE(expected_stats(CASE, want) == 0);

    kd_coco_det *mine = malloc((n + 1) * sizeof *mine);
    size_t m = shard(&gt, all, n, mine);
    kd_eval_result r;
    kd_status st = kd_eval_dist_run(&g_d, g_d.rank == 0 ? &gt : NULL, mine, m, res_path, &r, &err);
    KD_EXPECT_MSG(st == KD_OK, "rank %d: %s", g_d.rank, err.msg);
    for (int s = 0; s < KD_EVAL_N_STATS && st == KD_OK; s++)
        KD_EXPECT_MSG(!memcmp(&r.stats[s], &want[s], 8), "rank %d: stats[%d] %.17g vs pycocotools %.17g",
                      g_d.rank, s, r.stats[s], want[s]);
    if (g_d.rank == 0 && st == KD_OK) {
        KD_EXPECT(r.n_cats == gt.n_cats && r.cat_ap != NULL);
        kd_coco_det *back = NULL;
        size_t nb = 0;
        KD_EXPECT(kd_coco_results_load(res_path, &back, &nb, &err) == KD_OK);
        KD_EXPECT(nb == n);
        kd_eval_result r2;
        KD_EXPECT(kd_eval_coco_run(&gt, back, nb, &r2, &err) == KD_OK);
        KD_EXPECT(!memcmp(r2.stats, want, sizeof want));
        kd_eval_result_free(&r2);
        free(back);
    } else if (st == KD_OK) {
        KD_EXPECT(r.cat_ap == NULL);
    }
    kd_eval_result_free(&r);

    /* an unknown image id from the last rank: every rank gets rank 0's error */
    if (g_d.rank == g_d.size - 1) mine[m++] = (kd_coco_det){999999, 1, {0, 0, 1, 1}, 0.5};
    memset(&err, 0, sizeof err);
    st = kd_eval_dist_run(&g_d, g_d.rank == 0 ? &gt : NULL, mine, m, NULL, &r, &err);
    KD_EXPECT_MSG(st == KD_ENOTFOUND, "rank %d: status %d", g_d.rank, (int)st);
    KD_EXPECT_STR_CONTAINS(err.msg, "image_id 999999 is not an image of the ground truth");

    /* a rank with nothing to contribute is fine */
    st = kd_eval_dist_run(&g_d, g_d.rank == 0 ? &gt : NULL, mine, g_d.rank == 0 ? 0 : m - (g_d.rank == g_d.size - 1),
                          NULL, &r, &err);
    KD_EXPECT_MSG(st == KD_OK, "rank %d: %s", g_d.rank, err.msg);
    kd_eval_result_free(&r);
    free(mine);
    free(all);
    kd_coco_file_free(&gt);
}

int main(int argc, char **argv)
{
    kd_err err = {0};
    if (kd_dist_init(&argc, &argv, &g_d, &err) != KD_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: mpirun -np N %s FIXTURE_DIR OUT_DIR\n", argv[0]);
        kd_dist_finalize(&g_d);
        return 2;
    }
    g_dir = argv[1];
    g_out = argv[2];
    KD_TEST_RUN(test_gather_evaluate);
    int rc = kd_test_summary();
    int all_rc = 0;
    MPI_Allreduce(&rc, &all_rc, 1, MPI_INT, MPI_MAX, g_d.comm);
    kd_dist_finalize(&g_d);
    return all_rc;
}
