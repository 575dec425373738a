/* test_parser_fuzz.c — drives the status request parser and the reply formatters with
 * random and mutated inputs (issue #9), deterministically (fixed seeds, ~1e5 cases).
 *
 * Properties checked on every case:
 *   - framing never reports a line longer than the input or the limit, and a positive
 *     result always ends at a '\n';
 *   - parsing returns a code in range with a NUL-terminated message; on success the verb
 *     is valid and the AUTH token is printable, NUL-terminated and within its limit;
 *   - every valid request formats and parses back to itself;
 *   - replies built from snapshots full of random bytes are printable one-line-per-field
 *     text (human) or valid JSON (checked with jansson), and stay within the size cap.
 * A crash, a sanitizer report or a failed property fails the test.
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../unit/kd_test.h"
#include "proto/status_proto.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}

static const char *const k_seeds[] = {
    "status", "status --json", "checkpoint", "stop --json", "pause", "resume", "metrics",
    "config --json", "ping", "AUTH abcdef0123", "STATUS", "  status\t--json  ", "status\r",
    "AUTH", "auth a b", "status --json --json", "--json", "statu", "statuss", "",
};

static int g_bad_props;
#define PROP(cond)                                                                     \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            if (g_bad_props++ < 10) fprintf(stderr, "property failed: %s\n", #cond);   \
        }                                                                              \
    } while (0)

static void check_one(const char *buf, size_t len)
{
    long f = kd_status_proto_frame(buf, len, KD_STATUS_LINE_MAX_BYTES);
    PROP(f >= -1 && f <= (long)len && f <= (long)KD_STATUS_LINE_MAX_BYTES);
    if (f > 0) PROP(buf[f - 1] == '\n' && memchr(buf, '\n', (size_t)f - 1) == NULL);
    if (f == -1) PROP(len >= KD_STATUS_LINE_MAX_BYTES);
    size_t line_len = f > 0 ? (size_t)f - 1 : len;
    kd_status_request req;
    char msg[128];
    memset(msg, 'Z', sizeof msg);
    kd_status_code c = kd_status_proto_parse(buf, line_len, &req, msg, sizeof msg);
    PROP((int)c >= 0 && c < KD_SC_COUNT);
    PROP(memchr(msg, '\0', sizeof msg) != NULL);
    if (c == KD_SC_OK) {
        PROP(req.verb > KD_VERB_NONE && req.verb < KD_VERB_COUNT);
        size_t tl = strnlen(req.token, sizeof req.token);
        PROP(tl < sizeof req.token && tl <= KD_STATUS_TOKEN_MAX_BYTES);
        for (size_t i = 0; i < tl; i++) PROP(req.token[i] > 0x20 && req.token[i] < 0x7f);
        if (req.verb == KD_VERB_AUTH) {
            PROP(tl > 0);
        } else {
            char line[64];
            int n = kd_status_proto_format_request(line, sizeof line, req.verb, req.json);
            PROP(n > 0);
            kd_status_request back;
            PROP(kd_status_proto_parse(line, (size_t)n - 1, &back, NULL, 0) == KD_SC_OK);
            PROP(back.verb == req.verb && back.json == req.json);
        }
        /* the error line for any code is one printable line */
    } else {
        kd_sbuf b;
        kd_sbuf_init(&b, 4096);
        kd_status_proto_error(&b, c, msg);
        PROP(b.data && !strncmp(b.data, "ERR ", 4) && b.len > 0 && b.data[b.len - 1] == '\n');
        PROP(b.data && strchr(b.data, '\n') == b.data + b.len - 1);
        kd_sbuf_free(&b);
    }
}

static void mutate(char *buf, size_t *len, size_t cap)
{
    int n_mut = 1 + (int)(rnd() % 4);
    for (int m = 0; m < n_mut; m++) {
        uint32_t op = rnd() % 6;
        size_t pos = *len ? rnd() % (*len + 1) : 0;
        if (op == 0 && *len) buf[rnd() % *len] = (char)(rnd() & 0xff);          /* flip a byte */
        else if (op == 1 && *len + 1 < cap) {                                  /* insert */
            memmove(buf + pos + 1, buf + pos, *len - pos);
            static const char interesting[] = {' ', '\t', '\n', '\r', '\0', '-', '\x7f', '\xff', 'a'};
            buf[pos] = interesting[rnd() % sizeof interesting];
            (*len)++;
        } else if (op == 2 && *len) {                                          /* delete */
            if (pos == *len) pos--;
            memmove(buf + pos, buf + pos + 1, *len - pos - 1);
            (*len)--;
        } else if (op == 3) {                                                  /* append --json */
            size_t k = strlen(" --json");
            if (*len + k < cap) { memcpy(buf + *len, " --json", k); *len += k; }
        } else if (op == 4) {                                                  /* long run */
            size_t k = rnd() % 700;
            if (*len + k > cap) k = cap - *len;
            memset(buf + *len, rnd() % 2 ? 'k' : ' ', k);
            *len += k;
        } else if (op == 5 && *len) {                                          /* truncate */
            *len = rnd() % *len;
        }
    }
}

static void test_parser_random_and_mutated(void)
{
    enum { CAP = 2048, N_RANDOM = 40000, N_MUTATED = 60000 };
    static char buf[CAP];
    for (int i = 0; i < N_RANDOM; i++) {
        size_t len = rnd() % (i % 10 == 0 ? CAP : 64);
        for (size_t k = 0; k < len; k++) buf[k] = (char)(rnd() % 3 ? 0x20 + rnd() % 95 : rnd() & 0xff);
        check_one(buf, len);
    }
    for (int i = 0; i < N_MUTATED; i++) {
        const char *s = k_seeds[rnd() % (sizeof k_seeds / sizeof k_seeds[0])];
        size_t len = strlen(s);
        memcpy(buf, s, len);
        if (rnd() % 2) buf[len++] = '\n';
        mutate(buf, &len, CAP);
        check_one(buf, len);
    }
    KD_EXPECT(g_bad_props == 0);
}

static void test_parser_exact(void)
{
    kd_status_request r;
    char msg[128];
    KD_EXPECT(kd_status_proto_parse("status --json", 13, &r, msg, sizeof msg) == KD_SC_OK && r.verb == KD_VERB_STATUS && r.json);
    KD_EXPECT(kd_status_proto_parse("PAUSE\r", 6, &r, msg, sizeof msg) == KD_SC_OK && r.verb == KD_VERB_PAUSE);
    KD_EXPECT(kd_status_proto_parse("AUTH s3cr3t", 11, &r, msg, sizeof msg) == KD_SC_OK && !strcmp(r.token, "s3cr3t"));
    KD_EXPECT(kd_status_proto_parse("", 0, &r, msg, sizeof msg) == KD_SC_EPARSE);
    KD_EXPECT(kd_status_proto_parse("reboot", 6, &r, msg, sizeof msg) == KD_SC_EVERB);
    KD_EXPECT_STR_CONTAINS(msg, "reboot");
    KD_EXPECT(kd_status_proto_parse("status -j", 9, &r, msg, sizeof msg) == KD_SC_EARG);
    KD_EXPECT(kd_status_proto_parse("sta\x01tus", 7, &r, msg, sizeof msg) == KD_SC_EPARSE);
    KD_EXPECT(kd_status_proto_frame("abc", 3, 512) == 0);
    KD_EXPECT(kd_status_proto_frame("ab\nc", 4, 512) == 3);
    static char big[600];
    memset(big, 'a', sizeof big);
    KD_EXPECT(kd_status_proto_frame(big, sizeof big, 512) == -1);
    KD_EXPECT(kd_status_proto_parse(big, 520, &r, msg, sizeof msg) == KD_SC_ETOOLONG);
}

static void random_text(char *out, size_t cap)
{
    size_t n = rnd() % cap;
    for (size_t i = 0; i < n; i++) out[i] = (char)(1 + rnd() % 255);
    out[n] = '\0';
}

static void test_replies_from_random_snapshots(void)
{
    kd_job_status *st = malloc(sizeof *st);
    int bad_json = 0, bad_human = 0;
    for (int it = 0; it < 300; it++) {
        /* raw random bytes everywhere, including unterminated strings and wild counts */
        for (size_t k = 0; k < sizeof *st; k++) ((unsigned char *)st)[k] = (unsigned char)rnd();
        if (it % 2) {
            kd_job_status_init(st);
            random_text(st->job_name, sizeof st->job_name);
            random_text(st->config_path, sizeof st->config_path);
            st->n_losses = (int)(rnd() % (KD_STATUS_LOSS_MAX + 1));
            for (int i = 0; i < st->n_losses; i++) {
                random_text(st->losses[i].name, sizeof st->losses[i].name);
                st->losses[i].value = rnd() % 7 == 0 ? NAN : (double)rnd() / 1e3;
            }
            st->n_ranks = (int)(rnd() % 8);
            for (int i = 0; i < st->n_ranks; i++) random_text(st->ranks[i].host, sizeof st->ranks[i].host);
        }
        kd_status_extra x = {.now = 1.7e9};
        for (int json = 0; json < 2; json++) {
            kd_sbuf b;
            kd_sbuf_init(&b, KD_STATUS_REPLY_MAX_BYTES);
            kd_status_proto_format_status(&b, st, &x, json);
            if (!b.data || b.overflow) { bad_human++; kd_sbuf_free(&b); continue; }
            if (json) {
                json_error_t je;
                json_t *root = json_loads(b.data, 0, &je);
                if (!root || !json_is_object(root)) {
                    if (bad_json++ < 3) fprintf(stderr, "invalid JSON: %s\n", je.text);
                } else if (!json_is_array(json_object_get(root, "ranks"))) {
                    bad_json++;
                }
                json_decref(root);
            } else {
                for (size_t i = 0; i < b.len; i++)
                    if ((b.data[i] < 0x20 && b.data[i] != '\n') || (unsigned char)b.data[i] >= 0x7f) {
                        bad_human++;
                        break;
                    }
                char *save = NULL;
                for (char *l = strtok_r(b.data, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
                    if (l[0] != '#' && !strchr(l, ':')) { bad_human++; break; }
            }
            kd_sbuf_free(&b);
        }
    }
    free(st);
    KD_EXPECT(bad_json == 0);
    KD_EXPECT(bad_human == 0);
}

static void test_sbuf_cap(void)
{
    kd_sbuf b;
    kd_sbuf_init(&b, 100);
    for (int i = 0; i < 50; i++) kd_sbuf_printf(&b, "%d-%s;", i, "abcdef");
    KD_EXPECT(b.overflow && b.len == 100 && strlen(b.data) == 100);
    kd_sbuf_free(&b);
}

int main(void)
{
    KD_TEST_RUN(test_parser_exact);
    KD_TEST_RUN(test_parser_random_and_mutated);
    KD_TEST_RUN(test_replies_from_random_snapshots);
    KD_TEST_RUN(test_sbuf_cap);
    return kd_test_summary();
}
