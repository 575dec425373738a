# bench/distill/report.sh — sourced by bench/distill/run.sh after training: evaluates every
# finished run's final detections with crosskd-eval, prints the paper-style tables, and writes
# them with the timings, the versions, the exact commands and the figures between the
# `<!-- generated:begin -->` / `<!-- generated:end -->` markers of RESULTS.md (the text around
# the markers is kept, so the written analysis survives a rerun).
# Uses from run.sh: bin plot data root results figs seeds methods positions run_names; from
# lib.sh: kd_report_ap, kd_report_replace_block, kd_awk_get. detectors.sh uses the generic
# pieces (timing, versions, commands).
# Numbers are COCO bbox AP x 100; "mean ± sd" is over the seeds that finished (sample standard
# deviation, n - 1), and "range" is min..max over those seeds.

kd_report_collect() { # -> lines "run method seed AP AP50 AP75 APs APm APl" into $ap_file
  local name m s ap
  : > "$ap_file"
  for name in $(run_names); do
    ap=$(kd_report_ap "$root/$name")
    [ -n "$ap" ] || continue
    if [ "$name" = teacher ]; then m=teacher s=0; else m=${name%-s*} s=${name##*-s}; fi
    echo "$name $m $s $ap" >> "$ap_file"
  done
}

kd_report_method_table() { # the main table: one row per method, mean ± sd over seeds
  echo "| method | seeds | AP | AP50 | AP75 | APs | APm | APl | AP range | AP vs baseline |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  awk -v order="teacher ${methods[*]}" '
    { n[$2]++; for (k = 4; k <= 9; k++) { s[$2, k] += $k; q[$2, k] += $k * $k }
      if (!($2 in lo) || $4 < lo[$2]) lo[$2] = $4; if (!($2 in hi) || $4 > hi[$2]) hi[$2] = $4 }
    function sd(m, k,   v) { if (n[m] < 2) return 0; v = (q[m, k] - s[m, k] * s[m, k] / n[m]) / (n[m] - 1); return v > 0 ? sqrt(v) : 0 }
    END { c = split(order, o, " ");
      for (i = 1; i <= c; i++) { m = o[i]; if (!(m in n)) { printf "| %s | 0 | not run | | | | | | | |\n", m; continue }
        printf "| %s | %d |", (m == "teacher" ? "teacher (not distilled)" : m), n[m];
        for (k = 4; k <= 9; k++) printf " %.1f ± %.1f |", s[m, k] / n[m], sd(m, k);
        printf " %.1f..%.1f |", lo[m], hi[m];
        if (m != "teacher" && m != "baseline" && ("baseline" in n)) printf " %+.1f |\n", s[m, 4] / n[m] - s["baseline", 4] / n["baseline"];
        else printf " |\n" } }' "$ap_file"
}

kd_report_seed_table() { # AP of every run, one column per seed
  printf '| method |'; for s in "${seeds[@]}"; do printf ' seed %s |' "$s"; done; echo
  printf '| --- |'; for s in "${seeds[@]}"; do printf ' ---: |'; done; echo
  local m s ap
  for m in "${methods[@]}"; do
    printf '| %s |' "$m"
    for s in "${seeds[@]}"; do
      ap=$(awk -v r="$m-s$s" '$1 == r { print $4 }' "$ap_file")
      printf ' %s |' "${ap:--}"
    done
    echo
  done
}

kd_report_paired_table() { # CrossKD minus each method at the same seed (same init and data order)
  printf '| CrossKD AP minus |'; for s in "${seeds[@]}"; do printf ' seed %s |' "$s"; done; echo ' mean | seeds CrossKD is higher |'
  printf '| --- |'; for s in "${seeds[@]}"; do printf ' ---: |'; done; echo ' ---: | ---: |'
  awk -v methods="${methods[*]}" -v seeds="${seeds[*]}" '
    { ap[$2, $3] = $4 }
    END { nm = split(methods, M, " "); ns = split(seeds, S, " ");
      for (i = 1; i <= nm; i++) { m = M[i]; if (m == "crosskd") continue;
        printf "| %s |", m; n = 0; sum = 0; win = 0;
        for (j = 1; j <= ns; j++) {
          if (((m, S[j]) in ap) && (("crosskd", S[j]) in ap)) { d = ap["crosskd", S[j]] - ap[m, S[j]];
            printf " %+.1f |", d; n++; sum += d; win += d > 0 } else printf " - |" }
        if (n) printf " %+.1f | %d of %d |\n", sum / n, win, n; else print " - | - |" } }' "$ap_file"
}

kd_report_position_table() { # Table 1: CrossKD at head position i, seed 0
  echo "| i | AP | AP50 | AP75 | APs | APm | APl |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  local i run line
  for i in 0 1 2 3 4; do
    run=crosskd-i$i-s0
    [ "$i" = 3 ] && run=crosskd-s0
    line=$(awk -v r="$run" '$1 == r { print $4" | "$5" | "$6" | "$7" | "$8" | "$9 }' "$ap_file")
    echo "| $i | ${line:-not run | | | | |} |"
  done
}

kd_report_timing() { # per run: wall seconds, load average (1, 5, 15 min) at start and end
  echo "| run | wall (s) | load at start | load at end | AP |"
  echo "| --- | ---: | --- | --- | ---: |"
  local name d ap
  for name in $(run_names); do
    d=$root/$name/done
    if [ -f "$d" ]; then
      ap=$(awk -v r="$name" '$1 == r { print $4 }' "$ap_file")
      echo "| $name | $(sed -n 's/^seconds //p' "$d") | $(sed -n 's/^load_start //p' "$d") | $(sed -n 's/^load_end //p' "$d") | $ap |"
    else
      echo "| $name | not finished | | | |"
    fi
  done
}

kd_report_versions() {
  local p
  echo "- crosskd: commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "- trainer sources (worker, kernels, proto, daemon, tools, conf) as of commit $(git log -1 --format=%h -- worker kernels proto daemon tools conf)$(git diff --quiet HEAD -- worker kernels proto daemon tools conf 2>/dev/null || echo ' with uncommitted changes')"
  echo "- compiler: $(cc --version | head -1); meson $(meson --version); ninja $(ninja --version)"
  echo "- $(mpirun --version 2>/dev/null | head -1)"
  for p in libdnnl-dev libopenblas0-pthread libopenblas-dev libturbojpeg0-dev libpng-dev libjansson-dev libyaml-dev libzstd-dev; do
    dpkg-query -W -f='${Package} ${Version}\n' "$p" 2>/dev/null | sed 's/^/- /' || true
  done
  echo "- machine: $(getconf _NPROCESSORS_ONLN) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
}

kd_report_commands() {
  echo '```sh'
  echo "bash bench/distill/$(basename "$0")            # the whole experiment; reruns skip finished runs"
  echo "crosskd-gen --out $data ${gen_args[*]}"
  local name
  for name in $(run_names); do
    [ -f "$root/$name/done" ] && sed -n 's/^command //p' "$root/$name/done" | sed "s|^[^ ]*/crosskd-worker|OMP_NUM_THREADS=1 crosskd-worker|"
  done
  echo "crosskd-eval $data/annotations/instances_val.json <run>/results/iter_<last>.bbox.json --json"
  echo '```'
}

kd_report_figures() { # draws the figures; prints their markdown
  [ -x "$plot" ] || { echo "(figures not drawn: $plot is not built)"; return 0; }
  mkdir -p "$figs"
  local m s files args_loss=() args_det=() args_ap=() args_pos=() i run
  for m in "${methods[@]}"; do
    files=
    for s in "${seeds[@]}"; do [ -f "$root/$m-s$s/done" ] && files+="${files:+,}$root/$m-s$s/logs/scalars.jsonl"; done
    [ -n "$files" ] || continue
    args_loss+=("$m=$files") args_ap+=("$m=$files")
  done
  for i in 0 1 2 3 4; do
    run=crosskd-i$i-s0
    [ "$i" = 3 ] && run=crosskd-s0
    [ -f "$root/$run/done" ] && args_pos+=("i=$i=$root/$run/logs/scalars.jsonl")
  done
  [ ${#args_loss[@]} -gt 0 ] || { echo "(no finished runs to draw)"; return 0; }
  "$plot" curve --out "$figs/loss_detection.svg" --key loss_cls+loss_bbox+loss_dfl \
    --title "detection loss of the student (loss_cls + loss_bbox + loss_dfl), mean over seeds" "${args_loss[@]}"
  "$plot" curve --out "$figs/loss_total.svg" --key loss \
    --title "total training loss (detection + distillation terms), mean over seeds" "${args_loss[@]}"
  "$plot" curve --out "$figs/ap.svg" --key bbox_mAP --scale 100 \
    --title "validation AP at each evaluation, mean over seeds" "${args_ap[@]}"
  [ -f "$root/teacher/done" ] &&
    "$plot" curve --out "$figs/ap_teacher.svg" --key bbox_mAP --scale 100 --title "teacher: validation AP" \
      "teacher=$root/teacher/logs/scalars.jsonl"
  [ ${#args_pos[@]} -gt 0 ] &&
    "$plot" curve --out "$figs/ap_positions.svg" --key bbox_mAP --scale 100 \
      --title "CrossKD at head position i (seed 0): validation AP" "${args_pos[@]}"
  local f
  for f in "loss_detection:detection loss" "loss_total:total loss" "ap:AP per evaluation" \
           "ap_positions:CrossKD positions" "ap_teacher:teacher AP"; do
    [ -f "$figs/${f%%:*}.svg" ] && printf '![%s](figures/%s.svg)\n\n' "${f#*:}" "${f%%:*}"
  done
  kd_report_detections
}

kd_report_detections() { # teacher / baseline / CrossKD detections on a few validation images
  local t=$root/teacher/done b=$root/baseline-s0/done c=$root/crosskd-s0/done id
  [ -f "$t" ] && [ -f "$b" ] && [ -f "$c" ] || { printf '(detection images need teacher, baseline-s0 and crosskd-s0)\n\n'; return 0; }
  echo "The 10 best detections with score >= 0.1 on validation images (GFL's scores are localisation"
  echo "quality estimates and stay below 0.5 for models this weak); panels from left to right:"
  echo "ground truth (crowd boxes dashed), teacher, baseline student (seed 0), CrossKD student (seed 0);"
  echo "colour = category."
  echo
  for id in $(kd_report_image_ids); do
    "$plot" draw --gt "$data/annotations/instances_val.json" --images "$data/val" --image-id "$id" \
      --score-thr 0.1 --max-dets 10 --out "$figs/detections_$id.png" \
      "$(sed -n 's/^results //p' "$t")" "$(sed -n 's/^results //p' "$b")" "$(sed -n 's/^results //p' "$c")"
    echo "![detections on image $id](figures/detections_$id.png)"
    echo
  done
}

kd_report_image_ids() { # the first four validation image ids (fixed by the dataset's seed)
  grep -o '{"id": *[0-9]*, *"file_name"' "$data/annotations/instances_val.json" | head -4 | tr -dc '0-9\n'
}

kd_report_loss_scales() { # logged loss terms, mean over the first and the last epoch, seed 0
  local keys="loss_cls loss_bbox loss_dfl loss_cls_kd loss_reg_kd loss_feat_kd conflict_ratio" m k
  printf '| run | epochs |'; for k in $keys; do printf ' %s |' "$k"; done; echo
  printf '| --- | --- |'; for k in $keys; do printf ' ---: |'; done; echo
  for m in teacher "${methods[@]}"; do
    local f=$root/$m-s0/logs/scalars.jsonl
    [ "$m" = teacher ] && f=$root/teacher/logs/scalars.jsonl
    [ -f "$(dirname "$(dirname "$f")")/done" ] || continue
    awk -v run="$m" -v keys="$keys" "$kd_awk_get"'
      /"loss_cls"/ { e = get("epoch"); if (first == "") first = e; last = e; nk = split(keys, K, " ");
        for (i = 1; i <= nk; i++) { v = get(K[i]); if (v == "") continue; s[e, i] += v; c[e, i]++ } }
      END { printf "| %s | %s, %s |", run, first, last;
        for (i = 1; i <= nk; i++) {
          if (c[first, i] == 0) { printf " - |"; continue }
          printf " %.3g -> %.3g |", s[first, i] / c[first, i], (c[last, i] ? s[last, i] / c[last, i] : 0) }
        print "" }' "$f"
  done
}

kd_report_conflict_sweep() { # Fig. 3: the conflict ratio of this teacher at several thresholds
  # The ratio depends only on the teacher and on ATSS's assignment (which does not look at the
  # predictions), so it is measured once: 25 steps of lr 0 over the first 100 training images.
  [ -f "$root/teacher/done" ] || return 0
  echo "| threshold | conflicting / positive anchors |"
  echo "| ---: | ---: |"
  local thr wd
  for thr in 0.1 0.2 0.3 0.5; do
    wd=$root/conflict-thr$thr
    if [ ! -f "$wd/logs/scalars.jsonl" ] || [ "$(grep -c conflict_ratio "$wd/logs/scalars.jsonl")" != 25 ]; then
      rm -rf "$wd"
      "$bin/crosskd-worker" conf/default/student.yaml --set threads=1 --set "data_root=$data" --set "work_dir=$wd" \
        --set "teacher_ckpt=$root/teacher/final.safetensors" --set model.kd_cfg.log_conflict_ratio=true \
        --set "model.kd_cfg.conflict_threshold=$thr" --set optim_wrapper.optimizer.lr=0 --set train_cfg.max_iters=25 \
        --set default_hooks.logger.interval=1 --set train_cfg.val_interval=0 \
        --set default_hooks.checkpoint.interval=1000 > "$wd.log" 2>&1 || { echo "| $thr | failed (see $wd.log) |"; continue; }
    fi
    grep -o '"conflict_ratio":[0-9.e+-]*' "$wd/logs/scalars.jsonl" | cut -d: -f2 |
      awk -v t="$thr" '{ s += $1; n++ } END { printf "| %s | %.3f |\n", t, s / n }'
  done
}

kd_report_appendix() { # the sections both reports end with: run timings, versions, exact commands
  echo "### Runs: wall time and load"
  echo
  kd_report_timing
  echo
  echo "### Versions"
  echo
  kd_report_versions
  echo
  echo "### Commands"
  echo
  kd_report_commands
  echo
}

kd_report_write() {
  [ -d "$root" ] || { echo "nothing to report: $root does not exist" >&2; return 1; }
  kd_report_collect
  local block=$root/generated.md
  {
    echo "<!-- generated:begin (bench/distill/run.sh rewrites this part; $(date -u '+%Y-%m-%d %H:%M UTC')) -->"
    echo
    echo "### Methods (student GFL R18-layout base 16; teacher base 32), $(grep -c . "$ap_file") finished runs"
    echo
    kd_report_method_table
    echo
    echo "AP of each run:"
    echo
    kd_report_seed_table
    echo
    echo "Paired by seed (each seed fixes the student's initialisation and the data order):"
    echo
    kd_report_paired_table
    echo
    echo "### CrossKD position ablation (the paper's Table 1), seed 0"
    echo
    kd_report_position_table
    echo
    echo "### Loss terms and the target-conflict ratio (seed 0; mean over the first -> the last epoch)"
    echo
    kd_report_loss_scales
    echo
    echo "### The teacher's target conflict (paper Fig. 3) at several thresholds"
    echo
    kd_report_conflict_sweep
    echo
    echo "### Figures"
    echo
    kd_report_figures
    kd_report_appendix
    echo "<!-- generated:end -->"
  } > "$block"
  kd_report_method_table
  echo
  kd_report_position_table
  kd_report_replace_block "$results" "$block" generated
}
