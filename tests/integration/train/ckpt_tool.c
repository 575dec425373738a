/* ckpt_tool — checks on training checkpoints for the integration tests.
 *   ckpt_tool verify DIR          `latest` (if present) and the newest valid checkpoint verify
 *   ckpt_tool compare A B TOL     student parameters and momentum of two checkpoints agree:
 *                                 TOL 0 = bit-identical, else max |a-b| <= TOL * (1 + |b|)
 *   ckpt_tool step FILE           prints the iteration a checkpoint was written at
 * Exit status 0 when the check holds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/checkpoint.h"

static float *read_section(kd_ckpt_reader *r, const char *name, size_t *n)
{
    const kd_ckpt_entry *e = kd_ckpt_find(r, name);
    if (!e) return NULL;
    float *buf = malloc(e->raw_bytes + 1);
    kd_err err = {0};
    if (kd_ckpt_read(r, name, buf, e->raw_bytes, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        free(buf);
        return NULL;
    }
    *n = e->raw_bytes / sizeof(float);
    return buf;
}

static int compare(const char *a, const char *b, double tol)
{
    kd_ckpt_reader ra, rb;
    kd_err err = {0};
    if (kd_ckpt_open(a, &ra, &err) || kd_ckpt_open(b, &rb, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int bad = 0;
    const char *names[] = {"student.params", "student.momentum"};
    for (int s = 0; s < 2; s++) {
        size_t na = 0, nb = 0;
        float *x = read_section(&ra, names[s], &na), *y = read_section(&rb, names[s], &nb);
        if (!x || !y || na != nb) {
            fprintf(stderr, "%s: missing or different sizes\n", names[s]);
            return 1;
        }
        double worst = 0;
        size_t differ = 0;
        for (size_t i = 0; i < na; i++) {
            if (x[i] != y[i]) differ++;
            double d = fabs((double)x[i] - y[i]) / (1.0 + fabs((double)y[i]));
            if (d > worst) worst = d;
        }
        printf("%s: %zu values, %zu differ, max relative difference %.3g\n", names[s], na, differ, worst);
        if (tol == 0 ? differ != 0 : worst > tol) bad = 1;
        free(x);
        free(y);
    }
    kd_ckpt_close(&ra);
    kd_ckpt_close(&rb);
    return bad;
}

int main(int argc, char **argv)
{
    kd_err err = {0};
    if (argc == 3 && !strcmp(argv[1], "verify")) {
        char path[1024], skipped[4096];
        if (kd_ckpt_find_latest(argv[2], path, sizeof path, skipped, sizeof skipped, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        if (skipped[0]) { /* `latest` must never name a broken file */
            fprintf(stderr, "skipped invalid checkpoints: %s\n", skipped);
            return 1;
        }
        printf("latest valid: %s\n", path);
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "compare")) return compare(argv[2], argv[3], atof(argv[4]));
    if (argc == 3 && !strcmp(argv[1], "step")) {
        kd_ckpt_reader r;
        if (kd_ckpt_open(argv[2], &r, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        printf("%llu\n", (unsigned long long)r.meta.step);
        kd_ckpt_close(&r);
        return 0;
    }
    fprintf(stderr, "usage: ckpt_tool verify DIR | compare A B TOL | step FILE\n");
    return 2;
}
