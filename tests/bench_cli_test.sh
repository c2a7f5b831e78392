#!/usr/bin/env bash
# attnscope bench end to end on the quick set, one repetition: every listed benchmark is in the
# JSON file and the closing line counts them (without a GPU each one is reported as not run,
# with the reason); the console copy goes to --log; usage errors exit 2.
set -uo pipefail
bin="$1"; out="$2"
fail() { echo "bench_cli_test: $*" >&2; exit 1; }
rm -rf "$out"; mkdir -p "$out"
"$bin" bench --set quick --repetitions 1 --out "$out/quick.json" --log "$out/quick.log" > "$out/quick.txt" 2>&1; rc=$?
[[ $rc == 0 ]] || fail "quick set: exit $rc: $(tail -5 "$out/quick.txt")"
n=$(python3 -c "import json,sys; print(len({b['run_name'] for b in json.load(open(sys.argv[1]))['benchmarks']}))" "$out/quick.json") ||
  fail "quick.json unreadable"
[[ $n -gt 0 ]] || fail "no benchmark in quick.json"
grep -q "^bench: [0-9]* timed, [0-9]* not run (reasons above) of $n benchmarks; results in $out/quick.json" "$out/quick.txt" ||
  fail "closing line does not count the $n benchmarks: $(tail -1 "$out/quick.txt")"
grep -q "/manual_time" "$out/quick.log" || fail "--log has no benchmark lines"
"$bin" bench --set bogus >/dev/null 2>&1; [[ $? == 2 ]] || fail "--set bogus should be a usage error"
"$bin" bench --repetitions 0 >/dev/null 2>&1; [[ $? == 2 ]] || fail "--repetitions 0 should be a usage error"
"$bin" bench --set quick -- --benchmark_no_such_flag >/dev/null 2>&1; [[ $? == 2 ]] || fail "an unknown bench_attention flag should exit 2"
"$bin" bench --set quick --filter 'no_such_benchmark' >/dev/null 2>&1; [[ $? == 2 ]] || fail "a filter matching nothing should exit 2"
"$bin" bench --set quick --out /no/such/dir/b.json >/dev/null 2>&1; [[ $? == 2 ]] || fail "an unwritable --out should exit 2"
"$bin" bench --binary /no/such/bench >/dev/null 2>&1; [[ $? == 2 ]] || fail "a missing binary should exit 2"
# bench_attention's own flags and environment: malformed or out-of-range values are refused
# before any GPU work, naming the option.
bb="$(dirname "$bin")/../bench/bench_attention"
for bad in --attnscope_flush_mib=-5 --attnscope_flush_mib=1abc --attnscope_timeout_s=-1 \
           --attnscope_timeout_s=abc --attnscope_timeout_s=0 --attnscope_hot=maybe --attnscope_set=bogus \
           --attnscope_flush=clean; do
  "$bb" "$bad" > "$out/bad.txt" 2>&1; rc=$?
  [[ $rc == 2 ]] || fail "bench_attention $bad: exit $rc, expected 2"
  grep -q -- "${bad%%=*}" "$out/bad.txt" || grep -q -- "set" "$out/bad.txt" || fail "bench_attention $bad: the error does not name the option: $(cat "$out/bad.txt")"
done
ATTNSCOPE_BENCH_HOT=maybe "$bb" > "$out/bad.txt" 2>&1; [[ $? == 2 ]] || fail "ATTNSCOPE_BENCH_HOT=maybe should exit 2"
grep -q ATTNSCOPE_BENCH_HOT "$out/bad.txt" || fail "ATTNSCOPE_BENCH_HOT=maybe: the error does not name it"
ATTNSCOPE_BENCH_FLUSH=memset "$bb" > "$out/bad.txt" 2>&1; [[ $? == 2 ]] || fail "ATTNSCOPE_BENCH_FLUSH=memset should exit 2"
grep -q "ATTNSCOPE_BENCH_FLUSH: 'memset' is not one of read, write" "$out/bad.txt" || fail "ATTNSCOPE_BENCH_FLUSH=memset: the error does not name it: $(cat "$out/bad.txt")"
echo "bench_cli_test: ok ($n benchmarks)"
