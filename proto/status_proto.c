/* status_proto.c — framing, parsing and reply formatting of the status protocol
 * (status_proto.h, spec in proto/STATUS_PROTOCOL.md).
 *
 * Conventions: every function is pure over its arguments; input is untrusted bytes of any
 * length and content (the fuzz test drives kd_status_proto_frame and _parse with random
 * and mutated lines); nothing here asserts on input. Human reply values are flattened to
 * printable ASCII (control and non-ASCII bytes become '?') so a line stays one line; JSON
 * strings escape control bytes and replace non-ASCII bytes with '?', so the reply is valid
 * JSON (and UTF-8) whatever the trainer published.
 */
#include "proto/status_proto.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const k_verbs[KD_VERB_COUNT] = {
    "", "auth", "status", "checkpoint", "stop", "pause", "resume", "metrics", "config", "ping"};

static const char *const k_codes[KD_SC_COUNT] = {
    "OK", "EPARSE", "ETOOLONG", "EVERB", "EARG", "EAUTH", "EPERM", "ETIMEOUT",
    "EBUSY", "ENOTREADY", "ECHECKPOINT", "ESHUTDOWN", "EINTERNAL"};

const char *kd_status_verb_name(kd_status_verb v)
{
    return (int)v >= 0 && v < KD_VERB_COUNT ? k_verbs[v] : "";
}

const char *kd_status_code_name(kd_status_code c)
{
    return (int)c >= 0 && c < KD_SC_COUNT ? k_codes[c] : "EINTERNAL";
}

/* ---- framing and parsing ------------------------------------------------------------ */

long kd_status_proto_frame(const char *buf, size_t len, size_t max_line)
{
    size_t scan = len < max_line ? len : max_line;
    const char *nl = scan ? memchr(buf, '\n', scan) : NULL;
    if (nl) return (long)(nl - buf) + 1;
    return len >= max_line ? -1 : 0;
}

static kd_status_code fail(char *msg, size_t cap, kd_status_code code, const char *fmt,
                           const char *arg)
{
    if (msg && cap) snprintf(msg, cap, fmt, arg);
    return code;
}

static bool is_token_byte(unsigned char c) { return c > 0x20 && c < 0x7f; }

kd_status_code kd_status_proto_parse(const char *line, size_t len, kd_status_request *req,
                                     char *msg, size_t msg_cap)
{
    memset(req, 0, sizeof *req);
    if (msg && msg_cap) msg[0] = '\0';
    if (len > 0 && line[len - 1] == '\r') len--;
    if (len + 1 > KD_STATUS_LINE_MAX_BYTES)
        return fail(msg, msg_cap, KD_SC_ETOOLONG, "request line over %s bytes", "511");
    /* Split on spaces and tabs into at most 4 tokens; reject other control bytes. */
    enum { MAX_TOK = 4 };
    const char *tok[MAX_TOK];
    size_t tok_len[MAX_TOK];
    int n_tok = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)line[i];
        if (c == ' ' || c == '\t') { i++; continue; }
        if (!is_token_byte(c))
            return fail(msg, msg_cap, KD_SC_EPARSE, "%s", "request contains a control or non-ASCII byte");
        size_t start = i;
        while (i < len && is_token_byte((unsigned char)line[i])) i++;
        if (i < len && line[i] != ' ' && line[i] != '\t')
            return fail(msg, msg_cap, KD_SC_EPARSE, "%s", "request contains a control or non-ASCII byte");
        if (n_tok == MAX_TOK) return fail(msg, msg_cap, KD_SC_EARG, "%s", "too many arguments");
        tok[n_tok] = line + start;
        tok_len[n_tok++] = i - start;
    }
    if (n_tok == 0) return fail(msg, msg_cap, KD_SC_EPARSE, "%s", "empty request");

    kd_status_verb verb = KD_VERB_NONE;
    for (int v = 1; v < KD_VERB_COUNT; v++)
        if (strlen(k_verbs[v]) == tok_len[0] && strncasecmp(tok[0], k_verbs[v], tok_len[0]) == 0)
            verb = (kd_status_verb)v;
    if (verb == KD_VERB_NONE) {
        char shown[40];
        size_t n = tok_len[0] < sizeof shown - 1 ? tok_len[0] : sizeof shown - 1;
        memcpy(shown, tok[0], n);
        shown[n] = '\0';
        return fail(msg, msg_cap, KD_SC_EVERB, "unknown verb '%s'", shown);
    }
    req->verb = verb;
    if (verb == KD_VERB_AUTH) {
        if (n_tok != 2) return fail(msg, msg_cap, KD_SC_EARG, "%s", "AUTH takes exactly one token");
        if (tok_len[1] > KD_STATUS_TOKEN_MAX_BYTES)
            return fail(msg, msg_cap, KD_SC_ETOOLONG, "%s", "token too long");
        memcpy(req->token, tok[1], tok_len[1]);
        req->token[tok_len[1]] = '\0';
        return KD_SC_OK;
    }
    for (int t = 1; t < n_tok; t++) {
        if (tok_len[t] == 6 && memcmp(tok[t], "--json", 6) == 0) {
            req->json = true;
            continue;
        }
        return fail(msg, msg_cap, KD_SC_EARG, "%s", "unknown argument (only --json is accepted)");
    }
    return KD_SC_OK;
}

int kd_status_proto_format_request(char *out, size_t cap, kd_status_verb v, bool json)
{
    if (v <= KD_VERB_AUTH || v >= KD_VERB_COUNT) return -1;
    int n = snprintf(out, cap, "%s%s\n", k_verbs[v], json ? " --json" : "");
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int kd_status_proto_format_auth(char *out, size_t cap, const char *token)
{
    size_t len = strlen(token);
    if (len == 0 || len > KD_STATUS_TOKEN_MAX_BYTES) return -1;
    for (size_t i = 0; i < len; i++)
        if (!is_token_byte((unsigned char)token[i])) return -1;
    int n = snprintf(out, cap, "AUTH %s\n", token);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* ---- kd_sbuf ------------------------------------------------------------------------ */

void kd_sbuf_init(kd_sbuf *b, size_t max_bytes)
{
    memset(b, 0, sizeof *b);
    b->max_bytes = max_bytes;
}

void kd_sbuf_free(kd_sbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void kd_sbuf_reset(kd_sbuf *b)
{
    b->len = 0;
    b->overflow = false;
    if (b->data) b->data[0] = '\0';
}

void kd_sbuf_append(kd_sbuf *b, const char *s, size_t n)
{
    if (b->overflow) return;
    if (b->len + n > b->max_bytes) {
        n = b->max_bytes - b->len;
        b->overflow = true;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) { b->overflow = true; return; }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void kd_sbuf_puts(kd_sbuf *b, const char *s) { kd_sbuf_append(b, s, strlen(s)); }

void kd_sbuf_printf(kd_sbuf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) { b->overflow = true; return; }
    if ((size_t)n < sizeof small) { kd_sbuf_append(b, small, (size_t)n); return; }
    char *big = malloc((size_t)n + 1);
    if (!big) { b->overflow = true; return; }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    kd_sbuf_append(b, big, (size_t)n);
    free(big);
}

/* Printable ASCII, one line; in `field` mode also no ',' or '=' (the rank-row separators). */
static void put_flat(kd_sbuf *b, const char *s, bool field)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char c = (char)*p;
        if (*p < 0x20 || *p >= 0x7f) c = '?';
        else if (field && (c == ',' || c == '=')) c = '_';
        kd_sbuf_append(b, &c, 1);
    }
}

static void put_json_str(kd_sbuf *b, const char *s)
{
    kd_sbuf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            kd_sbuf_append(b, e, 2);
        } else if (*p == '\n' || *p == '\t' || *p == '\r') {
            char e[2] = {'\\', *p == '\n' ? 'n' : *p == '\t' ? 't' : 'r'};
            kd_sbuf_append(b, e, 2);
        } else if (*p < 0x20) {
            kd_sbuf_printf(b, "\\u%04x", *p);
        } else if (*p >= 0x7f) {
            kd_sbuf_append(b, "?", 1); /* keep the reply ASCII (and valid UTF-8) */
        } else {
            kd_sbuf_append(b, (const char *)p, 1);
        }
    }
    kd_sbuf_append(b, "\"", 1);
}

void kd_status_proto_error(kd_sbuf *b, kd_status_code code, const char *msg)
{
    kd_sbuf_printf(b, "ERR %s ", kd_status_code_name(code));
    put_flat(b, msg && *msg ? msg : "error", false);
    kd_sbuf_append(b, "\n", 1);
}

/* ---- the reply writer ------------------------------------------------------------------ */

void kd_reply_begin(kd_reply *r, kd_sbuf *b, bool json)
{
    memset(r, 0, sizeof *r);
    r->b = b;
    r->json = json;
    if (json) kd_sbuf_append(b, "{", 1);
}

static void close_to(kd_reply *r, int depth)
{
    while (r->depth > depth) {
        if (r->json) {
            if (r->depth == 2) kd_sbuf_append(r->b, "}", 1);
            else kd_sbuf_append(r->b, r->array ? "]" : "}", 1);
        } else if (r->depth == 2) {
            kd_sbuf_append(r->b, "\n", 1);
        }
        r->depth--;
    }
}

static void lower_name(char *out, size_t cap, const char *name)
{
    size_t i = 0;
    for (; name[i] && i + 1 < cap; i++) {
        char c = name[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : (c == ' ' ? '_' : c);
    }
    out[i] = '\0';
}

static void open_section(kd_reply *r, const char *name, bool array)
{
    close_to(r, 0);
    if (r->json) {
        char key[64];
        lower_name(key, sizeof key, name);
        if (r->n_sections) kd_sbuf_append(r->b, ",", 1);
        put_json_str(r->b, key);
        kd_sbuf_append(r->b, array ? ":[" : ":{", 2);
    } else {
        kd_sbuf_printf(r->b, "%s# %s\n", r->n_sections ? "\n" : "", name);
    }
    r->n_sections++;
    r->depth = 1;
    r->array = array;
    r->n_items = r->n_fields = 0;
}

void kd_reply_section(kd_reply *r, const char *name) { open_section(r, name, false); }
void kd_reply_array(kd_reply *r, const char *name) { open_section(r, name, true); }

void kd_reply_object(kd_reply *r, const char *key)
{
    close_to(r, 1);
    if (r->json) {
        kd_sbuf_append(r->b, r->n_items ? ",{" : "{", r->n_items ? 2 : 1);
    } else {
        put_flat(r->b, key, true);
        kd_sbuf_append(r->b, ":", 1);
    }
    r->n_items++;
    r->depth = 2;
    r->n_fields = 0;
}

/* Key prefix for one field, in the current context. */
static void field_key(kd_reply *r, const char *key)
{
    if (r->json) {
        if (r->n_fields) kd_sbuf_append(r->b, ",", 1);
        put_json_str(r->b, key);
        kd_sbuf_append(r->b, ":", 1);
    } else if (r->depth == 2) {
        if (r->n_fields) kd_sbuf_append(r->b, ",", 1);
        put_flat(r->b, key, true);
        kd_sbuf_append(r->b, "=", 1);
    } else {
        put_flat(r->b, key, false);
        kd_sbuf_append(r->b, ":", 1);
    }
    r->n_fields++;
}

static void field_end(kd_reply *r)
{
    if (!r->json && r->depth < 2) kd_sbuf_append(r->b, "\n", 1);
}

void kd_reply_str(kd_reply *r, const char *key, const char *value)
{
    if (r->depth == 0) kd_reply_section(r, "Reply");
    field_key(r, key);
    if (r->json) put_json_str(r->b, value ? value : "");
    else put_flat(r->b, value ? value : "", r->depth == 2);
    field_end(r);
}

void kd_reply_int(kd_reply *r, const char *key, long long value)
{
    if (r->depth == 0) kd_reply_section(r, "Reply");
    field_key(r, key);
    kd_sbuf_printf(r->b, "%lld", value);
    field_end(r);
}

void kd_reply_num(kd_reply *r, const char *key, double value)
{
    if (r->depth == 0) kd_reply_section(r, "Reply");
    field_key(r, key);
    if (!isfinite(value)) kd_sbuf_puts(r->b, r->json ? "null" : "none");
    else kd_sbuf_printf(r->b, r->json ? "%.9g" : "%.6g", value);
    field_end(r);
}

void kd_reply_end(kd_reply *r)
{
    close_to(r, 0);
    kd_sbuf_append(r->b, r->json ? "}\n" : "", r->json ? 2 : 0);
}

/* ---- the status reply --------------------------------------------------------------------- */

void kd_status_proto_format_duration(char *out, size_t cap, double seconds)
{
    if (!isfinite(seconds) || seconds < 0 || seconds > 1e10) {
        snprintf(out, cap, "unknown");
        return;
    }
    long long s = (long long)(seconds + 0.5);
    long long d = s / 86400, h = (s / 3600) % 24, m = (s / 60) % 60, sec = s % 60;
    if (d) snprintf(out, cap, "%lldd %02lld:%02lld:%02lld", d, h, m, sec);
    else snprintf(out, cap, "%lld:%02lld:%02lld", h, m, sec);
}

/* The snapshot's fixed strings, terminated within their arrays whatever they hold. */
#define BOUNDED(dst, src)                                  \
    char dst[sizeof(src)];                                 \
    memcpy(dst, src, sizeof dst);                          \
    dst[sizeof dst - 1] = '\0'

void kd_status_proto_format_status(kd_sbuf *b, const kd_job_status *st,
                                   const kd_status_extra *x, bool json)
{
    kd_reply r;
    char text[64];
    BOUNDED(job_name, st->job_name);
    BOUNDED(config_path, st->config_path);
    BOUNDED(ckpt_path, st->last_checkpoint_path);
    kd_reply_begin(&r, b, json);

    kd_reply_section(&r, "Job");
    kd_reply_str(&r, "name", job_name);
    kd_reply_str(&r, "config", config_path);
    kd_reply_str(&r, "state", kd_job_state_name(st->state));
    kd_reply_int(&r, "world_size", st->world_size);
    kd_reply_num(&r, "uptime_seconds", st->start_wall > 0 ? x->now - st->start_wall : NAN);
    kd_reply_int(&r, "pause_requested", x->pause_requested);
    kd_reply_int(&r, "stop_requested", x->stop_requested);

    kd_reply_section(&r, "Progress");
    kd_reply_int(&r, "epoch", st->epoch);
    kd_reply_int(&r, "max_epochs", st->max_epochs);
    kd_reply_int(&r, "iter", st->iter);
    kd_reply_int(&r, "total_iters", st->total_iters);
    kd_reply_int(&r, "iter_in_epoch", st->iter_in_epoch);
    kd_reply_int(&r, "iters_per_epoch", st->iters_per_epoch);
    kd_reply_num(&r, "eta_seconds", st->eta_seconds >= 0 ? st->eta_seconds : NAN);
    kd_status_proto_format_duration(text, sizeof text, st->eta_seconds);
    kd_reply_str(&r, "eta", text);

    kd_reply_section(&r, "Losses");
    kd_reply_num(&r, "loss", st->loss_total);
    int n_losses = st->n_losses < 0 ? 0 : st->n_losses > KD_STATUS_LOSS_MAX ? KD_STATUS_LOSS_MAX : st->n_losses;
    for (int i = 0; i < n_losses; i++) {
        BOUNDED(name, st->losses[i].name);
        kd_reply_num(&r, name[0] ? name : "unnamed", st->losses[i].value);
    }

    kd_reply_section(&r, "Speed");
    kd_reply_num(&r, "lr", st->lr);
    kd_reply_num(&r, "images_per_second", st->images_per_second);
    kd_reply_num(&r, "data_time_seconds", st->data_time_seconds);
    kd_reply_num(&r, "step_time_seconds", st->step_time_seconds);
    kd_reply_num(&r, "memory_mb", st->memory_bytes / (1024.0 * 1024.0));

    kd_reply_section(&r, "Checkpoint");
    bool have_ckpt = ckpt_path[0] != '\0';
    kd_reply_str(&r, "last_checkpoint", have_ckpt ? ckpt_path : "none");
    kd_reply_int(&r, "last_checkpoint_step", have_ckpt ? st->last_checkpoint_step : -1);
    double age = have_ckpt ? x->now - st->last_checkpoint_wall : NAN;
    kd_reply_num(&r, "last_checkpoint_age_seconds", age);
    kd_status_proto_format_duration(text, sizeof text, have_ckpt ? age : -1);
    kd_reply_str(&r, "last_checkpoint_age", have_ckpt ? text : "none");

    kd_reply_section(&r, "Evaluation");
    kd_reply_num(&r, "last_ap", st->last_ap);
    kd_reply_int(&r, "last_eval_step", st->last_eval_step);

    kd_reply_array(&r, "Ranks");
    int n_ranks = st->n_ranks < 0 ? 0 : st->n_ranks > KD_STATUS_RANK_MAX ? KD_STATUS_RANK_MAX : st->n_ranks;
    for (int i = 0; i < n_ranks; i++) {
        const kd_rank_status *rk = &st->ranks[i];
        BOUNDED(host, rk->host);
        BOUNDED(dev, rk->device);
        char key[24];
        snprintf(key, sizeof key, "rank%d", i);
        kd_reply_object(&r, key);
        kd_reply_int(&r, "rank", i);
        kd_reply_str(&r, "host", host);
        kd_reply_str(&r, "device", dev);
        kd_reply_int(&r, "iter", rk->iter);
        kd_reply_num(&r, "last_step_seconds", rk->last_step_seconds);
        kd_reply_num(&r, "memory_mb", rk->memory_bytes / (1024.0 * 1024.0));
        kd_reply_str(&r, "state", kd_rank_state_name(rk->state));
    }
    kd_reply_end(&r);
}
