// Kernel parameters passed by value, and the query tiling shared by the stage kernels.
#pragma once

#include <cstdint>

#include "attnscope/core/dtype.hpp"
#include "attnscope/core/layout.hpp"
#include "attnscope/kernels/registry.hpp"
#include "config.hpp"

namespace attnscope::gpu::detail {

// The queries that share one KV head: q_len positions x group heads, tiled QT at a time.
// Query index qi in [0, group * q_len): t = qi / group, h = kv_head * group + qi % group.
struct KernelParams {
  int batch, q_heads, kv_heads, group, q_len, head_dim;
  int v_dim;  // the width of V rows and of the output (a latent cache's V is its rows' first v_dim)
  std::int64_t seq_len, window;
  std::int64_t span;        // window + q_len - 1: positions touched by some query of a row
  std::int64_t span_start;  // window_start(0)
  float scale;              // applied where the stage applies it
  DType output;
  const void* q;
  const void* k;
  const void* v;
  // fp8 caches: the scales (StageArgs::k_scale, v_scale); per tensor or head, a KV head's at
  // [kv head x scale_step]; token_scales: one a cache row, at the row's element offset / head_dim.
  const float* k_scale;
  const float* v_scale;
  int scale_step;
  bool token_scales;
  KvAddressing kv;
  const std::uint8_t* key_mask;  // [batch, seq_len], 0 = masked; null: none
  const std::int64_t* seq_lens;  // [batch] (ragged batches); null: every sequence seq_len long
  float* scores;
  float* probs;
  void* out;
  float* lse;
  void* workspace;
  int q_tiles;             // tiles of queries per KV head
  int qt;                  // queries per tile
  int splits;              // window splits (pv chunks, split_kv splits)
  std::int64_t split_len;  // positions per split
  // fused and split_kv on a ragged batch: the splits that hold positions, every sequence's from
  // its first, laid out on the grid's x (0: the grid is splits x ... as for any batch)
  int ragged_items;
  // The x extent of the grid before fold_grid carried the part of z past 65535 onto x.
  int grid_x;
};

// The stage kernels address a page's rows in 32 bits (RowStream): a paged cache whose page holds
// 2^31 bytes or more is refused (GpuError), as attnscope_support reports before any launch.
void check_page_bytes(const KvAddressing& kv, DType elem, const char* kernel);

inline KernelParams make_params(const StageArgs& a, int qt) {
  const Problem& p = a.problem;
  check_page_bytes(a.kv, p.kv_dtype(), "attnscope kernel");
  KernelParams k{};
  k.batch = p.batch;
  k.q_heads = p.q_heads;
  k.kv_heads = p.kv_heads;
  k.group = p.group();
  k.q_len = p.q_len;
  k.head_dim = p.head_dim;
  k.v_dim = p.value_dim();
  k.seq_len = p.seq_len;
  k.window = p.window;
  k.span = span_of(p);
  k.span_start = p.window_start(0);
  k.scale = static_cast<float>(p.effective_scale());
  k.output = p.output;
  k.q = a.q;
  k.k = a.k;
  k.v = a.v;
  k.k_scale = a.k_scale;
  k.v_scale = a.v_scale;
  k.scale_step = p.kv_scale == KvScale::head ? 1 : 0;
  k.token_scales = p.kv_fp8.has_value() && p.kv_scale == KvScale::token;
  k.kv = a.kv;
  k.key_mask = a.key_mask;
  k.seq_lens = a.seq_lens;
  k.scores = a.scores;
  k.probs = a.probs;
  k.out = a.out;
  k.lse = a.lse;
  k.workspace = a.workspace;
  k.qt = qt;
  k.q_tiles = (k.group * k.q_len + qt - 1) / qt;
  k.splits = 1;
  k.split_len = k.span;
  k.ragged_items = 0;
  k.grid_x = 1;
  return k;
}

}  // namespace attnscope::gpu::detail
