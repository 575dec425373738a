#!/usr/bin/env bash
# config_case.sh WORKER FIXTURES CASE — one config error class: run crosskd-worker on a real
# malformed file and check the exit code and the `file:line:column: message` it prints.
set -u
worker=$1 fix=$2 case=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

expect_fail() { # FILE EXPECTED-SUBSTRING [ARGS...]
  local file=$1 want=$2; shift 2
  out=$("$worker" "$file" "$@" 2>&1); rc=$?
  if [ "$rc" -ne 1 ]; then echo "FAIL: exit code $rc, expected 1; output: $out"; exit 1; fi
  case "$out" in
    *"$want"*) echo "ok: $out" ;;
    *) echo "FAIL: output does not contain '$want': $out"; exit 1 ;;
  esac
}

case "$case" in
  tabs)          expect_fail "$fix/tabs.yaml" "tabs.yaml:2:1: invalid YAML: found character that cannot start any token" ;;
  wrong_type)    expect_fail "$fix/wrong_type.yaml" "wrong_type.yaml:4:12: model.backbone.depth: expected an integer, got 'fifty'" ;;
  unknown_key)   expect_fail "$fix/unknown_key.yaml" "unknown_key.yaml:3:5: unknown key 'model.backbone.dept' (did you mean 'model.backbone.depth'?)" ;;
  out_of_range)  expect_fail "$fix/out_of_range.yaml" "out_of_range.yaml:3:9: optim_wrapper.optimizer.lr: 50 is out of range [0, 10]" ;;
  missing_base)  expect_fail "$fix/missing_base.yaml" "missing_base.yaml:1:7: in base 'does_not_exist.yaml':" ;;
  cyclic_base)   expect_fail "$fix/cyclic_a.yaml" "cyclic base: the file includes itself" ;;
  empty)         expect_fail "$fix/empty.yaml" "empty.yaml:1:1: empty config" ;;
  garbage)       expect_fail "$fix/garbage.bin" "garbage.bin:1:144: not a text file (NUL byte)" ;;
  utf16)         expect_fail "$fix/utf16.yaml" "utf16.yaml:1:3: not a text file (NUL byte)" ;;
  duplicate)     expect_fail "$fix/duplicate.yaml" "duplicate.yaml:4:14: duplicate key 'model.backbone.depth'" ;;
  list_length)   expect_fail "$fix/list_length.yaml" "list_length.yaml:3:12: train_pipeline.resize.scale: expected 2 elements, got 1" ;;
  list_for_scalar) expect_fail "$fix/list_for_scalar.yaml" "list_for_scalar.yaml:4:20: model.backbone.frozen_stages: expected an integer, got a list" ;;
  bad_choice)    expect_fail "$fix/bad_choice.yaml" "bad_choice.yaml:1:9: device: 'tpu' is not one of cpu|cuda" ;;
  not_mapping)   expect_fail "$fix/not_mapping.yaml" "not_mapping.yaml:1:1: the top level must be a mapping" ;;
  unterminated)  expect_fail "$fix/unterminated.yaml" "unterminated.yaml:2:1: invalid YAML: found unexpected end of stream" ;;
  missing_file)  expect_fail "$tmp/nope.yaml" "nope.yaml: cannot open: No such file or directory" ;;
  big_file)
    # 10 MB of valid-looking YAML: refused by size before parsing.
    yes 'randomness: {seed: 1}' | head -c 10485760 > "$tmp/big.yaml"
    expect_fail "$tmp/big.yaml" "big.yaml: larger than the 1048576-byte limit" ;;
  set_unknown)   expect_fail "$fix/base_ok.yaml" "--set: unknown key 'model.backbone.dpeth'" --set model.backbone.dpeth=50 ;;
  set_type)      expect_fail "$fix/base_ok.yaml" "model.backbone.depth: 49 is not one of 18|34|50|101" --set model.backbone.depth=49 ;;
  inherit)
    # base then child then --set, leaf by leaf.
    out=$("$worker" "$fix/child_ok.yaml" --set randomness.seed=5 --print-config) || { echo "FAIL: rc $?"; exit 1; }
    for want in "depth: 18" "lr: 0.02" "seed: 5" "momentum: 0.9"; do
      grep -qF -- "$want" <<<"$out" || { echo "FAIL: effective config lacks '$want'"; exit 1; }
    done
    echo ok ;;
  roundtrip)
    # The dump of the effective config loads back to the same config.
    "$worker" "$fix/child_ok.yaml" --print-config > "$tmp/dump.yaml" || exit 1
    "$worker" "$tmp/dump.yaml" --print-config > "$tmp/dump2.yaml" || { echo "FAIL: dump does not load"; exit 1; }
    cmp "$tmp/dump.yaml" "$tmp/dump2.yaml" || { echo "FAIL: dump differs after reload"; exit 1; }
    echo ok ;;
  cuda_no_gpu)
    # device: cuda where no GPU is visible (CUDA_VISIBLE_DEVICES= hides every GPU, so this
    # holds on GPU machines too): one error line naming the cause, exit 1, no training.
    # KD_CUDA_BUILT (from meson) says which of the two messages this build gives.
    if [ "${KD_CUDA_BUILT:-0}" = 1 ]; then want="device: cuda: no GPU is visible to this process ("
    else want='device: "cuda": this binary was built without CUDA'; fi
    out=$(CUDA_VISIBLE_DEVICES= "$worker" "$fix/base_ok.yaml" --set device=cuda --set work_dir="$tmp/w" 2>&1); rc=$?
    [ "$rc" -eq 1 ] || { echo "FAIL: exit code $rc, expected 1; output: $out"; exit 1; }
    grep -qF -- "$want" <<<"$out" || { echo "FAIL: output lacks '$want': $out"; exit 1; }
    [ "$(grep -c ERROR <<<"$out")" -eq 1 ] || { echo "FAIL: not exactly one error line: $out"; exit 1; }
    ! grep -q "Epoch(train)\|rank 0 of" <<<"$out" || { echo "FAIL: it went on: $out"; exit 1; }
    [ ! -e "$tmp/w/logs" ] || { echo "FAIL: a run directory was created"; exit 1; }
    echo "ok: $(grep ERROR <<<"$out")" ;;
  *) echo "unknown case $case"; exit 2 ;;
esac
