#!/usr/bin/env bash
# run-default.sh — the README's main-job command: install, build, and run crosskd-worker on
# its embedded default configuration (CPU, one machine, a dataset it generates).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
bash deploy/install-deps.sh
bash deploy/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec ./build/tools/crosskd-worker "$@"
