// Device building blocks shared by the stage kernels: 16-byte row loads, accumulation types,
// warp-width-generic reductions in a fixed order, and output stores.
#pragma once

#include <cstdint>

#include "attnscope/core/dtype.hpp"
#include "attnscope/core/layout.hpp"
#include "attnscope/kernels/check.hpp"
#include "config.hpp"

namespace attnscope::gpu::detail {

// bfloat16 as raw bits: conversions are exact bit operations on every platform.
struct Bf16 {
  std::uint16_t bits;
};

__device__ __forceinline__ float to_float(float x) {
  return x;
}
__device__ __forceinline__ float to_float(__half x) {
  return __half2float(x);
}
__device__ __forceinline__ float to_float(Bf16 x) {
  return __uint_as_float(static_cast<unsigned>(x.bits) << 16);
}

__device__ __forceinline__ std::uint16_t float_to_bf16_bits(float f) {
  const unsigned u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Stores v rounded to nearest even in the output format.
__device__ __forceinline__ void store_output(void* out, std::int64_t i, float v, DType t) {
  switch (t) {
    case DType::fp16:
      static_cast<__half*>(out)[i] = __float2half_rn(v);
      break;
    case DType::bf16:
      static_cast<std::uint16_t*>(out)[i] = float_to_bf16_bits(v);
      break;
    case DType::fp32:
      static_cast<float*>(out)[i] = v;
      break;
    default:  // Problem::validate admits fp16, bf16 and fp32 outputs only
      break;
  }
}

// How a row of head_dim elements is spread over lanes: each lane loads 16 bytes (VEC elements)
// per chunk; LPR lanes cover a row (at most 16, so a warp of 32 or 64 holds whole rows); a lane
// owns chunks c * LPR + lane_in_row, c < NCH.
template <class T, int D>
struct RowSplit {
  static constexpr int VEC = row_vec(static_cast<int>(sizeof(T)));
  static constexpr int LPR = row_lanes(D, static_cast<int>(sizeof(T)));
  static constexpr int NCH = D / (VEC * LPR);
  static constexpr int PER_LANE = NCH * VEC;
  static_assert(D % (VEC * LPR) == 0, "head_dim must split evenly over the lanes");
  __device__ static int dim(int c, int lane_in_row, int e) {
    return (c * LPR + lane_in_row) * VEC + e;
  }
};

// One lane's part of a row as loaded: NCH 16-byte words, converted only when used, so several
// rows can be in flight in few registers.
template <class T, int D>
struct RawRow {
  uint4 w[RowSplit<T, D>::NCH];
};

template <class T, int D>
__device__ __forceinline__ void load_raw(const T* row, int lane_in_row, RawRow<T, D>& r) {
  using S = RowSplit<T, D>;
#pragma unroll
  for (int c = 0; c < S::NCH; ++c)
    r.w[c] = *reinterpret_cast<const uint4*>(row + (c * S::LPR + lane_in_row) * S::VEC);
}

template <class T, int D>
__device__ __forceinline__ void zero_raw(RawRow<T, D>& r) {
#pragma unroll
  for (int c = 0; c < RowSplit<T, D>::NCH; ++c) r.w[c] = make_uint4(0u, 0u, 0u, 0u);
}

// Loads one lane's part of a row (NCH 16-byte loads) and widens it to float.
template <class T, int D>
__device__ __forceinline__ void load_row(const T* row, int lane_in_row,
                                         float (&x)[RowSplit<T, D>::PER_LANE]) {
  using S = RowSplit<T, D>;
#pragma unroll
  for (int c = 0; c < S::NCH; ++c) {
    const uint4 raw = *reinterpret_cast<const uint4*>(row + (c * S::LPR + lane_in_row) * S::VEC);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < S::VEC; ++i) x[c * S::VEC + i] = to_float(e[i]);
  }
}

// Loads one lane's part of an fp16 row as packed pairs.
template <int D>
__device__ __forceinline__ void load_row_half2(const __half* row, int lane_in_row,
                                               __half2 (&x)[RowSplit<__half, D>::PER_LANE / 2]) {
  using S = RowSplit<__half, D>;
#pragma unroll
  for (int c = 0; c < S::NCH; ++c) {
    const uint4 raw = *reinterpret_cast<const uint4*>(row + (c * S::LPR + lane_in_row) * S::VEC);
    const __half2* e = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
    for (int i = 0; i < S::VEC / 2; ++i) x[c * S::VEC / 2 + i] = e[i];
  }
}

__device__ __forceinline__ __half shfl_xor_half(__half v, int m) {
  const unsigned short u = __half_as_ushort(v);
  return __ushort_as_half(static_cast<unsigned short>(shfl_xor(static_cast<int>(u), m)));
}

// A 16- or 32-bit value of another lane, by xor distance or by index within segments of W lanes.
__device__ __forceinline__ float lane_xor(float v, int m) {
  return shfl_xor(v, m);
}
__device__ __forceinline__ __half lane_xor(__half v, int m) {
  return shfl_xor_half(v, m);
}

// Sum over groups of N consecutive lanes, butterfly with ascending distance (1, 2, 4, ...): the
// order model::OrderKind::warp_tree emulates. Every lane of the group gets the same value.
template <int N>
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
  for (int m = 1; m < N; m *= 2) v += shfl_xor(v, m);
  return v;
}
template <int N>
__device__ __forceinline__ __half group_sum(__half v) {
#pragma unroll
  for (int m = 1; m < N; m *= 2) v = __hadd(v, shfl_xor_half(v, m));
  return v;
}
template <int N>
__device__ __forceinline__ float group_max(float v) {
#pragma unroll
  for (int m = 1; m < N; m *= 2) v = fmaxf(v, shfl_xor(v, m));
  return v;
}

inline int ceil_div(std::int64_t a, std::int64_t b) {
  return static_cast<int>((a + b - 1) / b);
}

}  // namespace attnscope::gpu::detail
