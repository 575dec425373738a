/* bench_status_poll.c — clients polling a job's status socket (issue #9 benchmark).
 *
 *   bench_status_poll SOCKET CLIENTS SECONDS [INTERVAL_S] [VERB]
 *
 * CLIENTS threads each repeat, for SECONDS: connect to the Unix socket, send "VERB\n"
 * (default status), read the reply to end of file, then sleep INTERVAL_S (default 0: a
 * closed loop, as fast as the server answers). Prints one line:
 *   requests=N errors=E seconds=S rate=R/s latency_ms median=.. p99=.. max=..
 * where a request counts when its reply starts with something other than "ERR" and
 * arrived whole (end of file); errors are ERR replies, refused or failed connections.
 * Exit 0 when at least one request was served and none failed.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 1024
#define MAX_SAMPLES 200000

typedef struct poll_ctx {
    const char *path, *verb;
    double end_s, interval_s;
    pthread_mutex_t mu;
    long requests, errors;
    double *lat_ms;
    long n_lat;
} poll_ctx;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_s(double s)
{
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* One request; returns 1 when a whole non-error reply arrived. */
static int one_request(const char *path, const char *verb)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    char req[64];
    int n = snprintf(req, sizeof req, "%s\n", verb);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && send(fd, req, (size_t)n, MSG_NOSIGNAL) == n;
    char buf[16384], first[4] = "";
    size_t got = 0;
    while (ok) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) ok = 0;
        if (r <= 0) break;
        if (got < 3) memcpy(first + got, buf, (size_t)r < 3 - got ? (size_t)r : 3 - got);
        got += (size_t)r;
    }
    close(fd);
    return ok && got > 0 && strncmp(first, "ERR", 3) != 0;
}

static void *client_main(void *arg)
{
    poll_ctx *c = arg;
    while (now_s() < c->end_s) {
        double t0 = now_s();
        int ok = one_request(c->path, c->verb);
        double ms = 1e3 * (now_s() - t0);
        pthread_mutex_lock(&c->mu);
        if (ok) c->requests++;
        else c->errors++;
        if (ok && c->n_lat < MAX_SAMPLES) c->lat_ms[c->n_lat++] = ms;
        pthread_mutex_unlock(&c->mu);
        if (!ok) sleep_s(0.01); /* a refused connection must not spin */
        sleep_s(c->interval_s);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bench_status_poll SOCKET CLIENTS SECONDS [INTERVAL_S] [VERB]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int clients = atoi(argv[2]);
    if (clients < 1 || clients > MAX_CLIENTS) clients = 1;
    poll_ctx c = {.path = argv[1], .verb = argc > 5 ? argv[5] : "status",
                  .interval_s = argc > 4 ? atof(argv[4]) : 0};
    pthread_mutex_init(&c.mu, NULL);
    c.lat_ms = malloc(MAX_SAMPLES * sizeof *c.lat_ms);
    double t0 = now_s();
    c.end_s = t0 + atof(argv[3]);
    pthread_t th[MAX_CLIENTS];
    for (int i = 0; i < clients; i++) pthread_create(&th[i], NULL, client_main, &c);
    for (int i = 0; i < clients; i++) pthread_join(th[i], NULL);
    double dt = now_s() - t0;
    qsort(c.lat_ms, (size_t)c.n_lat, sizeof *c.lat_ms, cmp_double);
    double med = c.n_lat ? c.lat_ms[c.n_lat / 2] : 0, p99 = c.n_lat ? c.lat_ms[(long)(0.99 * (double)(c.n_lat - 1))] : 0;
    double mx = c.n_lat ? c.lat_ms[c.n_lat - 1] : 0;
    printf("requests=%ld errors=%ld seconds=%.2f rate=%.1f/s latency_ms median=%.3f p99=%.3f max=%.3f\n", c.requests,
           c.errors, dt, (double)c.requests / dt, med, p99, mx);
    free(c.lat_ms);
    return c.requests > 0 && c.errors == 0 ? 0 : 1;
}
