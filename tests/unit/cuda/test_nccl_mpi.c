/* test_nccl_mpi.c — kernels/cuda/nccl_comm.h across real processes, bootstrapped the way the
 * worker does it (reference/distributed.md §2.1): node-local rank from
 * MPI_Comm_split_type, the GPU from it (kd_cuda_select_device), the unique id made by rank 0
 * and broadcast as 128 MPI_BYTEs, then kd_nccl_init on every rank. Run by nccl_case.sh
 * under `mpirun -np N`.
 *
 * Modes:
 *   allreduce  every rank fills buckets with rank-dependent values; SUM and AVG all-reduces
 *              after work queued on the compute stream, ordered before a kernel that reads
 *              the result; values checked (small integers: SUM exact, AVG to rounding);
 *              clean finalize.
 *   watchdog   timeout 3 s; rank 1 never joins the collective that rank 0 starts: rank 0's
 *              wait must end the job with "collective operation timeout" (through the abort
 *              hook, MPI_Abort, as in the worker) instead of hanging.
 * Without one GPU per local rank every rank prints "skipped: ..." and exits 77 (the runner
 * turns that into meson's skip).
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/backend.h"
#include "kernels/cuda/kd_cuda.h"
#include "kernels/cuda/nccl_comm.h"

static void abort_hook(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

static int run_allreduce(const kd_backend *b, kd_nccl *nc, int rank, int size)
{
    const size_t n = 3 * 100003;
    float *h = malloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = (float)((rank + 1) * (int)(i % 7));
    float *d = b->alloc(b, n * sizeof *d);
    b->copy_from_host(b, d, h, n * sizeof *h);
    void *s = kd_cuda_stream(b);
    b->scal(b, n, 2.0f, d); /* queued work the all-reduce must wait for */
    size_t third = n / 3;
    kd_nccl_allreduce(nc, d, third, KD_NCCL_SUM, s, 0);
    kd_nccl_allreduce(nc, d + third, third, KD_NCCL_AVG, s, 1);
    kd_nccl_allreduce(nc, d + 2 * third, n - 2 * third, KD_NCCL_SUM, s, 2);
    kd_nccl_order_before(nc, s);
    b->scal(b, n, 0.5f, d); /* must see the reduced values */
    float *back = malloc(n * sizeof *back);
    b->copy_to_host(b, back, d, n * sizeof *back);
    kd_nccl_wait(nc);
    const float ranksum = (float)(size * (size + 1) / 2);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float v = (float)(i % 7);
        float want = i >= third && i < 2 * third ? v * ranksum / (float)size : v * ranksum;
        if (!(fabsf(back[i] - want) <= 1e-6f + 1e-5f * fabsf(want))) { /* AVG may round */
            if (bad < 3)
                fprintf(stderr, "rank %d: [%zu] = %g, want %g\n", rank, i, (double)back[i],
                        (double)want);
            bad++;
        }
    }
    b->free(b, d);
    free(h);
    free(back);
    kd_err err = {0};
    if (kd_nccl_finalize(nc, &err) != KD_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, err.msg);
        return 1;
    }
    if (bad) return 1;
    printf("rank %d: all-reduce ok\n", rank);
    return 0;
}

static int run_watchdog(const kd_backend *b, kd_nccl *nc, int rank)
{
    const size_t n = 1 << 16;
    float *d = b->alloc(b, n * sizeof *d);
    b->fill(b, d, n, 1.0f);
    if (rank == 1) { /* never joins: rank 0's collective must time out */
        sleep(60);
        return 1;
    }
    kd_nccl_allreduce(nc, d, n, KD_NCCL_SUM, kd_cuda_stream(b), 7);
    kd_nccl_wait(nc); /* must not return */
    fprintf(stderr, "rank %d: kd_nccl_wait returned for a collective a peer never joined\n", rank);
    return 1;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "allreduce";
    int provided = 0, rank = 0, size = 1, lrank = 0, lsize = 1;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &lrank);
    MPI_Comm_size(node, &lsize);
    kd_set_rank(rank);

    /* every rank must agree on skipping, or the others would wait in the bootstrap */
    const char *why = NULL;
    int ok = kd_cuda_device_count(&why) >= lsize, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all_ok) {
        if (rank == 0)
            printf("skipped: needs one CUDA device per local rank (%d ranks, %d devices%s%s)\n",
                   lsize, kd_cuda_device_count(NULL), why ? ": " : "", why ? why : "");
        MPI_Comm_free(&node);
        MPI_Finalize();
        return 77;
    }
    kd_set_abort_hook(abort_hook);
    kd_err err = {0};
    int dev = -1;
    const kd_backend *b = NULL;
    unsigned char id[KD_NCCL_ID_BYTES] = {0};
    kd_nccl *nc = NULL;
    if (kd_cuda_select_device(lrank, lsize, &dev, &err) != KD_OK ||
        kd_backend_open("cuda", 0, &b, &err) != KD_OK ||
        (rank == 0 && kd_nccl_unique_id(id, &err) != KD_OK)) {
        fprintf(stderr, "rank %d: %s\n", rank, err.msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Bcast(id, KD_NCCL_ID_BYTES, MPI_BYTE, 0, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    double timeout = strcmp(mode, "watchdog") == 0 ? 3.0 : 60.0;
    if (kd_nccl_init(id, rank, size, dev, timeout, &nc, &err) != KD_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, err.msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int rc = strcmp(mode, "watchdog") == 0 ? run_watchdog(b, nc, rank)
                                           : run_allreduce(b, nc, rank, size);
    b->close(b);
    MPI_Comm_free(&node);
    MPI_Finalize();
    return rc;
}
