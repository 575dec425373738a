#!/usr/bin/env bash
# train_case.sh WORKER GEN CKPT_TOOL CONFIG CASE — real training jobs under real mpirun on a
# micro synthetic dataset, each case bounded in time.
#   single         one rank to the end: logs, JSON lines, TensorBoard, results, checkpoints
#   dp_equivalence 2 ranks x 1 image == 1 rank x 2 images after an epoch (tolerance 1e-6)
#   overlap        gradient buckets started during backward == all started after it (bit-identical);
#                  gradient clipping applied to the averaged gradients
#   resume_kill    SIGKILL every rank at random moments after checkpoints, resume, finish:
#                  bit-identical to an uninterrupted run; `latest` always valid; a flipped
#                  byte in the newest checkpoint is reported and the previous one used
#   signal_requeue SIGUSR1 mid-epoch: checkpoint, exit 85; resume: bit-identical at the end
#   sigterm        the same with SIGTERM sent to every rank, as Slurm does at a time limit
#   control        crosskdctl status, checkpoint, pause/resume and stop on a real 2-rank job
#   rank_death     one rank killed: the whole job ends with an error, no hang
#   guarded        one rank under CROSSKD_GUARD_DEVICE_MEMORY (the CPU backend's buffers
#                  unreadable by the host outside backend calls, as on a GPU): training,
#                  evaluation, checkpoints, final weights, then CrossKD with the adapter and
#                  gradient clipping, resumed; the same bits as without the guard
#   loss_scale     a static loss scale of 2^16 (the fp16 path's scaling and unscaling, in
#                  fp32 here) gives the same bits as no scaling (and when resumed, with the
#                  scaler's checkpoint section): 2 ranks without KD, then
#                  prediction mimicking, PKD, RM+PFI and CrossKD with the adapter (every
#                  place a KD gradient reaches the device is scaled); AmpOptimWrapper on the
#                  CPU is refused with a message
#   crosskd        a micro teacher trained for one epoch, then a 2-rank CrossKD student
#                  (idx 0 and 1 on the one-block head): KD terms and the conflict ratio
#                  logged, the teacher file untouched, a missing teacher named; a narrower
#                  student head through the adapter, checkpointed and resumed
set -u
worker=$1 gen=$2 tool=$3 config=$4 case=$5
tmp=$(mktemp -d)
trap 'pkill -9 -f "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
"$gen" --out "$tmp/data" --train 8 --val 4 --size-min 64 --size-max 96 --categories 3 --seed 3 --no-progress || exit 1

fail() { echo "FAIL: $*"; exit 1; }
run() { # NP WORKDIR [--set ...]
  local np=$1 wd=$2; shift 2
  timeout 120 mpirun --oversubscribe -np "$np" --mca btl self,vader,tcp \
    "$worker" "$config" --set data_root="$tmp/data" --set work_dir="$wd" "$@"
}

case "$case" in
single)
  run 1 "$tmp/a" > "$tmp/log" 2>&1 || { cat "$tmp/log"; fail "exit $?"; }
  grep -q "Epoch(train) \[3\]\[8/8\]" "$tmp/log" || { cat "$tmp/log"; fail "no log line for the last iteration"; }
  grep -q '"loss_cls"' "$tmp/a/logs/scalars.jsonl" || fail "no JSON-lines losses"
  grep -q '"bbox_mAP"' "$tmp/a/logs/scalars.jsonl" || fail "no JSON-lines evaluation"
  ls "$tmp/a/tf_logs/"events.out.tfevents.* >/dev/null || fail "no TensorBoard events"
  [ -s "$tmp/a/results/iter_24.bbox.json" ] || fail "no COCO results file"
  [ -s "$tmp/a/config.yaml" ] || fail "no effective config"
  [ -s "$tmp/a/final.safetensors" ] || fail "no final weights"
  "$tool" verify "$tmp/a/checkpoints" || fail "checkpoints"
  [ "$(ls "$tmp/a/checkpoints" | grep -c '^iter_')" -eq 2 ] || fail "max_keep_ckpts 2 not honoured"
  echo ok ;;
dp_equivalence)
  # Every image pads to 64x64 here (aspect ratios 0.6-1.65 at scale 64), so one image sees
  # the same tensor alone or in a batch of two. The GIoU and DFL terms are switched off:
  # their normaliser W = max(1, mean over ranks of the weight sum) clamps differently for one
  # rank (sum of two images) and two ranks (mean), which is MMDetection's semantics, not an
  # error. QFL's P = mean positives has no clamp, so the QFL gradients must agree.
  off="--set model.bbox_head.loss_bbox.loss_weight=0 --set model.bbox_head.loss_dfl.loss_weight=0"
  run 1 "$tmp/one" --set train_dataloader.batch_size=2 --set train_cfg.max_epochs=1 $off > "$tmp/log1" 2>&1 || { cat "$tmp/log1"; fail "np1"; }
  run 2 "$tmp/two" --set train_cfg.max_epochs=1 $off > "$tmp/log2" 2>&1 || { cat "$tmp/log2"; fail "np2"; }
  # Not bit-identical: the batch of two sums its weight gradients inside each convolution,
  # two ranks sum them in the all-reduce; float32 rounding differs at ~1e-7 per step.
  "$tool" compare "$tmp/one/checkpoints/iter_4.ckpt" "$tmp/two/checkpoints/iter_4.ckpt" 1e-6 || fail "weights differ"
  echo ok ;;
overlap)
  # Buckets of 50 KiB (16 for this model), started as backward finishes them or all after
  # it: the same sums in the same order, so the weights must be bit-identical.
  small="--set model_wrapper_cfg.bucket_cap_mb=0.05"
  run 2 "$tmp/on" $small > "$tmp/log1" 2>&1 || { cat "$tmp/log1"; fail "overlap on"; }
  run 2 "$tmp/off" $small --set model_wrapper_cfg.overlap_grad_sync=false > "$tmp/log2" 2>&1 || { cat "$tmp/log2"; fail "overlap off"; }
  grep -q "16 buckets .*as soon as backward" "$tmp/log1" || { grep "all-reduce" "$tmp/log1"; fail "overlap not announced"; }
  grep -q "all started after backward" "$tmp/log2" || fail "no-overlap not announced"
  # every bucket but the lowest (the first backbone stage's, final only at the very end)
  grep -q "1[0-5] of 16 buckets started during backward" "$tmp/log1" || { grep "all-reduce" "$tmp/log1"; fail "no bucket started during backward"; }
  grep -q " 0 of 16 buckets started during backward" "$tmp/log2" || { grep "all-reduce" "$tmp/log2"; fail "buckets started during backward without overlap"; }
  grep -q '"sync_time"' "$tmp/on/logs/scalars.jsonl" || fail "no sync_time in the JSON lines"
  "$tool" compare "$tmp/on/checkpoints/iter_12.ckpt" "$tmp/off/checkpoints/iter_12.ckpt" 0 || fail "weights differ"
  # gradient clipping acts on the averaged gradients: a bound no step reaches changes
  # nothing, a tight one changes the weights
  run 2 "$tmp/loose" $small --set optim_wrapper.clip_grad.max_norm=1e6 > "$tmp/log3" 2>&1 || { cat "$tmp/log3"; fail "loose clip"; }
  run 2 "$tmp/tight" $small --set optim_wrapper.clip_grad.max_norm=0.01 > "$tmp/log4" 2>&1 || { cat "$tmp/log4"; fail "tight clip"; }
  "$tool" compare "$tmp/on/checkpoints/iter_12.ckpt" "$tmp/loose/checkpoints/iter_12.ckpt" 0 || fail "a loose clip changed the weights"
  "$tool" compare "$tmp/on/checkpoints/iter_12.ckpt" "$tmp/tight/checkpoints/iter_12.ckpt" 0 > /dev/null && fail "a tight clip changed nothing"
  echo ok ;;
resume_kill)
  run 2 "$tmp/straight" --set train_cfg.max_epochs=12 > "$tmp/log" 2>&1 || { cat "$tmp/log"; fail "straight run"; }
  for round in 1 2 3; do
    run 2 "$tmp/killed" --set train_cfg.max_epochs=12 --set resume=auto > "$tmp/log.$round" 2>&1 &
    job=$!
    for _ in $(seq 200); do [ -f "$tmp/killed/checkpoints/latest" ] && break; sleep 0.05; done
    sleep "0.$((RANDOM % 6))"
    pkill -9 -f "work_dir=$tmp/killed" ; wait "$job" 2>/dev/null
    "$tool" verify "$tmp/killed/checkpoints" || fail "round $round: latest is not valid after SIGKILL"
  done
  # a flipped byte in the newest checkpoint: resume reports it and takes the previous one
  newest=$(cat "$tmp/killed/checkpoints/latest")
  corrupt=0
  if [ "$(ls "$tmp/killed/checkpoints" | grep -c '^iter_.*\.ckpt$')" -ge 2 ]; then
    f="$tmp/killed/checkpoints/$newest"
    off=$(( $(stat -c %s "$f") / 2 ))
    printf '\x5a' | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
    corrupt=1
  fi
  run 2 "$tmp/killed" --set train_cfg.max_epochs=12 --set resume=auto > "$tmp/log.final" 2>&1 || { cat "$tmp/log.final"; fail "final resume"; }
  grep -q "resumed from" "$tmp/log.final" || fail "did not resume"
  if [ "$corrupt" = 1 ]; then
    grep -q "skipped invalid checkpoints: .*$newest" "$tmp/log.final" || { cat "$tmp/log.final"; fail "the corrupt $newest was not reported"; }
    grep "resumed from" "$tmp/log.final" | grep -q "$newest" && fail "resumed from the corrupt $newest"
  fi
  "$tool" compare "$tmp/straight/checkpoints/iter_48.ckpt" "$tmp/killed/checkpoints/iter_48.ckpt" 0 || fail "not bit-identical"
  [ "$corrupt" = 1 ] && echo "ok (the corrupt $newest was skipped)" || echo "ok (one checkpoint only: no corruption tried)" ;;
signal_requeue)
  run 2 "$tmp/straight" --set train_cfg.max_epochs=12 > "$tmp/log" 2>&1 || fail "straight run"
  run 2 "$tmp/sig" --set train_cfg.max_epochs=12 > "$tmp/log.sig" 2>&1 &
  job=$!
  for _ in $(seq 200); do grep -q "Epoch(train) \[2\]" "$tmp/log.sig" && break; sleep 0.05; done
  pkill -USR1 -f "^mpirun .*work_dir=$tmp/sig"   # mpirun forwards SIGUSR1 to every rank
  wait "$job"; rc=$?
  [ "$rc" -eq 85 ] || { cat "$tmp/log.sig"; fail "exit status $rc, expected 85"; }
  grep -q "saving a checkpoint and stopping" "$tmp/log.sig" || fail "no stop message"
  run 2 "$tmp/sig" --set train_cfg.max_epochs=12 --set resume=auto > "$tmp/log.resume" 2>&1 || { cat "$tmp/log.resume"; fail "resume"; }
  "$tool" compare "$tmp/straight/checkpoints/iter_48.ckpt" "$tmp/sig/checkpoints/iter_48.ckpt" 0 || fail "not bit-identical"
  echo ok ;;
sigterm)
  # SIGTERM to every rank (what Slurm sends each task at a time limit): the ranks agree on
  # a step, rank 0 checkpoints, all exit 85; the resumed run ends bit-identical.
  run 2 "$tmp/straight" --set train_cfg.max_epochs=12 > "$tmp/log" 2>&1 || fail "straight run"
  run 2 "$tmp/term" --set train_cfg.max_epochs=12 > "$tmp/log.term" 2>&1 &
  job=$!
  for _ in $(seq 200); do grep -q "Epoch(train) \[2\]" "$tmp/log.term" && break; sleep 0.05; done
  pkill -TERM -f "^[^ ]*crosskd-worker .*work_dir=$tmp/term"
  wait "$job"; rc=$?
  [ "$rc" -eq 85 ] || { cat "$tmp/log.term"; fail "exit status $rc, expected 85"; }
  grep -q "SIGTERM/SIGUSR1 received: saving a checkpoint and stopping" "$tmp/log.term" || fail "no stop message"
  run 2 "$tmp/term" --set train_cfg.max_epochs=12 --set resume=auto > "$tmp/log.resume" 2>&1 || { cat "$tmp/log.resume"; fail "resume"; }
  grep -q "resumed from" "$tmp/log.resume" || fail "did not resume"
  "$tool" compare "$tmp/straight/checkpoints/iter_48.ckpt" "$tmp/term/checkpoints/iter_48.ckpt" 0 || fail "not bit-identical"
  echo ok ;;
control)
  # crosskdctl against a real 2-rank job: status, checkpoint, pause/resume, stop.
  ctl="$(dirname "$worker")/crosskdctl"
  run 2 "$tmp/ctl" --set train_cfg.max_epochs=100000 > "$tmp/log" 2>&1 &
  job=$!
  for _ in $(seq 200); do [ -S "$tmp/ctl/crosskd.sock" ] && grep -q "Epoch(train)" "$tmp/log" && break; sleep 0.05; done
  out=$("$ctl" --work-dir "$tmp/ctl" status) || fail "status: $out"
  for want in "state:running" "world_size:2" "loss_cls:" "rank1:rank=1"; do
    grep -q "$want" <<<"$out" || fail "status lacks $want: $out"
  done
  out=$("$ctl" --work-dir "$tmp/ctl" checkpoint) || fail "checkpoint: $out"
  path=$(sed -n 's/^path://p' <<<"$out")
  [ -f "$path" ] || fail "checkpoint answered before $path existed: $out"
  "$ctl" --work-dir "$tmp/ctl" pause >/dev/null || fail "pause"
  sleep 0.3
  a=$("$ctl" --work-dir "$tmp/ctl" status | sed -n 's/^iter://p'); sleep 0.5
  b=$("$ctl" --work-dir "$tmp/ctl" status | sed -n 's/^iter://p')
  [ "$a" = "$b" ] || fail "iterations advanced while paused ($a -> $b)"
  "$ctl" --work-dir "$tmp/ctl" resume >/dev/null || fail "resume"
  sleep 0.5
  c=$("$ctl" --work-dir "$tmp/ctl" status | sed -n 's/^iter://p')
  [ "$c" -gt "$b" ] || fail "no progress after resume ($b -> $c)"
  "$ctl" --work-dir "$tmp/ctl" stop > "$tmp/stop" || fail "stop"
  wait "$job"; rc=$?
  [ "$rc" -eq 0 ] || { cat "$tmp/log"; fail "exit status $rc after stop"; }
  path=$(sed -n 's/^path://p' "$tmp/stop")
  [ -f "$path" ] || fail "no final checkpoint: $(cat "$tmp/stop")"
  echo ok ;;
rank_death)
  start=$(date +%s)
  run 2 "$tmp/death" --set train_cfg.max_epochs=1000 > "$tmp/log" 2>&1 &
  job=$!
  for _ in $(seq 200); do grep -q "Epoch(train)" "$tmp/log" && break; sleep 0.05; done
  victim=$(pgrep -f "work_dir=$tmp/death" | grep -v "^$job\$" | tail -1)
  kill -9 "$victim"
  wait "$job"; rc=$?
  elapsed=$(( $(date +%s) - start ))
  [ "$rc" -ne 0 ] || fail "job reported success"
  [ "$rc" -ne 124 ] || fail "job hung"
  echo "ok: ended with status $rc in ${elapsed}s" ;;
guarded)
  run 1 "$tmp/plain" --set train_cfg.max_epochs=2 > "$tmp/log.p" 2>&1 || { cat "$tmp/log.p"; fail "unguarded run"; }
  CROSSKD_GUARD_DEVICE_MEMORY=1 run 1 "$tmp/g" --set train_cfg.max_epochs=2 \
    > "$tmp/log.g" 2>&1 || { cat "$tmp/log.g"; fail "guarded run (a host access to device memory faults)"; }
  grep -q "buffers are guarded" "$tmp/log.g" || { cat "$tmp/log.g"; fail "the guard is not on"; }
  grep -q "Epoch(val)" "$tmp/log.g" || { cat "$tmp/log.g"; fail "no evaluation in the guarded run"; }
  "$tool" compare "$tmp/plain/checkpoints/iter_16.ckpt" "$tmp/g/checkpoints/iter_16.ckpt" 0 || fail "guard changed the result"
  kd="--set model.kd_cfg.method=crosskd --set teacher_config=$(basename "$config") --set teacher_ckpt=$tmp/g/final.safetensors"
  kd="$kd --set model.kd_cfg.adapter=true --set model.bbox_head.feat_channels=8 --set model.kd_cfg.reused_teacher_head_idx=1"
  kd="$kd --set optim_wrapper.clip_grad.max_norm=0.5"
  CROSSKD_GUARD_DEVICE_MEMORY=1 run 1 "$tmp/kd" $kd --set train_cfg.max_epochs=1 > "$tmp/log.kd" 2>&1 ||
    { cat "$tmp/log.kd"; fail "guarded CrossKD run"; }
  CROSSKD_GUARD_DEVICE_MEMORY=1 run 1 "$tmp/kd" $kd --set train_cfg.max_epochs=2 --set resume=auto > "$tmp/log.kd2" 2>&1 ||
    { cat "$tmp/log.kd2"; fail "guarded CrossKD resume"; }
  grep -q "resumed from" "$tmp/log.kd2" || { cat "$tmp/log.kd2"; fail "did not resume"; }
  grep -q "trainable 1x1 adapter" "$tmp/log.kd2" || fail "no adapter"
  echo ok ;;
loss_scale)
  ls="--set optim_wrapper.loss_scale=65536"
  run 2 "$tmp/p" > "$tmp/log.p" 2>&1 || { cat "$tmp/log.p"; fail "unscaled run"; }
  run 2 "$tmp/s" $ls > "$tmp/log.s" 2>&1 || { cat "$tmp/log.s"; fail "scaled run"; }
  grep -q "loss scale static 65536" "$tmp/log.s" || { cat "$tmp/log.s"; fail "no precision line"; }
  "$tool" compare "$tmp/p/checkpoints/iter_12.ckpt" "$tmp/s/checkpoints/iter_12.ckpt" 0 || fail "scaling changed the result"
  run 2 "$tmp/r" $ls --set train_cfg.max_epochs=1 > "$tmp/log.r" 2>&1 || { cat "$tmp/log.r"; fail "scaled run, 1 epoch"; }
  run 2 "$tmp/r" $ls --set resume=auto > "$tmp/log.r2" 2>&1 || { cat "$tmp/log.r2"; fail "scaled resume"; }
  grep -q "resumed from" "$tmp/log.r2" || { cat "$tmp/log.r2"; fail "did not resume"; }
  "$tool" compare "$tmp/s/checkpoints/iter_12.ckpt" "$tmp/r/checkpoints/iter_12.ckpt" 0 || fail "scaled resume differs"
  kd="--set teacher_config=$(basename "$config") --set teacher_ckpt=$tmp/p/final.safetensors --set train_cfg.max_epochs=1"
  kd="$kd --set model.kd_cfg.reused_teacher_head_idx=1"
  for m in "pred_mimic" "pkd --set model.kd_cfg.loss_feat_kd.loss_weight=2" "rm_pfi" \
           "crosskd --set model.kd_cfg.adapter=true --set model.bbox_head.feat_channels=8"; do
    name=${m%% *}
    run 1 "$tmp/$name.p" $kd --set model.kd_cfg.method=$m > "$tmp/log.$name" 2>&1 || { cat "$tmp/log.$name"; fail "$name"; }
    run 1 "$tmp/$name.s" $kd --set model.kd_cfg.method=$m $ls > "$tmp/log.$name.s" 2>&1 || { cat "$tmp/log.$name.s"; fail "$name scaled"; }
    "$tool" compare "$tmp/$name.p/checkpoints/iter_8.ckpt" "$tmp/$name.s/checkpoints/iter_8.ckpt" 0 ||
      fail "$name: scaling changed the result"
  done
  run 1 "$tmp/amp" --set optim_wrapper.type=AmpOptimWrapper > "$tmp/log.amp" 2>&1 && fail "AmpOptimWrapper accepted on the CPU"
  grep -q "AmpOptimWrapper needs device: cuda" "$tmp/log.amp" || { cat "$tmp/log.amp"; fail "no clear AmpOptimWrapper error"; }
  echo ok ;;
crosskd)
  run 1 "$tmp/teacher" --set train_cfg.max_epochs=1 > "$tmp/log.t" 2>&1 || { cat "$tmp/log.t"; fail "teacher run"; }
  tw="$tmp/teacher/final.safetensors"
  sum=$(sha256sum "$tw")
  kd="--set model.kd_cfg.method=crosskd --set teacher_config=$(basename "$config") --set teacher_ckpt=$tw"
  for idx in 0 1; do
    run 2 "$tmp/kd$idx" $kd --set model.kd_cfg.reused_teacher_head_idx=$idx --set model.kd_cfg.log_conflict_ratio=true \
      > "$tmp/log.kd$idx" 2>&1 || { cat "$tmp/log.kd$idx"; fail "CrossKD run, idx $idx"; }
    for want in loss_cls_kd loss_reg_kd conflict_ratio; do
      grep -q "\"$want\"" "$tmp/kd$idx/logs/scalars.jsonl" || { cat "$tmp/log.kd$idx"; fail "idx $idx: $want not logged"; }
    done
    grep -q "loss_cls_kd: [0-9]" "$tmp/log.kd$idx" || fail "idx $idx: no loss_cls_kd in the text log"
    grep -q "distillation: CrossKD" "$tmp/log.kd$idx" || fail "idx $idx: no distillation line"
    "$tool" verify "$tmp/kd$idx/checkpoints" || fail "idx $idx: checkpoints"
  done
  # a student head half as wide as the teacher's, through the trainable 1x1 adapter: it is
  # checkpointed with the student and restored on resume
  ad="--set model.kd_cfg.adapter=true --set model.bbox_head.feat_channels=8 --set model.kd_cfg.reused_teacher_head_idx=1"
  run 2 "$tmp/kdad" $kd $ad > "$tmp/log.ad" 2>&1 || { cat "$tmp/log.ad"; fail "CrossKD with the adapter"; }
  grep -q "trainable 1x1 adapter" "$tmp/log.ad" || fail "no adapter line"
  run 2 "$tmp/kdad" $kd $ad --set train_cfg.max_epochs=4 --set resume=auto > "$tmp/log.ad2" 2>&1 ||
    { cat "$tmp/log.ad2"; fail "resume with the adapter"; }
  grep -q "resumed from" "$tmp/log.ad2" || { cat "$tmp/log.ad2"; fail "did not resume with the adapter"; }
  [ "$(sha256sum "$tw")" = "$sum" ] || fail "the teacher's weights changed"
  run 1 "$tmp/kdx" $kd --set model.kd_cfg.reused_teacher_head_idx=1 --set teacher_ckpt="$tmp/missing.safetensors" \
    > "$tmp/log.x" 2>&1 && fail "a missing teacher checkpoint was accepted"
  grep -q "missing.safetensors" "$tmp/log.x" || { cat "$tmp/log.x"; fail "the error does not name the teacher file"; }
  echo ok ;;
*) echo "unknown case"; exit 2 ;;
esac
