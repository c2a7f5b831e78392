#!/usr/bin/env python3
"""Runs ctest and closes with the real counts.

ctest ends its output with one line per test that did not run, so a run whose GPU cases all
skip closes on a list of skips. This wrapper streams ctest's progress, leaves that list out,
prints each distinct skip reason once with the number of tests it covers, and ends with

    tests: N passed, N failed, N skipped

taken from ctest's JUnit report. Exit status: ctest's, or 1 when the report counts a failure
or cannot be read.

Usage: run_ctest.py [--counts FILE] -- CTEST_ARGS...
--counts appends "passed failed skipped" to FILE, for a caller that adds up several runs.
"""
import collections
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET


def skip_reason(text):
    """The reason GoogleTest printed after 'Skipped' (GTEST_SKIP's message), else a fallback."""
    lines = [l.strip() for l in (text or "").splitlines()]
    for i, line in enumerate(lines):
        if line.endswith(": Skipped") or line == "Skipped":
            for follow in lines[i + 1:]:
                if follow:
                    return follow
    return "skipped by ctest (no reason printed)"


def count(junit_path):
    root = ET.parse(junit_path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    passed = failed = 0
    skipped = collections.Counter()
    failures = []
    for suite in suites:
        for case in suite.findall("testcase"):
            name = case.get("name", "?")
            status = case.get("status", "")
            # A test that skipped itself carries <skipped>; "notrun" without it is a test ctest
            # could not run (missing executable, failed dependency): a failure.
            if status == "disabled":
                skipped["disabled in ctest"] += 1
            elif case.find("skipped") is not None:
                out = case.find("system-out")
                skipped[skip_reason(out.text if out is not None else "")] += 1
            elif (case.find("failure") is not None or case.find("error") is not None
                  or status in ("fail", "notrun")):
                failed += 1
                failures.append(name)
            else:
                passed += 1
    return passed, failed, skipped, failures


def main(argv):
    counts_file = None
    if "--" not in argv:
        sys.exit("usage: run_ctest.py [--counts FILE] -- CTEST_ARGS...")
    split = argv.index("--")
    opts, ctest_args = argv[:split], argv[split + 1:]
    while opts:
        flag = opts.pop(0)
        if flag == "--counts" and opts:
            counts_file = opts.pop(0)
        else:
            sys.exit(f"run_ctest.py: unknown option '{flag}'")

    fd, junit = tempfile.mkstemp(prefix="ctest-", suffix=".xml")
    os.close(fd)
    try:
        proc = subprocess.Popen(["ctest", "--output-junit", junit, *ctest_args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace")
        in_not_run_list = False
        for line in proc.stdout:
            # ctest's closing list of every test that did not run: summarized below instead.
            if line.startswith("The following tests did not run:"):
                in_not_run_list = True
                continue
            if in_not_run_list:
                if line.startswith("\t") or not line.strip():
                    continue
                in_not_run_list = False
            sys.stdout.write(line)
            sys.stdout.flush()
        rc = proc.wait()
        try:
            passed, failed, skipped, failures = count(junit)
        except (ET.ParseError, OSError) as e:
            print(f"run_ctest.py: cannot read ctest's JUnit report {junit}: {e}")
            return rc or 1
    finally:
        if os.path.exists(junit):
            os.unlink(junit)

    for name in failures:
        print(f"failed: {name}")
    for reason, n in sorted(skipped.items(), key=lambda kv: -kv[1]):
        print(f"skipped: {n} test{'s' if n != 1 else ''}: {reason}")
    total_skipped = sum(skipped.values())
    if counts_file:
        with open(counts_file, "a", encoding="utf-8") as f:
            f.write(f"{passed} {failed} {total_skipped}\n")
    print(f"tests: {passed} passed, {failed} failed, {total_skipped} skipped")
    if rc == 0 and failed:
        rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
