# bench/distill/detectors_report.sh — sourced by bench/distill/detectors.sh after training (and
# after report.sh, whose collect, timing, versions and commands it reuses): the paper-style
# Tables 6 and 7, the validation-AP curves and the run records, written between the
# `<!-- detectors:begin -->` / `<!-- detectors:end -->` markers of RESULTS.md.
# Uses from detectors.sh: detectors kd_methods cross_teachers det_suffix run_names.
# Numbers are COCO bbox AP x 100 of each run's final detections, one seed (0).

kd_det_label() { # detector -> its name in the tables
  case $1 in gfl) echo GFL ;; atss) echo ATSS ;; retinanet) echo RetinaNet ;; fcos) echo FCOS ;; *) echo "$1" ;; esac
}

kd_det_metrics() { # run -> "AP | AP50 | AP75 | APs | APm | APl" or "not run | ..."
  local line
  line=$(awk -v r="$1" '$1 == r { print $4" | "$5" | "$6" | "$7" | "$8" | "$9 }' "$ap_file")
  echo "${line:-not run | | | | |}"
}

kd_det_ap() { awk -v r="$1" '$1 == r { print $4 }' "$ap_file"; }

kd_det_delta() { # run base-run -> "+x.y" or "-"
  local a b
  a=$(kd_det_ap "$1") b=$(kd_det_ap "$2")
  [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" 'BEGIN { printf "%+.1f", a - b }' || echo -
}

kd_det_conflict() { # run -> mean conflict_ratio over its last epoch's logged steps, or "-"
  local f=$root/$1/logs/scalars.jsonl
  [ -f "$f" ] || { echo -; return; }
  awk "$kd_awk_get"'
       /"conflict_ratio"/ { e = get("epoch"); v = get("conflict_ratio"); s[e] += v; c[e]++; last = e }
       END { if (last == "") print "-"; else printf "%.3f\n", s[last] / c[last] }' "$f"
}

kd_det_summary_table() { # Table 6 in one line per detector
  echo "| detector | teacher | student baseline | prediction mimicking | CrossKD | PM - baseline | CrossKD - baseline | CrossKD - PM |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  local d x
  for d in "${detectors[@]}"; do
    x=$(det_suffix "$d")
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(kd_det_label "$d")" "$(kd_det_ap "teacher$x")" \
      "$(kd_det_ap "baseline$x-s0")" "$(kd_det_ap "pred_mimic$x-s0")" "$(kd_det_ap "crosskd$x-s0")" \
      "$(kd_det_delta "pred_mimic$x-s0" "baseline$x-s0")" "$(kd_det_delta "crosskd$x-s0" "baseline$x-s0")" \
      "$(kd_det_delta "crosskd$x-s0" "pred_mimic$x-s0")"
  done
}

kd_det_table6() { # the paper's layout: teacher, student, KD rows per detector, every metric
  echo "| detector | run | AP | AP50 | AP75 | APs | APm | APl | conflict ratio |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  local d x m run label
  for d in "${detectors[@]}"; do
    x=$(det_suffix "$d")
    echo "| $(kd_det_label "$d") | teacher (width 32, 16 epochs) | $(kd_det_metrics "teacher$x") | |"
    for m in "${kd_methods[@]}"; do
      run=$m$x-s0
      case $m in baseline) label="student (width 16, 8 epochs)" ;; pred_mimic) label="prediction mimicking" ;; *) label=CrossKD ;; esac
      echo "| | $label | $(kd_det_metrics "$run") | $([ "$m" = baseline ] && echo || kd_det_conflict "$run") |"
    done
  done
}

kd_det_table7() { # GFL student under teachers of another head type
  echo "| teacher | run | AP | AP50 | AP75 | APs | APm | APl | conflict ratio |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  local d
  for d in gfl "${cross_teachers[@]}"; do
    echo "| $(kd_det_label "$d") | $(kd_det_label "$d") teacher | $(kd_det_metrics "teacher$(det_suffix "$d")") | |"
    echo "| | GFL student, no KD | $(kd_det_metrics baseline-s0) | |"
    if [ "$d" = gfl ]; then
      echo "| | prediction mimicking | $(kd_det_metrics pred_mimic-s0) | $(kd_det_conflict pred_mimic-s0) |"
      echo "| | CrossKD | $(kd_det_metrics crosskd-s0) | $(kd_det_conflict crosskd-s0) |"
    else
      [ "$d" = atss ] && echo "| | prediction mimicking of the ATSS teacher | $(kd_det_metrics pred_mimic-gfl-from-atss-s0) | $(kd_det_conflict pred_mimic-gfl-from-atss-s0) |"
      echo "| | CrossKD through the $(kd_det_label "$d") head | $(kd_det_metrics "crosskd-gfl-from-$d-s0") | $(kd_det_conflict "crosskd-gfl-from-$d-s0") |"
    fi
  done
}

kd_det_figures() { # validation AP against the iteration, one figure per detector and one for Table 7
  [ -x "$plot" ] || { echo "(figures not drawn: $plot is not built)"; return 0; }
  mkdir -p "$figs"
  local d x m run args f
  for d in "${detectors[@]}" table7; do
    args=()
    if [ "$d" = table7 ]; then
      for run in baseline-s0 crosskd-s0 pred_mimic-gfl-from-atss-s0 crosskd-gfl-from-atss-s0 crosskd-gfl-from-retinanet-s0; do
        [ -f "$root/$run/done" ] && args+=("${run%-s0}=$root/$run/logs/scalars.jsonl")
      done
    else
      x=$(det_suffix "$d")
      for m in "${kd_methods[@]}"; do
        [ -f "$root/$m$x-s0/done" ] && args+=("$m=$root/$m$x-s0/logs/scalars.jsonl")
      done
    fi
    [ ${#args[@]} -gt 0 ] || continue
    f=ap_$d
    "$plot" curve --out "$figs/$f.svg" --key bbox_mAP --scale 100 \
      --title "$([ "$d" = table7 ] && echo "GFL student under GFL, ATSS and RetinaNet teachers" || echo "$(kd_det_label "$d")"): validation AP (seed 0)" \
      "${args[@]}"
    printf '![%s](figures/%s.svg)\n\n' "$d" "$f"
  done
}

kd_detectors_report_write() {
  [ -d "$root" ] || { echo "nothing to report: $root does not exist" >&2; return 1; }
  ap_file=$root/ap-detectors.txt
  kd_report_collect
  local block=$root/generated-detectors.md
  {
    echo "<!-- detectors:begin (bench/distill/detectors.sh rewrites this part; $(date -u '+%Y-%m-%d %H:%M UTC')) -->"
    echo
    echo "### CrossKD on four detectors (the paper's Table 6), seed 0, $(grep -c . "$ap_file") finished runs"
    echo
    kd_det_summary_table
    echo
    kd_det_table6
    echo
    echo "### A GFL student under teachers of other detector types (the paper's Table 7), seed 0"
    echo
    kd_det_table7
    echo
    echo "### Figures"
    echo
    kd_det_figures
    kd_report_appendix
    echo "<!-- detectors:end -->"
  } > "$block"
  kd_det_summary_table
  echo
  kd_det_table7
  kd_report_replace_block "$results" "$block" detectors
}
