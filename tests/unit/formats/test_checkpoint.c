/* test_checkpoint.c — the checkpoint container: round trip (raw and byte-plane sections),
 * detection of every flipped byte class and of truncation, retention and the `latest`
 * pointer, fallback to the previous valid checkpoint, and a writer killed (SIGKILL) at
 * random moments while it saves: `latest` always names a complete file. Real files in a
 * temp folder. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kd_test.h"
#include "proto/checkpoint.h"

static char g_dir[256];

enum { N_W = 100000, N_META = 37 };
static float g_w[N_W];
static unsigned char g_meta[N_META];

static void fill(void)
{
    unsigned s = 12345;
    for (int i = 0; i < N_W; i++) {
        s = s * 1103515245u + 12345u;
        g_w[i] = (float)((int)(s >> 8) % 20001 - 10000) * 1e-5f;
    }
    for (int i = 0; i < N_META; i++) g_meta[i] = (unsigned char)(i * 7);
}

static kd_status save(unsigned long long step, int keep, char *path, size_t cap)
{
    kd_ckpt_meta m = {.config_hash = 0xabcdef, .step = step, .epoch = step / 10, .world_size = 2};
    kd_ckpt_section secs[2] = {{"student.params", g_w, sizeof g_w, KD_CKPT_F32_PLANES},
                               {"sampler", g_meta, sizeof g_meta, KD_CKPT_RAW}};
    kd_ckpt_write_opts o = {.threads = 2};
    kd_err err = {0};
    kd_status st = kd_ckpt_save(g_dir, &m, secs, 2, &o, keep, path, cap, &err);
    if (st) fprintf(stderr, "save: %s\n", err.msg);
    return st;
}

static long file_size(const char *p)
{
    struct stat sb;
    return stat(p, &sb) ? -1 : (long)sb.st_size;
}

static void flip_byte(const char *p, long off)
{
    FILE *f = fopen(p, "r+b");
    fseek(f, off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
}

static void test_roundtrip(void)
{
    char path[600];
    KD_REQUIRE(save(5, 3, path, sizeof path) == KD_OK);
    kd_ckpt_reader r;
    kd_err err = {0};
    KD_REQUIRE(kd_ckpt_open(path, &r, &err) == KD_OK);
    KD_EXPECT(r.meta.step == 5 && r.meta.epoch == 0 && r.meta.world_size == 2 && r.meta.config_hash == 0xabcdef);
    static float w[N_W];
    unsigned char meta[N_META];
    KD_EXPECT(kd_ckpt_read(&r, "student.params", w, sizeof w, &err) == KD_OK);
    KD_EXPECT(memcmp(w, g_w, sizeof w) == 0);
    KD_EXPECT(kd_ckpt_read(&r, "sampler", meta, sizeof meta, &err) == KD_OK);
    KD_EXPECT(memcmp(meta, g_meta, sizeof meta) == 0);
    KD_EXPECT(kd_ckpt_read(&r, "nope", meta, sizeof meta, &err) == KD_ENOTFOUND);
    KD_EXPECT(kd_ckpt_read(&r, "sampler", meta, 3, &err) == KD_EINVAL);
    KD_EXPECT_STR_CONTAINS(err.msg, "holds 37 bytes, expected 3");
    kd_ckpt_close(&r);
}

static void test_every_flip_detected(void)
{
    char path[600], copy[700];
    KD_REQUIRE(save(7, 3, path, sizeof path) == KD_OK);
    long size = file_size(path);
    KD_REQUIRE(size > 200);
    snprintf(copy, sizeof copy, "%s/flip.bin", g_dir);
    /* Every 97th byte plus the first and last few: each flip must be caught. */
    unsigned char *orig = malloc((size_t)size);
    FILE *in = fopen(path, "rb");
    KD_REQUIRE(in && fread(orig, 1, (size_t)size, in) == (size_t)size);
    fclose(in);
    int tried = 0, caught = 0;
    for (long off = 0; off < size; off += (off < 80 || off > size - 120) ? 1 : 97) {
        orig[off] ^= 0x10;
        FILE *out = fopen(copy, "wb");
        KD_REQUIRE(out && fwrite(orig, 1, (size_t)size, out) == (size_t)size);
        fclose(out);
        orig[off] ^= 0x10;
        kd_ckpt_reader r;
        kd_err err = {0};
        kd_status st = kd_ckpt_open(copy, &r, &err);
        if (!st) {
            st = kd_ckpt_verify(&r, &err);
            kd_ckpt_close(&r);
        }
        tried++;
        if (st != KD_OK) caught++;
        else fprintf(stderr, "flip at %ld not detected\n", off);
    }
    free(orig);
    KD_EXPECT(tried > 100);
    KD_EXPECT(caught == tried);
}

static void test_truncation_detected(void)
{
    char path[600], copy[700];
    KD_REQUIRE(save(8, 3, path, sizeof path) == KD_OK);
    long size = file_size(path);
    snprintf(copy, sizeof copy, "%s/trunc.bin", g_dir);
    long cuts[] = {0, 10, 63, 64, 1000, size / 2, size - 9, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char cmd[1600];
        snprintf(cmd, sizeof cmd, "head -c %ld '%s' > '%s'", cuts[i], path, copy);
        KD_REQUIRE(system(cmd) == 0);
        kd_ckpt_reader r;
        kd_err err = {0};
        kd_status st = kd_ckpt_open(copy, &r, &err);
        if (!st) {
            st = kd_ckpt_verify(&r, &err);
            kd_ckpt_close(&r);
        }
        KD_EXPECT_MSG(st == KD_ECORRUPT, "cut at %ld gave %s: %s", cuts[i], kd_status_name(st), err.msg);
    }
}

static void test_retention_and_fallback(void)
{
    char path[600], found[900], skipped[2048];
    kd_err err = {0};
    for (int s = 10; s <= 50; s += 10) KD_REQUIRE(save((unsigned long long)s, 2, path, sizeof path) == KD_OK);
    char p[700];
    snprintf(p, sizeof p, "%s/iter_30.ckpt", g_dir);
    KD_EXPECT(access(p, F_OK) != 0); /* beyond keep = 2 */
    snprintf(p, sizeof p, "%s/iter_40.ckpt", g_dir);
    KD_EXPECT(access(p, F_OK) == 0);
    KD_REQUIRE(kd_ckpt_find_latest(g_dir, found, sizeof found, skipped, sizeof skipped, &err) == KD_OK);
    KD_EXPECT_STR_CONTAINS(found, "iter_50.ckpt");
    /* Corrupt the newest: the previous one is used and the reason is reported. */
    flip_byte(path, file_size(path) / 2);
    KD_REQUIRE(kd_ckpt_find_latest(g_dir, found, sizeof found, skipped, sizeof skipped, &err) == KD_OK);
    KD_EXPECT_STR_CONTAINS(found, "iter_40.ckpt");
    KD_EXPECT_STR_CONTAINS(skipped, "iter_50.ckpt");
    /* A stale temp file from a killed writer is ignored. */
    snprintf(p, sizeof p, "%s/iter_60.ckpt.tmp.999", g_dir);
    FILE *f = fopen(p, "w");
    fputs("partial", f);
    fclose(f);
    KD_REQUIRE(kd_ckpt_find_latest(g_dir, found, sizeof found, NULL, 0, &err) == KD_OK);
    KD_EXPECT_STR_CONTAINS(found, "iter_40.ckpt");
}

/* A child saves 1.6 MB checkpoints in a loop (keep 2); it is SIGKILLed at a random moment,
 * 12 times, each time most likely in the middle of a write, rename or pointer update. After
 * every kill `latest`, when it exists, must name a checkpoint that verifies, and the newest
 * valid checkpoint must be found. */
static void test_killed_writer(void)
{
    char dir[300], p[400], found[900];
    snprintf(dir, sizeof dir, "%s/killed", g_dir);
    mkdir(dir, 0755);
    static float big[4 * N_W];
    for (int i = 0; i < 4 * N_W; i++) big[i] = g_w[i % N_W] * (float)(1 + i / N_W);
    unsigned seed = (unsigned)time(NULL);
    for (int round = 0; round < 12; round++) {
        pid_t pid = fork();
        KD_REQUIRE(pid >= 0);
        if (pid == 0) {
            kd_ckpt_section sec = {"student.params", big, sizeof big, KD_CKPT_F32_PLANES};
            kd_ckpt_write_opts o = {.threads = 0};
            for (unsigned long long step = 1000ull * (unsigned long long)round + 1;; step++) {
                kd_ckpt_meta m = {.step = step};
                char out[600];
                kd_err e = {0};
                kd_ckpt_save(dir, &m, &sec, 1, &o, 2, out, sizeof out, &e);
            }
        }
        usleep(20000 + (useconds_t)(rand_r(&seed) % 150000));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        snprintf(p, sizeof p, "%s/latest", dir);
        FILE *f = fopen(p, "r");
        if (f) {
            char name[256] = "";
            KD_EXPECT(fgets(name, sizeof name, f) != NULL);
            fclose(f);
            name[strcspn(name, "\n")] = '\0';
            snprintf(p, sizeof p, "%s/%s", dir, name);
            kd_ckpt_reader r;
            kd_err err = {0};
            kd_status st = kd_ckpt_open(p, &r, &err);
            if (!st) {
                st = kd_ckpt_verify(&r, &err);
                kd_ckpt_close(&r);
            }
            KD_EXPECT_MSG(st == KD_OK, "round %d: latest names %s, which does not verify: %s", round, name, err.msg);
        }
        kd_err err = {0};
        KD_EXPECT_MSG(kd_ckpt_find_latest(dir, found, sizeof found, NULL, 0, &err) == KD_OK || round == 0,
                      "round %d: no valid checkpoint: %s", round, err.msg);
    }
}

static void test_compression_sanity(void)
{
    /* bf16 values in fp32 containers: half of every word is zero, so >= 1.9x. */
    static float w[N_W];
    for (int i = 0; i < N_W; i++) {
        unsigned u;
        memcpy(&u, &g_w[i], 4);
        u &= 0xffff0000u;
        memcpy(&w[i], &u, 4);
    }
    char path[700];
    snprintf(path, sizeof path, "%s/bf16.ckpt", g_dir);
    kd_ckpt_meta m = {0};
    kd_ckpt_section s = {"w", w, sizeof w, KD_CKPT_F32_PLANES};
    kd_err err = {0};
    KD_REQUIRE(kd_ckpt_write(path, &m, &s, 1, NULL, &err) == KD_OK);
    double ratio = (double)sizeof w / (double)file_size(path);
    fprintf(stderr, "bf16-in-fp32 compression ratio %.2f\n", ratio);
    KD_EXPECT(ratio >= 1.9);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kd_ckpt_test_XXXXXX");
    const char *tmpdir = getenv("TMPDIR");
    if (tmpdir) snprintf(g_dir, sizeof g_dir, "%s/kd_ckpt_test_XXXXXX", tmpdir);
    if (!mkdtemp(g_dir)) return 1;
    fill();
    KD_TEST_RUN(test_roundtrip);
    KD_TEST_RUN(test_every_flip_detected);
    KD_TEST_RUN(test_truncation_detected);
    KD_TEST_RUN(test_retention_and_fallback);
    KD_TEST_RUN(test_killed_writer);
    KD_TEST_RUN(test_compression_sanity);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd)) fprintf(stderr, "cleanup failed\n");
    return kd_test_summary();
}
