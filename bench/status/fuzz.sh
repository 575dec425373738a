#!/usr/bin/env bash
# bench/status/fuzz.sh — libFuzzer run of the status request parser (issue #9):
# tests/integration/status/fuzz_status_proto.c built with clang (-fsanitize=fuzzer,address,
# undefined) in its own build folder, run for SECONDS from a corpus of the protocol's
# requests. Exits non-zero when the fuzzer finds a crash, a sanitizer report or a failed
# property (the reproducer is left in the build folder as crash-*).
#
#   bash bench/status/fuzz.sh [SECONDS] [BUILD_DIR]        (defaults: 60 build-fuzz)
#
# Needs clang and its runtime libraries (Debian: apt-get install clang libclang-rt-14-dev).
set -euo pipefail
seconds=${1:-60} build=${2:-build-fuzz}
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
command -v clang >/dev/null || { echo "fuzz.sh: clang not found (apt-get install clang libclang-rt-14-dev)"; exit 2; }
[ -f "$build/build.ninja" ] || CC=clang meson setup "$build" -Dwerror=true >/dev/null
target=tests/integration/status/fuzz_status_proto
ninja -C "$build" "$target" >/dev/null
[ -x "$build/$target" ] || { echo "fuzz.sh: $build/$target not built: does clang link -fsanitize=fuzzer?"; exit 2; }
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
i=0
for req in 'status\n' 'status --json\n' 'checkpoint\n' 'stop --json\n' 'pause\n' 'resume\n' 'metrics\n' \
           'config --json\n' 'ping\n' 'AUTH 0123456789abcdef\nstatus\n' 'STATUS\r\n' ' status\t--json \n' \
           'GET /metrics HTTP/1.1\r\n' 'status --yaml\n'; do
  printf "$req" > "$corpus/seed$((i++))"
done
cd "$build"
echo "fuzzing the status request parser for $seconds s ($(date -u '+%Y-%m-%d %H:%M UTC'))"
set +e
"./$target" -max_total_time="$seconds" -max_len=2048 -timeout=5 -print_final_stats=1 "$corpus" > fuzz.log 2>&1
rc=$?
set -e
grep -E "^#[0-9]+.*DONE|^Done|stat::number_of_executed_units|stat::peak_rss|ERROR|SUMMARY|crash-" fuzz.log || tail -20 fuzz.log
[ "$rc" -eq 0 ] && echo "no crash, sanitizer report or failed property" || echo "fuzz.sh: the fuzzer failed (status $rc)"
exit "$rc"
