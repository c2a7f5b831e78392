#!/usr/bin/env python3
"""Writes attention trace points in attnscope's trace format (docs/trace_format.md), for
`attnscope trace check`. Needs numpy only.

    import numpy as np
    from trace_writer import write_safetensors, write_npy_dir, bf16_bits

    meta = {"layout": "bshd", "layer": 3, "seq_len": 4099, "window": 4096,
            "accumulation": "fp32", "engine": "myengine", "step": 0}
    tensors = {"q": q, "k_cache": k_cache, "v_cache": v_cache, "out": out, "lse": lse}
    write_safetensors("step0_layer3.safetensors", tensors, meta)
    write_npy_dir("step0_layer3", tensors, meta)

Arrays may be float16, float32, float64, int32 or int64; numpy has no bfloat16, so a uint16 array
is written as bfloat16 bits (bf16_bits() rounds float arrays to them). An fp8 cache is uint8
arrays of its codes (written as U8) with float32 k_scale and v_scale, and the metadata kv_format
(e4m3, e5m2 or e4m3fnuz) naming the codes' format. Metadata values are written as strings.

`trace_writer.py --self-test DIR` writes a correct trace point and one whose layer offset is
left out, in both forms, and prints their paths.
"""
import json
import os
import struct
import sys

import numpy as np

_SAFETENSORS = {
    np.dtype("float16"): "F16",
    np.dtype("uint16"): "BF16",
    np.dtype("float32"): "F32",
    np.dtype("float64"): "F64",
    np.dtype("int32"): "I32",
    np.dtype("int64"): "I64",
    np.dtype("uint8"): "U8",  # fp8 codes; the metadata kv_format names the format
}


def _check(tensors):
    out = {}
    for name, a in tensors.items():
        a = np.asarray(a)
        if a.dtype.newbyteorder("<") not in _SAFETENSORS:
            raise ValueError(f"tensor '{name}': dtype {a.dtype} is not supported "
                             "(float16, uint16 as bfloat16 bits, float32, float64, int32, int64, "
                             "uint8 as fp8 codes)")
        out[name] = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return out


def bf16_bits(x):
    """float array -> uint16 bfloat16 bits, rounded to nearest even (NaN kept quiet)."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), rounded)


def write_safetensors(path, tensors, metadata):
    tensors = _check(tensors)
    header = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    offset = 0
    for name, a in tensors.items():
        header[name] = {"dtype": _SAFETENSORS[a.dtype.newbyteorder("<")], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for a in tensors.values():
            f.write(a.tobytes())


def write_npy_dir(path, tensors, metadata):
    """Creates the directory; an existing one is refused, so no earlier trace's file stays."""
    tensors = _check(tensors)
    for name in tensors:
        if not name or name.startswith(".") or "/" in name or "\\" in name:
            raise ValueError(f"bad tensor name '{name}' (it names a file in the .npy form)")
    os.makedirs(path)
    with open(os.path.join(path, "meta.json"), "w", encoding="utf-8") as f:
        json.dump({str(k): str(v) for k, v in metadata.items()}, f, indent=1)
    for name, a in tensors.items():
        np.save(os.path.join(path, name + ".npy"), a, allow_pickle=False)


def _attention(q, k, v, layer, seq_len, window):
    """Reference attention in float64 for a bshd cache [layers, batch, cap, kv_heads, d]."""
    batch, q_len, q_heads, d = q.shape
    kv_heads = k.shape[3]
    group = q_heads // kv_heads
    out = np.zeros((batch, q_len, q_heads, d))
    lse = np.zeros((batch, q_heads, q_len))
    for b in range(batch):
        for t in range(q_len):
            start = seq_len - q_len + t + 1 - window
            for h in range(q_heads):
                keys = k[layer, b, start:start + window, h // group].astype(np.float64)
                vals = v[layer, b, start:start + window, h // group].astype(np.float64)
                s = keys @ q[b, t, h].astype(np.float64) / np.sqrt(d)
                m = s.max()
                w = np.exp(s - m)
                out[b, t, h] = w @ vals / w.sum()
                lse[b, h, t] = m + np.log(w.sum())
    return out, lse


def self_test(folder):
    rng = np.random.default_rng(20261130)
    layers, batch, cap, kv_heads, q_heads, d, q_len = 3, 2, 80, 2, 8, 64, 1
    seq_len, window, layer = 70, 64, 2
    q = rng.standard_normal((batch, q_len, q_heads, d)).astype(np.float16)
    k = rng.standard_normal((layers, batch, cap, kv_heads, d)).astype(np.float16)
    v = rng.standard_normal((layers, batch, cap, kv_heads, d)).astype(np.float16)
    meta = {"layout": "bshd", "layer": layer, "seq_len": seq_len, "window": window,
            "accumulation": "fp32", "engine": "trace_writer.py", "step": 0}
    os.makedirs(folder, exist_ok=True)
    paths = []
    for tag, read_layer in (("correct", layer), ("layer0", 0)):
        out, lse = _attention(q, k, v, read_layer, seq_len, window)
        tensors = {"q": q, "k_cache": k, "v_cache": v, "out": out.astype(np.float16),
                   "lse": lse.astype(np.float32)}
        st = os.path.join(folder, f"{tag}.safetensors")
        write_safetensors(st, tensors, meta)
        npy = os.path.join(folder, f"{tag}_npy")
        write_npy_dir(npy, tensors, meta)
        paths += [st, npy]
    bits = bf16_bits(np.array([1.0, -2.5, 3.14159, np.inf, np.nan], dtype=np.float32))
    assert list(bits[:4]) == [0x3F80, 0xC020, 0x4049, 0x7F80], bits
    print("\n".join(paths))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--self-test":
        self_test(sys.argv[2])
    else:
        sys.exit(__doc__)
