/* test_cuda_unbuilt.c — in a build without CUDA (-Dcuda=disabled, or no nvcc), asking for
 * the "cuda" device must fail with a message that names the cause, not "unknown device".
 */
#include <stdio.h>

#include "kd_test.h"
#include "kernels/backend.h"

static void test_cuda_not_built(void)
{
    const kd_backend *b = (const kd_backend *)1;
    kd_err err = {0};
    KD_EXPECT(kd_backend_open("cuda", 0, &b, &err) == KD_EUNSUPPORTED);
    KD_EXPECT(b == NULL);
    KD_EXPECT_STR_CONTAINS(err.msg, "built without CUDA");
}

int main(void)
{
    KD_TEST_RUN(test_cuda_not_built);
    return kd_test_summary();
}
