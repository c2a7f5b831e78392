#!/usr/bin/env bash
# attnscope gate end to end: the window-1 cases of every path, as one run and as two shards on
# the same GPU (--shards 2; on a machine without a GPU every case skips; the plumbing, the merge
# and the counts are the same). The merged records and the JUnit report must list the same cases
# in the same order, with the same verdicts.
set -uo pipefail
bin="$1"; out="$2"
fail() { echo "gate_cli_test: $*" >&2; exit 1; }
rm -rf "$out"; mkdir -p "$out"
"$bin" gate --window 1 --quiet --jsonl "$out/one.jsonl" --junit "$out/one.xml" > "$out/one.txt"; rc=$?
[[ $rc == 0 ]] || fail "one run: exit $rc: $(cat "$out/one.txt")"
"$bin" gate --window 1 --quiet --shards 2 --jsonl "$out/two.jsonl" --junit "$out/two.xml" --log "$out/two.log" > "$out/two.txt"; rc=$?
[[ $rc == 0 ]] || fail "two shards: exit $rc: $(cat "$out/two.txt")"
line1=$(tail -1 "$out/one.txt" | sed 's/ in [0-9]* s.*//'); line2=$(tail -1 "$out/two.txt" | sed 's/ in [0-9]* s.*//')
[[ "$line1" == "$line2" ]] || fail "counts differ: '$line1' against '$line2'"
cmp -s <(sed 's/"seconds":[^,}]*//' "$out/one.jsonl") <(sed 's/"seconds":[^,}]*//' "$out/two.jsonl") ||
  fail "merged records differ from one run's"
diff <(grep -o '<testcase name="[^"]*"' "$out/one.xml") <(grep -o '<testcase name="[^"]*"' "$out/two.xml") >/dev/null ||
  fail "JUnit cases differ"
cmp -s "$out/two.txt" "$out/two.log" || fail "--log differs from what the gate printed"
n=$(grep -c '<testcase name=' "$out/one.xml")
[[ $n -gt 0 ]] || fail "no cases in the JUnit report"
grep -q "^gate: .* of $n cases" "$out/one.txt" || fail "closing line does not count $n cases: $(tail -1 "$out/one.txt")"
"$bin" gate --gpus 0 >/dev/null 2>&1; [[ $? == 2 ]] || fail "--gpus 0 should be a usage error"
"$bin" gate --shards 0 >/dev/null 2>&1; [[ $? == 2 ]] || fail "--shards 0 should be a usage error"
"$bin" gate --log /no/such/dir/gate.log >/dev/null 2>&1; [[ $? == 2 ]] || fail "an unwritable --log should exit 2"
"$bin" gate --path bogus >/dev/null 2>&1; [[ $? == 2 ]] || fail "--path bogus should be a usage error"
"$bin" gate --suite /no/such/suite >/dev/null 2>&1; [[ $? == 2 ]] || fail "a missing suite should exit 2"
echo "gate_cli_test: ok ($n cases)"
