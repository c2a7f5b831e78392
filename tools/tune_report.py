#!/usr/bin/env python3
"""Tuning report: the benchmark tune set beside the accuracy suite's tune sweep.

usage: tune_report.py BENCH_TUNE.json ACCURACY_TUNE.jsonl --out tuning.json [--md tuning.md]

BENCH_TUNE.json: bench_attention --attnscope_set=tune --benchmark_out=... (Google Benchmark JSON).
ACCURACY_TUNE.jsonl: accuracy_suite --attnscope_sweep=tune --attnscope_jsonl=... records.

Per shape: every split count's median time and, from the accuracy record with the same split
count (the error of a split count does not depend on the batch), its attn_out rel_l2 and
error/budget; the fastest count; the implementation's own choice (splits 0) and its time over
the fastest. Exit status 1 when a file cannot be read.
"""
import argparse
import os
import json
import re
import sys

SPLITS = re.compile(r"/splits:(\d+)")


def fail(msg):
    print(f"tune_report.py: {msg}", file=sys.stderr)
    sys.exit(1)


def load_bench(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        fail(f"{path}: {e}")
    rows = {}
    for b in data.get("benchmarks", []):
        if b.get("aggregate_name") != "median" or not b["name"].startswith("split_kv/"):
            continue
        if b.get("error_occurred"):
            continue
        name = b["run_name"] if "run_name" in b else b["name"].rsplit("_median", 1)[0]
        name = name.replace("/manual_time", "")
        m = SPLITS.search(name)
        requested = int(m.group(1)) if m else 0
        shape = SPLITS.sub("", name)
        rows.setdefault(shape, []).append({
            "requested_splits": requested,
            "splits": int(b.get("splits", requested)),
            "median_us": float(b["real_time"]),
            "pct_of_read_peak": b.get("pct_of_read_peak"),
        })
    if not rows:
        fail(f"{path}: no split_kv median results (run the tune set with repetitions)")
    return rows


def field(shape, key):
    m = re.search(rf"/{key}:([^/]+)", shape)
    return m.group(1) if m else None


def load_accuracy(path):
    recs = {}
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError as e:
                    fail(f"{path}:{n}: {e}")
                if r.get("path") != "split_kv" or "splits" not in r:
                    continue
                key = (r["implementation"], r["q_heads"], r["kv_heads"], r["window"], r["head_dim"],
                       r["input"], r["accumulation"], r["layout"], int(r["splits"]))
                recs[key] = r
    except OSError as e:
        fail(f"{path}: {e}")
    return recs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench")
    ap.add_argument("accuracy")
    ap.add_argument("--out", required=True)
    ap.add_argument("--md")
    a = ap.parse_args()
    for p in (a.out, a.md):
        for src in (a.bench, a.accuracy):
            if p and (p == src or (os.path.exists(p) and os.path.exists(src) and os.path.samefile(p, src))):
                fail(f"{p}: the output would replace the input {src}")
    bench, acc = load_bench(a.bench), load_accuracy(a.accuracy)
    report = []
    for shape, configs in sorted(bench.items()):
        impl = field(shape, "impl")
        key = (impl, int(field(shape, "qh")), int(field(shape, "kvh")), int(field(shape, "window")),
               int(field(shape, "d")), field(shape, "in"), field(shape, "acc"), field(shape, "layout"))
        for c in configs:
            r = acc.get(key + (c["splits"],))
            c["attn_out_rel_l2"] = r.get("attn_out_rel_l2") if r else None
            c["attn_out_budget_ratio"] = r.get("attn_out_budget_ratio") if r else None
            c["accuracy_pass"] = r.get("pass") if r else None
        configs.sort(key=lambda c: c["median_us"])
        best = configs[0]
        own = next((c for c in configs if c["requested_splits"] == 0), None)
        report.append({
            "shape": shape, "implementation": impl, "best": best, "heuristic": own,
            "heuristic_over_best": own["median_us"] / best["median_us"] if own else None,
            "configs": sorted(configs, key=lambda c: c["requested_splits"]),
        })
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    lines = ["| shape | best splits | best us | its rel_l2 | heuristic splits | heuristic us | heuristic / best |",
             "|---|---|---|---|---|---|---|"]
    for r in report:
        b, h = r["best"], r["heuristic"]
        short = r["shape"].replace("split_kv/impl:", "")
        rel = "-" if b["attn_out_rel_l2"] is None else f'{b["attn_out_rel_l2"]:.3g}'
        hs = f'{h["splits"]}' if h else "-"
        hu = f'{h["median_us"]:.1f}' if h else "-"
        ratio = f'{r["heuristic_over_best"]:.3f}' if h else "-"
        lines.append(f'| {short} | {b["splits"]} | {b["median_us"]:.1f} | {rel} | {hs} | {hu} | {ratio} |')
    text = "\n".join(lines) + "\n"
    if a.md:
        with open(a.md, "w", encoding="utf-8") as f:
            f.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
