/* kd_cuda.h — the public face of the CUDA backend (issue #10), beyond the kd_backend table:
 * opening it, choosing the GPU from the node-local rank, pinned host buffers and
 * asynchronous batch uploads on a copy stream that overlaps compute, and the mixed-precision
 * option (math modes, the non-finite check of loss scaling). NCCL: nccl_comm.h.
 *
 * Conventions:
 *  - This header includes no CUDA header, so the worker can use it from plain C; streams
 *    are handed out as `void *` (a cudaStream_t).
 *  - Everything below exists only in a CUDA build (KD_HAVE_CUDA in kd_build_config.h).
 *  - The backend runs every operation on one non-blocking "compute" stream of the device
 *    that was current when it was opened. Operations are asynchronous except those that
 *    return data to the host (copy_to_host, sum) and copy_from_host, which waits until
 *    the source may be reused (use kd_cuda_upload for the fast path). b->sync waits for all.
 *  - Convolutions run through cuDNN with NCHW float32 descriptors and, by default, FMA math
 *    (no TF32; kd_cuda_set_math selects tensor-core modes), the algorithm chosen once per
 *    shape by cuDNN's heuristics among the DETERMINISTIC ones that fit the workspace limit
 *    (KD_CUDA_WS_LIMIT_DEFAULT, or CROSSKD_CUDNN_WORKSPACE_MB in MiB).
 */
#ifndef KD_KERNELS_CUDA_KD_CUDA_H
#define KD_KERNELS_CUDA_KD_CUDA_H

#include <stddef.h>

#include "kernels/backend.h"

#define KD_CUDA_WS_LIMIT_DEFAULT ((size_t)512 << 20)

/* Number of usable CUDA devices: 0 when there is none or no working driver (then *why, when
 * non-NULL, points to the runtime's error string, else to NULL). */
int kd_cuda_device_count(const char **why);

/* Chooses this rank's GPU from its node-local rank (MPI_Comm_split_type in the worker) and
 * makes it current for this thread. Call it before any other CUDA call of the process, so
 * no context is created on GPU 0 by accident. One rank per GPU:
 *  - local_rank when the node's ranks all see the node's GPUs (local_rank < visible count);
 *  - device 0 when each rank sees exactly one GPU (CUDA_VISIBLE_DEVICES set per task, as
 *    srun --gpus-per-task=1 does);
 *  - otherwise an error naming the counts, as is a machine without devices.
 * *device gets the ordinal. */
kd_status kd_cuda_select_device(int local_rank, int local_size, int *device, kd_err *err);

/* The CUDA backend on the current device (kd_backend_open("cuda", ...) calls this).
 * threads is accepted for symmetry with the CPU backend and must be >= 0; it is unused.
 * Errors: "no CUDA device" (with the runtime's reason), library initialisation failures. */
kd_status kd_cuda_backend_open(int threads, const kd_backend **out, kd_err *err);

/* The compute stream (cudaStream_t) and the device ordinal of a CUDA backend. */
void *kd_cuda_stream(const kd_backend *b);
int kd_cuda_device(const kd_backend *b);
/* Shapes with a cached cuDNN algorithm choice (a test hook, like the CPU's). */
size_t kd_cuda_conv_cache_entries(const kd_backend *b);

/* Page-locked host memory (cudaHostAlloc, portable): what batches are assembled in so the
 * uploads are true DMA and asynchronous. Failure is fatal. alloc(0) returns NULL; free(NULL)
 * is a no-op. */
void *kd_cuda_pinned_alloc(size_t bytes);
void kd_cuda_pinned_free(void *p);

/* Batch uploads on the backend's copy stream, overlapping compute:
 *   kd_cuda_upload_after_compute(b)  uploads issued from now on wait for the compute work
 *                                    queued so far (e.g. the step still reading that buffer);
 *   kd_cuda_upload(b, dst, src, n)   enqueues the copy (src must be pinned and stay
 *                                    untouched until kd_cuda_upload_sync);
 *   kd_cuda_upload_fence(b)          compute queued from now on waits for the uploads
 *                                    issued so far (call before the step that reads them);
 *   kd_cuda_upload_sync(b)           the host waits for the uploads issued so far (before it
 *                                    refills the pinned source). */
void kd_cuda_upload_after_compute(const kd_backend *b);
void kd_cuda_upload(const kd_backend *b, void *dst_dev, const void *src_pinned, size_t bytes);
void kd_cuda_upload_fence(const kd_backend *b);
void kd_cuda_upload_sync(const kd_backend *b);

/* ---- mixed precision (issue #10 item 4): the math of the matrix engines ------------------
 * Storage stays float32 everywhere (parameters, gradients, momentum, activations), so the
 * weights the optimiser updates are fp32 masters and every accumulation is fp32; what the
 * option changes is how cuBLAS GEMMs and cuDNN convolutions multiply:
 *   FP32  FMA units only (the default; what the CPU-comparison tests hold to);
 *   TF32  tensor cores with inputs rounded to TF32 (fp32 range, 10-bit mantissa);
 *   FP16  inputs down-converted to fp16 on tensor cores (cuBLAS COMPUTE_32F_FAST_16F, cuDNN
 *         TENSOR_OP_MATH_ALLOW_CONVERSION): gradients can underflow or overflow fp16, so
 *         train with loss scaling (kernels/cuda/loss_scale.h and kd_cuda_all_finite);
 *   BF16  cuBLAS in bf16 (COMPUTE_32F_FAST_16BF); cuDNN's legacy API has no fp32-to-bf16
 *         conversion mode, so convolutions run in TF32 (bf16's exponent range, more
 *         mantissa). No loss scaling needed.
 * Convolution algorithm choices are cached per math mode. */
typedef enum kd_cuda_math {
    KD_CUDA_MATH_FP32 = 0,
    KD_CUDA_MATH_TF32 = 1,
    KD_CUDA_MATH_FP16 = 2,
    KD_CUDA_MATH_BF16 = 3,
} kd_cuda_math;

void kd_cuda_set_math(const kd_backend *b, kd_cuda_math math);
kd_cuda_math kd_cuda_get_math(const kd_backend *b);
/* "fp32", "tf32", "fp16", "bf16" (a config value); anything else is an error naming them. */
kd_status kd_cuda_math_parse(const char *name, kd_cuda_math *out, kd_err *err);

/* 1 when every one of the elems floats at x is finite, 0 when one is Inf or NaN (the loss
 * scaler's overflow check on the scaled gradients). Synchronises the compute stream. */
int kd_cuda_all_finite(const kd_backend *b, const float *x, size_t elems);

#endif
