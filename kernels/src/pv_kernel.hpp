// pv: out[b, t, h, :] = sum_j probs[b, h, t, j] * V[b, h / group, window_start(t) + j, :]
// The window is cut into `splits` chunks of consecutive positions, one block per (chunk, KV
// head, batch x query tile); V is read once for the whole GQA group. In a block, row-group r
// (LPR lanes holding one V row, 16 bytes a lane) accumulates positions r, r + ROWS, ...
// sequentially; the row-groups are added by an ascending tree in shared memory; chunk sums are
// added in chunk order by pv_combine (no atomics: results are the same on every run). Summation
// order per output element: model warp_tree(lanes=ROWS, vec=1, chunk=split_len). With fp16
// accumulation each probability is rounded to binary16 before its fused multiply-add.
#pragma once

#include "accum.hpp"
#include "fault.hpp"
#include "stage_kernels.hpp"

namespace attnscope::gpu::detail {

template <class T, Accum A, int D, int QT, Fault F>
// Two blocks a multiprocessor where the accumulators fit in 128 registers without spilling.
__global__ __launch_bounds__(kPvThreads, (QT <= 4 && D <= 128) ? 2 : 1) void pv_kernel(KernelParams p) {
  using Pol = AccPolicy<T, A, D>;
  using S = RowSplit<T, D>;
  constexpr int ROWS = kPvThreads / S::LPR;
  __shared__ float red[ROWS][D];
  const int lir = static_cast<int>(threadIdx.x) % S::LPR;
  const int rg = static_cast<int>(threadIdx.x) / S::LPR;
  const int split = static_cast<int>(blockIdx.x);
  const int kvh = static_cast<int>(blockIdx.y);
  const int b = static_cast<int>(blockIdx.z) / p.q_tiles;
  const int q0 = (static_cast<int>(blockIdx.z) % p.q_tiles) * QT;
  const int nq = min(QT, p.group * p.q_len - q0);

  const float* prow[QT];     // probability row of each query
  std::int64_t q_start[QT];  // window_start(t)
  int out_row[QT];           // (b, t, h) row of out
#pragma unroll
  for (int i = 0; i < QT; ++i) {
    const int qi = q0 + (i < nq ? i : 0);
    const int t = qi / p.group, h = query_head<F>(kvh, qi % p.group, p.group, p.kv_heads);
    prow[i] = p.probs + ((std::int64_t(b) * p.q_heads + h) * p.q_len + t) * p.window;
    q_start[i] = p.seq_len - p.q_len + t + 1 - p.window + FaultWindow<F>::shift;
    out_row[i] = (b * p.q_len + t) * p.q_heads + h;
  }
  typename Pol::Frag acc[QT];
#pragma unroll
  for (int i = 0; i < QT; ++i) Pol::zero(acc[i]);

  const std::int64_t c0 = p.span_start + std::int64_t(split) * p.split_len;
  const std::int64_t c1 = min(c0 + p.split_len, p.span_start + p.span);
  const T* vc = static_cast<const T*>(p.v);
  // kPvIter rows of V (and their probabilities) in flight per lane; positions are still taken
  // in the documented order r, r + ROWS, r + 2 ROWS, ...
  for (std::int64_t base = c0 + rg; base < c1; base += std::int64_t(ROWS) * kPvIter) {
    RawRow<T, D> vraw[kPvIter];
    float pj[kPvIter][QT];
#pragma unroll
    for (int it = 0; it < kPvIter; ++it) {
      const std::int64_t pos = base + std::int64_t(it) * ROWS;
      if (pos < c1) load_raw<T, D>(vc + kv_offset<F>(p.kv, b, kvh, pos), lir, vraw[it]);
#pragma unroll
      for (int i = 0; i < QT; ++i) {
        const std::int64_t j = pos - q_start[i];
        pj[it][i] = i < nq && pos < c1 && j >= FaultWindow<F>::lo && j >= 0 && j < p.window ? prow[i][j] : 0.0f;
      }
    }
#pragma unroll
    for (int it = 0; it < kPvIter; ++it) {
      const std::int64_t pos = base + std::int64_t(it) * ROWS;
      if (pos >= c1) continue;
      typename Pol::Frag v;
      Pol::from_raw(vraw[it], v);
#pragma unroll
      for (int i = 0; i < QT; ++i) {
        const std::int64_t j = pos - q_start[i];
        if (i < nq && j >= 0 && j < p.window) Pol::axpy(Pol::from_float(pj[it][i]), v, acc[i]);
      }
    }
  }

#pragma unroll
  for (int i = 0; i < QT; ++i) {
    if (i >= nq) continue;  // nq is uniform over the block
#pragma unroll
    for (int c = 0; c < S::NCH; ++c)
#pragma unroll
      for (int e = 0; e < S::VEC; ++e) red[rg][S::dim(c, lir, e)] = Pol::get(acc[i], c * S::VEC + e);
    __syncthreads();
    for (int s = 1; s < ROWS; s *= 2) {
      if (rg % (2 * s) == 0) {
#pragma unroll
        for (int c = 0; c < S::NCH; ++c)
#pragma unroll
          for (int e = 0; e < S::VEC; ++e) {
            const int d = S::dim(c, lir, e);
            red[rg][d] = Pol::to_float_s(Pol::add(Pol::from_float(red[rg][d]), Pol::from_float(red[rg + s][d])));
          }
      }
      if constexpr (F != Fault::missing_barrier) __syncthreads();
    }
    for (int d = static_cast<int>(threadIdx.x); d < D; d += kPvThreads) {
      if (p.splits == 1)
        store_output(p.out, std::int64_t(out_row[i]) * D + d, red[0][d], p.output);
      else
        static_cast<float*>(p.workspace)[(std::int64_t(out_row[i]) * p.splits + split) * D + d] = red[0][d];
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
      for (int k = 0; k < p.splits; ++k) s = __hadd(s, __float2half_rn(part[std::int64_t(k) * head_dim + d]));
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
    if (p.splits > 1 && a.workspace == nullptr) throw GpuError("pv: workspace required for split windows");
    check_grid(p.splits, p.kv_heads, std::int64_t(p.batch) * p.q_tiles, "pv");
    pv_kernel<T, A, D, QT, F><<<dim3(unsigned(p.splits), unsigned(p.kv_heads), unsigned(p.batch * p.q_tiles)),
                             kPvThreads, 0, st>>>(p);
    ATTNSCOPE_CHECK_LAUNCH();
    if (p.splits > 1) {
      const std::int64_t rows = std::int64_t(p.batch) * p.q_len * p.q_heads;
      check_grid(rows, 1, 1, "pv_combine");
      pv_combine<A><<<dim3(unsigned(rows)), D < 128 ? D : 128, 0, st>>>(p, D);
      ATTNSCOPE_CHECK_LAUNCH();
    }
  }
};

template <Fault F>
struct LaunchPv {
  const StageArgs& a;
  template <class T, Accum A, int D>
  void operator()() const {
    with_query_tile<D>(a.problem, PvLaunch<T, A, D, F>{a});
  }
};

}  // namespace attnscope::gpu::detail
