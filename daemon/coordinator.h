/* coordinator.h — the coordinator on rank 0: the control board (proto/control.h) joined
 * to the status server (status_server.h). This is the API the trainer's main calls.
 *
 *   kd_coord *coord = NULL;
 *   if (rank == 0) kd_coord_start_config(&coord, &cfg, &err);   // or kd_coord_start
 *   kd_control_board *board = kd_coord_board(coord);             // NULL on other ranks
 *   ... the step loop uses only the board (publish, poll, checkpoint_done) ...
 *   kd_coord_shutdown(coord);                                     // after the last step
 *
 * Start binds <work_dir>/crosskd.sock (or status.socket) with mode 0600 and, when
 * status.tcp.port is non-zero, a TCP listener on status.tcp.host that requires the token
 * read from status.tcp.token_file (a regular file owned by the job's user with no group
 * or other permissions; anything else is refused at start). Errors are returned with a
 * message; the caller decides whether a job without a status socket may run.
 */
#ifndef KD_COORDINATOR_H
#define KD_COORDINATOR_H

#include <stdbool.h>

#include "proto/control.h"
#include "proto/status.h"
#include "worker/options.h"

typedef struct kd_coord_opts {
    char work_dir[KD_STATUS_PATH_BYTES];    /* the run directory; must exist */
    char socket_path[KD_STATUS_PATH_BYTES]; /* "" = <work_dir>/crosskd.sock */
    bool tcp_enable;
    char tcp_host[256];                     /* default 127.0.0.1 */
    int tcp_port;                           /* with tcp_enable; 0 = ephemeral (tests) */
    char token_file[KD_STATUS_PATH_BYTES];  /* required with tcp_enable */
    int max_clients;                        /* default 512 */
    double request_timeout_s, write_timeout_s, action_timeout_s; /* 5, 10, 1800 s */
    const char *config_text;                /* `config` reply; copied; NULL = "" */
} kd_coord_opts;

typedef struct kd_coord kd_coord;

void kd_coord_opts_defaults(kd_coord_opts *o);
kd_status kd_coord_start(kd_coord **out, const kd_coord_opts *o, kd_err *err);
/* From the job's config: work_dir, status.socket, status.tcp.*, and the effective config
 * (kd_config_dump) as the `config` reply. */
kd_status kd_coord_start_config(kd_coord **out, const kd_config *cfg, kd_err *err);

/* The mailbox the step loop uses; NULL for a NULL coordinator (other ranks). */
kd_control_board *kd_coord_board(kd_coord *c);
const char *kd_coord_socket_path(const kd_coord *c);
int kd_coord_tcp_port(const kd_coord *c);  /* 0 without TCP */

/* Answer pending clients (stop waiters get the final checkpoint), close the sockets,
 * remove the socket file, join the server thread, free everything. NULL is a no-op. */
void kd_coord_shutdown(kd_coord *c);

/* Read and check a token file (see above). Exposed for tests. */
kd_status kd_coord_read_token(const char *path, char *token, size_t cap, kd_err *err);

#endif
