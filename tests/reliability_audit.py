#!/usr/bin/env python3
"""The reliability audit: bad inputs given to every tool of attnscope, each judged by what the
tool did with it.

    reliability_audit.py --attnscope BIN --bench BIN --suite BIN --python PY --out DIR

Every input is run in a scratch folder (DIR/scratch) and falls in one class:
  clear    the tool refused it: a non-zero exit status (not a signal), and a message that names
           what was wrong (the input's `expect` pattern), and no file it was given changed;
  unclear  refused, but the message does not name the problem;
  crashed  a signal, a Python traceback, an uncaught C++ exception or a hang;
  silent   exit status 0, or a file the tool was given changed (input lost).
DIR/reliability.md and DIR/reliability.json hold the table; the closing line counts each class.
Exit status 0 when every input is clear, 1 otherwise, 2 on a usage error.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

CRASH = re.compile(r"Traceback \(most recent call last\)|terminate called|Segmentation fault|"
                   r"core dumped|AddressSanitizer|runtime error:|Aborted")


class Input:
    def __init__(self, ident, tool, argv, expect, env=None, keep=(), setup=None, why=""):
        self.ident, self.tool, self.argv, self.expect = ident, tool, argv, expect
        self.env, self.keep, self.setup, self.why = env or {}, keep, setup, why


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def inputs(a, s):
    """The audited inputs. a: the binaries; s: the scratch folder."""
    att, bench, suite, py = a.attnscope, a.bench, a.suite, a.python
    bench_json = os.path.join(s, "bench.json")
    acc = os.path.join(s, "acc.jsonl")
    rec = {"case": "c1", "pass": True}

    def setup_common():
        shutil.copy("results/nvidia-h200/bench.json", bench_json)
        shutil.copy("results/nvidia-h200/accuracy.jsonl", acc)
        write(os.path.join(s, "empty.json"), "{}\n")
        write(os.path.join(s, "notjson.json"), "this is not JSON\n")
        write(os.path.join(s, "weird.json"), '{"benchmarks": 5}\n')
        write(os.path.join(s, "nobench.json"), '{"benchmarks": []}\n')
        with open("results/nvidia-h200/accuracy.jsonl") as f:
            first = f.readline()
        write(os.path.join(s, "dup.jsonl"), first + first)
        write(os.path.join(s, "notrec.jsonl"), '{"hello": 1}\n')
        write(os.path.join(s, "badline.jsonl"), json.dumps(rec) + "\n{broken\n")
        write(os.path.join(s, "empty.jsonl"), "")
        write(os.path.join(s, "garbage.safetensors"), "not a safetensors file at all")
        with open(os.path.join(s, "truncated.safetensors"), "wb") as f:
            f.write((10**6).to_bytes(8, "little") + b'{"q": ')
        os.makedirs(os.path.join(s, "adir"), exist_ok=True)
        try:
            os.symlink("bench.json", os.path.join(s, "alias.json"))
        except FileExistsError:
            pass

    # Trace points whose metadata or tensors are wrong: the problem and layout validation as an
    # engine's recorded tensors reach it. Written with tools/trace_writer.py (numpy).
    bad_traces = [
        ("seq_len 2^63-1", {"seq_len": str(2**63 - 1)}, "seq_len"),
        ("seq_len 2^40+1", {"seq_len": str(2**40 + 1)}, "seq_len"),
        ("seq_len not a number", {"seq_len": "many"}, "seq_len"),
        ("window 0", {"window": "0"}, "window"),
        ("window past seq_len", {"window": "71"}, "window"),
        ("layer past the layers", {"layer": "3"}, "layer"),
        ("layer -1", {"layer": "-1"}, "layer"),
        ("unknown layout", {"layout": "hsbd"}, "layout"),
        ("unknown accumulation", {"accumulation": "fp8"}, "accumulation"),
        ("scale NaN", {"scale": "nan"}, "scale"),
        ("scale 1e300", {"scale": "1e300"}, "scale"),
        ("scale -1", {"scale": "-1"}, "scale"),
        ("seq_len past the cache", {"seq_len": "81"}, "seq_len|capacity|cache"),
    ]

    def setup_traces():
        sys.path.insert(0, "tools")
        try:
            import numpy as np
            import trace_writer as tw
        except ImportError:
            return False
        rng = np.random.default_rng(1)
        q = rng.standard_normal((2, 1, 8, 64)).astype(np.float16)
        k = rng.standard_normal((3, 2, 80, 2, 64)).astype(np.float16)
        out = np.zeros((2, 1, 8, 64), dtype=np.float16)
        base = {"layout": "bshd", "layer": "2", "seq_len": "70", "window": "64",
                "accumulation": "fp32"}
        for i, (_, change, _) in enumerate(bad_traces):
            meta = dict(base)
            meta.update(change)
            tw.write_safetensors(os.path.join(s, f"bad{i}.safetensors"),
                                 {"q": q, "k_cache": k, "v_cache": k, "out": out}, meta)
        tw.write_safetensors(os.path.join(s, "badq.safetensors"),
                             {"q": q[:, :, :7], "k_cache": k, "v_cache": k, "out": out}, base)
        tw.write_safetensors(os.path.join(s, "nok.safetensors"), {"q": q, "out": out}, base)
        return True

    v = []
    add = v.append
    if a.with_traces:
        for i, (what, _, exp) in enumerate(bad_traces):
            add(Input(f"trace check: {what}", "attnscope",
                      [att, "trace", "check", os.path.join(s, f"bad{i}.safetensors")], exp))
        add(Input("trace check: 7 query heads for 2 KV heads", "attnscope",
                  [att, "trace", "check", os.path.join(s, "badq.safetensors")], "head|q_heads|multiple"))
        add(Input("trace check: no K cache", "attnscope",
                  [att, "trace", "check", os.path.join(s, "nok.safetensors")], "k_cache"))
    # bench_attention: flags and environment values, read strictly, the flag named.
    for flag, val, exp in [
        ("--attnscope_flush_mib", "-5", "flush_mib"), ("--attnscope_flush_mib", "abc", "flush_mib"),
        ("--attnscope_flush_mib", "1abc", "flush_mib"), ("--attnscope_flush_mib", "", "flush_mib"),
        ("--attnscope_flush_mib", "99999999999999999999", "flush_mib"),
        ("--attnscope_timeout_s", "-1", "timeout_s"), ("--attnscope_timeout_s", "abc", "timeout_s"),
        ("--attnscope_timeout_s", "1abc", "timeout_s"), ("--attnscope_timeout_s", "nan", "timeout_s"),
        ("--attnscope_timeout_s", "inf", "timeout_s"), ("--attnscope_timeout_s", "0", "timeout_s"),
        ("--attnscope_set", "bogus", "benchmark set"), ("--attnscope_impl", "a,,b", "empty pattern"),
        ("--attnscope_splits", "-1", "splits"), ("--attnscope_splits", "70000", "splits"),
        ("--attnscope_splits", "4x", "splits"), ("--attnscope_page_size", "0", "page_size"),
        ("--attnscope_page_size", "sixteen", "page_size"), ("--attnscope_pages", "random", "pages"),
        ("--attnscope_flush", "memset", "read, write"), ("--attnscope_flush", "", "attnscope_flush"),
    ]:
        add(Input(f"bench{flag}={val or 'empty'}", "bench_attention", [bench, f"{flag}={val}"], exp))
    add(Input("bench --attnscope_bogus", "bench_attention", [bench, "--attnscope_bogus=1"],
              "unknown option"))
    add(Input("bench --attnscope_splits with the tune set", "bench_attention",
              [bench, "--attnscope_set=tune", "--attnscope_splits=4"], "does not apply"))
    add(Input("bench filter matching nothing", "bench_attention",
              [bench, "--benchmark_filter=no_such_benchmark"], "no benchmark matches"))
    add(Input("bench --attnscope_impl matching nothing", "bench_attention",
              [bench, "--attnscope_impl=no_such_impl"], "no registered implementation matches"))
    for var, val, exp in [
        ("ATTNSCOPE_BENCH_HOT", "maybe", "ATTNSCOPE_BENCH_HOT"),
        ("ATTNSCOPE_BENCH_FLUSH_MIB", "-1", "FLUSH_MIB"),
        ("ATTNSCOPE_BENCH_TIMEOUT_S", "soon", "TIMEOUT_S"),
        ("ATTNSCOPE_BENCH_SET", "bogus", "benchmark set"),
        ("ATTNSCOPE_BENCH_SPLITS", "many", "ATTNSCOPE_BENCH_SPLITS"),
        ("ATTNSCOPE_BENCH_PAGES", "shuffled", "ATTNSCOPE_BENCH_PAGES"),
        ("ATTNSCOPE_BENCH_FLUSH", "dirty", "ATTNSCOPE_BENCH_FLUSH"),
    ]:
        add(Input(f"bench env {var}={val}", "bench_attention", [bench], exp, env={var: val}))
    # The host thread count, read where the references start their threads.
    for val in ("abc", "-3", "1x"):
        add(Input(f"selfcheck env ATTNSCOPE_HOST_THREADS={val}", "attnscope", [att, "selfcheck"],
                  "ATTNSCOPE_HOST_THREADS", env={"ATTNSCOPE_HOST_THREADS": val}))
    # accuracy_suite: flags and environment values.
    for arg, exp in [("--attnscope_sweep=bogus", "sweep"), ("--attnscope_impl=zzz", "no accuracy case"),
                     ("--attnscope_impl=a,,b", "empty pattern"), ("--attnscope_jsonl=", "needs a path"),
                     ("--attnscope_trace_dir=", "needs a folder"), ("--attnscope_bogus", "unknown option"),
                     ("extra_argument", "unknown argument")]:
        add(Input(f"accuracy_suite {arg}", "accuracy_suite", [suite, arg], exp))
    add(Input("accuracy_suite env sweep", "accuracy_suite", [suite], "sweep",
              env={"ATTNSCOPE_ACCURACY_SWEEP": "bogus"}))
    add(Input("accuracy_suite env impl", "accuracy_suite", [suite], "no accuracy case",
              env={"ATTNSCOPE_ACCURACY_IMPL": "nothing_registered"}))
    # attnscope: subcommands and options.
    for args, exp in [
        (["bogus"], "bogus"), (["gate", "--shards", "0"], "shards"), (["gate", "--shards", "-2"], "shards"),
        (["gate", "--shards", "abc"], "shards"), (["gate", "--gpus", "0"], "gpus"),
        (["gate", "--gpus", "many"], "gpus"), (["gate", "--window", "3"], "no case|no accuracy case"),
        (["gate", "--window", "-1"], "window"), (["gate", "--path", "bogus"], "path"),
        (["gate", "--accum", "fp8"], "accum"), (["gate", "--sweep", "bogus"], "sweep"),
        (["gate", "--impl", "zzz"], "no case|no accuracy case|matches"),
        (["gate", "--jsonl", "/no/such/dir/a.jsonl"], "a.jsonl|cannot|directory"),
        (["gate", "--junit", "/no/such/dir/a.xml"], "a.xml|cannot|directory"),
        (["gate", "--log", "/no/such/dir/a.log"], "a.log|cannot|directory"),
        (["gate", "--suite", "/no/such/suite"], "suite"), (["gate", "--jsonl", ""], "empty path"),
        (["selfcheck", "--json", ""], "empty path"),
        (["selfcheck", "--json", "/no/such/dir/self.json"], "cannot write"),
        (["selfcheck", "--json", os.path.join(s, "adir")], "cannot write|directory"),
        (["bench", "--out", ""], "empty path"), (["bench", "--binary", "/no/such/bench"], "bench"),
        (["bench", "--out", "/no/such/dir/b.json"], "b.json|cannot|directory"),
        (["bench", "--set", "bogus"], "set"), (["run", "--out", ""], "empty path"),
        (["run", "--python", ""], "empty path"), (["report", "--out", ""], "empty path"),
        (["report", os.path.join(s, "no_such_folder")], "no_such_folder|not found|exist"),
        (["compare", os.path.join(s, "no_such.json"), bench_json], "no_such.json"),
        (["compare", bench_json, os.path.join(s, "notjson.json")], "notjson.json|JSON|parse"),
        (["compare", bench_json, acc], "accuracy|benchmark|kind|same"),
        (["compare", bench_json, os.path.join(s, "empty.json")], "empty.json|benchmarks"),
        (["compare", acc, os.path.join(s, "dup.jsonl")], "twice|duplicate|more than once"),
        (["compare", bench_json, bench_json, "--json", ""], "empty path"),
        (["trace", "check", os.path.join(s, "no_such.safetensors")], "no_such"),
        (["trace", "check", os.path.join(s, "garbage.safetensors")], "garbage|header|safetensors"),
        (["trace", "check", os.path.join(s, "truncated.safetensors")], "truncated|header|size|safetensors"),
        (["trace", "check", "--jsonl", "", os.path.join(s, "garbage.safetensors")], "empty path"),
        (["fp8-cost", "--formats", "e3m4"], "e3m4|formats"),
        (["fp8-cost", "--scales", "row"], "row|scales"),
        (["fp8-cost", "--windows", "0"], "windows|0"),
        (["fp8-cost", "--json", "/no/such/dir/c.json"], "c.json|cannot"),
        (["fp8-cost", "--json", ""], "empty path"),
    ]:
        add(Input("attnscope " + " ".join(x if not x.startswith(s) else os.path.basename(x)
                                          for x in args), "attnscope", [att] + args, exp,
                  keep=[bench_json, acc]))
    # The Python tools: one-line errors, never a traceback, never an input overwritten.
    for script, args, exp in [
        ("bench_report.py", [], "usage"),
        ("bench_report.py", [os.path.join(s, "no_such.json")], "no_such.json"),
        ("bench_report.py", [os.path.join(s, "empty.json")], "benchmarks"),
        ("bench_report.py", [os.path.join(s, "weird.json")], "benchmarks"),
        ("bench_report.py", [os.path.join(s, "nobench.json")], "benchmarks"),
        ("bench_report.py", [os.path.join(s, "notjson.json")], "notjson.json|JSON"),
        ("bench_report.py", [bench_json, "--out", bench_json], "input|own"),
        ("bench_report.py", [bench_json, "--out", os.path.join(s, "alias.json")], "input|own"),
        ("summarize_accuracy.py", [], "usage"),
        ("summarize_accuracy.py", [os.path.join(s, "no_such.jsonl")], "no_such.jsonl"),
        ("summarize_accuracy.py", [os.path.join(s, "dup.jsonl")], "twice|duplicate"),
        ("summarize_accuracy.py", [os.path.join(s, "notrec.jsonl")], "not an accuracy record|record"),
        ("summarize_accuracy.py", [os.path.join(s, "badline.jsonl")], "line 2|JSON"),
        ("summarize_accuracy.py", [os.path.join(s, "empty.jsonl")], "no record|empty"),
        ("tune_report.py", [bench_json], "usage|accuracy"),
        ("tune_report.py", [bench_json, acc, "--out", bench_json], "input|own"),
        ("tune_report.py", [os.path.join(s, "no_such.json"), acc, "--out", os.path.join(s, "t.json")],
         "no_such.json"),
        ("report.py", [os.path.join(s, "no_such_folder")], "no_such_folder"),
    ]:
        add(Input(f"{script} " + " ".join(os.path.basename(x) if x.startswith(s) else x for x in args),
                  script, [py, os.path.join("tools", script)] + args, exp, keep=[bench_json, acc]))
    def setup():
        setup_common()
        if a.with_traces and not setup_traces():
            sys.exit("reliability_audit.py: numpy is needed for the trace inputs")

    return v, setup


def digest(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def judge(inp, timeout):
    before = {k: digest(k) for k in inp.keep}
    env = dict(os.environ)
    env.update(inp.env)
    try:
        r = subprocess.run(inp.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        out, rc = r.stdout.decode(errors="replace"), r.returncode
    except subprocess.TimeoutExpired:
        return "crashed", None, f"no answer within {timeout} s (a hang)"
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    message = lines[-1][:240] if lines else ""
    changed = [k for k in inp.keep if digest(k) != before[k]]
    if rc < 0 or rc >= 128 or CRASH.search(out):
        m = CRASH.search(out)
        return "crashed", rc, m.group(0) if m else f"killed by signal {-rc if rc < 0 else rc - 128}"
    if changed:
        return "silent", rc, "changed " + ", ".join(os.path.basename(c) for c in changed)
    if rc == 0:
        return "silent", rc, "accepted (exit 0): " + message
    # The message that names the problem is among the last lines; the table shows that line.
    for line in lines[-6:]:
        if re.search(inp.expect, line, re.I):
            return "clear", rc, line.strip()[:240]
    return "unclear", rc, message


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attnscope", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--suite", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--no-traces", dest="with_traces", action="store_false",
                    help="leave out the trace inputs (they need numpy)")
    a = ap.parse_args()
    scratch = os.path.join(a.out, "scratch")
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    v, setup = inputs(a, scratch)
    setup()
    rows, counts = [], {"clear": 0, "unclear": 0, "crashed": 0, "silent": 0}
    for inp in v:
        verdict, rc, message = judge(inp, a.timeout)
        counts[verdict] += 1
        rows.append({"input": inp.ident, "tool": inp.tool, "exit": rc, "verdict": verdict,
                     "message": message})
        if verdict != "clear":
            print(f"reliability: {verdict.upper()}: {inp.ident}: exit {rc}: {message}")
    with open(os.path.join(a.out, "reliability.json"), "w") as f:
        json.dump({"counts": counts, "inputs": rows}, f, indent=1)
    with open(os.path.join(a.out, "reliability.md"), "w") as f:
        f.write("# Reliability audit: bad inputs to attnscope's tools\n\n")
        f.write("Written by `tests/reliability_audit.py` (the `reliability_audit` test, run by CI on "
                "every change). A bad input is *clear* when the tool exits non-zero, by itself, "
                "with a message naming the problem (shown), and no file it was given changed.\n\n")
        f.write(f"{len(rows)} inputs: {counts['clear']} clear errors, {counts['unclear']} unclear, "
                f"{counts['crashed']} crashed, {counts['silent']} silent.\n\n")
        f.write("| input | tool | exit | verdict | message (last line) |\n|---|---|---|---|---|\n")
        for r in rows:
            msg = r["message"].replace(scratch + "/", "")
            for b in (a.attnscope, a.bench, a.suite):  # binaries by name, not by build folder
                msg = msg.replace(b, os.path.basename(b))
            msg = msg.replace("|", "\\|")
            inp = r["input"].replace("|", "\\|")
            f.write(f"| `{inp}` | {r['tool']} | {r['exit']} | {r['verdict']} | {msg} |\n")
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"reliability: {len(rows)} bad inputs: {counts['clear']} clear errors, "
          f"{counts['unclear']} unclear, {counts['crashed']} crashed, {counts['silent']} silent")
    return 0 if counts["clear"] == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
