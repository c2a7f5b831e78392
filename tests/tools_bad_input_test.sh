#!/usr/bin/env bash
# Bad output paths of the tools: each refused with a clear error and a failing exit status, and
# no input lost.
set -uo pipefail
bin="$1"; py="$2"; out="$3"
fail() { echo "tools_bad_input_test: $*" >&2; exit 1; }
rm -rf "$out"; mkdir -p "$out"
# selfcheck: an unwritable --json fails before the work starts; a full device fails at the write.
start=$(date +%s)
"$bin" selfcheck --json /no/such/dir/self.json > "$out/a.txt" 2>&1; rc=$?
[[ $rc == 2 ]] || fail "selfcheck --json /no/such/dir: exit $rc"
grep -q "cannot write" "$out/a.txt" || fail "selfcheck --json /no/such/dir: $(cat "$out/a.txt")"
grep -q "Reference accuracy" "$out/a.txt" && fail "selfcheck did its work before finding the --json path unwritable"
if [[ -w /dev/full ]]; then
  "$bin" selfcheck --json /dev/full > "$out/b.txt" 2>&1; rc=$?
  [[ $rc == 2 ]] || fail "selfcheck --json /dev/full: exit $rc (the record was lost)"
  grep -q "failed" "$out/b.txt" || fail "selfcheck --json /dev/full: $(tail -2 "$out/b.txt")"
fi
# A path option given as "" is refused, not read as "none".
for args in "selfcheck --json" "gate --jsonl" "bench --out" "compare results/nvidia-h200/bench.json results/nvidia-h200/bench.json --json"; do
  # shellcheck disable=SC2086
  "$bin" $args "" > "$out/e.txt" 2>&1; rc=$?
  [[ $rc == 2 ]] || fail "$args \"\": exit $rc, expected 2"
  grep -q "an empty path" "$out/e.txt" || fail "$args \"\": $(cat "$out/e.txt")"
done
# bench_report.py and tune_report.py never write over an input.
cp results/nvidia-h200/bench.json "$out/bench.json"
sum=$(cksum < "$out/bench.json")
"$py" tools/bench_report.py "$out/bench.json" --out "$out/bench.json" > /dev/null 2> "$out/c.txt"
[[ $? != 0 ]] || fail "bench_report.py --out its own input succeeded"
[[ "$(cksum < "$out/bench.json")" == "$sum" ]] || fail "bench_report.py replaced its input"
ln -sf bench.json "$out/alias.json"
"$py" tools/bench_report.py "$out/bench.json" --out "$out/alias.json" > /dev/null 2>&1
[[ $? != 0 ]] || fail "bench_report.py --out a link to its input succeeded"
[[ "$(cksum < "$out/bench.json")" == "$sum" ]] || fail "bench_report.py replaced its input through a link"
"$py" tools/tune_report.py "$out/bench.json" results/nvidia-h200/tuning/accuracy_tune.jsonl --out "$out/bench.json" > /dev/null 2>&1
[[ $? != 0 ]] || fail "tune_report.py --out its own input succeeded"
[[ "$(cksum < "$out/bench.json")" == "$sum" ]] || fail "tune_report.py replaced its input"
# Inputs that are not what the scripts read: a clear error (exit 1), never a traceback.
echo '{}' > "$out/empty.json"
echo '{"benchmarks": 5}' > "$out/weird.json"
for args in "tools/bench_report.py $out/empty.json" "tools/bench_report.py $out/weird.json" \
            "tools/bench_report.py $out/no_such.json" "tools/summarize_accuracy.py $out/no_such.jsonl" \
            "tools/summarize_accuracy.py $out/empty.json"; do
  # shellcheck disable=SC2086
  "$py" $args > "$out/d.txt" 2>&1; rc=$?
  [[ $rc == 1 ]] || fail "$args: exit $rc, expected 1: $(tail -2 "$out/d.txt")"
  grep -q Traceback "$out/d.txt" && fail "$args: a traceback instead of an error: $(tail -2 "$out/d.txt")"
done
echo "tools_bad_input_test: ok"
