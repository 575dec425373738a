/* grad_sync.c — the rank's device and the bucketed gradient average over MPI or NCCL (see
 * grad_sync.h for the contract).
 *
 * Transport per backend: the CPU backend's buffers are host memory, so MPI reduces them in
 * place; the CUDA backend's are device memory, which only NCCL touches (nothing here reads
 * or writes them on the host). The NCCL path exists in a CUDA build only (KD_HAVE_CUDA);
 * there the bootstrap is: rank 0 makes the unique id, one MPI_Bcast carries it with rank
 * 0's status (so a failure there reaches every rank instead of leaving them waiting), and
 * every rank joins on the device its backend runs on. A world of one rank opens no
 * transport at all.
 *
 * MPI sums each bucket (MPI_Iallreduce, started in bucket order) and the average is a scale
 * by 1/world_size through the backend, as before this interface existed: the CPU results
 * are the same bits. NCCL averages with ncclAvg in the collective itself.
 */
#include "worker/grad_sync.h"

#include <stdlib.h>
#include <string.h>

#include "kd_build_config.h"
#include "proto/log.h"
#if KD_HAVE_CUDA
#include "kernels/cuda/kd_cuda.h"
#include "kernels/cuda/nccl_comm.h"
#endif

enum { COMM_NONE = 0, COMM_MPI = 1, COMM_NCCL = 2 };

struct kd_grad_comm {
    const kd_dist *d;
    const kd_backend *be;
    int kind;
    int next_label; /* first bucket label of the next kd_grad_sync_init */
#if KD_HAVE_CUDA
    kd_nccl *nccl;
#endif
};

/* ---- the rank's device ------------------------------------------------------------------ */

kd_status kd_rank_backend_open(const char *device, int local_rank, int local_size, int threads,
                               const kd_backend **out, kd_err *err)
{
#if KD_HAVE_CUDA
    if (device && strcmp(device, "cuda") == 0) {
        const char *why = NULL;
        if (kd_cuda_device_count(&why) <= 0)
            return kd_errf(err, KD_EUNSUPPORTED,
                           "device: cuda: no GPU is visible to this process (%s); use device: cpu, or run "
                           "where every rank sees a GPU",
                           why ? why : "none");
        int dev = -1;
        if (kd_cuda_select_device(local_rank, local_size, &dev, err)) {
            kd_err_prefix(err, "device: "); /* its messages start with "cuda: " */
            return err ? err->code : KD_EUNSUPPORTED;
        }
        KD_DEBUG("local rank %d of %d uses GPU %d", local_rank, local_size, dev);
    }
#else
    (void)local_rank;
    (void)local_size;
#endif
    return kd_backend_open(device, threads, out, err);
}

kd_status kd_rank_backend_set_amp(const kd_backend *be, int bf16, kd_err *err)
{
#if KD_HAVE_CUDA
    if (strcmp(be->name, "cuda") == 0) {
        kd_cuda_set_math(be, bf16 ? KD_CUDA_MATH_BF16 : KD_CUDA_MATH_FP16);
        return KD_OK;
    }
#endif
    (void)bf16;
    return kd_errf(err, KD_EUNSUPPORTED,
                   "optim_wrapper.type: AmpOptimWrapper needs device: cuda (mixed precision is the GPU's "
                   "matrix math); device %s trains in float32 (OptimWrapper)",
                   be->name);
}

/* ---- transport ------------------------------------------------------------------------ */

#if KD_HAVE_CUDA
/* Rank 0's id and status travel together; every rank then joins. */
static kd_status nccl_bootstrap(kd_grad_comm *c, double timeout_s, kd_err *err)
{
    struct {
        long long status;
        unsigned char id[KD_NCCL_ID_BYTES];
        char msg[KD_ERR_MSG_BYTES];
    } boot;
    memset(&boot, 0, sizeof boot);
    if (c->d->rank == 0) {
        boot.status = kd_nccl_unique_id(boot.id, err);
        if (boot.status) snprintf(boot.msg, sizeof boot.msg, "%s", err->msg);
    }
    kd_dist_bcast(c->d, &boot, sizeof boot, 0);
    if (boot.status) return kd_errf(err, (kd_status)boot.status, "rank 0: %s", boot.msg);
    return kd_nccl_init(boot.id, c->d->rank, c->d->size, kd_cuda_device(c->be), timeout_s,
                        &c->nccl, err);
}
#endif

kd_status kd_grad_comm_open(const kd_dist *d, const kd_backend *be, double timeout_s,
                            kd_grad_comm **out, kd_err *err)
{
    kd_grad_comm *c = kd_xcalloc(1, sizeof *c);
    c->d = d;
    c->be = be;
    c->kind = d->size == 1 ? COMM_NONE : COMM_MPI;
    if (c->kind == COMM_MPI && strcmp(be->name, "cpu") != 0) {
#if KD_HAVE_CUDA
        c->kind = COMM_NCCL;
        kd_status st = nccl_bootstrap(c, timeout_s, err);
        if (st) {
            free(c);
            return st;
        }
#else
        free(c);
        return kd_errf(err, KD_EUNSUPPORTED, "gradients of device %s need NCCL, which this build lacks",
                       be->name);
#endif
    }
    (void)timeout_s;
    *out = c;
    return KD_OK;
}

void kd_grad_comm_close(kd_grad_comm *c)
{
    if (!c) return;
#if KD_HAVE_CUDA
    if (c->nccl) {
        kd_err err = {0};
        if (kd_nccl_finalize(c->nccl, &err)) KD_WARN("%s", err.msg);
    }
#endif
    free(c);
}

const char *kd_grad_comm_name(const kd_grad_comm *c)
{
    static const char *const names[] = {"none", "mpi", "nccl"};
    return names[c->kind];
}

/* ---- buckets -------------------------------------------------------------------------- */

static void bucket_range(const kd_grad_sync *s, int b, size_t *lo, size_t *n)
{
    size_t hi = s->n_elems - (size_t)b * s->bucket_elems;
    *lo = hi > s->bucket_elems ? hi - s->bucket_elems : 0;
    *n = hi - *lo;
}

void kd_grad_sync_init(kd_grad_sync *s, kd_grad_comm *c, float *grad, size_t n_elems,
                       size_t bucket_bytes)
{
    memset(s, 0, sizeof *s);
    s->comm = c;
    s->grad = grad;
    s->n_elems = n_elems;
    s->bucket_elems = bucket_bytes / sizeof(float);
    if (s->bucket_elems == 0) s->bucket_elems = 1;
    if (s->bucket_elems > ((size_t)1 << 30)) s->bucket_elems = (size_t)1 << 30; /* MPI counts are int */
    s->n_buckets = (int)((n_elems + s->bucket_elems - 1) / s->bucket_elems);
    s->label_base = c->next_label;
    c->next_label += s->n_buckets;
    if (c->kind == COMM_MPI) s->reqs = kd_xcalloc((size_t)s->n_buckets + 1, sizeof(MPI_Request));
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
    kd_grad_comm *c = s->comm;
    if (c->kind == COMM_MPI) {
        MPI_Request *reqs = s->reqs;
        KD_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, s->grad + lo, (int)n, MPI_FLOAT, MPI_SUM,
                                    c->d->comm, &reqs[b]));
    }
#if KD_HAVE_CUDA
    else if (c->kind == COMM_NCCL) {
        kd_nccl_allreduce(c->nccl, s->grad + lo, n, KD_NCCL_AVG, kd_cuda_stream(c->be),
                          s->label_base + b);
    }
#endif
}

void kd_grad_sync_ready(kd_grad_sync *s, size_t lo)
{
    if (s->comm->kind == COMM_NONE) return;
    while (s->next < s->n_buckets) {
        size_t blo, n;
        bucket_range(s, s->next, &blo, &n);
        if (blo < lo) break;
        start_bucket(s, s->next++);
        if (lo > 0) s->early++;
    }
    if (s->comm->kind == COMM_MPI && s->next > 0) { /* let MPI progress what is in flight */
        int done = 0;
        KD_CHECK_MPI(MPI_Testall(s->next, s->reqs, &done, MPI_STATUSES_IGNORE));
    }
}

void kd_grad_sync_finish(kd_grad_sync *s)
{
    kd_grad_comm *c = s->comm;
    s->wait_seconds = 0;
    if (c->kind == COMM_NONE) return;
    while (s->next < s->n_buckets) start_bucket(s, s->next++);
    s->next = 0;
    s->early_last = s->early;
    s->early = 0;
    if (c->kind == COMM_MPI) {
        double t0 = MPI_Wtime();
        KD_CHECK_MPI(MPI_Waitall(s->n_buckets, s->reqs, MPI_STATUSES_IGNORE));
        s->wait_seconds = MPI_Wtime() - t0;
        c->be->scal(c->be, s->n_elems, 1.0f / (float)c->d->size, s->grad);
    }
#if KD_HAVE_CUDA
    else if (c->kind == COMM_NCCL) {
        kd_nccl_order_before(c->nccl, kd_cuda_stream(c->be));
    }
#endif
}
