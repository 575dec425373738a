/* log.c — see log.h. Thread-safe: one mutex around each line. */
#include "proto/log.h"
#include "proto/status.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;
static kd_log_level g_level = KD_LOG_INFO;
static int g_log_rank = -1;
static FILE *g_log_file;
static FILE *g_jsonl_file;

static const char *level_name(kd_log_level l)
{
    static const char *names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    return l <= KD_LOG_ERROR ? names[l] : "?";
}

void kd_log_init(int rank)
{
    g_log_rank = rank;
    kd_set_rank(rank);
    g_level = rank > 0 ? KD_LOG_WARN : KD_LOG_INFO;
}

void kd_log_set_level(kd_log_level level) { g_level = level; }

int kd_log_parse_level(const char *name, kd_log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i < 5; i++)
        if (strcasecmp(name, names[i]) == 0) {
            *out = (kd_log_level)i;
            return 0;
        }
    return -1;
}

int kd_log_open_file(const char *path)
{
    FILE *f = fopen(path, "a");
    if (!f) return -1;
    setvbuf(f, NULL, _IOLBF, 0);
    pthread_mutex_lock(&g_log_mu);
    if (g_log_file) fclose(g_log_file);
    g_log_file = f;
    pthread_mutex_unlock(&g_log_mu);
    return 0;
}

int kd_log_open_jsonl(const char *path)
{
    FILE *f = fopen(path, "a");
    if (!f) return -1;
    setvbuf(f, NULL, _IOLBF, 0);
    pthread_mutex_lock(&g_log_mu);
    if (g_jsonl_file) fclose(g_jsonl_file);
    g_jsonl_file = f;
    pthread_mutex_unlock(&g_log_mu);
    return 0;
}

void kd_log_close(void)
{
    pthread_mutex_lock(&g_log_mu);
    if (g_log_file) fclose(g_log_file);
    if (g_jsonl_file) fclose(g_jsonl_file);
    g_log_file = g_jsonl_file = NULL;
    pthread_mutex_unlock(&g_log_mu);
}

void kd_log(kd_log_level level, const char *fmt, ...)
{
    if (level < g_level) return;
    char stamp[32], msg[4096];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&g_log_mu);
    if (g_log_rank >= 0)
        fprintf(stderr, "%s [rank %d] %s %s\n", stamp, g_log_rank, level_name(level), msg);
    else
        fprintf(stderr, "%s %s %s\n", stamp, level_name(level), msg);
    if (g_log_file)
        fprintf(g_log_file, "%s [rank %d] %s %s\n", stamp, g_log_rank, level_name(level), msg);
    pthread_mutex_unlock(&g_log_mu);
}

/* ---- JSON lines ------------------------------------------------------------------ */

int kd_json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
#define PUT(c) do { if (n + 1 >= cap) return -1; out[n++] = (char)(c); } while (0)
    PUT('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') { PUT('\\'); PUT(c); }
        else if (c == '\n') { PUT('\\'); PUT('n'); }
        else if (c == '\t') { PUT('\\'); PUT('t'); }
        else if (c == '\r') { PUT('\\'); PUT('r'); }
        else if (c < 0x20) {
            if (n + 7 >= cap) return -1;
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else PUT(c);
    }
    PUT('"');
#undef PUT
    out[n] = '\0';
    return (int)n;
}

static void jsonl_append(kd_jsonl *j, const char *text)
{
    size_t len = strlen(text);
    if (j->len + len + 2 >= sizeof j->buf) { j->overflow = 1; return; }
    memcpy(j->buf + j->len, text, len + 1);
    j->len += len;
}

static void jsonl_key(kd_jsonl *j, const char *key)
{
    char esc[512];
    if (j->n_fields++) jsonl_append(j, ",");
    if (kd_json_escape(esc, sizeof esc, key) < 0) { j->overflow = 1; return; }
    jsonl_append(j, esc);
    jsonl_append(j, ":");
}

void kd_jsonl_begin(kd_jsonl *j)
{
    j->len = 0;
    j->n_fields = 0;
    j->overflow = 0;
    j->buf[0] = '\0';
    jsonl_append(j, "{");
}

void kd_jsonl_str(kd_jsonl *j, const char *key, const char *value)
{
    char esc[4096];
    jsonl_key(j, key);
    if (kd_json_escape(esc, sizeof esc, value) < 0) { j->overflow = 1; return; }
    jsonl_append(j, esc);
}

void kd_jsonl_num(kd_jsonl *j, const char *key, double value)
{
    char num[64];
    jsonl_key(j, key);
    if (!isfinite(value)) snprintf(num, sizeof num, "null");
    else snprintf(num, sizeof num, "%.9g", value);
    jsonl_append(j, num);
}

void kd_jsonl_int(kd_jsonl *j, const char *key, long long value)
{
    char num[32];
    jsonl_key(j, key);
    snprintf(num, sizeof num, "%lld", value);
    jsonl_append(j, num);
}

const char *kd_jsonl_end(kd_jsonl *j)
{
    jsonl_append(j, "}");
    return j->buf;
}

void kd_log_json_line(const char *line)
{
    pthread_mutex_lock(&g_log_mu);
    if (g_jsonl_file) fprintf(g_jsonl_file, "%s\n", line);
    pthread_mutex_unlock(&g_log_mu);
}

void kd_log_jsonl(kd_jsonl *j)
{
    const char *line = kd_jsonl_end(j);
    if (!j->overflow) kd_log_json_line(line);
}
