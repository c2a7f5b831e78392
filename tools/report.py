#!/usr/bin/env python3
"""Plots of one results folder (results/<gpu>/), written beside it as PNG files with report.md.

usage: report.py RESULTS_DIR [--out DIR]

Reads what the folder holds (each plot is skipped, with a line saying why, when its input is
missing):
  accuracy.jsonl        -> accuracy_vs_window.png: the output error of each path against the
                           window, fp32 and fp16 accumulation, with the per-element budget (the
                           bound) and the precision model's prediction for the kernel's order
  bench.json (+ peers.json) -> bandwidth.png: % of the streaming-read and copy peaks per shape,
                           attnscope's paths beside PyTorch's backends
                        -> fused_vs_unfused.png: unfused time over fused time per shape
  tuning.json (or tuning/tuning.json) + tuning/bench_tune.json -> tuning.png: time over the best count, per shape
                           and split count, the heuristic's count marked
"""
import argparse
import json
import math
import os
import re
import sys
from collections import OrderedDict, defaultdict

plt = None  # matplotlib.pyplot, loaded once the arguments are known to be good


def load_matplotlib():
    global plt
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        sys.exit("report.py: matplotlib is needed (Debian: apt-get install python3-matplotlib)")
    plt = pyplot


def number(v):
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return math.nan
    return math.nan


def read_jsonl(path):
    out = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"report.py: {path}:{i}: not JSON ({e})")
    return out


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"report.py: {path}: {e}")


# ---- accuracy -------------------------------------------------------------------------------

def accuracy_plot(records, out):
    """Window sweep: fp16 inputs, normal data, bhsd, group 4, one query, batch 1, head_dim 128."""
    sweep = [r for r in records
             if r.get("input") == "fp16" and r.get("distribution") == "normal" and r.get("layout") == "bhsd"
             and r.get("group") == 4 and r.get("q_len") == 1 and r.get("batch") == 1
             and r.get("head_dim") == 128 and r.get("family") == "attnscope"]
    paths = [p for p in ("unfused", "fused", "split_kv") if any(r["path"] == p for r in sweep)]
    accs = [a for a in ("fp32", "fp16") if any(r["accumulation"] == a for r in sweep)]
    if not paths or not accs:
        return "no window sweep in the accuracy records"
    fig, axes = plt.subplots(len(accs), len(paths), figsize=(4.2 * len(paths), 3.4 * len(accs)),
                             squeeze=False, sharex=True)
    for i, acc in enumerate(accs):
        for j, path in enumerate(paths):
            ax = axes[i][j]
            rows = sorted((r for r in sweep if r["path"] == path and r["accumulation"] == acc),
                          key=lambda r: r["window"])
            w = [r["window"] for r in rows]
            ax.plot(w, [number(r.get("attn_out_max_abs")) for r in rows], "o", color="C0",
                    label="measured max |error|")
            ax.plot(w, [number(r.get("attn_out_budget_max")) for r in rows], "-", color="C3",
                    label="budget (bound), largest element")
            pred = [number(r.get("attn_out_model_predicted_max_abs")) for r in rows]
            pred = [p if p > 0 else math.nan for p in pred]  # log axes: a zero prediction is not drawn
            if any(not math.isnan(p) for p in pred):
                ax.plot(w, pred, "--", color="C2", label="precision model, predicted max |error|")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{path}, {acc} accumulation", fontsize=10)
            ax.grid(True, which="major", alpha=0.3)
            if i == len(accs) - 1:
                ax.set_xlabel("window (keys)")
            if j == 0:
                ax.set_ylabel("attn_out absolute error")
    handles, labels = [], []
    for ax in axes.flat:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle("Output error against the window (fp16 in and out, head_dim 128, GQA group 4)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return None


# ---- benchmarks -----------------------------------------------------------------------------

NAME = re.compile(r"^(?P<path>[a-z_]+)/impl:(?P<impl>[^/]+)/(?P<shape>.*?)(/manual_time)?$")


def medians(doc):
    out = OrderedDict()
    for b in doc.get("benchmarks", []):
        if b.get("aggregate_name") != "median" or b.get("error_occurred"):
            continue
        m = NAME.match(b.get("run_name", b.get("name", "")))
        if not m:
            continue
        out.setdefault(m.group("shape"), OrderedDict())[(m.group("path"), m.group("impl"))] = b
    return out


def short_shape(shape):
    f = dict(kv.split(":", 1) for kv in shape.split("/") if ":" in kv)
    text = f"b{f.get('b')} {f.get('qh')}/{f.get('kvh')} w{int(f.get('window', 0)) // 1024 or f.get('window')}"
    if int(f.get("window", 0)) >= 1024:
        text += "K"
    return text


def bandwidth_plots(bench, peers, out_bw, out_ratio):
    ctx = bench.get("context", {})
    read_peak = number(ctx.get("peak_read_GBps"))
    copy_peak = number(ctx.get("peak_copy_GBps"))
    table = medians(bench)
    if peers:
        for shape, v in medians(peers).items():
            table.setdefault(shape, OrderedDict()).update(v)
    shapes = [s for s, v in table.items() if ("fused", "attnscope.fused") in v]
    if not shapes:
        return "no attnscope.fused benchmarks", "no attnscope.fused benchmarks"
    series = [("fused", "attnscope.fused", "attnscope fused"), ("split_kv", "attnscope.split_kv", "attnscope split_kv"),
              ("unfused", "attnscope", "attnscope unfused"), ("fused", "torch.cudnn", "PyTorch cuDNN"),
              ("fused", "torch.flash", "PyTorch flash"), ("fused", "torch.efficient", "PyTorch efficient"),
              ("unfused", "torch.unfused", "PyTorch unfused")]
    series = [s for s in series if any((s[0], s[1]) in table[sh] for sh in shapes)]

    def gbps(b):
        return number(b.get("bytes")) / (number(b["real_time"]) * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b.get("time_unit", "ns")]) / 1e9

    fig, axes = plt.subplots(2, 1, figsize=(max(10, 0.75 * len(shapes) + 3), 8), sharex=True)
    width = 0.8 / len(series)
    x = range(len(shapes))
    for k, (path, impl, label) in enumerate(series):
        for ax, peak in ((axes[0], read_peak), (axes[1], copy_peak)):
            ys = []
            for sh in shapes:
                b = table[sh].get((path, impl))
                ys.append(100.0 * gbps(b) / peak if b is not None and peak > 0 else 0.0)
            ax.bar([i + (k - (len(series) - 1) / 2) * width for i in x], ys, width, label=label,
                   color=f"C{k}")
    axes[0].set_ylabel(f"% of read peak ({read_peak:.0f} GB/s)")
    axes[1].set_ylabel(f"% of copy peak ({copy_peak:.0f} GB/s)")
    for ax in axes:
        ax.axhline(100, color="k", lw=0.8)
        ax.grid(True, axis="y", alpha=0.3)
    axes[1].set_xticks(list(x))
    axes[1].set_xticklabels([short_shape(s) for s in shapes], rotation=45, ha="right", fontsize=8)
    axes[0].legend(fontsize=8, ncol=4, loc="upper left")
    fig.suptitle(f"Decode attention bandwidth, {ctx.get('gpu', '')} (bytes each path must move, cold L2)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out_bw, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(10, 0.6 * len(shapes) + 3), 4))
    pairs = [(("unfused", "attnscope"), ("fused", "attnscope.fused"), "attnscope unfused / fused"),
             (("unfused", "torch.unfused"), ("fused", "torch.cudnn"), "PyTorch unfused / cuDNN")]
    for k, (num, den, label) in enumerate(pairs):
        ys = []
        for sh in shapes:
            a, b = table[sh].get(num), table[sh].get(den)
            ys.append(number(a["real_time"]) / number(b["real_time"]) if a and b else 0.0)
        if any(ys):
            ax.bar([i + (k - 0.5) * 0.4 for i in x], ys, 0.4, label=label, color=f"C{k + 2}")
    ax.axhline(1, color="k", lw=0.8)
    ax.set_ylabel("time ratio")
    ax.set_xticks(list(x))
    ax.set_xticklabels([short_shape(s) for s in shapes], rotation=45, ha="right", fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("Unfused over fused: the cost of the score traffic between stages", fontsize=11)
    fig.tight_layout()
    fig.savefig(out_ratio, dpi=110)
    plt.close(fig)
    return None, None


# ---- tuning ---------------------------------------------------------------------------------

def tuning_plot(tune_bench, tuning, out):
    times = defaultdict(dict)
    for b in tune_bench.get("benchmarks", []):
        if b.get("aggregate_name") != "median" or b.get("error_occurred"):
            continue
        name = b.get("run_name", b.get("name", "")).replace("/manual_time", "")
        m = re.search(r"/splits:(\d+)", name)
        if not m or int(m.group(1)) == 0:  # 0: the kernel's own choice, marked from tuning.json
            continue
        shape = re.sub(r"/splits:\d+", "", name)
        times[shape][int(m.group(1))] = number(b["real_time"])
    # tuning.json (tools/tune_report.py): per shape the best count and the heuristic's own.
    chosen, own = {}, {}
    for r in tuning:
        if isinstance(r, dict) and "shape" in r and isinstance(r.get("heuristic"), dict) and isinstance(r.get("best"), dict):
            chosen[r["shape"]] = int(r["heuristic"]["splits"])
            own[r["shape"]] = number(r["heuristic"]["median_us"]) / number(r["best"]["median_us"])
    if not times:
        return "no split-count benchmarks in the tune file"
    shapes = list(times)
    counts = sorted({s for v in times.values() for s in v})
    grid = []
    for sh in shapes:
        best = min(times[sh].values())
        grid.append([times[sh][c] / best if c in times[sh] else math.nan for c in counts])
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(counts), 1.2 + 0.35 * len(shapes)))
    im = ax.imshow([[math.log2(v) if v == v else math.nan for v in row] for row in grid], cmap="viridis_r",
                   aspect="auto", vmin=0, vmax=2)
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if v == v:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="w" if v > 1.8 else "k")
    for i, sh in enumerate(shapes):
        if chosen.get(sh) in counts:
            j = counts.index(chosen[sh])
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="r", lw=1.5))
    ax.set_xticks(range(len(counts)))
    ax.set_xticklabels([str(c) for c in counts], fontsize=8)
    ax.set_yticks(range(len(shapes)))
    ax.set_yticklabels([short_shape(s.split("/impl:")[-1].split("/", 1)[-1]) +
                        (f"  (own {chosen[s]}: {own[s]:.2f})" if s in chosen else "") for s in shapes], fontsize=8)
    ax.set_xlabel("split count")
    cb = fig.colorbar(im, ax=ax)
    cb.set_label("log2(time / best count's)")
    ax.set_title("split_kv time over the best count; red and (own N: time / best): the heuristic's", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="a results folder, e.g. results/nvidia-h200")
    ap.add_argument("--out", help="where the PNGs and report.md go (default: the results folder)")
    a = ap.parse_args()
    src = a.results
    if not os.path.isdir(src):
        sys.exit(f"report.py: {src}: not a folder")
    load_matplotlib()
    out = a.out or src
    os.makedirs(out, exist_ok=True)
    made, skipped = [], []

    def note(name, why):
        (skipped.append(f"{name}: {why}") if why else made.append(name))

    acc = os.path.join(src, "accuracy.jsonl")
    if os.path.exists(acc):
        note("accuracy_vs_window.png", accuracy_plot(read_jsonl(acc), os.path.join(out, "accuracy_vs_window.png")))
    else:
        skipped.append("accuracy_vs_window.png: no accuracy.jsonl")
    bench = os.path.join(src, "bench.json")
    if os.path.exists(bench):
        peers_path = os.path.join(src, "peers.json")
        peers = read_json(peers_path) if os.path.exists(peers_path) else None
        w1, w2 = bandwidth_plots(read_json(bench), peers, os.path.join(out, "bandwidth.png"),
                                 os.path.join(out, "fused_vs_unfused.png"))
        note("bandwidth.png", w1)
        note("fused_vs_unfused.png", w2)
    else:
        skipped += ["bandwidth.png: no bench.json", "fused_vs_unfused.png: no bench.json"]
    # The tuning summary sits in the results folder (tuning.json) or, as earlier runs kept it,
    # beside the tune run's own files in tuning/.
    tb = os.path.join(src, "tuning", "bench_tune.json")
    tj = os.path.join(src, "tuning.json")
    if not os.path.exists(tj):
        tj = os.path.join(src, "tuning", "tuning.json")
    if os.path.exists(tb) and os.path.exists(tj):
        note("tuning.png", tuning_plot(read_json(tb), read_json(tj), os.path.join(out, "tuning.png")))
    else:
        skipped.append("tuning.png: no tuning/bench_tune.json with tuning.json")

    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(f"# Report of {os.path.normpath(src)}\n\n")
        for name in made:
            f.write(f"![{name}]({name})\n\n")
        for s in skipped:
            f.write(f"- not drawn: {s}\n")
    for name in made:
        print(f"report.py: wrote {os.path.join(out, name)}")
    for s in skipped:
        print(f"report.py: not drawn: {s}")
    print(f"report.py: wrote {os.path.join(out, 'report.md')}")


if __name__ == "__main__":
    main()
