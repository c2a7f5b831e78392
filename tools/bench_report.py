#!/usr/bin/env python3
"""Fused against unfused, and attnscope against its peers, as a Markdown report.

Reads the Google Benchmark JSON of bench_attention (--benchmark_out_format=json), optionally the
JSON of peers measured the same way (bench/peers/torch_sdpa.py) and the accuracy suite's JSON
Lines, and prints per shape the median time of every path (the stages alone, unfused, fused,
split_kv, each peer), its spread (cv), bandwidth and percent of the measured copy peak, time
ratios within the run, and each path's error: from the accuracy suite for attnscope's paths, and
against the FP64 reference the peer script computed for the peers.

Usage:
  python3 tools/bench_report.py attnscope.json [--peers peers.json ...]
      [--accuracy accuracy.jsonl|DIR ...] [--out report.md]
"""
import argparse
import glob
import json
import math
import os
import statistics
import sys

UNIT_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
# Name segments Google Benchmark appends that are not part of the configuration.
RUN_SUFFIXES = ("manual_time", "real_time", "process_time")
SHAPE_KEYS = ("acc", "in", "out", "d", "b", "qh", "kvh", "q", "window", "layout", "page", "l2")
ATTNSCOPE_ORDER = {"qk": 0, "softmax": 1, "pv": 2, "unfused": 3, "fused": 4, "split_kv": 5}


def parse_name(name):
    parts = name.split("/")
    fields = {}
    for p in parts[1:]:
        if p in RUN_SUFFIXES:
            continue
        if ":" in p:
            k, v = p.split(":", 1)
            if k not in ("repeats", "min_time", "iterations", "threads", "min_warmup_time"):
                fields[k] = v
    return parts[0], fields


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"bench_report: cannot read {path}: {e}")


class Result:
    def __init__(self, path, fields, source):
        self.path = path
        self.impl = fields.get("impl", "?")
        self.shape = tuple((k, fields[k]) for k in SHAPE_KEYS if k in fields)
        self.source = source
        self.time_us = None
        self.cv = None
        self.reps = []
        self.counters = {}
        self.error = None
        self.max_abs = None
        self.rel_l2 = None
        self.error_from = ""
        self.label = ""

    @property
    def is_peer(self):
        return not self.impl.startswith("attnscope")


def collect(files, source):
    """Results by (path, impl, shape) from Google Benchmark style JSON files."""
    results, contexts = {}, []
    for path in files:
        data = load_json(path)
        benchmarks = data.get("benchmarks") if isinstance(data, dict) else None
        if not isinstance(benchmarks, list) or not all(isinstance(b, dict) for b in benchmarks):
            sys.exit(f"bench_report: {path}: not a Google Benchmark JSON file (no \"benchmarks\" "
                     "array of objects)")
        if not benchmarks:
            sys.exit(f"bench_report: {path}: no benchmarks in the file")
        contexts.append((path, data.get("context", {})))
        for b in benchmarks:
            run_name = b.get("run_name", b.get("name", ""))
            p, fields = parse_name(run_name)
            r = results.setdefault((p, fields.get("impl"), run_name), Result(p, fields, source))
            if b.get("error_occurred"):
                r.error = b.get("error_message", "error")
                continue
            if b.get("label") and not r.label:
                r.label = b["label"]
            scale = UNIT_US.get(b.get("time_unit", "ns"), 1e-3)
            counters = {k: b[k] for k in ("bytes", "GB/s", "FLOP/s", "pct_of_peak", "max_abs",
                                          "mae", "rel_l2") if k in b}
            if b.get("run_type") == "aggregate":
                agg = b.get("aggregate_name")
                if agg == "median":
                    r.time_us = b["real_time"] * scale
                    r.counters.update(counters)
                elif agg == "cv":
                    r.cv = b["real_time"]  # a fraction
            else:
                r.reps.append(b["real_time"] * scale)
                for k, v in counters.items():
                    r.counters.setdefault(k, v)
    for r in results.values():
        if r.time_us is None and r.reps and r.error is None:
            r.time_us = statistics.median(r.reps)
            if len(r.reps) > 1:
                r.cv = statistics.stdev(r.reps) / statistics.fmean(r.reps)
            if r.counters.get("bytes"):
                gbps = r.counters["bytes"] / (r.time_us * 1e-6) / 1e9
                ratio = gbps / r.counters["GB/s"] if r.counters.get("GB/s") else None
                r.counters["GB/s"] = gbps
                if ratio and "pct_of_peak" in r.counters:
                    r.counters["pct_of_peak"] *= ratio
        if r.error and r.time_us is not None:
            r.error = None  # some repetitions ran
    return list(results.values()), contexts


def load_accuracy(paths):
    records = []
    files = []
    for p in paths:
        files += sorted(glob.glob(os.path.join(p, "**", "*.jsonl"), recursive=True)) if os.path.isdir(p) else [p]
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        sys.exit(f"bench_report: {f}:{n}: bad record: {e}")
    return records


def number(v):
    return v if isinstance(v, (int, float)) else float("nan") if v in ("nan", None) else float(v)


def attach_accuracy(r, records):
    """The accuracy case closest to r's shape: the same path, implementation, dtypes, head_dim,
    window and q_len are required (they set the per-element error); layout, GQA group, batch and
    head counts are preferred."""
    if r.is_peer or r.path not in ("unfused", "fused", "split_kv", "qk", "softmax", "pv"):
        return
    s = dict(r.shape)
    family = r.impl if r.path == "unfused" else r.impl.rsplit(".", 1)[0]
    want_path = "unfused" if r.path in ("qk", "softmax", "pv") else r.path
    want_impl = family + ".qk" if want_path == "unfused" else r.impl
    best, best_score = None, -1
    for rec in records:
        try:
            if (rec.get("path") != want_path or rec.get("implementation") != want_impl
                    or rec.get("accumulation") != s.get("acc") or rec.get("input") != s.get("in")
                    or rec.get("output") != s.get("out", s.get("in"))
                    or str(rec.get("head_dim")) != s.get("d") or str(rec.get("window")) != s.get("window")
                    or str(rec.get("q_len")) != s.get("q", "1")
                    or rec.get("distribution", "normal") != "normal"
                    or str(rec.get("case", "")).endswith("_scale_softmax")):  # qk scales here
                continue
            group = int(s["qh"]) // int(s["kvh"])
            score = (4 * (rec.get("layout") == s.get("layout")) + 2 * (rec.get("group") == group)
                     + (str(rec.get("batch")) == s.get("b")) + (str(rec.get("q_heads")) == s.get("qh")))
        except (KeyError, ValueError):
            continue
        if score > best_score:
            best, best_score = rec, score
    if best is None:
        return
    prefix = {"qk": "qk_", "softmax": "softmax_", "pv": "pv_"}.get(r.path, "attn_out_")
    r.max_abs = number(best.get(prefix + "max_abs"))
    r.rel_l2 = number(best.get(prefix + "rel_l2"))
    r.error_from = "accuracy (same shape)" if best_score == 8 else f"accuracy: {best.get('case', '?')}"


def fmt(v, digits=3):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and (abs(v) >= 1e5 or (v != 0 and abs(v) < 1e-3)):
        return f"{v:.{digits}g}"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def shape_label(shape):
    s = dict(shape)
    label = (f"b{s.get('b')} qh{s.get('qh')} kvh{s.get('kvh')} q{s.get('q', '1')} window {s.get('window')} "
             f"d{s.get('d')} in {s.get('in')}")
    if "out" in s:
        label += f" out {s['out']}"
    label += f" acc {s.get('acc')} {s.get('layout')}"
    if "page" in s:
        label += f" page {s['page']}"
    if "l2" in s:
        label += f" L2 {s['l2']}"
    return label


def print_contexts(out, title, contexts):
    for path, c in contexts:
        out.write(f"- {title} `{path}`: {c.get('gpu', '?')} ({c.get('gpu_arch', c.get('torch_version', ''))}), "
                  f"copy peak {c.get('peak_copy_GBps', '?')} GB/s, L2 {c.get('l2_mode', '?')}, "
                  f"set {c.get('bench_set', '?')}, {c.get('date', '')}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", nargs="+", help="bench_attention JSON file(s)")
    ap.add_argument("--peers", nargs="*", default=[], help="peer JSON file(s) (bench/peers)")
    ap.add_argument("--accuracy", nargs="*", default=[],
                    help="accuracy suite JSON Lines file(s) or folder(s) holding them")
    ap.add_argument("--out", help="Markdown file to write (default: standard output)")
    args = ap.parse_args()
    if args.out:
        # The report must never replace what it reads (the same file under another name too).
        for src in args.bench + args.peers + args.accuracy:
            if os.path.exists(args.out) and os.path.exists(src) and os.path.samefile(args.out, src):
                sys.exit(f"bench_report.py: --out {args.out} is the input {src}; the report would replace it")

    ours, our_ctx = collect(args.bench, "attnscope")
    peers, peer_ctx = collect(args.peers, "peer") if args.peers else ([], [])
    records = load_accuracy(args.accuracy) if args.accuracy else []
    for r in ours:
        attach_accuracy(r, records)
    for r in peers:
        if r.counters.get("max_abs") is not None:
            r.max_abs = r.counters.get("max_abs")
            r.rel_l2 = r.counters.get("rel_l2")
            r.error_from = "FP64 reference (peer script)"

    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    out.write("# Attention benchmarks: fused against unfused, attnscope against peers\n\n")
    print_contexts(out, "attnscope", our_ctx)
    print_contexts(out, "peers", peer_ctx)
    gpus = {c.get("gpu") for _, c in our_ctx + peer_ctx}
    if len(gpus) > 1:
        out.write(f"\n**Warning**: the files come from different GPUs ({', '.join(map(str, gpus))}); "
                  "ratios across them are not same-run measurements.\n")
    out.write("\nTimes are medians over repetitions of the mean time per call (device events, "
              "L2 as stated above); cv is the coefficient of variation over repetitions. GB/s counts "
              "the fewest bytes a path must move; % peak is against the device-to-device copy "
              "bandwidth each file measured. Errors are attn_out (or the stage's output) against "
              "the high-precision reference. A decode kernel mostly reads, and reads alone can run faster "
              "than a copy, so % peak may pass 100.\n\n")

    by_shape = {}
    for r in ours + peers:
        by_shape.setdefault(r.shape, []).append(r)

    def t(rs, path, impl_pred=lambda r: not r.is_peer):
        ts = [r.time_us for r in rs if r.path == path and impl_pred(r) and r.time_us]
        return min(ts) if ts else None

    out.write("## Summary (median us)\n\n| shape | unfused | fused | split_kv | fastest peer | "
              "unfused / fused | best attnscope / fastest peer |\n|---|---|---|---|---|---|---|\n")
    for shape, rs in by_shape.items():
        unf, fus, spl = t(rs, "unfused"), t(rs, "fused"), t(rs, "split_kv")
        ran_peers = [r for r in rs if r.is_peer and r.time_us]
        fp = min(ran_peers, key=lambda r: r.time_us) if ran_peers else None
        best = min([x for x in (fus, spl) if x], default=None)
        out.write(f"| {shape_label(shape)} | {fmt(unf)} | {fmt(fus)} | {fmt(spl)} | "
                  f"{fmt(fp.time_us) + ' (' + fp.impl + ')' if fp else '-'} | "
                  f"{fmt(unf / fus) if unf and fus else '-'} | "
                  f"{fmt(best / fp.time_us) if best and fp else '-'} |\n")

    for shape, rs in by_shape.items():
        out.write(f"\n## {shape_label(shape)}\n\n")
        unf = t(rs, "unfused")
        best = min([x for x in (t(rs, "fused"), t(rs, "split_kv")) if x], default=None)
        out.write("| path | implementation | median us | cv | GB/s | % peak | unfused / this | "
                  "this / best attnscope | max_abs | rel_l2 | error from |\n"
                  "|---|---|---|---|---|---|---|---|---|---|---|\n")
        rs = sorted(rs, key=lambda r: (r.is_peer, ATTNSCOPE_ORDER.get(r.path, 9) if not r.is_peer
                                       else 0, r.time_us or float("inf"), r.impl))
        skipped, notes = [], []
        for r in rs:
            if r.time_us is None:
                skipped.append(r)
                continue
            c = r.counters
            impl = r.impl
            if r.is_peer and r.label:
                notes.append(f"{r.impl}: {r.label}")
                impl += f" [{len(notes)}]"
            out.write(f"| {r.path} | {impl} | {fmt(r.time_us, 4)} | "
                      f"{fmt(100 * r.cv, 2) + '%' if r.cv is not None else '-'} | "
                      f"{fmt(c.get('GB/s'), 4)} | {fmt(c.get('pct_of_peak'), 3)} | "
                      f"{fmt(unf / r.time_us) if unf else '-'} | "
                      f"{fmt(r.time_us / best) if best else '-'} | {fmt(r.max_abs)} | "
                      f"{fmt(r.rel_l2)} | {r.error_from or '-'} |\n")
        for i, note in enumerate(notes, 1):
            out.write(f"\n[{i}] {note}\n")
        stages = [t(rs, p) for p in ("qk", "softmax", "pv")]
        if all(stages):
            out.write(f"\nqk + softmax + pv timed one by one: {fmt(sum(stages), 4)} us "
                      f"(unfused, back to back: {fmt(unf, 4)} us).\n")
        for r in skipped:
            out.write(f"\n- not timed: {r.path} {r.impl}: {r.error or 'no measurement'}")
        if skipped:
            out.write("\n")
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
