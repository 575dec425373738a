/* bench_ckpt.c — checkpoint write and read time and compression ratio (issue #8), on the
 * sections of a real checkpoint written by the trainer (bench/train/run.sh makes one for a
 * ResNet-50 GFL student after a few SGD steps, so the momentum is a real one).
 *
 *   bench_ckpt CKPT [ROUNDS] [THREADS...]
 *
 * The sections of CKPT are read once (that read is timed too: the trainer's own file). Then
 * each round writes the same sections with proto/checkpoint.c as the trainer does (zstd
 * level 3, temp file, fsync, rename, fsync of the folder) once per configuration — float
 * sections as byte planes or raw, zstd with each THREADS count (0 = single-threaded) —
 * and reads every file back (open, decompress, checksum every section). Configurations
 * alternate inside a round, in a rotating order, so all meet the same load. The files are
 * read right after being written, so they come from the page cache: read time is
 * decompression plus checksums, not the disk. Prints one table row per configuration:
 * best and median write and read seconds, MB/s of raw bytes, file size and ratio.
 */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "proto/checkpoint.h"

#define MAX_SECS 16
#define MAX_CONFIGS 8
#define MAX_ROUNDS 64

typedef struct bench_secs {
    int n;
    char names[MAX_SECS][KD_CKPT_NAME_BYTES];
    void *data[MAX_SECS];
    size_t bytes[MAX_SECS];
    int is_float[MAX_SECS];
    size_t raw_bytes;
    kd_ckpt_meta meta;
} bench_secs;

typedef struct bench_config {
    int planes, threads;
    double write_s[MAX_ROUNDS], read_s[MAX_ROUNDS];
    long long file_bytes;
} bench_config;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what, const kd_err *err)
{
    fprintf(stderr, "bench_ckpt: %s: %s\n", what, err->msg);
    exit(1);
}

/* Reads every section of an open checkpoint into fresh buffers (or into s when it has them). */
static void read_all(kd_ckpt_reader *r, bench_secs *s, int fill)
{
    kd_err err = {0};
    if (fill) {
        s->n = 0;
        s->raw_bytes = 0;
        s->meta = r->meta;
    }
    for (uint32_t i = 0; i < r->n_entries && i < MAX_SECS; i++) {
        const kd_ckpt_entry *e = &r->entries[i];
        if (fill) {
            snprintf(s->names[i], sizeof s->names[i], "%s", e->name);
            s->bytes[i] = e->raw_bytes;
            s->data[i] = malloc(e->raw_bytes ? e->raw_bytes : 1);
            s->is_float[i] = e->encoding == KD_CKPT_F32_PLANES;
            s->raw_bytes += e->raw_bytes;
            s->n++;
        }
        if (kd_ckpt_read(r, e->name, s->data[i], e->raw_bytes, &err)) die(e->name, &err);
    }
}

static double timed_read(const char *path, bench_secs *s, int fill)
{
    kd_err err = {0};
    kd_ckpt_reader r;
    double t0 = now_s();
    if (kd_ckpt_open(path, &r, &err)) die(path, &err);
    read_all(&r, s, fill);
    kd_ckpt_close(&r);
    return now_s() - t0;
}

static double timed_write(const char *path, const bench_secs *s, const bench_config *c)
{
    kd_ckpt_section secs[MAX_SECS];
    for (int i = 0; i < s->n; i++)
        secs[i] = (kd_ckpt_section){s->names[i], s->data[i], s->bytes[i],
                                    s->is_float[i] && c->planes ? KD_CKPT_F32_PLANES : KD_CKPT_RAW};
    kd_ckpt_write_opts o = {.threads = c->threads, .level = 3};
    kd_err err = {0};
    double t0 = now_s();
    if (kd_ckpt_write(path, &s->meta, secs, s->n, &o, &err)) die(path, &err);
    return now_s() - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void best_median(const double *v, int n, double *best, double *median)
{
    double tmp[MAX_ROUNDS];
    memcpy(tmp, v, (size_t)n * sizeof *v);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    *best = tmp[0];
    *median = n % 2 ? tmp[n / 2] : 0.5 * (tmp[n / 2 - 1] + tmp[n / 2]);
}

static void print_row(const bench_config *c, int rounds, size_t raw_bytes)
{
    double wb, wm, rb, rm;
    best_median(c->write_s, rounds, &wb, &wm);
    best_median(c->read_s, rounds, &rb, &rm);
    double mb = (double)raw_bytes / 1e6;
    printf("| %-6s | %7d | %8.3f | %10.3f | %8.0f | %8.3f | %9.3f | %8.0f | %9.1f | %6.3fx |\n",
           c->planes ? "planes" : "raw", c->threads, wb, wm, mb / wb, rb, rm, mb / rb,
           (double)c->file_bytes / 1e6, (double)raw_bytes / (double)c->file_bytes);
}

/* Ratio of every section as stored in the file at path. */
static void print_section_ratios(const char *path, const char *label)
{
    kd_err err = {0};
    kd_ckpt_reader r;
    if (kd_ckpt_open(path, &r, &err)) die(path, &err);
    printf("  %-7s", label);
    for (uint32_t i = 0; i < r.n_entries; i++)
        if (r.entries[i].comp_bytes > 0)
            printf("  %s %.3fx", r.entries[i].name, (double)r.entries[i].raw_bytes / (double)r.entries[i].comp_bytes);
    printf("\n");
    kd_ckpt_close(&r);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_ckpt CKPT [ROUNDS] [THREADS...]\n");
        return 2;
    }
    const char *src = argv[1];
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (rounds < 1 || rounds > MAX_ROUNDS) rounds = 5;
    int threads[MAX_CONFIGS / 2] = {0, 2}, n_threads = 2;
    if (argc > 3) {
        n_threads = 0;
        for (int i = 3; i < argc && n_threads < MAX_CONFIGS / 2; i++) threads[n_threads++] = atoi(argv[i]);
    }
    bench_secs s;
    double first_read = timed_read(src, &s, 1);
    bench_config cfg[MAX_CONFIGS];
    int n_cfg = 0;
    for (int p = 1; p >= 0; p--)
        for (int t = 0; t < n_threads; t++) cfg[n_cfg++] = (bench_config){.planes = p, .threads = threads[t]};
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s", src);
    snprintf(dir, sizeof dir, "%s", dirname(dir));
    snprintf(path, sizeof path, "%s/bench_copy.ckpt", dir);
    printf("%s: %d sections, %.1f MB raw (step %llu); the trainer's file read in %.3f s\n", src, s.n,
           (double)s.raw_bytes / 1e6, (unsigned long long)s.meta.step, first_read);
    for (int i = 0; i < s.n; i++)
        printf("  section %-18s %10.1f MB %s\n", s.names[i], (double)s.bytes[i] / 1e6, s.is_float[i] ? "float32" : "bytes");
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < n_cfg; k++) {
            bench_config *c = &cfg[(k + r) % n_cfg];
            c->write_s[r] = timed_write(path, &s, c);
            struct stat st;
            if (stat(path, &st) == 0) c->file_bytes = (long long)st.st_size;
            c->read_s[r] = timed_read(path, &s, 0);
        }
    printf("\nper section:\n");
    for (int k = 0; k < n_cfg; k += n_threads) {
        timed_write(path, &s, &cfg[k]);
        print_section_ratios(path, cfg[k].planes ? "planes" : "raw");
    }
    remove(path);
    printf("\n%d rounds, zstd level 3; MB/s of raw bytes:\n\n", rounds);
    printf("| floats | threads | write best s | write median s | write MB/s | read best s | read median s | read MB/s | file MB | ratio |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int k = 0; k < n_cfg; k++) print_row(&cfg[k], rounds, s.raw_bytes);
    for (int i = 0; i < s.n; i++) free(s.data[i]);
    return 0;
}
