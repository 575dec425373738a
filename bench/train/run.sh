#!/usr/bin/env bash
# bench/train/run.sh — the trainer's benchmark (issue #8), on this machine's CPU:
#   1. images/s of 1 rank and of 2 ranks on the ResNet-18-layout config
#      (bench/train/r18_train.yaml, 2 images per rank and step, 320-pixel synthetic images),
#      and the fraction of the step spent waiting for the gradient all-reduce with the
#      buckets started during backward (model_wrapper_cfg.overlap_grad_sync=true) and all
#      after it (false);
#   2. checkpoint write and read time and compression ratio of a ResNet-50-sized student
#      with momentum (bench/train/r50_ckpt.yaml after a few SGD steps; bench_ckpt).
#
#   bash bench/train/run.sh [BUILD_DIR] [ROUNDS] [ITERS] [CKPT_ROUNDS]   (defaults: build 3 8 5)
#
# Part 1: each round runs the three configurations once, in a rotating order, ITERS steps
# each: 1 rank with 2 threads; 2 ranks with 1 thread each, overlap on; the same, overlap
# off (mpirun --bind-to none: the machine is shared, and a 1-rank job bound to one core
# would run its 2 threads on it). Per step, from the JSON lines: time (the whole
# iteration, data wait included), data_time and sync_time (the wait in the all-reduce,
# mean over ranks); the first 2 steps of a run are dropped (warm-up). Reported: best and
# median step, images/s = images per step (all ranks) / step time, and the median of the
# per-step sync_time / time. The load average is printed before every round.
# KEEP=DIR keeps the per-step times.
set -euo pipefail
build=${1:-build} rounds=${2:-3} iters=${3:-8} ckpt_rounds=${4:-5}
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
worker="$build/tools/crosskd-worker" gen="$build/tools/crosskd-gen" bench_ckpt="$build/bench/train/bench_ckpt"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
unset OMP_NUM_THREADS
"$gen" --out "$tmp/data" --seed 7 --train 64 --val 1 --size-min 320 --size-max 320 --categories 8 --no-progress
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"

run() { # NAME NP THREADS [--set ...]
  local name=$1 np=$2 threads=$3; shift 3
  local wd="$tmp/run-$name-$r"
  mpirun -np "$np" --bind-to none --mca btl self,vader,tcp "$worker" bench/train/r18_train.yaml \
    --set data_root="$tmp/data" --set work_dir="$wd" --set threads="$threads" --set train_cfg.max_iters="$iters" "$@" \
    > "$tmp/$name-$r.log" 2>&1 || { cat "$tmp/$name-$r.log"; exit 1; }
  # name images_per_step time data_time sync_time, per step, first 2 dropped
  grep '"time"' "$wd/logs/scalars.jsonl" | sed -n '3,$p' | awk -v n="$name" -v img=$((2 * np)) '{
    t = $0; sub(/.*"time":/, "", t); sub(/[,}].*/, "", t)
    d = $0; sub(/.*"data_time":/, "", d); sub(/[,}].*/, "", d)
    s = 0; if ($0 ~ /"sync_time"/) { s = $0; sub(/.*"sync_time":/, "", s); sub(/[,}].*/, "", s) }
    print n, img, t, d, s }' >> "$tmp/steps"
  rm -rf "$wd"
}

configs=(1rank 2ranks 2ranks_nooverlap)
for r in $(seq "$rounds"); do
  echo "round $r: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  for k in 0 1 2; do
    c=${configs[$(((k + r) % 3))]}
    case $c in
      1rank) run "$c" 1 2 ;;
      2ranks) run "$c" 2 1 ;;
      2ranks_nooverlap) run "$c" 2 1 --set model_wrapper_cfg.overlap_grad_sync=false ;;
    esac
  done
done
echo "load average after part 1: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "ResNet-18 layout, 320 px, 2 images per rank and step; $rounds rounds x $((iters - 2)) steps per configuration:"
echo
echo "| configuration | images/step | best step s | median step s | images/s (best) | images/s (median) | median data_time s | median sync wait s | sync wait / step (median) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for c in "${configs[@]}"; do
  grep "^$c " "$tmp/steps" | awk '
    function median(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
                                       return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    { n++; img = $2; t[n] = $3; d[n] = $4; s[n] = $5; f[n] = $5 / $3 }
    END { bt = median(t, n); best = t[1]; md = median(d, n); ms = median(s, n); mf = median(f, n)
          label = $1 == "1rank" ? "1 rank, 2 threads" : $1 == "2ranks" ? "2 ranks x 1 thread, overlap on" : "2 ranks x 1 thread, overlap off"
          printf "| %s | %d | %.3f | %.3f | %.2f | %.2f | %.4f | %.4f | %.1f%% |\n", label, img, best, bt, img / best, img / bt, md, ms, 100 * mf }'
done
[ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$tmp/steps" "$KEEP/steps"

echo
echo "part 2: checkpoint of a ResNet-50-sized student after 3 SGD steps (load average $(cut -d' ' -f1-3 /proc/loadavg))"
r=ckpt
mpirun -np 1 --bind-to none "$worker" bench/train/r50_ckpt.yaml --set data_root="$tmp/data" --set work_dir="$tmp/r50" \
  --set threads=2 --set train_cfg.max_iters=3 > "$tmp/r50.log" 2>&1 || { cat "$tmp/r50.log"; exit 1; }
grep -E "model: GFL R50|checkpoint .* saved in" "$tmp/r50.log" | sed 's/^.*INFO  /trainer: /'
"$bench_ckpt" "$tmp/r50/checkpoints/iter_3.ckpt" "$ckpt_rounds" 0 2
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
