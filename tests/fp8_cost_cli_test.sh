#!/usr/bin/env bash
# attnscope fp8-cost: one small row written as JSON with every field, the measurement within four
# of the prediction's relative standard deviations; a bad format and an unwritable file exit 2.
set -uo pipefail
att="$1"; out="$2"
fail() { echo "fp8_cost_cli_test: $*" >&2; exit 1; }
rm -rf "$out"; mkdir -p "$out"
"$att" fp8-cost --formats e4m3 --scales token --windows 256 --distributions normal \
  --json "$out/cost.json" > "$out/cost.txt" || fail "exit $?: $(tail -3 "$out/cost.txt")"
grep -q "^e4m3 *token *256 normal" "$out/cost.txt" || fail "no table row: $(cat "$out/cost.txt")"
python3 - "$out/cost.json" <<'PY' || fail "the JSON row"
import json, sys
rows = json.load(open(sys.argv[1]))
assert len(rows) == 1, rows
r = rows[0]
for k in ("format", "scale", "window", "distribution", "measured_rel_l2", "predicted_rel_l2",
          "predicted_relative_sd", "first_order_rel_l2", "prediction_samples", "measured_by"):
    assert k in r, k
assert (r["format"], r["scale"], r["window"], r["distribution"]) == ("e4m3", "token", 256, "normal"), r
m, p, sd = r["measured_rel_l2"], r["predicted_rel_l2"], r["predicted_relative_sd"]
assert 0 < m and 0 < p and 0 < sd, r
assert abs(m / p - 1) <= 4 * sd, r
PY
"$att" fp8-cost --formats e3m4 > /dev/null 2>&1
[[ $? == 2 ]] || fail "an unknown format did not exit 2"
"$att" fp8-cost --windows 64 --json /no/such/dir/c.json > /dev/null 2> "$out/err.txt"
[[ $? == 2 ]] || fail "an unwritable --json did not exit 2"
grep -q "cannot write" "$out/err.txt" || fail "the unwritable file is not named: $(cat "$out/err.txt")"
"$att" fp8-cost --windows 64 --impl no.such > /dev/null 2> "$out/err.txt"
[[ $? == 2 ]] || fail "an unknown --impl did not exit 2"
grep -q "no.such" "$out/err.txt" || fail "the unknown implementation is not named: $(cat "$out/err.txt")"
# A kernel measured the same way: on a GPU its row, else a clear refusal.
"$att" fp8-cost --formats e5m2 --scales head --windows 512 --distributions normal \
  --impl attnscope.fused --json "$out/kernel.json" > "$out/kernel.txt" 2> "$out/err.txt"
rc=$?
if [[ $rc == 2 ]]; then
  grep -q "needs a GPU" "$out/err.txt" || fail "--impl exit 2 without the reason: $(cat "$out/err.txt")"
  echo "fp8_cost_cli_test: --impl not run (no GPU: $(cat "$out/err.txt"))"
else
  [[ $rc == 0 ]] || fail "--impl exit $rc: $(cat "$out/err.txt")"
  python3 - "$out/kernel.json" <<'PY' || fail "the kernel's JSON row"
import json, sys
r = json.load(open(sys.argv[1]))[0]
for k in ("measured_rel_l2", "fp64_measured_rel_l2", "kernel_vs_dequantized_rel_l2",
          "implementation", "gpu"):
    assert k in r, k
m, p, sd = r["measured_rel_l2"], r["predicted_rel_l2"], r["predicted_relative_sd"]
assert abs(m / p - 1) <= 4 * sd, r
# The kernel's own error (fp32 accumulation, fp16 output) is far below the format's.
assert r["kernel_vs_dequantized_rel_l2"] < 0.05 * r["fp64_measured_rel_l2"], r
PY
fi
echo "fp8_cost_cli_test: ok"
