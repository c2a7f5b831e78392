// fused and split_kv: attention from q, K and V to out and log-sum-exp in one pass over the
// window with an online softmax (running max m, running sum l, output accumulator rescaled when
// m grows). A block owns (split, KV head, batch x query tile); each row-group of LPR lanes walks
// positions r, r + ROWS, ... of the block's part of the window, keeping its own (m, l, acc) per
// query; the row-groups are merged by an ascending tree in shared memory.
//  - fused: one split, the block normalizes and writes out and lse.
//  - split_kv (flash-decoding): the window is cut into splits; each block writes its normalized
//    partial output and log-sum-exp, and decode_combine merges the splits in split order,
//    weighting each by exp(lse_s - max lse), in fp32.
// fp16 accumulation keeps l and acc in binary16 (scores from the binary16 dot, exp evaluated in
// fp32 and rounded to binary16); fp32 accumulation keeps them in float.
#pragma once

#include "accum.hpp"
#include "fault.hpp"
#include "stage_kernels.hpp"

namespace attnscope::gpu::detail {

template <class T, Accum A, int D, int QT, bool kSplit, Fault F>
// Two blocks a multiprocessor where the state fits in 128 registers without spilling.
__global__ __launch_bounds__(kDecThreads, (QT <= 4 && D <= 128) ? 2 : 1) void decode_kernel(KernelParams p) {
  using Pol = AccPolicy<T, A, D>;
  using S = RowSplit<T, D>;
  using Sc = typename Pol::Scalar;
  constexpr int ROWS = kDecThreads / S::LPR;
  __shared__ float red_acc[ROWS][D];
  __shared__ float red_m[ROWS];
  __shared__ float red_l[ROWS];
  const int lir = static_cast<int>(threadIdx.x) % S::LPR;
  const int rg = static_cast<int>(threadIdx.x) / S::LPR;
  const int split = static_cast<int>(blockIdx.x);
  const int kvh = static_cast<int>(blockIdx.y);
  const int b = static_cast<int>(blockIdx.z) / p.q_tiles;
  const int q0 = (static_cast<int>(blockIdx.z) % p.q_tiles) * QT;
  const int nq = min(QT, p.group * p.q_len - q0);

  typename Pol::Frag q[QT];
  typename Pol::Frag acc[QT];
  float m[QT];
  Sc l[QT];
  std::int64_t q_start[QT];
  int out_row[QT];  // (b, t, h)
#pragma unroll
  for (int i = 0; i < QT; ++i) {
    const int qi = q0 + (i < nq ? i : 0);
    const int t = qi / p.group, h = query_head<F>(kvh, qi % p.group, p.group, p.kv_heads);
    Pol::load(static_cast<const T*>(p.q) + ((std::int64_t(b) * p.q_len + t) * p.q_heads + h) * D, lir, q[i]);
    Pol::zero(acc[i]);
    m[i] = F == Fault::no_max_shift ? 0.0f : -INFINITY;
    l[i] = Pol::from_float(0.0f);
    q_start[i] = p.seq_len - p.q_len + t + 1 - p.window;
    out_row[i] = (b * p.q_len + t) * p.q_heads + h;
  }

  const std::int64_t c0 = p.span_start + std::int64_t(split) * p.split_len;
  const std::int64_t c1 = min(c0 + p.split_len, p.span_start + p.span);
  const T* kc = static_cast<const T*>(p.k);
  const T* vc = static_cast<const T*>(p.v);
  // Up to kDecIter K and V rows in flight per lane, taken in the documented order r, r + ROWS, ...
  // Every lane of a warp runs the same number of steps: the dot's shuffles need the whole warp,
  // so a row-group past the end computes on zeros and discards the result.
  // Fewer rows in flight where a row takes several 16-byte words, to stay in registers.
  constexpr int ITER = S::NCH >= kDecIter ? 1 : kDecIter / S::NCH;
  for (std::int64_t base = c0; base < c1; base += std::int64_t(ROWS) * ITER) {
    RawRow<T, D> kraw[ITER], vraw[ITER];
#pragma unroll
    for (int it = 0; it < ITER; ++it) {
      const std::int64_t pos = base + rg + std::int64_t(it) * ROWS;
      if (pos < c1) {
        const std::int64_t off = kv_offset<F>(p.kv, b, kvh, pos);
        load_raw<T, D>(kc + off, lir, kraw[it]);
        load_raw<T, D>(vc + off, lir, vraw[it]);
      } else {
        zero_raw<T, D>(kraw[it]);
        zero_raw<T, D>(vraw[it]);
      }
    }
#pragma unroll
    for (int it = 0; it < ITER; ++it) {
      const std::int64_t pos = base + rg + std::int64_t(it) * ROWS;
      const bool valid = pos < c1;
      typename Pol::Frag k, v;
      Pol::from_raw(kraw[it], k);
      Pol::from_raw(vraw[it], v);
#pragma unroll
      for (int i = 0; i < QT; ++i) {
        if (i >= nq) continue;  // uniform over the block
        const float s = Pol::dot(q[i], k) * p.scale;
        const std::int64_t j = pos - q_start[i];
        if (!valid || j < FaultWindow<F>::lo || j >= p.window + FaultWindow<F>::hi) continue;
        float pr = 1.0f;
        if (F != Fault::no_max_shift && s > m[i]) {
          const Sc alpha = Pol::from_float(expf(m[i] - s));  // 0 on the first key
          l[i] = Pol::mul(l[i], alpha);
          Pol::scale(alpha, acc[i]);
          m[i] = s;
        } else {
          pr = expf(s - m[i]);
        }
        const Sc ps = Pol::from_float(pr);
        l[i] = Pol::add(l[i], ps);
        Pol::axpy(ps, v, acc[i]);
      }
    }
  }

#pragma unroll
  for (int i = 0; i < QT; ++i) {
    if (i >= nq) continue;  // nq is uniform over the block
#pragma unroll
    for (int c = 0; c < S::NCH; ++c)
#pragma unroll
      for (int e = 0; e < S::VEC; ++e) red_acc[rg][S::dim(c, lir, e)] = Pol::get(acc[i], c * S::VEC + e);
    if (lir == 0) {
      red_m[rg] = m[i];
      red_l[rg] = Pol::to_float_s(l[i]);
    }
    __syncthreads();
    for (int s = 1; s < ROWS; s *= 2) {
      const bool active = rg % (2 * s) == 0;
      float new_m = 0.0f, new_l = 0.0f;
      if (active) {
        const float m1 = red_m[rg], m2 = red_m[rg + s];
        const float mm = fmaxf(m1, m2);
        // An empty row-group has m = -inf and weighs nothing.
        const Sc f1 = Pol::from_float(m1 == -INFINITY ? 0.0f : expf(m1 - mm));
        const Sc f2 = Pol::from_float(m2 == -INFINITY ? 0.0f : expf(m2 - mm));
#pragma unroll
        for (int c = 0; c < S::NCH; ++c)
#pragma unroll
          for (int e = 0; e < S::VEC; ++e) {
            const int d = S::dim(c, lir, e);
            red_acc[rg][d] = Pol::to_float_s(Pol::add(Pol::mul(Pol::from_float(red_acc[rg][d]), f1),
                                                      Pol::mul(Pol::from_float(red_acc[rg + s][d]), f2)));
          }
        new_m = mm;
        new_l = Pol::to_float_s(Pol::add(Pol::mul(Pol::from_float(red_l[rg]), f1),
                                         Pol::mul(Pol::from_float(red_l[rg + s]), f2)));
      }
      __syncthreads();  // every lane of the row-group has read red_m / red_l
      if (active && lir == 0) {
        red_m[rg] = new_m;
        red_l[rg] = new_l;
      }
      if constexpr (F != Fault::missing_barrier) __syncthreads();
    }
    const float mt = red_m[0];
    const Sc lt = Pol::from_float(red_l[0]);
    for (int d = static_cast<int>(threadIdx.x); d < D; d += kDecThreads) {
      const float o = Pol::to_float_s(lt) == 0.0f ? 0.0f : Pol::to_float_s(Pol::div(Pol::from_float(red_acc[0][d]), lt));
      if constexpr (kSplit)
        static_cast<float*>(p.workspace)[(std::int64_t(out_row[i]) * p.splits + split) * D + d] = o;
      else
        store_output(p.out, std::int64_t(out_row[i]) * D + d, o, p.output);
    }
    if (threadIdx.x == 0) {
      const float lf = Pol::to_float_s(lt);
      const float lse = lf > 0.0f ? mt + logf(lf) : -INFINITY;
      const int t = out_row[i] / p.q_heads % p.q_len, h = out_row[i] % p.q_heads;
      if constexpr (kSplit) {
        float* lse_part = static_cast<float*>(p.workspace) +
                          std::int64_t(p.batch) * p.q_len * p.q_heads * p.splits * D;
        lse_part[std::int64_t(out_row[i]) * p.splits + split] = lse;
      } else {
        p.lse[(std::int64_t(b) * p.q_heads + h) * p.q_len + t] = lse;
      }
    }
    __syncthreads();
  }
}

// Merges split partials of one (b, t, h) row in split order, in fp32.
template <Fault F>
__global__ void decode_combine(KernelParams p) {
  const std::int64_t row = blockIdx.x;  // (b, t, h)
  const int D = p.head_dim;
  const float* part = static_cast<const float*>(p.workspace) + row * p.splits * D;
  const float* lse_part = static_cast<const float*>(p.workspace) +
                          std::int64_t(p.batch) * p.q_len * p.q_heads * p.splits * D + row * p.splits;
  float mx = -INFINITY;
  for (int s = 0; s < p.splits; ++s) mx = fmaxf(mx, lse_part[s]);
  float w = 0.0f;
  // The fault leaves the last split out of the merge.
  const int merged = F == Fault::split_dropped && p.splits > 1 ? p.splits - 1 : p.splits;
  for (int s = 0; s < merged; ++s)
    if (lse_part[s] != -INFINITY) w += expf(lse_part[s] - mx);
  for (int d = static_cast<int>(threadIdx.x); d < D; d += static_cast<int>(blockDim.x)) {
    float o = 0.0f;
    for (int s = 0; s < merged; ++s)
      if (lse_part[s] != -INFINITY) o = fmaf(expf(lse_part[s] - mx), part[std::int64_t(s) * D + d], o);
    store_output(p.out, row * D + d, o / w, p.output);
  }
  if (threadIdx.x == 0) {
    const int h = static_cast<int>(row % p.q_heads);
    const int t = static_cast<int>(row / p.q_heads % p.q_len);
    const int b = static_cast<int>(row / (std::int64_t(p.q_heads) * p.q_len));
    p.lse[(std::int64_t(b) * p.q_heads + h) * p.q_len + t] = mx + logf(w);
  }
}

template <class T, Accum A, int D, bool kSplit, Fault F>
struct DecodeLaunch {
  const StageArgs& a;
  template <int QT>
  void run() const {
    KernelParams p = make_params(a, QT);
    // Faults that attend keys outside the window widen the span the blocks walk.
    constexpr int below = FaultWindow<F>::lo < 0 ? -FaultWindow<F>::lo : 0;
    p.span_start -= below;
    p.span += below + FaultWindow<F>::hi;
    p.splits = kSplit ? split_kv_splits(a.problem, launch_context(a)) : 1;
    p.split_len = (p.span + p.splits - 1) / p.splits;
    hipStream_t st = static_cast<hipStream_t>(a.stream);
    if (kSplit && a.workspace == nullptr) throw GpuError("split_kv: workspace required");
    check_grid(p.splits, p.kv_heads, std::int64_t(p.batch) * p.q_tiles, kSplit ? "split_kv" : "fused");
    decode_kernel<T, A, D, QT, kSplit, F>
        <<<dim3(unsigned(p.splits), unsigned(p.kv_heads), unsigned(p.batch * p.q_tiles)), kDecThreads, 0, st>>>(p);
    ATTNSCOPE_CHECK_LAUNCH();
    if constexpr (kSplit) {
      const std::int64_t rows = std::int64_t(p.batch) * p.q_len * p.q_heads;
      check_grid(rows, 1, 1, "split_kv combine");
      decode_combine<F><<<dim3(unsigned(rows)), D < 128 ? D : 128, 0, st>>>(p);
      ATTNSCOPE_CHECK_LAUNCH();
    }
  }
};

template <bool kSplit, Fault F>
struct LaunchDecode {
  const StageArgs& a;
  template <class T, Accum A, int D>
  void operator()() const {
    with_query_tile<D>(a.problem, DecodeLaunch<T, A, D, kSplit, F>{a});
  }
};

}  // namespace attnscope::gpu::detail
