/* kd_test_gpu.h — how a GPU test leaves a machine without a GPU: one line and exit status
 * 77, which meson counts as skipped. For the tests that run CPU checks again on the CUDA
 * backend (suite 'cuda'); the program must link the kernels (kernels_dep).
 */
#ifndef KD_TEST_GPU_H
#define KD_TEST_GPU_H

#include <stdio.h>

#include "kernels/backend.h"

/* 1 (after printing "skipped: ...") when the CUDA backend cannot open here, else 0. */
static inline int kd_test_skip_without_gpu(void)
{
    const kd_backend *b = NULL;
    kd_err err = {0};
    if (kd_backend_open("cuda", 0, &b, &err) == KD_OK) {
        b->close(b);
        return 0;
    }
    printf("skipped: %s\n", err.msg);
    fflush(stdout);
    return 1;
}

#endif
