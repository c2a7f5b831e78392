#!/usr/bin/env bash
# Runs the fault-injection proof on a GPU machine and writes, under OUT (default .):
#   fault_injection.json  every mutant's class, path, cases run and failed, caught
#   false_alarms.json     correct kernels on N random problems under the default budgets
#   fault_injection.log   progress of every run; racecheck_*.txt the sanitizer's reports
# Usage: tests/fault_injection/run.sh [--mutants-only | --false-alarms-only] [OUT] [N] [SEED]
# Needs a build of the cuda (or rocm) preset with the fault_injection target.
set -uo pipefail
mode=all
case "${1:-}" in
  --mutants-only) mode=mutants; shift ;;
  --false-alarms-only) mode=false_alarms; shift ;;
esac
out="${1:-.}"
n="${2:-1000}"
seed="${3:-20261130}"
cd "$(dirname "$0")/../.."
preset=$(bash tools/preset.sh)
bin="build-$preset"
fi="$bin/tests/fault_injection"
[[ -x "$fi" ]] || { echo "run.sh: no $fi; build the $preset preset first" >&2; exit 2; }
mkdir -p "$out"
log="$out/fault_injection.log"
status=0

if [[ "$mode" != false_alarms ]]; then
  parts=()
  scratch="$(mktemp -d)"
  # One process per mutant: a fault that corrupts the device context cannot spill into the next.
  for cls in kv_layer_offset gqa_head_map first_key_dropped key_before_window scale_missing \
             scale_twice no_max_shift block_table_ignored split_dropped position_beyond_seq_len \
             missing_barrier; do
    for impl in "$cls.fused" "$cls.split_kv" "${cls}_stages.unfused"; do
      [[ "$cls" == split_dropped && "$impl" != *.split_kv ]] && continue
      "$fi" --mutants --mutant "$impl" --out "$scratch/$impl.json" 2>&1 | tee -a "$log"
      if ! python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])) else 1)' "$scratch/$impl.json"; then
        echo "run.sh: $impl wrote no result" | tee -a "$log"
        status=1
      fi
      parts+=("$scratch/$impl.json")
    done
  done
  # The race of the missing-barrier mutants, and the same cases on attnscope's correct kernels.
  compute-sanitizer --tool racecheck --print-limit 100000 "$fi" --mutants --classes missing_barrier --max-window 64 \
    --out "$scratch/race.json" >"$out/racecheck_mutant.txt" 2>&1
  compute-sanitizer --tool racecheck --print-limit 100000 "$bin/accuracy/accuracy_suite" --attnscope_jsonl="$scratch/r.jsonl" \
    --gtest_filter='*_w17_*:*_w64_*' >"$out/racecheck_correct.txt" 2>&1
  python3 tests/fault_injection/merge.py "$out/fault_injection.json" "$out/racecheck_mutant.txt" \
    "$out/racecheck_correct.txt" "${parts[@]}" 2>&1 | tee -a "$log" || status=1
fi
if [[ "$mode" != mutants ]]; then
  "$fi" --false-alarms "$n" --seed "$seed" --out "$out/false_alarms.json" 2>&1 | tee -a "$log" || status=1
fi
exit $status
