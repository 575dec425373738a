#!/usr/bin/env bash
# run-tests.sh — the README's test command: install dependencies, build, run every test,
# and end with the plain line "N passed, N failed[, N skipped]" counted from meson's
# per-test results (build/meson-logs/testlog.json).
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
bash deploy/install-deps.sh || exit 1
bash deploy/build.sh || exit 1

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
rm -f build/meson-logs/testlog.json
meson test -C build --num-processes "$(nproc)" --print-errorlogs "$@"
rc=$?

log=build/meson-logs/testlog.json
count() { grep -c "\"result\": \"$1\"" "$log" 2>/dev/null || true; }
if [ -f "$log" ]; then
  passed=$(( $(count OK) + $(count EXPECTEDFAIL) ))
  failed=$(( $(count FAIL) + $(count TIMEOUT) + $(count ERROR) + $(count UNEXPECTEDPASS) ))
  skipped=$(count SKIP)
else
  passed=0 failed=1 skipped=0
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
