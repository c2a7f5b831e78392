#!/usr/bin/env bash
# Builds attnscope for this machine's platform (tools/preset.sh) and runs every test: host
# tests always, the GPU accuracy suite where a GPU is present (elsewhere it skips, saying why).
# The last line counts the tests: "tests: N passed, N failed, N skipped" (tools/run_ctest.py).
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
counts=()
[[ -n "${ATTNSCOPE_TEST_COUNTS:-}" ]] && counts=(--counts "$ATTNSCOPE_TEST_COUNTS")
python3 tools/run_ctest.py "${counts[@]}" -- --preset "$preset"
