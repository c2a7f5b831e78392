#!/usr/bin/env python3
"""Summarizes an accuracy-suite JSON Lines file as a Markdown report."""
import json
import sys


# Fields every record of the accuracy suite has, which the summary reads.
REQUIRED = ("case", "pass", "path", "accumulation", "window", "gpu", "gpu_arch", "commit")


NONFINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def numbers(r):
    """The record with its non-finite metrics (written as the strings nan, inf, -inf) as floats."""
    return {k: NONFINITE.get(v, v) if isinstance(v, str) else v for k, v in r.items()}


def load(path):
    records = []
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        sys.exit(f"{path}: cannot read: {e.strerror}")
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: bad record: {e}")
            if not isinstance(r, dict):
                sys.exit(f"{path}:{n}: not an accuracy record (a JSON object)")
            missing = [k for k in REQUIRED if k not in r]
            if missing:
                sys.exit(f"{path}:{n}: not an accuracy-suite record: no {', '.join(missing)}")
            records.append(numbers(r))
    if not records:
        sys.exit(f"{path}: no records")
    seen = {}
    for n, r in enumerate(records, 1):
        name = r.get("case")
        if name in seen:
            sys.exit(f"{path}: case {name} is recorded twice (records {seen[name]} and {n}): the file "
                     "holds more than one run; write each run to its own file (attnscope gate "
                     "--jsonl and accuracy_suite replace theirs)")
        seen[name] = n
    return records


def g(v):
    return f"{v:.3g}" if isinstance(v, (int, float)) else str(v)


def model_figure(r):
    """The precision model's max_abs on the same inputs, where the record has one."""
    for key in ("attn_out_model_predicted_max_abs", "pv_local_model_predicted_max_abs", "model_pv_max_abs"):
        if key in r:
            return r[key]
    return "-"


def is_base(r):
    """The base shape of the window sweep (see accuracy/cases.cpp)."""
    return (r["head_dim"] == 128 and r["input"] == "fp16" and r["distribution"] == "normal"
            and r["layout"] == "bhsd" and r["layers"] == 1 and r["group"] == 4 and r["q_len"] == 1
            and r["batch"] == 1 and "seq_capacity" not in r and not r["case"].endswith("_scale_softmax"))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: summarize_accuracy.py accuracy.jsonl")
    rs = load(sys.argv[1])
    passed = sum(1 for r in rs if r["pass"])
    print(f"# Accuracy suite on {rs[0]['gpu']} ({rs[0]['gpu_arch']}), commit {rs[0]['commit']}\n")
    print(f"{len(rs)} cases run, {passed} passed, {len(rs) - passed} failed. "
          "Budget: per-element probabilistic bound (Higham & Mary, lambda 6) at the kernel's "
          "summation depth; error/budget <= 1 passes.\n")
    fails = [r for r in rs if not r["pass"]]
    if fails:
        print("## Failures\n\n| case | first stage out of budget | attn_out error/budget |\n|---|---|---|")
        for r in fails:
            print(f"| {r['case']} | {r.get('first_failing_stage')} | {g(r.get('attn_out_budget_ratio'))} |")
        print()

    print("## Window sweep (base shape: group 4, head_dim 128, fp16 in/out, normal data)\n")
    print("| path | acc | window | attn_out max_abs | attn_out rel_l2 | max ulp | error/budget | "
          "qk max_diff | softmax max_diff | pv max_diff | precision model |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted((r for r in rs if is_base(r)), key=lambda r: (r["path"], r["accumulation"], r["window"])):
        print(f"| {r['path']} | {r['accumulation']} | {r['window']} | {g(r['attn_out_max_abs'])} | "
              f"{g(r['attn_out_rel_l2'])} | {g(r['attn_out_max_ulp'])} | {g(r['attn_out_budget_ratio'])} | "
              f"{g(r.get('qk_max_diff', '-'))} | {g(r.get('softmax_max_diff', '-'))} | "
              f"{g(r.get('pv_max_diff', '-'))} | {g(model_figure(r))} |")
    print()

    print("## Target: fp32 accumulation, fp16 output, fused and split_kv\n")
    print("Within 1 ulp of the correctly rounded reference for every element, and rel_l2 within 5% "
          "of the rounded reference's own.\n")
    print("| case | max ulp vs rounded reference | rel_l2 / rounded rel_l2 | met |")
    print("|---|---|---|---|")
    hits = total = 0
    for r in rs:
        if r["path"] in ("fused", "split_kv") and r["accumulation"] == "fp32" and r["output"] == "fp16":
            ok = r["max_ulp_vs_rounded_reference"] <= 1.0 and r["rel_l2_over_rounded"] <= 1.05
            total += 1
            hits += ok
            print(f"| {r['case']} | {g(r['max_ulp_vs_rounded_reference'])} | "
                  f"{r['rel_l2_over_rounded']:.4f} | {'yes' if ok else 'no'} |")
    print(f"\nTarget met in {hits} of {total} cases.\n")

    print("## Fused against unfused on the same inputs (attn_out max_abs)\n")
    print("| case | fused/split_kv | unfused |\n|---|---|---|")
    for r in rs:
        if r["path"] != "unfused":
            print(f"| {r['case']} | {g(r['attn_out_max_abs'])} | {g(r['unfused_attn_out_max_abs'])} |")
    print()

    print("## All cases\n\n| case | pass | attn_out error/budget | seconds |\n|---|---|---|---|")
    for r in rs:
        print(f"| {r['case']} | {'yes' if r['pass'] else 'NO'} | {g(r['attn_out_budget_ratio'])} | "
              f"{g(r['seconds'])} |")


if __name__ == "__main__":
    main()
