/* status_proto.h — the status-socket protocol, defined once (spec: proto/STATUS_PROTOCOL.md).
 *
 * Pure functions, no I/O, no globals, so the server, the client and the fuzz test share
 * them:
 *   - framing: find the first complete request line in a byte buffer, with a size limit;
 *   - parsing: one line -> kd_status_request (verb, --json, AUTH token), or an error code;
 *   - replies: a writer that emits the same fields either for people (`# Section` then
 *     `key:value` lines, as redis INFO) or as one JSON object, plus the one-line error
 *     `ERR <CODE> <message>` (the same in both modes);
 *   - the `status` reply from a kd_job_status snapshot.
 * Every reply is built in a kd_sbuf, a growable buffer with a hard cap: past the cap it
 * stops growing and records the overflow, it never fails mid-way or writes out of bounds.
 */
#ifndef KD_STATUS_PROTO_H
#define KD_STATUS_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/control.h"

#define KD_STATUS_LINE_MAX_BYTES 512       /* one request line, newline included */
#define KD_STATUS_REQUEST_MAX_BYTES 1024   /* all a client may send on one connection */
#define KD_STATUS_REPLY_MAX_BYTES (1u << 20)
#define KD_STATUS_TOKEN_MAX_BYTES 256      /* AUTH token, without the NUL */
#define KD_STATUS_SOCKET_NAME "crosskd.sock" /* default: <work_dir>/crosskd.sock */

typedef enum kd_status_verb {
    KD_VERB_NONE = 0,
    KD_VERB_AUTH,       /* AUTH <token>: first line on TCP */
    KD_VERB_STATUS,
    KD_VERB_CHECKPOINT,
    KD_VERB_STOP,
    KD_VERB_PAUSE,
    KD_VERB_RESUME,
    KD_VERB_METRICS,
    KD_VERB_CONFIG,
    KD_VERB_PING,
    KD_VERB_COUNT
} kd_status_verb;

/* Error codes of `ERR <CODE> <message>` lines. */
typedef enum kd_status_code {
    KD_SC_OK = 0,
    KD_SC_EPARSE,      /* bytes that are not a request (control characters, empty line) */
    KD_SC_ETOOLONG,    /* a line or a request over its size limit */
    KD_SC_EVERB,       /* unknown verb */
    KD_SC_EARG,        /* unknown option, missing or extra argument */
    KD_SC_EAUTH,       /* TCP: missing or wrong token */
    KD_SC_EPERM,       /* Unix: peer uid is neither the job's user nor root */
    KD_SC_ETIMEOUT,    /* the request or the action did not complete in time */
    KD_SC_EBUSY,       /* too many clients */
    KD_SC_ENOTREADY,   /* the trainer has not published a snapshot yet */
    KD_SC_ECHECKPOINT, /* the checkpoint failed */
    KD_SC_ESHUTDOWN,   /* the job ended before the action completed */
    KD_SC_EINTERNAL,
    KD_SC_COUNT
} kd_status_code;

typedef struct kd_status_request {
    kd_status_verb verb;
    bool json;                                 /* --json */
    char token[KD_STATUS_TOKEN_MAX_BYTES + 1]; /* AUTH only */
} kd_status_request;

const char *kd_status_verb_name(kd_status_verb v);  /* "status"; "" for NONE */
const char *kd_status_code_name(kd_status_code c);  /* "EPARSE"; "EINTERNAL" when out of range */

/* Framing. Looks for '\n' in buf[0..len) within the first max_line bytes.
 * Returns the line length including the '\n' (> 0), 0 when more bytes are needed, or -1
 * when no '\n' occurs within max_line bytes (the line is too long). */
long kd_status_proto_frame(const char *buf, size_t len, size_t max_line);

/* Parse one line (without its '\n'; a trailing '\r' is allowed). Fills req and returns
 * KD_SC_OK, or returns an error code and writes a short message into msg. */
kd_status_code kd_status_proto_parse(const char *line, size_t len, kd_status_request *req,
                                     char *msg, size_t msg_cap);

/* Format a request line (with '\n') into out; returns its length or -1 if it does not fit
 * or the token is not valid. Used by the client, so both sides agree. */
int kd_status_proto_format_request(char *out, size_t cap, kd_status_verb v, bool json);
int kd_status_proto_format_auth(char *out, size_t cap, const char *token);

/* ---- growable capped buffer ---------------------------------------------------------- */

typedef struct kd_sbuf {
    char *data;      /* NUL-terminated when non-NULL */
    size_t len, cap, max_bytes;
    bool overflow;   /* something was dropped at max_bytes (or on allocation failure) */
} kd_sbuf;

void kd_sbuf_init(kd_sbuf *b, size_t max_bytes);
void kd_sbuf_free(kd_sbuf *b);
void kd_sbuf_reset(kd_sbuf *b);
void kd_sbuf_append(kd_sbuf *b, const char *s, size_t n);
void kd_sbuf_puts(kd_sbuf *b, const char *s);
void kd_sbuf_printf(kd_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- replies ----------------------------------------------------------------------- */

/* `ERR <CODE> <message>\n`; the message is flattened to one printable line. */
void kd_status_proto_error(kd_sbuf *b, kd_status_code code, const char *msg);

/* The writer: human form is
 *     # Section
 *     key:value
 *     rank0:host=a,device=cpu,...      (an object inside an array section)
 * and the JSON form {"section":{"key":value},"ranks":[{"host":"a",...}]} (section names
 * lowercased). NaN numbers print as `none` / null. Values are flattened to printable text. */
typedef struct kd_reply {
    kd_sbuf *b;
    bool json;
    int depth;       /* 0 top, 1 in a section, 2 in an object */
    bool array;      /* current section is an array of objects */
    int n_sections, n_items, n_fields;
} kd_reply;

void kd_reply_begin(kd_reply *r, kd_sbuf *b, bool json);
void kd_reply_section(kd_reply *r, const char *name);
void kd_reply_array(kd_reply *r, const char *name);    /* a section of objects */
void kd_reply_object(kd_reply *r, const char *key);    /* next item of an array section */
void kd_reply_str(kd_reply *r, const char *key, const char *value);
void kd_reply_int(kd_reply *r, const char *key, long long value);
void kd_reply_num(kd_reply *r, const char *key, double value);
void kd_reply_end(kd_reply *r);                         /* closes everything; adds '\n' */

/* Extra state the server knows and the snapshot does not. */
typedef struct kd_status_extra {
    double now;                 /* unix seconds */
    bool pause_requested, stop_requested;
    int clients;                /* connections currently open */
} kd_status_extra;

/* The whole `status` reply. */
void kd_status_proto_format_status(kd_sbuf *b, const kd_job_status *st,
                                   const kd_status_extra *x, bool json);
/* "1d 03:04:11" / "0:12:05"; "unknown" for negative or non-finite seconds. */
void kd_status_proto_format_duration(char *out, size_t cap, double seconds);

#endif
