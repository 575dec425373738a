#!/usr/bin/env bash
# bench/status/run.sh — the status socket's benchmark (issue #9): requests per second the
# coordinator serves while the job trains, and the training step time with and without 50
# clients polling (target: the step changes by less than 2%).
#
#   bash bench/status/run.sh [BUILD_DIR] [PAIRS] [PHASE_SECONDS] [CLIENTS]   (defaults: build 4 10 50)
#
# One training job runs throughout: the main job's student layout (conf/default/student.yaml
# without distillation: ResNet-18 layout base 16, FPN and head of 64 channels, 256-pixel
# synthetic images, 2 per rank) under mpirun -np 2 with 1 thread per rank, every step logged.
# While it trains the script alternates phases of PHASE_SECONDS: no client, then CLIENTS
# clients polling `status` (bench_status_poll), PAIRS pairs per polling intensity, the order
# inside a pair rotating. Intensities: every client once a second (crosskdctl watch's
# default), then every client in a closed loop (as fast as the server answers: the
# requests/s figure). The iteration at each phase boundary comes from `crosskdctl status`;
# a phase's steps are those that started and ended inside it (its first step dropped).
# Reported per pair: the median step time (JSON lines `time`) of each phase and their
# ratio; per intensity: the median of the pair ratios. Load average printed per pair. Per
# polling phase also the CPU time of the status server's thread (kd-status, from /proc)
# per second: the share of a core the server takes from the training on rank 0's node,
# which does not depend on the other load the way step times do.
set -euo pipefail
build=${1:-build} pairs=${2:-4} phase=${3:-10} clients=${4:-50}
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
worker="$build/tools/crosskd-worker" gen="$build/tools/crosskd-gen" ctl="$build/tools/crosskdctl"
poll="$build/bench/status/bench_status_poll"
tmp=$(mktemp -d)
job=
cleanup() { [ -n "$job" ] && kill "$job" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
unset OMP_NUM_THREADS
"$gen" --out "$tmp/data" --seed 5 --train 64 --val 1 --size-min 256 --size-max 256 --categories 8 --no-progress
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
wd="$tmp/job"
mpirun -np 2 --bind-to none --mca btl self,vader,tcp "$worker" conf/default/student.yaml \
  --set model.kd_cfg.method=none --set data_root="$tmp/data" --set work_dir="$wd" --set threads=1 \
  --set train_dataloader.num_workers=1 --set train_cfg.max_iters=100000000 --set train_cfg.val_interval=0 \
  --set default_hooks.logger.interval=1 --set default_hooks.checkpoint.interval=100000 > "$tmp/job.log" 2>&1 &
job=$!
sock="$wd/crosskd.sock"
for _ in $(seq 600); do [ -S "$sock" ] && grep -q "Epoch(train)" "$tmp/job.log" && break; sleep 0.1; done
grep -q "Epoch(train)" "$tmp/job.log" || { cat "$tmp/job.log"; exit 1; }
sleep 5 # warm-up
iter_now() { "$ctl" --socket "$sock" status | sed -n 's/^iter://p'; }
# the status server's thread (named kd-status, in rank 0's process): its CPU time in ticks
task=
for pid in $(pgrep -f "work_dir=$wd"); do
  for t in /proc/"$pid"/task/*; do [ "$(cat "$t/comm" 2>/dev/null)" = kd-status ] && task=$t; done
done
[ -n "$task" ] || { echo "no kd-status thread found"; exit 1; }
server_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "$task/stat"; }
hz=$(getconf CLK_TCK)

: > "$tmp/phases"
for intensity in 1 0; do
  for p in $(seq "$pairs"); do
    echo "intensity $intensity s, pair $p: load average $(cut -d' ' -f1-3 /proc/loadavg)"
    for k in 0 1; do
      mode=$(( (k + p) % 2 )) # 1 = clients
      a=$(iter_now)
      c0=$(server_ticks)
      if [ "$mode" -eq 1 ]; then
        "$poll" "$sock" "$clients" "$phase" "$intensity" > "$tmp/poll.out"
        c1=$(server_ticks)
        echo "$(cat "$tmp/poll.out") server_cpu=$(awk -v t=$((c1 - c0)) -v hz="$hz" -v p="$phase" 'BEGIN { printf "%.3f", t / hz / p }') cores" |
          tee -a "$tmp/poll.$intensity"
      else
        sleep "$phase"
      fi
      b=$(iter_now)
      echo "$intensity $p $mode $a $b" >> "$tmp/phases"
    done
  done
done
"$ctl" --socket "$sock" stop > /dev/null
wait "$job" || true
job=
grep '"time"' "$wd/logs/scalars.jsonl" | sed 's/.*"iter":\([0-9]*\).*"time":\([^,}]*\).*/\1 \2/' > "$tmp/steps"
echo
echo "step time (s) per phase, median; $clients clients:"
echo
echo "| client interval | pair | without clients | with clients | with / without |"
echo "| --- | ---: | ---: | ---: | ---: |"
awk 'NR == FNR { t[$1] = $2; next }
     function sort(v, n,   i, j, x) { for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x } }
     function med(v, n) { sort(v, n); return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }
     function phase_median(lo, hi,   n, i, v) { n = 0; for (i = lo + 2; i <= hi; i++) if (i in t) v[++n] = t[i]; return n ? med(v, n) : 0 }
     { m = phase_median($4, $5); if ($3 == 1) w = m; else wo = m
       if (++half[$1, $2] == 2) { r = w / wo; n = ++nr[$1]; ratio[$1, n] = r
         printf "| %s | %d | %.4f | %.4f | %.4f |\n", $1 == 0 ? "closed loop" : $1 " s", $2, wo, w, r } }
     END { print ""; for (i = 1; i >= 0; i--) { n = nr[i]; if (!n) continue; for (a = 1; a <= n; a++) v[a] = ratio[i, a]
             x = med(v, n); printf "median of the pair ratios, client interval %s: %.4f (%+.2f%%)\n", i == 0 ? "closed loop" : i " s", x, 100 * (x - 1) } }' \
  "$tmp/steps" "$tmp/phases"
echo
for i in 1 0; do
  echo "requests served, client interval $([ "$i" = 0 ] && echo 'closed loop' || echo "$i s"):"
  sed 's/^/  /' "$tmp/poll.$i"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
