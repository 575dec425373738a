/* bench_eval.c — time crosskd's COCO evaluation phases on one GT/results pair.
 *
 *   bench_eval GT.json RESULTS.json [REPEATS]
 *
 * Loads both files once (timed), then runs kd_eval_coco_run REPEATS times (default 5)
 * and reports the best and the median wall time of the evaluation alone, one core.
 * Output: one line of "key=value" pairs (seconds), then the 12 summary lines, so a
 * script can both read the timings and check the numbers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "proto/coco_json.h"
#include "worker/eval/eval.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s GT.json RESULTS.json [REPEATS]\n", argv[0]);
        return 2;
    }
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    if (reps < 1 || reps > 1000) reps = 5;
    kd_err err = {0};
    kd_coco_file gt;
    double t0 = now_s();
    if (kd_coco_file_load(argv[1], &gt, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double t1 = now_s();
    kd_coco_det *dets;
    size_t n;
    if (kd_coco_results_load(argv[2], &dets, &n, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double t2 = now_s();
    double *times = malloc((size_t)reps * sizeof *times);
    kd_eval_result r = {0};
    for (int i = 0; i < reps; i++) {
        if (i) kd_eval_result_free(&r);
        double a = now_s();
        if (kd_eval_coco_run(&gt, dets, n, &r, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        times[i] = now_s() - a;
    }
    qsort(times, (size_t)reps, sizeof *times, cmp_double);
    printf("images=%zu gt=%zu dets=%zu load_gt_s=%.4f load_dt_s=%.4f eval_best_s=%.4f "
           "eval_median_s=%.4f repeats=%d\n",
           gt.n_images, gt.n_anns, n, t1 - t0, t2 - t1, times[0], times[reps / 2], reps);
    kd_eval_summary_print(stdout, &r);
    kd_eval_result_free(&r);
    free(times);
    free(dets);
    kd_coco_file_free(&gt);
    return 0;
}
