// qk: scores[b, h, t, j] = scale * q[b, t, h, :] . K[b, h / group, window_start(t) + j, :]
// Decode-first design: a block streams a run of positions of one KV head and dots every K row
// with all queries of the GQA group (K is read once). Each lane loads 16 bytes of a row per
// chunk; LPR lanes hold a row. Summation order per score: the lane's elements sequentially,
// then an ascending butterfly over the LPR lanes (model warp_tree(lanes=LPR, vec=VEC, pack=1
// for fp32 accumulation, 2 for fp16)).
#pragma once

#include "accum.hpp"
#include "fault.hpp"
#include "stage_kernels.hpp"

namespace attnscope::gpu::detail {


// K rows in flight per lane: 8 words of 16 bytes (fewer rows when a row takes several words).
template <class T, int D>
inline constexpr int kQkRowsInFlight = RowSplit<T, D>::NCH >= 4 ? 2 : kQkIter / RowSplit<T, D>::NCH;

template <class T, Accum A, int D, int QT, Fault F>
__global__ __launch_bounds__(kQkThreads, 2) void qk_kernel(KernelParams p, int apply_scale) {
  using Pol = AccPolicy<T, A, D>;
  using S = RowSplit<T, D>;
  constexpr int ROWS = kQkThreads / S::LPR;
  const int lir = static_cast<int>(threadIdx.x) % S::LPR;
  const int rg = static_cast<int>(threadIdx.x) / S::LPR;
  const int kvh = static_cast<int>(blockIdx.y);
  const int b = static_cast<int>(blockIdx.z) / p.q_tiles;
  const int q0 = (static_cast<int>(blockIdx.z) % p.q_tiles) * QT;
  const int nq = min(QT, p.group * p.q_len - q0);
  const float scale = apply_scale ? p.scale : 1.0f;
  const std::int64_t end = p.span_start + p.span;
  constexpr int ITER = kQkRowsInFlight<T, D>;
  const std::int64_t base = p.span_start + std::int64_t(blockIdx.x) * (ROWS * ITER);
  const T* kc = static_cast<const T*>(p.k);

  // K rows first, as raw 16-byte words: ITER rows per lane in flight before any use.
  // Rows past the end are zeros: every lane runs every dot, whose shuffles need the whole warp.
  RawRow<T, D> kraw[ITER];
#pragma unroll
  for (int it = 0; it < ITER; ++it) {
    const std::int64_t pos = base + rg + it * ROWS;
    if (pos < end) load_raw<T, D>(kc + kv_offset<F>(p.kv, b, kvh, pos), lir, kraw[it]);
    else zero_raw<T, D>(kraw[it]);
  }

  typename Pol::Frag q[QT];
#pragma unroll
  for (int i = 0; i < QT; ++i) {
    const int qi = q0 + (i < nq ? i : 0);
    const int t = qi / p.group, h = query_head<F>(kvh, qi % p.group, p.group, p.kv_heads);
    const T* qrow = static_cast<const T*>(p.q) + ((std::int64_t(b) * p.q_len + t) * p.q_heads + h) * D;
    Pol::load(qrow, lir, q[i]);
  }

  // Scores go through shared memory so that each query's run of positions is written to global
  // memory as one contiguous, coalesced stretch (one lane per row would write 4 scattered bytes).
  __shared__ float tile[QT][ROWS * ITER];
#pragma unroll
  for (int it = 0; it < ITER; ++it) {
    typename Pol::Frag k;
    Pol::from_raw(kraw[it], k);
#pragma unroll
    for (int i = 0; i < QT; ++i) {
      if (i >= nq) continue;  // uniform over the block
      const float s = Pol::dot(q[i], k);
      if (lir == i % S::LPR) tile[i][rg + it * ROWS] = s * scale;
    }
  }
  __syncthreads();
  for (int idx = static_cast<int>(threadIdx.x); idx < nq * ROWS * ITER; idx += kQkThreads) {
    const int i = idx / (ROWS * ITER), local = idx % (ROWS * ITER);
    const std::int64_t pos = base + local;
    const int qi = q0 + i;
    const int t = qi / p.group, h = query_head<F>(kvh, qi % p.group, p.group, p.kv_heads);
    const std::int64_t j = pos - (p.seq_len - p.q_len + t + 1 - p.window) - FaultWindow<F>::shift;
    if (pos < end && j >= 0 && j < p.window) {
      const bool dropped = F == Fault::first_key_dropped && j == 0;
      p.scores[(std::int64_t(b * p.q_heads + h) * p.q_len + t) * p.window + j] =
          dropped ? -INFINITY : tile[i][local];
    }
  }
}

template <class T, Accum A, int D, Fault F>
struct QkLaunch {
  const StageArgs& a;
  template <int QT>
  void run() const {
    KernelParams p = make_params(a, QT);
    p.span_start += FaultWindow<F>::shift;
    constexpr int per_block = (kQkThreads / RowSplit<T, D>::LPR) * kQkRowsInFlight<T, D>;
    const std::int64_t gx = (p.span + per_block - 1) / per_block;
    check_grid(gx, p.kv_heads, std::int64_t(p.batch) * p.q_tiles, "qk");
    qk_kernel<T, A, D, QT, F><<<dim3(unsigned(gx), unsigned(p.kv_heads), unsigned(p.batch * p.q_tiles)),
                             kQkThreads, 0, static_cast<hipStream_t>(a.stream)>>>(p, a.scale_in_softmax ? 0 : 1);
    ATTNSCOPE_CHECK_LAUNCH();
  }
};

template <Fault F>
struct LaunchQk {
  const StageArgs& a;
  template <class T, Accum A, int D>
  void operator()() const {
    with_query_tile<D>(a.problem, QkLaunch<T, A, D, F>{a});
  }
};

}  // namespace attnscope::gpu::detail
