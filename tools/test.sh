#!/usr/bin/env bash
# Builds attnscope for this machine's platform (tools/preset.sh) and runs every test: host
# tests always, the GPU accuracy suite where a GPU is present (elsewhere it skips, saying why).
set -euo pipefail
cd "$(dirname "$0")/.."
preset=$(bash tools/preset.sh)
echo "test: preset $preset"
cmake --preset "$preset"
cmake --build --preset "$preset"
bin="build-$preset"
[[ "$preset" == default ]] && bin=build
if ! reason=$("$bin/tools/attnscope" gpu-name 2>&1); then
  echo "test: the GPU tests will skip: ${reason#attnscope: }"
fi
ctest --preset "$preset"
