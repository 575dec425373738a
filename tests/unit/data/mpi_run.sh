#!/usr/bin/env bash
# mpi_run.sh NP PROG ARGS... — PROG under a real `mpirun -np NP` on this machine
# (oversubscribed, shared memory and TCP), bounded in time; exit status of the job.
set -u
np=$1; shift
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
timeout 120 mpirun --oversubscribe -np "$np" --mca btl self,vader,tcp "$@"
