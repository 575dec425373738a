#!/usr/bin/env bash
# bench/distill/detectors.sh — the distillation experiment of the paper's Tables 6 and 7, on the
# same synthetic benchmark as run.sh (same dataset, schedules, one thread per run, two at a time):
#
#   bash bench/distill/detectors.sh [BUILD_DIR]
#
# Table 6, CrossKD on four dense detectors: for GFL, ATSS, RetinaNet and FCOS, a teacher
#   (conf/default/teacher[_<det>].yaml: base width 32, 16 epochs) and a student (base width 16,
#   8 epochs) trained as baseline (no KD), prediction mimicking (the same KD losses on the
#   student's own outputs) and CrossKD (crosskd.md §6: i = 3, FCOS i = 2, the KD weights of
#   each detector's COCO config), seed 0.
# Table 7, teachers whose label assigner differs from the student's: the GFL student under the
#   ATSS teacher and under the RetinaNet teacher, with CrossKD through the teacher's own head,
#   and with prediction mimicking of the ATSS teacher (its one anchor per location matches the
#   student's; a RetinaNet teacher's nine do not, so that row is not run).
#
# The GFL runs (teacher, baseline-s0, pred_mimic-s0, crosskd-s0) are run.sh's runs of the same
# name and arguments: whichever experiment runs first trains them, the other reuses them.
# lib.sh has the driver (LANES, ONLY, SKIP, NO_TRAIN; finished runs skipped, interrupted ones
# resumed). The tables, timings, versions and exact commands go between the
# `<!-- detectors:begin -->` / `<!-- detectors:end -->` markers of bench/distill/RESULTS.md.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
source bench/distill/lib.sh

detectors=(atss retinanet fcos gfl)   # gfl last: run.sh may have trained it already
kd_methods=(baseline pred_mimic crosskd)
cross_teachers=(atss retinanet)       # Table 7: teachers of a GFL student

# run names: teacher[-<det>] and <method>[-<det>]-s0, GFL without the suffix (run.sh's names);
# Table 7's runs are <method>-gfl-from-<det>-s0.
det_suffix() { [ "$1" = gfl ] && return 0; echo "-$1"; }

run_names() { # teachers first, each followed by its baseline; then the distilled runs
  local d m
  for d in "${detectors[@]}"; do echo "teacher$(det_suffix "$d")"; echo "baseline$(det_suffix "$d")-s0"; done
  for d in "${detectors[@]}"; do
    for m in "${kd_methods[@]:1}"; do echo "$m$(det_suffix "$d")-s0"; done
    case " ${cross_teachers[*]} " in *" $d "*) echo "crosskd-gfl-from-$d-s0" ;; esac
    [ "$d" = atss ] && echo pred_mimic-gfl-from-atss-s0 # a RetinaNet teacher has 9 anchors: nothing to mimic one to one
  done
  return 0
}

needs_teacher() {
  case $1 in
    teacher*|baseline*) ;;
    *-gfl-from-*) local d=${1#*-gfl-from-}; echo "teacher-${d%-s0}" ;;
    *-s0) local d=${1%-s0}; d=${d#*-}; [ "$d" = "${1%-s0}" ] && echo teacher || echo "teacher-$d" ;;
  esac
}

run_args() { # the worker's arguments for one run, one per line
  local name=$1 m d
  case $name in
    teacher) kd_bench_teacher_args conf/default/teacher.yaml "$name" ;;
    teacher-*) kd_bench_teacher_args "conf/default/teacher_${name#teacher-}.yaml" "$name" ;;
    *-gfl-from-*)
      d=${name#*-gfl-from-} d=${d%-s0}
      kd_bench_student_args "conf/default/student_gfl_${d}_teacher$([[ $name = pred_mimic-* ]] && echo _pred_mimic).yaml" \
        "$name" 0 "$(needs_teacher "$name")" ;;
    *)
      m=${name%%-*} d=${name%-s0} d=${d#"$m"} d=${d#-}
      local conf=conf/default/student${d:+_$d}$([ "$m" = pred_mimic ] && echo _pred_mimic).yaml
      kd_bench_student_args "$conf" "$name" 0 "$(needs_teacher "$name")" ;;
  esac
}

kd_bench_main "$@"
source bench/distill/report.sh
source bench/distill/detectors_report.sh
kd_detectors_report_write
