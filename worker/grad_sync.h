/* grad_sync.h — the rank's compute device (and its precision) and the averaging of its
 * gradients over ranks, one interface over both transports (DESIGN.md §6, §7), so the
 * training step does not branch on the device:
 *   cpu   MPI_Iallreduce on the backend's (host) memory, progressed at each ready() call,
 *         then a scale by 1/world_size;
 *   cuda  NCCL all-reduce with ncclAvg on the communicator's own stream, each bucket
 *         ordered after the compute-stream work queued when it became ready (the backward
 *         that produced it), and the compute stream ordered after all of them before the
 *         optimiser reads the gradients; the host never waits. The communicator is
 *         bootstrapped through MPI (rank 0's unique id, broadcast) and watched by
 *         kernels/cuda/nccl_comm.c's watchdog (a stuck collective ends the job with a
 *         clear message and ncclCommAbort instead of hanging).
 *
 * Per step, identically on every rank:
 *     kd_grad_sync_ready(s, lo)   as backward finishes the gradients [lo, end) (any number
 *                                 of times, lo decreasing; 0 = all of them)
 *     kd_grad_sync_finish(s)      starts the rest; the gradients are averaged when the next
 *                                 backend operation reads them
 * Buckets cover the flat gradient arena from its END backwards (backward finishes the last
 * layers first) and are reduced in bucket-index order on every rank, so the result does not
 * depend on when they started. A world of one rank needs no transport: both calls are
 * no-ops.
 */
#ifndef KD_GRAD_SYNC_H
#define KD_GRAD_SYNC_H

#include <stddef.h>

#include "kernels/backend.h"
#include "proto/status.h"
#include "worker/dist.h"

/* The backend of config device `device` ("cpu" or "cuda") for this rank. For cuda the GPU
 * is chosen from the node-local rank before any other CUDA call, so no rank creates a
 * context on GPU 0 by accident (kernels/cuda/kd_cuda.h, kd_cuda_select_device); with no
 * visible GPU, or a binary built without CUDA, the error says so in one line. */
kd_status kd_rank_backend_open(const char *device, int local_rank, int local_size, int threads,
                               const kd_backend **out, kd_err *err);

/* Mixed precision (optim_wrapper.type AmpOptimWrapper) on the rank's backend: the matrix
 * engines (cuBLAS GEMMs, cuDNN convolutions) multiply in float16 (bf16 = 0) or bfloat16,
 * storage and accumulation stay float32 (kernels/cuda/kd_cuda.h, kd_cuda_set_math). A
 * backend without it (the CPU's) is an error naming the option. */
kd_status kd_rank_backend_set_amp(const kd_backend *be, int bf16, kd_err *err);

typedef struct kd_grad_comm kd_grad_comm;

/* Collective (every rank): the gradient transport for backend be. timeout_s: how long one
 * NCCL collective (or the join) may take before the watchdog ends the job. */
kd_status kd_grad_comm_open(const kd_dist *d, const kd_backend *be, double timeout_s,
                            kd_grad_comm **out, kd_err *err);
/* Waits for the collectives in flight and releases the transport. NULL is a no-op. */
void kd_grad_comm_close(kd_grad_comm *c);
/* "none" (one rank), "mpi" or "nccl", for the start-up log. */
const char *kd_grad_comm_name(const kd_grad_comm *c);

typedef struct kd_grad_sync {
    kd_grad_comm *comm;
    float *grad;          /* device, n_elems */
    size_t n_elems, bucket_elems;
    int n_buckets, next;  /* next bucket to start; bucket b covers the b-th range from the end */
    int label_base;       /* bucket labels in watchdog messages: label_base + b */
    void *reqs;           /* MPI_Request[n_buckets] (mpi) */
    double wait_seconds;  /* time the host blocked in finish() in the last step */
    int early, early_last; /* buckets started while backward ran (ready() with lo > 0): this step, last step */
} kd_grad_sync;

void kd_grad_sync_init(kd_grad_sync *s, kd_grad_comm *c, float *grad, size_t n_elems,
                       size_t bucket_bytes);
void kd_grad_sync_free(kd_grad_sync *s);
/* Backward has finished every gradient from element `lo` to the end: start the buckets
 * that lie entirely in that range (in order) and progress the ones in flight. */
void kd_grad_sync_ready(kd_grad_sync *s, size_t lo);
/* Start what is left and complete the average (mpi: the host waits; nccl: the compute
 * stream waits, the host does not). */
void kd_grad_sync_finish(kd_grad_sync *s);

#endif
