// Deterministic attention inputs: q, a multi-layer K/V cache in a chosen layout, and a key mask.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "attnscope/core/layout.hpp"
#include "attnscope/core/problem.hpp"
#include "attnscope/core/tensor.hpp"

namespace attnscope {

enum class Distribution {
  normal,        // N(0, 1) everywhere
  uniform,       // U(-1, 1) everywhere
  heavy_tailed,  // Student-t(3) tails, and a few K channels scaled up as real K caches have
  large_logits,  // q and K scaled so logits reach tens: stresses softmax and fp16 accumulation
  // q = -c and K = c plus a few binary16 ulps in every channel, c chosen from head_dim so that
  // every logit (at the default scale) lies near -6e4, all within a few units of each other: a
  // kernel that takes a finite sentinel such as -5e4 for "masked" or for its initial max loses
  // every key. The q.k products pass binary16's range: with fp16 accumulation the case overflows.
  negative_logits,
};

std::string_view to_string(Distribution d);
Distribution parse_distribution(std::string_view s);

struct DataSpec {
  Distribution dist = Distribution::normal;
  std::uint64_t seed = 20261126;
  double mask_fraction = 0.0;  // share of key positions masked out at random (0: none)
  // Left padding, as a batch of prompts of different lengths padded to one: sequence b's first
  // pad_b positions are masked, pad_b drawn uniformly from [0, seq_len - q_len].
  bool left_padding = false;
  // The first `fully_masked` sequences attend no key at all, their queries' own positions
  // included: every row of theirs is fully masked, with probabilities 0, lse -inf and out 0.
  int fully_masked = 0;
  // Ragged batch (0: every sequence holds seq_len positions): sequence 0 holds seq_len
  // positions, every other one a length drawn log-uniformly from [max(ragged_min_len, q_len),
  // seq_len], as decode batches of a serving engine are.
  std::int64_t ragged_min_len = 0;
  // NaN inside the window: V of sequence 0, KV head 0, at the first query's own position (which
  // every query of the sequence attends), channel 0. The output must carry it: channel 0 of every
  // query head of KV head 0 in sequence 0 is NaN, and nothing else is. A latent cache's V is its
  // K: the NaN is in K too, so every score of that key, and every output element of sequence 0,
  // is NaN.
  bool nan_in_window = false;
  // With nan_in_window: the NaN in K instead of V, at the same place. Every score of that key is
  // NaN, so every output element and the log-sum-exp of every query head of KV head 0 in
  // sequence 0 are NaN, and nothing else is.
  bool nan_in_key = false;
  // q spread over bfloat16's range, as a kernel that rescales q must take it: query head h's q
  // x 2^(6 ((h % 5) - 2)) (2^-12 to 2^12, so that the heads of a KV head differ), and channels
  // d % 5 == 4 a further 2^-40 down (more than 2^31 below their row's largest). bf16 and fp32
  // inputs only: binary16 holds neither end.
  bool q_spread = false;
  // Every cache slot no query attends (other layers, spare pages, tail capacity, positions past
  // seq_len in the last page, positions before the first query's window) holds NaN, +Inf or -Inf
  // in turn, in K and V: a kernel that reads one corrupts its output. The attended values are
  // the same as without.
  bool poison_outside = false;

  // Whether make_inputs gives a key mask.
  bool masks_keys() const { return mask_fraction > 0.0 || left_padding || fully_masked > 0; }
};

struct AttentionInputs {
  Problem problem;
  KvLayout layout;
  DataSpec data;
  HostTensor q;  // [batch, q_len, q_heads, head_dim]
  HostTensor k;  // the whole cache, layout.storage_elems() elements
  HostTensor v;  // same layout as k (a latent cache: a copy of k, of which V is the first v_dim
                 // channels of each row)
  // Empty, or [batch, seq_len]: 1 = attend, 0 = masked, by position in the sequence. Each
  // query's own position is unmasked, except in fully masked sequences (DataSpec::fully_masked).
  std::vector<std::uint8_t> key_mask;
  // Ragged batches: empty, or [batch] lengths in [q_len, problem.seq_len]. Sequence b's queries
  // sit at its last q_len positions, seq_len_of(b) - q_len + t, and its query t attends the
  // window ending there, cut at position 0.
  std::vector<std::int64_t> seq_lens;
  // fp8 caches (problem.kv_fp8; empty otherwise). k_cache and v_cache hold the codes, in the
  // layout; k_scale and v_scale the fp32 scales ([1], [kv_heads], or, per token, one a cache row
  // at the row's element offset / head_dim, in the layout's storage); k_orig and v_orig the values
  // before quantization, in the input format. k and v then hold each element's value as the
  // kernels must read it, code x scale, exactly (fp64): what the references attend.
  HostTensor k_cache, v_cache, k_scale, v_scale, k_orig, v_orig;

  std::int64_t q_offset(int b, int t, int h) const {
    return ((std::int64_t(b) * problem.q_len + t) * problem.q_heads + h) * problem.head_dim;
  }
  // The output row of (b, t, h) in [batch, q_len, q_heads, v_dim].
  std::int64_t out_offset(int b, int t, int h) const {
    return ((std::int64_t(b) * problem.q_len + t) * problem.q_heads + h) * problem.value_dim();
  }
  std::int64_t seq_len_of(int b) const {
    return seq_lens.empty() ? problem.seq_len : seq_lens[std::size_t(b)];
  }
  // The references and the precision models index keys by the position of the longest sequence
  // (problem.seq_len), so that score column j of query t is position problem.window_start(t) + j
  // of every sequence: sequence b's own position is that plus shift(b) (<= 0).
  std::int64_t shift(int b) const { return seq_len_of(b) - problem.seq_len; }
  // Whether sequence b attends the key at `pos` (in the longest sequence's positions): inside the
  // sequence and not masked.
  bool attends(int b, std::int64_t pos) const {
    const std::int64_t own = pos + shift(b);
    return own >= 0 && (key_mask.empty() ||
                        key_mask[std::size_t(std::int64_t(b) * problem.seq_len + own)] != 0);
  }
  // Element offset of the K/V row of (b, KV head h, pos), pos as attends() takes it.
  std::int64_t kv_offset(const KvAddressing& a, int b, int h, std::int64_t pos) const {
    return a.offset(b, h, pos + shift(b));
  }
};

// The scale index of a quantized cache's row (b, KV head h) at element offset `offset` (tensor:
// 0; head: h; token: offset / head_dim).
std::int64_t kv_scale_index(const Problem& p, int h, std::int64_t offset);
// The scales of each of K and V of a quantized cache of `storage` elements: 1 (tensor),
// kv_heads (head) or storage / head_dim (token: one a cache row).
std::int64_t fp8_scale_count(const Problem& p, std::int64_t storage);

// Logical element (b, h, pos, d) has the same value whatever the layout; storage that the
// selected layer does not own (other layers, spare pages, tail capacity) holds other data.
AttentionInputs make_inputs(const Problem& p, const KvLayoutSpec& layout, const DataSpec& data);

// The lengths of a ragged batch (DataSpec::ragged_min_len): sequence 0 holds p.seq_len
// positions, every other one a length drawn log-uniformly from [max(min_len, q_len), seq_len].
std::vector<std::int64_t> ragged_lengths(const Problem& p, std::int64_t min_len,
                                         std::uint64_t seed);

// The value make_inputs stores (before rounding to the input dtype) for a logical element.
// which: 0 = q (b, t=pos, h, d), 1 = K, 2 = V.
double generated_value(const Problem& p, const DataSpec& data, int which, int b, int h,
                       std::int64_t pos, int d);

}  // namespace attnscope
