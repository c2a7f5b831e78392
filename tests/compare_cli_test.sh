#!/usr/bin/env bash
# attnscope compare end to end on the committed H200 results.
set -uo pipefail
bin="$1"
r=results/nvidia-h200
fail() { echo "compare_cli_test: $*" >&2; exit 1; }
out=$("$bin" compare "$r/bench.json" "$r/bench.json"); rc=$?
[[ $rc == 0 ]] || fail "a run against itself: exit $rc"
grep -q "; 0 regressions" <<<"$out" || fail "a run against itself: $out"
out=$("$bin" compare "$r/accuracy.jsonl" "$r/accuracy.jsonl"); rc=$?
[[ $rc == 0 ]] || fail "accuracy against itself: exit $rc"
grep -q "^compare: 146 cases: 146 same; 0 regressions" <<<"$out" || fail "accuracy against itself: $out"
"$bin" compare "$r/bench.json" "$r/accuracy.jsonl" >/dev/null 2>&1; rc=$?
[[ $rc == 2 ]] || fail "mixed kinds: exit $rc, expected 2"
"$bin" compare "$r/bench.json" "$r/no-such-file.json" >/dev/null 2>&1; rc=$?
[[ $rc == 2 ]] || fail "missing file: exit $rc, expected 2"
"$bin" compare --threshold=abc "$r/bench.json" "$r/bench.json" >/dev/null 2>&1; rc=$?
[[ $rc == 2 ]] || fail "malformed option: exit $rc, expected 2"
# The peers' file against attnscope's: different benchmarks, reported as only in one file.
out=$("$bin" compare "$r/bench.json" "$r/peers.json"); rc=$?
[[ $rc == 0 ]] || fail "bench against peers: exit $rc"
grep -q "only_new" <<<"$out" || fail "bench against peers: no only_new rows"
echo "compare_cli_test: ok"
