/* tfevents.c — see tfevents.h. Protocol-buffer encoding by hand: only varints, 64-bit
 * and 32-bit fixed fields and length-delimited fields are needed. */
#include "proto/tfevents.h"

#include <errno.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static uint32_t g_crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        g_crc_table[i] = c;
    }
}

uint32_t kd_crc32c(uint32_t crc, const void *data, size_t bytes)
{
    if (!g_crc_table[1]) crc_init();
    const unsigned char *p = data;
    crc = ~crc;
    while (bytes--) crc = g_crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint32_t masked_crc(const void *data, size_t bytes)
{
    uint32_t c = kd_crc32c(0, data, bytes);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* ---- protobuf pieces ------------------------------------------------------------------ */

typedef struct pb {
    unsigned char buf[1024];
    size_t n;
    int overflow;
} pb;

static void pb_byte(pb *b, unsigned char c)
{
    if (b->n < sizeof b->buf) b->buf[b->n++] = c;
    else b->overflow = 1;
}

static void pb_varint(pb *b, uint64_t v)
{
    while (v >= 0x80) {
        pb_byte(b, (unsigned char)(v | 0x80));
        v >>= 7;
    }
    pb_byte(b, (unsigned char)v);
}

static void pb_fixed(pb *b, const void *v, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++) pb_byte(b, ((const unsigned char *)v)[i]);
}

static void pb_bytes(pb *b, int field, const void *data, size_t bytes)
{
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, bytes);
    pb_fixed(b, data, bytes);
}

static double now_seconds(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

static kd_status write_record(kd_tfevents *w, const pb *event, kd_err *err)
{
    if (event->overflow) return kd_errf(err, KD_EINVAL, "%s: event too large", w->path);
    uint64_t len = event->n;
    uint32_t len_crc = masked_crc(&len, 8), data_crc = masked_crc(event->buf, event->n);
    if (fwrite(&len, 8, 1, w->f) != 1 || fwrite(&len_crc, 4, 1, w->f) != 1 ||
        fwrite(event->buf, 1, event->n, w->f) != event->n || fwrite(&data_crc, 4, 1, w->f) != 1)
        return kd_errf(err, KD_EIO, "%s: write failed: %s", w->path, strerror(errno));
    return KD_OK;
}

kd_status kd_tfevents_open(kd_tfevents *w, const char *dir, kd_err *err)
{
    char host[128] = "host";
    gethostname(host, sizeof host - 1);
    double t = now_seconds();
    snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%lld.%s", dir, (long long)t, host);
    w->f = fopen(w->path, "wb");
    if (!w->f) return kd_errf(err, KD_EIO, "%s: cannot create: %s", w->path, strerror(errno));
    pb e = {0};
    pb_varint(&e, 1 << 3 | 1);
    pb_fixed(&e, &t, 8);
    pb_bytes(&e, 3, "brain.Event:2", 13);
    kd_status st = write_record(w, &e, err);
    if (!st) fflush(w->f);
    return st;
}

kd_status kd_tfevents_scalar(kd_tfevents *w, const char *tag, int64_t step, float value, kd_err *err)
{
    if (!w->f) return KD_OK;
    size_t tag_len = strlen(tag);
    if (tag_len > 256) return kd_errf(err, KD_EINVAL, "tensorboard tag too long: %s", tag);
    pb val = {0}, sum = {0}, e = {0};
    pb_bytes(&val, 1, tag, tag_len);
    pb_varint(&val, 2 << 3 | 5);
    pb_fixed(&val, &value, 4);
    pb_bytes(&sum, 1, val.buf, val.n);
    double t = now_seconds();
    pb_varint(&e, 1 << 3 | 1);
    pb_fixed(&e, &t, 8);
    pb_varint(&e, 2 << 3 | 0);
    pb_varint(&e, (uint64_t)step);
    pb_bytes(&e, 5, sum.buf, sum.n);
    return write_record(w, &e, err);
}

void kd_tfevents_flush(kd_tfevents *w)
{
    if (w->f) fflush(w->f);
}

void kd_tfevents_close(kd_tfevents *w)
{
    if (w->f) fclose(w->f);
    w->f = NULL;
}
