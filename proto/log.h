/* log.h — leveled logger with rank prefix, plus JSON-lines output.
 *
 * Text lines go to stderr (and to a log file when one is opened):
 *     2026-11-23 19:30:01 [rank 0] INFO  message
 * By default rank 0 prints INFO and above and the other ranks WARN and above, so a
 * multi-rank job reads like a single program; kd_log_set_level changes the threshold.
 * A JSON-lines sink (one object per line) receives structured records such as the
 * training metrics: kd_jsonl_* builds an object with correctly escaped keys and values.
 */
#ifndef KD_LOG_H
#define KD_LOG_H

#include <stdio.h>
#include <stddef.h>

typedef enum { KD_LOG_DEBUG = 0, KD_LOG_INFO, KD_LOG_WARN, KD_LOG_ERROR, KD_LOG_OFF } kd_log_level;

void kd_log_init(int rank);                      /* sets rank prefix and default threshold */
void kd_log_set_level(kd_log_level level);
int kd_log_parse_level(const char *name, kd_log_level *out); /* "debug"... -> 0 ok, -1 bad */
int kd_log_open_file(const char *path);          /* mirror text lines to a file; 0 ok */
int kd_log_open_jsonl(const char *path);         /* JSON-lines sink; 0 ok */
void kd_log_close(void);

void kd_log(kd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define KD_DEBUG(...) kd_log(KD_LOG_DEBUG, __VA_ARGS__)
#define KD_INFO(...) kd_log(KD_LOG_INFO, __VA_ARGS__)
#define KD_WARN(...) kd_log(KD_LOG_WARN, __VA_ARGS__)
#define KD_ERROR(...) kd_log(KD_LOG_ERROR, __VA_ARGS__)

/* ---- JSON lines --------------------------------------------------------------- */
typedef struct kd_jsonl {
    char buf[8192];
    size_t len;
    int n_fields;
    int overflow;
} kd_jsonl;

void kd_jsonl_begin(kd_jsonl *j);
void kd_jsonl_str(kd_jsonl *j, const char *key, const char *value);
void kd_jsonl_num(kd_jsonl *j, const char *key, double value);   /* NaN/inf -> null */
void kd_jsonl_int(kd_jsonl *j, const char *key, long long value);
const char *kd_jsonl_end(kd_jsonl *j);             /* closes the object; returns the text */
void kd_log_jsonl(kd_jsonl *j);                    /* end + write one line to the sink */
void kd_log_json_line(const char *line);           /* write an already formatted object */
/* Append s to out as a JSON string literal (with quotes); returns bytes written or -1. */
int kd_json_escape(char *out, size_t cap, const char *s);

#endif
