#!/usr/bin/env bash
# attnscope report on the committed H200 results: each plot and report.md written and non-empty.
set -uo pipefail
bin="$1"; out="$2"; py="${3:-python3}"
if ! "$py" -c "import matplotlib" 2>/dev/null; then
  echo "report_cli: Skipped"
  echo "matplotlib is not installed for $py (Debian: apt-get install python3-matplotlib)"
  exit 77
fi
rm -rf "$out"; mkdir -p "$out"
"$bin" report results/nvidia-h200 --out "$out" --python "$py" || { echo "report_cli_test: attnscope report failed"; exit 1; }
for f in accuracy_vs_window.png bandwidth.png fused_vs_unfused.png tuning.png report.md; do
  [[ -s "$out/$f" ]] || { echo "report_cli_test: $f missing or empty"; exit 1; }
done
grep -q '!\[bandwidth.png\](bandwidth.png)' "$out/report.md" || { echo "report_cli_test: report.md does not link the plots"; exit 1; }
"$bin" report results/no-such-gpu >/dev/null 2>&1; rc=$?
[[ $rc == 2 ]] || { echo "report_cli_test: a missing folder gave exit $rc, expected 2"; exit 1; }
echo "report_cli_test: ok"
