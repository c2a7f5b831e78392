// Scalar formats of attnscope: the input/output dtypes and the accumulation precision.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "attnscope/core/fp8.hpp"

namespace attnscope {

// fp16, bf16 and fp32 are the formats of q, out and (unless quantized) the KV cache; the fp8
// formats (core/fp8.hpp) are those of a quantized KV cache; fp64 holds exact host-side values,
// such as a quantized cache's dequantized elements (an fp8 value times an fp32 scale).
enum class DType { fp16, bf16, fp32, fp8_e4m3, fp8_e5m2, fp8_e4m3fnuz, fp64 };
// The type partial sums are kept in; fp16 means real binary16 arithmetic.
enum class Accum { fp16, fp32 };

std::string_view to_string(DType t);
std::string_view to_string(Accum a);
DType parse_dtype(std::string_view s);  // throws std::invalid_argument
Accum parse_accum(std::string_view s);  // throws std::invalid_argument

inline constexpr bool is_fp8(DType t) {
  return t == DType::fp8_e4m3 || t == DType::fp8_e5m2 || t == DType::fp8_e4m3fnuz;
}
// The fp8 format of an fp8 DType, and the DType of an fp8 format.
inline constexpr Fp8Format fp8_format_of(DType t) {
  return t == DType::fp8_e5m2       ? Fp8Format::e5m2
         : t == DType::fp8_e4m3fnuz ? Fp8Format::e4m3fnuz
                                    : Fp8Format::e4m3;
}
inline constexpr DType fp8_dtype(Fp8Format f) {
  return f == Fp8Format::e5m2       ? DType::fp8_e5m2
         : f == Fp8Format::e4m3fnuz ? DType::fp8_e4m3fnuz
                                    : DType::fp8_e4m3;
}
inline constexpr std::size_t size_of(DType t) {
  return t == DType::fp32 ? 4 : t == DType::fp64 ? 8 : is_fp8(t) ? 1 : 2;
}

// Unit roundoff u = 2^-p of each format (p = significand bits including the implicit one).
inline constexpr double unit_roundoff(DType t) {
  return t == DType::fp16   ? 0x1p-11
         : t == DType::bf16 ? 0x1p-8
         : t == DType::fp32 ? 0x1p-24
         : t == DType::fp64 ? 0x1p-53
                            : fp8_unit_roundoff(fp8_format_of(t));
}
inline constexpr double unit_roundoff(Accum a) {
  return a == Accum::fp16 ? 0x1p-11 : 0x1p-24;
}
inline constexpr DType accum_dtype(Accum a) {
  return a == Accum::fp16 ? DType::fp16 : DType::fp32;
}

inline float bits_to_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline std::uint32_t float_to_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// binary16 -> float, exact (subnormals, infinities and NaN included).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    // Subnormal or zero: man * 2^-24 is exact in float.
    const float v = float(man) * 0x1p-24f;
    return sign ? -v : v;
  }
  return bits_to_float(sign | ((exp + 112u) << 23) | (man << 13));
}

// float -> binary16, round to nearest even, overflow to infinity, NaN kept quiet.
std::uint16_t float_to_half(float f);
// double -> binary16 rounded once (no double rounding through float).
std::uint16_t double_to_half(double d);

inline float bf16_to_float(std::uint16_t b) {
  return bits_to_float(std::uint32_t(b) << 16);
}
// float -> bfloat16, round to nearest even; NaN stays NaN.
inline std::uint16_t float_to_bf16(float f) {
  const std::uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40u);
  const std::uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return std::uint16_t((u + rounding) >> 16);
}
std::uint16_t double_to_bf16(double d);
// double -> the fp8 format of an fp8 DType, rounded once, saturating (core/fp8.hpp).
std::uint8_t double_to_fp8(double d, DType t);

// Round a double to the nearest value of format t, returned as a double.
double round_to(DType t, double d);

// Distance in units in the last place of format t at the magnitude of `ref`:
// |x - ref| / ulp_t(ref), with ulp of the format's subnormal spacing near zero.
double ulp_distance(DType t, double x, double ref);
// One ulp of format t at magnitude |v|.
double ulp_of(DType t, double v);

}  // namespace attnscope
