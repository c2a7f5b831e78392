#!/usr/bin/env bash
# The main job: installs what is missing, builds attnscope for this machine's platform, then runs
# `attnscope run`: the self-check, and where a GPU is present the accuracy gate, the benchmarks,
# the PyTorch peers, the report and the plots, writing results under results/<gpu-model>/ (or
# $ATTNSCOPE_RESULTS; $ATTNSCOPE_BENCH_SET picks the benchmark set).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
preset=$(bash tools/preset.sh)
cmake --preset "$preset"
cmake --build --preset "$preset"
bin="build-$preset"
[[ "$preset" == default ]] && bin=build

# The job itself is `attnscope run` (see `attnscope run --help`); arguments of this script go to it.
args=()
[[ -n "${ATTNSCOPE_RESULTS:-}" ]] && args+=(--out "$ATTNSCOPE_RESULTS")
[[ -n "${ATTNSCOPE_BENCH_SET:-}" ]] && args+=(--set "$ATTNSCOPE_BENCH_SET")
exec "$bin/tools/attnscope" run "${args[@]}" "$@"
