#!/usr/bin/env python3
"""Merges the fault-injection runs into results/<gpu>/fault_injection.json.

usage: merge.py OUT.json RACECHECK_MUTANT.txt RACECHECK_CORRECT.txt CLASS.json...

Each CLASS.json is one fault_injection --mutants run (a list of entries). A mutant is caught by
the gate when any of its cases fails. The missing-barrier mutants are also run under
compute-sanitizer racecheck: one whose values stayed within budget is still caught when
racecheck reports a race in its own kernel (the report names it) and no hazard in attnscope's
correct kernels on the same cases (RACECHECK_CORRECT.txt).
"""
import json
import re
import sys


def race_reports(path):
    """Hazards racecheck reported, in total and per path (from the kernel each report names)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    found = re.findall(r"RACECHECK SUMMARY: (\d+) hazards? displayed", text)
    if not found:
        sys.exit(f"merge.py: {path} has no RACECHECK SUMMARY line")
    per_path = {"fused": 0, "split_kv": 0, "unfused": 0}
    for line in text.splitlines():
        if "Race reported between" not in line:
            continue
        if "decode_kernel<" in line:
            per_path["split_kv" if ", (bool)1," in line else "fused"] += 1
        elif any(k in line for k in ("qk_kernel<", "softmax_kernel<", "pv_kernel<")):
            per_path["unfused"] += 1
    return sum(int(n) for n in found), per_path


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    out, race_mutant, race_correct, parts = argv[0], argv[1], argv[2], argv[3:]
    entries = []
    for p in parts:
        with open(p, encoding="utf-8") as f:
            entries.extend(json.load(f))
    _, mutant_reports = race_reports(race_mutant)
    correct_total, _ = race_reports(race_correct)
    for e in entries:
        gate = e["cases_failed"] > 0
        e["caught"] = gate
        e["detector"] = "accuracy gate"
        if e["class"] == "missing_barrier":
            reports = mutant_reports[e["path"]]
            e["racecheck_reports"] = reports
            e["racecheck_hazards_correct_kernels"] = correct_total
            by_race = reports > 0 and correct_total == 0
            e["caught"] = gate or by_race
            e["detector"] = ("accuracy gate and compute-sanitizer racecheck" if gate and by_race
                             else "compute-sanitizer racecheck" if by_race else "accuracy gate")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(entries, f, indent=2)
        f.write("\n")
    missed = [f'{e["class"]} ({e["path"]})' for e in entries if not e["caught"]]
    print(f"{len(entries)} mutants, {len(entries) - len(missed)} caught"
          + (f"; missed: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
