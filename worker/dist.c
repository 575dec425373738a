/* dist.c — see dist.h. */
#include "worker/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/log.h"

static const kd_dist *g_dist;

const char *kd_mpi_errstr(int code)
{
    static char buf[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) snprintf(buf, sizeof buf, "MPI error %d", code);
    return buf;
}

static void abort_hook(int code)
{
    int up = 0, down = 0;
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    if (up && !down) MPI_Abort(g_dist ? g_dist->comm : MPI_COMM_WORLD, code);
}

kd_status kd_dist_init(int *argc, char ***argv, kd_dist *d, kd_err *err)
{
    memset(d, 0, sizeof *d);
    int provided = 0;
    KD_CHECK_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    if (provided < MPI_THREAD_FUNNELED) {
        MPI_Finalize();
        return kd_errf(err, KD_EUNSUPPORTED, "the MPI library provides thread level %d, crosskd needs MPI_THREAD_FUNNELED", provided);
    }
    d->comm = MPI_COMM_WORLD;
    g_dist = d;
    kd_set_abort_hook(abort_hook);
    KD_CHECK_MPI(MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN));
    KD_CHECK_MPI(MPI_Comm_rank(d->comm, &d->rank));
    KD_CHECK_MPI(MPI_Comm_size(d->comm, &d->size));
    KD_CHECK_MPI(MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &d->node_comm));
    KD_CHECK_MPI(MPI_Comm_rank(d->node_comm, &d->local_rank));
    KD_CHECK_MPI(MPI_Comm_size(d->node_comm, &d->local_size));
    gethostname(d->host, sizeof d->host - 1);
    kd_set_rank(d->rank);
    /* A job script that runs the worker without mpirun/srun inside a multi-task Slurm
     * allocation would silently train single-rank jobs: refuse it. */
    const char *ntasks = getenv("SLURM_NTASKS");
    if (ntasks && getenv("SLURM_JOB_ID") && atoi(ntasks) != d->size && !getenv("CROSSKD_ALLOW_WORLD_MISMATCH")) {
        kd_errf(err, KD_EINVAL,
                "MPI world size is %d but Slurm allocated %s tasks (SLURM_NTASKS): launch with "
                "'srun --mpi=pmix' or 'mpirun' (set CROSSKD_ALLOW_WORLD_MISMATCH=1 to override)",
                d->size, ntasks);
        MPI_Finalize();
        return KD_EINVAL;
    }
    const char *env = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    if (!env) env = getenv("SLURM_LOCALID");
    if (env && atoi(env) != d->local_rank)
        KD_WARN("local rank %d from the node communicator differs from the launcher's %s", d->local_rank, env);
    return KD_OK;
}

void kd_dist_finalize(kd_dist *d)
{
    int down = 0;
    MPI_Finalized(&down);
    if (down) return;
    if (d->node_comm != MPI_COMM_NULL && d->node_comm) MPI_Comm_free(&d->node_comm);
    MPI_Finalize();
    g_dist = NULL;
}

void kd_dist_bcast(const kd_dist *d, void *buf, size_t bytes, int root)
{
    /* MPI counts are int: send large buffers in 1 GiB pieces. */
    for (size_t off = 0; off < bytes; off += (size_t)1 << 30) {
        size_t n = bytes - off < ((size_t)1 << 30) ? bytes - off : (size_t)1 << 30;
        KD_CHECK_MPI(MPI_Bcast((char *)buf + off, (int)n, MPI_BYTE, root, d->comm));
    }
}

void kd_dist_barrier(const kd_dist *d) { KD_CHECK_MPI(MPI_Barrier(d->comm)); }

void kd_dist_allreduce_sum(const kd_dist *d, double *vals, int n)
{
    if (d->size > 1) KD_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, vals, n, MPI_DOUBLE, MPI_SUM, d->comm));
}

void kd_dist_gather(const kd_dist *d, const void *in, size_t bytes, void *out, int root)
{
    KD_CHECK(bytes < ((size_t)1 << 31));
    KD_CHECK_MPI(MPI_Gather(in, (int)bytes, MPI_BYTE, out, (int)bytes, MPI_BYTE, root, d->comm));
}

int kd_dist_all_equal_u64(const kd_dist *d, unsigned long long v)
{
    unsigned long long lo = v, hi = v;
    KD_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, d->comm));
    KD_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, d->comm));
    return lo == hi;
}
