/* status_listen.c — binding the status server's Unix and TCP listeners (status_listen.h).
 *
 * Errors are returned as kd_status with a message naming the path or address and the
 * system's own error string; nothing here aborts.
 */
#include "daemon/status_listen.h"

#include <errno.h>
#include <stdbool.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

enum { LISTEN_BACKLOG = 1024 };

static kd_status check_existing(const char *path, kd_err *err)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT) return KD_OK;
        return kd_errf(err, KD_EIO, "status socket %s: %s", path, strerror(errno));
    }
    if (!S_ISSOCK(sb.st_mode))
        return kd_errf(err, KD_EIO, "status socket %s: exists and is not a socket; remove it or "
                                    "set status.socket", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return kd_errf(err, KD_EIO, "socket: %s", strerror(errno));
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    int e = errno;
    close(fd);
    if (rc == 0)
        return kd_errf(err, KD_EIO, "status socket %s: another job is serving it (same work_dir?)",
                       path);
    if (e != ECONNREFUSED)
        return kd_errf(err, KD_EIO, "status socket %s: exists and cannot be checked: %s", path,
                       strerror(e));
    return KD_OK; /* stale: nobody listens; it will be replaced */
}

static int bind_listen(int fd, const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, path, strlen(path) + 1);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) return -1;
    if (chmod(path, 0600) != 0) return -1;
    return listen(fd, LISTEN_BACKLOG);
}

kd_status kd_status_listen_unix(const char *path, int *fd_out, dev_t *dev, ino_t *ino,
                                kd_err *err)
{
    *fd_out = -1;
    size_t len = strlen(path);
    if (len == 0) return kd_errf(err, KD_EINVAL, "status socket: empty path");
    if (len >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return kd_errf(err, KD_EINVAL, "status socket %s: path is %zu bytes, the limit is %zu; "
                       "set status.socket to a shorter path", path, len,
                       sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    kd_status st = check_existing(path, err);
    if (st != KD_OK) return st;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return kd_errf(err, KD_EIO, "socket: %s", strerror(errno));

    /* <dir>/.kdsXXXXXX/s, a 0700 directory beside the final path */
    char tmpdir[256], tmp[272];
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path) : 0;
    int n = slash ? snprintf(tmpdir, sizeof tmpdir, "%.*s/.kdsXXXXXX", dir_len, path)
                  : snprintf(tmpdir, sizeof tmpdir, ".kdsXXXXXX");
    bool via_tmp = n > 0 && (size_t)n + 2 < sizeof(((struct sockaddr_un *)0)->sun_path) &&
                   (size_t)n < sizeof tmpdir && mkdtemp(tmpdir) != NULL;
    if (via_tmp) {
        snprintf(tmp, sizeof tmp, "%s/s", tmpdir);
        int rc = bind_listen(fd, tmp);
        if (rc == 0) rc = rename(tmp, path);
        int e = errno;
        unlink(tmp);
        rmdir(tmpdir);
        if (rc != 0) {
            close(fd);
            return kd_errf(err, KD_EIO, "status socket %s: %s", path, strerror(e));
        }
    } else {
        /* Directory not writable for a temp dir, or the temp path too long: bind in place
         * (a stale socket is removed first); the peer-uid check still guards it. */
        unlink(path);
        if (bind_listen(fd, path) != 0) {
            int e = errno;
            close(fd);
            return kd_errf(err, KD_EIO, "status socket %s: %s", path, strerror(e));
        }
    }
    struct stat sb;
    if (stat(path, &sb) != 0) {
        int e = errno;
        close(fd);
        return kd_errf(err, KD_EIO, "status socket %s: %s", path, strerror(e));
    }
    *dev = sb.st_dev;
    *ino = sb.st_ino;
    *fd_out = fd;
    return KD_OK;
}

void kd_status_unlink_unix(const char *path, dev_t dev, ino_t ino)
{
    struct stat sb;
    if (lstat(path, &sb) == 0 && S_ISSOCK(sb.st_mode) && sb.st_dev == dev && sb.st_ino == ino)
        unlink(path);
}

kd_status kd_status_listen_tcp(const char *host, int port, int *fd_out, int *port_out,
                               kd_err *err)
{
    *fd_out = -1;
    if (port < 0 || port > 65535) return kd_errf(err, KD_EINVAL, "status TCP port %d out of range", port);
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host && *host ? host : "127.0.0.1", port_s, &hints, &res);
    if (gai != 0)
        return kd_errf(err, KD_EINVAL, "status TCP address '%s': %s", host, gai_strerror(gai));
    int last_errno = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) { last_errno = errno; continue; }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
            last_errno = errno;
            close(fd);
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int bound = port;
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
            if (ss.ss_family == AF_INET) bound = ntohs(((struct sockaddr_in *)&ss)->sin_port);
            else if (ss.ss_family == AF_INET6) bound = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        freeaddrinfo(res);
        *fd_out = fd;
        *port_out = bound;
        return KD_OK;
    }
    freeaddrinfo(res);
    return kd_errf(err, KD_EIO, "status TCP %s:%d: %s", host, port,
                   last_errno ? strerror(last_errno) : "no usable address");
}
