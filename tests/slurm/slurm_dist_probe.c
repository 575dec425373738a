/* slurm_dist_probe — stands in for crosskd-worker where the Slurm tests need the real MPI
 * start-up (worker/dist.c), because crosskd-worker does not call kd_dist_init yet.
 *
 *   slurm_dist_probe [CONFIG [--set key=value ...]]   (arguments accepted and ignored)
 *
 * Runs kd_dist_init as the worker will: under `srun --mpi=pmix` or `mpirun` inside an
 * allocation it prints one line per rank and exits 0; started directly in a multi-task
 * allocation it must refuse with the world-size message (printed on stderr, exit 1).
 */
#include <stdio.h>
#include <stdlib.h>

#include "worker/dist.h"

int main(int argc, char **argv)
{
    kd_dist d;
    kd_err err = {0};
    if (kd_dist_init(&argc, &argv, &d, &err)) {
        fprintf(stderr, "slurm_dist_probe: %s\n", err.msg);
        return 1;
    }
    const char *slurm_local = getenv("SLURM_LOCALID");
    printf("slurm_dist_probe: rank %d of %d on %s, local rank %d of %d (SLURM_LOCALID %s, SLURM_NTASKS %s)\n",
           d.rank, d.size, d.host, d.local_rank, d.local_size, slurm_local ? slurm_local : "-",
           getenv("SLURM_NTASKS") ? getenv("SLURM_NTASKS") : "-");
    fflush(stdout);
    kd_dist_barrier(&d);
    kd_dist_finalize(&d);
    return 0;
}
