/* fuzz_status_proto.c — libFuzzer target for the status request parser (issue #9).
 *
 * Built only when the compiler supports -fsanitize=fuzzer (clang); not run by the test
 * suite (test_parser_fuzz.c is the deterministic CI fuzz). Run it by hand:
 *     ./fuzz_status_proto -max_total_time=60 -max_len=2048
 * Each input is framed, parsed as one request line, and turned into an error line when
 * it is not a request; the sanitizers and the checks below catch any misbehaviour.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/status_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    long f = kd_status_proto_frame(buf, size, KD_STATUS_LINE_MAX_BYTES);
    if (f > (long)size || f > (long)KD_STATUS_LINE_MAX_BYTES) abort();
    size_t n = f > 0 ? (size_t)f - 1 : size;
    kd_status_request req;
    char msg[128];
    kd_status_code c = kd_status_proto_parse(buf, n, &req, msg, sizeof msg);
    if ((int)c < 0 || c >= KD_SC_COUNT) abort();
    if (c == KD_SC_OK && strnlen(req.token, sizeof req.token) > KD_STATUS_TOKEN_MAX_BYTES) abort();
    kd_sbuf b;
    kd_sbuf_init(&b, 4096);
    kd_status_proto_error(&b, c == KD_SC_OK ? KD_SC_EINTERNAL : c, msg);
    if (!b.data || strchr(b.data, '\n') != b.data + b.len - 1) abort();
    kd_sbuf_free(&b);
    return 0;
}
