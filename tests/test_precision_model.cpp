// Host tests of the precision models: bit-exact agreement with independent emulations of each
// format, hand-traced summation orders, and the error growth the summation depth predicts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "attnscope/core/inputs.hpp"
#include "attnscope/reference/bounds.hpp"
#include "attnscope/core/metrics.hpp"
#include "attnscope/reference/precision_model.hpp"
#include "attnscope/reference/stages.hpp"

namespace attnscope {
namespace {

using model::OrderKind;
using model::SummationOrder;

const SummationOrder kSequential{OrderKind::sequential, 1, 1};
const SummationOrder kPairwise{OrderKind::pairwise, 1, 1};
SummationOrder warp_tree(int lanes, int vec) {
  return {OrderKind::warp_tree, lanes, vec};
}

const std::int64_t kWindows[] = {1, 2, 17, 64, 256, 1000, 4096};

// Values of format t: normal, or spread over many binades (log-uniform magnitude, random sign)
// so that sums cross binades, hit subnormals and need the tie rule.
std::vector<double> random_values(std::mt19937_64& rng, std::int64_t n, DType t, bool spread) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> expo(-14.0, 3.0);
  std::vector<double> v(static_cast<std::size_t>(n));
  for (auto& x : v) {
    const double r = spread ? std::exp2(expo(rng)) * (normal(rng) < 0 ? -1.0 : 1.0) : normal(rng);
    x = round_to(t, r);
  }
  return v;
}

bool same_bits(double a, double b) {
  return std::memcmp(&a, &b, sizeof a) == 0 || (std::isnan(a) && std::isnan(b));
}

// Correctly rounded binary16 a * b + c from integer arithmetic, sharing nothing with the model:
// binary16 values are integer multiples of 2^-24, so a * b + c = N * 2^-48 exactly.
_Float16 half_fma_exact(_Float16 a, _Float16 b, _Float16 c) {
  const auto scaled = [](_Float16 h) {
    return static_cast<std::int64_t>(std::ldexp(static_cast<double>(h), 24));
  };
  const std::int64_t na = scaled(a), nb = scaled(b), nc = scaled(c);
  // The tests keep |a b| and |c| below 2^14, so N stays below 2^63.
  if (std::llabs(na) > (std::int64_t{1} << 31) || std::llabs(nb) > (std::int64_t{1} << 31) ||
      std::llabs(nc) > (std::int64_t{1} << 38))
    throw std::range_error("half_fma_exact: operands out of the tested range");
  const std::int64_t n = na * nb + nc * (std::int64_t{1} << 24);
  if (n == 0) return static_cast<_Float16>(0.0);
  const std::uint64_t mag = static_cast<std::uint64_t>(std::llabs(n));
  int top = 63;
  while (((mag >> top) & 1u) == 0) --top;
  // Leading bit at 2^(top - 48); binary16 keeps 11 bits above 2^-24.
  const int quantum = std::max(top - 48, -14) - 10;
  const int shift = quantum + 48;
  std::uint64_t m = mag >> shift;
  const std::uint64_t rem = mag & ((std::uint64_t{1} << shift) - 1u);
  const std::uint64_t half = std::uint64_t{1} << (shift - 1);
  if (rem > half || (rem == half && (m & 1u) != 0)) ++m;
  const double v = std::ldexp(static_cast<double>(m), quantum);
  return static_cast<_Float16>(n < 0 ? -v : v);
}

TEST(PrecisionModel, Fp32SequentialSumMatchesFloatLoop) {
  std::mt19937_64 rng(11);
  for (std::int64_t n : kWindows)
    for (bool spread : {false, true}) {
      const std::vector<double> x = random_values(rng, n, DType::fp32, spread);
      float s = 0.0f;
      for (double v : x) s += static_cast<float>(v);
      EXPECT_TRUE(same_bits(model::model_sum(Accum::fp32, kSequential, x.data(), n), s))
          << "n=" << n;
    }
}

TEST(PrecisionModel, Fp32SequentialDotMatchesFmaLoop) {
  std::mt19937_64 rng(12);
  for (std::int64_t n : kWindows)
    for (DType in : {DType::fp16, DType::bf16, DType::fp32}) {
      const std::vector<double> x = random_values(rng, n, in, false);
      const std::vector<double> y = random_values(rng, n, in, true);
      float s = 0.0f;
      for (std::size_t i = 0; i < x.size(); ++i)
        s = std::fmaf(static_cast<float>(x[i]), static_cast<float>(y[i]), s);
      EXPECT_TRUE(same_bits(model::model_dot(Accum::fp32, kSequential, x.data(), y.data(), n), s))
          << "n=" << n << " input=" << to_string(in);
    }
}

// GCC rounds every _Float16 operation to binary16 (through float, whose 24 bits make the double
// rounding innocuous for + - * /), so a native loop is an independent model of fp16 sums.
TEST(PrecisionModel, Fp16SumMatchesNativeHalfLoop) {
  std::mt19937_64 rng(13);
  for (std::int64_t n : kWindows)
    for (bool spread : {false, true}) {
      const std::vector<double> x = random_values(rng, n, DType::fp16, spread);
      _Float16 s = static_cast<_Float16>(0.0);
      for (double v : x) s = s + static_cast<_Float16>(v);
      EXPECT_TRUE(same_bits(model::model_sum(Accum::fp16, kSequential, x.data(), n),
                            static_cast<double>(s)))
          << "n=" << n;
    }
}

TEST(PrecisionModel, Fp16DotMatchesIndependentHalfFmaLoop) {
  std::mt19937_64 rng(14);
  for (std::int64_t n : kWindows)
    for (bool spread : {false, true}) {
      const std::vector<double> x = random_values(rng, n, DType::fp16, spread);
      const std::vector<double> y = random_values(rng, n, DType::fp16, spread);
      _Float16 s = static_cast<_Float16>(0.0);
      for (std::size_t i = 0; i < x.size(); ++i)
        s = half_fma_exact(static_cast<_Float16>(x[i]), static_cast<_Float16>(y[i]), s);
      EXPECT_TRUE(same_bits(model::model_dot(Accum::fp16, kSequential, x.data(), y.data(), n),
                            static_cast<double>(s)))
          << "n=" << n << " spread=" << spread;
    }
}

// 2050 + (1023/1024)(1025/1024) = 2051 - 2^-20 lies just below the binary16 tie 2051 (spacing 2
// there), so a single rounding gives 2050. Rounding the product first (to 1) or the sum to float
// first (to 2051) reaches the tie, which rounds to even: 2052.
TEST(PrecisionModel, Fp16FmaRoundsOnce) {
  const double x[] = {2050.0, 1023.0 / 1024.0};
  const double y[] = {1.0, 1025.0 / 1024.0};
  EXPECT_EQ(model::model_dot(Accum::fp16, kSequential, x, y, 2), 2050.0);
  const float via_float = std::fmaf(float(x[1]), float(y[1]), 2050.0f);
  EXPECT_EQ(static_cast<double>(static_cast<_Float16>(via_float)), 2052.0);
}

// x = [1, 1024, 3, 0.5, 7, 1.5, 0.5, 3], exact sum 1040.5. binary16 spacing is 1 in [1024, 2048),
// so every .5 there is a tie, rounded to the even neighbour.
//  sequential: 1025, 1028, 1028.5->1028, 1035, 1036.5->1036, 1036.5->1036, 1039
//  pairwise:   ((1 + 1024) + (3 + 0.5)) = 1028.5->1028; ((7 + 1.5) + (0.5 + 3)) = 12; 1040
//  warp_tree(4x1): lanes {1+7, 1024+1.5->1026, 3+0.5, 0.5+3} = {8, 1026, 3.5, 3.5};
//              xor 1: {1034, 1034, 7, 7}; xor 2: 1041
//  warp_tree(2x2): lane 0 takes x0 x1 x4 x5: 1025, 1032, 1033.5->1034; lane 1: 7; 1041
//  warp_tree(4x2): lanes {1025, 3.5, 8.5, 3.5}; xor 1: {1028.5->1028, 12}; xor 2: 1040
TEST(PrecisionModel, OrdersMatchHandTrace) {
  const std::vector<double> x = {1, 1024, 3, 0.5, 7, 1.5, 0.5, 3};
  const std::vector<double> ones(x.size(), 1.0);
  const struct {
    SummationOrder order;
    double fp16;
  } cases[] = {{kSequential, 1039.0},
               {kPairwise, 1040.0},
               {warp_tree(4, 1), 1041.0},
               {warp_tree(2, 2), 1041.0},
               {warp_tree(4, 2), 1040.0}};
  for (const auto& c : cases) {
    EXPECT_EQ(model::model_sum(Accum::fp16, c.order, x.data(), 8), c.fp16) << c.order.name();
    EXPECT_EQ(model::model_dot(Accum::fp16, c.order, x.data(), ones.data(), 8), c.fp16)
        << c.order.name();
    // Every partial sum is exact in binary32.
    EXPECT_EQ(model::model_sum(Accum::fp32, c.order, x.data(), 8), 1040.5) << c.order.name();
  }
}

// 4096 ones: the sequential fp16 sum stops at 2048, where 2048 + 1 is a tie that rounds back to
// 2048. A 32x8 warp tree keeps every partial sum a small integer or a power of two: exact.
TEST(PrecisionModel, Fp16SequentialSumStagnates) {
  const std::vector<double> ones(4096, 1.0);
  EXPECT_EQ(model::model_sum(Accum::fp16, kSequential, ones.data(), 4096), 2048.0);
  EXPECT_EQ(model::model_sum(Accum::fp16, kPairwise, ones.data(), 4096), 4096.0);
  EXPECT_EQ(model::model_sum(Accum::fp16, warp_tree(32, 8), ones.data(), 4096), 4096.0);
  EXPECT_EQ(model::model_sum(Accum::fp32, kSequential, ones.data(), 4096), 4096.0);
  // The deterministic bound already says nothing here: n u = 2 >= 1.
  EXPECT_TRUE(std::isinf(bounds::gamma(model::summation_depth(kSequential, 4096), 0x1p-11)));
}

TEST(PrecisionModel, SummationDepth) {
  EXPECT_EQ(model::summation_depth(kSequential, 4096), 4096);
  EXPECT_EQ(model::summation_depth(kSequential, 0), 0);
  EXPECT_EQ(model::summation_depth(kPairwise, 1), 1);
  EXPECT_EQ(model::summation_depth(kPairwise, 8), 4);
  EXPECT_EQ(model::summation_depth(kPairwise, 1000), 11);
  EXPECT_EQ(model::summation_depth(warp_tree(32, 8), 4096), 16 * 8 + 5);
  EXPECT_EQ(model::summation_depth(warp_tree(32, 8), 4097), 17 * 8 + 5);
  EXPECT_EQ(model::summation_depth(warp_tree(64, 1), 1), 1 + 6);
  EXPECT_EQ(warp_tree(32, 8).name(), "warp_tree(lanes=32,vec=8)");
  EXPECT_EQ(kPairwise.name(), "pairwise");
  EXPECT_THROW(model::summation_depth(warp_tree(3, 1), 8), std::invalid_argument);
  EXPECT_THROW(model::summation_depth(warp_tree(32, 0), 8), std::invalid_argument);
}

// Stage models read the inputs through the real layout: a per-element model_dot over values
// gathered independently (logical indices through KvLayout::offset) must agree bit for bit, on a
// paged, multi-layer, masked, GQA cache.
TEST(PrecisionModel, ModelQkMatchesPerElementDots) {
  Problem p;
  p.batch = 2;
  p.q_heads = 4;
  p.kv_heads = 2;
  p.q_len = 3;
  p.seq_len = 80;
  p.window = 70;
  p.head_dim = 64;
  KvLayoutSpec spec;
  spec.kind = KvLayoutKind::paged;
  spec.layers = 2;
  spec.layer = 1;
  spec.page_size = 16;
  spec.spare_pages = 3;
  DataSpec data;
  data.mask_fraction = 0.25;
  const AttentionInputs in = make_inputs(p, spec, data);
  const double scale = p.effective_scale();

  for (Accum acc : {Accum::fp16, Accum::fp32})
    for (const SummationOrder& order : {kSequential, kPairwise, warp_tree(8, 4)})
      for (bool apply_scale : {true, false}) {
        const std::vector<double> got = model::model_qk(in, acc, order, apply_scale);
        ASSERT_EQ(got.size(), static_cast<std::size_t>(p.score_elems()));
        std::int64_t masked = 0;
        std::vector<double> q(64), k(64);
        for (int b = 0; b < p.batch; ++b)
          for (int h = 0; h < p.q_heads; ++h)
            for (int t = 0; t < p.q_len; ++t)
              for (std::int64_t j = 0; j < p.window; ++j) {
                const std::int64_t pos = p.window_start(t) + j;
                const double g = got[static_cast<std::size_t>(
                    ((std::int64_t(b) * p.q_heads + h) * p.q_len + t) * p.window + j)];
                if (!in.attends(b, pos)) {
                  EXPECT_EQ(g, -std::numeric_limits<double>::infinity());
                  ++masked;
                  continue;
                }
                for (int d = 0; d < 64; ++d) {
                  q[static_cast<std::size_t>(d)] = in.q.get(in.q_offset(b, t, h) + d);
                  k[static_cast<std::size_t>(d)] =
                      in.k.get(in.layout.offset(b, h / p.group(), pos, d));
                }
                double want = model::model_dot(acc, order, q.data(), k.data(), 64);
                if (apply_scale)
                  want = acc == Accum::fp32
                             ? double(float(want) * float(scale))
                             : double(static_cast<_Float16>(want) * static_cast<_Float16>(scale));
                ASSERT_TRUE(same_bits(g, want))
                    << order.name() << " acc=" << to_string(acc) << " b=" << b << " h=" << h
                    << " t=" << t << " j=" << j;
              }
        EXPECT_GT(masked, 0);
      }
}

TEST(PrecisionModel, ModelPvMatchesPerElementDots) {
  Problem p;
  p.batch = 2;
  p.q_heads = 4;
  p.kv_heads = 1;
  p.q_len = 2;
  p.seq_len = 100;
  p.window = 90;
  p.head_dim = 64;
  KvLayoutSpec spec;
  spec.kind = KvLayoutKind::bshd;
  spec.layers = 3;
  spec.layer = 2;
  spec.seq_capacity = 128;
  DataSpec data;
  data.mask_fraction = 0.3;
  const AttentionInputs in = make_inputs(p, spec, data);
  // Probabilities in double, not representable in either format, so the conversion matters.
  std::mt19937_64 rng(21);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  std::vector<double> probs(static_cast<std::size_t>(p.score_elems()));
  for (auto& v : probs) v = uni(rng) / double(p.window);

  for (Accum acc : {Accum::fp16, Accum::fp32})
    for (const SummationOrder& order : {kSequential, kPairwise, warp_tree(32, 2)}) {
      const std::vector<double> got = model::model_pv(in, probs, acc, order);
      ASSERT_EQ(got.size(), static_cast<std::size_t>(p.out_elems()));
      std::vector<double> pj(static_cast<std::size_t>(p.window)), vj(pj.size());
      for (int b = 0; b < p.batch; ++b)
        for (int t = 0; t < p.q_len; ++t)
          for (int h = 0; h < p.q_heads; ++h)
            for (int d = 0; d < p.head_dim; ++d) {
              for (std::int64_t j = 0; j < p.window; ++j) {
                const std::int64_t pos = p.window_start(t) + j;
                const bool live = in.attends(b, pos);
                pj[static_cast<std::size_t>(j)] =
                    live ? probs[static_cast<std::size_t>(
                               ((std::int64_t(b) * p.q_heads + h) * p.q_len + t) * p.window + j)]
                         : 0.0;
                vj[static_cast<std::size_t>(j)] =
                    live ? in.v.get(in.layout.offset(b, h / p.group(), pos, d)) : 0.0;
              }
              const double want = model::model_dot(acc, order, pj.data(), vj.data(), p.window);
              // Zero terms may flip the sign of a zero result; compare values.
              ASSERT_EQ(got[static_cast<std::size_t>(in.q_offset(b, t, h) + d)], want)
                  << order.name() << " acc=" << to_string(acc);
            }
    }
}

// The same logical data in another layout gives the same model results bit for bit.
TEST(PrecisionModel, StageModelsIndependentOfLayout) {
  Problem p;
  p.q_heads = 2;
  p.kv_heads = 2;
  p.seq_len = 300;
  p.window = 257;
  p.head_dim = 128;
  std::vector<std::vector<double>> qk, pv;
  for (KvLayoutKind kind : {KvLayoutKind::bhsd, KvLayoutKind::bshd, KvLayoutKind::paged}) {
    KvLayoutSpec spec;
    spec.kind = kind;
    spec.layers = 2;
    spec.layer = 1;
    const AttentionInputs in = make_inputs(p, spec, DataSpec{});
    qk.push_back(model::model_qk(in, Accum::fp16, warp_tree(32, 4)));
    const std::vector<double> probs(static_cast<std::size_t>(p.score_elems()), 1.0 / 257.0);
    pv.push_back(model::model_pv(in, probs, Accum::fp16, warp_tree(32, 4)));
  }
  EXPECT_EQ(qk[0], qk[1]);
  EXPECT_EQ(qk[0], qk[2]);
  EXPECT_EQ(pv[0], pv[1]);
  EXPECT_EQ(pv[0], pv[2]);
}

long double exact_dot(const std::vector<double>& x, const std::vector<double>& y) {
  long double s = 0.0L;
  for (std::size_t i = 0; i < x.size(); ++i) s += static_cast<long double>(x[i]) * y[i];
  return s;
}

// FP16 accumulation error grows with the depth of the summation: at n = 4096 the sequential
// chain (depth 4096) loses more than the 32x8 warp tree (depth 133) on average, and more than
// the sequential chain at n = 256. Data: fp16 normal vectors, so the terms are mean-zero.
TEST(PrecisionModel, Fp16ErrorGrowsWithDepth) {
  std::mt19937_64 rng(31);
  const int trials = 64;
  const SummationOrder orders[] = {kSequential, warp_tree(32, 8)};
  double mean_err[2][2] = {};  // [order][n = 256, 4096]
  const std::int64_t sizes[] = {256, 4096};
  for (int si = 0; si < 2; ++si) {
    const std::int64_t n = sizes[si];
    double ratio_det[2] = {}, ratio_prob[2] = {};
    for (int trial = 0; trial < trials; ++trial) {
      const std::vector<double> x = random_values(rng, n, DType::fp16, false);
      const std::vector<double> y = random_values(rng, n, DType::fp16, false);
      const long double exact = exact_dot(x, y);
      long double mag = 0.0L;
      for (std::size_t i = 0; i < x.size(); ++i) mag += std::fabs(x[i] * y[i]);
      for (int o = 0; o < 2; ++o) {
        const double got = model::model_dot(Accum::fp16, orders[o], x.data(), y.data(), n);
        const double err = static_cast<double>(std::fabs(got - exact));
        const std::int64_t depth = model::summation_depth(orders[o], n);
        mean_err[o][si] += err / trials;
        ratio_det[o] += err / (bounds::gamma(depth, 0x1p-11) * double(mag)) / trials;
        ratio_prob[o] += err / (bounds::gamma_tilde(depth, 0x1p-11, 6.0) * double(mag)) / trials;
      }
    }
    for (int o = 0; o < 2; ++o)
      std::cout << "fp16 dot n=" << n << " " << orders[o].name() << ": mean |err| "
                << mean_err[o][si] << ", mean err/det bound " << ratio_det[o]
                << ", mean err/prob bound " << ratio_prob[o] << "\n";
  }
  EXPECT_GT(mean_err[0][1], mean_err[1][1]);  // sequential vs warp tree at 4096
  EXPECT_GT(mean_err[0][1], mean_err[0][0]);  // sequential at 4096 vs 256
}

// Packed accumulators and chunked runs, traced by hand in binary16 on the vector above:
//  pack=2, one lane of 8: evens 1+3+7+0.5 = 11.5; odds 1024+0.5->1024, +1.5->1026, +3 = 1029;
//    11.5 + 1029 = 1040.5 -> 1040 (tie to even).
//  sequential in runs of 4: 1+1024+3+0.5 -> 1028; 7+1.5+0.5+3 = 12; 1028 + 12 = 1040.
TEST(PrecisionModel, PackedAndChunkedOrdersMatchHandTrace) {
  const std::vector<double> x = {1, 1024, 3, 0.5, 7, 1.5, 0.5, 3};
  SummationOrder packed;
  packed.kind = model::OrderKind::warp_tree;
  packed.lanes = 1;
  packed.vec = 8;
  packed.pack = 2;
  EXPECT_EQ(model::model_sum(Accum::fp16, packed, x.data(), 8), 1040.0);
  packed.pack = 1;
  EXPECT_EQ(model::model_sum(Accum::fp16, packed, x.data(), 8), 1039.0);
  SummationOrder runs;
  runs.chunk = 4;
  EXPECT_EQ(model::model_sum(Accum::fp16, runs, x.data(), 8), 1040.0);
  EXPECT_EQ(model::model_sum(Accum::fp32, runs, x.data(), 8), 1040.5);
}

TEST(PrecisionModel, DepthOfPackedAndChunkedOrders) {
  // 16 lanes x 8, pack 2, n = 128: 8 elements a lane -> 4 per accumulator, 1 join, 4 levels.
  EXPECT_EQ(model::summation_depth(model::parse_order("warp_tree(lanes=16,vec=8,pack=2)"), 128), 9);
  // Runs of 100 over 250 elements: 100 in a run, then 2 joins of run results.
  EXPECT_EQ(model::summation_depth(model::parse_order("sequential(chunk=100)"), 250), 102);
  EXPECT_EQ(model::summation_depth(model::parse_order("warp_tree(lanes=16,vec=1,chunk=512)"), 1024),
            32 + 4 + 1);
}

TEST(PrecisionModel, MatrixInstructionOrders) {
  // One accumulator, 16 terms an instruction: 8 instructions over 128, 15 roundings inside one.
  EXPECT_EQ(model::summation_depth(SummationOrder::mma_of(1, 16), 128), 8 + 15);
  // 4 accumulators of 8 a step over runs of 1000: 32 steps, 7 inside, 2 tree levels; 2 runs.
  EXPECT_EQ(model::summation_depth(SummationOrder::mma_of(4, 8, 1000), 2000), 32 + 7 + 2 + 1);
  EXPECT_EQ(SummationOrder::mma_of(4, 8, 1000).name(), "mma(lanes=4,vec=8,chunk=1000)");
  EXPECT_EQ(model::parse_order("mma(lanes=4,vec=8,chunk=1000)"),
            SummationOrder::mma_of(4, 8, 1000));
  for (const char* bad :
       {"mma", "mma(lanes=3,vec=8)", "mma(lanes=4,vec=0)", "mma(lanes=4,vec=8,pack=2)"})
    EXPECT_THROW(model::parse_order(bad), std::invalid_argument) << bad;
  // The hardware does not specify a matrix instruction's order: the model does not emulate it.
  const std::vector<double> x(64, 1.0);
  EXPECT_THROW(model::model_sum(Accum::fp32, SummationOrder::mma_of(1, 16), x.data(), 64),
               std::invalid_argument);
  KernelOrder o;
  o.extra_roundings = 12;
  o.truncating = true;
  EXPECT_EQ(o.describe(), ";extra_roundings=12;truncating");
}

TEST(PrecisionModel, ParseOrderRoundTripsAndRejectsNonsense) {
  for (const char* s :
       {"sequential", "pairwise", "warp_tree(lanes=32,vec=8)", "warp_tree(lanes=16,vec=8,pack=2)",
        "warp_tree(lanes=16,vec=1,chunk=4096)", "sequential(chunk=7)", "mma(lanes=1,vec=16)"})
    EXPECT_EQ(model::parse_order(s).name(), s);
  EXPECT_EQ(model::parse_order("warp_tree(32x8)").name(), "warp_tree(lanes=32,vec=8)");
  for (const char* bad :
       {"", "random", "warp_tree", "warp_tree(lanes=3,vec=1)", "warp_tree(lanes=32,vec=x)",
        "warp_tree(lanes=32,speed=2)", "warp_tree(lanes=32,vec=8"})
    EXPECT_THROW(model::parse_order(bad), std::invalid_argument) << bad;
}

// The decode kernels' model in fp32 agrees with the FP64 reference to fp32 precision, whatever
// the split and row-group counts; in fp16 one long sequential run per row-group stagnates while
// the same keys cut into runs do not (the fused-against-split_kv effect the suite measures).
TEST(PrecisionModel, DecodeModelAgreesInFp32AndStagnatesInLongFp16Runs) {
  Problem p;
  p.q_heads = 4;
  p.kv_heads = 2;
  p.seq_len = p.window = 8192;
  p.head_dim = 64;
  const AttentionInputs in = make_inputs(p, KvLayoutSpec{}, DataSpec{});
  std::vector<double> ref_out, ref_lse;
  ref::attention_output<double>(in, ref_out, ref_lse);
  const SummationOrder dot = model::parse_order("warp_tree(lanes=8,vec=8)");
  for (std::int64_t split_len : {std::int64_t{8192}, std::int64_t{700}}) {
    std::vector<double> out, lse;
    model::model_decode(in, Accum::fp32, dot, 16, split_len, out, lse);
    const Metrics m = compare(p.out_elems(), out.data(), ref_out.data(), DType::fp32);
    EXPECT_LT(m.rel_l2, 1e-5) << split_len;
    for (std::size_t i = 0; i < lse.size(); ++i) EXPECT_NEAR(lse[i], ref_lse[i], 1e-4) << i;
  }
  std::vector<double> one_run, runs, lse;
  model::model_decode(in, Accum::fp16, dot, 1, 8192, one_run, lse);
  model::model_decode(in, Accum::fp16, dot, 16, 256, runs, lse);
  const double e_one = compare(p.out_elems(), one_run.data(), ref_out.data(), DType::fp16).rel_l2;
  const double e_runs = compare(p.out_elems(), runs.data(), ref_out.data(), DType::fp16).rel_l2;
  EXPECT_GT(e_one, 4.0 * e_runs) << e_one << " vs " << e_runs;
  EXPECT_THROW(model::model_decode(in, Accum::fp16, dot, 3, 256, runs, lse), std::invalid_argument);
}

// Tiles of keys with one max update per tile: tile 1 is the per-key model bit for bit; longer
// tiles follow another order (different roundings in fp16) of the same precision.
TEST(PrecisionModel, DecodeModelWithSoftmaxTiles) {
  Problem p;
  p.q_heads = 4;
  p.kv_heads = 2;
  p.seq_len = p.window = 4096;
  p.head_dim = 64;
  DataSpec data;
  data.dist = Distribution::large_logits;  // the max moves often: rescales matter
  const AttentionInputs in = make_inputs(p, KvLayoutSpec{}, data);
  std::vector<double> ref_out, ref_lse;
  ref::attention_output<double>(in, ref_out, ref_lse);
  const SummationOrder dot = model::parse_order("warp_tree(lanes=8,vec=8)");
  std::vector<double> per_key, tile1, tile4, lse;
  model::model_decode(in, Accum::fp16, dot, 8, 1024, per_key, lse);
  model::model_decode(in, Accum::fp16, dot, 8, 1024, tile1, lse, 1);
  model::model_decode(in, Accum::fp16, dot, 8, 1024, tile4, lse, 4);
  EXPECT_EQ(per_key, tile1);
  EXPECT_NE(tile1, tile4);
  const double e1 = compare(p.out_elems(), tile1.data(), ref_out.data(), DType::fp16).rel_l2;
  const double e4 = compare(p.out_elems(), tile4.data(), ref_out.data(), DType::fp16).rel_l2;
  EXPECT_LT(e4, 2.0 * e1) << e4 << " vs " << e1;
  EXPECT_GT(e4, 0.5 * e1) << e4 << " vs " << e1;
  std::vector<double> f32, f32_lse;
  model::model_decode(in, Accum::fp32, dot, 8, 1024, f32, f32_lse, 4);
  EXPECT_LT(compare(p.out_elems(), f32.data(), ref_out.data(), DType::fp32).rel_l2, 1e-5);
  for (std::size_t i = 0; i < f32_lse.size(); ++i) EXPECT_NEAR(f32_lse[i], ref_lse[i], 1e-4) << i;
  EXPECT_THROW(model::model_decode(in, Accum::fp16, dot, 8, 1024, tile4, lse, 0),
               std::invalid_argument);
}

}  // namespace
}  // namespace attnscope
