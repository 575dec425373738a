/* test_coord_config.c — kd_coord_start_config, the entry point the trainer calls with the
 * job's config (daemon/coordinator.h): socket placement from work_dir and status.socket,
 * the TCP listener from status.tcp.*, the effective config as the `config` reply, and
 * start-up errors that name the problem (long socket path, missing work_dir, bad token
 * file) and leave nothing behind, and signals reaching the trainer, not the server thread. Real sockets; the options come from worker/options.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <dirent.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../unit/kd_test.h"
#include "daemon/coordinator.h"

static char g_base[256];

/* Send one request over a Unix socket; returns the reply (malloc'd) or NULL. */
static char *ask_unix(const char *path, const char *req)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return NULL; }
    (void)!write(fd, req, strlen(req));
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    ssize_t n;
    while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0) len += (size_t)n;
    buf[len] = '\0';
    close(fd);
    return buf;
}

static char *ask_tcp(int port, const char *req)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return NULL; }
    (void)!write(fd, req, strlen(req));
    char *buf = calloc(1, 65536);
    size_t len = 0;
    ssize_t n;
    while (len + 1 < 65536 && (n = read(fd, buf + len, 65535 - len)) > 0) len += (size_t)n;
    close(fd);
    return buf;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &l) != 0) {
        close(fd);
        return 0;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* Find the thread named kd-status in /proc/self/task and check its blocked-signal mask. */
static bool server_thread_blocks_signals(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d) return false;
    bool found = false, blocked = false;
    struct dirent *e;
    while ((e = readdir(d)) && !found) {
        if (e->d_name[0] == '.') continue;
        char p[300], line[256];
        snprintf(p, sizeof p, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        bool is_server = fgets(line, sizeof line, f) && strncmp(line, "kd-status", 9) == 0;
        fclose(f);
        if (!is_server) continue;
        found = true;
        snprintf(p, sizeof p, "/proc/self/task/%s/status", e->d_name);
        f = fopen(p, "r");
        while (f && fgets(line, sizeof line, f)) {
            unsigned long long mask;
            if (sscanf(line, "SigBlk: %llx", &mask) == 1) {
                unsigned long long want = (1ull << (SIGINT - 1)) | (1ull << (SIGTERM - 1)) |
                                          (1ull << (SIGUSR1 - 1)) | (1ull << (SIGUSR2 - 1));
                blocked = (mask & want) == want;
            }
        }
        if (f) fclose(f);
    }
    closedir(d);
    if (!found) fprintf(stderr, "no thread named kd-status\n");
    return found && blocked;
}

static void load(kd_config *cfg, const char *const *sets, int n)
{
    kd_err err = {0};
    if (kd_options_load(cfg, NULL, sets, n, &err) != KD_OK) fprintf(stderr, "options: %s\n", err.msg);
}

static void test_default_socket_and_config_reply(void)
{
    char wd[300], set_wd[400], path[400];
    snprintf(wd, sizeof wd, "%s/wd1", g_base);
    KD_REQUIRE(mkdir(wd, 0700) == 0);
    snprintf(set_wd, sizeof set_wd, "work_dir=%s", wd);
    const char *sets[] = {set_wd, "train_cfg.max_epochs=7"};
    kd_config cfg;
    load(&cfg, sets, 2);
    kd_coord *c = NULL;
    kd_err err = {0};
    KD_REQUIRE(kd_coord_start_config(&c, &cfg, &err) == KD_OK);
    snprintf(path, sizeof path, "%s/crosskd.sock", wd);
    KD_EXPECT(strcmp(kd_coord_socket_path(c), path) == 0);
    KD_EXPECT(kd_coord_tcp_port(c) == 0);
    char *reply = ask_unix(path, "config\n");
    KD_REQUIRE(reply != NULL);
    /* the reply is exactly kd_config_dump of the job's config */
    char *dump = NULL;
    size_t dump_bytes = 0;
    FILE *f = open_memstream(&dump, &dump_bytes);
    kd_config_dump(kd_options_table(), &cfg, f);
    fclose(f);
    KD_EXPECT(strcmp(reply, dump) == 0);
    KD_EXPECT_STR_CONTAINS(reply, "max_epochs: 7");
    free(dump);
    free(reply);
    /* The server thread ("kd-status") blocks SIGINT, SIGTERM and SIGUSR1, so they reach
     * the trainer's threads. (Other libraries' threads, e.g. OpenBLAS's pool, are not
     * ours to check.) */
    KD_EXPECT(server_thread_blocks_signals());
    reply = ask_unix(path, "status\n"); /* nothing published yet */
    KD_EXPECT(reply && strncmp(reply, "ERR ENOTREADY ", 14) == 0);
    free(reply);
    kd_coord_shutdown(c);
    struct stat sb;
    KD_EXPECT(stat(path, &sb) != 0 && errno == ENOENT);
}

static void test_custom_socket_and_tcp(void)
{
    char wd[300], sock[300], tok[300], s1[400], s2[400], s3[400], s4[64];
    snprintf(wd, sizeof wd, "%s/wd2", g_base);
    snprintf(sock, sizeof sock, "%s/custom.sock", g_base);
    snprintf(tok, sizeof tok, "%s/token", g_base);
    KD_REQUIRE(mkdir(wd, 0700) == 0);
    int fd = open(tok, O_WRONLY | O_CREAT | O_EXCL, 0600);
    KD_REQUIRE(fd >= 0);
    (void)!write(fd, "tok-123\n", 8);
    close(fd);
    int port = free_port();
    KD_REQUIRE(port > 0);
    snprintf(s1, sizeof s1, "work_dir=%s", wd);
    snprintf(s2, sizeof s2, "status.socket=%s", sock);
    snprintf(s3, sizeof s3, "status.tcp.token_file=%s", tok);
    snprintf(s4, sizeof s4, "status.tcp.port=%d", port);
    const char *sets[] = {s1, s2, s3, s4};
    kd_config cfg;
    load(&cfg, sets, 4);
    kd_coord *c = NULL;
    kd_err err = {0};
    kd_status st = kd_coord_start_config(&c, &cfg, &err);
    if (st != KD_OK) fprintf(stderr, "start: %s\n", err.msg);
    KD_REQUIRE(st == KD_OK);
    KD_EXPECT(strcmp(kd_coord_socket_path(c), sock) == 0);
    KD_EXPECT(kd_coord_tcp_port(c) == port);
    kd_job_status js;
    kd_job_status_init(&js);
    js.world_size = 4;
    kd_control_board_publish(kd_coord_board(c), &js);
    char *r = ask_tcp(port, "AUTH tok-123\nstatus --json\n");
    KD_EXPECT(r && strstr(r, "\"world_size\":4"));
    free(r);
    r = ask_tcp(port, "AUTH tok-12\nping\n");
    KD_EXPECT(r && strncmp(r, "ERR EAUTH ", 10) == 0);
    free(r);
    r = ask_unix(sock, "ping\n");
    KD_EXPECT(r && strstr(r, "pong:1"));
    free(r);
    kd_coord_shutdown(c);
}

static void test_start_errors(void)
{
    kd_config cfg;
    kd_coord *c = NULL;
    kd_err err = {0};
    char s1[700], s2[400];
    /* a socket path over sun_path's 107 bytes */
    snprintf(s1, sizeof s1, "work_dir=%s/%0120d", g_base, 0);
    const char *sets1[] = {s1};
    load(&cfg, sets1, 1);
    KD_EXPECT(kd_coord_start_config(&c, &cfg, &err) == KD_EINVAL && c == NULL);
    KD_EXPECT_STR_CONTAINS(err.msg, "shorter path");
    /* a work_dir that does not exist */
    snprintf(s1, sizeof s1, "work_dir=%s/missing/dir", g_base);
    load(&cfg, sets1, 1);
    KD_EXPECT(kd_coord_start_config(&c, &cfg, &err) == KD_EIO && c == NULL);
    KD_EXPECT_STR_CONTAINS(err.msg, "missing/dir/crosskd.sock");
    /* TCP with a token file others can read */
    char wd[300], tok[300];
    snprintf(wd, sizeof wd, "%s/wd3", g_base);
    snprintf(tok, sizeof tok, "%s/open-token", g_base);
    KD_REQUIRE(mkdir(wd, 0700) == 0);
    int fd = open(tok, O_WRONLY | O_CREAT | O_EXCL, 0644);
    KD_REQUIRE(fd >= 0);
    (void)!write(fd, "abc\n", 4);
    fchmod(fd, 0644);
    close(fd);
    snprintf(s1, sizeof s1, "work_dir=%s", wd);
    snprintf(s2, sizeof s2, "status.tcp.token_file=%s", tok);
    const char *sets2[] = {s1, s2, "status.tcp.port=1"};
    load(&cfg, sets2, 3);
    KD_EXPECT(kd_coord_start_config(&c, &cfg, &err) == KD_EINVAL && c == NULL);
    KD_EXPECT_STR_CONTAINS(err.msg, "chmod 600");
    const char *sets3[] = {s1, "status.tcp.port=1"}; /* no token file at all */
    load(&cfg, sets3, 2);
    KD_EXPECT(kd_coord_start_config(&c, &cfg, &err) == KD_EINVAL && c == NULL);
    KD_EXPECT_STR_CONTAINS(err.msg, "token_file");
    char sock[400];
    snprintf(sock, sizeof sock, "%s/crosskd.sock", wd);
    KD_EXPECT(access(sock, F_OK) != 0); /* nothing left behind */
    KD_EXPECT(kd_coord_board(NULL) == NULL); /* other ranks: a NULL board is a no-op */
    kd_control ctl;
    kd_control_board_poll(NULL, &ctl);
    KD_EXPECT(ctl.flags == 0 && ctl.checkpoint_gen == 0);
    kd_coord_shutdown(NULL);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(g_base, sizeof g_base, "%s/kdcoord.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_base)) { perror("mkdtemp"); return 1; }
    KD_TEST_RUN(test_default_socket_and_config_reply);
    KD_TEST_RUN(test_custom_socket_and_tcp);
    KD_TEST_RUN(test_start_errors);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_base);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_base);
    return kd_test_summary();
}
