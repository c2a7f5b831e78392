#include "attnscope/core/shapes.hpp"

#include "attnscope/core/inputs.hpp"

#include <stdexcept>

namespace attnscope {

namespace {

// The single-head shape engines trace when they debug a divergence.
DecodeShape shape(int batch, int q_heads, int kv_heads, std::int64_t window) {
  DecodeShape s;
  s.batch = batch;
  s.q_heads = q_heads;
  s.kv_heads = kv_heads;
  s.window = window;
  s.head_dim = 128;
  return s;
}
DecodeShape debug_shape() {
  return shape(1, 1, 1, 64);
}
// Llama-3-8B decode: 32 query heads on 8 KV heads, head_dim 128.
DecodeShape llama(int batch, std::int64_t window) {
  return shape(batch, 32, 8, window);
}
// Llama-3-70B decode: 64 query heads on 8 KV heads (group 8), head_dim 128.
DecodeShape llama70b(int batch, std::int64_t window) {
  return shape(batch, 64, 8, window);
}
// Multi-head attention: every query head has its own KV head.
DecodeShape mha(int batch, std::int64_t window) {
  return shape(batch, 32, 32, window);
}
// Phi-3-mini decode: 32 query heads, each its own KV head, head_dim 96 (3072 / 32).
DecodeShape phi3(int batch, std::int64_t window) {
  DecodeShape s = shape(batch, 32, 32, window);
  s.head_dim = 96;
  return s;
}

bool same_shape(const DecodeShape& a, const DecodeShape& b) {
  return a.batch == b.batch && a.q_heads == b.q_heads && a.kv_heads == b.kv_heads &&
         a.window == b.window && a.head_dim == b.head_dim && a.input == b.input &&
         a.accum == b.accum && a.layout == b.layout && a.ragged_min == b.ragged_min &&
         a.kv_fp8 == b.kv_fp8 && a.kv_scale == b.kv_scale && a.latent == b.latent &&
         a.page_size == b.page_size;
}

}  // namespace

std::vector<std::int64_t> DecodeShape::seq_lens() const {
  if (ragged_min <= 0) return {};
  return ragged_lengths(problem(), ragged_min, kRaggedSeed);
}

std::vector<DecodeShape> bench_shapes(const std::string& set) {
  if (set != "quick" && set != "default" && set != "full")
    throw std::invalid_argument("unknown benchmark set '" + set +
                                "' (expected quick, default or full)");
  std::vector<DecodeShape> s;
  if (set == "quick") {
    s = {debug_shape(), llama(1, 4096), mha(1, 4096)};
    return s;
  }
  s.push_back(debug_shape());
  for (int batch : {1, 16, 64})
    for (std::int64_t window : {1024, 4096, 32768, 131072}) s.push_back(llama(batch, window));
  for (int batch : {1, 8})
    for (std::int64_t window : {4096, 8192}) s.push_back(mha(batch, window));
  for (int batch : {1, 16})
    for (std::int64_t window : {4096, 32768}) s.push_back(llama70b(batch, window));
  s.push_back(phi3(16, 4096));
  // A serving batch: 64 sequences of 256 to 32K positions (long-tailed: log-uniform), paged.
  DecodeShape serving = llama(64, 32768);
  serving.layout = KvLayoutKind::paged;
  serving.ragged_min = 256;
  s.push_back(serving);
  // fp8 KV caches (e4m3, as engines ship them on H100/H200): Llama-3-8B at batch 1 and 16 x 32K
  // with one scale a tensor and one a token, Llama-3-70B at batch 16 x 32K, and the serving batch
  // with per-token scales.
  auto fp8 = [](DecodeShape v, KvScale sc) {
    v.kv_fp8 = Fp8Format::e4m3;
    v.kv_scale = sc;
    return v;
  };
  s.push_back(fp8(llama(1, 32768), KvScale::tensor));
  s.push_back(fp8(llama(16, 32768), KvScale::tensor));
  s.push_back(fp8(llama(16, 32768), KvScale::token));
  s.push_back(fp8(llama70b(16, 32768), KvScale::tensor));
  s.push_back(fp8(serving, KvScale::token));
  // Latent (MLA) decode, DeepSeek-V3: 128 query heads (the whole model) at batch 64 x 4K, 16 x
  // 32K and 1 x 32K, and 16 heads (a tensor-parallel shard of 8) at 64 x 4K, in a dense cache
  // (as PyTorch's SDPA takes it), and the first in 64-position pages as the engines that serve
  // the model keep them.
  auto mla = [](int heads, int batch, std::int64_t window) {
    DecodeShape v = shape(batch, heads, 1, window);
    v.latent = true;
    return v;
  };
  s.push_back(mla(128, 64, 4096));
  s.push_back(mla(128, 16, 32768));
  s.push_back(mla(128, 1, 32768));
  s.push_back(mla(16, 64, 4096));
  {
    DecodeShape v = mla(128, 64, 4096);
    v.layout = KvLayoutKind::paged;
    v.page_size = 64;
    s.push_back(v);
    // An fp8 (e4m3) latent cache, one scale for the tensor, and a bf16 one.
    v = mla(128, 64, 4096);
    v.kv_fp8 = Fp8Format::e4m3;
    s.push_back(v);
    v = mla(128, 64, 4096);
    v.input = DType::bf16;
    s.push_back(v);
  }
  if (set != "full") return s;

  // full: each other axis varied around two Llama decode shapes, a short and a long cache.
  for (const DecodeShape& base : {llama(1, 4096), llama(16, 32768)}) {
    DecodeShape v = base;
    v.accum = Accum::fp16;  // fp16 accumulation is implemented for fp16 inputs
    s.push_back(v);
    v = base;
    v.input = DType::bf16;
    s.push_back(v);
    for (int d : {64, 96, 192, 256}) {
      v = base;
      v.head_dim = d;
      s.push_back(v);
    }
    for (KvLayoutKind k : {KvLayoutKind::bshd, KvLayoutKind::paged}) {
      v = base;
      v.layout = k;
      s.push_back(v);
    }
    for (int kv_heads : {32, 16, 4, 2}) {  // GQA groups 1, 2, 8 and 16
      v = base;
      v.kv_heads = kv_heads;
      s.push_back(v);
    }
    v = base;  // an odd group: 28 query heads on 4 KV heads (group 7)
    v.q_heads = 28;
    v.kv_heads = 4;
    s.push_back(v);
  }
  // The fp8 serving batch with one scale for the tensor, and the long Llama-3-8B shape paged with
  // per-token fp8 scales (beside the fp16 one above): what the pages and the raggedness each cost
  // an fp8 cache.
  s.push_back(fp8(serving, KvScale::tensor));
  {
    DecodeShape v = fp8(llama(16, 32768), KvScale::token);
    v.layout = KvLayoutKind::paged;
    s.push_back(v);
  }
  // The serving batch in a contiguous cache: the cost of the page lookups beside the paged one,
  // fp16 and fp8.
  serving.layout = KvLayoutKind::bhsd;
  s.push_back(serving);
  s.push_back(fp8(serving, KvScale::token));
  // The other fp8 formats and the per-head scales on the long Llama-3-8B shape, and fp16
  // accumulation over an fp8 cache.
  for (Fp8Format f : {Fp8Format::e5m2, Fp8Format::e4m3fnuz}) {
    DecodeShape v = fp8(llama(16, 32768), KvScale::tensor);
    v.kv_fp8 = f;
    s.push_back(v);
  }
  // e4m3fnuz (MI300's format, which NVIDIA's hardware does not convert: integer operations)
  // with per-token scales, and at one sequence (many splits).
  for (KvScale sc : {KvScale::token, KvScale::tensor}) {
    DecodeShape v = fp8(llama(sc == KvScale::token ? 16 : 1, 32768), sc);
    v.kv_fp8 = Fp8Format::e4m3fnuz;
    s.push_back(v);
  }
  s.push_back(fp8(llama(16, 32768), KvScale::head));
  {
    DecodeShape v = fp8(llama(16, 32768), KvScale::tensor);
    v.accum = Accum::fp16;
    s.push_back(v);
  }
  // bf16 q (as most models serve) with an e4m3 cache, one scale for the tensor and one a token,
  // and with an e4m3fnuz one, beside the bf16 cache above.
  for (int i = 0; i < 3; ++i) {
    DecodeShape v = fp8(llama(16, 32768), i == 1 ? KvScale::token : KvScale::tensor);
    if (i == 2) v.kv_fp8 = Fp8Format::e4m3fnuz;
    v.input = DType::bf16;
    s.push_back(v);
  }
  // fp16 accumulation along the window sweep, where its error and its speed both change.
  for (std::int64_t window : {1024, 32768, 131072}) {
    DecodeShape v = llama(1, window);
    v.accum = Accum::fp16;
    s.push_back(v);
  }
  // The full set's variations meet the default set's shapes (MHA at batch 1 x 4K): each once.
  std::vector<DecodeShape> once;
  for (const DecodeShape& v : s) {
    bool seen = false;
    for (const DecodeShape& u : once) seen = seen || same_shape(u, v);
    if (!seen) once.push_back(v);
  }
  return once;
}

std::vector<int> tuning_splits(const Problem& p, std::int64_t min_len) {
  const std::int64_t span = p.window + p.q_len - 1;
  std::vector<int> out;
  for (int s = 1; s <= 1024 && (s == 1 || span / s >= min_len); s *= 2) out.push_back(s);
  return out;
}

}  // namespace attnscope
