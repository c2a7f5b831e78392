// The launch geometry of attnscope's stage kernels, shared by the device code and the host code
// that declares each kernel's summation order: one definition, so the order the precision model
// follows is the order the kernel runs.
#pragma once

#include <cstdint>

#include "attnscope/core/problem.hpp"

namespace attnscope::gpu::detail {

// Block sizes.
inline constexpr int kQkThreads = 256;
inline constexpr int kSmThreads = 512;
inline constexpr int kPvThreads = 256;
inline constexpr int kDecThreads = 256;
// Rows in flight per lane.
inline constexpr int kQkIter = 8;   // K rows (qk)
inline constexpr int kPvIter = 4;   // V rows (pv)
inline constexpr int kDecIter = 4;  // K and V rows (fused, split_kv)

// A lane loads 16 bytes of a row at a time: row_vec elements.
constexpr int row_vec(int elem_bytes) { return 16 / elem_bytes; }
// Lanes holding one row of head_dim elements (at most 16, so a warp of 32 or 64 holds whole rows).
constexpr int row_lanes(int head_dim, int elem_bytes) {
  return head_dim / row_vec(elem_bytes) < 16 ? head_dim / row_vec(elem_bytes) : 16;
}
// Row-groups of a block: positions r, r + rows, ... go to row-group r.
constexpr int row_groups(int threads, int head_dim, int elem_bytes) {
  return threads / row_lanes(head_dim, elem_bytes);
}

// Queries per tile (4 or 8): every query of a KV head shares one pass over its K/V rows, and
// each takes registers, so small groups (Llama's 4) and head_dim 256 use tiles of 4.
inline int query_tile(const Problem& p) {
  return p.head_dim == 256 || p.group() * p.q_len <= 4 ? 4 : 8;
}

// softmax reads 4 scores a thread at a time where every row is 16-byte aligned.
constexpr int softmax_vec(std::int64_t window) { return window % 4 == 0 ? 4 : 1; }

// Positions every query of a row of queries touches: the window plus q_len - 1.
inline std::int64_t span_of(const Problem& p) { return p.window + p.q_len - 1; }

// Window splits that fill a device of `multiprocessors`: as many as fit in one wave of two blocks
// per multiprocessor (rounded down: one more split than fits starts a second, mostly idle wave,
// which the tune run measured at 1.2x to 1.45x the best count), at least `min_len` positions
// each, at most 65535 (the grid limit).
inline int auto_splits(const Problem& p, int multiprocessors, std::int64_t min_len) {
  const std::int64_t tiles = (std::int64_t(p.group()) * p.q_len + query_tile(p) - 1) / query_tile(p);
  const std::int64_t blocks = std::int64_t(p.batch) * p.kv_heads * tiles;
  const std::int64_t want = 2LL * multiprocessors / blocks;
  const std::int64_t by_len = span_of(p) / min_len;
  const std::int64_t most = by_len < 1 ? 1 : (by_len > 65535 ? 65535 : by_len);
  return static_cast<int>(want < 1 ? 1 : (want > most ? most : want));
}
inline constexpr std::int64_t kPvMinSplitLen = 128;
inline constexpr std::int64_t kSplitKvMinSplitLen = 256;

}  // namespace attnscope::gpu::detail
