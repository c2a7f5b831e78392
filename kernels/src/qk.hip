// qk: scores[b, h, t, j] = scale * q[b, t, h, :] . K[b, h / group, window_start(t) + j, :]
// Decode-first design: a block streams a run of positions of one KV head and dots every K row
// with all queries of the GQA group (K is read once). Each lane loads 16 bytes of a row per
// chunk; LPR lanes hold a row. Summation order per score: the lane's elements sequentially,
// then an ascending butterfly over the LPR lanes (model warp_tree(lanes=LPR, vec=VEC, pack=1
// for fp32 accumulation, 2 for fp16)).
#include "accum.hpp"
#include "stage_kernels.hpp"

namespace attnscope::gpu::detail {

namespace {


template <class T, Accum A, int D, int QT>
__global__ __launch_bounds__(kQkThreads) void qk_kernel(KernelParams p, int apply_scale) {
  using Pol = AccPolicy<T, A, D>;
  using S = RowSplit<T, D>;
  constexpr int ROWS = kQkThreads / S::LPR;
  const int lir = static_cast<int>(threadIdx.x) % S::LPR;
  const int rg = static_cast<int>(threadIdx.x) / S::LPR;
  const int kvh = static_cast<int>(blockIdx.y);
  const int b = static_cast<int>(blockIdx.z) / p.q_tiles;
  const int q0 = (static_cast<int>(blockIdx.z) % p.q_tiles) * QT;
  const int nq = min(QT, p.group * p.q_len - q0);

  typename Pol::Frag q[QT];
  int q_row[QT];            // score row index (b, h, t)
  std::int64_t q_start[QT]; // window_start(t)
#pragma unroll
  for (int i = 0; i < QT; ++i) {
    const int qi = q0 + (i < nq ? i : 0);
    const int t = qi / p.group, h = kvh * p.group + qi % p.group;
    const T* qrow = static_cast<const T*>(p.q) + ((std::int64_t(b) * p.q_len + t) * p.q_heads + h) * D;
    Pol::load(qrow, lir, q[i]);
    q_row[i] = (b * p.q_heads + h) * p.q_len + t;
    q_start[i] = p.seq_len - p.q_len + t + 1 - p.window;
  }
  const float scale = apply_scale ? p.scale : 1.0f;
  const std::int64_t end = p.span_start + p.span;
  const std::int64_t base = p.span_start + std::int64_t(blockIdx.x) * (ROWS * kQkIter);
  const T* kc = static_cast<const T*>(p.k);

  // Rows past the end are zeros: every lane runs every dot, whose shuffles need the whole warp.
  typename Pol::Frag k[kQkIter];
#pragma unroll
  for (int it = 0; it < kQkIter; ++it) {
    const std::int64_t pos = base + rg + it * ROWS;
    Pol::zero(k[it]);
    if (pos < end) Pol::load(kc + p.kv.offset(b, kvh, pos), lir, k[it]);
  }
#pragma unroll
  for (int it = 0; it < kQkIter; ++it) {
    const std::int64_t pos = base + rg + it * ROWS;
#pragma unroll
    for (int i = 0; i < QT; ++i) {
      if (i >= nq) continue;  // uniform over the block
      const float s = Pol::dot(q[i], k[it]);
      const std::int64_t j = pos - q_start[i];
      if (pos < end && lir == i % S::LPR && j >= 0 && j < p.window)
        p.scores[std::int64_t(q_row[i]) * p.window + j] = s * scale;
    }
  }
}

struct LaunchQk {
  const StageArgs& a;
  template <class T, Accum A, int D>
  void operator()() const {
    constexpr int QT = kQueryTile<D>;
    const KernelParams p = make_params(a, QT);
    constexpr int per_block = (kQkThreads / RowSplit<T, D>::LPR) * kQkIter;
    const std::int64_t gx = (p.span + per_block - 1) / per_block;
    check_grid(gx, p.kv_heads, std::int64_t(p.batch) * p.q_tiles, "qk");
    qk_kernel<T, A, D, QT><<<dim3(unsigned(gx), unsigned(p.kv_heads), unsigned(p.batch * p.q_tiles)),
                             kQkThreads, 0, static_cast<hipStream_t>(a.stream)>>>(p, a.scale_in_softmax ? 0 : 1);
    ATTNSCOPE_CHECK_LAUNCH();
  }
};

}  // namespace

void launch_qk(const StageArgs& a) { dispatch(a.problem, LaunchQk{a}); }

}  // namespace attnscope::gpu::detail
