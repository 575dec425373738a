#!/usr/bin/env bash
# bench/distill/run.sh — the distillation experiment of the paper's Tables 1-5, sized for one
# 2-core CPU machine: does CrossKD improve the student more than prediction mimicking and
# feature imitation do?
#
#   bash bench/distill/run.sh [BUILD_DIR]           (default build; LANES=2 runs at a time)
#
# 1. generates a fixed synthetic COCO-format dataset (crosskd-gen, seed 0; data/distill-bench)
# 2. trains the teacher (conf/default/teacher.yaml, a GFL twice the student's width) once
# 3. trains the student (conf/default/student*.yaml) under one schedule as: baseline (no KD),
#    pred_mimic (KD-QFL + KL on the student's own head), PKD, BCKD, CrossKD and CrossKD+PKD,
#    3 seeds each, and CrossKD at head positions i = 0..4 with seed 0 (i = 3 is crosskd-s0)
# 4. re-evaluates every run's final detections with crosskd-eval (the COCO evaluator), writes
#    the table, the commands and the versions between the markers of bench/distill/RESULTS.md
#    and draws the figures of bench/distill/figures/ with bench/distill/kd-distill-plot.
#
# Every run is one rank with one thread (two such runs side by side are faster and far less
# sensitive to the other users of the machine than one two-thread run; see RESULTS.md) and
# lives in work_dirs/distill-bench/<run>. A run is finished when its `done` file exists (written
# after the worker exits 0 with final weights and a final results file); finished runs are
# skipped, an interrupted one resumes from its last checkpoint (resume=auto, one per epoch),
# so rerunning the command continues an interrupted experiment. A partial experiment still
# gets the table of what finished. Environment: LANES (parallel runs, default 2), ONLY (an
# extended regex: run only the matching runs, e.g. ONLY='teacher|baseline-s0'), SKIP (an
# extended regex: do not start the matching runs, e.g. ones another driver is running), NO_TRAIN=1
# (only rebuild the table and figures from what exists).
set -euo pipefail
mode=all
if [ "${1:-}" = --train-one ]; then mode=$2; shift 2; fi # internal: one lane's job
build=${1:-build}
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
bin=$build/tools plot=$build/bench/distill/kd-distill-plot
data=data/distill-bench root=work_dirs/distill-bench
lanes=${LANES:-2} only=${ONLY:-} skip=${SKIP:-} results=bench/distill/RESULTS.md figs=bench/distill/figures
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1

# ---- the experiment's settings (RESULTS.md explains each choice) ---------------------------
gen_args=(--seed 0 --train 400 --val 200 --categories 8)
common=(--set threads=1 --set train_dataloader.num_workers=1 --set val_dataloader.num_workers=1
        --set default_hooks.logger.interval=10 --set default_hooks.checkpoint.interval=1
        --set default_hooks.checkpoint.max_keep_ckpts=1 --set resume=auto)
teacher_args=(--set train_cfg.max_epochs=16 --set "param_scheduler.multistep.milestones=[12, 14]"
              --set train_cfg.val_interval=4 --set randomness.seed=0)
student_args=(--set train_cfg.max_epochs=8 --set "param_scheduler.multistep.milestones=[6, 7]"
              --set train_cfg.val_interval=2)
seeds=(0 1 2)
methods=(baseline pred_mimic pkd bckd crosskd crosskd+pkd)
positions=(0 1 2 4)

conf_of() { # method -> student config
  case $1 in baseline|crosskd|crosskd-i*) echo conf/default/student.yaml ;; *) echo "conf/default/student_$1.yaml" ;; esac
}

# run names in the order they are started: the teacher and the baselines first (the baselines
# need no teacher, so they train beside it), then one seed of every method at a time, so a
# partial experiment has whole seeds; the position ablation after the second seed.
run_names() {
  echo teacher
  for s in "${seeds[@]}"; do echo "baseline-s$s"; done
  for s in "${seeds[@]}"; do
    for m in "${methods[@]:1}"; do echo "$m-s$s"; done
    [ "$s" = 1 ] && for i in "${positions[@]}"; do echo "crosskd-i$i-s0"; done
  done
  return 0
}

# the worker's arguments for one run, one per line
run_args() {
  local name=$1 m s
  if [ "$name" = teacher ]; then
    printf '%s\n' conf/default/teacher.yaml "${common[@]}" "${teacher_args[@]}" \
      --set "data_root=$data" --set "work_dir=$root/teacher"
    return
  fi
  m=${name%-s*} s=${name##*-s}
  printf '%s\n' "$(conf_of "$m")" "${common[@]}" "${student_args[@]}" --set "randomness.seed=$s" \
    --set "data_root=$data" --set "work_dir=$root/$name"
  case $m in
    baseline) printf '%s\n' --set model.kd_cfg.method=none ;;
    crosskd-i*) printf '%s\n' --set "model.kd_cfg.reused_teacher_head_idx=${m#crosskd-i}" ;;
  esac
  if [ "$m" != baseline ]; then
    printf '%s\n' --set "teacher_ckpt=$root/teacher/final.safetensors" --set model.kd_cfg.log_conflict_ratio=true
  fi
}

last_results() { # work dir -> its last results file (highest iteration)
  ls "$1"/results/iter_*.bbox.json 2>/dev/null | sed 's/.*iter_\([0-9]*\)\.bbox\.json/\1 &/' | sort -n | tail -1 | cut -d' ' -f2
}

train_one() { # run name: train it unless done; waits for the teacher when it needs one
  local name=$1 wd=$root/$1 args lock
  mkdir -p "$wd"
  exec {lock}> "$wd/lock"
  flock "$lock" # a second driver on the same work dirs waits here for this run, then skips it
  [ -f "$wd/done" ] && { echo "[$(date -u +%T)] $name: done (cached)"; return 0; }
  mapfile -t args < <(run_args "$name")
  if [ "$name" != teacher ] && [[ $name != baseline-* ]]; then
    while [ ! -f "$root/teacher/done" ]; do
      [ -f "$root/teacher.failed" ] && { echo "$name: the teacher failed" >&2; return 1; }
      sleep 10
    done
  fi
  local t0 load0
  t0=$(date +%s) load0=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "[$(date -u +%T)] $name: start (load $load0)"
  if ! "$bin/crosskd-worker" "${args[@]}" >> "$wd/worker.log" 2>&1; then
    echo "[$(date -u +%T)] $name: FAILED, see $wd/worker.log" >&2
    [ "$name" = teacher ] && touch "$root/teacher.failed"
    return 1
  fi
  local res
  res=$(last_results "$wd")
  [ -n "$res" ] && [ -f "$wd/final.safetensors" ] || { echo "$name: no final results in $wd" >&2; return 1; }
  { printf 'seconds %s\nload_start %s\nload_end %s\nresults %s\ncommand' "$(($(date +%s) - t0))" "$load0" \
      "$(cut -d' ' -f1-3 /proc/loadavg)" "$res"
    printf ' %q' "$bin/crosskd-worker" "${args[@]}"; echo; } > "$wd/done"
  echo "[$(date -u +%T)] $name: finished in $(($(date +%s) - t0)) s"
}

if [ "$mode" != all ]; then
  train_one "$mode"
  exit
fi

if [ -z "${NO_TRAIN:-}" ]; then
  [ -x "$bin/crosskd-worker" ] || { echo "build first: meson setup $build && ninja -C $build" >&2; exit 1; }
  if [ ! -f "$data/annotations/instances_val.json" ]; then
    mkdir -p "$(dirname "$data")"
    rm -rf "$data.tmp"
    "$bin/crosskd-gen" --out "$data.tmp" "${gen_args[@]}" --no-progress
    mv "$data.tmp" "$data"
  fi
  mkdir -p "$root"
  rm -f "$root/teacher.failed"
  t_start=$(date +%s)
  echo "[$(date -u +%T)] experiment: $lanes lanes, load $(cut -d' ' -f1-3 /proc/loadavg)"
  run_names | { if [ -n "$only" ]; then grep -E "^($only)\$" || true; else cat; fi; } |
    { if [ -n "$skip" ]; then grep -vE "^($skip)\$" || true; else cat; fi; } |
    xargs -P "$lanes" -I{} bash "$0" --train-one {} "$build" || echo "some runs failed (see above)" >&2
  echo "[$(date -u +%T)] experiment: $(($(date +%s) - t_start)) s of wall time, load $(cut -d' ' -f1-3 /proc/loadavg)"
fi

# ---- table, versions and figures --------------------------------------------------------
source "$(dirname "${BASH_SOURCE[0]}")/report.sh"
kd_report_write
