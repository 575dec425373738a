/* nccl_comm.c — NCCL communicator, bucket all-reduce on a dedicated stream, and the
 * watchdog (nccl_comm.h has the contract and the worker's call sequence).
 *
 * In-flight bookkeeping: a ring of KD_NCCL_MAX_IN_FLIGHT slots, each with its own
 * completion event recorded on the communicator's stream after the all-reduce. Collectives
 * [head, tail) are in flight; sequence number = index + 1; slot = index % size. The
 * training thread fills a slot completely (event recorded) before publishing tail, and a
 * slot is reused only after head has passed it, so the watchdog only ever queries recorded
 * events. One mutex guards head/tail/phase; the NCCL and CUDA calls that enqueue work run
 * outside it.
 * Ordering: the all-reduce waits on an event recorded on the caller's compute stream at the
 * call (cudaStreamWaitEvent captures the event's state at that moment, so one event is
 * reused for every bucket); kd_nccl_order_before makes a stream wait for the communicator's.
 * Failure path (watchdog or kd_nccl_wait, whichever sees it first; the other then parks):
 * one diagnostic line, ncclCommAbort (which unblocks NCCL kernels stuck on the device),
 * kd_fatalf.
 */
#include "kernels/cuda/nccl_comm.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cuda/check.h"

_Static_assert(sizeof(ncclUniqueId) == KD_NCCL_ID_BYTES, "ncclUniqueId is not 128 bytes");

#define POLL_WATCHDOG_NS 100000000L /* 100 ms */
#define POLL_WAIT_NS 50000L         /* 50 us: kd_nccl_wait and a full ring */

enum { PHASE_INIT = 0, PHASE_RUN = 1, PHASE_FINALIZE = 2 };

typedef struct inflight {
    uint64_t seq;
    int bucket;
    size_t bytes;
    double t0; /* enqueue time, seconds (CLOCK_MONOTONIC) */
} inflight;

struct kd_nccl {
    int rank, size, device;
    double timeout_s;
    ncclComm_t comm;
    cudaStream_t stream;
    cudaEvent_t ev_ready, ev_all;
    cudaEvent_t done[KD_NCCL_MAX_IN_FLIGHT];
    inflight ops[KD_NCCL_MAX_IN_FLIGHT];
    uint64_t head, tail;
    int phase;
    double phase_t0;
    pthread_mutex_t mu;
    pthread_t thread;
    int thread_started;
    atomic_int stop;
    atomic_int failing;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_ns(long ns)
{
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
    nanosleep(&ts, NULL);
}

/* The one way out of a stuck or broken communicator. Called with c->mu held. */
static _Noreturn __attribute__((format(printf, 2, 3))) void fail(kd_nccl *c, const char *fmt, ...)
{
    if (atomic_exchange(&c->failing, 1)) /* the other thread is already ending the process */
        for (;;) sleep_ns(POLL_WATCHDOG_NS);
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr,
            "crosskd: NCCL watchdog, rank %d of %d (device %d): %s; last enqueued collective %llu, "
            "last completed %llu; aborting the communicator\n",
            c->rank, c->size, c->device, msg, (unsigned long long)c->tail,
            (unsigned long long)c->head);
    fflush(stderr);
    if (c->comm && c->phase != PHASE_INIT) (void)ncclCommAbort(c->comm);
    kd_fatalf(__FILE__, __LINE__, "NCCL: %s (rank %d of %d)", msg, c->rank, c->size);
}

/* Retires completed collectives and enforces the deadline and async errors. mu held. */
static void check_locked(kd_nccl *c)
{
    const double now = now_s();
    if (c->phase == PHASE_INIT) {
        if (now - c->phase_t0 > c->timeout_s)
            fail(c, "ncclCommInitRank has not completed after %.0f s (timeout %.0f s): some rank "
                    "has not joined (not started, a different unique id, or no usable network "
                    "interface: see NCCL_SOCKET_IFNAME, NCCL_DEBUG=WARN)",
                 now - c->phase_t0, c->timeout_s);
        return;
    }
    if (c->phase == PHASE_FINALIZE) {
        if (now - c->phase_t0 > c->timeout_s)
            fail(c, "ncclCommFinalize has not completed after %.0f s (timeout %.0f s)",
                 now - c->phase_t0, c->timeout_s);
        return;
    }
    while (c->head < c->tail) {
        const size_t slot = (size_t)(c->head % KD_NCCL_MAX_IN_FLIGHT);
        cudaError_t e = cudaEventQuery(c->done[slot]);
        if (e == cudaErrorNotReady) break;
        if (e != cudaSuccess)
            fail(c, "all-reduce %llu (bucket %d, %zu bytes) failed on the device: %s",
                 (unsigned long long)c->ops[slot].seq, c->ops[slot].bucket, c->ops[slot].bytes,
                 cudaGetErrorString(e));
        c->head++;
    }
    ncclResult_t async = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(c->comm, &async);
    if (r != ncclSuccess)
        fail(c, "ncclCommGetAsyncError failed: %s", ncclGetErrorString(r));
    if (async != ncclSuccess && async != ncclInProgress)
        fail(c, "asynchronous NCCL error: %s (%s)", ncclGetErrorString(async),
             ncclGetLastError(c->comm));
    if (c->head < c->tail) {
        const inflight *op = &c->ops[c->head % KD_NCCL_MAX_IN_FLIGHT];
        if (now - op->t0 > c->timeout_s)
            fail(c,
                 "collective operation timeout: all-reduce %llu (bucket %d, %zu bytes) ran for "
                 "%.0f s (timeout %.0f s)",
                 (unsigned long long)op->seq, op->bucket, op->bytes, now - op->t0, c->timeout_s);
    }
}

static void *watchdog_main(void *arg)
{
    kd_nccl *c = arg;
    (void)cudaSetDevice(c->device); /* the current device is per thread */
    while (!atomic_load(&c->stop)) {
        sleep_ns(POLL_WATCHDOG_NS);
        if (atomic_load(&c->stop)) break;
        pthread_mutex_lock(&c->mu);
        check_locked(c);
        pthread_mutex_unlock(&c->mu);
    }
    return NULL;
}

static void watchdog_stop(kd_nccl *c)
{
    if (!c->thread_started) return;
    atomic_store(&c->stop, 1);
    pthread_join(c->thread, NULL);
    c->thread_started = 0;
}

/* Frees the CUDA objects and c itself (the communicator is already gone). */
static void release(kd_nccl *c)
{
    for (int i = 0; i < KD_NCCL_MAX_IN_FLIGHT; i++)
        if (c->done[i]) (void)cudaEventDestroy(c->done[i]);
    if (c->ev_ready) (void)cudaEventDestroy(c->ev_ready);
    if (c->ev_all) (void)cudaEventDestroy(c->ev_all);
    if (c->stream) (void)cudaStreamDestroy(c->stream);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

kd_status kd_nccl_unique_id(unsigned char out[KD_NCCL_ID_BYTES], kd_err *err)
{
    ncclUniqueId id;
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess)
        return kd_errf(err, KD_EUNSUPPORTED, "NCCL: cannot create a unique id: %s (%s)",
                       ncclGetErrorString(r), ncclGetLastError(NULL));
    memcpy(out, id.internal, KD_NCCL_ID_BYTES);
    return KD_OK;
}

kd_status kd_nccl_init(const unsigned char id[KD_NCCL_ID_BYTES], int rank, int size, int device,
                       double timeout_s, kd_nccl **out, kd_err *err)
{
    if (!out || !id) return kd_errf(err, KD_EINVAL, "kd_nccl_init: NULL argument");
    *out = NULL;
    if (size < 1 || rank < 0 || rank >= size || device < 0)
        return kd_errf(err, KD_EINVAL, "NCCL: rank %d of %d on device %d is not valid", rank, size,
                       device);
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return kd_errf(err, KD_EUNSUPPORTED, "NCCL: cannot use device %d: %s", device,
                       cudaGetErrorString(e));
    }
    kd_nccl *c = calloc(1, sizeof *c);
    if (!c) return kd_errf(err, KD_ENOMEM, "NCCL: out of memory");
    c->rank = rank;
    c->size = size;
    c->device = device;
    c->timeout_s = timeout_s > 0.0 ? timeout_s : KD_NCCL_TIMEOUT_DEFAULT_S;
    pthread_mutex_init(&c->mu, NULL);
    atomic_init(&c->stop, 0);
    atomic_init(&c->failing, 0);
    e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&c->ev_ready, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&c->ev_all, cudaEventDisableTiming);
    for (int i = 0; i < KD_NCCL_MAX_IN_FLIGHT && e == cudaSuccess; i++)
        e = cudaEventCreateWithFlags(&c->done[i], cudaEventDisableTiming);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        release(c);
        return kd_errf(err, KD_EUNSUPPORTED, "NCCL: cannot create the stream and events: %s",
                       cudaGetErrorString(e));
    }

    c->phase = PHASE_INIT;
    c->phase_t0 = now_s();
    if (pthread_create(&c->thread, NULL, watchdog_main, c) != 0) {
        release(c);
        return kd_errf(err, KD_EUNSUPPORTED, "NCCL: cannot start the watchdog thread");
    }
    c->thread_started = 1;

    ncclUniqueId uid;
    memcpy(uid.internal, id, KD_NCCL_ID_BYTES);
    ncclComm_t comm = NULL;
    ncclResult_t r = ncclCommInitRank(&comm, size, uid, rank);
    if (r != ncclSuccess) {
        watchdog_stop(c);
        if (comm) (void)ncclCommAbort(comm);
        release(c);
        return kd_errf(err, KD_EUNSUPPORTED,
                       "NCCL: cannot join the communicator as rank %d of %d on device %d: %s (%s)",
                       rank, size, device, ncclGetErrorString(r), ncclGetLastError(NULL));
    }
    pthread_mutex_lock(&c->mu);
    c->comm = comm;
    c->phase = PHASE_RUN;
    pthread_mutex_unlock(&c->mu);
    *out = c;
    return KD_OK;
}

int kd_nccl_rank(const kd_nccl *c) { return c->rank; }

int kd_nccl_size(const kd_nccl *c) { return c->size; }

uint64_t kd_nccl_allreduce(kd_nccl *c, float *buf, size_t elems, kd_nccl_op op,
                           void *after_stream, int bucket)
{
    if (elems == 0) return 0;
    KD_CHECK(c != NULL && c->phase == PHASE_RUN, "(NCCL communicator not running)");
    pthread_mutex_lock(&c->mu);
    for (;;) { /* a full ring: wait for the oldest, under the same deadline */
        check_locked(c);
        if (c->tail - c->head < KD_NCCL_MAX_IN_FLIGHT) break;
        pthread_mutex_unlock(&c->mu);
        sleep_ns(POLL_WAIT_NS);
        pthread_mutex_lock(&c->mu);
    }
    const uint64_t index = c->tail;
    pthread_mutex_unlock(&c->mu);

    const size_t slot = (size_t)(index % KD_NCCL_MAX_IN_FLIGHT);
    KD_CHECK_CUDA(cudaEventRecord(c->ev_ready, (cudaStream_t)after_stream));
    KD_CHECK_CUDA(cudaStreamWaitEvent(c->stream, c->ev_ready, 0));
    KD_CHECK_NCCL(ncclAllReduce(buf, buf, elems, ncclFloat, op == KD_NCCL_AVG ? ncclAvg : ncclSum,
                                c->comm, c->stream));
    KD_CHECK_CUDA(cudaEventRecord(c->done[slot], c->stream));

    pthread_mutex_lock(&c->mu);
    c->ops[slot] = (inflight){index + 1, bucket, elems * sizeof(float), now_s()};
    c->tail = index + 1;
    pthread_mutex_unlock(&c->mu);
    return index + 1;
}

void kd_nccl_order_before(kd_nccl *c, void *stream)
{
    KD_CHECK_CUDA(cudaEventRecord(c->ev_all, c->stream));
    KD_CHECK_CUDA(cudaStreamWaitEvent((cudaStream_t)stream, c->ev_all, 0));
}

void kd_nccl_wait(kd_nccl *c)
{
    for (;;) {
        pthread_mutex_lock(&c->mu);
        check_locked(c);
        int done = c->head == c->tail;
        pthread_mutex_unlock(&c->mu);
        if (done) return;
        sleep_ns(POLL_WAIT_NS);
    }
}

kd_status kd_nccl_finalize(kd_nccl *c, kd_err *err)
{
    if (!c) return KD_OK;
    kd_nccl_wait(c);
    pthread_mutex_lock(&c->mu);
    c->phase = PHASE_FINALIZE;
    c->phase_t0 = now_s();
    pthread_mutex_unlock(&c->mu);
    ncclResult_t r = ncclCommFinalize(c->comm);
    ncclResult_t r2 = ncclCommDestroy(c->comm);
    watchdog_stop(c);
    c->comm = NULL;
    int rank = c->rank, size = c->size;
    release(c);
    if (r != ncclSuccess || r2 != ncclSuccess)
        return kd_errf(err, KD_EIO, "NCCL: rank %d of %d: finalize: %s, destroy: %s", rank, size,
                       ncclGetErrorString(r), ncclGetErrorString(r2));
    return KD_OK;
}

void kd_nccl_abort(kd_nccl *c)
{
    if (!c) return;
    watchdog_stop(c);
    if (c->comm) (void)ncclCommAbort(c->comm);
    c->comm = NULL;
    release(c);
}
