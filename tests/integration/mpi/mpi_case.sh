#!/usr/bin/env bash
# mpi_case.sh PROG MODE NP — run PROG MODE under a real `mpirun -np NP --oversubscribe`,
# bounded in time. For rankdeath, success means the job ENDED with a non-zero status.
set -u
prog=$1 mode=$2 np=$3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
start=$(date +%s)
timeout 90 mpirun --oversubscribe -np "$np" --mca btl self,vader,tcp "$prog" "$mode" >out.$$ 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
cat out.$$; rm -f out.$$
if [ "$mode" = rankdeath ]; then
  [ "$rc" -eq 124 ] && { echo "FAIL: job hung after a rank died"; exit 1; }
  [ "$rc" -ne 0 ] || { echo "FAIL: job reported success after a rank died"; exit 1; }
  echo "ok: job ended with status $rc after ${elapsed}s"
  exit 0
fi
exit "$rc"
