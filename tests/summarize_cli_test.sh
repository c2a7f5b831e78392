#!/usr/bin/env bash
# tools/summarize_accuracy.py on the committed H200 records, on a file holding two runs (refused,
# naming the case), and on a failing case whose metrics are NaN and Inf (reported, not a crash).
set -uo pipefail
py="$1"; out="$2"
fail() { echo "summarize_cli_test: $*" >&2; exit 1; }
rm -rf "$out"; mkdir -p "$out"
src=results/nvidia-h200/accuracy.jsonl
"$py" tools/summarize_accuracy.py "$src" > "$out/ok.md" || fail "the committed records do not summarize"
n=$(grep -c . "$src")
grep -q "^$n cases run, $n passed, 0 failed" "$out/ok.md" || fail "counts: $(sed -n 3p "$out/ok.md")"
{ cat "$src"; head -1 "$src"; } > "$out/two_runs.jsonl"
"$py" tools/summarize_accuracy.py "$out/two_runs.jsonl" > /dev/null 2> "$out/two_runs.err"
[[ $? == 1 ]] || fail "a file with a case recorded twice was accepted"
grep -q "recorded twice" "$out/two_runs.err" || fail "the duplicate is not named: $(cat "$out/two_runs.err")"
"$py" - "$src" "$out/nan.jsonl" <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
# A fused fp32-accumulation case, whose target fields (ulps and rel_l2 against the rounded
# reference) the summary compares too.
r = next(x for x in rs if x["path"] == "fused" and x["accumulation"] == "fp32" and x["output"] == "fp16")
r.update({"pass": False, "attn_out_rel_l2": "nan", "attn_out_max_abs": "inf", "attn_out_budget_ratio": "nan",
          "attn_out_nan_count": 3, "first_failing_stage": "fused (attn_out)",
          "max_ulp_vs_rounded_reference": "inf", "rel_l2_over_rounded": "nan"})
with open(sys.argv[2], "w") as f:
    for x in rs:
        f.write(json.dumps(x) + "\n")
PY
"$py" tools/summarize_accuracy.py "$out/nan.jsonl" > "$out/nan.md" 2> "$out/nan.err" || fail "NaN metrics crashed the summary: $(tail -3 "$out/nan.err")"
grep -q "^$n cases run, $((n - 1)) passed, 1 failed" "$out/nan.md" || fail "the NaN case is not counted as failed"
grep -q "| nan |" "$out/nan.md" || fail "the NaN error/budget is not shown"
grep -q "| inf | nan | no |" "$out/nan.md" || fail "the target row of the NaN case is not shown as missed"
echo "summarize_cli_test: ok"
