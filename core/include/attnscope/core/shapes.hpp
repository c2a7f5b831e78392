// The decode shapes the benchmark sets time (quick, default, full), shared with the accuracy
// suite's tuning sweep so that a tuning run's error and time are for the same shapes.
#pragma once

#include <optional>

#include <cstdint>
#include <string>
#include <vector>

#include "attnscope/core/layout.hpp"
#include "attnscope/core/problem.hpp"

namespace attnscope {

// The problem of one decode step and its cache layout.
struct DecodeShape {
  int batch = 1;
  int q_heads = 32;
  int kv_heads = 8;
  std::int64_t window = 4096;
  int head_dim = 128;
  DType input = DType::fp16;
  Accum accum = Accum::fp32;
  KvLayoutKind layout = KvLayoutKind::bhsd;
  // A ragged serving batch: 0, or the shortest length; sequence lengths are then drawn
  // log-uniformly from [ragged_min, window] (ragged_lengths, seed kRaggedSeed), sequence 0 the
  // longest, and each sequence attends all of its positions.
  std::int64_t ragged_min = 0;
  static constexpr std::uint64_t kRaggedSeed = 20261130;
  // An fp8 KV cache (Problem::kv_fp8) with scales of this granularity; none: K and V in `input`.
  std::optional<Fp8Format> kv_fp8;
  KvScale kv_scale = KvScale::tensor;
  // A latent (MLA) cache, DeepSeek-V2/V3's decode attention: q_heads query heads on one latent
  // row a position (kv_heads and head_dim are then Problem::kMlaQkDim's shape, V 512 wide, the
  // softmax scale 1/sqrt(192) as those models use).
  bool latent = false;
  int page_size = 0;  // paged layouts: positions a page; 0: the run's choice (16 by default)

  Problem problem() const {
    Problem p;
    p.batch = batch;
    p.q_heads = q_heads;
    p.kv_heads = kv_heads;
    p.q_len = 1;
    p.window = window;
    p.seq_len = window;  // the cache holds exactly the attended window
    p.head_dim = head_dim;
    p.input = input;
    p.output = input;
    p.accum = accum;
    p.kv_fp8 = kv_fp8;
    p.kv_scale = kv_scale;
    if (latent) {
      p.kv_heads = 1;
      p.head_dim = Problem::kMlaQkDim;
      p.v_dim = Problem::kMlaVDim;
      p.latent = true;
      p.scale = 1.0 / 13.856406460551018;  // 1/sqrt(192)
    }
    return p;
  }
  // The sequence lengths of a ragged batch, empty otherwise.
  std::vector<std::int64_t> seq_lens() const;
  KvLayoutSpec layout_spec() const {
    KvLayoutSpec l;
    l.kind = layout;
    if (page_size > 0) l.page_size = page_size;
    return l;
  }
};

// The shapes of a benchmark set: quick, default (the debug shape, Llama-3-8B decode at windows
// 1K to 128K and batch 1 to 64, MHA at 4K and 8K, and a ragged serving batch of 64 sequences of
// 256 to 32K positions in a paged cache) or full; throws std::invalid_argument on another name.
std::vector<DecodeShape> bench_shapes(const std::string& set);

// The split counts a tuning run tries: powers of two from 1 while each split keeps at least
// min_len positions of the span (at most 1024 splits).
std::vector<int> tuning_splits(const Problem& p, std::int64_t min_len);
// The shortest split a tuning run tries: two tiles of the decode kernel (32 positions each at
// head_dim 128), below the 128 its heuristic keeps to, so the table shows whether that floor is
// right.
inline constexpr std::int64_t kTuneMinSplitLen = 64;

}  // namespace attnscope
