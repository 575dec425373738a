#!/usr/bin/env bash
# bench/distill_cost/run.sh — the extra cost of each distillation method per training step
# over the student-only step, measured in one run on the ResNet-18-layout CPU config of the
# main job (conf/default/student*.yaml: student ResNet-18 layout base 16, teacher base 32,
# both with a 4-block 64-channel head, 256-pixel images, 4 images per step).
#
#   bash bench/distill_cost/run.sh [BUILD_DIR] [ROUNDS] [ITERS]     (defaults: build 3 12)
#
# Data: a 16-image synthetic set (crosskd-gen, 256 px); teacher: conf/default/teacher.yaml
# after one step (its weights only matter for the KD values, not for the cost). Each round
# runs every configuration once, in turn (student only, then each method), as one rank with
# 2 threads, ITERS steps each; a step's time is the log's per-iteration `time - data_time`
# (the loader's wait excluded) and the first step of a run (warm-up) is dropped. The machine
# is shared and loaded, so the table reports the best step over all rounds of each
# configuration and the extra cost against the best student-only step, and the medians
# beside them as a check on the load. KEEP_TIMES=FILE keeps the raw per-step times.
set -euo pipefail
build=${1:-build} rounds=${2:-3} iters=${3:-12}
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
worker="$build/tools/crosskd-worker" gen="$build/tools/crosskd-gen"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=2
"$gen" --out "$tmp/data" --seed 5 --train 16 --val 1 --size-min 256 --size-max 256 --categories 8 --no-progress
common=(--set data_root="$tmp/data" --set threads=2 --set train_cfg.val_interval=0
        --set default_hooks.logger.interval=1 --set default_hooks.checkpoint.interval=1000)
"$worker" conf/default/teacher.yaml "${common[@]}" --set work_dir="$tmp/teacher" --set train_cfg.max_iters=1 \
  > "$tmp/teacher.log" 2>&1 || { cat "$tmp/teacher.log"; exit 1; }
configs=(none crosskd crosskd+pkd pred_mimic pkd ld bckd rm_pfi)
conf_of() { case $1 in none|crosskd) echo conf/default/student.yaml ;; *) echo "conf/default/student_$1.yaml" ;; esac; }
for r in $(seq "$rounds"); do
  for c in "${configs[@]}"; do
    extra=(--set teacher_ckpt="$tmp/teacher/final.safetensors")
    [ "$c" = none ] && extra+=(--set model.kd_cfg.method=none)
    wd="$tmp/run-$c-$r"
    "$worker" "$(conf_of "$c")" "${common[@]}" "${extra[@]}" --set work_dir="$wd" --set train_cfg.max_iters="$iters" \
      > "$tmp/$c-$r.log" 2>&1 || { cat "$tmp/$c-$r.log"; exit 1; }
    # per-iteration step seconds, first iteration dropped
    grep '"time"' "$wd/logs/scalars.jsonl" | sed -n '2,$p' |
      sed 's/.*"time":\([^,}]*\).*"data_time":\([^,}]*\).*/\1 \2/' |
      awk -v c="$c" '{ print c, $1 - $2 }' >> "$tmp/times"
  done
done
echo "step time over $rounds rounds x $((iters - 1)) steps (ms), one rank, 2 threads, 4 images of 256 px:"
sort -k1,1 -k2,2g "$tmp/times" | awk '
  { v[$1, ++n[$1]] = $2 }
  END {
    base = v["none", 1]; bmed = v["none", int((n["none"] + 1) / 2)];
    printf "| %-12s | %9s | %10s | %6s | %11s | %11s |\n", "method", "best (ms)", "extra (ms)", "extra", "median (ms)", "extra (med)";
    printf "|--------------|-----------|------------|--------|-------------|-------------|\n";
    k = split("none crosskd crosskd+pkd pred_mimic pkd ld bckd rm_pfi", order, " ");
    for (i = 1; i <= k; i++) { c = order[i]; if (!(c in n)) continue;
      b = v[c, 1]; m = v[c, int((n[c] + 1) / 2)];
      printf "| %-12s | %9.1f | %10.1f | %5.0f%% | %11.1f | %10.0f%% |\n", (c == "none" ? "student only" : c),
             1000 * b, 1000 * (b - base), 100 * (b - base) / base, 1000 * m, 100 * (m - bmed) / bmed } }'
[ -n "${KEEP_TIMES:-}" ] && cp "$tmp/times" "$KEEP_TIMES"
exit 0
