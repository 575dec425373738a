#!/usr/bin/env bash
# nccl_case.sh PROG MODE NP — run test_nccl_mpi MODE under `mpirun -np NP`, bounded in time.
# A run whose rank 0 printed "skipped:" (not one GPU per local rank) exits 77: meson's skip.
# watchdog: success means the job ENDED, non-zero, soon, with the timeout diagnostic.
set -u
prog=$1 mode=$2 np=$3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s)
timeout 150 mpirun --oversubscribe -np "$np" --mca btl self,vader,tcp "$prog" "$mode" >"$out" 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
cat "$out"
if grep -q "^skipped:" "$out"; then exit 77; fi
if [ "$mode" = watchdog ]; then
  [ "$rc" -eq 124 ] && { echo "FAIL: the job hung on a collective a rank never joined"; exit 1; }
  [ "$rc" -ne 0 ] || { echo "FAIL: the job reported success"; exit 1; }
  grep -q "collective operation timeout" "$out" ||
    { echo "FAIL: no 'collective operation timeout' diagnostic"; exit 1; }
  [ "$elapsed" -lt 45 ] || { echo "FAIL: took ${elapsed}s for a 3 s timeout"; exit 1; }
  echo "ok: the watchdog ended the job with status $rc after ${elapsed}s"
  exit 0
fi
exit "$rc"
