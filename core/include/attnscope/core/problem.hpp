// The attention problem of one decode (or speculative-verification) step.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "attnscope/core/dtype.hpp"

namespace attnscope {

// The granularity of a quantized KV cache's scales: one for the whole tensor (of a layer), one
// per KV head, or one per cached token and KV head (a row of head_dim elements).
enum class KvScale { tensor, head, token };
std::string_view to_string(KvScale s);
KvScale parse_kv_scale(std::string_view s);  // throws std::invalid_argument

// Query position t (0 <= t < q_len) sits at cache position seq_len - q_len + t and attends the
// `window` positions ending at itself: [seq_len - q_len + t + 1 - window, seq_len - q_len + t].
// Every query row therefore has exactly `window` keys, and scores are dense
// [batch, q_heads, q_len, window] with column j at position window_start(t) + j.
struct Problem {
  int batch = 1;
  int q_heads = 1;
  int kv_heads = 1;  // GQA: group = q_heads / kv_heads query heads share one KV head
  int q_len = 1;     // 1 for decode, small values (<= 16) for speculative verification
  std::int64_t seq_len = 64;
  std::int64_t window = 64;
  int head_dim = 128;  // the width of q and K rows (the q.k dot)
  // The width of V rows and of the output; 0 means head_dim. Only a latent cache has another.
  int v_dim = 0;
  // Multi-head latent attention (DeepSeek-V2/V3's MLA, in its absorbed decode form): one cache of
  // head_dim-wide rows per layer, shared by every query head (kv_heads 1), whose first v_dim
  // channels are V. The cache is the K cache; the V cache is the same memory, never stored twice.
  // head_dim kMlaQkDim (512 latent channels + 64 rotary ones) and v_dim kMlaVDim.
  bool latent = false;
  double scale = 0.0;  // 0 selects 1/sqrt(head_dim)
  DType input = DType::fp16;
  Accum accum = Accum::fp32;
  DType output = DType::fp16;
  // The KV cache's format: unset, K and V are stored in `input`; set, they are stored in this
  // fp8 format, each element x as the code of x / scale with fp32 scales of granularity
  // kv_scale, and q stays in `input` (fp16 or bf16).
  std::optional<Fp8Format> kv_fp8;
  KvScale kv_scale = KvScale::tensor;

  // The DType K and V are stored in.
  DType kv_dtype() const { return kv_fp8 ? fp8_dtype(*kv_fp8) : input; }

  static constexpr int kMaxQLen = 16;
  static constexpr int kMlaQkDim = 576, kMlaVDim = 512;
  // Positions a cache may hold (2^40): far past any memory, and small enough that every element
  // count of a valid problem is computed without overflow.
  static constexpr std::int64_t kMaxSeqLen = std::int64_t(1) << 40;
  // Element counts (of q, scores, a cache with its layers) a problem may need: 2^60, so that byte
  // counts of elements up to 8 bytes (the host's doubles) still fit a signed 64-bit integer.
  static constexpr std::int64_t kMaxElems = std::int64_t(1) << 60;

  int group() const { return q_heads / kv_heads; }
  double effective_scale() const;
  std::int64_t window_start(int t) const { return seq_len - q_len + t + 1 - window; }
  std::int64_t q_elems() const { return std::int64_t(batch) * q_len * q_heads * head_dim; }
  int value_dim() const { return v_dim != 0 ? v_dim : head_dim; }
  std::int64_t out_elems() const { return std::int64_t(batch) * q_len * q_heads * value_dim(); }
  std::int64_t score_elems() const { return std::int64_t(batch) * q_heads * q_len * window; }
  std::int64_t lse_elems() const { return std::int64_t(batch) * q_heads * q_len; }

  // The (batch, query head, query) of a row of the [batch, q_heads, q_len, ...] score, probability
  // and lse layouts.
  struct RowCoords {
    int b, h, t;
  };
  RowCoords score_row(std::int64_t row) const {
    return {static_cast<int>(row / (std::int64_t(q_heads) * q_len)),
            static_cast<int>(row / q_len % q_heads), static_cast<int>(row % q_len)};
  }

  // Throws std::invalid_argument naming the first field that is wrong.
  void validate() const;
  // e.g. "b1_qh32_kvh8_q1_s4096_w4096_d128_in-fp16_acc-fp32_out-fp16"; a latent cache's has
  // "_d576v512-latent".
  std::string tag() const;
};

bool is_supported_head_dim(int d);

// The product of non-negative factors, or std::invalid_argument naming `what` when it passes
// Problem::kMaxElems (or overflows): the element count of a tensor that can be addressed.
std::int64_t checked_elems(std::initializer_list<std::int64_t> factors, const std::string& what);

}  // namespace attnscope
