// qk: scores[b, h, t, j] = scale * q[b, t, h, :] . K[b, h / group, window_start(t) + j, :], or
// -inf where the key mask masks that key.
// Decode-first design: a block holds every query of a tile (all query heads of a GQA group where
// they fit) and streams a run of positions of one KV head through shared memory, up to
// kQkStages tiles in flight (AsyncCopy: cp.async where the platform has it), so K is read once for
// the group. Row-group r of the block takes positions r, r + rows, ... of a tile; its lanes'
// partial dots are reduce-scattered (tile_dot.hpp): summation order per score the lane's elements
// sequentially, then an ascending butterfly over the row's lanes (model warp_tree(lanes=LPR,
// vec=VEC, pack=1 for fp32 accumulation, 2 for fp16)). A tile's scores go through shared memory
// and are written as one contiguous run per query.
#pragma once

#include "accum.hpp"
#include "fault.hpp"
#include "stage_kernels.hpp"
#include "tile_dot.hpp"

namespace attnscope::gpu::detail {

template <class T, int D, int QT>
struct QkGeom {
  using S = RowSplit<T, D>;
  static constexpr int L = S::LPR;
  static constexpr int R = kQkThreads / L;
  static constexpr int CH = S::NCH;
  static constexpr int TK = tile_keys(QT, D, static_cast<int>(sizeof(T)), R, 1, kQkStageBytes);
  static constexpr int NV = QT * TK;
  static constexpr int KEYS = R * TK;
  static constexpr int STAGE_WORDS = TK * R * CH * L;
  // Tiles in flight: kQkStages, fewer (at least two) where a tile of R rows passes kQkStageBytes.
  static constexpr int STAGES_FIT = kQkStages * kQkStageBytes / (STAGE_WORDS * 16);
  static constexpr int STAGES =
      STAGES_FIT < 2 ? 2 : (STAGES_FIT > kQkStages ? kQkStages : STAGES_FIT);
  static_assert(NV <= L && (NV & (NV - 1)) == 0, "a row's lanes hold the tile's scores");
  // 16-byte word (key j of the tile, row-group, chunk, lane) within a stage.
  __device__ static int word(int j, int rg, int c, int lane) {
    return ((j * R + rg) * CH + c) * L + lane;
  }
};

template <class T, Accum A, int D, int QT, Fault F>
__global__ __launch_bounds__(
    kQkThreads,
    (qk_blocks_per_sm(QT, D, static_cast<int>(sizeof(T))))) void qk_kernel(KernelParams p,
                                                                           int apply_scale) {
  using G = QkGeom<T, D, QT>;
  using Pol = AccPolicy<T, A, D>;
  constexpr int L = G::L, R = G::R, TK = G::TK, NV = G::NV, KEYS = G::KEYS;
  __shared__ uint4 tiles[G::STAGES * G::STAGE_WORDS];
  __shared__ float sc[2][QT][KEYS];
  const int lir = static_cast<int>(threadIdx.x) % L;
  const int rg = static_cast<int>(threadIdx.x) / L;
  const int kvh = static_cast<int>(blockIdx.y);
  int run, bz;
  if (!unfold_block(p, run, bz)) return;
  const int b = bz / p.q_tiles;
  const int q0 = (bz % p.q_tiles) * QT;
  const int nq = min(QT, p.group * p.q_len - q0);
  const float scale = apply_scale ? p.scale : 1.0f;

  // Queries past nq repeat the tile's first query; their scores are never written.
  typename Pol::Frag q[QT];
#pragma unroll
  for (int i = 0; i < QT; ++i) {
    const int qi = q0 + (i < nq ? i : 0);
    const int t = qi / p.group, h = query_head<F>(kvh, qi % p.group, p.group, p.kv_heads);
    Pol::load(static_cast<const T*>(p.q) + ((std::int64_t(b) * p.q_len + t) * p.q_heads + h) * D,
              lir, q[i]);
  }
  const int own = scatter_owner<NV>(lir % NV);
  const int g_own = own % QT, j_own = own / QT;

  const std::int64_t c0 = p.span_start + std::int64_t(run) * p.split_len;
  const std::int64_t c1 = min(c0 + p.split_len, p.span_start + p.span);
  const std::int64_t shift = seq_shift(p, b);
  RowStream<F, T, D, R, TK> rows(p.kv, b, kvh, c0, c1, rg, lir, shift);
  const int ntiles = rows.ntiles;
  const void* const src[1] = {p.k};
  // The score of a tile this thread stores (QT x KEYS <= kQkThreads: at most one): query my_i,
  // key my_local of the tile, at my_row[position - my_start].
  static_assert(QT * KEYS <= kQkThreads, "a thread stores at most one score a tile");
  const int my_i = static_cast<int>(threadIdx.x) / KEYS,
            my_local = static_cast<int>(threadIdx.x) % KEYS;
  const bool mine = my_i < nq;
  float* my_row = p.scores;
  std::int64_t my_start = 0;
  if (mine) {
    const int qi = q0 + my_i;
    const int tq = qi / p.group, h = query_head<F>(kvh, qi % p.group, p.group, p.kv_heads);
    my_row += (std::int64_t(b * p.q_heads + h) * p.q_len + tq) * p.window;
    my_start = p.seq_len - p.q_len + tq + 1 - p.window + FaultWindow<F>::shift;
  }
  auto queue = [&](int t) {
    rows.queue(t, src, tiles + (t % G::STAGES) * G::STAGE_WORDS,
               [&](int j, int, int c) { return G::word(j, rg, c, lir); });
  };
  stream_tiles<G::STAGES>(ntiles, queue, [&](int t) {
    const uint4* st = tiles + (t % G::STAGES) * G::STAGE_WORDS;
    const auto score = tile_scores<Pol, T, D, QT, TK>(
        q,
        [&](int j, typename Pol::Frag& k) {
          RawRow<T, D> raw;
#pragma unroll
          for (int c = 0; c < RowSplit<T, D>::NCH; ++c) raw.w[c] = st[G::word(j, rg, c, lir)];
          Pol::from_raw(raw, k);
        },
        lir);
    // Lanes own + k x NV hold copies of the same score; the first writes it. Two buffers: the
    // barrier of tile t + 1 orders tile t's reads before tile t + 2's writes.
    if (lir < NV) sc[t & 1][g_own][j_own * R + rg] = Pol::dot_float(score) * scale;
    __syncthreads();
    if (mine) {
      const std::int64_t pos = c0 + std::int64_t(t) * KEYS + my_local;
      const std::int64_t j = pos - my_start;
      if (pos < c1 && j >= 0 && j < p.window) {
        const bool dropped = F == Fault::first_key_dropped && j == 0;
        // A masked key's score is -inf, never a finite sentinel.
        const bool masked = !key_attended<F>(p, b, shift, pos);
        constexpr float kMasked = F == Fault::finite_sentinel ? -5e4f : -INFINITY;
        my_row[j] = dropped ? -INFINITY : masked ? kMasked : sc[t & 1][my_i][my_local];
      }
    }
  });
}

template <class T, Accum A, int D, Fault F>
struct QkLaunch {
  const StageArgs& a;
  template <int QT>
  void run() const {
    KernelParams p = make_params(a, QT);
    p.span_start += FaultWindow<F>::shift;
    // Runs of positions: enough blocks for two waves of the device where the span allows, whole
    // tiles each. Every score is one dot, so the run length leaves the summation order alone.
    constexpr int keys = QkGeom<T, D, QT>::KEYS;
    const std::int64_t blocks = std::int64_t(p.batch) * p.kv_heads * p.q_tiles;
    const std::int64_t slots =
        std::int64_t(multiprocessor_count()) * qk_blocks_per_sm(QT, D, static_cast<int>(sizeof(T)));
    const std::int64_t tiles = (p.span + keys - 1) / keys;
    std::int64_t runs = (2 * slots + blocks - 1) / blocks;
    if (runs > tiles) runs = tiles;
    if (runs < 1) runs = 1;
    p.split_len = (tiles + runs - 1) / runs * keys;
    const std::int64_t gx = (p.span + p.split_len - 1) / p.split_len;
    p.grid_x = static_cast<int>(gx);
    const Grid3 g = fold_grid(gx, p.kv_heads, std::int64_t(p.batch) * p.q_tiles, "qk", kQkThreads);
    const dim3 grid(g.x, g.y, g.z);
    qk_kernel<T, A, D, QT, F><<<grid, kQkThreads, 0, static_cast<hipStream_t>(a.stream)>>>(
        p, a.scale_in_softmax ? 0 : 1);
    ATTNSCOPE_CHECK_LAUNCH();
  }
};

template <Fault F>
struct LaunchQk {
  const StageArgs& a;
  template <class T, Accum A, int D>
  void operator()() const {
    with_query_tile<T, D>(a.problem, QkLaunch<T, A, D, F>{a});
  }
};

}  // namespace attnscope::gpu::detail
