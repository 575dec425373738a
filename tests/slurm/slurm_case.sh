#!/usr/bin/env bash
# slurm_case.sh CASE TOP WORKER FINAL RESUME_RE PROBE REAL_WORKER GEN — one test of
# deploy/slurm/ on a real Slurm:
# a private one-node cluster (start_slurm.sh) that lives and dies with this test.
#
#   TOP     the crosskd checkout (deploy/slurm/ and tests/slurm/ are read from it)
#   WORKER  the program the batch scripts run (CROSSKD_WORKER): crosskd-worker, or the
#           stand-in fake_worker.sh
#   FINAL   the file, in a job's work dir, that holds the trained weights at the end
#   RESUME_RE  extended regex of the worker's log line saying it resumed, %s = the step
#           of the checkpoint iter_<step>.ckpt (looked for outside the batch script's lines)
#   PROBE   a program that runs worker/dist.c's kd_dist_init and prints each rank's
#           world and local rank (launch checks)
#   REAL_WORKER  crosskd-worker (the mis-launch case always uses the real one)
#   GEN     crosskd-gen, which makes the tiny dataset tiny.yaml trains on
#
# Cases:
#   requeue-srun, requeue-mpirun  two jobs of the one-node script with 2 tasks: one runs
#       straight; the other gets the time-limit signal (SIGUSR1 to the batch shell, as
#       --signal=B:USR1@ sends it) mid-run, must checkpoint, requeue itself, resume from
#       that checkpoint and end with the same final weights.
#   timelimit   Slurm itself sends --signal=B:USR1@50 to a 1-minute job: it requeues and
#       resumes; then `scancel` (SIGTERM with time left) must end it without a requeue.
#   mislaunch   crosskd-worker started without srun/mpirun in a 2-task allocation fails with
#       the world-size message; the same probe under the one-node script (srun, then mpirun)
#       starts 2 ranks with node-local ranks 0 and 1; so does the multi-node script with
#       --nodes=1 (the only node there is).
#   array       the ablation array script, tasks 0-2, completes; each task has its own work
#       dir and row; task 1 is signalled and requeued alone.
# Exit 0 pass, 1 fail, 77 skip (Slurm cannot run here; the reason is printed).
set -u
case_=${1:?case} top=${2:?top} worker=${3:?worker} final=${4:?final} resume_re=${5:?resume_re} probe=${6:?probe}
real_worker=${7:?real_worker} gen=${8:?gen}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# meson passes built programs relative to the build dir: jobs run elsewhere.
abs() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
top=$(abs "$top") worker=$(abs "$worker") probe=$(abs "$probe") real_worker=$(abs "$real_worker") gen=$(abs "$gen")
config=$here/tiny.yaml
# Did the worker say it resumed from step K? (the batch script's own lines start with
# "crosskd-job[" and are left out)
resumed_from() {  # LOG K
  # shellcheck disable=SC2059
  grep -v '^crosskd-job\[' "$1" | grep -Eq "$(printf "$resume_re" "$2")"
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/crosskd-slurm.XXXXXX") || exit 1
cluster=$tmp/cluster
t0=$SECONDS
failed=0
cleanup() {
  bash "$here/stop_slurm.sh" "$cluster"
  if [ "$failed" -ne 0 ] || [ -n "${KEEP_SLURM_TMP:-}" ]; then echo "files kept in $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
  failed=1
  echo "FAIL ($case_): $*"
  for f in "$tmp"/submit/*.out; do [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }; done
  for f in "$tmp"/work/*/logs/*.log "$tmp"/work/*/*/logs/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 25 "$f"; }; done
  for f in slurmctld.log slurmd.log; do [ -f "$cluster/log/$f" ] && { echo "--- $f"; tail -n 15 "$cluster/log/$f"; }; done
  exit 1
}
say() { echo "[$((SECONDS - t0))s] $*"; }

bash "$here/start_slurm.sh" "$cluster"
rc=$?
[ "$rc" -eq 77 ] && { echo "SKIP: a real Slurm cannot run on this machine (see above)"; exit 77; }
[ "$rc" -eq 0 ] || fail "start_slurm.sh failed ($rc)"
# shellcheck source=/dev/null
source "$cluster/env"
say "slurm up: $(sinfo -h -N -o '%N %t %c CPUs %G')"

mkdir -p "$tmp/submit" "$tmp/work"
cd "$tmp/submit" || exit 1
"$gen" --out "$tmp/data" --seed 0 --train 16 --val 4 --size-min 64 --size-max 96 --categories 2 \
  --objects-max 3 --no-progress >/dev/null || fail "crosskd-gen failed"
data=(--set "data_root=$tmp/data")
# The stand-in worker's step time (the real one takes ~0.05 s per step here).
export CROSSKD_FAKE_STEP_SECONDS=0.05
export CROSSKD_WORKER=$worker CROSSKD_WORK_ROOT=$tmp/work CROSSKD_HOME=$top
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader,tcp
# Two ranks on one node, the way the #SBATCH lines ask for GPUs (the test node has 8
# pretend ones).
small=(--ntasks-per-node=2 --gpus-per-node=2 --cpus-per-task=1)

field() { scontrol show job -o "$1" 2>/dev/null | grep -o " $2=[^ ]*" | head -n1 | cut -d= -f2; }
state() { field "$1" JobState; }
# wait_until SECONDS CMD... — poll CMD every 0.2 s.
wait_until() {
  local limit=$1 end
  shift
  end=$((SECONDS + limit))
  while [ "$SECONDS" -lt "$end" ]; do "$@" && return 0; sleep 0.2; done
  return 1
}
is_done() { case "$(state "$1")" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|BOOT_FAIL|DEADLINE) return 0 ;; esac; return 1; }
is_state() { [ "$(state "$1")" = "$2" ]; }
restarts_at_least() { [ "$(field "$1" Restarts)" -ge "$2" ] 2>/dev/null; }
submit() { sbatch --parsable "$@" | cut -d';' -f1; }
expect_completed() {  # JOB RESTARTS
  local st rs ec
  st=$(state "$1") rs=$(field "$1" Restarts) ec=$(field "$1" ExitCode)
  [ "$st" = COMPLETED ] && [ "$ec" = 0:0 ] || fail "job $1 ended $st with exit code $ec (want COMPLETED 0:0)"
  [ "$rs" = "$2" ] || fail "job $1 was started $((rs + 1)) times (want $(( $2 + 1 )))"
}

onenode=$top/deploy/slurm/crosskd-1node.sbatch
array=$top/deploy/slurm/crosskd-array.sbatch
multinode=$top/deploy/slurm/crosskd-multinode.sbatch

case "$case_" in
requeue-srun|requeue-mpirun)
  export CROSSKD_LAUNCHER=${case_#requeue-}
  n=160
  a=$(submit --job-name=straight "${small[@]}" "$onenode" "$config" "${data[@]}" --set "train_cfg.max_iters=$n") || fail "sbatch"
  b=$(submit --job-name=interrupted "${small[@]}" "$onenode" "$config" "${data[@]}" --set "train_cfg.max_iters=$n") || fail "sbatch"
  say "submitted $a (straight) and $b (interrupted), $n steps each, launcher $CROSSKD_LAUNCHER"
  wb=$tmp/work/interrupted
  # Mid-run: once the first periodic checkpoint (step c) exists and a few more steps are done.
  wait_until 60 test -s "$wb/checkpoints/latest" || fail "job $b wrote no checkpoint within 60 s"
  c=$(cat "$wb/checkpoints/latest") c=${c#iter_} c=${c%.ckpt}
  sleep 0.6
  is_state "$b" RUNNING || fail "job $b is $(state "$b") before the signal"
  scancel --batch --signal=USR1 "$b" || fail "scancel --batch --signal=USR1 $b"
  say "sent SIGUSR1 to the batch shell of $b"
  wait_until 30 restarts_at_least "$b" 1 || fail "job $b was not requeued within 30 s"
  ck=$(cat "$wb/checkpoints/latest")
  k=${ck#iter_} k=${k%.ckpt}
  say "job $b requeued (state $(state "$b")); latest checkpoint $ck"
  [ "$k" -gt "$c" ] && [ "$k" -lt "$n" ] || fail "checkpoint on the signal is at step $k, want $c < step < $n"
  wait_until 90 is_done "$a" || fail "job $a did not end within 90 s"
  wait_until 90 is_done "$b" || fail "job $b did not end within 90 s"
  expect_completed "$a" 0
  expect_completed "$b" 1
  lb=$tmp/work/interrupted/logs/slurm-$b.log
  grep -q "SIGUSR1 received" "$lb" || fail "the batch script did not log the signal"
  grep -q "scontrol requeue $b" "$lb" || fail "the batch script did not requeue"
  resumed_from "$lb" "$k" || fail "the second start did not resume from $ck"
  [ -f "$tmp/work/straight/$final" ] || fail "no $final from the straight run"
  cmp "$tmp/work/straight/$final" "$wb/$final" || fail "final weights differ between the straight and the interrupted run"
  say "ok: signal -> checkpoint at step $k -> requeue -> resume -> same final weights ($final) as the straight run"
  ;;

timelimit)
  a=$(submit --job-name=timelimit --time=1 --signal=B:USR1@50 "${small[@]}" "$onenode" "$config" "${data[@]}" --set train_cfg.max_iters=100000000) || fail "sbatch"
  say "submitted $a: --time=1 --signal=B:USR1@50, a run far longer than the limit"
  la=$tmp/work/timelimit/logs/slurm-$a.log
  # Slurm sends the signal within ~30 s of the start (its timer runs every 30 s and may
  # fire up to 60 s early), at every start of this 1-minute job.
  # The run checkpoints every few milliseconds, so `latest` has moved on by the time it is
  # read: take the step of the first resume line instead, and check that the start before
  # it wrote that checkpoint.
  resumed_latest() {
    restarts_at_least "$a" 1 && is_state "$a" RUNNING && [ -f "$la" ] || return 1
    local line n
    line=$(grep -v '^crosskd-job\[' "$la" | grep -Enm1 "$(printf "$resume_re" '[0-9]+')") || return 1
    n=${line%%:*}
    k=$(printf '%s\n' "${line#*:}" | grep -Eo 'iter_[0-9]+\.ckpt' | head -n1) k=${k#iter_} k=${k%.ckpt}
    ck=iter_$k.ckpt
    [ -n "$k" ] && grep -v '^crosskd-job\[' "$la" | head -n "$((n - 1))" | grep -q "iter_$k\.ckpt"
  }
  wait_until 100 resumed_latest || fail "job $a was not requeued and resumed within 100 s: did Slurm send SIGUSR1?"
  grep -q "SIGUSR1 received" "$la" || fail "the batch shell did not get SIGUSR1 from Slurm"
  grep -q "scontrol requeue $a" "$la" || fail "the batch script did not requeue"
  r=$(field "$a" Restarts)
  say "Slurm's SIGUSR1 -> checkpoint $ck -> requeue -> resumed (start $((r + 1))); now scancel: SIGTERM with time left, no requeue"
  scancel "$a"
  wait_until 30 is_done "$a" || fail "job $a did not end within 30 s of scancel"
  sleep 1
  [ "$(state "$a")" = CANCELLED ] || fail "job $a is $(state "$a") after scancel, want CANCELLED"
  [ "$(field "$a" Restarts)" = "$r" ] || fail "job $a was requeued after scancel"
  # (Unless the scancel fell between two starts, the batch shell got the SIGTERM.)
  if cat "$la" "$tmp/submit/timelimit-$a.out" | grep -q "SIGTERM"; then
    cat "$la" "$tmp/submit/timelimit-$a.out" | grep -q "will not requeue" || fail "the batch script did not log why it does not requeue"
  fi
  say "ok: Slurm's --signal=B:USR1 -> requeue -> resume; scancel -> no requeue"
  ;;

mislaunch)
  a=$(submit --job-name=mislaunch --ntasks=2 --output=mislaunch-%j.out --wrap "exec '$real_worker' '$config' --set 'data_root=$tmp/data'") || fail "sbatch"
  wait_until 30 is_done "$a" || fail "job $a did not end within 30 s"
  out=$tmp/submit/mislaunch-$a.out
  [ "$(state "$a")" = FAILED ] || fail "crosskd-worker started without a launcher in a 2-task job: job $(state "$a"), want FAILED"
  grep -q "MPI world size is 1 but Slurm allocated 2 tasks (SLURM_NTASKS)" "$out" || fail "no clear world-size message"
  say "ok: mis-launch refused: $(grep -m1 'world size' "$out")"
  for l in srun mpirun; do
    b=$(CROSSKD_WORKER=$probe CROSSKD_LAUNCHER=$l submit --job-name="launch-$l" "${small[@]}" "$onenode" "$config") || fail "sbatch"
    wait_until 45 is_done "$b" || fail "job $b ($l) did not end within 45 s"
    expect_completed "$b" 0
    lb=$tmp/work/launch-$l/logs/slurm-$b.log
    for r in 0 1; do
      grep -q "rank $r of 2 on .*, local rank $r of 2" "$lb" || fail "$l: no rank $r of 2 with local rank $r in $lb"
    done
    say "ok: under the one-node script with $l: 2 ranks, local ranks 0 and 1"
  done
  # The multi-node script on the one node there is (its body is the one-node script's).
  b=$(CROSSKD_WORKER=$probe submit --job-name=launch-multi --nodes=1 "${small[@]}" "$multinode" "$config") || fail "sbatch"
  wait_until 45 is_done "$b" || fail "job $b (multinode script) did not end within 45 s"
  expect_completed "$b" 0
  grep -q "rank 1 of 2 on .*, local rank 1 of 2" "$tmp/work/launch-multi/logs/slurm-$b.log" || fail "multinode script: no rank 1 of 2"
  say "ok: the multi-node script (--nodes=1 here) starts 2 ranks"
  ;;

array)
  # Rows 1-2 distil: the teacher is the same tiny model, trained here for 16 iterations by
  # crosskd-worker as a single rank (outside Slurm).
  (unset SLURM_CONF; "$real_worker" "$config" "${data[@]}" --set "work_dir=$tmp/teacher" \
     --set train_cfg.max_iters=16 >"$tmp/teacher.log" 2>&1) || { tail -n 20 "$tmp/teacher.log"; fail "training the teacher failed"; }
  [ -f "$tmp/teacher/final.safetensors" ] || fail "the teacher run wrote no final.safetensors"
  a=$(submit --array=0-2 "${small[@]}" "$array" "$config" "${data[@]}" --set teacher_config=tiny.yaml \
      --set "teacher_ckpt=$tmp/teacher/final.safetensors" --set train_cfg.max_iters=120) || fail "sbatch"
  say "submitted array $a (tasks 0-2)"
  w1=$tmp/work/crosskd-ablation/1
  wait_until 60 test -s "$w1/checkpoints/latest" || fail "array task 1 wrote no checkpoint within 60 s"
  scancel --batch --signal=USR1 "${a}_1" || fail "scancel --batch --signal=USR1 ${a}_1"
  say "sent SIGUSR1 to task 1"
  wait_until 30 restarts_at_least "${a}_1" 1 || fail "array task 1 was not requeued within 30 s"
  ck=$(cat "$w1/checkpoints/latest") k=${ck#iter_} k=${k%.ckpt}
  for t in 0 1 2; do wait_until 90 is_done "${a}_$t" || fail "array task $t did not end within 90 s"; done
  for t in 0 1 2; do
    want=0; [ "$t" = 1 ] && want=1
    expect_completed "${a}_$t" "$want"
    w=$tmp/work/crosskd-ablation/$t
    [ -f "$w/$final" ] || fail "array task $t: no $final in $w"
    row=$(bash "$array" --list | awk -v t="$t" '$1 == t { print $2 }')
    grep -q "ablation row $t '$row'" "$w/logs/slurm-${a}_$t.log" || fail "array task $t did not run row $t ($row)"
  done
  grep -q "scontrol requeue ${a}_1" "$w1/logs/slurm-${a}_1.log" || fail "task 1 did not requeue itself alone"
  resumed_from "$w1/logs/slurm-${a}_1.log" "$k" || fail "array task 1 did not resume from $ck"
  wa=$tmp/work/crosskd-ablation
  if [ "$final" = final_weights.txt ]; then  # the stand-in records the settings it got
    grep -q "model.kd_cfg.method=none" "$wa/0/$final" &&
      grep -q "reused_teacher_head_idx=0" "$wa/1/$final" &&
      grep -q "reused_teacher_head_idx=1" "$wa/2/$final" || fail "a task got the wrong row's settings"
  else  # crosskd-worker writes its effective config into the work dir
    grep -q "^    method: none" "$wa/0/config.yaml" &&
      grep -q "^    method: crosskd" "$wa/1/config.yaml" && grep -q "reused_teacher_head_idx: 0" "$wa/1/config.yaml" &&
      grep -q "reused_teacher_head_idx: 1" "$wa/2/config.yaml" || fail "a task trained with the wrong row's settings (config.yaml)"
  fi
  say "ok: 3 array tasks completed in their own work dirs; task 1 requeued alone and resumed from $ck"
  ;;

*) echo "unknown case '$case_'"; exit 2 ;;
esac
echo "PASS ($case_) in $((SECONDS - t0)) s"
exit 0
