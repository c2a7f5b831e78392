// Host launchers of attnscope's stage kernels (registered in registry.hip).
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>

#include "attnscope/kernels/registry.hpp"
#include "params.hpp"

namespace attnscope::gpu::detail {

// Block sizes; the summation orders documented by each kernel depend on them.
inline constexpr int kQkThreads = 256;
inline constexpr int kQkIter = 8;  // K rows in flight per lane
inline constexpr int kPvIter = 4;  // V rows in flight per lane
inline constexpr int kDecIter = 4; // K and V rows in flight per lane
inline constexpr int kSmThreads = 512;
inline constexpr int kPvThreads = 256;
inline constexpr int kDecThreads = 256;

// Queries per tile (4 or 8): every query of a KV head shares one pass over its K/V rows, and
// each takes registers, so small groups (Llama's 4) and head_dim 256 use tiles of 4.
inline int query_tile(const Problem& p) {
  return p.head_dim == 256 || p.group() * p.q_len <= 4 ? 4 : 8;
}
// Lanes holding one row of head_dim elements (16 bytes each, at most 16 lanes).
inline int lanes_per_row(const Problem& p) {
  const int vec = 16 / static_cast<int>(size_of(p.input));
  return std::min(p.head_dim / vec, 16);
}

int multiprocessor_count();
// Grid-dimension guard: y and z are limited to 65535 on every platform.
void check_grid(std::int64_t x, std::int64_t y, std::int64_t z, const char* kernel);

void launch_qk(const StageArgs& a);
void launch_softmax(const StageArgs& a);
void launch_pv(const StageArgs& a);
void launch_fused(const StageArgs& a);
void launch_split_kv(const StageArgs& a);

std::string qk_summation_order(const Problem& p);
std::string softmax_summation_order(const Problem& p);
std::string pv_summation_order(const Problem& p, int splits);
std::string decode_summation_order(const Problem& p, int splits);

// Window splits (pv chunks, split_kv splits) that fill the device: about two blocks per
// multiprocessor, at least `min_len` positions each.
int auto_splits(const Problem& p, int q_tile, std::int64_t min_len);
int pv_splits(const Problem& p, int requested);
int split_kv_splits(const Problem& p, int requested);
std::size_t pv_workspace_bytes(const Problem& p, int splits);
std::size_t split_kv_workspace_bytes(const Problem& p, int splits);

}  // namespace attnscope::gpu::detail
