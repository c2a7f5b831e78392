// The fp8 conversions of core/fp8.hpp against the formats' specifications: every one of the 256
// codes of each format decoded, and encoding checked against a brute-force nearest-value search.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "attnscope/core/dtype.hpp"
#include "attnscope/core/fp8.hpp"

namespace {

using attnscope::Fp8Format;
constexpr Fp8Format kFormats[] = {Fp8Format::e4m3, Fp8Format::e5m2, Fp8Format::e4m3fnuz};

struct Fields {
  int exp_bits, man_bits, bias;
};
// Written out from the specifications, independently of fp8_layout.
Fields spec_fields(Fp8Format f) {
  switch (f) {
    case Fp8Format::e4m3:
      return {4, 3, 7};
    case Fp8Format::e5m2:
      return {5, 2, 15};
    case Fp8Format::e4m3fnuz:
      return {4, 3, 8};
  }
  return {0, 0, 0};
}

// The value the specification gives code c: NaN, +-infinity, or
// (-1)^s x 2^(1 - bias) x 0.m (exponent field 0) or (-1)^s x 2^(e - bias) x 1.m.
double spec_value(std::uint8_t c, Fp8Format f) {
  const Fields fl = spec_fields(f);
  const int s = c >> 7;
  const int e = (c >> fl.man_bits) & ((1 << fl.exp_bits) - 1);
  const int m = c & ((1 << fl.man_bits) - 1);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  switch (f) {
    case Fp8Format::e4m3:  // S.1111.111 is NaN; no infinities
      if (e == 15 && m == 7) return nan;
      break;
    case Fp8Format::e5m2:  // exponent field 31: infinity (m = 0) or NaN
      if (e == 31) return m == 0 ? (s ? -INFINITY : INFINITY) : nan;
      break;
    case Fp8Format::e4m3fnuz:  // 1.0000.000, the pattern of -0, is the only NaN
      if (c == 0x80) return nan;
      break;
  }
  const double mag = e == 0 ? std::ldexp(double(m), 1 - fl.bias - fl.man_bits)
                            : std::ldexp(double((1 << fl.man_bits) + m), e - fl.bias - fl.man_bits);
  return s ? -mag : mag;
}

bool same(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || (a == b && std::signbit(a) == std::signbit(b));
}

TEST(Fp8, EveryCodeDecodesToTheSpecificationsValue) {
  for (Fp8Format f : kFormats) {
    int nans = 0, infs = 0, zeros = 0;
    for (int c = 0; c < 256; ++c) {
      const double want = spec_value(std::uint8_t(c), f);
      const double got = attnscope::fp8_to_float(std::uint8_t(c), f);
      EXPECT_TRUE(same(got, want)) << to_string(f) << " code 0x" << std::hex << c << ": " << got
                                   << ", the specification: " << want;
      EXPECT_EQ(attnscope::fp8_is_nan(std::uint8_t(c), f), std::isnan(want));
      nans += std::isnan(want);
      infs += std::isinf(want);
      zeros += want == 0.0;
    }
    // The formats' special values, as their specifications count them.
    EXPECT_EQ(nans, f == Fp8Format::e4m3 ? 2 : f == Fp8Format::e5m2 ? 6 : 1) << to_string(f);
    EXPECT_EQ(infs, f == Fp8Format::e5m2 ? 2 : 0) << to_string(f);
    EXPECT_EQ(zeros, f == Fp8Format::e4m3fnuz ? 1 : 2) << to_string(f);
  }
  // Anchors quoted from the specifications: 1.0, the largest finite value, the smallest normal
  // and the smallest subnormal.
  using attnscope::fp8_to_float;
  EXPECT_EQ(fp8_to_float(0x38, Fp8Format::e4m3), 1.0f);
  EXPECT_EQ(fp8_to_float(0x7e, Fp8Format::e4m3), 448.0f);
  EXPECT_EQ(fp8_to_float(0xfe, Fp8Format::e4m3), -448.0f);
  EXPECT_EQ(fp8_to_float(0x08, Fp8Format::e4m3), 0x1p-6f);
  EXPECT_EQ(fp8_to_float(0x01, Fp8Format::e4m3), 0x1p-9f);
  EXPECT_EQ(fp8_to_float(0x3c, Fp8Format::e5m2), 1.0f);
  EXPECT_EQ(fp8_to_float(0x7b, Fp8Format::e5m2), 57344.0f);
  EXPECT_EQ(fp8_to_float(0x04, Fp8Format::e5m2), 0x1p-14f);
  EXPECT_EQ(fp8_to_float(0x01, Fp8Format::e5m2), 0x1p-16f);
  EXPECT_EQ(fp8_to_float(0x7c, Fp8Format::e5m2), INFINITY);
  EXPECT_EQ(fp8_to_float(0x40, Fp8Format::e4m3fnuz), 1.0f);
  EXPECT_EQ(fp8_to_float(0x7f, Fp8Format::e4m3fnuz), 240.0f);
  EXPECT_EQ(fp8_to_float(0xff, Fp8Format::e4m3fnuz), -240.0f);
  EXPECT_EQ(fp8_to_float(0x08, Fp8Format::e4m3fnuz), 0x1p-7f);
  EXPECT_EQ(fp8_to_float(0x01, Fp8Format::e4m3fnuz), 0x1p-10f);
  for (Fp8Format f : kFormats) {
    EXPECT_EQ(attnscope::fp8_max(f), spec_value(attnscope::fp8_layout(f).max_code, f));
    EXPECT_EQ(attnscope::fp8_min_subnormal(f), spec_value(0x01, f));
    // Positive finite codes are ordered as their values.
    for (int c = 1; c <= attnscope::fp8_layout(f).max_code; ++c)
      EXPECT_LT(spec_value(std::uint8_t(c - 1), f), spec_value(std::uint8_t(c), f));
  }
}

// The nearest finite value of format f to x, ties to the even code, with the value one step past
// the largest finite one standing for overflow; kOverflow when that is nearest.
constexpr int kOverflow = -1;
int nearest_code(double x, Fp8Format f) {
  const int max_code = attnscope::fp8_layout(f).max_code;
  std::vector<double> v;
  for (int c = 0; c <= max_code; ++c) v.push_back(spec_value(std::uint8_t(c), f));
  v.push_back(2 * v.back() - v[v.size() - 2]);  // the next value of the top binade
  const double a = std::fabs(x);
  if (a >= v.back()) return kOverflow;
  const auto hi = std::upper_bound(v.begin(), v.end(), a);
  const int up = int(hi - v.begin()), down = up - 1;
  const double dd = a - v[std::size_t(down)], du = v[std::size_t(up)] - a;
  const int c = dd < du ? down : du < dd ? up : (down % 2 == 0 ? down : up);
  return c > max_code ? kOverflow : c;
}

std::uint8_t expected_code(float x, Fp8Format f, bool saturate) {
  const Fp8Format fnuz = Fp8Format::e4m3fnuz;
  if (std::isnan(x)) return f == fnuz ? 0x80 : 0x7f;
  const std::uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const int c = nearest_code(x, f);
  if (c == kOverflow) {
    if (saturate) return std::uint8_t(sign | attnscope::fp8_layout(f).max_code);
    return f == Fp8Format::e5m2 ? std::uint8_t(sign | 0x7c) : (f == fnuz ? 0x80 : 0x7f);
  }
  if (c == 0 && f == fnuz) return 0;
  return std::uint8_t(sign | c);
}

void check_encoding(float x) {
  for (Fp8Format f : kFormats)
    for (bool sat : {true, false}) {
      const std::uint8_t got = attnscope::float_to_fp8(x, f, sat);
      const std::uint8_t want = expected_code(x, f, sat);
      ASSERT_EQ(got, want) << to_string(f) << (sat ? " saturating" : "") << ": " << x << " (bits 0x"
                           << std::hex << attnscope::float_to_bits(x) << ")";
    }
}

TEST(Fp8, EncodingRoundsToNearestEven) {
  // Every finite binary16 value, with both signs: the whole range of every fp8 format and past it.
  for (std::uint32_t h = 0; h < 0x7c00; ++h) {
    const float x = attnscope::half_to_float(std::uint16_t(h));
    check_encoding(x);
    check_encoding(-x);
  }
  // Every code, the midpoints between neighbours (ties) and the floats on either side of them.
  for (Fp8Format f : kFormats) {
    const int max_code = attnscope::fp8_layout(f).max_code;
    for (int c = 0; c <= max_code; ++c) {
      const float a = attnscope::fp8_to_float(std::uint8_t(c), f);
      EXPECT_EQ(attnscope::float_to_fp8(a, f), c) << to_string(f);
      const float b = c < max_code ? attnscope::fp8_to_float(std::uint8_t(c + 1), f)
                                   : 2 * a - attnscope::fp8_to_float(std::uint8_t(c - 1), f);
      const float mid = 0.5f * (a + b);  // exact: two more bits than the format holds
      for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY)}) {
        check_encoding(x);
        check_encoding(-x);
      }
    }
  }
  // Random floats over every exponent, subnormals included.
  std::mt19937 rng(20261201);
  for (int i = 0; i < 200000; ++i) check_encoding(attnscope::bits_to_float(std::uint32_t(rng())));
}

TEST(Fp8, SpecialValuesEncodeAsDocumented) {
  using attnscope::float_to_fp8;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(float_to_fp8(nan, Fp8Format::e4m3), 0x7f);
  EXPECT_EQ(float_to_fp8(-nan, Fp8Format::e5m2), 0x7f);
  EXPECT_EQ(float_to_fp8(nan, Fp8Format::e4m3fnuz), 0x80);
  // Saturating: infinities and values past the range become the largest finite value.
  EXPECT_EQ(float_to_fp8(INFINITY, Fp8Format::e4m3), 0x7e);
  EXPECT_EQ(float_to_fp8(-1e6f, Fp8Format::e4m3), 0xfe);
  EXPECT_EQ(float_to_fp8(-INFINITY, Fp8Format::e5m2), 0xfb);
  EXPECT_EQ(float_to_fp8(1e30f, Fp8Format::e4m3fnuz), 0x7f);
  // Not saturating: infinity in e5m2, NaN in the formats without one.
  EXPECT_EQ(float_to_fp8(INFINITY, Fp8Format::e5m2, false), 0x7c);
  EXPECT_EQ(float_to_fp8(-65536.0f, Fp8Format::e5m2, false), 0xfc);
  EXPECT_EQ(float_to_fp8(500.0f, Fp8Format::e4m3, false), 0x7f);
  EXPECT_EQ(float_to_fp8(-250.0f, Fp8Format::e4m3fnuz, false), 0x80);
  // The ties at the top: 464 lies between 448 (mantissa 110) and 480, and rounds to 448; 61440
  // lies between 57344 (mantissa 11) and 65536, and overflows; 248 between 240 and 256 too.
  EXPECT_EQ(float_to_fp8(464.0f, Fp8Format::e4m3, false), 0x7e);
  EXPECT_EQ(float_to_fp8(61440.0f, Fp8Format::e5m2, false), 0x7c);
  EXPECT_EQ(float_to_fp8(248.0f, Fp8Format::e4m3fnuz, false), 0x80);
  // Zero: signed in the OCP formats, unsigned in e4m3fnuz.
  EXPECT_EQ(float_to_fp8(-0.0f, Fp8Format::e4m3), 0x80);
  EXPECT_EQ(float_to_fp8(-1e-30f, Fp8Format::e5m2), 0x80);
  EXPECT_EQ(float_to_fp8(-0.0f, Fp8Format::e4m3fnuz), 0x00);
  EXPECT_EQ(float_to_fp8(-1e-30f, Fp8Format::e4m3fnuz), 0x00);
  // Half the smallest subnormal is a tie with zero (even); a hair above rounds up.
  EXPECT_EQ(float_to_fp8(0x1p-10f, Fp8Format::e4m3), 0x00);
  EXPECT_EQ(float_to_fp8(std::nextafter(0x1p-10f, 1.0f), Fp8Format::e4m3), 0x01);
}

TEST(Fp8, FormatNamesRoundTrip) {
  for (Fp8Format f : kFormats) EXPECT_EQ(attnscope::parse_fp8_format(to_string(f)), f);
  EXPECT_EQ(attnscope::parse_fp8_format("e4m3fn"), Fp8Format::e4m3);  // PyTorch's name
  EXPECT_THROW(attnscope::parse_fp8_format("e4m3fnuz2"), std::invalid_argument);
  EXPECT_THROW(attnscope::parse_fp8_format(""), std::invalid_argument);
  EXPECT_EQ(attnscope::fp8_unit_roundoff(Fp8Format::e4m3), std::ldexp(1.0, -4));
  EXPECT_EQ(attnscope::fp8_unit_roundoff(Fp8Format::e5m2), std::ldexp(1.0, -3));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Quantized caches (Problem::kv_fp8): codes, scales and dequantized values, and the cost model.

#include "attnscope/core/inputs.hpp"
#include "attnscope/core/trace.hpp"
#include "attnscope/reference/fp8_cost.hpp"
#include "attnscope/reference/stages.hpp"

namespace {

using attnscope::AttentionInputs;
using attnscope::DataSpec;
using attnscope::KvLayoutKind;
using attnscope::KvLayoutSpec;
using attnscope::KvScale;
using attnscope::Problem;

Problem fp8_problem(Fp8Format f, KvScale s) {
  Problem p;
  p.batch = 2;
  p.q_heads = 4;
  p.kv_heads = 2;
  p.seq_len = 40;
  p.window = 33;
  p.head_dim = 64;
  p.kv_fp8 = f;
  p.kv_scale = s;
  return p;
}

TEST(Fp8Cache, HoldsCodesScalesAndTheirExactProducts) {
  for (Fp8Format f : kFormats)
    for (KvScale s : {KvScale::tensor, KvScale::head, KvScale::token})
      for (KvLayoutKind kind : {KvLayoutKind::bhsd, KvLayoutKind::paged}) {
        const Problem p = fp8_problem(f, s);
        KvLayoutSpec l;
        l.kind = kind;
        l.page_size = 16;
        DataSpec data;
        data.dist = attnscope::Distribution::heavy_tailed;
        const AttentionInputs in = attnscope::make_inputs(p, l, data);
        SCOPED_TRACE(std::string(to_string(f)) + " " + std::string(to_string(s)));
        ASSERT_EQ(in.k_cache.dtype(), attnscope::fp8_dtype(f));
        ASSERT_EQ(in.k.dtype(), attnscope::DType::fp64);
        ASSERT_EQ(in.k_orig.dtype(), p.input);
        // Every token's elements: code = x / scale rounded once, value = code x scale exactly,
        // and the scale is the largest magnitude under it over the format's largest value.
        const attnscope::KvAddressing a = in.layout.addressing();
        std::vector<double> amax(std::size_t(in.k_scale.numel()), 0.0);
        std::vector<double> top(std::size_t(in.k_scale.numel()), 0.0);
        std::vector<char> seen(std::size_t(in.k_scale.numel()), 0);  // scales of tokens
        for (int b = 0; b < p.batch; ++b)
          for (int h = 0; h < p.kv_heads; ++h)
            for (std::int64_t pos = 0; pos < p.seq_len; ++pos) {
              const std::int64_t off = a.offset(b, h, pos);
              const std::int64_t si = attnscope::kv_scale_index(p, h, off);
              const double scale = in.k_scale.get(si);
              seen[std::size_t(si)] = 1;
              for (int d = 0; d < p.head_dim; ++d) {
                const double x = in.k_orig.get(off + d);
                const auto code = static_cast<const std::uint8_t*>(in.k_cache.data())[off + d];
                ASSERT_EQ(code, attnscope::double_to_fp8(x / scale, attnscope::fp8_dtype(f)));
                ASSERT_EQ(in.k.get(off + d), double(attnscope::fp8_to_float(code, f)) * scale);
                amax[std::size_t(si)] = std::max(amax[std::size_t(si)], std::fabs(x));
                top[std::size_t(si)] = std::max(
                    top[std::size_t(si)], std::fabs(double(attnscope::fp8_to_float(code, f))));
              }
            }
        for (std::size_t i = 0; i < amax.size(); ++i) {
          if (!seen[i]) continue;  // a row no sequence owns (per-token scales of spare slots)
          EXPECT_EQ(in.k_scale.get(std::int64_t(i)),
                    double(float(amax[i] / attnscope::fp8_max(f))));
          EXPECT_EQ(top[i], attnscope::fp8_max(f));  // the largest element takes the top code
        }
      }
}

TEST(Fp8Cache, PoisonStaysPoisonAndNaNInTheWindowStaysNaN) {
  for (Fp8Format f : kFormats) {
    Problem p = fp8_problem(f, KvScale::token);
    KvLayoutSpec l;
    l.layers = 2;
    l.layer = 1;
    DataSpec data;
    data.poison_outside = true;
    const AttentionInputs in = attnscope::make_inputs(p, l, data);
    const attnscope::KvAddressing a = in.layout.addressing();
    // Layer 0 is not the attended layer: every element and every row's scale is poison.
    for (std::int64_t i = 0; i < a.layer_offset; ++i) {
      ASSERT_FALSE(std::isfinite(in.k.get(i))) << to_string(f) << " element " << i;
      ASSERT_FALSE(std::isfinite(in.v.get(i))) << to_string(f) << " element " << i;
    }
    for (std::int64_t r = 0; r < a.layer_offset / p.head_dim; ++r)
      ASSERT_TRUE(std::isnan(in.k_scale.get(r))) << to_string(f) << " row " << r;
    p.kv_scale = KvScale::tensor;
    DataSpec nan;
    nan.nan_in_window = true;
    const AttentionInputs n = attnscope::make_inputs(p, KvLayoutSpec{}, nan);
    const std::int64_t off = n.layout.addressing().offset(0, 0, p.seq_len - p.q_len);
    EXPECT_TRUE(std::isnan(n.v.get(off))) << to_string(f);
    EXPECT_TRUE(std::isfinite(n.v_scale.get(0))) << to_string(f);  // the NaN leaves the scale alone
  }
}

// The format's cost, measured (FP64 attention over the dequantized cache against FP64 attention
// over the values before quantization) and predicted from each element's rounding: the
// measurement lies within four of the prediction's own standard deviations of it. On normal
// data the prediction is tight (its spread under 5%); on heavy-tailed data with a scale over
// outlier channels a few keys carry the error and the spread is wide, as the model says.
TEST(Fp8Cache, CostPredictionMatchesTheMeasurement) {
  for (Fp8Format f : kFormats)
    for (KvScale s : {KvScale::tensor, KvScale::head, KvScale::token})
      for (auto dist : {attnscope::Distribution::normal, attnscope::Distribution::heavy_tailed}) {
        Problem p = fp8_problem(f, s);
        p.q_heads = 8;
        p.seq_len = p.window = 512;
        p.head_dim = 128;
        DataSpec data;
        data.dist = dist;
        const AttentionInputs in = attnscope::make_inputs(p, KvLayoutSpec{}, data);
        const attnscope::ref::Fp8Cost c = attnscope::ref::fp8_cost(in);
        SCOPED_TRACE(std::string(to_string(f)) + " " + std::string(to_string(s)) + " " +
                     std::string(to_string(dist)));
        ASSERT_GT(c.measured_rel_l2, 0.0);
        ASSERT_GT(c.predicted_rel_l2, 0.0);
        ASSERT_GT(c.predicted_relative_sd, 0.0);
        const double ratio = c.measured_rel_l2 / c.predicted_rel_l2;
        EXPECT_LE(std::fabs(ratio - 1.0), 4.0 * c.predicted_relative_sd)
            << "measured " << c.measured_rel_l2 << ", predicted " << c.predicted_rel_l2
            << " (relative sd " << c.predicted_relative_sd << ")";
        if (dist == attnscope::Distribution::normal) {
          EXPECT_LT(c.predicted_relative_sd, 0.05);
        }
        // The reference it measured against, handed out for a kernel's output: FP64 attention
        // over the values before quantization, element for element.
        AttentionInputs orig = in;
        orig.k = in.k_orig;
        orig.v = in.v_orig;
        const std::vector<double> exact = attnscope::ref::attention<double>(orig).out;
        ASSERT_EQ(c.exact_out.size(), exact.size());
        for (std::size_t i = 0; i < exact.size(); ++i) ASSERT_EQ(c.exact_out[i], exact[i]) << i;
      }
}

}  // namespace
