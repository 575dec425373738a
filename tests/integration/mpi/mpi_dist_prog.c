/* mpi_dist_prog MODE — run under `mpirun -np N --oversubscribe` by mpi_case.sh.
 *   collectives: ranks, broadcast, sum, gather, equality check
 *   gradsync:    bucketed gradient all-reduce (worker/grad_sync.h, MPI transport of the
 *                CPU backend) equals the mean, whatever the bucket size and the order in
 *                which backward reports finished ranges
 *   gradsync_cuda the same on the CUDA backend over NCCL (the trainer's GPU path); prints
 *                "skipped: ..." without one GPU per rank (nccl_case.sh makes that a skip)
 *   rankdeath:   rank 1 exits abruptly while rank 0 waits in a collective; the job must
 *                end (mpirun aborts everyone) instead of hanging
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker/dist.h"
#include "worker/grad_sync.h"

static int fails;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "rank check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); fails++; } } while (0)

static void collectives(kd_dist *d)
{
    CHECK(d->size >= 2);
    CHECK(d->local_rank >= 0 && d->local_rank < d->local_size);
    char buf[100] = {0};
    if (d->rank == 0) snprintf(buf, sizeof buf, "index from rank 0");
    kd_dist_bcast(d, buf, sizeof buf, 0);
    CHECK(strcmp(buf, "index from rank 0") == 0);
    double v[2] = {1.0, (double)d->rank};
    kd_dist_allreduce_sum(d, v, 2);
    CHECK(v[0] == d->size && v[1] == d->size * (d->size - 1) / 2.0);
    int mine = d->rank * 10, all[64] = {0};
    kd_dist_gather(d, &mine, sizeof mine, all, 0);
    if (d->rank == 0)
        for (int r = 0; r < d->size; r++) CHECK(all[r] == r * 10);
    CHECK(kd_dist_all_equal_u64(d, 42));
    CHECK(!kd_dist_all_equal_u64(d, (unsigned long long)d->rank));
}

/* The bucketed average through worker/grad_sync.h on `device`: MPI on the CPU backend, NCCL
 * on the CUDA backend (the trainer's GPU path: GPU from the local rank, NCCL bootstrapped
 * through MPI). Device buffers are filled and read only through the backend's copies. */
static void gradsync(kd_dist *d, const char *device)
{
    enum { N = 10007 };
    const kd_backend *be = NULL;
    kd_grad_comm *comm;
    kd_err err = {0};
    int bad_open = kd_rank_backend_open(device, d->local_rank, d->local_size, 1, &be, &err) != KD_OK;
    double any = bad_open;
    kd_dist_allreduce_sum(d, &any, 1);
    if (any > 0) { /* only the GPU case gets here: no GPU per rank */
        if (d->rank == 0) printf("skipped: %s\n", bad_open ? err.msg : "a rank has no usable GPU");
        if (be) be->close(be);
        CHECK(strcmp(device, "cpu") != 0);
        return;
    }
    CHECK(kd_grad_comm_open(d, be, 30, &comm, &err) == KD_OK);
    CHECK(strcmp(kd_grad_comm_name(comm), strcmp(device, "cpu") ? "nccl" : "mpi") == 0);
    static float h[N];
    float *g = be->alloc(be, N * sizeof(float));
    size_t bucket_bytes[] = {4, 4000, 40000, 1 << 20};
    for (size_t b = 0; b < sizeof bucket_bytes / sizeof bucket_bytes[0]; b++) {
        for (int i = 0; i < N; i++) h[i] = (float)((i % 97) * (d->rank + 1));
        be->copy_from_host(be, g, h, sizeof h);
        kd_grad_sync s;
        kd_grad_sync_init(&s, comm, g, N, bucket_bytes[b]);
        /* Backward reports finished ranges from the end towards the start. */
        for (size_t lo = N; lo > 0; lo = lo > 1500 ? lo - 1500 : 0) kd_grad_sync_ready(&s, lo);
        kd_grad_sync_ready(&s, 0);
        kd_grad_sync_finish(&s);
        be->copy_to_host(be, h, g, sizeof h); /* after the average (stream-ordered on a GPU) */
        double mean_factor = (d->size + 1) / 2.0; /* mean of 1..size */
        int bad = 0;
        for (int i = 0; i < N; i++) bad += h[i] != (float)((i % 97) * mean_factor);
        CHECK(bad == 0);
        kd_grad_sync_free(&s);
    }
    be->free(be, g);
    kd_grad_comm_close(comm);
    be->close(be);
}

static void rankdeath(kd_dist *d)
{
    if (d->rank == 1) {
        usleep(200 * 1000);
        _exit(3); /* no MPI_Finalize, no abort: a crash */
    }
    double v = 1;
    kd_dist_allreduce_sum(d, &v, 1); /* would wait forever without the launcher's abort */
    fprintf(stderr, "rank %d: allreduce returned after a peer died\n", d->rank);
}

int main(int argc, char **argv)
{
    kd_dist d;
    kd_err err = {0};
    if (kd_dist_init(&argc, &argv, &d, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "collectives")) collectives(&d);
    else if (!strcmp(mode, "gradsync")) gradsync(&d, "cpu");
    else if (!strcmp(mode, "gradsync_cuda")) gradsync(&d, "cuda");
    else if (!strcmp(mode, "rankdeath")) rankdeath(&d);
    else { fprintf(stderr, "unknown mode %s\n", mode); fails++; }
    double f = fails;
    kd_dist_allreduce_sum(&d, &f, 1);
    kd_dist_finalize(&d);
    if (d.rank == 0) printf("%s: %s\n", mode, f == 0 ? "ok" : "FAILED");
    return f == 0 ? 0 : 1;
}
