#!/usr/bin/env python3
"""PyTorch as a peer of attnscope's attention benchmarks, measured the same way.

Runs torch.nn.functional.scaled_dot_product_attention with each backend PyTorch offers (flash,
cuDNN, memory-efficient, math) and an unfused PyTorch path (matmul, softmax, matmul) on the decode
shapes of bench_attention: q [batch, q_heads, 1, head_dim], K/V [batch, kv_heads, window, head_dim].
Timing follows bench/harness.cpp: CUDA events around the timed call, warm-up first, the L2 cache
overwritten (twice its size) before each iteration outside the timed region, the stream held
ahead of the start event so that launch latency stays out, the median and the coefficient of
variation over repetitions. Byte and FLOP counts are the harness's, and percent of peak is taken
against a device-to-device copy measured here the same way. Each peer's output is also compared
with an FP64 reference computed with torch from the same inputs (max_abs, mae, rel_l2).

Output: Google Benchmark's JSON layout, names spelled as bench_attention spells them with
impl:torch.flash, torch.cudnn, torch.efficient, torch.math and torch.unfused, so
tools/bench_report.py reads both files alike. A backend that fails on a shape is recorded with
error_occurred and the reason, never silently dropped.

Usage:
  python3 bench/peers/torch_sdpa.py --out peers.json [--set quick|default|full]
      [--shapes-from attnscope.json] [--filter REGEX] [--repetitions 10] [--hot]
"""
import argparse
import datetime
import json
import math
import os
import re
import statistics
import sys
import time
import warnings

# The shapes of bench/bench_attention.cpp (make_shapes); keep the two in step.
DEBUG = dict(batch=1, q_heads=1, kv_heads=1, window=64)


def llama(batch, window):
    return dict(batch=batch, q_heads=32, kv_heads=8, window=window)


def mha(batch, window):
    return dict(batch=batch, q_heads=32, kv_heads=32, window=window)


def shape(**kw):
    s = dict(batch=1, q_heads=32, kv_heads=8, window=4096, head_dim=128, input="fp16",
             accum="fp32", layout="bhsd", page=16, q_len=1, v_dim=0)
    s.update(kw)
    s.setdefault("output", s["input"])
    return s


def mla(heads, batch, window, **kw):
    """A latent (MLA) cache, DeepSeek-V3: one 576-wide row a position, V its first 512."""
    return shape(batch=batch, q_heads=heads, kv_heads=1, window=window, head_dim=576, v_dim=512,
                 **kw)


def make_shapes(set_name):
    if set_name == "quick":
        return [shape(**DEBUG), shape(**llama(1, 4096)), shape(**mha(1, 4096))]
    out = [shape(**DEBUG)]
    out += [shape(**llama(b, w)) for b in (1, 16, 64) for w in (1024, 4096, 32768, 131072)]
    out += [shape(**mha(b, w)) for b in (1, 8) for w in (4096, 8192)]
    out.append(shape(**mha(16, 4096), head_dim=96))  # Phi-3-mini
    out += [mla(128, 64, 4096), mla(128, 16, 32768), mla(128, 1, 32768), mla(16, 64, 4096)]
    if set_name != "full":
        return out
    for base in (llama(1, 4096), llama(16, 32768)):
        out.append(shape(**base, accum="fp16"))
        out.append(shape(**base, input="bf16"))
        out += [shape(**base, head_dim=d) for d in (64, 96, 192, 256)]
        out += [shape(**base, layout=k) for k in ("bshd", "paged")]
        out += [shape(**{**base, "kv_heads": kvh}) for kvh in (32, 16, 4)]
    out += [shape(**llama(1, w), accum="fp16") for w in (1024, 32768, 131072)]
    return out


KEYS = {"acc": "accum", "in": "input", "out": "output", "d": "head_dim", "b": "batch",
        "qh": "q_heads", "kvh": "kv_heads", "q": "q_len", "window": "window", "layout": "layout",
        "page": "page"}
INT_KEYS = {"head_dim", "batch", "q_heads", "kv_heads", "q_len", "window", "page"}


def parse_name(name):
    """The path and the key:value fields of a benchmark name."""
    parts = name.split("/")
    fields = {}
    for p in parts[1:]:
        if ":" in p:
            k, v = p.split(":", 1)
            fields[k] = v
    return parts[0], fields


def shapes_from(path):
    """The shapes of an attnscope benchmark JSON file, in the order they appear."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    seen, out = set(), []
    for b in data.get("benchmarks", []):
        if "/ragged:" in b.get("run_name", b["name"]):
            continue  # SDPA takes dense batches: a ragged one has no peer here
        if "/kv:" in b.get("run_name", b["name"]):
            continue  # an fp8 KV cache: SDPA takes fp16/bf16 K and V, no peer here
        _, fields = parse_name(b.get("run_name", b["name"]))
        kw = {}
        for k, v in fields.items():
            if k in KEYS:
                kw[KEYS[k]] = int(v) if KEYS[k] in INT_KEYS else v
        if "latent" in fields:  # "/latent:v512": V is the first 512 channels of the rows
            kw["v_dim"] = int(fields["latent"][1:])
        s = shape(**kw)
        key = tuple(sorted(s.items()))
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def bench_name(path, impl, s, hot):
    """bench_attention's BenchCase::name()."""
    n = (f"{path}/impl:{impl}/acc:{s['accum']}/in:{s['input']}/d:{s['head_dim']}/b:{s['batch']}"
         f"/qh:{s['q_heads']}/kvh:{s['kv_heads']}/q:{s['q_len']}/window:{s['window']}"
         f"/layout:{s['layout']}")
    if s["layout"] == "paged":
        n += f"/page:{s['page']}"
    if s["output"] != s["input"]:
        n += f"/out:{s['output']}"
    if s["v_dim"]:
        n += f"/latent:v{s['v_dim']}"
    if hot:
        n += "/l2:hot"
    return n


SIZE = {"fp16": 2, "bf16": 2, "fp32": 4}


def traffic(path, s):
    """bench/harness.cpp traffic(): the buffers a path reads and writes, once each, as
    (name, bytes, written) triples, and its FLOPs."""
    span = s["window"] + s["q_len"] - 1
    rows = s["batch"] * s["q_heads"] * s["q_len"]
    score_elems = rows * s["window"]
    dv = s["v_dim"] or s["head_dim"]
    q = rows * s["head_dim"] * SIZE[s["input"]]
    kv = s["batch"] * s["kv_heads"] * span * s["head_dim"] * SIZE[s["input"]]
    scores = score_elems * 4
    out = rows * dv * SIZE[s["output"]]
    lse = rows * 4
    dot = 2.0 * score_elems * s["head_dim"]
    pv = 2.0 * score_elems * dv
    softmax = 5.0 * score_elems
    if path == "unfused":
        return ([("qk.q", q, False), ("qk.k", kv, False), ("qk.scores", scores, True),
                 ("softmax.scores", scores, False), ("softmax.probs", scores, True),
                 ("softmax.lse", lse, True),
                 ("pv.probs", scores, False), ("pv.v", kv, False), ("pv.out", out, True)],
                dot + pv + softmax)
    if s["v_dim"]:  # a latent cache, read once as K and as V
        return ([("q", q, False), ("latent", kv, False), ("out", out, True),
                 ("lse", lse, True)], dot + pv + softmax)
    return ([("q", q, False), ("k", kv, False), ("v", kv, False), ("out", out, True),
             ("lse", lse, True)], dot + pv + softmax)


class Timing:
    """Event timing with bench/harness.cpp's rules."""

    WARMUP_MIN, WARMUP_MAX, WARMUP_MS = 3, 50, 5.0

    def __init__(self, torch, hot, flush_bytes, repetitions, min_time, flush_by_write=False):
        self.torch = torch
        self.hot = hot
        self.flush_by_write = flush_by_write
        self.repetitions = repetitions
        self.min_time = min_time
        self.flush = None if hot else torch.zeros(flush_bytes, dtype=torch.uint8, device="cuda")
        self.start = torch.cuda.Event(enable_timing=True)
        self.stop = torch.cuda.Event(enable_timing=True)
        self.spin_cycles = 0

    def _hold(self):
        # torch.cuda._sleep spins the stream for a number of GPU cycles; where it is missing the
        # launch latency stays in the measurement (recorded in the context).
        if self.spin_cycles > 0 and hasattr(self.torch.cuda, "_sleep"):
            self.torch.cuda._sleep(self.spin_cycles)

    def once(self, fn):
        if self.flush is not None:
            # bench/harness.cpp's flush: a read leaves L2 clean; an overwrite leaves dirty lines
            # whose write-back falls in the timed region.
            if self.flush_by_write:
                self.flush.zero_()
            else:
                self.flush.view(self.torch.int64).sum()
        self._hold()
        self.start.record()
        fn()
        self.stop.record()
        self.stop.synchronize()
        return self.start.elapsed_time(self.stop)  # ms

    def measure(self, fn):
        """Median and cv (over repetitions) of the mean time per call, in microseconds."""
        torch = self.torch
        # Host time to enqueue one call sets the spin: three times it, at an assumed 1.5 GHz.
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        host_s = time.perf_counter() - t0
        torch.cuda.synchronize()
        self.spin_cycles = int(min(3.0 * host_s + 20e-6, 2e-3) * 1.5e9)
        warm, n = 0.0, 0
        while n < self.WARMUP_MAX and (n < self.WARMUP_MIN or warm < self.WARMUP_MS):
            warm += self.once(fn)
            n += 1
        per_call_ms = max(warm / n, 1e-4)
        # Iterations per repetition as Google Benchmark picks them: enough to reach min_time.
        iters = max(1, min(10000, math.ceil(self.min_time * 1e3 / per_call_ms)))
        reps = []
        for _ in range(self.repetitions):
            reps.append(1e3 * sum(self.once(fn) for _ in range(iters)) / iters)
        return reps, iters


def measure_peak(torch, reps=10):
    """Copy bandwidth as bench_attention measures it: (read + write bytes) / median time."""
    free, _ = torch.cuda.mem_get_info()
    n = min(1 << 30, free // 4) // (1 << 20) * (1 << 20)
    src = torch.full((n,), 0x3C, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ms = []
    hold = getattr(torch.cuda, "_sleep", None)
    for _ in range(reps):
        if hold is not None:  # the stream held while the copy is enqueued, as Timing holds it
            hold(int(2e-4 * 1.5e9))
        start.record()
        dst.copy_(src)
        stop.record()
        stop.synchronize()
        ms.append(start.elapsed_time(stop))
    del src, dst
    torch.cuda.empty_cache()
    return 2.0 * n / (statistics.median(ms) * 1e-3) / 1e9, n, reps


class Inputs:
    """q, K and V of one shape on the GPU, and the FP64 reference output."""

    def __init__(self, torch, s, seed=20261126):
        dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[s["input"]]
        g = torch.Generator(device="cuda")
        g.manual_seed(seed)
        b, qh, kvh, w, d = s["batch"], s["q_heads"], s["kv_heads"], s["window"], s["head_dim"]
        self.q = torch.randn(b, qh, 1, d, dtype=dt, device="cuda", generator=g)  # [b, qh, 1, d]
        if s["v_dim"]:
            # A latent cache [b, 1, w, 576]: K is the rows, V a view of their first v_dim
            # channels (the same memory, as MLA kernels read it).
            self.k = torch.randn(b, kvh, w, d, dtype=dt, device="cuda", generator=g)
            self.v = self.k[..., :s["v_dim"]]
            self.scale = 1.0 / math.sqrt(192.0)  # DeepSeek-V3's, as attnscope's MLA shapes
            self.ref = None
            return
        if s["layout"] == "bshd":
            # Stored [b, w, kvh, d]; the attention sees a strided [b, kvh, w, d] view.
            self.k = torch.randn(b, w, kvh, d, dtype=dt, device="cuda", generator=g).transpose(1, 2)
            self.v = torch.randn(b, w, kvh, d, dtype=dt, device="cuda", generator=g).transpose(1, 2)
        else:
            self.k = torch.randn(b, kvh, w, d, dtype=dt, device="cuda", generator=g)  # [b, kvh, w, d]
            self.v = torch.randn(b, kvh, w, d, dtype=dt, device="cuda", generator=g)
        self.scale = 1.0 / math.sqrt(d)
        self.ref = None

    def reference(self, torch):
        """softmax(q K^T * scale) V in float64, one batch element at a time: [b, qh, 1, d]."""
        if self.ref is None:
            b, qh, _, d = self.q.shape
            kvh = self.k.shape[1]
            dv = self.v.shape[-1]
            g = qh // kvh
            out = torch.empty(b, qh, 1, dv, dtype=torch.float64, device="cuda")
            for i in range(b):
                q = self.q[i].double().reshape(kvh, g, d)  # [kvh, g, d]
                k = self.k[i].double()  # [kvh, w, d]
                p = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
                del k
                out[i] = torch.matmul(p, self.v[i].double()).reshape(qh, 1, dv)
            self.ref = out
        return self.ref


def errors(torch, out, ref):
    diff = (out.double() - ref).abs()
    return {"max_abs": diff.max().item(), "mae": diff.mean().item(),
            "rel_l2": (torch.linalg.vector_norm(out.double() - ref)
                       / torch.linalg.vector_norm(ref)).item()}


def gqa_call(torch, F, backend_ctx, enable_gqa_ok):
    """A callable running SDPA under one backend, GQA native or by expanding K/V untimed."""

    def make(inp, expand=False):
        q, k, v = inp.q, inp.k, inp.v
        group = q.shape[1] // k.shape[1]
        kwargs = {}
        if group > 1:
            if enable_gqa_ok and not expand:
                kwargs["enable_gqa"] = True
            else:
                k = k.repeat_interleave(group, dim=1)
                v = v.repeat_interleave(group, dim=1)

        if inp.scale != 1.0 / math.sqrt(q.shape[-1]):
            kwargs["scale"] = inp.scale

        def call():
            with backend_ctx():
                return F.scaled_dot_product_attention(q, k, v, **kwargs)

        return call

    return make


def unfused_call(torch):
    def make(inp, expand=False):  # GQA without expanding K/V in any case
        q, k, v, scale = inp.q, inp.k, inp.v, inp.scale
        b, qh, _, d = q.shape
        kvh = k.shape[1]
        qg = q.reshape(b, kvh, qh // kvh, d)  # [b, kvh, group, d]: GQA without copying K/V

        def call():
            s = torch.matmul(qg, k.transpose(-1, -2))  # [b, kvh, group, w]
            p = torch.softmax(s.float() * scale, dim=-1)  # fp32 probabilities
            return torch.matmul(p.to(q.dtype), v).reshape(b, qh, 1, v.shape[-1])

        return call

    return make


def first_call(call):
    """Runs call once. PyTorch says why a backend declined a shape in warnings, then raises a
    bare "No available kernel": the reasons are added to the exception's message."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return call()
        except RuntimeError as e:
            why = [str(w.message).split(" (Triggered")[0] for w in caught]
            if why:
                raise RuntimeError(f"{str(e).splitlines()[0]} ({'; '.join(why)})") from e
            raise


def aggregate_entries(name, reps, iters, counters, extra):
    """Google Benchmark's layout: one entry per repetition, then mean, median, stddev and cv."""
    run_name = name + "/manual_time"
    base = {"run_name": run_name, "repetitions": len(reps), "threads": 1, "time_unit": "us"}
    entries = []
    for i, t in enumerate(reps):
        e = dict(base, name=run_name, run_type="iteration", repetition_index=i, iterations=iters,
                 real_time=t, cpu_time=t)
        e.update(counters(t))
        e.update(extra)
        entries.append(e)
    mean = statistics.fmean(reps)
    stdev = statistics.stdev(reps) if len(reps) > 1 else 0.0
    for agg, unit, t in (("mean", "time", mean), ("median", "time", statistics.median(reps)),
                         ("stddev", "time", stdev), ("cv", "percentage", stdev / mean if mean else 0.0)):
        e = dict(base, name=f"{run_name}_{agg}", run_type="aggregate", aggregate_name=agg,
                 aggregate_unit=unit, iterations=len(reps), real_time=t, cpu_time=t)
        if agg in ("mean", "median"):
            e.update(counters(t))
            e.update(extra)
        entries.append(e)
    return entries


def error_entry(name, message):
    run_name = name + "/manual_time"
    return {"name": run_name, "run_name": run_name, "run_type": "iteration", "repetitions": 1,
            "repetition_index": 0, "threads": 1, "error_occurred": True,
            "error_message": message, "iterations": 0, "real_time": 0.0, "cpu_time": 0.0,
            "time_unit": "us"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--set", default=os.environ.get("ATTNSCOPE_BENCH_SET", "default"),
                    choices=("quick", "default", "full"))
    ap.add_argument("--shapes-from", help="take the shapes of this bench_attention JSON file")
    ap.add_argument("--filter", default="", help="regular expression on benchmark names")
    ap.add_argument("--repetitions", type=int, default=10)
    ap.add_argument("--min-time", type=float, default=0.01, help="seconds of GPU time a repetition")
    ap.add_argument("--hot", action="store_true",
                    default=os.environ.get("ATTNSCOPE_BENCH_HOT", "0") == "1",
                    help="keep L2 warm between iterations")
    ap.add_argument("--flush", choices=("read", "write"),
                    default=os.environ.get("ATTNSCOPE_BENCH_FLUSH") or "read",
                    help="evict L2 by reading the flush buffer (L2 left clean) or overwriting it")
    ap.add_argument("--no-errors", action="store_true", help="skip the FP64 reference")
    args = ap.parse_args()

    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        sys.exit(f"torch_sdpa: PyTorch is not installed ({e}); nothing measured")
    if not torch.cuda.is_available():
        sys.exit("torch_sdpa: PyTorch sees no GPU; nothing measured")

    dev = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(dev)
    l2 = int(getattr(props, "L2_cache_size", 0)) or (64 << 20)
    peak, peak_bytes, peak_reps = measure_peak(torch)
    if args.flush not in ("read", "write"):
        print(f"torch_sdpa: ATTNSCOPE_BENCH_FLUSH: '{args.flush}' is not one of read, write",
              file=sys.stderr)
        sys.exit(2)
    timing = Timing(torch, args.hot, 2 * l2, args.repetitions, args.min_time,
                    args.flush == "write")

    backends = []
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        for label, attr in (("torch.flash", "FLASH_ATTENTION"), ("torch.cudnn", "CUDNN_ATTENTION"),
                            ("torch.efficient", "EFFICIENT_ATTENTION"), ("torch.math", "MATH")):
            if hasattr(SDPBackend, attr):
                be = getattr(SDPBackend, attr)
                backends.append((label, (lambda be=be: sdpa_kernel(be))))
    except ImportError:
        # Before PyTorch 2.3: the older context manager, one flag per backend.
        flags = {"torch.flash": dict(enable_flash=True, enable_math=False, enable_mem_efficient=False),
                 "torch.efficient": dict(enable_flash=False, enable_math=False, enable_mem_efficient=True),
                 "torch.math": dict(enable_flash=False, enable_math=True, enable_mem_efficient=False)}
        for label, kw in flags.items():
            backends.append((label, (lambda kw=kw: torch.backends.cuda.sdp_kernel(**kw))))
    try:
        import inspect
        enable_gqa_ok = "enable_gqa" in inspect.signature(F.scaled_dot_product_attention).parameters
    except (TypeError, ValueError):
        enable_gqa_ok = False
    if not enable_gqa_ok:
        try:
            z = torch.zeros(1, 2, 1, 64, device="cuda", dtype=torch.float16)
            F.scaled_dot_product_attention(z, z[:, :1], z[:, :1], enable_gqa=True)
            enable_gqa_ok = True
        except (TypeError, RuntimeError):
            pass

    peers = [(label, "fused", gqa_call(torch, F, ctx, enable_gqa_ok)) for label, ctx in backends]
    peers.append(("torch.unfused", "unfused", unfused_call(torch)))

    shapes = shapes_from(args.shapes_from) if args.shapes_from else make_shapes(args.set)
    filt = re.compile(args.filter) if args.filter else None
    entries = []
    for s in shapes:
        names = {label: bench_name(path, label, s, args.hot) for label, path, _ in peers}
        todo = [p for p in peers if filt is None or filt.search(names[p[0]])]
        if not todo:
            continue
        why_not = None
        if s["accum"] != "fp32":
            why_not = "PyTorch attention accumulates in fp32 only"
        elif s["layout"] == "paged":
            why_not = "PyTorch SDPA takes dense K/V, not a paged cache"
        elif s["q_len"] != 1:
            why_not = "the peer runs decode (q_len 1) only"
        elif s["output"] != s["input"]:
            why_not = "PyTorch writes the output in the input dtype"
        if why_not:
            entries += [error_entry(names[label], "not run: " + why_not) for label, _, _ in todo]
            continue
        try:
            inp = Inputs(torch, s)
        except torch.cuda.OutOfMemoryError as e:
            torch.cuda.empty_cache()
            entries += [error_entry(names[label], f"inputs do not fit: {e}".splitlines()[0])
                        for label, _, _ in todo]
            continue
        for label, path, make in todo:
            name = names[label]
            t0 = time.time()
            out = None
            try:
                extra = {}
                call = make(inp)
                try:
                    out = first_call(call)  # a backend unable to run the shape raises here
                except RuntimeError as e:
                    # Some backends take no enable_gqa: give them K/V expanded to every query
                    # head, outside the timed region (they then read group times the bytes).
                    if path != "fused" or not enable_gqa_ok or s["q_heads"] == s["kv_heads"]:
                        raise
                    call = None
                    torch.cuda.empty_cache()
                    call = make(inp, expand=True)
                    out = first_call(call)
                    extra["label"] = (f"K/V expanded to {s['q_heads']} heads outside the timed "
                                      f"region (with enable_gqa: {str(e)[:300]})")
                torch.cuda.synchronize()
                err = {}
                if not args.no_errors:
                    err = errors(torch, out, inp.reference(torch))
                del out
                reps, iters = timing.measure(call)
                buffers, flops = traffic(path, s)
                nread = sum(b for _, b, w in buffers if not w)
                nwritten = sum(b for _, b, w in buffers if w)

                def counters(t_us, nread=nread, nwritten=nwritten, flops=flops):
                    nbytes = nread + nwritten
                    gbps = nbytes / (t_us * 1e-6) / 1e9
                    return {"bytes": nbytes, "bytes_read": nread, "bytes_written": nwritten,
                            "GB/s": gbps, "FLOP/s": flops / (t_us * 1e-6),
                            "pct_of_peak": 100.0 * gbps / peak}

                entries += aggregate_entries(name, reps, iters, counters, {**err, **extra})
                print(f"{name}: median {statistics.median(reps):.2f} us "
                      f"({time.time() - t0:.1f} s)", file=sys.stderr, flush=True)
            except Exception as e:  # every backend failure is recorded, and the run goes on
                msg = f"{type(e).__name__}: {e}".strip().splitlines()[0][:800]
                entries.append(error_entry(name, msg))
                print(f"{name}: skipped: {msg}", file=sys.stderr, flush=True)
                out = None
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
        del inp
        torch.cuda.empty_cache()

    context = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "executable": "bench/peers/torch_sdpa.py",
        "gpu": props.name,
        "gpu_multiprocessors": str(props.multi_processor_count),
        "gpu_l2_bytes": str(l2),
        "gpu_memory_bytes": str(props.total_memory),
        "torch_version": torch.__version__,
        "cuda_version": str(torch.version.cuda),
        "cudnn_version": str(torch.backends.cudnn.version()),
        "enable_gqa": "native" if enable_gqa_ok else "K/V expanded outside the timed region",
        "peak_copy_GBps": f"{peak:.1f}",
        "peak_copy_method": f"median of {peak_reps} device-to-device copies of {peak_bytes} "
                            "bytes timed with events, the stream held (torch.cuda._sleep) where "
                            "torch has it; (read + write bytes) / time",
        "l2_mode": "hot" if args.hot else "cold",
        "l2_flush_bytes": "0" if args.hot else str(2 * l2),
        "l2_flush": "none" if args.hot else (
            f"{2 * l2 >> 20} MiB " + ("overwritten (L2 left dirty: its write-back falls in the "
                                      "timed region)" if args.flush == "write"
                                      else "read (L2 left clean)")),
        "bench_set": "from " + args.shapes_from if args.shapes_from else args.set,
        "timing": "CUDA events around the timed call; 3 to 50 warm-up calls (at least 5 ms); "
                  "stream held ahead of each timed region (torch.cuda._sleep)"
                  + ("" if args.hot else "; L2 flushed before each iteration, outside it"),
        "errors": "against softmax(q K^T scale) V in float64 on the GPU from the same inputs",
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"context": context, "benchmarks": entries}, f, indent=1)
    print(f"torch_sdpa: {len(entries)} entries written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
