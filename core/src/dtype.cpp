#include "attnscope/core/dtype.hpp"
#include "attnscope/core/fp8.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

namespace attnscope {

std::string_view to_string(DType t) {
  switch (t) {
    case DType::fp16:
      return "fp16";
    case DType::bf16:
      return "bf16";
    case DType::fp32:
      return "fp32";
    case DType::fp8_e4m3:
      return "fp8_e4m3";
    case DType::fp8_e5m2:
      return "fp8_e5m2";
    case DType::fp8_e4m3fnuz:
      return "fp8_e4m3fnuz";
    case DType::fp64:
      return "fp64";
  }
  return "?";
}

std::string_view to_string(Accum a) {
  return a == Accum::fp16 ? "fp16" : "fp32";
}

DType parse_dtype(std::string_view s) {
  if (s == "fp16") return DType::fp16;
  if (s == "bf16") return DType::bf16;
  if (s == "fp32") return DType::fp32;
  if (s == "fp8_e4m3") return DType::fp8_e4m3;
  if (s == "fp8_e5m2") return DType::fp8_e5m2;
  if (s == "fp8_e4m3fnuz") return DType::fp8_e4m3fnuz;
  if (s == "fp64") return DType::fp64;
  throw std::invalid_argument("unknown dtype '" + std::string(s) +
                              "' (expected fp16, bf16, fp32, fp8_e4m3, fp8_e5m2, fp8_e4m3fnuz "
                              "or fp64)");
}

std::string_view to_string(Fp8Format f) {
  switch (f) {
    case Fp8Format::e4m3:
      return "e4m3";
    case Fp8Format::e5m2:
      return "e5m2";
    case Fp8Format::e4m3fnuz:
      return "e4m3fnuz";
  }
  return "?";
}

Fp8Format parse_fp8_format(std::string_view s) {
  if (s == "e4m3" || s == "e4m3fn") return Fp8Format::e4m3;  // e4m3fn: PyTorch's name
  if (s == "e5m2") return Fp8Format::e5m2;
  if (s == "e4m3fnuz") return Fp8Format::e4m3fnuz;
  throw std::invalid_argument("unknown fp8 format '" + std::string(s) +
                              "' (expected e4m3 (or e4m3fn), e5m2 or e4m3fnuz)");
}

Accum parse_accum(std::string_view s) {
  if (s == "fp16") return Accum::fp16;
  if (s == "fp32") return Accum::fp32;
  throw std::invalid_argument("unknown accumulation '" + std::string(s) +
                              "' (expected fp16 or fp32)");
}

// _Float16 (GCC >= 12, clang on x86-64) rounds every conversion as binary16 does.
std::uint16_t float_to_half(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  std::uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}

std::uint16_t double_to_half(double d) {
  const _Float16 h = static_cast<_Float16>(d);
  std::uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}

namespace {
// d rounded to float toward zero, with the lowest bit set as a sticky bit where d was not a
// float: rounding that to a format of at most 22 significand bits (bf16, fp8) rounds d once.
float truncated_with_sticky(double d) {
  float f = static_cast<float>(d);
  if (std::isfinite(f) && static_cast<double>(f) != d) {
    if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);
    f = bits_to_float(float_to_bits(f) | 1u);
  }
  return f;
}
}  // namespace

std::uint16_t double_to_bf16(double d) {
  if (std::isnan(d)) return float_to_bf16(std::numeric_limits<float>::quiet_NaN());
  return float_to_bf16(truncated_with_sticky(d));
}

std::uint8_t double_to_fp8(double d, DType t) {
  return float_to_fp8(truncated_with_sticky(d), fp8_format_of(t));
}

double round_to(DType t, double d) {
  switch (t) {
    case DType::fp8_e4m3:
    case DType::fp8_e5m2:
    case DType::fp8_e4m3fnuz:
      return fp8_to_float(double_to_fp8(d, t), fp8_format_of(t));
    case DType::fp64:
      return d;
    case DType::fp16:
      return half_to_float(double_to_half(d));
    case DType::bf16:
      return bf16_to_float(double_to_bf16(d));
    case DType::fp32:
      return static_cast<double>(static_cast<float>(d));
  }
  return d;
}

double ulp_of(DType t, double v) {
  int digits = 0;   // significand bits incl. implicit
  int min_exp = 0;  // exponent of the smallest normal, as frexp sees it (value in [0.5,1)*2^e)
  switch (t) {
    case DType::fp16:
      digits = 11;
      min_exp = -13;
      break;
    case DType::bf16:
      digits = 8;
      min_exp = -125;
      break;
    case DType::fp32:
      digits = 24;
      min_exp = -125;
      break;
    case DType::fp64:
      digits = 53;
      min_exp = -1021;
      break;
    case DType::fp8_e4m3:
    case DType::fp8_e5m2:
    case DType::fp8_e4m3fnuz: {
      const Fp8Layout l = fp8_layout(fp8_format_of(t));
      digits = l.man_bits + 1;
      min_exp = 2 - l.bias;  // the smallest normal, 2^(1 - bias), is 0.5 x 2^(2 - bias)
      break;
    }
  }
  int e = 0;
  const double a = std::fabs(v);
  if (a == 0.0 || !std::isfinite(a))
    e = min_exp;
  else {
    std::frexp(a, &e);
    if (e < min_exp) e = min_exp;
  }
  return std::ldexp(1.0, e - digits);
}

double ulp_distance(DType t, double x, double ref) {
  if (std::isnan(x) || std::isnan(ref)) return std::numeric_limits<double>::infinity();
  if (x == ref) return 0.0;
  return std::fabs(x - ref) / ulp_of(t, ref);
}

}  // namespace attnscope
