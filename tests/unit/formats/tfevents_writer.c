/* tfevents_writer DIR — writes train/lr = 0.01, 0.02, 0.03 at steps 0, 10, 20 (for
 * check_tfevents.py). */
#include <stdio.h>

#include "proto/tfevents.h"

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    kd_tfevents w;
    kd_err err = {0};
    if (kd_tfevents_open(&w, argv[1], &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    for (int i = 0; i < 3; i++) kd_tfevents_scalar(&w, "train/lr", i * 10, 0.01f * (float)(i + 1), &err);
    kd_tfevents_close(&w);
    return 0;
}
