/* status_probe.c — misbehaving and massed clients for the status-socket tests (issue #9).
 *
 *   status_probe ADDR garbage | oversized | slow | noread N | many N | busy N MAX | vanish N | raw TEXT
 *   status_probe ADDR stall N VERB FULL_BYTES HOLD_SECONDS
 *   status_probe json-get PATH < reply.json
 *
 * ADDR is a Unix socket path or tcp:HOST:PORT. Each mode asserts what the server must do
 * (an `ERR <CODE>` line and a close, a timeout, a reply) within a bounded time, prints one
 * line per check and exits 0 only when every check held. `raw` sends TEXT (with \n
 * escapes) and prints the reply. `json-get` prints the value at a dotted path (array
 * items by index) of a JSON document, failing when it is not valid JSON.
 */
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int g_failures;
#define CHECK(cond, ...)                                            \
    do {                                                            \
        bool ok_ = (cond);                                          \
        printf("%s ", ok_ ? "ok  " : "FAIL");                       \
        printf(__VA_ARGS__);                                        \
        printf("\n");                                               \
        if (!ok_) g_failures++;                                     \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static int dial(const char *addr)
{
    if (strncmp(addr, "tcp:", 4) == 0) {
        char host[256];
        snprintf(host, sizeof host, "%s", addr + 4);
        char *colon = strrchr(host, ':');
        if (!colon) return -1;
        *colon = '\0';
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        if (getaddrinfo(host, colon + 1, &hints, &res) != 0) return -1;
        int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) { close(fd); fd = -1; }
        freeaddrinfo(res);
        return fd;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", addr);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); fd = -1; }
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0) return; /* the server may close first: that is allowed */
        c += w;
        n -= (size_t)w;
    }
}

/* Read until EOF or timeout; returns bytes read (reply NUL-terminated), -1 on timeout. */
static long read_reply(int fd, char *buf, size_t cap, double timeout_s)
{
    size_t len = 0;
    double end = now_s() + timeout_s;
    for (;;) {
        double left = end - now_s();
        if (left <= 0) { buf[len] = '\0'; return -1; }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0) continue;
        char tmp[4096];
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        size_t keep = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;
        memcpy(buf + len, tmp, keep);
        len += keep;
    }
    buf[len] = '\0';
    return (long)len;
}

/* One connection: send bytes, expect an `ERR <code>` reply and a close within 5 s. */
static void expect_err_hc(const char *addr, const char *what, const void *bytes, size_t n,
                          const char *code, bool half_close)
{
    int fd = dial(addr);
    if (fd < 0) { CHECK(false, "%s: connect", what); return; }
    send_all(fd, bytes, n);
    if (half_close) shutdown(fd, SHUT_WR);
    char reply[4096];
    double t0 = now_s();
    long got = read_reply(fd, reply, sizeof reply, 5.0);
    close(fd);
    char want[64];
    snprintf(want, sizeof want, "ERR %s ", code);
    bool one_line = got > 0 && strchr(reply, '\n') == reply + got - 1;
    if (one_line) reply[got - 1] = '\0';
    CHECK(one_line && strncmp(reply, want, strlen(want)) == 0,
          "%s: one-line %s reply and close in %.2f s (got: %.70s)", what, code, now_s() - t0,
          got > 0 ? reply : "(nothing)");
}

static void expect_err(const char *addr, const char *what, const void *bytes, size_t n,
                       const char *code)
{
    expect_err_hc(addr, what, bytes, n, code, false);
}

static void mode_garbage(const char *addr)
{
    expect_err(addr, "empty line", "\n", 1, "EPARSE");
    expect_err(addr, "unknown verb", "launch-missiles\n", 16, "EVERB");
    expect_err(addr, "unknown option", "status --yaml\n", 14, "EARG");
    expect_err(addr, "too many words", "status --json --json --json --json\n", 35, "EARG");
    expect_err(addr, "NUL byte", "sta\0tus\n", 8, "EPARSE");
    expect_err(addr, "escape sequence", "\033[2Jstatus\n", 11, "EPARSE");
    expect_err(addr, "invalid UTF-8", "st\xff\xfe\n", 5, "EPARSE");
    expect_err(addr, "AUTH on the Unix socket", "AUTH x\nstatus\n", 14, "EARG");
    expect_err(addr, "HTTP request", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 34, "EVERB");
    unsigned seed = 12345;
    for (int i = 0; i < 20; i++) {
        char junk[200];
        size_t n = 1 + (size_t)(rand_r(&seed) % 150);
        for (size_t k = 0; k < n; k++) junk[k] = (char)(rand_r(&seed) & 0xff);
        junk[n] = '\n';
        int fd = dial(addr);
        if (fd < 0) { CHECK(false, "random junk %d: connect", i); continue; }
        send_all(fd, junk, n + 1);
        char reply[4096];
        long got = read_reply(fd, reply, sizeof reply, 5.0);
        close(fd);
        /* Random bytes: an error line, or a reply if the junk happened to be a request;
         * in any case the server answers and closes. */
        CHECK(got > 0, "random junk %d (%zu bytes): answered and closed", i, n + 1);
    }
    expect_err_hc(addr, "no newline, then EOF", "status", 6, "EPARSE", true);
}

static void mode_oversized(const char *addr)
{
    char line[700];
    memset(line, 'a', sizeof line);
    memcpy(line, "status ", 7);
    line[sizeof line - 1] = '\n';
    expect_err(addr, "700-byte line", line, sizeof line, "ETOOLONG");
    size_t big_bytes = 1 << 20;
    char *big = malloc(big_bytes);
    memset(big, 'x', big_bytes);
    expect_err(addr, "1 MiB without a newline", big, big_bytes, "ETOOLONG");
    /* many short lines: only one request per connection, the rest is over the limit */
    for (size_t i = 0; i + 1 < big_bytes; i += 2) { big[i] = ' '; big[i + 1] = '\n'; }
    expect_err(addr, "lines of blanks", big, 4096, "EPARSE");
    free(big);
    char tok[400];
    memset(tok, 'k', sizeof tok);
    memcpy(tok, "AUTH ", 5);
    tok[sizeof tok - 1] = '\n';
    expect_err(addr, "400-byte AUTH token", tok, sizeof tok, "ETOOLONG");
}

/* One byte per second: the server must give up at its request timeout. */
static void mode_slow(const char *addr)
{
    int fd = dial(addr);
    if (fd < 0) { CHECK(false, "slow: connect"); return; }
    const char *req = "status --json\n";
    double t0 = now_s();
    char reply[4096] = "";
    long got = 0;
    bool answered = false;
    for (size_t i = 0; i < strlen(req) && now_s() - t0 < 20; i++) {
        send_all(fd, req + i, 1);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1000) > 0) { answered = true; break; }
    }
    if (answered) got = read_reply(fd, reply, sizeof reply, 5.0);
    close(fd);
    double dt = now_s() - t0;
    CHECK(answered && got > 0 && strncmp(reply, "ERR ETIMEOUT ", 13) == 0,
          "slow client: ERR ETIMEOUT after %.1f s (got: %.60s)", dt, got > 0 ? reply : "(nothing)");
    CHECK(dt < 12, "slow client: dropped in bounded time (%.1f s)", dt);
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max < 8192 ? rl.rlim_max : 8192;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* A normal request must be answered quickly even while the others misbehave. */
static void check_served(const char *addr, const char *what)
{
    double t0 = now_s();
    int fd = dial(addr);
    char reply[65536] = "";
    long got = -1;
    if (fd >= 0) {
        send_all(fd, "status\n", 7);
        got = read_reply(fd, reply, sizeof reply, 5.0);
        close(fd);
    }
    CHECK(got > 0 && strstr(reply, "# Progress") && now_s() - t0 < 2.0,
          "%s: a well-behaved client is served in %.3f s", what, now_s() - t0);
}

static void mode_noread(const char *addr, int n)
{
    raise_nofile();
    int *fds = calloc((size_t)(2 * n), sizeof *fds);
    int opened = 0;
    for (int i = 0; i < 2 * n; i++) {
        fds[i] = dial(addr);
        if (fds[i] < 0) continue;
        opened++;
        int small = 1024;
        setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        if (i < n) send_all(fds[i], i % 2 ? "metrics\n" : "status --json\n", i % 2 ? 8 : 14);
        /* the other half connect and send nothing */
    }
    CHECK(opened == 2 * n, "noread: %d of %d connections open", opened, 2 * n);
    check_served(addr, "noread");
    /* Now every connection must be closed by the server (after its reply, or at the
     * request timeout for the silent half) within a bounded time. */
    double t0 = now_s();
    int closed = 0;
    for (int i = 0; i < 2 * n; i++) {
        if (fds[i] < 0) continue;
        char buf[1 << 16];
        long got = read_reply(fds[i], buf, sizeof buf, 15.0 - (now_s() - t0));
        if (got >= 0) closed++;
        close(fds[i]);
    }
    CHECK(closed == opened, "noread: the server closed %d of %d connections in %.1f s", closed,
          opened, now_s() - t0);
    free(fds);
}

/* Clients that ask for a large reply and never read it: the server's send blocks, so it
 * must give up at its write timeout and close, delivering less than the whole reply. */
static void mode_stall(const char *addr, int n, const char *verb, long full_bytes, double hold_s)
{
    raise_nofile();
    int *fds = calloc((size_t)n, sizeof *fds);
    int opened = 0;
    for (int i = 0; i < n; i++) {
        if ((fds[i] = dial(addr)) < 0) continue;
        opened++;
        send_all(fds[i], verb, strlen(verb));
        send_all(fds[i], "\n", 1);
    }
    CHECK(opened == n, "stall: %d of %d connections open", opened, n);
    check_served(addr, "stall");
    sleep_s(hold_s); /* past the server's write timeout, without reading */
    check_served(addr, "stall, after the timeout");
    int truncated = 0;
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        if (fds[i] < 0) continue;
        static char buf[1 << 21];
        long got = read_reply(fds[i], buf, sizeof buf, 5.0);
        if (got >= 0 && got < full_bytes) truncated++;
        close(fds[i]);
    }
    CHECK(truncated == opened, "stall: the server gave up on %d of %d non-reading clients (%.1f s to drain)",
          truncated, opened, now_s() - t0);
    free(fds);
}

static void mode_many(const char *addr, int n)
{
    raise_nofile();
    int *fds = calloc((size_t)n, sizeof *fds);
    double t0 = now_s();
    int opened = 0, ok = 0;
    for (int i = 0; i < n; i++)
        if ((fds[i] = dial(addr)) >= 0) opened++;
    check_served(addr, "many, all connected");
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) send_all(fds[i], i % 3 ? "ping\n" : "status\n", i % 3 ? 5 : 7);
    for (int i = 0; i < n; i++) {
        if (fds[i] < 0) continue;
        char buf[65536];
        long got = read_reply(fds[i], buf, sizeof buf, 10.0);
        if (got > 0 && (strstr(buf, "pong:1") || strstr(buf, "# Progress"))) ok++;
        close(fds[i]);
    }
    CHECK(opened == n, "many: %d of %d simultaneous connections", opened, n);
    CHECK(ok == n, "many: %d of %d answered in %.2f s", ok, n, now_s() - t0);
    free(fds);
}

static void mode_busy(const char *addr, int n, int max)
{
    raise_nofile();
    int *fds = calloc((size_t)n, sizeof *fds);
    int ok = 0, busy = 0, other = 0;
    for (int i = 0; i < n; i++) fds[i] = dial(addr);
    sleep_s(0.5); /* the server accepts all; those past max_clients are refused at once */
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) send_all(fds[i], "ping\n", 5);
    for (int i = 0; i < n; i++) {
        if (fds[i] < 0) { other++; continue; }
        char buf[4096];
        long got = read_reply(fds[i], buf, sizeof buf, 10.0);
        if (got > 0 && strstr(buf, "pong:1")) ok++;
        else if (got > 0 && strncmp(buf, "ERR EBUSY ", 10) == 0) busy++;
        else other++;
        close(fds[i]);
    }
    CHECK(ok == max && busy == n - max && other == 0,
          "busy: %d served (want %d), %d ERR EBUSY (want %d), %d other", ok, max, busy, n - max, other);
    check_served(addr, "busy");
    free(fds);
}

/* Clients that go away mid-conversation, N of each kind: connect and close at once; send
 * a request and close without reading the reply; send half a request and close; send a
 * request and reset the connection (SO_LINGER 0). The server must drop them all and keep
 * serving. */
static void mode_vanish(const char *addr, int n)
{
    static const char *const what[4] = {"connect and close", "request, close unread", "half a request",
                                        "request, then reset"};
    for (int kind = 0; kind < 4; kind++) {
        int opened = 0;
        for (int i = 0; i < n; i++) {
            int fd = dial(addr);
            if (fd < 0) continue;
            opened++;
            if (kind == 1) send_all(fd, i % 2 ? "status --json\n" : "config\n", i % 2 ? 14 : 7);
            if (kind == 2) send_all(fd, "metr", 4);
            if (kind == 3) {
                send_all(fd, "metrics\n", 8);
                struct linger lg = {1, 0};
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            }
            close(fd);
        }
        CHECK(opened == n, "vanish (%s): %d of %d connections made", what[kind], opened, n);
        check_served(addr, what[kind]);
    }
}

static void mode_raw(const char *addr, const char *text)
{
    char buf[4096];
    size_t n = 0;
    for (const char *p = text; *p && n + 1 < sizeof buf; p++) {
        if (p[0] == '\\' && p[1] == 'n') { buf[n++] = '\n'; p++; }
        else buf[n++] = *p;
    }
    int fd = dial(addr);
    if (fd < 0) { fprintf(stderr, "status_probe: cannot connect to %s\n", addr); exit(3); }
    send_all(fd, buf, n);
    char reply[1 << 16];
    long got = read_reply(fd, reply, sizeof reply, 10.0);
    close(fd);
    if (got < 0) { fprintf(stderr, "status_probe: no reply in time\n"); exit(1); }
    fputs(reply, stdout);
    exit(0);
}

static int json_get(const char *path)
{
    json_error_t je;
    json_t *root = json_loadf(stdin, 0, &je);
    if (!root) { fprintf(stderr, "json-get: invalid JSON: %s (line %d)\n", je.text, je.line); return 1; }
    json_t *cur = root;
    char p[512];
    snprintf(p, sizeof p, "%s", path);
    for (char *save = NULL, *k = strtok_r(p, ".", &save); k && cur; k = strtok_r(NULL, ".", &save))
        cur = json_is_array(cur) ? json_array_get(cur, (size_t)atoi(k)) : json_object_get(cur, k);
    if (!cur) { fprintf(stderr, "json-get: no %s\n", path); json_decref(root); return 1; }
    if (json_is_string(cur)) printf("%s\n", json_string_value(cur));
    else {
        char *s = json_dumps(cur, JSON_ENCODE_ANY);
        printf("%s\n", s);
        free(s);
    }
    json_decref(root);
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && !strcmp(argv[1], "json-get")) return json_get(argv[2]);
    if (argc < 3) {
        fprintf(stderr, "usage: status_probe ADDR garbage|oversized|slow|noread N|many N|busy N MAX|vanish N|raw TEXT\n"
                        "       status_probe json-get PATH < file.json\n");
        return 2;
    }
    const char *addr = argv[1], *mode = argv[2];
    if (!strcmp(mode, "garbage")) mode_garbage(addr);
    else if (!strcmp(mode, "oversized")) mode_oversized(addr);
    else if (!strcmp(mode, "slow")) mode_slow(addr);
    else if (!strcmp(mode, "noread") && argc == 4) mode_noread(addr, atoi(argv[3]));
    else if (!strcmp(mode, "many") && argc == 4) mode_many(addr, atoi(argv[3]));
    else if (!strcmp(mode, "stall") && argc == 7)
        mode_stall(addr, atoi(argv[3]), argv[4], atol(argv[5]), atof(argv[6]));
    else if (!strcmp(mode, "busy") && argc == 5) mode_busy(addr, atoi(argv[3]), atoi(argv[4]));
    else if (!strcmp(mode, "raw") && argc == 4) mode_raw(addr, argv[3]);
    else if (!strcmp(mode, "vanish") && argc == 4) mode_vanish(addr, atoi(argv[3]));
    else { fprintf(stderr, "status_probe: bad mode\n"); return 2; }
    printf("%d failed checks\n", g_failures);
    return g_failures ? 1 : 0;
}
