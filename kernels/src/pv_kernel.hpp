// pv: out[b, t, h, :] = sum_j probs[b, h, t, j] * V[b, h / group, window_start(t) + j, :], keys
// the key mask masks left out.
// The window is cut into `splits` chunks of consecutive positions, one block per (chunk, KV
// head, batch x query tile); V is read once for the whole GQA group. V rows and their
// probabilities stream through shared memory, up to kPvStages tiles in flight (AsyncCopy:
// cp.async where the platform has it); each lane copies exactly the V words it later reads, and
// lane l < QT x TK of a row-group one probability (key l / QT, query l % QT) of its keys. In a
// block, row-group r (LPR lanes holding one V row, 16 bytes a lane) accumulates positions r,
// r + ROWS, ... sequentially; the row-groups are added by an ascending tree in shared memory;
// chunk sums are added in chunk order by pv_combine (no atomics: results are the same on every
// run). Summation order per output element: model warp_tree(lanes=ROWS, vec=1,
// chunk=split_len). With fp16 accumulation each probability is rounded to binary16 before its
// fused multiply-add.
#pragma once

#include "accum.hpp"
#include "fault.hpp"
#include "stage_kernels.hpp"
#include "tile_dot.hpp"

namespace attnscope::gpu::detail {

template <class T, int D, int QT>
struct PvGeom {
  using S = RowSplit<T, D>;
  static constexpr int L = S::LPR;
  static constexpr int R = kPvThreads / L;
  static constexpr int CH = S::NCH;
  static constexpr int TK = tile_keys(QT, D, static_cast<int>(sizeof(T)), R, 1, kPvStageBytes);
  static constexpr int KEYS = R * TK;
  static constexpr int V_WORDS = TK * R * CH * L;
  static constexpr int P_WORDS = (TK * R * QT + 3) / 4;  // probabilities [j][rg][query]
  static constexpr int STAGE_WORDS = V_WORDS + P_WORDS;
  static constexpr int STAGES_FIT = kPvStages * kPvStageBytes / (V_WORDS * 16);
  static constexpr int STAGES =
      STAGES_FIT < 2 ? 2 : (STAGES_FIT > kPvStages ? kPvStages : STAGES_FIT);
  // After the last tile the shared memory holds the row-group sums, [ROWS][D] floats.
  static constexpr int RED_WORDS = R * D / 4;
  static constexpr int SMEM_WORDS =
      STAGES * STAGE_WORDS > RED_WORDS ? STAGES* STAGE_WORDS : RED_WORDS;
  static_assert(QT * TK <= L, "a row's lanes copy the tile's probabilities");
  __device__ static int vword(int j, int rg, int c, int lane) {
    return ((j * R + rg) * CH + c) * L + lane;
  }
  __device__ static int pidx(int j, int rg, int i) { return (j * R + rg) * QT + i; }
};

template <class T, Accum A, int D, int QT, Fault F>
// Two blocks a multiprocessor where the accumulators fit in 128 registers without spilling.
__global__ __launch_bounds__(kPvThreads,
                             (QT <= 4 && D <= 128) ? 2 : 1) void pv_kernel(KernelParams p) {
  using G = PvGeom<T, D, QT>;
  using Pol = AccPolicy<T, A, D>;
  using S = RowSplit<T, D>;
  constexpr int ROWS = G::R, L = G::L, TK = G::TK, KEYS = G::KEYS;
  __shared__ uint4 smem[G::SMEM_WORDS];
  const int lir = static_cast<int>(threadIdx.x) % L;
  const int rg = static_cast<int>(threadIdx.x) / L;
  int split, bz;
  if (!unfold_block(p, split, bz)) return;
  const int kvh = static_cast<int>(blockIdx.y);
  const int b = bz / p.q_tiles;
  const int q0 = (bz % p.q_tiles) * QT;
  const int nq = min(QT, p.group * p.q_len - q0);

  std::int64_t q_start[QT];  // window_start(t)
  int out_row[QT];           // (b, t, h) row of out
#pragma unroll
  for (int i = 0; i < QT; ++i) {
    const int qi = q0 + (i < nq ? i : 0);
    const int t = qi / p.group, h = query_head<F>(kvh, qi % p.group, p.group, p.kv_heads);
    q_start[i] = p.seq_len - p.q_len + t + 1 - p.window + FaultWindow<F>::shift;
    out_row[i] = (b * p.q_len + t) * p.q_heads + h;
  }
  // The probability this lane copies: key pj of its row-group's keys, query pi.
  const int pj = lir / QT, pi = lir % QT;
  const bool copies_p = lir < QT * TK;
  const int pqi = q0 + (pi < nq ? pi : 0);
  const float* prow =
      p.probs +
      ((std::int64_t(b) * p.q_heads + query_head<F>(kvh, pqi % p.group, p.group, p.kv_heads)) *
           p.q_len +
       pqi / p.group) *
          p.window;
  const std::int64_t p_start = q_start[pi];

  typename Pol::Frag acc[QT];
#pragma unroll
  for (int i = 0; i < QT; ++i) Pol::zero(acc[i]);

  const std::int64_t c0 = p.span_start + std::int64_t(split) * p.split_len;
  const std::int64_t c1 = min(c0 + p.split_len, p.span_start + p.span);
  const std::int64_t shift = seq_shift(p, b);
  RowStream<F, T, D, ROWS, TK> rows(p.kv, b, kvh, c0, c1, rg, lir, shift);
  const int ntiles = rows.ntiles;
  // Positions in the run that every query of the tile attends: [all_lo, all_hi).
  std::int64_t all_lo = q_start[0], all_hi = min(q_start[0] + p.window, c1);
#pragma unroll
  for (int i = 1; i < QT; ++i) {
    all_lo = max(all_lo, q_start[i]);
    all_hi = min(all_hi, q_start[i] + p.window);
  }
  const void* const src[1] = {p.v};
  auto queue = [&](int t) {
    uint4* st = smem + (t % G::STAGES) * G::STAGE_WORDS;
    if (copies_p) {
      const std::int64_t pos = rows.pos0(t) + std::int64_t(pj) * ROWS;
      const std::int64_t jw = pos - p_start;
      const bool ok =
          t < ntiles && pi < nq && pos < c1 && jw >= FaultWindow<F>::lo && jw >= 0 && jw < p.window;
      float* pdst = reinterpret_cast<float*>(st + G::V_WORDS) + G::pidx(pj, rg, pi);
      AsyncCopy::copy4(pdst, ok ? prow + jw : prow, ok);
    }
    rows.queue(t, src, st, [&](int j, int, int c) { return G::vword(j, rg, c, lir); });
  };
  stream_tiles<G::STAGES>(ntiles, queue, [&](int t) {
    // The probabilities were copied by other lanes of the row-group: a warp barrier makes their
    // copies visible (a row-group lies within one warp).
    sync_warp();
    const uint4* st = smem + (t % G::STAGES) * G::STAGE_WORDS;
    const float* pr = reinterpret_cast<const float*>(st + G::V_WORDS);
    const std::int64_t tile0 = c0 + std::int64_t(t) * KEYS;
    // Mostly every key of the tile lies in every query's window: no test a key and query.
    // With a key mask (or before a ragged sequence's start) every key is tested: a masked key's V
    // is never read, even where it holds NaN (its probability is 0).
    const bool inside =
        p.key_mask == nullptr && tile0 + shift >= 0 && tile0 >= all_lo && tile0 + KEYS <= all_hi;
#pragma unroll
    for (int j = 0; j < TK; ++j) {
      const std::int64_t pos = tile0 + std::int64_t(j) * ROWS + rg;
      if (!inside && (pos >= c1 || !key_attended<F>(p, b, shift, pos))) continue;
      RawRow<T, D> raw;
#pragma unroll
      for (int c = 0; c < S::NCH; ++c) raw.w[c] = st[G::vword(j, rg, c, lir)];
      typename Pol::Frag v;
      Pol::from_raw(raw, v);
      float pq[QT];
      if constexpr (QT % 4 == 0) {
#pragma unroll
        for (int i = 0; i < QT; i += 4) {
          const float4 x = *reinterpret_cast<const float4*>(pr + G::pidx(j, rg, i));
          pq[i] = x.x;
          pq[i + 1] = x.y;
          pq[i + 2] = x.z;
          pq[i + 3] = x.w;
        }
      } else {
#pragma unroll
        for (int i = 0; i < QT; ++i) pq[i] = pr[G::pidx(j, rg, i)];
      }
#pragma unroll
      for (int i = 0; i < QT; ++i) {
        if (i >= nq) continue;  // uniform over the block
        if (!inside) {
          const std::int64_t jw = pos - q_start[i];
          if (jw < 0 || jw >= p.window) continue;
        }
        Pol::axpy(Pol::from_float(pq[i]), v, acc[i]);
      }
    }
    // Every lane of the warp has read this stage's probabilities before any lane refills it.
    sync_warp();
  });
  AsyncCopy::wait<0>();
  __syncthreads();  // every lane is done with the tiles: their memory becomes the row-group sums

  float(*red)[D] = reinterpret_cast<float(*)[D]>(smem);
#pragma unroll
  for (int i = 0; i < QT; ++i) {
    if (i >= nq) continue;  // nq is uniform over the block
#pragma unroll
    for (int c = 0; c < S::NCH; ++c)
#pragma unroll
      for (int e = 0; e < S::VEC; ++e)
        red[rg][S::dim(c, lir, e)] = Pol::get(acc[i], c * S::VEC + e);
    __syncthreads();
    for (int s = 1; s < ROWS; s *= 2) {
      if (rg % (2 * s) == 0) {
#pragma unroll
        for (int c = 0; c < S::NCH; ++c)
#pragma unroll
          for (int e = 0; e < S::VEC; ++e) {
            const int d = S::dim(c, lir, e);
            red[rg][d] = Pol::to_float_s(
                Pol::add(Pol::from_float(red[rg][d]), Pol::from_float(red[rg + s][d])));
          }
      }
      if constexpr (F != Fault::missing_barrier) __syncthreads();
    }
    for (int d = static_cast<int>(threadIdx.x); d < D; d += kPvThreads) {
      if (p.splits == 1)
        store_output(p.out, std::int64_t(out_row[i]) * D + d, red[0][d], p.output);
      else
        static_cast<float*>(p.workspace)[(std::int64_t(out_row[i]) * p.splits + split) * D + d] =
            red[0][d];
    }
    __syncthreads();
  }
}

// Adds the chunk partials [row, split, D] in split order.
template <Accum A>
__global__ void pv_combine(KernelParams p, int head_dim) {
  const std::int64_t row = blockIdx.x;
  const float* part = static_cast<const float*>(p.workspace) + row * p.splits * head_dim;
  for (int d = static_cast<int>(threadIdx.x); d < head_dim; d += static_cast<int>(blockDim.x)) {
    if constexpr (A == Accum::fp32) {
      float s = 0.0f;
      for (int k = 0; k < p.splits; ++k) s += part[std::int64_t(k) * head_dim + d];
      store_output(p.out, row * head_dim + d, s, p.output);
    } else {
      __half s = __float2half_rn(0.0f);
      for (int k = 0; k < p.splits; ++k)
        s = __hadd(s, __float2half_rn(part[std::int64_t(k) * head_dim + d]));
      store_output(p.out, row * head_dim + d, __half2float(s), p.output);
    }
  }
}

template <class T, Accum A, int D, Fault F>
struct PvLaunch {
  const StageArgs& a;
  template <int QT>
  void run() const {
    KernelParams p = make_params(a, QT);
    p.span_start += FaultWindow<F>::shift;
    p.splits = pv_splits(a.problem, launch_context(a));
    p.split_len = (p.span + p.splits - 1) / p.splits;
    hipStream_t st = static_cast<hipStream_t>(a.stream);
    if (p.splits > 1 && a.workspace == nullptr)
      throw GpuError("pv: workspace required for split windows");
    if (p.splits > 1)
      check_workspace(a, std::size_t(p.batch) * p.q_len * p.q_heads * p.splits * D * sizeof(float),
                      "pv");
    p.grid_x = p.splits;
    const Grid3 g =
        fold_grid(p.splits, p.kv_heads, std::int64_t(p.batch) * p.q_tiles, "pv", kPvThreads);
    const dim3 grid(g.x, g.y, g.z);
    pv_kernel<T, A, D, QT, F><<<grid, kPvThreads, 0, st>>>(p);
    ATTNSCOPE_CHECK_LAUNCH();
    if (p.splits > 1) {
      const std::int64_t rows = std::int64_t(p.batch) * p.q_len * p.q_heads;
      check_grid(rows, 1, 1, "pv_combine");
      const unsigned threads = D < 128 ? D : 128;
      pv_combine<A><<<dim3(unsigned(rows)), threads, 0, st>>>(p, D);
      ATTNSCOPE_CHECK_LAUNCH();
    }
  }
};

template <Fault F>
struct LaunchPv {
  const StageArgs& a;
  template <class T, Accum A, int D>
  void operator()() const {
    with_query_tile<T, D>(a.problem, PvLaunch<T, A, D, F>{a});
  }
};

}  // namespace attnscope::gpu::detail
