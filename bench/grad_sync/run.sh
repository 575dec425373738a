#!/usr/bin/env bash
# bench/grad_sync/run.sh — the 2-rank CPU training step of the main job's student with the
# gradient buckets started as the backward finishes them (worker/grad_sync.h and the
# model's grads_done notifications) against a build whose buckets all start after the
# backward (BASE_BUILD, e.g. one configured from an older commit).
#
#   bash bench/grad_sync/run.sh BASE_BUILD [BUILD] [ROUNDS] [ITERS]   (defaults: build 3 12)
#
# Config: conf/default/student.yaml (GFL, ResNet-18 layout at base width 16, no KD), 2 ranks
# under mpirun with 1 thread each, 2 synthetic 256x256 images per rank and step. Each round
# runs both builds in turn, ITERS steps each; a step is the log's `time - data_time`, the
# first step of a run dropped. The machine is shared: the table gives the best and the
# median step over all rounds of each build.
set -euo pipefail
base=${1:?BASE_BUILD} build=${2:-build} rounds=${3:-3} iters=${4:-12}
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
"$build/tools/crosskd-gen" --out "$tmp/data" --seed 5 --train 16 --val 1 --size-min 256 --size-max 256 --categories 8 \
  --no-progress
common=(--set data_root="$tmp/data" --set threads=1 --set train_cfg.val_interval=0 --set model.kd_cfg.method=none
        --set train_dataloader.batch_size=2 --set default_hooks.logger.interval=1
        --set default_hooks.checkpoint.interval=1000)
for r in $(seq "$rounds"); do
  for b in "$base" "$build"; do
    name=$([ "$b" = "$base" ] && echo base || echo new)
    wd="$tmp/run-$name-$r"
    mpirun --oversubscribe -np 2 --mca btl self,vader,tcp "$b/tools/crosskd-worker" conf/default/student.yaml \
      "${common[@]}" --set work_dir="$wd" --set train_cfg.max_iters="$iters" > "$tmp/$name-$r.log" 2>&1 ||
      { cat "$tmp/$name-$r.log"; exit 1; }
    grep '"time"' "$wd/logs/scalars.jsonl" | sed -n '2,$p' |
      sed 's/.*"time":\([^,}]*\).*"data_time":\([^,}]*\).*/\1 \2/' |
      awk -v c="$name" '{ print c, $1 - $2 }' >> "$tmp/times"
  done
done
echo "step time over $rounds rounds x $((iters - 1)) steps (ms), 2 ranks x 1 thread, 2 images of 256 px per rank:"
sort -k1,1 -k2,2g "$tmp/times" | awk '
  { v[$1, ++n[$1]] = $2 }
  END {
    printf "| %-27s | %9s | %11s |\n", "build", "best (ms)", "median (ms)";
    printf "|-----------------------------|-----------|-------------|\n";
    split("base new", order, " ");
    split("buckets after the backward|buckets during the backward", label, "|");
    for (i = 1; i <= 2; i++) { c = order[i];
      printf "| %-27s | %9.1f | %11.1f |\n", label[i], 1000 * v[c, 1], 1000 * v[c, int((n[c] + 1) / 2)] } }'
