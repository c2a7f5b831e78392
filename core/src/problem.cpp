#include "attnscope/core/problem.hpp"

#include <cmath>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace attnscope {

bool is_supported_head_dim(int d) {
  return d == 64 || d == 96 || d == 128 || d == 192 || d == 256;
}

double Problem::effective_scale() const {
  return scale != 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

namespace {
[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("invalid attention problem: " + what);
}
}  // namespace

std::int64_t checked_elems(std::initializer_list<std::int64_t> factors, const std::string& what) {
  std::int64_t n = 1;
  for (std::int64_t f : factors) {
    if (f < 0 || __builtin_mul_overflow(n, f, &n) || n > Problem::kMaxElems)
      throw std::invalid_argument(what + " has more than 2^60 elements: it cannot be addressed");
  }
  return n;
}

std::string_view to_string(KvScale s) {
  switch (s) {
    case KvScale::tensor:
      return "tensor";
    case KvScale::head:
      return "head";
    case KvScale::token:
      return "token";
  }
  return "?";
}

KvScale parse_kv_scale(std::string_view s) {
  if (s == "tensor") return KvScale::tensor;
  if (s == "head") return KvScale::head;
  if (s == "token") return KvScale::token;
  throw std::invalid_argument("unknown KV scale granularity '" + std::string(s) +
                              "' (expected tensor, head or token)");
}

void Problem::validate() const {
  if (batch < 1) fail("batch must be >= 1 (got " + std::to_string(batch) + ")");
  if (q_heads < 1) fail("q_heads must be >= 1 (got " + std::to_string(q_heads) + ")");
  if (kv_heads < 1) fail("kv_heads must be >= 1 (got " + std::to_string(kv_heads) + ")");
  if (q_heads % kv_heads != 0)
    fail("q_heads (" + std::to_string(q_heads) + ") must be a multiple of kv_heads (" +
         std::to_string(kv_heads) + ")");
  if (q_len < 1 || q_len > kMaxQLen)
    fail("q_len must be in [1, " + std::to_string(kMaxQLen) + "] (got " + std::to_string(q_len) +
         ")");
  if (seq_len < 1 || seq_len > kMaxSeqLen)
    fail("seq_len must be in [1, 2^40] (got " + std::to_string(seq_len) + ")");
  if (window < 1) fail("window must be >= 1 (got " + std::to_string(window) + ")");
  if (window > seq_len)
    fail("window (" + std::to_string(window) + ") must not exceed seq_len (" +
         std::to_string(seq_len) + ")");
  if (window + q_len - 1 > seq_len)
    fail("window + q_len - 1 (" + std::to_string(window + q_len - 1) +
         ") must not exceed seq_len (" + std::to_string(seq_len) +
         "): the first query's window would start before the cache");
  for (DType t : {input, output})
    if (t != DType::fp16 && t != DType::bf16 && t != DType::fp32)
      fail("input and output must be fp16, bf16 or fp32 (got " + std::string(to_string(t)) +
           "); an fp8 KV cache is kv_fp8");
  if (kv_fp8 && input == DType::fp32) fail("q of an fp8 KV cache is fp16 or bf16 (got fp32)");
  if (v_dim < 0) fail("v_dim must be >= 0 (0: head_dim)");
  if (latent) {
    if (kv_heads != 1)
      fail("a latent (MLA) cache has one KV head shared by every query head (got kv_heads " +
           std::to_string(kv_heads) + ")");
    if (head_dim != kMlaQkDim || value_dim() != kMlaVDim)
      fail("a latent (MLA) cache has head_dim " + std::to_string(kMlaQkDim) + " and v_dim " +
           std::to_string(kMlaVDim) + " (got " + std::to_string(head_dim) + " and " +
           std::to_string(value_dim()) + ")");
  } else {
    if (!is_supported_head_dim(head_dim))
      fail("unsupported head_dim " + std::to_string(head_dim) +
           " (supported: 64, 96, 128, 192, 256; 576 with a latent cache)");
    if (value_dim() != head_dim)
      fail("v_dim " + std::to_string(value_dim()) + " differs from head_dim " +
           std::to_string(head_dim) + ": only a latent (MLA) cache has V rows of another width");
  }

  if (!std::isfinite(scale) || scale < 0.0)
    fail("scale must be finite and > 0, or 0 for 1/sqrt(head_dim)");
  // The kernels scale in fp32: a scale that fp32 rounds to 0 or to infinity is not the scale asked.
  if (scale != 0.0 && (scale > double(std::numeric_limits<float>::max()) ||
                       scale < double(std::numeric_limits<float>::min()))) {
    std::ostringstream v;
    v << scale;
    fail("scale " + v.str() + " is outside the normal fp32 range the kernels scale in");
  }
  // Every element count the problem implies fits, with room for its bytes.
  checked_elems({batch, q_len, q_heads, head_dim}, "the query tensor");
  checked_elems({batch, q_heads, q_len, window}, "the score tensor");
  checked_elems({batch, kv_heads, seq_len, head_dim}, "a layer of the K (or V) cache");
}

std::string Problem::tag() const {
  std::ostringstream s;
  s << "b" << batch << "_qh" << q_heads << "_kvh" << kv_heads << "_q" << q_len << "_s" << seq_len
    << "_w" << window << "_d" << head_dim;
  if (latent) s << "v" << value_dim() << "-latent";
  s << "_in-" << to_string(input) << "_acc-" << to_string(accum) << "_out-" << to_string(output);
  if (kv_fp8) s << "_kv-" << to_string(*kv_fp8) << "-" << to_string(kv_scale);
  return s.str();
}

}  // namespace attnscope
