/* backend.c — picks a backend by device name (DESIGN.md §6). "cpu" is always built; "cuda"
 * is reported as unavailable until kernels/cuda/ provides kd_cuda_backend_open.
 */
#include "kernels/backend.h"

#include <string.h>

kd_status kd_backend_open(const char *device, int threads, const kd_backend **out, kd_err *err)
{
    if (!out) return kd_errf(err, KD_EINVAL, "kd_backend_open: out is NULL");
    *out = NULL;
    if (!device) return kd_errf(err, KD_EINVAL, "device: not set (expected \"cpu\" or \"cuda\")");
    if (threads < 0)
        return kd_errf(err, KD_EINVAL, "threads: %d is negative (0 = OMP_NUM_THREADS or all cores)",
                       threads);
    if (strcmp(device, "cpu") == 0) return kd_cpu_backend_open(threads, out, err);
    if (strcmp(device, "cuda") == 0)
        return kd_errf(err, KD_EUNSUPPORTED, "device: \"cuda\" is not built into this binary");
    return kd_errf(err, KD_EINVAL, "device: unknown device \"%s\" (expected \"cpu\" or \"cuda\")",
                   device);
}
