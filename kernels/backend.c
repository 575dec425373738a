/* backend.c — picks a backend by device name (DESIGN.md §6). "cpu" is always built (and
 * wrapped in the guarded variant of kernels/cpu/guard.c when CROSSKD_GUARD_DEVICE_MEMORY
 * asks for it); "cuda" is kernels/cuda/'s kd_cuda_backend_open in a CUDA build
 * (KD_HAVE_CUDA), which reports "no CUDA device" on a machine without one, and an error
 * naming the build otherwise.
 */
#include "kernels/backend.h"

#include <string.h>

#include "kd_build_config.h"
#if KD_HAVE_CUDA
#include "kernels/cuda/kd_cuda.h"
#endif

kd_status kd_backend_open(const char *device, int threads, const kd_backend **out, kd_err *err)
{
    if (!out) return kd_errf(err, KD_EINVAL, "kd_backend_open: out is NULL");
    *out = NULL;
    if (!device) return kd_errf(err, KD_EINVAL, "device: not set (expected \"cpu\" or \"cuda\")");
    if (threads < 0)
        return kd_errf(err, KD_EINVAL, "threads: %d is negative (0 = OMP_NUM_THREADS or all cores)",
                       threads);
    if (strcmp(device, "cpu") == 0) {
        kd_status st = kd_cpu_backend_open(threads, out, err);
        if (st || !kd_cpu_guard_requested()) return st;
        return kd_cpu_guard_wrap(*out, out, err);
    }
    if (strcmp(device, "cuda") == 0) {
#if KD_HAVE_CUDA
        return kd_cuda_backend_open(threads, out, err);
#else
        return kd_errf(err, KD_EUNSUPPORTED,
                       "device: \"cuda\": this binary was built without CUDA "
                       "(reconfigure with -Dcuda=enabled where nvcc, cuDNN, cuBLAS and NCCL exist)");
#endif
    }
    return kd_errf(err, KD_EINVAL, "device: unknown device \"%s\" (expected \"cpu\" or \"cuda\")",
                   device);
}
