/* status.c — recoverable error messages and fatal checks (see status.h). */
#include "proto/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static kd_abort_hook g_abort_hook;
static int g_rank = -1;

void kd_set_abort_hook(kd_abort_hook hook) { g_abort_hook = hook; }
void kd_set_rank(int rank) { g_rank = rank; }
int kd_get_rank(void) { return g_rank; }

kd_status kd_errf(kd_err *err, kd_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

kd_status kd_err_prefix(kd_err *err, const char *fmt, ...)
{
    if (!err) return KD_EINVAL;
    char prefix[KD_ERR_MSG_BYTES], old[KD_ERR_MSG_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s%s", prefix, old);
    return err->code;
}

const char *kd_status_name(kd_status code)
{
    switch (code) {
    case KD_OK: return "ok";
    case KD_EINVAL: return "invalid";
    case KD_EIO: return "io";
    case KD_ENOMEM: return "nomem";
    case KD_ECORRUPT: return "corrupt";
    case KD_ENOTFOUND: return "notfound";
    case KD_EPROTO: return "protocol";
    case KD_EUNSUPPORTED: return "unsupported";
    }
    return "unknown";
}

_Noreturn static void kd_abort_now(void)
{
    fflush(stdout);
    fflush(stderr);
    if (g_abort_hook) g_abort_hook(134);
    abort();
}

_Noreturn void kd_fatal(const char *file, int line, const char *lib, const char *stmt,
                        const char *detail)
{
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    fprintf(stderr, "[rank %d on %s] FATAL %s:%d: %s error: %s\n    in: %s\n", g_rank, host, file,
            line, lib, detail ? detail : "(no detail)", stmt);
    kd_abort_now();
}

_Noreturn void kd_fatalf(const char *file, int line, const char *fmt, ...)
{
    char host[256] = "?", msg[KD_ERR_MSG_BYTES];
    gethostname(host, sizeof host - 1);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[rank %d on %s] FATAL %s:%d: %s\n", g_rank, host, file, line, msg);
    kd_abort_now();
}

void *kd_xmalloc_(size_t bytes, const char *file, int line)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) kd_fatalf(file, line, "out of memory allocating %zu bytes", bytes);
    return p;
}

void *kd_xcalloc_(size_t n, size_t size, const char *file, int line)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) kd_fatalf(file, line, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *kd_xrealloc_(void *p, size_t bytes, const char *file, int line)
{
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) kd_fatalf(file, line, "out of memory reallocating to %zu bytes", bytes);
    return q;
}
