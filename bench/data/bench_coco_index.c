/* bench_coco_index.c — time to parse a COCO instances file and build the training index
 * (one core), to write and to reload its zstd cache, and jansson's json_load_file on the
 * same file for comparison (a DOM parse only: no field extraction).
 *
 *   bench_coco_index FILE [REPEATS=3] [--no-jansson]
 * Prints the best of REPEATS for each phase (the machine is shared: best, not mean).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proto/coco_json.h"
#include "worker/data/coco_index.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define BEST(v, t) ((v) < 0 || (t) < (v) ? (t) : (v))

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE [REPEATS] [--no-jansson]\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    int reps = argc > 2 && argv[2][0] != '-' ? atoi(argv[2]) : 3;
    int jansson = 1;
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--no-jansson")) jansson = 0;
    struct stat st;
    if (stat(path, &st)) {
        perror(path);
        return 1;
    }
    char cache[4096];
    snprintf(cache, sizeof cache, "%s.bench.kdidx", path);
    kd_coco_index_opts o;
    kd_coco_index_opts_defaults(&o);
    double t_parse = -1, t_build = -1, t_write = -1, t_read = -1, t_jansson = -1;
    size_t n_img = 0, n_ann = 0, cache_bytes = 0;
    kd_coco_index x = {0};
    for (int r = 0; r < reps; r++) {
        kd_coco_file f;
        kd_err e = {0};
        double t0 = now_s();
        if (kd_coco_file_load(path, &f, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        double t1 = now_s();
        kd_coco_index_free(&x);
        if (kd_coco_index_build(&f, &o, &x, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        double t2 = now_s();
        n_img = f.n_images, n_ann = f.n_anns;
        kd_coco_file_free(&f);
        t_parse = BEST(t_parse, t1 - t0);
        t_build = BEST(t_build, t2 - t1);
        double t3 = now_s();
        if (kd_coco_index_cache_write(&x, cache, path, &o, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        double t4 = now_s();
        kd_coco_index y;
        if (kd_coco_index_cache_read(cache, path, &o, &y, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        double t5 = now_s();
        if (y.blob_bytes != x.blob_bytes || memcmp(y.blob, x.blob, x.blob_bytes)) {
            fprintf(stderr, "cache round trip differs\n");
            return 1;
        }
        kd_coco_index_free(&y);
        t_write = BEST(t_write, t4 - t3);
        t_read = BEST(t_read, t5 - t4);
        struct stat cs;
        if (!stat(cache, &cs)) cache_bytes = (size_t)cs.st_size;
        if (jansson) {
            json_error_t je;
            double j0 = now_s();
            json_t *root = json_load_file(path, 0, &je);
            double j1 = now_s();
            if (!root) {
                fprintf(stderr, "jansson: %s\n", je.text);
                jansson = 0;
            } else {
                json_decref(root);
                t_jansson = BEST(t_jansson, j1 - j0);
            }
        }
    }
    unlink(cache);
    printf("file %s: %.1f MB, %zu images, %zu annotations; index: %u images, %u boxes, %.1f MB; cache %.1f MB\n", path,
           st.st_size / 1e6, n_img, n_ann, x.n_images, x.n_boxes, x.blob_bytes / 1e6, cache_bytes / 1e6);
    printf("best of %d: parse %.3f s (%.0f MB/s), build index %.3f s, parse+index %.3f s, cache write %.3f s, "
           "cache reload %.3f s\n",
           reps, t_parse, st.st_size / 1e6 / t_parse, t_build, t_parse + t_build, t_write, t_read);
    if (t_jansson > 0)
        printf("jansson json_load_file (DOM only, no extraction): %.3f s (%.0f MB/s) = %.1fx the parser here\n",
               t_jansson, st.st_size / 1e6 / t_jansson, t_jansson / t_parse);
    kd_coco_index_free(&x);
    return 0;
}
