/* status_server.c — the status socket's epoll loop on its own thread (status_server.h).
 *
 * Conventions:
 *   - every socket is non-blocking and close-on-exec; writes use MSG_NOSIGNAL;
 *   - a client is READ (collecting its request), WAIT (its action is pending on the
 *     trainer) or WRITE (draining its reply); after the reply it is closed, except that
 *     a TCP client first LINGERs (its unread input is drained for up to 2 s) so that
 *     closing with unread input, which sends a reset, cannot destroy the reply in flight;
 *   - each state has a deadline (request, action, write timeouts); the cron expires them,
 *     so a slow, silent or non-reading client holds one slot for a bounded time;
 *   - every byte limit comes from status_proto.h; nothing a client sends can abort the
 *     process: problems become `ERR <CODE>` replies or a closed connection;
 *   - the trainer wakes the loop through an eventfd (board wake callback) when a
 *     checkpoint finishes or the job state changes; the cron re-checks waiters anyway.
 */
#include "daemon/status_server.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon/metrics.h"
#include "daemon/status_listen.h"
#include "proto/log.h"

enum { CL_READ = 0, CL_WAIT, CL_WRITE, CL_LINGER };
enum { LINGER_MAX_BYTES = 4 << 20 };
#define LINGER_SECONDS 2.0
enum { CRON_MS = 100, ACCEPT_BATCH = 64 };

typedef struct kd_client {
    int fd;
    int state;
    bool tcp, authed, dead, eof;
    kd_status_verb verb;
    bool json;
    uint64_t gen;                 /* checkpoint generation awaited */
    double deadline;              /* monotonic seconds */
    char in[KD_STATUS_REQUEST_MAX_BYTES];
    size_t in_len, in_total;
    kd_sbuf out;
    size_t out_off;
    struct kd_client *prev, *next;
} kd_client;

struct kd_status_server {
    kd_status_server_opts o;
    char *config_text;
    kd_control_board *board;
    int epfd, wakefd, unix_fd, tcp_fd, tcp_port;
    bool unix_paused, tcp_paused;  /* accept paused after EMFILE, until the next cron */
    dev_t sock_dev;
    ino_t sock_ino;
    pthread_t thread;
    bool thread_started;
    atomic_bool stopping;
    kd_client *clients;            /* doubly linked list */
    kd_client *dead;               /* closed this iteration; freed after its events */
    kd_metrics_server stats;
    uint64_t denied;
};

/* epoll tags for the listeners and the eventfd; clients are tagged by their pointer */
static char k_tag_unix, k_tag_tcp, k_tag_wake;

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void kd_status_server_opts_defaults(kd_status_server_opts *o)
{
    memset(o, 0, sizeof *o);
    o->allowed_uid = geteuid();
    snprintf(o->tcp_host, sizeof o->tcp_host, "127.0.0.1");
    o->max_clients = 512;
    o->request_timeout_s = 5.0;
    o->write_timeout_s = 10.0;
    o->action_timeout_s = 1800.0;
}

/* ---- clients ----------------------------------------------------------------------- */

/* Close now, free later: an event of the same epoll batch may still name c. */
static void client_close(kd_status_server *s, kd_client *c)
{
    if (c->dead) return;
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->dead = true;
    if (c->prev) c->prev->next = c->next;
    else s->clients = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = NULL;
    c->next = s->dead;
    s->dead = c;
    kd_sbuf_free(&c->out);
    s->stats.clients--;
}

static void free_dead(kd_status_server *s)
{
    while (s->dead) {
        kd_client *c = s->dead;
        s->dead = c->next;
        free(c);
    }
}

static void client_events(kd_status_server *s, kd_client *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Try to send the rest of the reply. Returns false when the client was closed. */
static bool client_flush(kd_status_server *s, kd_client *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) { c->out_off += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            client_events(s, c, EPOLLOUT); /* not RDHUP: level-triggered, it would spin */
            return true;
        }
        client_close(s, c); /* EPIPE, ECONNRESET: the client went away */
        return false;
    }
    shutdown(c->fd, SHUT_WR);
    if (c->tcp && !c->eof) {
        c->state = CL_LINGER;
        c->deadline = mono_now() + LINGER_SECONDS;
        client_events(s, c, EPOLLIN | EPOLLRDHUP);
        return true;
    }
    client_close(s, c);
    return false;
}

/* LINGER: discard what the client still sends until it closes (or the deadline). After
 * a few full reads it returns; level-triggered epoll calls again if more is waiting. */
static void client_drain(kd_status_server *s, kd_client *c)
{
    char sink[16384];
    for (int round = 0; round < 8; round++) {
        ssize_t n = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) break; /* EOF or error: done */
        c->in_total += (size_t)n;
        if (c->in_total > LINGER_MAX_BYTES) break;
        if (round == 7) return;
    }
    client_close(s, c);
}

/* The reply in c->out is complete: switch to WRITE and start sending. */
static void client_reply(kd_status_server *s, kd_client *c)
{
    if (c->out.overflow) {
        kd_sbuf_reset(&c->out);
        kd_status_proto_error(&c->out, KD_SC_EINTERNAL, "reply over its size limit");
        s->stats.errors_total[KD_SC_EINTERNAL]++;
    }
    c->state = CL_WRITE;
    c->out_off = 0;
    c->deadline = mono_now() + s->o.write_timeout_s;
    client_flush(s, c);
}

static void client_error(kd_status_server *s, kd_client *c, kd_status_code code, const char *msg)
{
    kd_sbuf_reset(&c->out);
    kd_status_proto_error(&c->out, code, msg);
    if (code > 0 && code < KD_SC_COUNT) s->stats.errors_total[code]++;
    client_reply(s, c);
}

/* ---- actions ------------------------------------------------------------------------- */

static void reply_checkpoint(kd_client *c, const kd_checkpoint_result *r, const char *section)
{
    kd_reply w;
    kd_reply_begin(&w, &c->out, c->json);
    kd_reply_section(&w, section);
    kd_reply_str(&w, "state", c->verb == KD_VERB_STOP ? "stopped" : "saved");
    kd_reply_int(&w, "generation", (long long)r->gen);
    kd_reply_str(&w, "path", r->path);
    kd_reply_int(&w, "step", (long long)r->step);
    kd_reply_end(&w);
}

/* Check whether a waiting client's condition holds; reply if so. `final` is true while
 * the server stops: stop waiters are answered from the last checkpoint, others fail. */
static void client_check_wait(kd_status_server *s, kd_client *c, const kd_job_status *st,
                              bool have_snap, const kd_checkpoint_result *ck, bool final)
{
    kd_sbuf_reset(&c->out);
    switch (c->verb) {
    case KD_VERB_CHECKPOINT:
    case KD_VERB_STOP: {
        if (ck->gen < c->gen) break;
        if (!ck->ok) {
            char msg[320];
            snprintf(msg, sizeof msg, "checkpoint failed: %s", ck->msg);
            client_error(s, c, KD_SC_ECHECKPOINT, msg);
            return;
        }
        if (c->verb == KD_VERB_STOP && !final &&
            !(have_snap && st->state == KD_JOB_STOPPED))
            break; /* on disk; answer when the job has stopped */
        reply_checkpoint(c, ck, c->verb == KD_VERB_STOP ? "Stop" : "Checkpoint");
        client_reply(s, c);
        return;
    }
    case KD_VERB_PAUSE:
    case KD_VERB_RESUME: {
        bool paused = have_snap && st->state == KD_JOB_PAUSED;
        bool done = c->verb == KD_VERB_PAUSE ? paused : (have_snap && !paused);
        if (!done) break;
        kd_reply w;
        kd_reply_begin(&w, &c->out, c->json);
        kd_reply_section(&w, c->verb == KD_VERB_PAUSE ? "Pause" : "Resume");
        kd_reply_str(&w, "state", kd_job_state_name(st->state));
        kd_reply_int(&w, "iter", (long long)st->iter);
        kd_reply_end(&w);
        client_reply(s, c);
        return;
    }
    default:
        break;
    }
    if (final) client_error(s, c, KD_SC_ESHUTDOWN, "the job ended before the action completed");
}

static void check_waiters(kd_status_server *s, bool final)
{
    bool any = false;
    for (kd_client *c = s->clients; c; c = c->next)
        if (c->state == CL_WAIT) { any = true; break; }
    if (!any) return;
    kd_job_status *st = malloc(sizeof *st);
    if (!st) return;
    bool have = kd_control_board_snapshot(s->board, st);
    kd_checkpoint_result ck;
    kd_control_board_checkpoint_result(s->board, &ck);
    for (kd_client *c = s->clients, *next; c; c = next) {
        next = c->next;
        if (c->state == CL_WAIT) client_check_wait(s, c, st, have, &ck, final);
    }
    free(st);
}

static void dispatch(kd_status_server *s, kd_client *c, const kd_status_request *req)
{
    s->stats.requests_total[req->verb]++;
    c->verb = req->verb;
    c->json = req->json;
    kd_sbuf_reset(&c->out);
    double now = wall_now();
    switch (req->verb) {
    case KD_VERB_PING: {
        kd_reply w;
        kd_reply_begin(&w, &c->out, c->json);
        kd_reply_section(&w, "Ping");
        kd_reply_str(&w, "pong", "1");
        kd_reply_end(&w);
        client_reply(s, c);
        return;
    }
    case KD_VERB_CONFIG:
        if (c->json) {
            kd_reply w;
            kd_reply_begin(&w, &c->out, true);
            kd_reply_section(&w, "Config");
            kd_reply_str(&w, "yaml", s->config_text);
            kd_reply_end(&w);
        } else {
            kd_sbuf_puts(&c->out, s->config_text);
        }
        client_reply(s, c);
        return;
    case KD_VERB_STATUS:
    case KD_VERB_METRICS: {
        kd_job_status *st = malloc(sizeof *st);
        if (!st) { client_error(s, c, KD_SC_EINTERNAL, "out of memory"); return; }
        bool have = kd_control_board_snapshot(s->board, st);
        if (req->verb == KD_VERB_METRICS) {
            kd_metrics_format(&c->out, st, have, &s->stats, now);
        } else if (!have) {
            free(st);
            client_error(s, c, KD_SC_ENOTREADY, "the trainer has not published a status yet");
            return;
        } else {
            kd_status_extra x = {.now = now, .clients = s->stats.clients};
            kd_control_board_requested(s->board, &x.pause_requested, &x.stop_requested);
            kd_status_proto_format_status(&c->out, st, &x, c->json);
        }
        free(st);
        client_reply(s, c);
        return;
    }
    case KD_VERB_CHECKPOINT:
        c->gen = kd_control_board_request_checkpoint(s->board);
        KD_INFO("status: checkpoint requested (generation %llu)", (unsigned long long)c->gen);
        break;
    case KD_VERB_STOP:
        c->gen = kd_control_board_request_stop(s->board);
        KD_INFO("status: stop requested (final checkpoint generation %llu)", (unsigned long long)c->gen);
        break;
    case KD_VERB_PAUSE:
    case KD_VERB_RESUME:
        kd_control_board_request_pause(s->board, req->verb == KD_VERB_PAUSE);
        KD_INFO("status: %s requested", kd_status_verb_name(req->verb));
        break;
    default:
        client_error(s, c, KD_SC_EVERB, "verb not served");
        return;
    }
    c->state = CL_WAIT;
    c->deadline = mono_now() + s->o.action_timeout_s;
    client_events(s, c, EPOLLIN | EPOLLRDHUP); /* to notice the client leaving */
    check_waiters(s, false);
}

/* Constant-time compare over the whole token capacity. */
static bool token_equal(const char *a, const char *b)
{
    size_t la = strnlen(a, KD_STATUS_TOKEN_MAX_BYTES + 1), lb = strnlen(b, KD_STATUS_TOKEN_MAX_BYTES + 1);
    unsigned diff = (unsigned)(la ^ lb);
    for (size_t i = 0; i < KD_STATUS_TOKEN_MAX_BYTES; i++) {
        unsigned char x = i < la ? (unsigned char)a[i] : 0, y = i < lb ? (unsigned char)b[i] : 0;
        diff |= (unsigned)(x ^ y);
    }
    return diff == 0 && la > 0;
}

/* Consume complete lines from c->in. */
static void client_process(kd_status_server *s, kd_client *c)
{
    while (c->state == CL_READ) {
        long n = kd_status_proto_frame(c->in, c->in_len, KD_STATUS_LINE_MAX_BYTES);
        if (n < 0) { client_error(s, c, KD_SC_ETOOLONG, "request line over 512 bytes"); return; }
        if (n == 0) {
            if (c->in_total >= KD_STATUS_REQUEST_MAX_BYTES)
                client_error(s, c, KD_SC_ETOOLONG, "request over 1024 bytes");
            return;
        }
        kd_status_request req;
        char msg[128];
        kd_status_code code = kd_status_proto_parse(c->in, (size_t)n - 1, &req, msg, sizeof msg);
        memmove(c->in, c->in + n, c->in_len - (size_t)n);
        c->in_len -= (size_t)n;
        if (code != KD_SC_OK) { client_error(s, c, code, msg); return; }
        if (req.verb == KD_VERB_AUTH) {
            s->stats.requests_total[KD_VERB_AUTH]++;
            bool ok = c->tcp && token_equal(req.token, s->o.token);
            memset(req.token, 0, sizeof req.token);
            if (!c->tcp) { client_error(s, c, KD_SC_EARG, "AUTH is only used on TCP"); return; }
            if (!ok) {
                s->denied++;
                if (s->denied <= 10 || s->denied % 1000 == 0)
                    KD_WARN("status: TCP client sent a wrong token (%llu refused so far)",
                            (unsigned long long)s->denied);
                client_error(s, c, KD_SC_EAUTH, "wrong token");
                return;
            }
            c->authed = true;
            continue;
        }
        if (c->tcp && !c->authed) {
            client_error(s, c, KD_SC_EAUTH, "send AUTH <token> first");
            return;
        }
        dispatch(s, c, &req);
        return;
    }
}

static void client_readable(kd_status_server *s, kd_client *c)
{
    for (int round = 0; round < 16 && !c->dead; round++) {
        char sink[256];
        char *dst = c->state == CL_READ ? c->in + c->in_len : sink;
        size_t room = c->state == CL_READ ? sizeof c->in - c->in_len : sizeof sink;
        if (room == 0) { client_process(s, c); return; }
        ssize_t n = recv(c->fd, dst, room, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            /* EOF or error. A client that half-closed after its request still gets the
             * reply (WAIT); one that leaves mid-request is dropped. */
            if (c->state == CL_WAIT && n == 0) {
                c->eof = true;
                client_events(s, c, 0); /* HUP and ERR are still reported */
            } else if (c->state == CL_READ && n == 0 && c->in_len > 0) {
                client_error(s, c, KD_SC_EPARSE, "request not terminated by a newline");
            } else {
                client_close(s, c);
            }
            return;
        }
        c->in_total += (size_t)n;
        if (c->state != CL_READ) {
            if (c->in_total > 4 * KD_STATUS_REQUEST_MAX_BYTES) client_close(s, c);
            continue;
        }
        c->in_len += (size_t)n;
        client_process(s, c); /* may reply and close c */
    }
}

static void client_event(kd_status_server *s, kd_client *c, uint32_t ev)
{
    if (c->dead) return;
    if (ev & EPOLLERR) { client_close(s, c); return; }
    switch (c->state) {
    case CL_WRITE:
        if (ev & EPOLLHUP) client_close(s, c);
        else if (ev & EPOLLOUT) client_flush(s, c);
        break;
    case CL_WAIT:
        if (ev & EPOLLHUP) client_close(s, c);
        else if (ev & (EPOLLIN | EPOLLRDHUP)) client_readable(s, c);
        break;
    case CL_LINGER:
        if (ev & EPOLLHUP) client_close(s, c);
        else client_drain(s, c);
        break;
    default:
        client_readable(s, c);
        break;
    }
}

/* ---- listeners ------------------------------------------------------------------------- */

static void reject(kd_status_server *s, int fd, kd_status_code code, const char *msg)
{
    kd_sbuf b;
    kd_sbuf_init(&b, 256);
    kd_status_proto_error(&b, code, msg);
    if (b.data) (void)!send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
    kd_sbuf_free(&b);
    /* Discard a request that already arrived: closing with unread input resets the
     * connection, which can make the client lose the error line. */
    shutdown(fd, SHUT_WR);
    char sink[KD_STATUS_REQUEST_MAX_BYTES];
    for (int i = 0; i < 4 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++) {}
    close(fd);
    s->stats.errors_total[code]++;
}

static void accept_clients(kd_status_server *s, bool tcp)
{
    int lfd = tcp ? s->tcp_fd : s->unix_fd;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop accepting until the next cron tick rather
                 * than spinning on a readable listener. */
                struct epoll_event ev = {.events = 0, .data.ptr = tcp ? &k_tag_tcp : &k_tag_unix};
                epoll_ctl(s->epfd, EPOLL_CTL_MOD, lfd, &ev);
                if (tcp) s->tcp_paused = true;
                else s->unix_paused = true;
                KD_WARN("status: accept: %s; pausing new connections", strerror(errno));
            }
            return;
        }
        s->stats.connections_total++;
        if (!tcp) {
            struct ucred cred;
            socklen_t len = sizeof cred;
            if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
                (cred.uid != s->o.allowed_uid && cred.uid != 0)) {
                s->denied++;
                if (s->denied <= 10 || s->denied % 1000 == 0)
                    KD_WARN("status: refused a client with uid %ld (%llu refused so far)",
                            (long)cred.uid, (unsigned long long)s->denied);
                reject(s, fd, KD_SC_EPERM, "this job serves only its own user and root");
                continue;
            }
        }
        if (s->stats.clients >= s->o.max_clients) {
            reject(s, fd, KD_SC_EBUSY, "too many clients; try again later");
            continue;
        }
        kd_client *c = calloc(1, sizeof *c);
        if (!c) { reject(s, fd, KD_SC_EINTERNAL, "out of memory"); continue; }
        c->fd = fd;
        c->tcp = tcp;
        c->state = CL_READ;
        c->deadline = mono_now() + s->o.request_timeout_s;
        kd_sbuf_init(&c->out, KD_STATUS_REPLY_MAX_BYTES);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            free(c);
            close(fd);
            continue;
        }
        c->next = s->clients;
        if (s->clients) s->clients->prev = c;
        s->clients = c;
        s->stats.clients++;
    }
}

static void cron(kd_status_server *s)
{
    double now = mono_now();
    for (kd_client *c = s->clients, *next; c; c = next) {
        next = c->next;
        if (now < c->deadline) continue;
        if (c->state == CL_WRITE || c->state == CL_LINGER) { client_close(s, c); continue; }
        client_error(s, c, KD_SC_ETIMEOUT,
                     c->state == CL_READ ? "no complete request in time"
                                         : "the action did not complete in time (it stays requested)");
    }
    for (int t = 0; t < 2; t++) {
        bool *paused = t ? &s->tcp_paused : &s->unix_paused;
        if (!*paused) continue;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = t ? &k_tag_tcp : &k_tag_unix};
        epoll_ctl(s->epfd, EPOLL_CTL_MOD, t ? s->tcp_fd : s->unix_fd, &ev);
        *paused = false;
    }
    check_waiters(s, false);
}

static void *loop_main(void *arg)
{
    kd_status_server *s = arg;
    pthread_setname_np(pthread_self(), "kd-status"); /* shown by top -H, gdb, /proc */
    struct epoll_event evs[64];
    double next_cron = mono_now() + CRON_MS / 1000.0;
    while (!atomic_load(&s->stopping)) {
        double wait_s = next_cron - mono_now();
        int timeout_ms = wait_s <= 0 ? 0 : (int)(wait_s * 1000.0) + 1;
        int n = epoll_wait(s->epfd, evs, 64, timeout_ms);
        if (n < 0 && errno != EINTR) {
            KD_ERROR("status: epoll_wait: %s; the status server stops", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == &k_tag_wake) {
                uint64_t v;
                (void)!read(s->wakefd, &v, sizeof v);
                check_waiters(s, false);
            } else if (tag == &k_tag_unix) {
                accept_clients(s, false);
            } else if (tag == &k_tag_tcp) {
                accept_clients(s, true);
            } else {
                client_event(s, tag, evs[i].events); /* skips clients closed in this batch */
            }
        }
        if (mono_now() >= next_cron) {
            cron(s);
            next_cron = mono_now() + CRON_MS / 1000.0;
        }
        free_dead(s);
    }
    /* Shutdown: answer waiters, then flush replies for a bounded time. */
    check_waiters(s, true);
    double flush_end = mono_now() + 1.0;
    while (mono_now() < flush_end) {
        bool writing = false;
        for (kd_client *c = s->clients; c; c = c->next)
            if (c->state == CL_WRITE) writing = true;
        if (!writing) break;
        int n = epoll_wait(s->epfd, evs, 64, 50);
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == &k_tag_wake || tag == &k_tag_unix || tag == &k_tag_tcp) continue;
            kd_client *c = tag;
            if (c->state == CL_WRITE) client_event(s, c, evs[i].events);
        }
        free_dead(s);
    }
    while (s->clients) client_close(s, s->clients);
    free_dead(s);
    return NULL;
}

static void wake_loop(void *arg)
{
    kd_status_server *s = arg;
    uint64_t one = 1;
    (void)!write(s->wakefd, &one, sizeof one);
}

/* ---- start / stop ------------------------------------------------------------------------ */

int kd_status_server_tcp_port(const kd_status_server *s) { return s ? s->tcp_port : 0; }


kd_status kd_status_server_start(kd_status_server **out, const kd_status_server_opts *o,
                                 kd_control_board *board, kd_err *err)
{
    *out = NULL;
    if (o->tcp_enable && o->token[0] == '\0')
        return kd_errf(err, KD_EINVAL, "status server: TCP needs a token");
    if (o->max_clients < 1) return kd_errf(err, KD_EINVAL, "status server: max_clients < 1");
    kd_status_server *s = calloc(1, sizeof *s);
    if (!s) return kd_errf(err, KD_ENOMEM, "status server: out of memory");
    s->o = *o;
    s->board = board;
    s->epfd = s->wakefd = s->unix_fd = s->tcp_fd = -1;
    s->config_text = strdup(o->config_text ? o->config_text : "");
    kd_status st = KD_OK;
    if (!s->config_text) { st = kd_errf(err, KD_ENOMEM, "status server: out of memory"); goto fail; }
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->epfd < 0 || s->wakefd < 0) {
        st = kd_errf(err, KD_EIO, "status server: epoll/eventfd: %s", strerror(errno));
        goto fail;
    }
    st = kd_status_listen_unix(o->unix_path, &s->unix_fd, &s->sock_dev, &s->sock_ino, err);
    if (st != KD_OK) goto fail;
    if (o->tcp_enable) {
        st = kd_status_listen_tcp(o->tcp_host, o->tcp_port, &s->tcp_fd, &s->tcp_port, err);
        if (st != KD_OK) goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &k_tag_wake};
    epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->wakefd, &ev);
    ev.data.ptr = &k_tag_unix;
    epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->unix_fd, &ev);
    if (s->tcp_fd >= 0) {
        ev.data.ptr = &k_tag_tcp;
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->tcp_fd, &ev);
    }
    kd_control_board_set_wake(board, wake_loop, s);
    /* The loop thread blocks every signal (it inherits this mask), so SIGINT, SIGTERM and
     * Slurm's SIGUSR1 reach the trainer's threads, whatever way they wait for them. */
    sigset_t all, old_mask;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old_mask);
    int rc = pthread_create(&s->thread, NULL, loop_main, s);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    if (rc != 0) {
        kd_control_board_set_wake(board, NULL, NULL);
        st = kd_errf(err, KD_EIO, "status server: cannot start its thread");
        goto fail;
    }
    s->thread_started = true;
    KD_INFO("status: serving %s%s", o->unix_path, o->tcp_enable ? " and TCP" : "");
    if (o->tcp_enable) KD_INFO("status: TCP on %s port %d (token required)", o->tcp_host, s->tcp_port);
    *out = s;
    return KD_OK;
fail:
    if (s->unix_fd >= 0) {
        close(s->unix_fd);
        kd_status_unlink_unix(o->unix_path, s->sock_dev, s->sock_ino);
    }
    if (s->tcp_fd >= 0) close(s->tcp_fd);
    if (s->epfd >= 0) close(s->epfd);
    if (s->wakefd >= 0) close(s->wakefd);
    free(s->config_text);
    free(s);
    return st;
}

void kd_status_server_stop(kd_status_server *s)
{
    if (!s) return;
    kd_control_board_set_wake(s->board, NULL, NULL); /* no trainer call can reach s now */
    atomic_store(&s->stopping, true);
    wake_loop(s);
    if (s->thread_started) pthread_join(s->thread, NULL);
    close(s->unix_fd);
    kd_status_unlink_unix(s->o.unix_path, s->sock_dev, s->sock_ino);
    if (s->tcp_fd >= 0) close(s->tcp_fd);
    close(s->epfd);
    close(s->wakefd);
    memset(s->o.token, 0, sizeof s->o.token);
    free(s->config_text);
    free(s);
}
