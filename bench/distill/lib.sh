# bench/distill/lib.sh — what the two distillation experiments share (sourced by run.sh, the
# methods of the paper's Tables 1-5, and by detectors.sh, its Tables 6 and 7): the dataset, the
# schedules, and the driver that trains each named run once, LANES at a time, resumably.
#
# The sourcing script defines run_names (the runs in start order, one per line), run_args NAME
# (the worker's arguments, one per line) and needs_teacher NAME (prints the teacher run NAME
# waits for, or nothing), then calls kd_bench_main "$@".
#
# Every run is one rank with one thread and lives in $root/<run>. A run is finished when its
# `done` file exists (written after the worker exits 0 with final weights and a final results
# file); finished runs are skipped, an interrupted one resumes from its last checkpoint
# (resume=auto, one per epoch). Runs of the same name in both experiments are the same run
# (same arguments), so each is trained once. Environment: LANES (parallel runs, default 2),
# ONLY / SKIP (extended regexes over run names: run only / do not start the matching runs),
# NO_TRAIN=1 (only rebuild the report from what exists).

kd_bench_init() { # BUILD_DIR
  build=${1:-build}
  bin=$build/tools plot=$build/bench/distill/kd-distill-plot
  data=data/distill-bench root=work_dirs/distill-bench
  ap_file=$root/ap.txt # the AP of every finished run (report.sh)
  lanes=${LANES:-2} only=${ONLY:-} skip=${SKIP:-} results=bench/distill/RESULTS.md figs=bench/distill/figures
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
}

# ---- the experiments' settings (RESULTS.md explains each choice) ---------------------------
gen_args=(--seed 0 --train 400 --val 200 --categories 8)
common=(--set threads=1 --set train_dataloader.num_workers=1 --set val_dataloader.num_workers=1
        --set default_hooks.logger.interval=10 --set default_hooks.checkpoint.interval=1
        --set default_hooks.checkpoint.max_keep_ckpts=1 --set resume=auto)
teacher_args=(--set train_cfg.max_epochs=16 --set "param_scheduler.multistep.milestones=[12, 14]"
              --set train_cfg.val_interval=4 --set randomness.seed=0)
student_args=(--set train_cfg.max_epochs=8 --set "param_scheduler.multistep.milestones=[6, 7]"
              --set train_cfg.val_interval=2)

kd_bench_teacher_args() { # config run-name -> a teacher's arguments, one per line
  printf '%s\n' "$1" "${common[@]}" "${teacher_args[@]}" --set "data_root=$data" --set "work_dir=$root/$2"
}

kd_bench_student_args() { # config run-name seed teacher-run|"" -> a student's arguments
  printf '%s\n' "$1" "${common[@]}" "${student_args[@]}" --set "randomness.seed=$3" \
    --set "data_root=$data" --set "work_dir=$root/$2"
  if [ -n "$4" ]; then
    printf '%s\n' --set "teacher_ckpt=$root/$4/final.safetensors" --set model.kd_cfg.log_conflict_ratio=true
  else
    printf '%s\n' --set model.kd_cfg.method=none
  fi
}

last_results() { # work dir -> its last results file (highest iteration)
  ls "$1"/results/iter_*.bbox.json 2>/dev/null | sed 's/.*iter_\([0-9]*\)\.bbox\.json/\1 &/' | sort -n | tail -1 | cut -d' ' -f2
}

train_one() { # run name: train it unless done; waits for its teacher when it needs one
  local name=$1 wd=$root/$1 args lock teacher
  mkdir -p "$wd"
  exec {lock}> "$wd/lock"
  flock "$lock" # a second driver on the same work dirs waits here for this run, then skips it
  [ -f "$wd/done" ] && { echo "[$(date -u +%T)] $name: done (cached)"; return 0; }
  mapfile -t args < <(run_args "$name")
  teacher=$(needs_teacher "$name")
  if [ -n "$teacher" ]; then
    while [ ! -f "$root/$teacher/done" ]; do
      [ -f "$root/$teacher.failed" ] && { echo "$name: the teacher $teacher failed" >&2; return 1; }
      sleep 10
    done
  fi
  local t0 load0
  t0=$(date +%s) load0=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "[$(date -u +%T)] $name: start (load $load0)"
  if ! "$bin/crosskd-worker" "${args[@]}" >> "$wd/worker.log" 2>&1; then
    echo "[$(date -u +%T)] $name: FAILED, see $wd/worker.log" >&2
    touch "$root/$name.failed"
    return 1
  fi
  rm -f "$root/$name.failed"
  local res
  res=$(last_results "$wd")
  [ -n "$res" ] && [ -f "$wd/final.safetensors" ] || { echo "$name: no final results in $wd" >&2; return 1; }
  { printf 'seconds %s\nload_start %s\nload_end %s\nresults %s\ncommand' "$(($(date +%s) - t0))" "$load0" \
      "$(cut -d' ' -f1-3 /proc/loadavg)" "$res"
    printf ' %q' "$bin/crosskd-worker" "${args[@]}"; echo; } > "$wd/done"
  echo "[$(date -u +%T)] $name: finished in $(($(date +%s) - t0)) s"
}

kd_bench_train() { # generates the dataset, then trains every selected run, LANES at a time
  [ -x "$bin/crosskd-worker" ] || { echo "build first: meson setup $build && ninja -C $build" >&2; exit 1; }
  if [ ! -f "$data/annotations/instances_val.json" ]; then
    mkdir -p "$(dirname "$data")"
    rm -rf "$data.tmp"
    "$bin/crosskd-gen" --out "$data.tmp" "${gen_args[@]}" --no-progress
    mv "$data.tmp" "$data"
  fi
  mkdir -p "$root"
  rm -f "$root"/*.failed
  local t_start
  t_start=$(date +%s)
  echo "[$(date -u +%T)] experiment: $lanes lanes, load $(cut -d' ' -f1-3 /proc/loadavg)"
  run_names | { if [ -n "$only" ]; then grep -E "^($only)\$" || true; else cat; fi; } |
    { if [ -n "$skip" ]; then grep -vE "^($skip)\$" || true; else cat; fi; } |
    xargs -P "$lanes" -I{} bash "$0" --train-one {} "$build" || echo "some runs failed (see above)" >&2
  echo "[$(date -u +%T)] experiment: $(($(date +%s) - t_start)) s of wall time, load $(cut -d' ' -f1-3 /proc/loadavg)"
}

kd_bench_main() { # [--train-one RUN] [BUILD_DIR]: one lane's job, or the whole experiment
  local mode=all
  if [ "${1:-}" = --train-one ]; then mode=$2; shift 2; fi
  kd_bench_init "${1:-build}"
  if [ "$mode" != all ]; then
    train_one "$mode"
    exit
  fi
  [ -n "${NO_TRAIN:-}" ] || kd_bench_train
}

# awk: get(k) is the number of key k in a JSON line of logs/scalars.jsonl, or "" (the reports'
# one reader of the trainer's scalar lines)
kd_awk_get='function get(k) { if (match($0, "\"" k "\":[-0-9.eE+]+")) return substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3); return "" }'

kd_report_ap() { # work dir -> "AP AP50 AP75 APs APm APl" (x 100) of its final results, or nothing
  local wd=$1 res
  [ -f "$wd/done" ] || return 0
  res=$(sed -n 's/^results //p' "$wd/done")
  "$bin/crosskd-eval" "$data/annotations/instances_val.json" "$res" --json |
    sed 's/^{"stats": \[\([^]]*\)\].*/\1/' | tr -d ' ' |
    awk -F, '{ printf "%.1f %.1f %.1f %.1f %.1f %.1f\n", 100*$1, 100*$2, 100*$3, 100*$4, 100*$5, 100*$6 }'
}

kd_report_replace_block() { # results-file block-file tag: replaces <!-- TAG:begin ... --> .. <!-- TAG:end -->
  local file=$1 block=$2 tag=$3
  if [ -f "$file" ] && grep -q "^<!-- $tag:begin" "$file"; then
    awk -v blk="$block" -v tag="$tag" '
      $0 ~ "^<!-- " tag ":begin" { while ((getline l < blk) > 0) print l; skip = 1; next }
      $0 ~ "^<!-- " tag ":end" { skip = 0; next }
      !skip { print }' "$file" > "$file.tmp" && mv "$file.tmp" "$file"
  else
    { [ -f "$file" ] || echo "# Distillation experiments"; echo; cat "$block"; } >> "$file"
  fi
  echo "written: $file"
}
