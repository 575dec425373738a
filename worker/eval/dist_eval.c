/* dist_eval.c — gather, evaluate on rank 0, broadcast the answer (see dist_eval.h).
 *
 * Detections travel as raw kd_coco_det records (the ranks of one job run the same binary
 * on the same architecture) in an MPI contiguous type, so counts are in records and a job
 * can gather up to 2^31 - 1 of them. MPI is called directly (only mpi.h and the kd_dist
 * struct are used), and a failing MPI call is fatal with MPI's own error string.
 */
#include "worker/eval/dist_eval.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static void mpi_ok(int rc, const char *what)
{
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
    kd_fatalf(__FILE__, __LINE__, "MPI: %s failed: %s", what, msg);
}

/* image id ascending; equal ids keep their order (merge sort, stable) */
static void sort_by_image(kd_coco_det *v, kd_coco_det *tmp, size_t n)
{
    kd_coco_det *src = v, *dst = tmp;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t p = lo, q = mid, o = lo;
            while (p < mid && q < hi) dst[o++] = src[q].image_id < src[p].image_id ? src[q++] : src[p++];
            while (p < mid) dst[o++] = src[p++];
            while (q < hi) dst[o++] = src[q++];
        }
        kd_coco_det *sw = src;
        src = dst;
        dst = sw;
    }
    if (src != v) memcpy(v, src, n * sizeof *v);
}

typedef struct answer {
    int status;
    double stats[KD_EVAL_N_STATS];
    char msg[KD_ERR_MSG_BYTES];
} answer;

kd_status kd_eval_dist_run(const kd_dist *d, const kd_coco_file *gt, const kd_coco_det *local,
                           size_t n_local, const char *results_path, kd_eval_result *out,
                           kd_err *err)
{
    memset(out, 0, sizeof *out);
    const int root = 0, me = d->rank, size = d->size;
    MPI_Datatype rec;
    mpi_ok(MPI_Type_contiguous((int)sizeof(kd_coco_det), MPI_BYTE, &rec), "MPI_Type_contiguous");
    mpi_ok(MPI_Type_commit(&rec), "MPI_Type_commit");

    /* every rank learns every count, so all agree on whether the gather can happen */
    int my_n = n_local > (size_t)INT_MAX ? -1 : (int)n_local;
    int *counts = kd_xmalloc((size_t)size * sizeof *counts);
    int *displs = kd_xmalloc((size_t)size * sizeof *displs);
    mpi_ok(MPI_Allgather(&my_n, 1, MPI_INT, counts, 1, MPI_INT, d->comm), "MPI_Allgather");
    answer ans;
    memset(&ans, 0, sizeof ans);
    size_t n_all = 0;
    int too_many = 0;
    for (int r = 0; r < size; r++) {
        if (counts[r] < 0) too_many = 1;
        displs[r] = (int)(n_all <= (size_t)INT_MAX ? n_all : 0);
        n_all += counts[r] < 0 ? (size_t)INT_MAX + 1 : (size_t)counts[r];
    }
    if (n_all > (size_t)INT_MAX) too_many = 1;
    kd_coco_det *all = NULL;
    kd_err e = {0};
    if (too_many) {
        ans.status = kd_errf(&e, KD_EINVAL, "evaluation: more than %d detections in total", INT_MAX);
    } else {
        if (me == root) all = kd_xmalloc((n_all ? n_all : 1) * sizeof *all);
        mpi_ok(MPI_Gatherv(n_local ? local : NULL, my_n, rec, all, counts, displs, rec, root, d->comm),
               "MPI_Gatherv");
    }
    MPI_Type_free(&rec);

    if (me == root && !too_many) {
        kd_coco_det *tmp = kd_xmalloc((n_all ? n_all : 1) * sizeof *tmp);
        sort_by_image(all, tmp, n_all);
        free(tmp);
        if (!gt) ans.status = kd_errf(&e, KD_EINVAL, "evaluation: no ground truth on rank 0");
        else ans.status = kd_eval_coco_run(gt, all, n_all, out, &e);
        if (ans.status == KD_OK && results_path)
            ans.status = kd_coco_results_write(results_path, all, n_all, &e);
        if (ans.status == KD_OK) memcpy(ans.stats, out->stats, sizeof ans.stats);
        else kd_eval_result_free(out);
    }
    if (ans.status != KD_OK) memcpy(ans.msg, e.msg, sizeof ans.msg);
    free(all);
    free(counts);
    free(displs);
    mpi_ok(MPI_Bcast(&ans, (int)sizeof ans, MPI_BYTE, root, d->comm), "MPI_Bcast");
    if (ans.status != KD_OK) return kd_errf(err, (kd_status)ans.status, "%s", ans.msg);
    memcpy(out->stats, ans.stats, sizeof out->stats);
    return KD_OK;
}
