#!/usr/bin/env bash
# fake_worker.sh — a stand-in for crosskd-worker that keeps the worker's contract with the
# Slurm batch scripts (deploy/slurm/), so they can be tested on a real Slurm without the
# trainer (it was written before the trainer existed; tests/slurm/meson.build selects it
# with one line). It trains nothing: its "weights" are a hash chain, one link per step,
# so a run that resumed from a checkpoint ends with the same final weights as one that
# never stopped only if the resume restored the exact step and state. Slurm delivers a
# step's signals to every process of the step (here also `sleep`), so a step's work is
# done in the shell itself.
#
#   fake_worker.sh CONFIG [--set key=value ...]
#
# The contract it keeps (the real worker's, DESIGN.md §2, §8, worker/dist.h):
# - CONFIG must exist; --set work_dir=DIR (default work_dirs/default), resume=auto (resume
#   from the checkpoint `latest` names in work_dir; start fresh if there is none),
#   train_cfg.max_iters=N (default 30) steps; other --set keys are recorded in the result.
# - Rank from OMPI_COMM_WORLD_RANK / PMIX_RANK / SLURM_PROCID; world size from
#   OMPI_COMM_WORLD_SIZE / SLURM_STEP_NUM_TASKS. Every rank steps; rank 0 alone writes.
#   Like worker/dist.c it refuses a world size that differs from SLURM_NTASKS.
# - Rank 0 writes <work_dir>/checkpoints/iter_<step>.ckpt every
#   `default_hooks.checkpoint.interval` steps (default 5; the real one counts epochs)
#   atomically (tmp file, rename), then the `latest` pointer the same way, keeping 3.
# - SIGUSR1 or SIGTERM: at the next step boundary rank 0 writes a checkpoint, every rank
#   exits 85 (KD_EXIT_REQUEUE) once it is on disk.
# - After N steps rank 0 writes <work_dir>/final_weights.txt (the run's result; the real
#   worker writes final.safetensors) and everyone exits 0.
# - The resume line: "resumed from <dir>/iter_<step>.ckpt: iteration <step>" (the real one's).
# Seconds per step: CROSSKD_FAKE_STEP_SECONDS (default 0.2).
set -u
# Handlers first, as the real worker must: a signal before them would kill the process.
stop=""
trap 'stop=USR1' USR1
trap 'stop=TERM' TERM
config=${1:-}
[ -n "$config" ] && [ -f "$config" ] || { echo "fake_worker: missing or unreadable CONFIG '${config}'" >&2; exit 2; }
shift
work_dir=work_dirs/default resume="" max_iters=30 interval=5 extra=""
while [ $# -gt 0 ]; do
  case "$1" in
    --set) [ $# -ge 2 ] || { echo "fake_worker: --set needs key=value" >&2; exit 2; }
           kv=$2; shift 2 ;;
    --set=*) kv=${1#--set=}; shift ;;
    *) echo "fake_worker: unknown argument '$1'" >&2; exit 2 ;;
  esac
  case "$kv" in
    work_dir=*) work_dir=${kv#*=} ;;
    resume=*) resume=${kv#*=} ;;
    train_cfg.max_iters=*) max_iters=${kv#*=} ;;
    default_hooks.checkpoint.interval=*) interval=${kv#*=} ;;
    *=*) extra="$extra $kv" ;;
    *) echo "fake_worker: --set needs key=value, got '$kv'" >&2; exit 2 ;;
  esac
done
step_s=${CROSSKD_FAKE_STEP_SECONDS:-0.2}
rank=${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-${SLURM_PROCID:-0}}}
size=${OMPI_COMM_WORLD_SIZE:-${SLURM_STEP_NUM_TASKS:-1}}
[ -n "${SLURM_STEP_ID:-}" ] || [ -n "${OMPI_COMM_WORLD_SIZE:-}" ] || size=1   # no launcher: a singleton
if [ -n "${SLURM_JOB_ID:-}" ] && [ -n "${SLURM_NTASKS:-}" ] && [ "$size" != "$SLURM_NTASKS" ]; then
  echo "fake_worker: MPI world size is $size but Slurm allocated $SLURM_NTASKS tasks (SLURM_NTASKS)" >&2
  exit 1
fi
say() { [ "$rank" -eq 0 ] && echo "fake_worker[$rank/$size]: $*"; return 0; }

ck=$work_dir/checkpoints
mkdir -p "$ck" || exit 1
run_id=${SLURM_JOB_ID:-0}.${SLURM_RESTART_COUNT:-0}.${PPID}
ack=$work_dir/.ckpt_on_signal.$run_id

step=0 state=7
if [ "$resume" = auto ] && [ -f "$ck/latest" ]; then
  name=$(cat "$ck/latest")
  f=$ck/$name
  if [ -f "$f" ] && [ "$(sed -n 1p "$f")" = "crosskd-fake-ckpt v1" ]; then
    step=$(sed -n 's/^step //p' "$f") state=$(sed -n 's/^state //p' "$f")
    case "$step$state" in ''|*[!0-9-]*) echo "fake_worker: checkpoint $f is corrupt" >&2; exit 1 ;; esac
    say "resumed from $f: iteration $step"
  else
    echo "fake_worker: 'latest' names '$name', which is missing or invalid" >&2
    exit 1
  fi
elif [ -n "$resume" ] && [ "$resume" != auto ]; then
  echo "fake_worker: resume='$resume': only '' and 'auto' are supported" >&2
  exit 2
else
  say "starting fresh"
fi
say "config $config, work_dir $work_dir, $max_iters steps${extra:+, settings:$extra}"

save() {  # rank 0: iter_<step>.ckpt then latest, each via a temporary file and rename
  local name=iter_$step.ckpt
  printf 'crosskd-fake-ckpt v1\nstep %s\nstate %s\n' "$step" "$state" >"$ck/$name.tmp" &&
    mv -f "$ck/$name.tmp" "$ck/$name" &&
    echo "$name" >"$ck/latest.tmp" && mv -f "$ck/latest.tmp" "$ck/latest" || return 1
  # keep the newest 3
  ls "$ck" | sed -n 's/^iter_\([0-9]*\)\.ckpt$/\1/p' | sort -n | head -n -3 |
    while read -r s; do rm -f "$ck/iter_$s.ckpt"; done
  say "saved checkpoint $name"
}

while [ "$step" -lt "$max_iters" ]; do
  if [ -n "$stop" ]; then
    if [ "$rank" -eq 0 ]; then
      say "SIG$stop at step $step: checkpointing, then exiting 85 (requeue)"
      save || exit 1
      : >"$ack"
    else
      # The real worker agrees on the step through rank 0; here the others wait until
      # rank 0's checkpoint is on disk so the launcher does not kill it half-written.
      for _ in $(seq 1 100); do [ -e "$ack" ] && break; sleep 0.1; done
    fi
    exit 85
  fi
  sleep "$step_s"
  # One link of the chain, in shell arithmetic (64-bit, wrapping): no child process that
  # the step-wide signal could kill halfway.
  state=$(( (state ^ (step + 1)) * 6364136223846793005 + 1442695040888963407 ))
  step=$((step + 1))
  say "step $step/$max_iters"
  if [ "$rank" -eq 0 ] && [ $((step % interval)) -eq 0 ] && [ "$step" -lt "$max_iters" ]; then save || exit 1; fi
done
if [ "$rank" -eq 0 ]; then
  printf 'steps %s\nstate %s\nsettings%s\n' "$step" "$state" "$extra" >"$work_dir/final_weights.txt.tmp" &&
    mv -f "$work_dir/final_weights.txt.tmp" "$work_dir/final_weights.txt"
  rm -f "$work_dir"/.ckpt_on_signal.*
  say "done: final weights in $work_dir/final_weights.txt"
fi
exit 0
