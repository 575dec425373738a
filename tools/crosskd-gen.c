/* crosskd-gen — write a synthetic COCO-format detection dataset (worker/data/synth.h).
 *
 *   crosskd-gen --out DIR [--seed N] [--train N] [--val N] [--size-min PX] [--size-max PX]
 *               [--categories K] [--objects-min N] [--objects-max N] [--quality Q]
 *               [--annotations-only] [--no-progress]
 *
 * Exit status: 0 done, 2 bad options, 1 generation failed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/data/synth.h"

static void usage(FILE *f, const kd_synth_cfg *d, const kd_synth_cfg *a)
{
    fprintf(f,
            "usage: crosskd-gen --out DIR [options]\n"
            "Writes DIR/train/*.jpg, DIR/val/*.jpg, DIR/annotations/instances_{train,val}.json (COCO format).\n"
            "Deterministic: the same options give the same files.\n\n"
            "  --out DIR            output directory (created if missing)\n"
            "  --seed N             random seed (default %llu)\n"
            "  --train N            training images (default %d; annotations-only %d)\n"
            "  --val N              validation images (default %d; annotations-only %d)\n"
            "  --size-min PX        smallest long side of an image (default %d; annotations-only %d)\n"
            "  --size-max PX        largest long side of an image (default %d; annotations-only %d)\n"
            "  --categories K       categories, 1..%d (annotations-only: up to %d; default %d / %d)\n"
            "  --objects-min N      objects per image, at least (default %d / %d)\n"
            "  --objects-max N      objects per image, at most (default %d / %d)\n"
            "  --quality Q          JPEG quality 1..100 (default %d)\n"
            "  --annotations-only   write only the JSON files, COCO-train-sized by default, for load benchmarks\n"
            "  --no-progress        no progress line on stderr\n"
            "  --help               this text\n",
            (unsigned long long)d->seed, d->n_train, a->n_train, d->n_val, a->n_val, d->size_min, a->size_min,
            d->size_max, a->size_max, KD_SYNTH_MAX_CATEGORIES, KD_SYNTH_MAX_CATEGORIES_ANN, d->n_categories,
            a->n_categories, d->objects_min, a->objects_min, d->objects_max, a->objects_max, d->jpeg_quality);
}

static int parse_int(const char *opt, const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "crosskd-gen: %s: '%s' is not an integer in [%lld, %lld]\n", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    kd_synth_cfg defaults, ann_defaults, c;
    kd_synth_cfg_defaults(&defaults, 0);
    kd_synth_cfg_defaults(&ann_defaults, 1);
    int ann_only = 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--annotations-only")) ann_only = 1;
    c = ann_only ? ann_defaults : defaults;
    static const struct { const char *name; long long lo, hi; } int_opts[] = {
        {"--seed", 0, 0x7FFFFFFFFFFFFFFFll}, {"--train", 0, 10000000}, {"--val", 0, 10000000},
        {"--size-min", 32, 8192}, {"--size-max", 32, 8192}, {"--categories", 1, KD_SYNTH_MAX_CATEGORIES_ANN},
        {"--objects-min", 0, 1000}, {"--objects-max", 0, 1000}, {"--quality", 1, 100}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout, &defaults, &ann_defaults);
            return 0;
        }
        if (!strcmp(a, "--annotations-only")) continue;
        if (!strcmp(a, "--no-progress")) { c.progress = 0; continue; }
        if (!strcmp(a, "--out")) {
            if (i + 1 >= argc) { fprintf(stderr, "crosskd-gen: --out needs a directory\n"); return 2; }
            c.out_dir = argv[++i];
            continue;
        }
        int k = -1;
        for (size_t j = 0; j < sizeof int_opts / sizeof int_opts[0]; j++)
            if (!strcmp(a, int_opts[j].name)) k = (int)j;
        if (k < 0) {
            fprintf(stderr, "crosskd-gen: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) { fprintf(stderr, "crosskd-gen: %s needs a value\n", a); return 2; }
        long long v;
        if (parse_int(a, argv[++i], int_opts[k].lo, int_opts[k].hi, &v)) return 2;
        switch (k) {
        case 0: c.seed = (uint64_t)v; break;
        case 1: c.n_train = (int32_t)v; break;
        case 2: c.n_val = (int32_t)v; break;
        case 3: c.size_min = (int32_t)v; break;
        case 4: c.size_max = (int32_t)v; break;
        case 5: c.n_categories = (int32_t)v; break;
        case 6: c.objects_min = (int32_t)v; break;
        case 7: c.objects_max = (int32_t)v; break;
        case 8: c.jpeg_quality = (int32_t)v; break;
        }
    }
    kd_err err = {0};
    if (kd_synth_cfg_check(&c, &err)) {
        fprintf(stderr, "crosskd-gen: %s\n", err.msg);
        return 2;
    }
    if (kd_synth_generate(&c, &err)) {
        fprintf(stderr, "crosskd-gen: %s\n", err.msg);
        return 1;
    }
    return 0;
}
