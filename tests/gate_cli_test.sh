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
"$bin" gate --window 3 >/dev/null 2>&1; [[ $? == 2 ]] || fail "a filter matching no case should exit 2"
"$bin" gate --shards 0 >/dev/null 2>&1; [[ $? == 2 ]] || fail "--shards 0 should be a usage error"
"$bin" gate --log /no/such/dir/gate.log >/dev/null 2>&1; [[ $? == 2 ]] || fail "an unwritable --log should exit 2"
"$bin" gate --path bogus >/dev/null 2>&1; [[ $? == 2 ]] || fail "--path bogus should be a usage error"
"$bin" gate --suite /no/such/suite >/dev/null 2>&1; [[ $? == 2 ]] || fail "a missing suite should exit 2"
# Sharding variables inherited from the caller do not cut the run short.
GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=0 "$bin" gate --window 1 --quiet > "$out/inherited.txt"; rc=$?
[[ $rc == 0 ]] || fail "inherited sharding variables: exit $rc"
[[ "$(tail -1 "$out/inherited.txt" | sed 's/ in [0-9]* s.*//')" == "$line1" ]] ||
  fail "inherited sharding variables changed the run: $(tail -1 "$out/inherited.txt")"
# A suite that dies while writing a record: the gate says the run did not complete (exit 2) and
# writes no records file that looks complete.
cat > "$out/dying_suite" <<'SH'
#!/usr/bin/env bash
for a in "$@"; do
  [[ "$a" == --gtest_list_tests ]] && { printf 'Accuracy.\n  a_fused_acc_fp32_w1_x\n  b_fused_acc_fp32_w1_x\n'; exit 0; }
  [[ "$a" == --attnscope_jsonl=* ]] && jsonl="${a#--attnscope_jsonl=}"
done
printf '{"case":"a_fused_acc_fp32_w1_x","pass":tr' > "$jsonl"
kill -9 $$
SH
chmod +x "$out/dying_suite"
"$bin" gate --suite "$out/dying_suite" --jsonl "$out/dying.jsonl" > "$out/dying.txt" 2>&1; rc=$?
[[ $rc == 2 ]] || fail "a suite that died mid-record: exit $rc, expected 2: $(cat "$out/dying.txt")"
grep -q "did not complete" "$out/dying.txt" || fail "a suite that died mid-record is not reported: $(cat "$out/dying.txt")"
echo "gate_cli_test: ok ($n cases)"
