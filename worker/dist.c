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

/* ---- bucketed gradient all-reduce ------------------------------------------------------- */

static void bucket_range(const kd_grad_sync *s, int b, size_t *lo, size_t *n)
{
    size_t hi = s->n_elems - (size_t)b * s->bucket_elems;
    *lo = hi > s->bucket_elems ? hi - s->bucket_elems : 0;
    *n = hi - *lo;
}

void kd_grad_sync_init(kd_grad_sync *s, const kd_dist *d, float *grad, size_t n_elems, size_t bucket_bytes)
{
    memset(s, 0, sizeof *s);
    s->d = d;
    s->grad = grad;
    s->n_elems = n_elems;
    s->bucket_elems = bucket_bytes / sizeof(float);
    if (s->bucket_elems == 0) s->bucket_elems = 1;
    if (s->bucket_elems > ((size_t)1 << 30)) s->bucket_elems = (size_t)1 << 30;
    s->n_buckets = (int)((n_elems + s->bucket_elems - 1) / s->bucket_elems);
    s->reqs = kd_xcalloc((size_t)s->n_buckets + 1, sizeof *s->reqs);
}

void kd_grad_sync_free(kd_grad_sync *s)
{
    free(s->reqs);
    s->reqs = NULL;
}

static void start_bucket(kd_grad_sync *s, int b)
{
    size_t lo, n;
    bucket_range(s, b, &lo, &n);
    KD_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, s->grad + lo, (int)n, MPI_FLOAT, MPI_SUM, s->d->comm, &s->reqs[b]));
}

void kd_grad_sync_ready(kd_grad_sync *s, size_t lo)
{
    if (s->d->size == 1) return;
    while (s->next < s->n_buckets) {
        size_t blo, n;
        bucket_range(s, s->next, &blo, &n);
        if (blo < lo) break;
        start_bucket(s, s->next++);
        if (lo > 0) s->early++;
    }
    if (s->next > 0) {
        int done = 0;
        KD_CHECK_MPI(MPI_Testall(s->next, s->reqs, &done, MPI_STATUSES_IGNORE));
    }
}

void kd_grad_sync_finish(kd_grad_sync *s)
{
    s->wait_seconds = 0;
    if (s->d->size > 1) {
        while (s->next < s->n_buckets) start_bucket(s, s->next++);
        double t0 = MPI_Wtime();
        KD_CHECK_MPI(MPI_Waitall(s->n_buckets, s->reqs, MPI_STATUSES_IGNORE));
        s->wait_seconds = MPI_Wtime() - t0;
        float scale = 1.0f / (float)s->d->size;
        for (size_t i = 0; i < s->n_elems; i++) s->grad[i] *= scale;
    }
    s->next = 0;
    s->early_last = s->early;
    s->early = 0;
}
