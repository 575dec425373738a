#!/usr/bin/env bash
# build.sh — configure (once) and build crosskd into ./build with warnings as errors.
# Extra arguments go to 'meson setup' on the first configure (e.g. -Db_sanitize=address).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
if [ ! -f build/build.ninja ]; then
  meson setup build -Dwerror=true "$@" >build-setup.log 2>&1 || { cat build-setup.log >&2; exit 1; }
  rm -f build-setup.log
fi
ninja -C build >/dev/null || ninja -C build
