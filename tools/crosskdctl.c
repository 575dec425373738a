/* crosskdctl — talks to a running job's status socket on rank 0 (DESIGN.md §2, issue #9).
 *
 *   crosskdctl [--socket PATH | --work-dir DIR | --host H --port P --token-file F]
 *              [--json] [--timeout S] [--interval S] [--count N] VERB
 *
 * The socket is --socket, else $CROSSKD_SOCKET, else <work-dir>/crosskd.sock (work-dir
 * default: work_dirs/default). With --host/--port the client speaks TCP and sends
 * `AUTH <token>` (from --token-file) before the request. The protocol is in
 * proto/STATUS_PROTOCOL.md: one request line, the reply is read until the server closes.
 *
 * Exit status: 0 ok; 1 the server answered with an error (`ERR <CODE> <message>`, printed
 * on stderr); 2 usage; 3 cannot connect, or the connection failed or timed out.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "kd_build_config.h"
#include "proto/status_proto.h"

enum { EXIT_REPLY_ERR = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3 };

static const struct { const char *verb, *doc; } k_verbs[] = {
    {"status", "job, progress, losses, lr, images/s, ETA, memory, checkpoint, AP, per-rank state"},
    {"watch", "status refreshed in place every --interval seconds until interrupted"},
    {"checkpoint", "save at the next step boundary; answers when it is on disk"},
    {"stop", "checkpoint, then exit every rank cleanly; answers when the job has stopped"},
    {"pause", "hold every rank at the next step boundary; answers when all are held"},
    {"resume", "continue after pause"},
    {"metrics", "Prometheus text exposition"},
    {"config", "the effective config as YAML"},
    {"ping", "check that the job answers"},
};

typedef struct ctl_args {
    const char *sock_path, *work_dir, *host, *port, *token_file, *verb;
    bool json;
    double timeout_s, interval_s;
    long count;
} ctl_args;

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) { (void)sig; g_interrupted = 1; }

static void usage(FILE *out)
{
    fprintf(out,
            "usage: crosskdctl [--socket PATH | --work-dir DIR | --host H --port P --token-file F]\n"
            "                  [--json] [--timeout S] [--interval S] [--count N] VERB\n\nverbs:\n");
    for (size_t i = 0; i < sizeof k_verbs / sizeof k_verbs[0]; i++)
        fprintf(out, "  %-11s %s\n", k_verbs[i].verb, k_verbs[i].doc);
    fprintf(out,
            "\noptions:\n"
            "  --socket PATH      the job's Unix socket (default $CROSSKD_SOCKET, else\n"
            "                     <work-dir>/crosskd.sock)\n"
            "  --work-dir DIR     the job's work_dir (default work_dirs/default)\n"
            "  --host H --port P  TCP instead (status.tcp.* in the job's config)\n"
            "  --token-file F     file holding the TCP token (mode 0600)\n"
            "  --json             reply as one JSON object\n"
            "  --timeout S        give up after S seconds (default 30; 3600 for checkpoint,\n"
            "                     stop, pause, resume)\n"
            "  --interval S       watch: seconds between refreshes (default 1)\n"
            "  --count N          watch: stop after N refreshes (default: until Ctrl-C)\n"
            "\nexit status: 0 ok, 1 the job answered with an error, 2 usage, 3 cannot connect\n"
            "(or the connection failed or timed out)\n");
}

static kd_status_verb verb_of(const char *v)
{
    for (int i = KD_VERB_STATUS; i < KD_VERB_COUNT; i++)
        if (strcmp(kd_status_verb_name((kd_status_verb)i), v) == 0) return (kd_status_verb)i;
    return KD_VERB_NONE;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0) || v > 1e7) return -1;
    *out = v;
    return 0;
}

/* Connect; on failure print "cannot connect to ..." and return -1. */
static int ctl_connect(const ctl_args *a, char *where, size_t where_cap)
{
    if (a->host) {
        snprintf(where, where_cap, "%s:%s", a->host, a->port);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_NUMERICSERV};
        struct addrinfo *res = NULL;
        int gai = getaddrinfo(a->host, a->port, &hints, &res);
        if (gai != 0) {
            fprintf(stderr, "crosskdctl: cannot connect to %s: %s\n", where, gai_strerror(gai));
            return -1;
        }
        int fd = -1, e = 0;
        for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
            fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
            if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
                e = errno;
                close(fd);
                fd = -1;
            }
        }
        freeaddrinfo(res);
        if (fd < 0) fprintf(stderr, "crosskdctl: cannot connect to %s: %s\n", where, strerror(e));
        return fd;
    }
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int n = a->sock_path ? snprintf(path, sizeof path, "%s", a->sock_path)
                         : snprintf(path, sizeof path, "%s/%s", a->work_dir, KD_STATUS_SOCKET_NAME);
    snprintf(where, where_cap, "%s", a->sock_path ? a->sock_path : path);
    if (n < 0 || (size_t)n >= sizeof path) {
        fprintf(stderr, "crosskdctl: cannot connect to %s: path longer than %zu bytes\n", where,
                sizeof path - 1);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, path, (size_t)n + 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        fprintf(stderr, "crosskdctl: cannot connect to %s: %s (is a job running with this work_dir?)\n",
                where, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static int read_token(const char *path, char *token, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "crosskdctl: token file %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t n = fread(token, 1, cap - 1, f);
    fclose(f);
    while (n > 0 && (token[n - 1] == '\n' || token[n - 1] == '\r' || token[n - 1] == ' ')) n--;
    token[n] = '\0';
    return 0;
}

/* One request; the reply (NUL-terminated) goes to *reply. Returns an exit status. */
static int ctl_request(const ctl_args *a, kd_status_verb verb, kd_sbuf *reply)
{
    char where[300], req[KD_STATUS_REQUEST_MAX_BYTES];
    int len = 0;
    if (a->host) {
        char token[KD_STATUS_TOKEN_MAX_BYTES + 2];
        if (read_token(a->token_file, token, sizeof token) != 0) return EXIT_USAGE;
        len = kd_status_proto_format_auth(req, sizeof req, token);
        memset(token, 0, sizeof token);
        if (len < 0) {
            fprintf(stderr, "crosskdctl: token file %s: not one word of printable ASCII of at most %d bytes\n",
                    a->token_file, KD_STATUS_TOKEN_MAX_BYTES);
            return EXIT_USAGE;
        }
    }
    int n = kd_status_proto_format_request(req + len, sizeof req - (size_t)len, verb, a->json);
    if (n < 0) return EXIT_USAGE;
    len += n;
    int fd = ctl_connect(a, where, sizeof where);
    if (fd < 0) return EXIT_CONNECT;
    /* A server that refuses at once (ERR EPERM, ERR EBUSY) answers and closes before the
     * request is written: the write then fails, but the answer is there to be read. */
    int write_errno = 0;
    for (int off = 0; off < len;) {
        ssize_t w = send(fd, req + off, (size_t)(len - off), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            write_errno = w < 0 ? errno : EPIPE;
            break;
        }
        off += (int)w;
    }
    memset(req, 0, sizeof req);
    double deadline = now_s() + a->timeout_s;
    kd_sbuf_reset(reply);
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0 || g_interrupted) {
            if (!g_interrupted) /* watch stops quietly on Ctrl-C */
                fprintf(stderr, "crosskdctl: %s: no complete reply in time (see --timeout)\n", where);
            close(fd);
            return EXIT_CONNECT;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, left > 0.25 ? 250 : (int)(left * 1000) + 1);
        if (pr < 0 && errno != EINTR) break;
        if (pr <= 0) continue;
        char buf[8192];
        ssize_t got = read(fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && write_errno) break; /* reported below */
        /* A refusal (ERR EPERM, ERR EBUSY) is sent by a server that closes without reading
         * the request: after the reply the connection reads as reset, not as end of file. */
        if (got < 0 && errno == ECONNRESET && reply->len > 0) break;
        if (got < 0) {
            fprintf(stderr, "crosskdctl: read from %s failed: %s\n", where, strerror(errno));
            close(fd);
            return EXIT_CONNECT;
        }
        if (got == 0) break;
        kd_sbuf_append(reply, buf, (size_t)got);
    }
    close(fd);
    if ((!reply->data || reply->len == 0) && write_errno) {
        fprintf(stderr, "crosskdctl: write to %s failed: %s\n", where, strerror(write_errno));
        return EXIT_CONNECT;
    }
    if (!reply->data || reply->len == 0) {
        fprintf(stderr, "crosskdctl: %s closed the connection without a reply\n", where);
        return EXIT_CONNECT;
    }
    if (strncmp(reply->data, "ERR ", 4) == 0) return EXIT_REPLY_ERR;
    return 0;
}

static int run_watch(const ctl_args *a, kd_sbuf *reply)
{
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    for (long i = 0; !g_interrupted && (a->count <= 0 || i < a->count); i++) {
        int rc = ctl_request(a, KD_VERB_STATUS, reply);
        if (g_interrupted) break;
        if (rc == EXIT_CONNECT || rc == EXIT_USAGE) return rc;
        char stamp[64];
        time_t t = time(NULL);
        strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", localtime(&t));
        /* home the cursor and clear the screen, then draw the whole status */
        printf("\033[H\033[2Jcrosskdctl watch — %s (every %gs, Ctrl-C to stop)\n\n%s", stamp,
               a->interval_s, reply->data);
        fflush(stdout);
        double until = now_s() + a->interval_s;
        if (a->count > 0 && i + 1 >= a->count) break;
        while (!g_interrupted && now_s() < until) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    ctl_args a = {.sock_path = getenv("CROSSKD_SOCKET"), .work_dir = "work_dirs/default",
                  .timeout_s = 0, .interval_s = 1.0};
    if (a.sock_path && !*a.sock_path) a.sock_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) { usage(stdout); return 0; }
        if (!strcmp(arg, "--version")) { printf("crosskdctl %s\n", KD_VERSION); return 0; }
        if (!strcmp(arg, "--json")) { a.json = true; continue; }
        bool takes = !strcmp(arg, "--socket") || !strcmp(arg, "--work-dir") || !strcmp(arg, "--host") ||
                     !strcmp(arg, "--port") || !strcmp(arg, "--token-file") || !strcmp(arg, "--timeout") ||
                     !strcmp(arg, "--interval") || !strcmp(arg, "--count");
        if (takes && !val) {
            fprintf(stderr, "crosskdctl: %s needs a value (see --help)\n", arg);
            return EXIT_USAGE;
        }
        if (takes) {
            i++;
            if (!strcmp(arg, "--socket")) a.sock_path = val;
            else if (!strcmp(arg, "--work-dir")) { a.work_dir = val; a.sock_path = NULL; }
            else if (!strcmp(arg, "--host")) a.host = val;
            else if (!strcmp(arg, "--port")) a.port = val;
            else if (!strcmp(arg, "--token-file")) a.token_file = val;
            else if (!strcmp(arg, "--count")) {
                char *end;
                a.count = strtol(val, &end, 10);
                if (*end || a.count < 1) { fprintf(stderr, "crosskdctl: bad --count '%s'\n", val); return EXIT_USAGE; }
            } else if (parse_double(val, !strcmp(arg, "--timeout") ? &a.timeout_s : &a.interval_s) != 0) {
                fprintf(stderr, "crosskdctl: bad %s '%s' (seconds > 0)\n", arg, val);
                return EXIT_USAGE;
            }
            continue;
        }
        if (arg[0] == '-' || a.verb) {
            fprintf(stderr, "crosskdctl: unexpected argument '%s' (see --help)\n", arg);
            return EXIT_USAGE;
        }
        a.verb = arg;
    }
    bool watch = a.verb && !strcmp(a.verb, "watch");
    kd_status_verb verb = a.verb && !watch ? verb_of(a.verb) : KD_VERB_NONE;
    if (!a.verb || (!watch && verb == KD_VERB_NONE)) {
        usage(stderr);
        if (a.verb) fprintf(stderr, "crosskdctl: unknown verb '%s'\n", a.verb);
        return EXIT_USAGE;
    }
    if ((a.host || a.port || a.token_file) && !(a.host && a.port && a.token_file)) {
        fprintf(stderr, "crosskdctl: TCP needs --host, --port and --token-file together\n");
        return EXIT_USAGE;
    }
    if (a.timeout_s <= 0) {
        bool action = verb == KD_VERB_CHECKPOINT || verb == KD_VERB_STOP || verb == KD_VERB_PAUSE ||
                      verb == KD_VERB_RESUME;
        a.timeout_s = action ? 3600 : 30;
    }
    signal(SIGPIPE, SIG_IGN);
    kd_sbuf reply;
    kd_sbuf_init(&reply, KD_STATUS_REPLY_MAX_BYTES + 4096);
    int rc;
    if (watch) {
        rc = run_watch(&a, &reply);
    } else {
        rc = ctl_request(&a, verb, &reply);
        if (rc == 0) fwrite(reply.data, 1, reply.len, stdout);
        else if (rc == EXIT_REPLY_ERR) fprintf(stderr, "crosskdctl: %s", reply.data);
    }
    kd_sbuf_free(&reply);
    return rc;
}
