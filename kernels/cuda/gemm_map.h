/* gemm_map.h — how a row-major GEMM of kernels/backend.h becomes a column-major one (cuBLAS):
 * a row-major matrix M (r x c, row stride ld) is, byte for byte, the column-major M^T with
 * leading dimension ld, so C = alpha*op(A)*op(B) + beta*C is computed as
 * C^T = alpha*op(B)^T*op(A)^T + beta*C^T: operands swapped, m and n swapped, the op flags
 * and leading dimensions kept with their matrices. Plain C, no CUDA: ops_cuda.c feeds the
 * result to cublasSgemm, and tests/unit/cuda feeds it to a column-major cblas_sgemm to
 * check the mapping against the CPU backend on any machine.
 */
#ifndef KD_KERNELS_CUDA_GEMM_MAP_H
#define KD_KERNELS_CUDA_GEMM_MAP_H

typedef struct kd_colmajor_gemm {
    int trans_first, trans_second; /* op of the first and second operand */
    int m, n, k;                   /* column-major result is m x n */
    const float *first;
    int ld_first;
    const float *second;
    int ld_second;
} kd_colmajor_gemm;

static inline kd_colmajor_gemm kd_gemm_row_to_col(int trans_a, int trans_b, int m, int n, int k,
                                                  const float *a, int lda, const float *b,
                                                  int ldb)
{
    kd_colmajor_gemm g = {trans_b, trans_a, n, m, k, b, ldb, a, lda};
    return g;
}

#endif
