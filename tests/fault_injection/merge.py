#!/usr/bin/env python3
"""Merges the fault-injection runs into results/<gpu>/fault_injection.json.

usage: merge.py OUT.json RACECHECK_MUTANT.txt RACECHECK_CORRECT.txt CLASS.json...

Each CLASS.json is one fault_injection --mutants run (a list of entries). The missing-barrier
mutants are also run under compute-sanitizer racecheck: a mutant whose values stayed within
budget is still caught when racecheck reports hazards in it and none in attnscope's correct
kernels on the same cases (RACECHECK_CORRECT.txt).
"""
import json
import re
import sys


def hazards(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    found = re.findall(r"RACECHECK SUMMARY: (\d+) hazards? displayed", text)
    if not found:
        sys.exit(f"merge.py: {path} has no RACECHECK SUMMARY line")
    return sum(int(n) for n in found)


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    out, race_mutant, race_correct, parts = argv[0], argv[1], argv[2], argv[3:]
    entries = []
    for p in parts:
        with open(p, encoding="utf-8") as f:
            entries.extend(json.load(f))
    mutant_hazards, correct_hazards = hazards(race_mutant), hazards(race_correct)
    for e in entries:
        if e["class"] == "missing_barrier":
            e["racecheck_hazards"] = mutant_hazards
            e["racecheck_hazards_correct_kernels"] = correct_hazards
            by_race = mutant_hazards > 0 and correct_hazards == 0
            if not e["caught"] and by_race:
                e["detector"] = "compute-sanitizer racecheck"
            elif e["caught"] and by_race:
                e["detector"] = "accuracy gate and compute-sanitizer racecheck"
            e["caught"] = e["caught"] or by_race
    with open(out, "w", encoding="utf-8") as f:
        json.dump(entries, f, indent=2)
        f.write("\n")
    missed = [f'{e["class"]} ({e["path"]})' for e in entries if not e["caught"]]
    print(f"{len(entries)} mutants, {len(entries) - len(missed)} caught"
          + (f"; missed: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
