// 8-bit floating-point formats of KV caches, and exact software conversions usable on the host
// and on the device (one code path for both, so that a GPU build without a vendor fp8 header
// gives the same bits as one with it).
//
//   e4m3      OCP 8-bit floating point, E4M3 (as on H100/H200 and MI350): bias 7, no
//             infinities, NaN = S.1111.111, largest finite 448, smallest subnormal 2^-9.
//   e5m2      OCP E5M2: bias 15, IEEE-style infinities (S.11111.00) and NaNs (S.11111.xx, xx
//             not 0), largest finite 57344, smallest subnormal 2^-16.
//   e4m3fnuz  MI300's E4M3 variant: bias 8, no infinities, no negative zero, one NaN (0x80, the
//             pattern of -0), largest finite 240, smallest subnormal 2^-10.
//
// Encoding rounds to nearest, ties to even. Saturating encoding (what KV-cache quantization
// uses) maps finite values and infinities past the largest finite value to it, keeping the sign;
// non-saturating encoding maps them to infinity (e5m2) or NaN (the others). NaN encodes as 0x7f
// (e4m3, e5m2) or 0x80 (e4m3fnuz); -0 and negative values that round to zero encode as 0x80 in
// the OCP formats and as 0x00 in e4m3fnuz.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

// clang's HIP mode takes the attributes without the HIP headers (which define __host__ and
// __device__ and may come after this header); nvcc always knows __host__ __device__.
#if defined(__HIP__)
#define ATTNSCOPE_HOST_DEVICE __attribute__((host, device))
#elif defined(__CUDACC__)
#define ATTNSCOPE_HOST_DEVICE __host__ __device__
#else
#define ATTNSCOPE_HOST_DEVICE
#endif

namespace attnscope {

enum class Fp8Format { e4m3, e5m2, e4m3fnuz };

std::string_view to_string(Fp8Format f);
Fp8Format parse_fp8_format(std::string_view s);  // throws std::invalid_argument

// The fields of a format: exponent and mantissa widths, exponent bias, and the largest finite
// code (positive).
struct Fp8Layout {
  int exp_bits, man_bits, bias;
  std::uint8_t max_code;
};

ATTNSCOPE_HOST_DEVICE constexpr Fp8Layout fp8_layout(Fp8Format f) {
  return f == Fp8Format::e5m2   ? Fp8Layout{5, 2, 15, 0x7b}
         : f == Fp8Format::e4m3 ? Fp8Layout{4, 3, 7, 0x7e}
                                : Fp8Layout{4, 3, 8, 0x7f};
}

// Unit roundoff of the format's normal range: 2^-(man_bits + 1).
ATTNSCOPE_HOST_DEVICE constexpr double fp8_unit_roundoff(Fp8Format f) {
  return f == Fp8Format::e5m2 ? 0x1p-3 : 0x1p-4;
}
// The largest finite value and the smallest positive (subnormal) one.
ATTNSCOPE_HOST_DEVICE constexpr double fp8_max(Fp8Format f) {
  return f == Fp8Format::e5m2 ? 57344.0 : f == Fp8Format::e4m3 ? 448.0 : 240.0;
}
ATTNSCOPE_HOST_DEVICE constexpr double fp8_min_subnormal(Fp8Format f) {
  return f == Fp8Format::e5m2 ? 0x1p-16 : f == Fp8Format::e4m3 ? 0x1p-9 : 0x1p-10;
}

namespace fp8_detail {
ATTNSCOPE_HOST_DEVICE inline std::uint32_t bits_of(float f) {
  std::uint32_t u;
  __builtin_memcpy(&u, &f, 4);  // host and device alike
  return u;
}
ATTNSCOPE_HOST_DEVICE inline float float_of(std::uint32_t u) {
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
}  // namespace fp8_detail

// The NaN code encoding produces: 0x7f (e4m3, e5m2) or e4m3fnuz's one NaN, 0x80.
ATTNSCOPE_HOST_DEVICE constexpr std::uint8_t fp8_nan(Fp8Format f) {
  return f == Fp8Format::e4m3fnuz ? 0x80 : 0x7f;
}

ATTNSCOPE_HOST_DEVICE constexpr bool fp8_is_nan(std::uint8_t c, Fp8Format f) {
  return f == Fp8Format::e4m3   ? (c & 0x7f) == 0x7f
         : f == Fp8Format::e5m2 ? (c & 0x7f) > 0x7c
                                : c == 0x80;
}

// The code's value, exactly (every fp8 value is a float).
ATTNSCOPE_HOST_DEVICE inline float fp8_to_float(std::uint8_t c, Fp8Format f) {
  using fp8_detail::float_of;
  const Fp8Layout l = fp8_layout(f);
  const std::uint32_t sign = std::uint32_t(c & 0x80) << 24;
  if (fp8_is_nan(c, f)) return float_of(0x7fc00000u);
  if (f == Fp8Format::e5m2 && (c & 0x7f) == 0x7c) return float_of(sign | 0x7f800000u);
  const std::uint32_t e = (c >> l.man_bits) & ((1u << l.exp_bits) - 1u);
  const std::uint32_t m = c & ((1u << l.man_bits) - 1u);
  if (e == 0) {
    // Subnormal or zero: m units of the smallest subnormal, exact in float.
    const float v = float(m) * float(fp8_min_subnormal(f));
    return float_of(sign | fp8_detail::bits_of(v));
  }
  return float_of(sign | ((e + 127u - std::uint32_t(l.bias)) << 23) | (m << (23 - l.man_bits)));
}

// x rounded to nearest even in format f (see the file comment for overflow, NaN and zero).
ATTNSCOPE_HOST_DEVICE inline std::uint8_t float_to_fp8(float x, Fp8Format f, bool saturate = true) {
  const Fp8Layout l = fp8_layout(f);
  const std::uint32_t u = fp8_detail::bits_of(x);
  const std::uint32_t sign = (u >> 31) << 7;
  const std::uint32_t a = u & 0x7fffffffu;
  const std::uint8_t nan = fp8_nan(f);
  if (a > 0x7f800000u) return nan;
  const int emin = 1 - l.bias;  // exponent of the smallest normal
  std::uint32_t code;           // magnitude code, possibly past max_code
  if (a == 0x7f800000u) {
    code = 0x100u;  // infinity: past every finite code
  } else {
    const int e = int(a >> 23) - 127;
    if (e < emin) {
      // Subnormal range: units of the smallest subnormal, rounded to nearest even. x scaled by
      // a power of two is exact; n == 2^man_bits is the smallest normal, whose code it is too.
      const float units = fp8_detail::float_of(a) / float(fp8_min_subnormal(f));
      std::uint32_t n = std::uint32_t(units);  // truncated
      const float rest = units - float(n);     // exact
      if (rest > 0.5f || (rest == 0.5f && (n & 1u))) ++n;
      code = n;
    } else if (e > l.bias + 1) {
      code = 0x100u;  // at least twice the largest binade: past every finite code
    } else {
      const int drop = 23 - l.man_bits;
      const std::uint32_t mant = a & 0x7fffffu;
      const std::uint32_t keep = mant >> drop, rest = mant & ((1u << drop) - 1u);
      const std::uint32_t half = 1u << (drop - 1);
      code = (std::uint32_t(e + l.bias) << l.man_bits) + keep;
      if (rest > half || (rest == half && (keep & 1u))) ++code;  // may carry into the exponent
    }
  }
  if (code > l.max_code) {
    if (saturate) return std::uint8_t(sign | l.max_code);
    return f == Fp8Format::e5m2 ? std::uint8_t(sign | 0x7c) : nan;
  }
  if (code == 0 && f == Fp8Format::e4m3fnuz) return 0;  // no negative zero
  return std::uint8_t(sign | code);
}

}  // namespace attnscope
