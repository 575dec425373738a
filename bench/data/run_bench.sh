#!/usr/bin/env bash
# run_bench.sh BUILD_DIR [PYTHON] — the data-path benchmarks of bench/README.md, "Data path":
#   1. a COCO-train-sized annotation file (crosskd-gen --annotations-only), parse + index
#      and cache reload (and jansson on the same file);
#   2. the image pipeline on 640x480 JPEGs, C next to OpenCV and PIL in the same run.
# PYTHON needs numpy, opencv-python-headless and pillow (default: python3).
set -euo pipefail
build=${1:?usage: run_bench.sh BUILD_DIR [PYTHON]}
py=${2:-python3}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== annotation file (COCO-train-sized) =="
"$build/tools/crosskd-gen" --annotations-only --out "$tmp/ann" --val 0
taskset -c 0 "$build/bench/data/bench_coco_index" "$tmp/ann/annotations/instances_train.json" 3
echo "== image pipeline, one core =="
taskset -c 0 "$build/bench/data/bench_pipeline" "$tmp/img" 64 5
taskset -c 0 "$py" "$here/bench_pipeline_ref.py" "$tmp/img" 5
echo "== loader threads vs a 50 ms step (batch 2, 1333x800) =="
"$build/bench/data/bench_loader" "$tmp/loader" 2 50 64
