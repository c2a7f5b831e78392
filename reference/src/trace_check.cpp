#include "attnscope/reference/trace_check.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <functional>
#include <iomanip>
#include <limits>
#include <optional>
#include <set>
#include <sstream>

#include "attnscope/core/order.hpp"
#include "attnscope/core/records.hpp"
#include "attnscope/reference/stages.hpp"

namespace attnscope::trace {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::int64_t meta_int(const TraceFile& t, const std::string& key) {
  const std::string& v = t.meta(key);
  std::size_t used = 0;
  long long x = 0;
  try {
    x = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size())
    throw TraceError(t.path + ": metadata '" + key + "' = '" + v + "' is not an integer");
  return x;
}

double meta_double(const TraceFile& t, const std::string& key) {
  const std::string& v = t.meta(key);
  std::size_t used = 0;
  double x = 0.0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size() || !std::isfinite(x))
    throw TraceError(t.path + ": metadata '" + key + "' = '" + v + "' is not a finite number");
  return x;
}

int to_int(const TraceFile& t, const std::string& what, std::int64_t v) {
  if (v < 0 || v > INT_MAX)
    throw TraceError(t.path + ": " + what + " = " + std::to_string(v) + " is out of range");
  return static_cast<int>(v);
}

// q, K and V: F16, BF16 or F32 (the formats the problem model stores).
DType input_dtype(const TraceFile& t, const Tensor& x) {
  switch (x.type) {
    case ElemType::f16:
      return DType::fp16;
    case ElemType::bf16:
      return DType::bf16;
    case ElemType::f32:
      return DType::fp32;
    default:
      throw TraceError(t.path + ": tensor '" + x.name + "' is " + safetensors_name(x.type) +
                       "; expected F16, BF16 or F32");
  }
}

// A recorded stage output: any float type; F64 is judged as if stored in binary32.
DType output_dtype(const TraceFile& t, const Tensor& x) {
  if (x.type == ElemType::f64) return DType::fp32;
  if (!x.is_float())
    throw TraceError(t.path + ": tensor '" + x.name + "' is " + safetensors_name(x.type) +
                     "; expected a float type");
  return input_dtype(t, x);
}

void expect_shape(const TraceFile& t, const Tensor& x, const std::vector<std::int64_t>& want,
                  const char* dims) {
  if (x.shape != want) {
    Tensor w;
    w.shape = want;
    throw TraceError(t.path + ": tensor '" + x.name + "' has shape " + x.shape_string() +
                     ", expected " + w.shape_string() + " " + dims);
  }
}

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const std::string& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// What the checks need beyond the inputs: the recorded outputs and the formats of the budgets.
struct Context {
  std::string path;
  std::optional<std::vector<double>> scores, probs, out, lse;
  DType scores_fmt = DType::fp32, probs_fmt = DType::fp32, out_fmt = DType::fp16,
        lse_fmt = DType::fp32;
  bounds::StageFormats f_qk, f_sm, f_pv;
  // paged: the recorded block table, for variants that rebuild the layout
  std::vector<std::int32_t> block_table;
  std::int32_t pages_per_seq = 0;
  std::int64_t num_pages = 0;
};

std::vector<double> values(const Tensor& x) {
  std::vector<double> v(static_cast<std::size_t>(x.numel()));
  for (std::int64_t i = 0; i < x.numel(); ++i) v[std::size_t(i)] = x.get(i);
  return v;
}

KvLayout make_layout(const Problem& p, const KvLayoutSpec& spec, const Context& c) {
  if (spec.kind == KvLayoutKind::paged)
    return KvLayout(p, spec, c.block_table, c.pages_per_seq, c.num_pages);
  return KvLayout(p, spec);
}

SummationOrder order_or_sequential(const TraceFile& t, const std::string& key) {
  const auto it = t.metadata.find(key);
  if (it == t.metadata.end()) return SummationOrder{};
  try {
    return parse_order(it->second);
  } catch (const std::invalid_argument& e) {
    throw TraceError(t.path + ": metadata '" + key + "': " + e.what());
  }
}

AttentionInputs build_inputs(TraceFile& t, Context& c) {
  static const std::set<std::string> known = {"q",       "k_cache",     "v_cache",  "k_scale",
                                              "v_scale", "block_table", "scores",   "probs",
                                              "out",     "lse",         "key_mask", "seq_lens"};
  for (const auto& kv : t.tensors)
    if (!known.count(kv.first))
      throw TraceError(t.path + ": unknown tensor '" + kv.first +
                       "' (a trace holds q, k_cache, v_cache, k_scale, v_scale, block_table, "
                       "key_mask, seq_lens, scores, probs, out, lse)");
  Tensor& q = t.require("q");
  if (q.shape.size() != 4)
    throw TraceError(t.path + ": tensor 'q' has shape " + q.shape_string() +
                     ", expected [batch, q_len, q_heads, head_dim]");
  const DType in = input_dtype(t, q);
  KvLayoutKind kind;
  try {
    kind = parse_layout(t.meta("layout"));
  } catch (const std::invalid_argument&) {
    throw TraceError(t.path + ": metadata 'layout' = '" + t.meta("layout") +
                     "': expected bhsd, bshd or paged");
  }
  Tensor& k = t.require("k_cache");
  Tensor& v = t.require("v_cache");
  for (const Tensor* x : {&k, &v}) {
    if (x->shape.size() != 5)
      throw TraceError(
          t.path + ": tensor '" + x->name + "' has shape " + x->shape_string() +
          ", expected 5 dimensions (" +
          (kind == KvLayoutKind::bhsd   ? "[layers, batch, kv_heads, seq_capacity, head_dim]"
           : kind == KvLayoutKind::bshd ? "[layers, batch, seq_capacity, kv_heads, head_dim]"
                                        : "[layers, num_pages, page_size, kv_heads, head_dim]") +
          " for " + std::string(to_string(kind)) + ")");
    if (!x->is_code() && input_dtype(t, *x) != in)
      throw TraceError(t.path + ": tensor '" + x->name + "' is " + safetensors_name(x->type) +
                       " but q is " + safetensors_name(q.type) + " (one input format)");
  }
  if (k.is_code() != v.is_code() || (k.is_code() && k.type != v.type))
    throw TraceError(t.path + ": k_cache is " + safetensors_name(k.type) + " and v_cache " +
                     safetensors_name(v.type) + " (one cache format)");
  // An fp8 cache: its codes' format from the dtype (F8_E4M3, F8_E5M2) or the metadata
  // kv_format (required for U8), the two agreeing where both are given.
  std::optional<Fp8Format> fp8;
  if (k.is_code()) {
    if (t.metadata.count("kv_format")) {
      try {
        fp8 = parse_fp8_format(t.meta("kv_format"));
      } catch (const std::invalid_argument&) {
        throw TraceError(t.path + ": metadata 'kv_format' = '" + t.meta("kv_format") +
                         "': expected e4m3, e5m2 or e4m3fnuz");
      }
    }
    const std::optional<Fp8Format> named = k.type == ElemType::f8_e4m3 ? Fp8Format::e4m3
                                           : k.type == ElemType::f8_e5m2
                                               ? Fp8Format::e5m2
                                               : std::optional<Fp8Format>();
    if (!fp8 && !named)
      throw TraceError(t.path +
                       ": k_cache holds U8 codes but the metadata names no kv_format "
                       "(e4m3, e5m2 or e4m3fnuz)");
    if (fp8 && named && *fp8 != *named)
      throw TraceError(t.path + ": k_cache is " + safetensors_name(k.type) +
                       " but metadata 'kv_format' is '" + t.meta("kv_format") + "'");
    if (!fp8) fp8 = named;
    if (in == DType::fp32)
      throw TraceError(t.path + ": q of an fp8 cache is F16 or BF16 (got F32)");
  } else if (t.find("k_scale") || t.find("v_scale")) {
    throw TraceError(t.path + ": k_scale or v_scale is given but the cache holds " +
                     safetensors_name(k.type) + " values, not fp8 codes");
  }
  if (k.shape != v.shape)
    throw TraceError(t.path + ": k_cache " + k.shape_string() + " and v_cache " + v.shape_string() +
                     " differ in shape");

  Problem p;
  p.batch = to_int(t, "q's batch", q.shape[0]);
  p.q_len = to_int(t, "q's q_len", q.shape[1]);
  p.q_heads = to_int(t, "q's q_heads", q.shape[2]);
  p.head_dim = to_int(t, "q's head_dim", q.shape[3]);
  const std::int64_t* s = k.shape.data();
  std::int64_t cache_batch = 0, heads = 0, dim = s[4], cap = 0, pages = 0, page = 0;
  switch (kind) {
    case KvLayoutKind::bhsd:
      cache_batch = s[1], heads = s[2], cap = s[3];
      break;
    case KvLayoutKind::bshd:
      cache_batch = s[1], cap = s[2], heads = s[3];
      break;
    case KvLayoutKind::paged:
      pages = s[1], page = s[2], heads = s[3];
      break;
  }
  if (kind != KvLayoutKind::paged && cache_batch != p.batch)
    throw TraceError(t.path + ": k_cache holds batch " + std::to_string(cache_batch) +
                     " but q has batch " + std::to_string(p.batch));
  if (dim != p.head_dim)
    throw TraceError(t.path + ": k_cache has head_dim " + std::to_string(dim) + " but q has " +
                     std::to_string(p.head_dim));
  p.kv_heads = to_int(t, "k_cache's kv_heads", heads);
  p.seq_len = meta_int(t, "seq_len");
  p.window = meta_int(t, "window");
  constexpr std::int64_t kMaxPositions = std::int64_t(1) << 40;
  if (p.seq_len > kMaxPositions || p.window > kMaxPositions)
    throw TraceError(t.path + ": metadata 'seq_len' or 'window' exceeds 2^40 positions");
  try {
    p.accum = parse_accum(t.meta("accumulation"));
  } catch (const std::invalid_argument&) {
    throw TraceError(t.path + ": metadata 'accumulation' = '" + t.meta("accumulation") +
                     "': expected fp16 or fp32");
  }
  if (t.metadata.count("scale")) {
    p.scale = meta_double(t, "scale");
    if (!(p.scale > 0.0)) throw TraceError(t.path + ": metadata 'scale' must be > 0");
  }
  p.input = in;
  p.output = t.find("out") ? output_dtype(t, *t.find("out")) : in;
  if (fp8) {
    // The scales' granularity from their shape: [] or [1] a tensor, [kv_heads] a KV head, the
    // cache's shape without head_dim a row (token); the metadata kv_scale, if given, agrees.
    p.kv_fp8 = fp8;
    const Tensor& ks = t.require("k_scale");
    const Tensor& vs = t.require("v_scale");
    for (const Tensor* x : {&ks, &vs})
      if (x->type != ElemType::f32)
        throw TraceError(t.path + ": tensor '" + x->name + "' is " + safetensors_name(x->type) +
                         "; expected F32");
    if (ks.shape != vs.shape)
      throw TraceError(t.path + ": k_scale " + ks.shape_string() + " and v_scale " +
                       vs.shape_string() + " differ in shape");
    const std::vector<std::int64_t> rows(k.shape.begin(), k.shape.end() - 1);
    const bool one = ks.shape.empty() || ks.shape == std::vector<std::int64_t>{1};
    std::optional<KvScale> by_shape;
    if (one) by_shape = KvScale::tensor;
    if (ks.shape == std::vector<std::int64_t>{heads} && !one) by_shape = KvScale::head;
    if (ks.shape == rows) by_shape = KvScale::token;
    std::optional<KvScale> named;
    if (t.metadata.count("kv_scale")) {
      try {
        named = parse_kv_scale(t.meta("kv_scale"));
      } catch (const std::invalid_argument&) {
        throw TraceError(t.path + ": metadata 'kv_scale' = '" + t.meta("kv_scale") +
                         "': expected tensor, head or token");
      }
    }
    // One scale with one KV head is a tensor's or a head's alike.
    const bool agree =
        named && (named == by_shape || (one && heads == 1 && *named == KvScale::head));
    if (!by_shape || (named && !agree))
      throw TraceError(t.path + ": k_scale has shape " + ks.shape_string() +
                       (named ? " but metadata 'kv_scale' is '" + t.meta("kv_scale") + "'" : "") +
                       "; expected [1] (a tensor), [" + std::to_string(heads) +
                       "] (a KV head) or the cache's shape without head_dim (a token)");
    p.kv_scale = named ? *named : *by_shape;
  }
  try {
    p.validate();
  } catch (const std::invalid_argument& e) {
    throw TraceError(t.path + ": " + e.what());
  }

  KvLayoutSpec spec;
  spec.kind = kind;
  spec.layers = to_int(t, "k_cache's layers", s[0]);
  spec.layer = to_int(t, "metadata 'layer'", meta_int(t, "layer"));
  if (spec.layer >= spec.layers)
    throw TraceError(t.path + ": metadata 'layer' = " + std::to_string(spec.layer) +
                     " but the cache holds " + std::to_string(spec.layers) + " layers");
  if (kind == KvLayoutKind::paged) {
    spec.page_size = to_int(t, "k_cache's page_size", page);
    const Tensor& bt = t.require("block_table");
    if (bt.type != ElemType::i32 && bt.type != ElemType::i64)
      throw TraceError(t.path + ": tensor 'block_table' is " +
                       std::string(safetensors_name(bt.type)) + "; expected I32 or I64");
    if (bt.shape.size() != 2 || bt.shape[0] != p.batch)
      throw TraceError(t.path + ": tensor 'block_table' has shape " + bt.shape_string() +
                       ", expected [batch, pages_per_seq] with batch " + std::to_string(p.batch));
    c.pages_per_seq = to_int(t, "block_table's pages_per_seq", bt.shape[1]);
    c.num_pages = pages;
    c.block_table.resize(std::size_t(bt.numel()));
    for (std::int64_t i = 0; i < bt.numel(); ++i) {
      const double e = bt.get(i);
      c.block_table[std::size_t(i)] =
          e < INT_MIN || e > INT_MAX ? -1 : static_cast<std::int32_t>(e);
    }
  } else {
    if (t.find("block_table"))
      throw TraceError(t.path + ": a block_table is given but the layout is " +
                       std::string(to_string(kind)));
    spec.seq_capacity = cap;
  }
  std::optional<KvLayout> layout;
  try {
    spec.validate(p);
    layout.emplace(make_layout(p, spec, c));
  } catch (const std::invalid_argument& e) {
    throw TraceError(t.path + ": " + e.what());
  }
  if (layout->storage_elems() != k.numel())
    throw TraceError(t.path + ": k_cache holds " + std::to_string(k.numel()) +
                     " elements, the layout addresses " + std::to_string(layout->storage_elems()));
  const std::int64_t storage = k.numel();
  AttentionInputs inputs{
      p,
      *layout,
      DataSpec{},
      HostTensor(in, {p.batch, p.q_len, p.q_heads, p.head_dim}, std::move(q.bytes)),
      HostTensor(),
      HostTensor(),
      {},
      {},
      {},
      {},
      {},
      {},
      {},
      {}};
  if (fp8) {
    // Codes and scales as the inputs of an fp8 problem hold them; k and v each element's value,
    // code x scale, exactly (fp64), which the references attend. NaN codes are NaN, e5m2's
    // infinities infinite.
    Tensor& ks = t.require("k_scale");
    Tensor& vs = t.require("v_scale");
    const std::int64_t scales = ks.numel();
    const DType code_t = fp8_dtype(*fp8);
    inputs.k_cache = HostTensor(code_t, {storage}, std::move(k.bytes));
    inputs.v_cache = HostTensor(code_t, {storage}, std::move(v.bytes));
    inputs.k_scale = HostTensor(DType::fp32, {scales}, std::move(ks.bytes));
    inputs.v_scale = HostTensor(DType::fp32, {scales}, std::move(vs.bytes));
    inputs.k = HostTensor(DType::fp64, {storage});
    inputs.v = HostTensor(DType::fp64, {storage});
    // Storage is whole rows of head_dim elements, each under one scale.
    const KvAddressing a = layout->addressing();
    for (std::int64_t r0 = 0; r0 < storage; r0 += p.head_dim) {
      const int h =
          p.kv_scale == KvScale::head ? static_cast<int>(r0 / a.stride_head % p.kv_heads) : 0;
      const std::int64_t si = kv_scale_index(p, h, r0);
      const double k_sc = inputs.k_scale.get(si), v_sc = inputs.v_scale.get(si);
      for (std::int64_t i = r0; i < r0 + p.head_dim; ++i) {
        inputs.k.set(i, inputs.k_cache.get(i) * k_sc);
        inputs.v.set(i, inputs.v_cache.get(i) * v_sc);
      }
    }
  } else {
    inputs.k = HostTensor(in, {storage}, std::move(k.bytes));
    inputs.v = HostTensor(in, {storage}, std::move(v.bytes));
  }

  // A key mask ([batch, seq_len], 1 = attend, 0 = masked) and the lengths of a ragged batch
  // ([batch]), integers, both optional.
  auto integers = [&](const char* name, const std::vector<std::int64_t>& shape,
                      const char* shape_text) -> const Tensor* {
    const Tensor* x = t.find(name);
    if (x == nullptr) return nullptr;
    if (x->type != ElemType::i32 && x->type != ElemType::i64)
      throw TraceError(t.path + ": tensor '" + name + "' is " +
                       std::string(safetensors_name(x->type)) + "; expected I32 or I64");
    expect_shape(t, *x, shape, shape_text);
    return x;
  };
  if (const Tensor* m = integers("key_mask", {p.batch, p.seq_len}, "[batch, seq_len]")) {
    inputs.key_mask.resize(std::size_t(m->numel()));
    for (std::int64_t i = 0; i < m->numel(); ++i) {
      const double e = m->get(i);
      if (e != 0.0 && e != 1.0)
        throw TraceError(t.path + ": tensor 'key_mask' holds " + std::to_string(e) +
                         " at sequence " + std::to_string(i / p.seq_len) + ", position " +
                         std::to_string(i % p.seq_len) + "; expected 0 (masked) or 1 (attended)");
      inputs.key_mask[std::size_t(i)] = static_cast<std::uint8_t>(e);
    }
  }
  if (const Tensor* l = integers("seq_lens", {p.batch}, "[batch]")) {
    inputs.seq_lens.resize(std::size_t(p.batch));
    for (int b = 0; b < p.batch; ++b) {
      const double e = l->get(b);
      if (e < p.q_len || e > double(p.seq_len))
        throw TraceError(t.path + ": tensor 'seq_lens' gives sequence " + std::to_string(b) +
                         " the length " + std::to_string(static_cast<long long>(e)) +
                         ", outside [q_len, seq_len] = [" + std::to_string(p.q_len) + ", " +
                         std::to_string(p.seq_len) + "]");
      inputs.seq_lens[std::size_t(b)] = static_cast<std::int64_t>(e);
    }
  }

  // The recorded outputs.
  const std::vector<std::int64_t> score_shape = {p.batch, p.q_heads, p.q_len, p.window};
  if (const Tensor* x = t.find("scores")) {
    expect_shape(t, *x, score_shape, "[batch, q_heads, q_len, window]");
    c.scores_fmt = output_dtype(t, *x);
    c.scores = values(*x);
  }
  if (const Tensor* x = t.find("probs")) {
    expect_shape(t, *x, score_shape, "[batch, q_heads, q_len, window]");
    c.probs_fmt = output_dtype(t, *x);
    c.probs = values(*x);
  }
  if (const Tensor* x = t.find("out")) {
    expect_shape(t, *x, {p.batch, p.q_len, p.q_heads, p.head_dim},
                 "[batch, q_len, q_heads, head_dim]");
    c.out_fmt = output_dtype(t, *x);
    c.out = values(*x);
  }
  if (const Tensor* x = t.find("lse")) {
    expect_shape(t, *x, {p.batch, p.q_heads, p.q_len}, "[batch, q_heads, q_len]");
    c.lse_fmt = output_dtype(t, *x);
    c.lse = values(*x);
  }
  if (!c.scores && !c.probs && !c.out && !c.lse)
    throw TraceError(t.path +
                     ": nothing to check: the trace records none of scores, probs, out, lse");

  // Budgets: the declared orders, else sequential (the deepest). An online softmax may round
  // each step twice (rescale, then add), so the sum and the values get twice the depth.
  // An fp8 cache's scales add up to two roundings to each chain (cache_read.hpp: one under fp32
  // accumulation, two under fp16, as an engine may apply them).
  const double lambda = bounds::kDefaultLambda;
  const std::int64_t fp8_extra = p.kv_fp8 ? 2 : 0;
  c.f_qk = {p.accum, summation_depth(order_or_sequential(t, "dot_order"), p.head_dim) + fp8_extra,
            c.scores_fmt, lambda};
  c.f_sm = {p.accum,
            2 * summation_depth(order_or_sequential(t, "softmax_order"), p.window) + fp8_extra,
            c.probs_fmt, lambda};
  c.f_pv = {p.accum,
            2 * summation_depth(order_or_sequential(t, "values_order"), p.window) + fp8_extra,
            c.out_fmt, lambda};
  return inputs;
}

enum class Stage { qk, softmax, pv, attn_out, lse };
const char* stage_name(Stage s) {
  switch (s) {
    case Stage::qk:
      return "qk";
    case Stage::softmax:
      return "softmax";
    case Stage::pv:
      return "pv";
    case Stage::attn_out:
      return "attn_out";
    case Stage::lse:
      return "lse";
  }
  return "?";
}
TensorShape shape_of(Stage s) {
  return s == Stage::qk || s == Stage::softmax ? TensorShape::scores
         : s == Stage::lse                     ? TensorShape::rows
                                               : TensorShape::out;
}

// The reference of a stage and its budget on inputs `in` (the declared ones, or a variant).
struct StageRef {
  std::vector<double> ref, budget;
};

struct Evaluator {
  const Context& c;
  // probs: the engine's probabilities fed to pv (permuted for head-map variants).
  StageRef run(Stage s, const AttentionInputs& in, const std::vector<double>* probs) const {
    StageRef r;
    switch (s) {
      case Stage::qk:
        r.ref = ref::qk<double>(in);
        r.budget = bounds::qk_bounds(in, c.f_qk).probabilistic;
        break;
      case Stage::softmax: {
        const std::vector<double> logits = c.scores ? *c.scores : ref::qk<double>(in);
        r.ref = ref::softmax<double>(in, logits);
        r.budget = bounds::softmax_bounds(in, logits, 1.0, {}, c.f_sm).probabilistic;
        break;
      }
      case Stage::pv:
        r.ref = ref::pv<double>(in, *probs);
        r.budget = bounds::pv_bounds(in, *probs, {}, c.f_pv).probabilistic;
        break;
      case Stage::attn_out: {
        std::vector<double> lse;
        ref::attention_output<double>(in, r.ref, lse);
        r.budget = bounds::attention_bounds(in, c.f_qk, c.f_sm, c.f_pv).probabilistic;
        break;
      }
      case Stage::lse: {
        const ref::Trace<double> T = ref::attention<double>(in);
        r.ref = T.lse;
        r.budget = bounds::lse_bounds(in, T.lse, T.probs,
                                      bounds::qk_bounds(in, c.f_qk).probabilistic, 1.0, c.f_sm);
        break;
      }
    }
    return r;
  }
  // The reference alone, for the first, cheap look at a variant.
  std::vector<double> reference(Stage s, const AttentionInputs& in,
                                const std::vector<double>* probs) const {
    switch (s) {
      case Stage::qk:
        return ref::qk<double>(in);
      case Stage::softmax:
        return ref::softmax<double>(in, c.scores ? *c.scores : ref::qk<double>(in));
      case Stage::pv:
        return ref::pv<double>(in, *probs);
      case Stage::attn_out:
      case Stage::lse: {
        std::vector<double> out, lse;
        ref::attention_output<double>(in, out, lse);
        return s == Stage::lse ? lse : out;
      }
    }
    return {};
  }
};

const std::vector<double>& recorded(const Context& c, Stage s) {
  switch (s) {
    case Stage::qk:
      return *c.scores;
    case Stage::softmax:
      return *c.probs;
    case Stage::pv:
    case Stage::attn_out:
      return *c.out;
    case Stage::lse:
      return *c.lse;
  }
  return *c.out;
}
DType format_of(const Context& c, Stage s) {
  switch (s) {
    case Stage::qk:
      return c.scores_fmt;
    case Stage::softmax:
      return c.probs_fmt;
    case Stage::pv:
    case Stage::attn_out:
      return c.out_fmt;
    case Stage::lse:
      return c.lse_fmt;
  }
  return DType::fp32;
}

// Moves head h of a tensor with q_heads on `axis` (outer = elements before it, inner after it)
// to position perm[h]: out[.., perm[h], ..] = in[.., h, ..]. With inverse, the other way round.
std::vector<double> permute_heads(const std::vector<double>& x, std::int64_t outer, int heads,
                                  std::int64_t inner, const std::vector<int>& perm, bool inverse) {
  std::vector<double> y(x.size());
  for (std::int64_t o = 0; o < outer; ++o)
    for (int h = 0; h < heads; ++h) {
      const int from = inverse ? perm[std::size_t(h)] : h, to = inverse ? h : perm[std::size_t(h)];
      std::copy_n(x.begin() + (o * heads + from) * inner, inner,
                  y.begin() + (o * heads + to) * inner);
    }
  return y;
}

// (outer, inner) of the head axis of a stage's tensor.
std::pair<std::int64_t, std::int64_t> head_axis(const Problem& p, Stage s) {
  switch (shape_of(s)) {
    case TensorShape::scores:
      return {p.batch, std::int64_t(p.q_len) * p.window};
    case TensorShape::out:
      return {std::int64_t(p.batch) * p.q_len, p.head_dim};
    case TensorShape::rows:
      return {p.batch, p.q_len};
  }
  return {1, 1};
}

// Softmax without the max subtraction, with exp evaluated in the accumulation format (it
// overflows past the format's largest value; inf / inf is NaN), then P.V and lse from it.
void no_max_shift(const AttentionInputs& in, const std::vector<double>& scores,
                  std::vector<double>& probs, std::vector<double>& out, std::vector<double>& lse) {
  const Problem& p = in.problem;
  const DType acc = accum_dtype(p.accum);
  const std::int64_t W = p.window, rows = p.score_elems() / W;
  probs.assign(scores.size(), 0.0);
  lse.assign(std::size_t(rows), 0.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    double l = 0.0;
    for (std::int64_t j = 0; j < W; ++j) {
      const double e = round_to(acc, std::exp(scores[std::size_t(r * W + j)]));
      probs[std::size_t(r * W + j)] = e;
      l = round_to(acc, l + e);
    }
    for (std::int64_t j = 0; j < W; ++j) probs[std::size_t(r * W + j)] /= l;
    lse[std::size_t(r)] = std::log(l);
  }
  out = ref::pv<double>(in, probs);
}

struct Variant {
  std::string name;
  bool stale = false;                           // reads positions at or beyond seq_len
  std::function<bool(AttentionInputs&)> apply;  // false: not applicable to this trace
  std::vector<int> head_perm;                   // gqa_interleaved: q heads moved
};

std::string fmt_g(double x) {
  std::ostringstream s;
  s << std::setprecision(6) << x;
  return s.str();
}

// `fitted_scale`: the scale that fits the recorded scores best (0: none recorded).
std::vector<Variant> variants(const AttentionInputs& in, const Context& c, Stage stage,
                              double fitted_scale) {
  const Problem& p = in.problem;
  const KvLayoutSpec base = in.layout.spec();
  std::vector<Variant> v;
  // Which keys are read, and the scale: softmax checked on the engine's scores sees neither; on
  // the reference's scores (none recorded) it sees both.
  const bool positions = stage != Stage::softmax || !c.scores;
  auto relayout = [&c](AttentionInputs& x, const KvLayoutSpec& spec) {
    x.layout = make_layout(x.problem, spec, c);
    return true;
  };
  if (positions) {
    for (int L = 0; L < base.layers; ++L) {
      if (L == base.layer) continue;
      v.push_back({"kv_layer:" + std::to_string(L),
                   false,
                   [L, base, relayout](AttentionInputs& x) {
                     KvLayoutSpec s = base;
                     s.layer = L;
                     return relayout(x, s);
                   },
                   {}});
    }
    if (p.group() > 1 && p.kv_heads > 1) {
      // Query head h read KV head h % kv_heads: move it to slot (h % kv_heads) * group + h /
      // kv_heads, where the reference's h / group names that KV head.
      std::vector<int> perm(std::size_t(p.q_heads));
      for (int h = 0; h < p.q_heads; ++h)
        perm[std::size_t(h)] = (h % p.kv_heads) * p.group() + h / p.kv_heads;
      v.push_back({"gqa_interleaved", false, [](AttentionInputs&) { return true; }, perm});
    }
    for (int k = -8; k <= 8; ++k) {
      if (k == 0) continue;
      v.push_back({"window_shift:" + std::string(k > 0 ? "+" : "") + std::to_string(k),
                   k > 0,
                   [k, base, relayout](AttentionInputs& x) {
                     x.problem.seq_len += k;
                     if (x.problem.window_start(0) < 0) return false;
                     return relayout(x, base);
                   },
                   {}});
    }
    if (stage == Stage::attn_out || stage == Stage::lse)
      for (int k = 1; k <= 8; ++k)
        v.push_back({"stale_positions",
                     true,
                     [k, base, relayout](AttentionInputs& x) {
                       x.problem.seq_len += k;
                       x.problem.window += k;
                       return relayout(x, base);
                     },
                     {}});
    if (base.kind == KvLayoutKind::paged) {
      v.push_back({"block_table_ignored",
                   false,
                   [base, &c](AttentionInputs& x) {
                     std::vector<std::int32_t> identity(c.block_table.size());
                     for (std::size_t i = 0; i < identity.size(); ++i)
                       identity[i] = static_cast<std::int32_t>(i);
                     x.layout = KvLayout(x.problem, base, identity, c.pages_per_seq, c.num_pages);
                     return true;
                   },
                   {}});
    }
  }
  if (stage == Stage::qk || stage == Stage::attn_out || stage == Stage::lse ||
      (stage == Stage::softmax && !c.scores)) {
    const double s = p.effective_scale();
    std::vector<double> scales = {1.0, s * s, 1.0 / p.head_dim};
    if (fitted_scale > 0.0 && std::fabs(fitted_scale / s - 1.0) > 1e-3)
      scales.push_back(fitted_scale);
    for (double x : scales)
      if (std::fabs(x / s - 1.0) > 1e-6)
        v.push_back({"scale:" + fmt_g(x),
                     false,
                     [x](AttentionInputs& y) {
                       y.problem.scale = x;
                       return true;
                     },
                     {}});
  }
  return v;
}

// Tries each variant on the failing stage; returns the names of those that explain the engine's
// numbers within their budgets (each name once).
std::vector<std::string> diagnose(AttentionInputs& in, const Context& c, Stage stage,
                                  const Check& failed, const std::vector<double>& original_budget) {
  const Problem p0 = in.problem;
  const KvLayout layout0 = in.layout;
  const HostTensor q0 = in.q;
  const Evaluator ev{c};
  const std::vector<double>& got = recorded(c, stage);
  const DType fmt = format_of(c, stage);
  std::vector<std::string> found;
  auto add = [&found](const std::string& n) {
    if (std::find(found.begin(), found.end(), n) == found.end()) found.push_back(n);
  };
  auto restore = [&] {
    in.problem = p0;
    in.layout = layout0;
    in.q = q0;
  };
  double fitted_scale = 0.0;
  if (c.scores) {
    // The scale that fits the recorded scores best, by least squares on the unscaled dots.
    in.problem.scale = 1.0;
    const std::vector<double> dots = ref::qk<double>(in);
    in.problem = p0;
    double num = 0.0, den = 0.0;
    for (std::size_t i = 0; i < dots.size(); ++i)
      if (std::isfinite((*c.scores)[i]) && std::isfinite(dots[i])) {
        num += (*c.scores)[i] * dots[i];
        den += dots[i] * dots[i];
      }
    if (den > 0.0) fitted_scale = num / den;
  }
  for (const Variant& var : variants(in, c, stage, fitted_scale)) {
    bool ok = false;
    try {
      ok = var.apply(in);
    } catch (const std::invalid_argument&) {
      ok = false;  // the variant addresses positions or pages the cache does not hold
    }
    if (!ok) {
      restore();
      continue;
    }
    const auto [outer, inner] = head_axis(p0, stage);
    const std::vector<double>* probs = c.probs ? &*c.probs : nullptr;
    std::vector<double> probs_perm;
    if (!var.head_perm.empty()) {
      const auto [qo, qi] =
          std::pair<std::int64_t, std::int64_t>{std::int64_t(p0.batch) * p0.q_len, p0.head_dim};
      const std::vector<double> moved =
          permute_heads(in.q.to_double(), qo, p0.q_heads, qi, var.head_perm, false);
      for (std::size_t i = 0; i < moved.size(); ++i)
        in.q.set(std::int64_t(i), moved[i]);  // exact: same format
      if (probs) {
        const auto [so, si] = head_axis(p0, Stage::softmax);
        probs_perm = permute_heads(*probs, so, p0.q_heads, si, var.head_perm, false);
        probs = &probs_perm;
      }
    }
    auto engine_order = [&](std::vector<double> x) {
      return var.head_perm.empty()
                 ? x
                 : permute_heads(x, outer, p0.q_heads, inner, var.head_perm, true);
    };
    // A first look: only a variant far closer to the engine's numbers than the declared
    // semantics (a quarter of the largest error or less) gets a budget of its own.
    const std::vector<double> look = engine_order(ev.reference(stage, in, probs));
    const Check rough =
        judge(p0, failed.what, failed.field, shape_of(stage), got, look, original_budget, fmt);
    if (rough.metrics.max_abs <= 0.25 * failed.metrics.max_abs && rough.metrics.nan_count == 0 &&
        rough.metrics.inf_count == 0) {
      const StageRef r = ev.run(stage, in, probs);
      const Check exact = judge(p0, failed.what, failed.field, shape_of(stage), got,
                                engine_order(r.ref), engine_order(r.budget), fmt);
      if (exact.pass) {
        add(var.name);
        if (var.stale) add("stale_positions");
      }
    }
    restore();
  }
  // Softmax without the max shift overflows: NaN where the correct softmax has none.
  if (stage == Stage::softmax || stage == Stage::attn_out || stage == Stage::lse) {
    const std::vector<double> scores =
        c.scores && stage == Stage::softmax ? *c.scores : ref::qk<double>(in);
    std::vector<double> probs, out, lse;
    no_max_shift(in, scores, probs, out, lse);
    const std::vector<double>& alt = stage == Stage::softmax ? probs
                                     : stage == Stage::lse   ? lse
                                                             : out;
    std::int64_t alt_nan = 0;
    for (double x : alt) alt_nan += std::isnan(x) ? 1 : 0;
    const Check m =
        judge(p0, failed.what, failed.field, shape_of(stage), got, alt, original_budget, fmt);
    if (alt_nan > 0 && m.pass) add("no_max_shift");
  }
  return found;
}

}  // namespace

AttentionInputs inputs_of(TraceFile& trace) {
  Context c;
  return build_inputs(trace, c);
}

PointReport check_trace(TraceFile trace, const CheckOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  PointReport r;
  r.path = trace.path;
  r.metadata = trace.metadata;
  Context c;
  c.path = trace.path;
  AttentionInputs in = build_inputs(trace, c);
  c.f_qk.lambda = c.f_sm.lambda = c.f_pv.lambda = options.lambda;
  const Problem& p = in.problem;
  r.problem = p;
  r.layout = in.layout.spec();

  ref::Trace<double> T;
  if (options.quad) {
    const ref::Trace<ref::Quad> qt = ref::attention<ref::Quad>(in);
    T = {ref::to_double(qt.scores), ref::to_double(qt.probs), ref::to_double(qt.lse),
         ref::to_double(qt.out)};
  } else {
    T = ref::attention<double>(in);
  }
  const bounds::ElementBounds qk_b = bounds::qk_bounds(in, c.f_qk);
  const std::vector<double>& qk_budget = qk_b.probabilistic;
  std::map<Stage, std::vector<double>> budgets;
  auto add = [&](Stage s, std::string what, const std::vector<double>& got,
                 const std::vector<double>& ref, std::vector<double> budget, DType fmt) {
    r.checks.push_back(judge(p, std::move(what), std::string(stage_name(s)) + "_", shape_of(s), got,
                             ref, budget, fmt));
    budgets[s] = std::move(budget);
  };
  std::vector<Stage> order;
  if (c.scores) {
    add(Stage::qk, "qk", *c.scores, T.scores, qk_budget, c.scores_fmt);
    order.push_back(Stage::qk);
  }
  if (c.probs) {
    const std::vector<double>& logits = c.scores ? *c.scores : T.scores;
    add(Stage::softmax, c.scores ? "softmax (on the engine's scores)" : "softmax", *c.probs,
        ref::softmax<double>(in, logits),
        bounds::softmax_bounds(in, logits, 1.0, {}, c.f_sm).probabilistic, c.probs_fmt);
    order.push_back(Stage::softmax);
  }
  if (c.out && c.probs) {
    add(Stage::pv, "pv (on the engine's probabilities)", *c.out, ref::pv<double>(in, *c.probs),
        bounds::pv_bounds(in, *c.probs, {}, c.f_pv).probabilistic, c.out_fmt);
    order.push_back(Stage::pv);
  }
  if (c.out) {
    add(Stage::attn_out, "attn_out", *c.out, T.out,
        bounds::attention_bounds(in, T.scores, T.probs, qk_b, c.f_sm, c.f_pv).probabilistic,
        c.out_fmt);
    order.push_back(Stage::attn_out);
  }
  if (c.lse) {
    add(Stage::lse, "lse", *c.lse, T.lse,
        bounds::lse_bounds(in, T.lse, T.probs, qk_budget, 1.0, c.f_sm), c.lse_fmt);
    order.push_back(Stage::lse);
  }

  std::optional<Stage> failing;
  for (std::size_t i = 0; i < r.checks.size(); ++i) {
    r.worst_ratio = std::max(r.worst_ratio, r.checks[i].budget_ratio);
    if (!r.checks[i].pass && !failing) failing = order[i];
  }
  r.pass = !failing.has_value();
  if (failing) {
    r.first_failing_stage = stage_name(*failing);
    if (options.diagnose) {
      const std::size_t at =
          std::size_t(std::find(order.begin(), order.end(), *failing) - order.begin());
      r.diagnosis = diagnose(in, c, *failing, r.checks[at], budgets[*failing]);
      if (r.diagnosis.empty()) r.diagnosis.push_back(kNoHypothesis);
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  nlohmann::json& j = r.record;
  j["trace"] = r.path;
  for (const char* key : {"engine", "step"})
    if (r.metadata.count(key)) j[key] = r.metadata.at(key);
  j.update(to_json(p));
  j.update(to_json(r.layout));
  j["reference"] = options.quad ? "binary128" : "fp64";
  for (const Check& ch : r.checks) {
    add_metrics(j, ch.metrics, ch.field);
    j[ch.field + "budget_max"] = json_number(ch.budget_max);
    j[ch.field + "budget_ratio"] = json_number(ch.budget_ratio);
    j[ch.field + "worst_at"] = ch.worst_where;
    j[ch.field + "pass"] = ch.pass;
  }
  j["first_failing_stage"] = r.first_failing_stage.empty() ? nlohmann::json(nullptr)
                                                           : nlohmann::json(r.first_failing_stage);
  j["diagnosis"] = r.pass ? nlohmann::json(nullptr) : nlohmann::json(joined(r.diagnosis));
  j["pass"] = r.pass;
  j["seconds"] = r.seconds;
  return r;
}

std::string format_point(const PointReport& r) {
  const Problem& p = r.problem;
  std::ostringstream s;
  s << r.path;
  std::string who;
  for (const char* key : {"engine", "step"})
    if (r.metadata.count(key))
      who += (who.empty() ? "" : ", ") + std::string(key) + " " + r.metadata.at(key);
  who += (who.empty() ? "" : ", ") + std::string("layer ") + std::to_string(r.layout.layer);
  s << " (" << who << ")\n  batch " << p.batch << ", q_heads " << p.q_heads << ", kv_heads "
    << p.kv_heads << ", q_len " << p.q_len << ", seq_len " << p.seq_len << ", window " << p.window
    << ", head_dim " << p.head_dim << ", " << to_string(p.input) << " " << to_string(r.layout.kind)
    << " cache of " << r.layout.layers << " layers";
  if (p.kv_fp8)
    s << " in " << to_string(*p.kv_fp8) << " (scales per " << to_string(p.kv_scale) << ")";
  s << ", accumulation " << to_string(p.accum) << "\n";
  s << "  " << std::left << std::setw(36) << "stage" << std::setw(12) << "mae" << std::setw(12)
    << "max_diff" << std::setw(12) << "budget" << std::setw(14) << "error/budget"
    << "worst element\n";
  for (const Check& c : r.checks) {
    s << "  " << std::setw(36) << c.what << std::setw(12) << fmt_g(c.metrics.mae) << std::setw(12)
      << fmt_g(c.metrics.max_abs) << std::setw(12) << fmt_g(c.budget_max) << std::setw(14)
      << fmt_g(c.budget_ratio) << c.worst_where << (c.pass ? "" : "  FAIL");
    if (c.metrics.nan_count || c.metrics.inf_count)
      s << " (" << c.metrics.nan_count << " NaN, " << c.metrics.inf_count << " Inf)";
    s << "\n";
  }
  if (r.pass) {
    s << "  every stage within its budget\n";
  } else {
    s << "  first stage outside its budget: " << r.first_failing_stage << "\n";
    if (!r.diagnosis.empty()) s << "  diagnosis: " << joined(r.diagnosis) << "\n";
  }
  return s.str();
}

std::string format_summary(const std::vector<PointReport>& reports) {
  std::vector<const PointReport*> sorted;
  for (const PointReport& r : reports) sorted.push_back(&r);
  std::stable_sort(sorted.begin(), sorted.end(), [](const PointReport* a, const PointReport* b) {
    return a->worst_ratio > b->worst_ratio;
  });
  std::ostringstream s;
  s << std::left << std::setw(14) << "error/budget" << std::setw(8) << "result" << std::setw(12)
    << "first fail" << std::setw(28) << "diagnosis"
    << "trace\n";
  for (const PointReport* r : sorted) {
    const std::string diag = joined(r->diagnosis);
    s << std::setw(14) << fmt_g(r->worst_ratio) << std::setw(8) << (r->pass ? "ok" : "FAIL")
      << std::setw(12) << (r->first_failing_stage.empty() ? "-" : r->first_failing_stage)
      << std::setw(28) << (diag.empty() ? "-" : diag) << r->path << "\n";
  }
  return s.str();
}

}  // namespace attnscope::trace
