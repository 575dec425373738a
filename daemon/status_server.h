/* status_server.h — the status socket's event loop, on its own thread (issue #9).
 *
 * One thread runs an epoll loop in the style of redis's ae: non-blocking sockets, many
 * clients, per-client buffers and deadlines, and a 100 ms cron that expires deadlines and
 * re-checks clients waiting for an action (checkpoint on disk, every rank paused...). The
 * trainer is never blocked by it: the only shared object is the kd_control_board, whose
 * operations are bounded copies under a mutex. The thread blocks all signals, so they are
 * delivered to the trainer's threads.
 *
 * Listeners: a Unix stream socket (mode 0600, peer uid checked with SO_PEERCRED: only
 * allowed_uid and root are served) and optionally TCP (every connection must send
 * `AUTH <token>` first; constant-time compare). One request per connection: the server
 * replies, then closes (see proto/STATUS_PROTOCOL.md).
 */
#ifndef KD_STATUS_SERVER_H
#define KD_STATUS_SERVER_H

#include <stdbool.h>
#include <sys/types.h>

#include "proto/control.h"
#include "proto/status.h"
#include "proto/status_proto.h"

typedef struct kd_status_server_opts {
    char unix_path[108];       /* socket path, already resolved; must fit sun_path */
    uid_t allowed_uid;         /* the job's user; root is always allowed too */
    bool tcp_enable;
    char tcp_host[256];        /* numeric address or name; "127.0.0.1" by default */
    int tcp_port;              /* 0 with tcp_enable: an ephemeral port (tests) */
    char token[KD_STATUS_TOKEN_MAX_BYTES + 1]; /* required on TCP */
    int max_clients;           /* connections served at once; more get ERR EBUSY */
    double request_timeout_s;  /* the whole request must arrive within this */
    double write_timeout_s;    /* a reply must be taken by the client within this */
    double action_timeout_s;   /* checkpoint / pause / resume / stop waits at most this */
    const char *config_text;   /* the `config` reply (YAML); copied at start */
} kd_status_server_opts;

typedef struct kd_status_server kd_status_server;

void kd_status_server_opts_defaults(kd_status_server_opts *o);

/* Bind the listeners (replacing a stale socket file, refusing a live one), then start
 * the loop thread. On failure nothing is left behind. */
kd_status kd_status_server_start(kd_status_server **out, const kd_status_server_opts *o,
                                 kd_control_board *board, kd_err *err);
/* The bound TCP port (useful with tcp_port 0), or 0 without TCP. */
int kd_status_server_tcp_port(const kd_status_server *s);
/* Stop the loop: clients waiting for `stop` get their reply, other waiting clients get
 * ERR ESHUTDOWN, pending replies are flushed for at most ~1 s, then everything is closed,
 * the thread joined and the socket file removed. NULL is a no-op. */
void kd_status_server_stop(kd_status_server *s);

#endif
