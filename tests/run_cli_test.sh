#!/usr/bin/env bash
# attnscope run: usage errors exit 2; without a GPU the job is the self-check and exits 0 saying
# so. With a GPU the whole job takes minutes, so this test checks only the usage errors there.
set -uo pipefail
bin="$1"; out="$2"
fail() { echo "run_cli_test: $*" >&2; exit 1; }
rm -rf "$out"; mkdir -p "$out"
"$bin" run --set bogus >/dev/null 2>&1; [[ $? == 2 ]] || fail "--set bogus should be a usage error"
"$bin" run --sweep bogus >/dev/null 2>&1; [[ $? == 2 ]] || fail "--sweep bogus should be a usage error"
"$bin" run --repetitions -1 >/dev/null 2>&1; [[ $? == 2 ]] || fail "--repetitions -1 should be a usage error"
if "$bin" gpu-name >/dev/null 2>&1; then
  echo "run_cli_test: ok (usage errors; a GPU is present, so the job itself is left to 'attnscope run')"
  exit 0
fi
"$bin" run --out "$out/results" > "$out/run.txt" 2>&1; rc=$?
[[ $rc == 0 ]] || fail "run without a GPU: exit $rc: $(tail -5 "$out/run.txt")"
grep -q "^run: no GPU available" "$out/run.txt" || fail "run without a GPU does not say so: $(tail -2 "$out/run.txt")"
grep -q "Reference accuracy" "$out/run.txt" || fail "run without a GPU did not run the self-check"
echo "run_cli_test: ok (no GPU: the self-check alone)"
