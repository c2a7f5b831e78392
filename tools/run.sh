#!/usr/bin/env bash
# The main job: installs what is missing, builds attnscope for this machine's platform, runs the
# self-check, and where a GPU is present the accuracy suite and the benchmarks, writing results
# under results/<gpu-model>/ (or $ATTNSCOPE_RESULTS).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
preset=$(bash tools/preset.sh)
cmake --preset "$preset"
cmake --build --preset "$preset"
bin="build-$preset"
[[ "$preset" == default ]] && bin=build

"$bin/tools/attnscope" selfcheck --json "$bin/selfcheck.json"
if ! "$bin/tools/attnscope" gpu-name >/dev/null 2>&1; then
  echo "run: no GPU available; the self-check above is the whole job on this machine"
  exit 0
fi
gpu=$("$bin/tools/attnscope" gpu-name)
out="${ATTNSCOPE_RESULTS:-results/$gpu}"
mkdir -p "$out"
out=$(cd "$out" && pwd)
echo "run: accuracy suite on $gpu -> $out"
rm -f "$out/accuracy.jsonl"
start=$(date +%s)
ATTNSCOPE_ACCURACY_JSONL="$out/accuracy.jsonl" "$bin/accuracy/accuracy_suite" \
  --gtest_brief=1 2>&1 | tee "$out/accuracy.log" || true
echo "accuracy suite wall time: $(( $(date +%s) - start )) s" | tee -a "$out/accuracy.log"
python3 tools/summarize_accuracy.py "$out/accuracy.jsonl" > "$out/accuracy_summary.md"
cp "$bin/selfcheck.json" "$out/selfcheck.json"

echo "run: benchmarks (${ATTNSCOPE_BENCH_SET:-default} set) -> $out/bench.json"
"$bin/bench/bench_attention" --benchmark_out="$out/bench.json" --benchmark_out_format=json \
  2>&1 | tee "$out/bench.log"
peers=()
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  echo "run: PyTorch peers on the same shapes -> $out/peers.json"
  python3 bench/peers/torch_sdpa.py --shapes-from "$out/bench.json" --out "$out/peers.json" \
    2>&1 | tee "$out/peers.log"
  peers=(--peers "$out/peers.json")
else
  echo "run: PyTorch with a GPU not found; no peers in this run"
fi
python3 tools/bench_report.py "$out/bench.json" "${peers[@]}" --accuracy "$out/accuracy.jsonl" \
  --out "$out/bench_report.md"
if "$bin/tools/attnscope" report "$out"; then
  echo "run: plots and report.md in $out"
else
  echo "run: no plots (attnscope report needs python3 with matplotlib)"
fi
echo "run: done; results in $out"
