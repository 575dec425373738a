/* status_listen.h — the status server's listening sockets (used by status_server.c).
 *
 * Unix: the socket is bound under a temporary 0700 directory next to its final path,
 * chmod 0600, then renamed into place, so it never exists with a wider mode and a stale
 * socket is replaced atomically. A live socket (connect succeeds) is never replaced, and a
 * path that exists but is not a socket is refused. TCP: bound to the given address
 * (loopback by default), SO_REUSEADDR, port 0 = ephemeral. All descriptors are
 * non-blocking and close-on-exec.
 */
#ifndef KD_STATUS_LISTEN_H
#define KD_STATUS_LISTEN_H

#include <sys/types.h>

#include "proto/status.h"

/* Bind and listen on path; returns the fd and the socket file's identity (for unlink). */
kd_status kd_status_listen_unix(const char *path, int *fd_out, dev_t *dev, ino_t *ino,
                                kd_err *err);
kd_status kd_status_listen_tcp(const char *host, int port, int *fd_out, int *port_out,
                               kd_err *err);
/* Remove path only if it is still the socket file we created (dev, ino). */
void kd_status_unlink_unix(const char *path, dev_t dev, ino_t ino);

#endif
