/* dist.h — the MPI control plane of a rank (DESIGN.md §7): world and node-local ranks,
 * broadcasts, small all-reduces for loss normalisers, and the bucketed gradient all-reduce
 * that overlaps backward.
 *
 * Conventions:
 * - Only the training thread calls MPI (MPI_THREAD_FUNNELED is required and checked).
 * - The local rank comes from MPI_Comm_split_type(MPI_COMM_TYPE_SHARED); the launchers'
 *   variables (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID) are only cross-checked.
 * - A failed MPI call is fatal (KD_CHECK_MPI); the abort hook calls MPI_Abort so no rank
 *   is left waiting in a collective.
 * - Gradients are averaged: buckets are summed by MPI_Iallreduce in bucket-index order on
 *   every rank, then scaled by 1/world_size. Buckets cover the flat gradient arena from its
 *   END backwards, because backward finishes the last layers' gradients first.
 */
#ifndef KD_DIST_H
#define KD_DIST_H

#include <mpi.h>
#include <stddef.h>

#include "proto/status.h"

#define KD_CHECK_MPI(STMT) KD_CHECK_GEN(int, "MPI", _kd_r == MPI_SUCCESS, kd_mpi_errstr(_kd_r), STMT)
const char *kd_mpi_errstr(int code);

typedef struct kd_dist {
    int rank, size;             /* world */
    int local_rank, local_size; /* this node */
    char host[64];
    MPI_Comm comm, node_comm;
} kd_dist;

/* Exit status of a worker that saved a checkpoint because of SIGTERM/SIGUSR1 (a time
 * limit or a preemption): a batch script requeues the job on it. */
#define KD_EXIT_REQUEUE 85

/* MPI_Init_thread (FUNNELED), ranks, node split, abort hook. Refuses a world size that
 * differs from the task count of a Slurm allocation (SLURM_NTASKS). */
kd_status kd_dist_init(int *argc, char ***argv, kd_dist *d, kd_err *err);
void kd_dist_finalize(kd_dist *d);

void kd_dist_bcast(const kd_dist *d, void *buf, size_t bytes, int root);
void kd_dist_barrier(const kd_dist *d);
/* In-place sum of n doubles over all ranks (loss normalisers, metrics). */
void kd_dist_allreduce_sum(const kd_dist *d, double *vals, int n);
/* Gather `bytes` from every rank into out (size*bytes) on root. */
void kd_dist_gather(const kd_dist *d, const void *in, size_t bytes, void *out, int root);
/* 1 if every rank holds the same 64-bit value (e.g. a weight checksum), else 0. */
int kd_dist_all_equal_u64(const kd_dist *d, unsigned long long v);

typedef struct kd_grad_sync {
    const kd_dist *d;
    float *grad;
    size_t n_elems, bucket_elems;
    int n_buckets, next;  /* next bucket to start; bucket b covers the b-th range from the end */
    MPI_Request *reqs;
    double wait_seconds;  /* time spent blocked in finish() for the last step */
    int early, early_last; /* buckets started while backward ran (ready() with lo > 0): this step, last step */
} kd_grad_sync;

void kd_grad_sync_init(kd_grad_sync *s, const kd_dist *d, float *grad, size_t n_elems, size_t bucket_bytes);
void kd_grad_sync_free(kd_grad_sync *s);
/* Backward has finished every gradient from element `lo` to the end: start the buckets
 * that lie entirely in that range (in order) and let MPI progress the ones in flight. */
void kd_grad_sync_ready(kd_grad_sync *s, size_t lo);
/* Start what is left, wait for everything, and scale by 1/world_size. */
void kd_grad_sync_finish(kd_grad_sync *s);

#endif
