/* status.h — the project's two kinds of error (DESIGN.md §9).
 *
 * 1. Recoverable errors, which a user or an operator can cause (config, files, sockets,
 *    checkpoints): a function returns a kd_status code and writes a human-readable
 *    message naming the file, line or field into a caller-owned kd_err. Nothing is lost:
 *    the caller decides whether to report, retry, skip or exit.
 * 2. Fatal checks, for bugs and device failures inside a step: KD_CHECK_GEN generates one
 *    checker per library (CUDA, cuDNN, cuBLAS, NCCL, MPI, zstd, oneDNN). It prints the
 *    failing statement, file:line, the library's own error string, the rank and host, then
 *    aborts through the abort hook (MPI_Abort once MPI is up, so no rank hangs).
 * There is no assert() on input anywhere in the project.
 */
#ifndef KD_STATUS_H
#define KD_STATUS_H

#include <stddef.h>
#include <stdarg.h>

typedef enum kd_status {
    KD_OK = 0,
    KD_EINVAL,   /* bad value, bad syntax, wrong type, out of range */
    KD_EIO,      /* a file or socket operation failed */
    KD_ENOMEM,   /* an allocation failed */
    KD_ECORRUPT, /* a checksum, magic or length does not match */
    KD_ENOTFOUND,/* a file, key or id does not exist */
    KD_EPROTO,   /* a peer broke the protocol */
    KD_EUNSUPPORTED,
} kd_status;

#define KD_ERR_MSG_BYTES 1024
typedef struct kd_err {
    kd_status code;
    char msg[KD_ERR_MSG_BYTES];
} kd_err;

/* Fill err (may be NULL) and return code. Typical use: return kd_errf(err, KD_EINVAL, "...") */
kd_status kd_errf(kd_err *err, kd_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix an existing message, e.g. with the file name: "conf/a.yaml: <old message>". */
kd_status kd_err_prefix(kd_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *kd_status_name(kd_status code);

/* ---- fatal checks ---------------------------------------------------------------- */

typedef void (*kd_abort_hook)(int exit_code);
/* Installed by the worker once MPI is initialised (MPI_Abort on the world communicator). */
void kd_set_abort_hook(kd_abort_hook hook);
/* Rank shown in fatal messages and log prefixes; -1 until known. */
void kd_set_rank(int rank);
int kd_get_rank(void);

_Noreturn void kd_fatal(const char *file, int line, const char *lib, const char *stmt,
                        const char *detail);
_Noreturn void kd_fatalf(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The one generator: RTYPE is the library's return type, OK the success test on `_kd_r`,
 * ERRSTR an expression turning `_kd_r` into the library's own error string. */
#define KD_CHECK_GEN(RTYPE, LIB, OK, ERRSTR, STMT)                                  \
    do {                                                                            \
        RTYPE _kd_r = (STMT);                                                       \
        if (!(OK)) kd_fatal(__FILE__, __LINE__, LIB, #STMT, (ERRSTR));              \
    } while (0)

/* Generic condition check for internal invariants (bugs), never for user input. */
#define KD_CHECK(COND, ...)                                                         \
    do {                                                                            \
        if (!(COND)) kd_fatalf(__FILE__, __LINE__, "check failed: " #COND " " __VA_ARGS__); \
    } while (0)

/* Checked allocation: a failed allocation inside a step is fatal. */
void *kd_xmalloc_(size_t bytes, const char *file, int line);
void *kd_xcalloc_(size_t n, size_t size, const char *file, int line);
void *kd_xrealloc_(void *p, size_t bytes, const char *file, int line);
#define kd_xmalloc(bytes) kd_xmalloc_((bytes), __FILE__, __LINE__)
#define kd_xcalloc(n, size) kd_xcalloc_((n), (size), __FILE__, __LINE__)
#define kd_xrealloc(p, bytes) kd_xrealloc_((p), (bytes), __FILE__, __LINE__)

/* zstd checker (the other libraries' checkers live beside their backends:
 * kernels/cpu for oneDNN, kernels/cuda for CUDA/cuDNN/cuBLAS/NCCL, worker for MPI). */
#define KD_CHECK_ZSTD(STMT) \
    KD_CHECK_GEN(size_t, "zstd", !ZSTD_isError(_kd_r), ZSTD_getErrorName(_kd_r), STMT)

#endif
