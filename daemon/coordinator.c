/* coordinator.c — rank 0's coordinator: control board + status server (coordinator.h).
 *
 * Owns the board and the server; the server thread serves clients from the board, and
 * the trainer talks only to the board. Start-up checks (socket path, token file) return
 * errors with messages; shutdown is safe at any time after a successful start.
 */
#include "daemon/coordinator.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/status_server.h"
#include "proto/status_proto.h"

struct kd_coord {
    kd_control_board *board;
    kd_status_server *server;
    char socket_path[108];
};

void kd_coord_opts_defaults(kd_coord_opts *o)
{
    kd_status_server_opts so;
    kd_status_server_opts_defaults(&so);
    memset(o, 0, sizeof *o);
    snprintf(o->work_dir, sizeof o->work_dir, ".");
    snprintf(o->tcp_host, sizeof o->tcp_host, "%s", so.tcp_host);
    o->max_clients = so.max_clients;
    o->request_timeout_s = so.request_timeout_s;
    o->write_timeout_s = so.write_timeout_s;
    o->action_timeout_s = so.action_timeout_s;
}

kd_status kd_coord_read_token(const char *path, char *token, size_t cap, kd_err *err)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return kd_errf(err, KD_EIO, "token file %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return kd_errf(err, KD_EIO, "token file %s: %s", path, strerror(e));
    }
    kd_status st = KD_OK;
    if (!S_ISREG(sb.st_mode)) st = kd_errf(err, KD_EINVAL, "token file %s: not a regular file", path);
    else if (sb.st_uid != geteuid())
        st = kd_errf(err, KD_EINVAL, "token file %s: owned by uid %ld, not by the job's user (%ld)",
                     path, (long)sb.st_uid, (long)geteuid());
    else if (sb.st_mode & 077)
        st = kd_errf(err, KD_EINVAL, "token file %s: mode %03o lets others read it; chmod 600 it",
                     path, (unsigned)(sb.st_mode & 0777));
    else if (sb.st_size > 4096) st = kd_errf(err, KD_EINVAL, "token file %s: larger than 4 KiB", path);
    char buf[4097];
    ssize_t n = 0;
    if (st == KD_OK) {
        n = read(fd, buf, sizeof buf - 1);
        if (n < 0) st = kd_errf(err, KD_EIO, "token file %s: %s", path, strerror(errno));
    }
    close(fd);
    if (st != KD_OK) return st;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    if (n == 0) st = kd_errf(err, KD_EINVAL, "token file %s: empty", path);
    else if ((size_t)n > KD_STATUS_TOKEN_MAX_BYTES || (size_t)n >= cap)
        st = kd_errf(err, KD_EINVAL, "token file %s: token longer than %d bytes", path,
                     KD_STATUS_TOKEN_MAX_BYTES);
    for (ssize_t i = 0; st == KD_OK && i < n; i++)
        if ((unsigned char)buf[i] <= 0x20 || (unsigned char)buf[i] >= 0x7f)
            st = kd_errf(err, KD_EINVAL, "token file %s: the token must be one word of printable ASCII",
                         path);
    if (st == KD_OK) memcpy(token, buf, (size_t)n + 1);
    memset(buf, 0, sizeof buf);
    return st;
}

kd_status kd_coord_start(kd_coord **out, const kd_coord_opts *o, kd_err *err)
{
    *out = NULL;
    kd_status_server_opts so;
    kd_status_server_opts_defaults(&so);
    char path[KD_STATUS_PATH_BYTES + 32];
    if (o->socket_path[0]) snprintf(path, sizeof path, "%s", o->socket_path);
    else snprintf(path, sizeof path, "%s/%s", o->work_dir[0] ? o->work_dir : ".", KD_STATUS_SOCKET_NAME);
    if (strlen(path) >= sizeof so.unix_path)
        return kd_errf(err, KD_EINVAL, "status socket %s: path is %zu bytes, the limit is %zu; set "
                       "status.socket to a shorter path", path, strlen(path), sizeof so.unix_path - 1);
    snprintf(so.unix_path, sizeof so.unix_path, "%s", path);
    so.tcp_enable = o->tcp_enable;
    snprintf(so.tcp_host, sizeof so.tcp_host, "%s", o->tcp_host[0] ? o->tcp_host : "127.0.0.1");
    so.tcp_port = o->tcp_port;
    if (o->tcp_enable) {
        if (!o->token_file[0])
            return kd_errf(err, KD_EINVAL, "status TCP listener needs status.tcp.token_file");
        kd_status st = kd_coord_read_token(o->token_file, so.token, sizeof so.token, err);
        if (st != KD_OK) return st;
    }
    if (o->max_clients > 0) so.max_clients = o->max_clients;
    if (o->request_timeout_s > 0) so.request_timeout_s = o->request_timeout_s;
    if (o->write_timeout_s > 0) so.write_timeout_s = o->write_timeout_s;
    if (o->action_timeout_s > 0) so.action_timeout_s = o->action_timeout_s;
    so.config_text = o->config_text;

    kd_coord *c = calloc(1, sizeof *c);
    if (!c) return kd_errf(err, KD_ENOMEM, "coordinator: out of memory");
    kd_status st = kd_control_board_create(&c->board, err);
    if (st == KD_OK) st = kd_status_server_start(&c->server, &so, c->board, err);
    memset(so.token, 0, sizeof so.token);
    if (st != KD_OK) {
        kd_control_board_destroy(c->board);
        free(c);
        return st;
    }
    snprintf(c->socket_path, sizeof c->socket_path, "%s", so.unix_path);
    *out = c;
    return KD_OK;
}

kd_status kd_coord_start_config(kd_coord **out, const kd_config *cfg, kd_err *err)
{
    kd_coord_opts o;
    kd_coord_opts_defaults(&o);
    snprintf(o.work_dir, sizeof o.work_dir, "%s", cfg->work_dir);
    snprintf(o.socket_path, sizeof o.socket_path, "%s", cfg->status_socket);
    o.tcp_enable = cfg->status_tcp_port != 0;
    o.tcp_port = (int)cfg->status_tcp_port;
    snprintf(o.tcp_host, sizeof o.tcp_host, "%s", cfg->status_tcp_host);
    snprintf(o.token_file, sizeof o.token_file, "%s", cfg->status_token_file);
    char *text = NULL;
    size_t text_bytes = 0;
    FILE *f = open_memstream(&text, &text_bytes);
    if (!f) return kd_errf(err, KD_ENOMEM, "coordinator: open_memstream failed");
    kd_config_dump(kd_options_table(), cfg, f);
    fclose(f);
    o.config_text = text;
    kd_status st = kd_coord_start(out, &o, err);
    free(text);
    return st;
}

kd_control_board *kd_coord_board(kd_coord *c) { return c ? c->board : NULL; }
const char *kd_coord_socket_path(const kd_coord *c) { return c ? c->socket_path : ""; }
int kd_coord_tcp_port(const kd_coord *c) { return c ? kd_status_server_tcp_port(c->server) : 0; }

void kd_coord_shutdown(kd_coord *c)
{
    if (!c) return;
    kd_status_server_stop(c->server);
    kd_control_board_destroy(c->board);
    free(c);
}
