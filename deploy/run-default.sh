#!/usr/bin/env bash
# run-default.sh — the README's main-job command: install, build, then the whole job on its
# embedded default (CPU, one machine, a dataset it generates):
#   1. generate the synthetic COCO-format dataset (once; cached in data/synth-default)
#   2. train the teacher, a larger GFL (once; cached in work_dirs/default-teacher)
#   3. train the student under `mpirun -np 2` (CrossKD from the teacher when distillation
#      is built; the plain GFL student otherwise), evaluate, and print both APs.
# Extra arguments are passed to the student's crosskd-worker (e.g. --set train_cfg.max_epochs=1).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
bash deploy/install-deps.sh
bash deploy/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
bin=build/tools
data=data/synth-default
teacher_dir=work_dirs/default-teacher
student_dir=work_dirs/default-student

step() { printf '\n==> %s\n' "$*"; }

if [ ! -f "$data/annotations/instances_val.json" ]; then
  step "generating the synthetic dataset in $data"
  mkdir -p data
  "$bin/crosskd-gen" --out "$data.tmp" --seed 0 --train 400 --val 100 --categories 8
  rm -rf "$data" && mv "$data.tmp" "$data"
else
  step "dataset: $data (cached)"
fi

ap_of() { # work dir -> bbox_mAP of its last evaluation
  grep '"bbox_mAP"' "$1/logs/scalars.jsonl" | tail -1 | sed 's/.*"bbox_mAP":\([^,}]*\).*/\1/'
}

if [ ! -f "$teacher_dir/final.safetensors" ]; then
  step "training the teacher (GFL, ResNet-18 layout at half width) in $teacher_dir"
  rm -rf "$teacher_dir"
  mpirun --oversubscribe -np 2 "$bin/crosskd-worker" conf/default/teacher.yaml \
    --set data_root="$data" --set work_dir="$teacher_dir"
else
  step "teacher: $teacher_dir/final.safetensors (cached)"
fi

step "training the student in $student_dir"
rm -rf "$student_dir"
mpirun --oversubscribe -np 2 "$bin/crosskd-worker" conf/default/student.yaml \
  --set data_root="$data" --set work_dir="$student_dir" \
  --set teacher_ckpt="$teacher_dir/final.safetensors" "$@"

step "result (COCO bbox mAP on $data/annotations/instances_val.json)"
printf 'teacher AP: %s\nstudent AP: %s\n' "$(ap_of "$teacher_dir")" "$(ap_of "$student_dir")"
