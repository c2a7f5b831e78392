// Accumulation policies: how a lane holds its part of a row and accumulates in fp32 or fp16.
// fp16 accumulation is real binary16 arithmetic on packed pairs (__hfma2), not float rounded.
#pragma once

#include "common.hpp"
#include "fault.hpp"
#include "stage_kernels.hpp"

namespace attnscope::gpu::detail {

// The kernels index keys by the positions of the longest sequence (seq_len): score column j of
// query t is position seq_len - q_len + t + 1 - window + j for every sequence, and sequence b's
// own position is that plus seq_shift(p, b) (<= 0; 0 unless the batch is ragged).
__device__ __forceinline__ std::int64_t seq_shift(const KernelParams& p, int b) {
  return p.seq_lens == nullptr ? 0 : p.seq_lens[b] - p.seq_len;
}

// Whether sequence b attends the key at `pos` (shift = seq_shift(p, b)): inside the sequence,
// and not masked (mask_ignored: the mask is not looked at).
template <Fault F = Fault::none>
__device__ __forceinline__ bool key_attended(const KernelParams& p, int b, std::int64_t shift,
                                             std::int64_t pos) {
  const std::int64_t own = pos + shift;
  if (own < 0) return false;
  return F == Fault::mask_ignored || p.key_mask == nullptr ||
         p.key_mask[std::int64_t(b) * p.seq_len + own] != 0;
}

// A block's x index (below p.grid_x) and z index (batch x query tile) on a grid fold_grid made;
// false for the blocks past the last z (the fold rounds up), which return at once.
__device__ __forceinline__ bool unfold_block(const KernelParams& p, int& x, int& z) {
  const int x_all = static_cast<int>(blockIdx.x);
  x = x_all % p.grid_x;
  const std::int64_t zz = std::int64_t(x_all / p.grid_x) * gridDim.z + blockIdx.z;
  z = static_cast<int>(zz);
  return zz < std::int64_t(p.batch) * p.q_tiles;
}

template <class T, Accum A, int D>
struct AccPolicy;

// fp32: inputs widened to float, one float accumulator per lane and product (fmaf).
template <class T, int D>
struct AccPolicy<T, Accum::fp32, D> {
  using S = RowSplit<T, D>;
  using Scalar = float;
  struct Frag {
    float x[S::PER_LANE];
  };
  __device__ static void load(const T* row, int lir, Frag& f) { load_row<T, D>(row, lir, f.x); }
  __device__ static void from_raw(const RawRow<T, D>& r, Frag& f) {
#pragma unroll
    for (int c = 0; c < S::NCH; ++c) {
      const T* e = reinterpret_cast<const T*>(&r.w[c]);
#pragma unroll
      for (int i = 0; i < S::VEC; ++i) f.x[c * S::VEC + i] = to_float(e[i]);
    }
  }
  // Sequential over the lane's elements, then an ascending butterfly over the LPR lanes.
  __device__ static float dot(const Frag& a, const Frag& b) {
    return group_sum<S::LPR>(dot_lane(a, b));
  }
  // The lane's part of a dot, and how parts are added: the decode kernel's reduce-scatter adds
  // the same parts in the same tree as the butterfly.
  using Dot = float;
  __device__ static Dot dot_lane(const Frag& a, const Frag& b) {
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < S::PER_LANE; ++i) s = fmaf(a.x[i], b.x[i], s);
    return s;
  }
  __device__ static Dot dot_add(Dot a, Dot b) {
    return a + b;
  }
  __device__ static float dot_float(Dot a) {
    return a;
  }
  __device__ static void zero(Frag& f) {
#pragma unroll
    for (int i = 0; i < S::PER_LANE; ++i) f.x[i] = 0.0f;
  }
  __device__ static Scalar from_float(float v) {
    return v;
  }
  __device__ static float to_float_s(Scalar v) {
    return v;
  }
  __device__ static Scalar add(Scalar a, Scalar b) {
    return a + b;
  }
  __device__ static Scalar mul(Scalar a, Scalar b) {
    return a * b;
  }
  __device__ static Scalar div(Scalar a, Scalar b) {
    return a / b;
  }
  // f += p * v
  __device__ static void axpy(Scalar p, const Frag& v, Frag& f) {
#pragma unroll
    for (int i = 0; i < S::PER_LANE; ++i) f.x[i] = fmaf(p, v.x[i], f.x[i]);
  }
  __device__ static void scale(Scalar a, Frag& f) {
#pragma unroll
    for (int i = 0; i < S::PER_LANE; ++i) f.x[i] *= a;
  }
  __device__ static float get(const Frag& f, int i) {
    return f.x[i];
  }
  __device__ static void set(Frag& f, int i, float v) {
    f.x[i] = v;
  }
};

// fp16: the lane's elements as __half2 pairs. A dot keeps two interleaved accumulators (the
// low and high halves of a __half2), added at the end, then the butterfly: in model terms
// warp_tree(lanes=LPR, vec=VEC, pack=2).
template <int D>
struct AccPolicy<__half, Accum::fp16, D> {
  using S = RowSplit<__half, D>;
  using Scalar = __half;
  static constexpr int P = S::PER_LANE / 2;
  struct Frag {
    __half2 x[P];
  };
  __device__ static void load(const __half* row, int lir, Frag& f) {
    load_row_half2<D>(row, lir, f.x);
  }
  __device__ static void from_raw(const RawRow<__half, D>& r, Frag& f) {
#pragma unroll
    for (int c = 0; c < S::NCH; ++c) {
      const __half2* e = reinterpret_cast<const __half2*>(&r.w[c]);
#pragma unroll
      for (int i = 0; i < S::VEC / 2; ++i) f.x[c * S::VEC / 2 + i] = e[i];
    }
  }
  __device__ static float dot(const Frag& a, const Frag& b) {
    return __half2float(group_sum<S::LPR>(dot_lane(a, b)));
  }
  using Dot = __half;
  __device__ static Dot dot_lane(const Frag& a, const Frag& b) {
    __half2 s = __float2half2_rn(0.0f);
#pragma unroll
    for (int i = 0; i < P; ++i) s = __hfma2(a.x[i], b.x[i], s);
    return __hadd(__low2half(s), __high2half(s));
  }
  __device__ static Dot dot_add(Dot a, Dot b) {
    return __hadd(a, b);
  }
  __device__ static float dot_float(Dot a) {
    return __half2float(a);
  }
  __device__ static void zero(Frag& f) {
#pragma unroll
    for (int i = 0; i < P; ++i) f.x[i] = __float2half2_rn(0.0f);
  }
  __device__ static Scalar from_float(float v) {
    return __float2half_rn(v);
  }
  __device__ static float to_float_s(Scalar v) {
    return __half2float(v);
  }
  __device__ static Scalar add(Scalar a, Scalar b) {
    return __hadd(a, b);
  }
  __device__ static Scalar mul(Scalar a, Scalar b) {
    return __hmul(a, b);
  }
  __device__ static Scalar div(Scalar a, Scalar b) {
    return __hdiv(a, b);
  }
  __device__ static void axpy(Scalar p, const Frag& v, Frag& f) {
    const __half2 p2 = __half2half2(p);
#pragma unroll
    for (int i = 0; i < P; ++i) f.x[i] = __hfma2(p2, v.x[i], f.x[i]);
  }
  __device__ static void scale(Scalar a, Frag& f) {
    const __half2 a2 = __half2half2(a);
#pragma unroll
    for (int i = 0; i < P; ++i) f.x[i] = __hmul2(a2, f.x[i]);
  }
  __device__ static float get(const Frag& f, int i) {
    return __half2float(i % 2 == 0 ? __low2half(f.x[i / 2]) : __high2half(f.x[i / 2]));
  }
  __device__ static void set(Frag& f, int i, float v) {
    const __half h = __float2half_rn(v);
    f.x[i / 2] = i % 2 == 0 ? __halves2half2(h, __high2half(f.x[i / 2]))
                            : __halves2half2(__low2half(f.x[i / 2]), h);
  }
};

// Storage type of each input format inside kernels.
template <DType>
struct StorageOf;
template <>
struct StorageOf<DType::fp16> {
  using type = __half;
};
template <>
struct StorageOf<DType::bf16> {
  using type = Bf16;
};
template <>
struct StorageOf<DType::fp32> {
  using type = float;
};

// Calls f.template operator()<T, A, D>() for the problem's input, accumulation and head_dim.
// fp16 accumulation is instantiated for fp16 inputs only (see unsupported_reason).
template <class F>
void dispatch(const Problem& p, F&& f) {
  auto by_dim = [&](auto t_tag, auto a_tag) {
    using T = typename decltype(t_tag)::type;
    constexpr Accum A = decltype(a_tag)::value;
    switch (p.head_dim) {
      case 64:
        f.template operator()<T, A, 64>();
        return;
      case 96:
        f.template operator()<T, A, 96>();
        return;
      case 128:
        f.template operator()<T, A, 128>();
        return;
      case 192:
        f.template operator()<T, A, 192>();
        return;
      case 256:
        f.template operator()<T, A, 256>();
        return;
      default:
        throw GpuError("unsupported head_dim " + std::to_string(p.head_dim));
    }
  };
  using Fp32 = std::integral_constant<Accum, Accum::fp32>;
  using Fp16 = std::integral_constant<Accum, Accum::fp16>;
  if (p.accum == Accum::fp16) {
    if (p.input != DType::fp16) throw GpuError("fp16 accumulation needs fp16 inputs");
    by_dim(StorageOf<DType::fp16>{}, Fp16{});
    return;
  }
  switch (p.input) {
    case DType::fp16:
      by_dim(StorageOf<DType::fp16>{}, Fp32{});
      return;
    case DType::bf16:
      by_dim(StorageOf<DType::bf16>{}, Fp32{});
      return;
    case DType::fp32:
      by_dim(StorageOf<DType::fp32>{}, Fp32{});
      return;
    default:
      throw GpuError("attnscope's kernels take fp16, bf16 or fp32 inputs (got " +
                     std::string(to_string(p.input)) + ")");
  }
}

// Runs launch.template run<QT>() with the query tile query_tile(p) chooses (8, 4 or 2; only
// those within lane_query_cap are instantiated).
template <class T, int D, class L>
void with_query_tile(const Problem& p, const L& launch) {
  constexpr int cap = lane_query_cap(D, static_cast<int>(sizeof(T)));
  const int qt = query_tile(p);
  if constexpr (cap >= 8) {
    if (qt == 8) {
      launch.template run<8>();
      return;
    }
  }
  if constexpr (cap >= 4)
    launch.template run<4>();
  else
    launch.template run<2>();
}

}  // namespace attnscope::gpu::detail
