/* fuzz_status_proto.c — libFuzzer target for the status request parser (issue #9).
 *
 * Built only when the compiler supports -fsanitize=fuzzer (clang); not run by the test
 * suite (test_parser_fuzz.c is the deterministic CI fuzz with the same properties).
 * bench/status/fuzz.sh builds it with clang and runs it for a given time:
 *     bash bench/status/fuzz.sh 60
 * Each input is what a client sends: the first line is framed and parsed; after an
 * `AUTH <token>` line (TCP) the next line is framed and parsed too, as the server does.
 * Properties (a failure aborts, which libFuzzer reports with the input): framing stays
 * within the input and the line limit and ends at '\n'; a parse returns a code in range
 * with a NUL-terminated message; a parsed token is printable and within its limit; a
 * parsed request formats and parses back to itself; an error becomes one printable line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/status_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond) \
    do {              \
        if (!(cond)) abort(); \
    } while (0)

/* Frames and parses the line at buf; returns the framed length (0 when unframed). */
static size_t check_line(const char *buf, size_t size, kd_status_request *req)
{
    long f = kd_status_proto_frame(buf, size, KD_STATUS_LINE_MAX_BYTES);
    REQUIRE(f >= -1 && f <= (long)size && f <= (long)KD_STATUS_LINE_MAX_BYTES);
    if (f > 0) REQUIRE(buf[f - 1] == '\n' && memchr(buf, '\n', (size_t)f - 1) == NULL);
    size_t n = f > 0 ? (size_t)f - 1 : size;
    char msg[128];
    memset(msg, 'Z', sizeof msg);
    kd_status_code c = kd_status_proto_parse(buf, n, req, msg, sizeof msg);
    REQUIRE((int)c >= 0 && c < KD_SC_COUNT);
    REQUIRE(memchr(msg, '\0', sizeof msg) != NULL);
    if (c == KD_SC_OK) {
        REQUIRE(req->verb > KD_VERB_NONE && req->verb < KD_VERB_COUNT);
        size_t tl = strnlen(req->token, sizeof req->token);
        REQUIRE(tl < sizeof req->token && tl <= KD_STATUS_TOKEN_MAX_BYTES);
        for (size_t i = 0; i < tl; i++) REQUIRE(req->token[i] > 0x20 && req->token[i] < 0x7f);
        if (req->verb != KD_VERB_AUTH) {
            char line[64];
            int k = kd_status_proto_format_request(line, sizeof line, req->verb, req->json);
            kd_status_request back;
            REQUIRE(k > 0 && kd_status_proto_parse(line, (size_t)k - 1, &back, NULL, 0) == KD_SC_OK);
            REQUIRE(back.verb == req->verb && back.json == req->json);
        }
    } else {
        req->verb = KD_VERB_NONE;
        kd_sbuf b;
        kd_sbuf_init(&b, 4096);
        kd_status_proto_error(&b, c, msg);
        REQUIRE(b.data && strncmp(b.data, "ERR ", 4) == 0 && strchr(b.data, '\n') == b.data + b.len - 1);
        kd_sbuf_free(&b);
    }
    return f > 0 ? (size_t)f : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    kd_status_request req;
    size_t first = check_line(buf, size, &req);
    if (first > 0 && req.verb == KD_VERB_AUTH) check_line(buf + first, size - first, &req);
    return 0;
}
