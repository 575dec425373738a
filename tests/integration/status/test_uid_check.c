/* test_uid_check.c — the Unix status socket serves only the job's own user and root
 * (issue #9: SO_PEERCRED check plus a 0600 socket).
 *
 * Needs root, to act as other users (skipped, exit 77, otherwise). Clients are forked
 * processes that switch uid; to test the SO_PEERCRED check by itself, a client may keep
 * CAP_DAC_OVERRIDE after switching, which gets it past the file mode so that only the
 * server's uid check can refuse it.
 *   1. job run by root: root is served; uid 65534 is refused by mode 0600 (EACCES), and
 *      with DAC override by the uid check (ERR EPERM).
 *   2. job run by uid 65534 (a forked child that drops privileges before starting the
 *      coordinator): uid 65534 and root are served; uid 65533 is refused (EACCES, and
 *      ERR EPERM with DAC override).
 * Every child has an alarm, so a hang fails the test instead of blocking it.
 */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../unit/kd_test.h"
#include "daemon/coordinator.h"

enum { UID_A = 65534, UID_B = 65533 };

static char g_base[256];

static int become(uid_t uid, int keep_dac_override)
{
    if (uid == 0) return 0;
    if (keep_dac_override && prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) != 0) return -1;
    if (setgroups(0, NULL) != 0 || setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0)
        return -1;
    if (keep_dac_override) {
        struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct d[2];
        if (syscall(SYS_capget, &h, d) != 0) return -1;
        d[0].effective |= 1u << CAP_DAC_OVERRIDE;
        if (syscall(SYS_capset, &h, d) != 0) return -1;
    }
    return 0;
}

/* Fork a client as uid; returns its reply ("pong:1...", "ERR EPERM ...") or
 * "connect: <error>" in out. */
static void client_as(uid_t uid, int dac, const char *path, char *out, size_t cap)
{
    int p[2];
    out[0] = '\0';
    if (pipe(p) != 0) { snprintf(out, cap, "pipe failed"); return; }
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        alarm(5);
        char reply[512] = "";
        if (become(uid, dac) != 0) {
            snprintf(reply, sizeof reply, "become: %s", strerror(errno));
        } else {
            int fd = socket(AF_UNIX, SOCK_STREAM, 0);
            struct sockaddr_un a = {.sun_family = AF_UNIX};
            snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
            if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
                snprintf(reply, sizeof reply, "connect: %s", strerror(errno));
            } else {
                (void)!write(fd, "ping\n", 5);
                size_t len = 0;
                ssize_t n;
                while (len + 1 < sizeof reply && (n = read(fd, reply + len, sizeof reply - 1 - len)) > 0)
                    len += (size_t)n;
                reply[len] = '\0';
            }
        }
        (void)!write(p[1], reply, strlen(reply));
        _exit(0);
    }
    close(p[1]);
    size_t len = 0;
    ssize_t n;
    while (len + 1 < cap && (n = read(p[0], out + len, cap - 1 - len)) > 0) len += (size_t)n;
    out[len] = '\0';
    close(p[0]);
    waitpid(pid, NULL, 0);
    fprintf(stderr, "  uid %u%s -> %.60s\n", (unsigned)uid, dac ? " (+dac_override)" : "", out);
}

static kd_coord *start_job(const char *wd, kd_err *err)
{
    kd_coord_opts o;
    kd_coord_opts_defaults(&o);
    snprintf(o.work_dir, sizeof o.work_dir, "%s", wd);
    o.config_text = "work_dir: x\n";
    kd_coord *c = NULL;
    if (kd_coord_start(&c, &o, err) != KD_OK) return NULL;
    kd_job_status st;
    kd_job_status_init(&st);
    st.state = KD_JOB_RUNNING;
    kd_control_board_publish(kd_coord_board(c), &st);
    return c;
}

static void test_job_as_root(void)
{
    char wd[300], path[400], r[512];
    snprintf(wd, sizeof wd, "%s/root-job", g_base);
    KD_REQUIRE(mkdir(wd, 0711) == 0); /* traversable: only the socket mode guards */
    kd_err err = {0};
    kd_coord *c = start_job(wd, &err);
    KD_REQUIRE(c != NULL);
    snprintf(path, sizeof path, "%s", kd_coord_socket_path(c));
    struct stat sb;
    KD_EXPECT(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    client_as(0, 0, path, r, sizeof r);
    KD_EXPECT_STR_CONTAINS(r, "pong:1");
    client_as(UID_A, 0, path, r, sizeof r);
    KD_EXPECT_STR_CONTAINS(r, "connect: Permission denied");
    client_as(UID_A, 1, path, r, sizeof r);
    KD_EXPECT(strncmp(r, "ERR EPERM ", 10) == 0);
    kd_coord_shutdown(c);
    KD_EXPECT(stat(path, &sb) != 0); /* the socket file is removed */
}

static void test_job_as_other_user(void)
{
    char wd[300], path[400], r[512];
    snprintf(wd, sizeof wd, "%s/user-job", g_base);
    snprintf(path, sizeof path, "%s/crosskd.sock", wd);
    KD_REQUIRE(mkdir(wd, 0711) == 0 && chown(wd, UID_A, UID_A) == 0);
    int ready[2], done[2];
    KD_REQUIRE(pipe(ready) == 0 && pipe(done) == 0);
    pid_t job = fork();
    if (job == 0) {
        alarm(20);
        close(ready[0]);
        close(done[1]);
        kd_err err = {0};
        kd_coord *c = become(UID_A, 0) == 0 ? start_job(wd, &err) : NULL;
        if (!c) fprintf(stderr, "job as uid %d: %s\n", UID_A, err.msg);
        (void)!write(ready[1], c ? "1" : "0", 1);
        char b;
        (void)!read(done[0], &b, 1);
        kd_coord_shutdown(c);
        _exit(c ? 0 : 1);
    }
    close(ready[1]);
    close(done[0]);
    char ok = '0';
    (void)!read(ready[0], &ok, 1);
    KD_EXPECT(ok == '1');
    if (ok == '1') {
        struct stat sb;
        KD_EXPECT(stat(path, &sb) == 0 && sb.st_uid == UID_A && (sb.st_mode & 0777) == 0600);
        client_as(UID_A, 0, path, r, sizeof r);
        KD_EXPECT_STR_CONTAINS(r, "pong:1");
        client_as(0, 0, path, r, sizeof r);
        KD_EXPECT_STR_CONTAINS(r, "pong:1");
        client_as(UID_B, 0, path, r, sizeof r);
        KD_EXPECT_STR_CONTAINS(r, "connect: Permission denied");
        client_as(UID_B, 1, path, r, sizeof r);
        KD_EXPECT(strncmp(r, "ERR EPERM ", 10) == 0);
    }
    (void)!write(done[1], "x", 1);
    int status = 0;
    waitpid(job, &status, 0);
    KD_EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "uid-check needs root to act as other users; skipped\n");
        return KD_TEST_SKIP;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *tmp = getenv("TMPDIR");
    snprintf(g_base, sizeof g_base, "%s/kduid.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_base)) { perror("mkdtemp"); return 1; }
    chmod(g_base, 0711); /* other users may traverse, not list */
    KD_TEST_RUN(test_job_as_root);
    KD_TEST_RUN(test_job_as_other_user);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_base);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_base);
    return kd_test_summary();
}
