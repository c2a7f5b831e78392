#!/usr/bin/env bash
# tools/trace_writer.py's files read and judged by `attnscope trace check`: the correct point
# passes in both forms, and the point whose layer offset was left out fails with kv_layer:0.
# Usage: trace_writer_test.sh PYTHON ATTNSCOPE SCRATCH_DIR (from the source root)
set -u
py="$1"
cli="$2"
dir="$3"
if ! "$py" -c "import numpy" 2>/dev/null; then
  echo "trace_writer_python: Skipped"
  echo "numpy is not installed for $py (Debian: apt-get install python3-numpy)"
  exit 77
fi
rm -rf "$dir" && mkdir -p "$dir" || exit 1
"$py" tools/trace_writer.py --self-test "$dir" || exit 1
"$cli" trace check "$dir/correct.safetensors" "$dir/correct_npy" || { echo "FAIL: the correct point did not pass"; exit 1; }
out="$("$cli" trace check "$dir/layer0.safetensors" "$dir/layer0_npy")"
rc=$?
echo "$out"
[[ $rc -eq 1 ]] || { echo "FAIL: expected exit status 1, got $rc"; exit 1; }
[[ "$(grep -c 'diagnosis: kv_layer:0' <<<"$out")" -eq 2 ]] || { echo "FAIL: kv_layer:0 not named for both forms"; exit 1; }
echo "trace_writer.py: both forms read; correct point within budget, layer-0 point diagnosed kv_layer:0"
