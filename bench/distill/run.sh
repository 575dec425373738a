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
# lives in work_dirs/distill-bench/<run>; lib.sh has the driver: finished runs are skipped, an
# interrupted one resumes from its last checkpoint, so rerunning the command continues an
# interrupted experiment, and a partial experiment still gets the table of what finished.
# Environment: LANES (parallel runs, default 2), ONLY (an extended regex: run only the matching
# runs, e.g. ONLY='teacher|baseline-s0'), SKIP (an extended regex: do not start the matching
# runs), NO_TRAIN=1 (only rebuild the table and figures from what exists).
# bench/distill/detectors.sh is the second experiment (other detectors, the paper's Tables 6-7).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
source bench/distill/lib.sh

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

needs_teacher() { case $1 in teacher|baseline-*) ;; *) echo teacher ;; esac; }

run_args() { # the worker's arguments for one run, one per line
  local name=$1 m s
  if [ "$name" = teacher ]; then kd_bench_teacher_args conf/default/teacher.yaml teacher; return; fi
  m=${name%-s*} s=${name##*-s}
  kd_bench_student_args "$(conf_of "$m")" "$name" "$s" "$(needs_teacher "$name")"
  case $m in crosskd-i*) printf '%s\n' --set "model.kd_cfg.reused_teacher_head_idx=${m#crosskd-i}" ;; esac
}

kd_bench_main "$@"

# ---- table, versions and figures --------------------------------------------------------
source "$(dirname "${BASH_SOURCE[0]}")/report.sh"
kd_report_write
