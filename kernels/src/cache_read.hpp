// How the decode kernel reads a KV cache of elements C with queries of T: C = T (the cache as
// stored), or Fp8Code<F> (an fp8 cache: codes, and fp32 scales in StageArgs::k_scale / v_scale).
//
// An fp8 cache keeps T's split of a row over lanes (RowSplit<T, D>: VEC = 8 elements a lane and
// chunk), so the arithmetic, and every summation order, is that of a T cache; a lane's chunk is 8
// bytes of codes instead of 16 of T. The codes become binary16 exactly (fp8x2_to_half2), then:
//  - fp32 accumulation: the dots and the weighted sum run on the codes' exact values; the score
//    is the dot times fp32(scale x k_scale), and the V scale multiplies each weight (per-token
//    scales: p x v_scale of the key, the running sum keeping p) or, one scale for every key, the
//    normalized output;
//  - fp16 accumulation: each element is taken as binary16(fp32(code) x scale): the codes' range
//    (e5m2 reaches 57344) would overflow binary16 sums, and the scaled values are the cache's own.
// Either way a scaled element or score passes through at most two roundings more than a T cache's
// (one under fp32 accumulation, two under fp16: KernelOrder::fp8_roundings, set by decode_order).
#pragma once

#include <type_traits>

#include "accum.hpp"

namespace attnscope::gpu::detail {

template <Fp8Format F>
struct Fp8Code {
  std::uint8_t bits;
};

template <class T, class C>
struct CacheRead {
  static constexpr bool kFp8 = false;
  static constexpr int EB = static_cast<int>(sizeof(C));
  using Word = uint4;  // a lane's chunk of a row: VEC elements
  // A lane's fragment from its NCH chunk words (scale: unused).
  template <class Pol, int D>
  __device__ static void frag(const Word* w, float, typename Pol::Frag& f) {
    RawRow<T, D> raw;
#pragma unroll
    for (int c = 0; c < RowSplit<T, D>::NCH; ++c) raw.w[c] = w[c];
    Pol::from_raw(raw, f);
  }
};

template <class T, Fp8Format F>
struct CacheRead<T, Fp8Code<F>> {
  static_assert(sizeof(T) == 2, "an fp8 cache is read with fp16 or bf16 queries");
  static constexpr bool kFp8 = true;
  static constexpr Fp8Format kFormat = F;
  static constexpr int EB = 1;
  using Word = uint2;  // 8 codes
  // fp32 accumulation: the codes' values; fp16: binary16(fp32(code) x scale).
  template <class Pol, int D>
  __device__ static void frag(const Word* w, float scale, typename Pol::Frag& f) {
    using S = RowSplit<T, D>;
    static_assert(S::VEC == 8, "a chunk holds 8 elements");
#pragma unroll
    for (int c = 0; c < S::NCH; ++c) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const unsigned word = i < 2 ? w[c].x : w[c].y;
        const float2 x = __half22float2(
            half2_of_bits(i % 2 == 0 ? fp8x2_bits<F>(word) : fp8x2_bits<F, true>(word)));
        if constexpr (std::is_same_v<typename Pol::Scalar, float>) {
          f.x[c * 8 + 2 * i] = x.x;
          f.x[c * 8 + 2 * i + 1] = x.y;
        } else {
          f.x[c * 4 + i] = __floats2half2_rn(__fmul_rn(x.x, scale), __fmul_rn(x.y, scale));
        }
      }
    }
  }
};

}  // namespace attnscope::gpu::detail
