/* crosskdctl — talks to a running job's status socket on rank 0 (DESIGN.md §2).
 *
 *   crosskdctl [--socket PATH] [--json] VERB
 *
 * The socket is found from --socket, else $CROSSKD_SOCKET, else <work_dir>/crosskd.sock
 * with work_dir from --work-dir (default work_dirs/default). Requests are one line; the
 * reply is read until the server closes the connection.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "kd_build_config.h"

enum { EXIT_USAGE = 2, EXIT_CONNECT = 3 };

static const struct { const char *verb, *doc; } k_verbs[] = {
    {"status", "job, progress, losses, lr, images/s, ETA, memory, checkpoint, AP, per-rank state"},
    {"watch", "status refreshed in place until interrupted"},
    {"checkpoint", "save at the next step boundary; answers when it is on disk"},
    {"stop", "checkpoint, then exit every rank cleanly"},
    {"pause", "hold every rank at the next step boundary"},
    {"resume", "continue after pause"},
    {"metrics", "Prometheus text exposition"},
    {"config", "the effective config as YAML"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: crosskdctl [--socket PATH | --work-dir DIR] [--json] VERB\n\nverbs:\n");
    for (size_t i = 0; i < sizeof k_verbs / sizeof k_verbs[0]; i++)
        fprintf(out, "  %-11s %s\n", k_verbs[i].verb, k_verbs[i].doc);
    fprintf(out, "\nThe socket is --socket, else $CROSSKD_SOCKET, else <work-dir>/crosskd.sock\n"
                 "(work-dir default: work_dirs/default).\n");
}

static int known_verb(const char *v)
{
    for (size_t i = 0; i < sizeof k_verbs / sizeof k_verbs[0]; i++)
        if (strcmp(k_verbs[i].verb, v) == 0) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *sock_path = getenv("CROSSKD_SOCKET"), *work_dir = "work_dirs/default", *verb = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--version")) { printf("crosskdctl %s\n", KD_VERSION); return 0; }
        if (!strcmp(argv[i], "--json")) { json = 1; continue; }
        if ((!strcmp(argv[i], "--socket") || !strcmp(argv[i], "--work-dir")) && i + 1 < argc) {
            if (argv[i][2] == 's') sock_path = argv[++i];
            else { work_dir = argv[++i]; sock_path = NULL; }
            continue;
        }
        if (argv[i][0] == '-' || verb) {
            fprintf(stderr, "crosskdctl: unexpected argument '%s' (see --help)\n", argv[i]);
            return EXIT_USAGE;
        }
        verb = argv[i];
    }
    if (!verb || !known_verb(verb)) {
        usage(stderr);
        if (verb) fprintf(stderr, "crosskdctl: unknown verb '%s'\n", verb);
        return EXIT_USAGE;
    }
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    if (sock_path) snprintf(path, sizeof path, "%s", sock_path);
    else snprintf(path, sizeof path, "%s/crosskd.sock", work_dir);

    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        fprintf(stderr, "crosskdctl: cannot connect to %s: %s (is a job running with this work_dir?)\n",
                path, strerror(errno));
        return EXIT_CONNECT;
    }
    char req[64];
    int n = snprintf(req, sizeof req, "%s%s\n", verb, json ? " --json" : "");
    if (write(fd, req, (size_t)n) != n) {
        fprintf(stderr, "crosskdctl: write to %s failed: %s\n", path, strerror(errno));
        return EXIT_CONNECT;
    }
    char buf[4096];
    ssize_t got;
    while ((got = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)got, stdout);
    close(fd);
    return 0;
}
