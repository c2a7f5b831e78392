// softmax: probs[row, :] = exp(x - max) / sum exp(x - max), x = scores[row, :] (times scale
// when the scale is applied here). One block per row [b, h, t]. A score of -inf (a masked key)
// gets probability 0; a row of -inf only (fully masked) gets probabilities 0 and lse -inf.
// fp32 accumulation: pass 1 keeps a running (max, sum) per thread with rescaling, merged
// across the block; pass 2 writes. fp16 accumulation: pass 1 finds the max (exact), pass 2 sums
// exp(x - max) rounded to binary16 in binary16, pass 3 divides in binary16. exp is evaluated
// in fp32 (expf). Summation order of the binary16 sum: thread i takes elements
// [VEC*i, VEC*i + VEC), then those plus VEC*T, ... sequentially, then an ascending butterfly over
// the T threads (model warp_tree(lanes=T, vec=VEC)); VEC = 4 when the row is 16-byte aligned.
#pragma once

#include "accum.hpp"
#include "fault.hpp"
#include "stage_kernels.hpp"

namespace attnscope::gpu::detail {

inline constexpr int kSmWarps = kSmThreads / kWarpSize;

struct MaxSum {
  float m, s;
};

__device__ __forceinline__ MaxSum shfl_xor_any(MaxSum v, int m) {
  return {shfl_xor(v.m, m), shfl_xor(v.s, m)};
}
__device__ __forceinline__ float shfl_xor_any(float v, int m) {
  return shfl_xor(v, m);
}
__device__ __forceinline__ __half shfl_xor_any(__half v, int m) {
  return shfl_xor_half(v, m);
}

// Ascending butterfly inside each warp, then across the warps; every thread gets the result.
template <class V, class Op>
__device__ V block_allreduce(V v, Op op, V* smem) {
#pragma unroll
  for (int m = 1; m < kWarpSize; m *= 2) v = op(v, shfl_xor_any(v, m));
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  __syncthreads();  // smem may still be read from a previous reduction
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  v = smem[lane % kSmWarps];
#pragma unroll
  for (int m = 1; m < kSmWarps; m *= 2) v = op(v, shfl_xor_any(v, m));
  return v;
}

__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.0f};
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

__device__ __forceinline__ void online(MaxSum& st, float x) {
  if (x == -INFINITY) return;  // a masked key: probability 0, whatever the running max
  if (x > st.m) {
    st.s = st.s * expf(st.m - x) + 1.0f;
    st.m = x;
  } else {
    st.s += expf(x - st.m);
  }
}

// Loads in flight per thread while a row is visited: a thread's next kSmLoads runs are loaded
// before the first of them is used (the order of use is unchanged).
inline constexpr int kSmLoads = 4;

// Visits the row in the documented order: VEC-element runs, thread-strided.
template <int VEC, class F>
__device__ __forceinline__ void for_row(const float* x, std::int64_t n, F&& f) {
  constexpr std::int64_t T = kSmThreads;
  constexpr int U = kSmLoads;
  std::int64_t i = threadIdx.x;
  if constexpr (VEC == 4) {
    for (; 4 * (i + (U - 1) * T) < n; i += U * T) {
      float4 v[U];
#pragma unroll
      for (int u = 0; u < U; ++u) v[u] = *reinterpret_cast<const float4*>(x + 4 * (i + u * T));
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const std::int64_t e = 4 * (i + u * T);
        f(e, v[u].x);
        f(e + 1, v[u].y);
        f(e + 2, v[u].z);
        f(e + 3, v[u].w);
      }
    }
    for (; 4 * i < n; i += T) {
      const float4 v = *reinterpret_cast<const float4*>(x + 4 * i);
      f(4 * i, v.x);
      f(4 * i + 1, v.y);
      f(4 * i + 2, v.z);
      f(4 * i + 3, v.w);
    }
  } else {
    for (; i + (U - 1) * T < n; i += U * T) {
      float v[U];
#pragma unroll
      for (int u = 0; u < U; ++u) v[u] = x[i + u * T];
#pragma unroll
      for (int u = 0; u < U; ++u) f(i + u * T, v[u]);
    }
    for (; i < n; i += T) f(i, x[i]);
  }
}

// y[e] = g(x[e]) for the whole row, in for_row's order, with 16-byte stores where VEC is 4.
template <int VEC, class G>
__device__ __forceinline__ void map_row(const float* x, float* y, std::int64_t n, G&& g) {
  constexpr std::int64_t T = kSmThreads;
  constexpr int U = kSmLoads;
  std::int64_t i = threadIdx.x;
  if constexpr (VEC == 4) {
    auto one = [&](std::int64_t w, float4 v) {
      *reinterpret_cast<float4*>(y + 4 * w) = make_float4(g(v.x), g(v.y), g(v.z), g(v.w));
    };
    for (; 4 * (i + (U - 1) * T) < n; i += U * T) {
      float4 v[U];
#pragma unroll
      for (int u = 0; u < U; ++u) v[u] = *reinterpret_cast<const float4*>(x + 4 * (i + u * T));
#pragma unroll
      for (int u = 0; u < U; ++u) one(i + u * T, v[u]);
    }
    for (; 4 * i < n; i += T) one(i, *reinterpret_cast<const float4*>(x + 4 * i));
  } else {
    for_row<1>(x, n, [&](std::int64_t e, float v) { y[e] = g(v); });
  }
}

template <Accum A, int VEC, Fault F>
__global__ __launch_bounds__(kSmThreads) void softmax_kernel(KernelParams p, int apply_scale) {
  __shared__ MaxSum smem_ms[kSmWarps];
  __shared__ float smem_f[kSmWarps];
  __shared__ __half smem_h[kSmWarps];
  const std::int64_t row = blockIdx.x;
  const std::int64_t n = p.window;
  const float* x = p.scores + row * n;
  float* y = p.probs + row * n;
  const float scale = apply_scale ? p.scale : 1.0f;

  if constexpr (A == Accum::fp32 && F == Fault::no_max_shift) {
    float s = 0.0f;
    for_row<VEC>(x, n, [&](std::int64_t, float v) { s += expf(v * scale); });
    s = block_allreduce(
        s, [](float a, float b) { return a + b; }, smem_f);
    map_row<VEC>(x, y, n, [&](float v) { return expf(v * scale) / s; });
    if (threadIdx.x == 0) p.lse[row] = logf(s);
  } else if constexpr (A == Accum::fp32) {
    MaxSum st{-INFINITY, 0.0f};
    for_row<VEC>(x, n, [&](std::int64_t, float v) { online(st, v * scale); });
    st = block_allreduce(
        st, [](MaxSum a, MaxSum b) { return merge(a, b); }, smem_ms);
    // A fully masked row (every score -inf): probabilities 0 and lse -inf.
    const bool none = st.m == -INFINITY;
    map_row<VEC>(x, y, n, [&](float v) { return none ? 0.0f : expf(v * scale - st.m) / st.s; });
    if (threadIdx.x == 0) p.lse[row] = none ? -INFINITY : st.m + logf(st.s);
  } else {
    float m = -INFINITY;
    for_row<VEC>(x, n, [&](std::int64_t, float v) { m = fmaxf(m, v * scale); });
    m = block_allreduce(
        m, [](float a, float b) { return fmaxf(a, b); }, smem_f);
    // A fully masked row (every score -inf): probabilities 0 and lse -inf.
    const bool none = m == -INFINITY;
    if constexpr (F == Fault::no_max_shift) m = 0.0f;
    __half s = __float2half_rn(0.0f);
    if (!none)
      for_row<VEC>(x, n, [&](std::int64_t, float v) {
        s = __hadd(s, __float2half_rn(expf(v * scale - m)));
      });
    s = block_allreduce(
        s, [](__half a, __half b) { return __hadd(a, b); }, smem_h);
    map_row<VEC>(x, y, n, [&](float v) {
      return none ? 0.0f : __half2float(__hdiv(__float2half_rn(expf(v * scale - m)), s));
    });
    if (threadIdx.x == 0) p.lse[row] = none ? -INFINITY : m + logf(__half2float(s));
  }
}

template <Fault F>
void launch_softmax_f(const StageArgs& a) {
  const KernelParams p = make_params(a, 1);
  const std::int64_t rows = std::int64_t(p.batch) * p.q_heads * p.q_len;
  check_grid(rows, 1, 1, "softmax", kSmThreads);
  const bool vec4 = softmax_vec(p.window) == 4;  // the order softmax_order declares
  const int apply = a.scale_in_softmax ? 1 : 0;
  const dim3 grid(static_cast<unsigned>(rows));
  hipStream_t st = static_cast<hipStream_t>(a.stream);
  if (a.problem.accum == Accum::fp32) {
    if (vec4)
      softmax_kernel<Accum::fp32, 4, F><<<grid, kSmThreads, 0, st>>>(p, apply);
    else
      softmax_kernel<Accum::fp32, 1, F><<<grid, kSmThreads, 0, st>>>(p, apply);
  } else {
    if (vec4)
      softmax_kernel<Accum::fp16, 4, F><<<grid, kSmThreads, 0, st>>>(p, apply);
    else
      softmax_kernel<Accum::fp16, 1, F><<<grid, kSmThreads, 0, st>>>(p, apply);
  }
  ATTNSCOPE_CHECK_LAUNCH();
}

}  // namespace attnscope::gpu::detail
