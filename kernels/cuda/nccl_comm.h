/* nccl_comm.h — the NCCL communicator of a rank (DESIGN.md §7, reference/distributed.md §2):
 * gradient buckets all-reduced on a dedicated stream, ordered after the backward that made
 * them, with a watchdog that turns a stuck or failed collective into a clear fatal error
 * and ncclCommAbort instead of a hang.
 *
 * No MPI here: the kernels layer sits below the worker, which owns MPI. The worker does
 * the bootstrap (reference/distributed.md §2.1):
 *     kd_cuda_select_device(local_rank, local_size, &dev, &err);  before any CUDA call
 *     if (rank == 0) kd_nccl_unique_id(id, &err);
 *     MPI_Bcast(id, KD_NCCL_ID_BYTES, MPI_BYTE, 0, comm);
 *     kd_nccl_init(id, rank, size, dev, timeout_s, &nc, &err);  blocks until all joined
 * and per step, as backward finishes each bucket (in the same order on every rank):
 *     kd_nccl_allreduce(nc, grad + lo, elems, KD_NCCL_AVG, kd_cuda_stream(b), bucket);
 * then before the optimiser reads the gradients:
 *     kd_nccl_order_before(nc, kd_cuda_stream(b));   (no host wait), or kd_nccl_wait(nc).
 *
 * Conventions:
 *  - Streams are passed as `void *` (a cudaStream_t), so this header needs no CUDA header.
 *  - One thread (the training thread) calls these functions; the watchdog is internal.
 *  - Blocking communicators (ncclCommInitRank): NCCL calls only enqueue; completion is
 *    observed with CUDA events. In-place all-reduce (send == recv).
 *  - Watchdog: a thread polls every 100 ms: completion events of the collectives in
 *    flight, ncclCommGetAsyncError, and the age of the oldest collective. When a collective
 *    (or the initial join) is older than timeout_s, or NCCL reports an asynchronous error,
 *    it prints one diagnostic line (sequence number, bucket, bytes, elapsed, last enqueued
 *    and completed sequence numbers, rank), calls ncclCommAbort and ends the process through
 *    kd_fatalf (the abort hook, so mpirun/Slurm take the whole job down and it restarts from
 *    the last checkpoint). The hook is therefore called from the watchdog thread.
 *  - Errors of the bootstrap are returned as a status with a message; failures of a call
 *    during training are fatal (KD_CHECK_NCCL / KD_CHECK_CUDA).
 */
#ifndef KD_KERNELS_CUDA_NCCL_COMM_H
#define KD_KERNELS_CUDA_NCCL_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "proto/status.h"

#define KD_NCCL_ID_BYTES 128
/* Default collective timeout when kd_nccl_init gets timeout_s <= 0 (PyTorch's default). */
#define KD_NCCL_TIMEOUT_DEFAULT_S 600.0

typedef struct kd_nccl kd_nccl;

typedef enum kd_nccl_op {
    KD_NCCL_SUM = 0,
    KD_NCCL_AVG = 1, /* sum / size, done by NCCL (ncclAvg) */
} kd_nccl_op;

/* Rank 0 only: a fresh unique id (128 opaque bytes) for the worker to broadcast. Uses no
 * device. */
kd_status kd_nccl_unique_id(unsigned char out[KD_NCCL_ID_BYTES], kd_err *err);

/* Every rank: joins communicator `id` as `rank` of `size` on `device` (made current for
 * this thread). Blocks until every rank has joined; the watchdog already watches the join
 * (a rank that never arrives is a fatal timeout, not a hang). timeout_s <= 0 selects
 * KD_NCCL_TIMEOUT_DEFAULT_S. */
kd_status kd_nccl_init(const unsigned char id[KD_NCCL_ID_BYTES], int rank, int size, int device,
                       double timeout_s, kd_nccl **out, kd_err *err);

int kd_nccl_rank(const kd_nccl *c);
int kd_nccl_size(const kd_nccl *c);

/* In-place all-reduce of elems floats at buf (device) on the communicator's own stream,
 * after all work queued so far on after_stream (a cudaStream_t: the backward that produced
 * the bucket). bucket is a label for diagnostics. Does not block the host, except when
 * more than KD_NCCL_MAX_IN_FLIGHT collectives are in flight (then it waits for the
 * oldest). Returns the collective's sequence number (1, 2, ...). elems == 0 is a no-op
 * (returns 0). */
#define KD_NCCL_MAX_IN_FLIGHT 256
uint64_t kd_nccl_allreduce(kd_nccl *c, float *buf, size_t elems, kd_nccl_op op,
                           void *after_stream, int bucket);

/* Work queued on `stream` from now on waits for every all-reduce enqueued so far (a device
 * dependency; the host does not wait). */
void kd_nccl_order_before(kd_nccl *c, void *stream);

/* The host waits until every enqueued all-reduce has completed, polling their events and
 * NCCL's asynchronous error; the timeout applies as in the watchdog. */
void kd_nccl_wait(kd_nccl *c);

/* Orderly end: waits for the collectives, ncclCommFinalize (flush), ncclCommDestroy, stops
 * the watchdog, frees everything. NULL is a no-op. */
kd_status kd_nccl_finalize(kd_nccl *c, kd_err *err);

/* Emergency end: stops the watchdog and ncclCommAbort (never waits on pending work), then
 * frees. NULL is a no-op. */
void kd_nccl_abort(kd_nccl *c);

#endif
