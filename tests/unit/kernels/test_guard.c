/* test_guard.c — the guarded CPU backend (kernels/cpu/guard.c, CROSSKD_GUARD_DEVICE_MEMORY):
 * backend calls see and change device buffers as the plain CPU backend does (same bits),
 * and the host touching a device buffer between calls dies with SIGSEGV (checked in a
 * forked child), for a read, for a write, and after an allocation made in between. That is
 * what makes it a stand-in for a GPU's memory when the trainer runs under it.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kd_test.h"
#include "kernels/backend.h"

static const kd_backend *G, *C; /* guarded, plain */

/* 1 when touching p on the host (read, or write when `write`) kills a child with SIGSEGV. */
static int host_access_faults(volatile float *p, int write)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (write) p[0] = 1.0f;
        else if (p[0] == 12345.0f) _exit(3);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
}

static void test_ops_match_plain(void)
{
    enum { N = 40000 };
    static float x[N], y[N], rg[N], rc[N];
    for (int i = 0; i < N; i++) x[i] = (float)(i % 113) / 7.0f, y[i] = (float)(i % 29) - 14.0f;
    float *gx = G->alloc(G, sizeof x), *gy = G->alloc(G, sizeof y);
    float *cx = C->alloc(C, sizeof x), *cy = C->alloc(C, sizeof y);
    G->copy_from_host(G, gx, x, sizeof x), G->copy_from_host(G, gy, y, sizeof y);
    C->copy_from_host(C, cx, x, sizeof x), C->copy_from_host(C, cy, y, sizeof y);
    G->axpy(G, N, 0.5f, gx, gy), C->axpy(C, N, 0.5f, cx, cy);
    G->sgd_step(G, N, 0.1f, 0.9f, 1e-4f, gx, gy, gy), C->sgd_step(C, N, 0.1f, 0.9f, 1e-4f, cx, cy, cy);
    G->softmax_fwd(G, N / 8, 8, gx, gy), C->softmax_fwd(C, N / 8, 8, cx, cy);
    double sg = 0, sc = 0;
    G->dot(G, N, gx, gy, &sg), C->dot(C, N, cx, cy, &sc);
    KD_EXPECT(sg == sc);
    G->copy_to_host(G, rg, gy, sizeof rg), C->copy_to_host(C, rc, cy, sizeof rc);
    KD_EXPECT(memcmp(rg, rc, sizeof rg) == 0);
    G->free(G, gx), G->free(G, gy), C->free(C, cx), C->free(C, cy);
}

static void test_host_access_faults(void)
{
    float h[4] = {1, 2, 3, 4};
    float *d = G->alloc(G, sizeof h);
    G->copy_from_host(G, d, h, sizeof h);
    KD_EXPECT(host_access_faults(d, 0));
    KD_EXPECT(host_access_faults(d, 1));
    float *e = G->alloc(G, 1 << 20); /* a later, larger buffer, after a call */
    G->zero(G, e, 1 << 20);
    KD_EXPECT(host_access_faults(e + (1 << 18) - 1, 0));
    KD_EXPECT(host_access_faults(d, 0));
    float back[4];
    G->copy_to_host(G, back, d, sizeof back);
    KD_EXPECT(memcmp(back, h, sizeof h) == 0);
    /* the plain backend's buffers are host memory */
    float *c = C->alloc(C, sizeof h);
    KD_EXPECT(!host_access_faults(c, 0));
    C->free(C, c);
    G->free(G, d), G->free(G, e);
}

int main(void)
{
    kd_err err;
    unsetenv("CROSSKD_GUARD_DEVICE_MEMORY");
    if (kd_backend_open("cpu", 2, &C, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    setenv("CROSSKD_GUARD_DEVICE_MEMORY", "1", 1);
    if (kd_backend_open("cpu", 2, &G, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    KD_TEST_RUN(test_ops_match_plain);
    KD_TEST_RUN(test_host_access_faults);
    G->close(G);
    C->close(C);
    return kd_test_summary();
}
