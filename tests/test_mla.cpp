// Host tests of latent (MLA) caches: the problem model, the inputs (one cache, V its first v_dim
// channels), the references against a direct evaluation written here, the precision model, the
// bounds' shapes, and the fp8 cost model where K's and V's rounding errors are the same numbers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "attnscope/core/inputs.hpp"
#include "attnscope/core/trace.hpp"
#include "attnscope/reference/bounds.hpp"
#include "attnscope/reference/fp8_cost.hpp"
#include "attnscope/reference/precision_model.hpp"
#include "attnscope/reference/stages.hpp"

namespace {

using attnscope::AttentionInputs;
using attnscope::DataSpec;
using attnscope::DType;
using attnscope::Fp8Format;
using attnscope::KvLayoutKind;
using attnscope::KvLayoutSpec;
using attnscope::KvScale;
using attnscope::Problem;
namespace ref = attnscope::ref;

// DeepSeek-V3's decode attention: 16 query heads of one latent head, 576-wide q and cache rows,
// 512-wide V and output, softmax scale 1/sqrt(192) (the model's head width before absorption).
Problem mla(int q_heads = 16, std::int64_t seq = 96, int q_len = 1) {
  Problem p;
  p.batch = 2;
  p.q_heads = q_heads;
  p.kv_heads = 1;
  p.q_len = q_len;
  p.seq_len = seq;
  p.window = seq - q_len + 1;
  p.head_dim = Problem::kMlaQkDim;
  p.v_dim = Problem::kMlaVDim;
  p.latent = true;
  p.scale = 1.0 / std::sqrt(192.0);
  return p;
}

std::string invalid(const Problem& p) {
  try {
    p.validate();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return {};
}

TEST(MlaProblem, ValidatesTheLatentShape) {
  Problem p = mla();
  EXPECT_EQ(invalid(p), "");
  EXPECT_EQ(p.value_dim(), 512);
  EXPECT_EQ(p.out_elems(), std::int64_t(2) * 1 * 16 * 512);
  EXPECT_EQ(p.q_elems(), std::int64_t(2) * 1 * 16 * 576);
  EXPECT_NE(p.tag().find("_d576v512-latent_"), std::string::npos) << p.tag();

  Problem two_heads = p;
  two_heads.kv_heads = 2;
  EXPECT_NE(invalid(two_heads).find("one KV head"), std::string::npos);
  Problem narrow = p;
  narrow.v_dim = 256;
  EXPECT_NE(invalid(narrow).find("v_dim 512"), std::string::npos);
  Problem not_latent = p;
  not_latent.latent = false;
  EXPECT_NE(invalid(not_latent).find("unsupported head_dim 576"), std::string::npos);
  Problem mismatch;
  mismatch.head_dim = 128;
  mismatch.v_dim = 64;
  EXPECT_NE(invalid(mismatch).find("only a latent (MLA) cache"), std::string::npos);
  Problem negative;
  negative.v_dim = -1;
  EXPECT_NE(invalid(negative).find("v_dim must be >= 0"), std::string::npos);
  // v_dim 0 is head_dim, and an explicit equal v_dim is the same problem.
  Problem plain;
  plain.v_dim = plain.head_dim;
  EXPECT_EQ(invalid(plain), "");
  EXPECT_EQ(plain.out_elems(), plain.q_elems());
}

TEST(MlaInputs, VIsTheCache) {
  for (bool fp8 : {false, true}) {
    Problem p = mla();
    if (fp8) {
      p.kv_fp8 = Fp8Format::e4m3;
      p.kv_scale = KvScale::token;
    }
    KvLayoutSpec paged;
    paged.kind = KvLayoutKind::paged;
    paged.page_size = 16;
    paged.spare_pages = 3;
    DataSpec data;
    data.poison_outside = true;
    const AttentionInputs in = attnscope::make_inputs(p, paged, data);
    SCOPED_TRACE(fp8 ? "fp8" : "fp16");
    ASSERT_EQ(in.k.bytes(), in.v.bytes());
    EXPECT_EQ(std::memcmp(in.k.data(), in.v.data(), in.k.bytes()), 0);
    if (fp8) {
      ASSERT_EQ(in.k_cache.bytes(), in.v_cache.bytes());
      EXPECT_EQ(std::memcmp(in.k_cache.data(), in.v_cache.data(), in.k_cache.bytes()), 0);
      ASSERT_EQ(in.k_scale.bytes(), in.v_scale.bytes());
      EXPECT_EQ(std::memcmp(in.k_scale.data(), in.v_scale.data(), in.k_scale.bytes()), 0);
    }
    EXPECT_EQ(in.out_offset(1, 0, 3), (std::int64_t(1) * 16 + 3) * 512);
    EXPECT_EQ(in.q_offset(1, 0, 3), (std::int64_t(1) * 16 + 3) * 576);
  }
}

// softmax(scale q.K) V over each query's window, V the first 512 channels of each cache row,
// evaluated directly in long double from the inputs: no blocking, no merges.
struct Direct {
  std::vector<double> out, lse;
};
Direct direct(const AttentionInputs& in) {
  const Problem& p = in.problem;
  const auto a = in.layout.addressing();
  Direct r;
  r.out.assign(std::size_t(p.out_elems()), 0.0);
  r.lse.assign(std::size_t(p.lse_elems()), -std::numeric_limits<double>::infinity());
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.q_heads; ++h)
      for (int t = 0; t < p.q_len; ++t) {
        std::vector<long double> s;
        std::vector<std::int64_t> rows;
        for (std::int64_t j = 0; j < p.window; ++j) {
          const std::int64_t pos = p.window_start(t) + j;
          if (!in.attends(b, pos)) continue;
          const std::int64_t row = in.kv_offset(a, b, 0, pos);
          long double dot = 0;
          for (int d = 0; d < p.head_dim; ++d)
            dot += static_cast<long double>(in.q.get(in.q_offset(b, t, h) + d)) * in.k.get(row + d);
          s.push_back(dot * static_cast<long double>(p.effective_scale()));
          rows.push_back(row);
        }
        if (s.empty()) continue;
        long double m = s[0], l = 0;
        for (long double x : s) m = std::max(m, x);
        for (long double x : s) l += std::exp(x - m);
        for (int d = 0; d < p.value_dim(); ++d) {
          long double o = 0;
          for (std::size_t k = 0; k < s.size(); ++k)
            o += std::exp(s[k] - m) * static_cast<long double>(in.v.get(rows[k] + d));
          r.out[std::size_t(in.out_offset(b, t, h) + d)] = static_cast<double>(o / l);
        }
        r.lse[std::size_t((std::int64_t(b) * p.q_heads + h) * p.q_len + t)] =
            static_cast<double>(m + std::log(l));
      }
  return r;
}

double max_rel(const std::vector<double>& got, const std::vector<double>& want) {
  double worst = 0.0, scale = 0.0;
  for (double w : want)
    if (std::isfinite(w)) scale = std::max(scale, std::fabs(w));
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (std::isinf(want[i]) && got[i] == want[i]) continue;
    worst = std::max(worst, std::fabs(got[i] - want[i]) / scale);
  }
  return worst;
}

TEST(MlaReference, MatchesTheDirectEvaluation) {
  // A paged cache, two query positions (speculative verification), masked keys and a ragged
  // batch: every reference path reads the one cache and writes 512-wide rows.
  Problem p = mla(16, 130, 2);
  KvLayoutSpec paged;
  paged.kind = KvLayoutKind::paged;
  paged.page_size = 16;
  DataSpec data;
  data.mask_fraction = 0.2;
  data.ragged_min_len = 40;
  const AttentionInputs in = attnscope::make_inputs(p, paged, data);
  const Direct want = direct(in);

  std::vector<double> out, lse;
  ref::attention_output<double>(in, out, lse);
  ASSERT_EQ(out.size(), want.out.size());
  EXPECT_LT(max_rel(out, want.out), 1e-13);
  EXPECT_LT(max_rel(lse, want.lse), 1e-13);

  const ref::Trace<double> trace = ref::attention<double>(in);
  ASSERT_EQ(trace.out.size(), want.out.size());
  EXPECT_LT(max_rel(trace.out, want.out), 1e-13);

  std::vector<ref::Quad> qout, qlse;
  ref::attention_output<ref::Quad>(in, qout, qlse);
  EXPECT_LT(max_rel(ref::to_double(qout), want.out), 1e-15);
}

TEST(MlaReference, RotaryChannelsEnterOnlyTheScores) {
  Problem p = mla(16, 64);
  const AttentionInputs in = attnscope::make_inputs(p, KvLayoutSpec{}, DataSpec{});
  // Zeroing the last 64 channels of q leaves the rotary channels of the cache unread: the
  // output equals that of a cache whose rotary channels hold anything else.
  AttentionInputs a = in, b = in;
  for (int bb = 0; bb < p.batch; ++bb)
    for (int h = 0; h < p.q_heads; ++h)
      for (int d = Problem::kMlaVDim; d < p.head_dim; ++d) {
        a.q.set(a.q_offset(bb, 0, h) + d, 0.0);
        b.q.set(b.q_offset(bb, 0, h) + d, 0.0);
      }
  const auto addr = b.layout.addressing();
  for (int bb = 0; bb < p.batch; ++bb)
    for (std::int64_t pos = 0; pos < p.seq_len; ++pos)
      for (int d = Problem::kMlaVDim; d < p.head_dim; ++d) {
        const std::int64_t i = addr.offset(bb, 0, pos) + d;
        b.k.set(i, 3.0 - b.k.get(i));
        b.v.set(i, b.k.get(i));
      }
  std::vector<double> oa, la, ob, lb;
  ref::attention_output<double>(a, oa, la);
  ref::attention_output<double>(b, ob, lb);
  EXPECT_EQ(oa, ob);
  // ... and with q's rotary channels back, they matter.
  std::vector<double> oc, lc;
  AttentionInputs c = b;
  c.q = in.q;
  ref::attention_output<double>(c, oc, lc);
  EXPECT_NE(oa, oc);
}

TEST(MlaPrecisionModel, Fp32DecodeStaysNearTheReferenceAndFp16Farther) {
  Problem p = mla(16, 512);
  const AttentionInputs in = attnscope::make_inputs(p, KvLayoutSpec{}, DataSpec{});
  std::vector<double> exact, exact_lse;
  ref::attention_output<double>(in, exact, exact_lse);
  double rel[2] = {0, 0};
  for (int acc = 0; acc < 2; ++acc) {
    std::vector<double> out, lse;
    attnscope::model::model_decode(in, acc == 0 ? attnscope::Accum::fp32 : attnscope::Accum::fp16,
                                   attnscope::SummationOrder{}, 4, 256, out, lse, 1);
    ASSERT_EQ(out.size(), exact.size());
    double e2 = 0, r2 = 0;
    for (std::size_t i = 0; i < out.size(); ++i) {
      e2 += (out[i] - exact[i]) * (out[i] - exact[i]);
      r2 += exact[i] * exact[i];
    }
    rel[acc] = std::sqrt(e2 / r2);
  }
  // fp32 accumulation: a few units of 2^-24 on 576-term dots and 512-key sums; fp16 accumulation
  // about 2^13 times more.
  EXPECT_GT(rel[0], 0.0);
  EXPECT_LT(rel[0], 1e-5);
  EXPECT_GT(rel[1], 100 * rel[0]);
  EXPECT_LT(rel[1], 1e-1);
}

TEST(MlaBounds, PvBoundsCoverEveryOutputElementAndHoldTheModel) {
  Problem p = mla(16, 128);
  p.accum = attnscope::Accum::fp16;
  const AttentionInputs in = attnscope::make_inputs(p, KvLayoutSpec{}, DataSpec{});
  const ref::Trace<double> exact = ref::attention<double>(in);
  const attnscope::bounds::StageFormats f{attnscope::Accum::fp16, p.window, DType::fp32,
                                          attnscope::bounds::kDefaultLambda};
  const attnscope::bounds::ElementBounds b = attnscope::bounds::pv_bounds(in, exact.probs, {}, f);
  ASSERT_EQ(b.deterministic.size(), std::size_t(p.out_elems()));
  // The sequential fp16 P.V of the precision model, on the exact probabilities, lies within the
  // deterministic bound of every element.
  const std::vector<double> model =
      attnscope::model::model_pv(in, exact.probs, attnscope::Accum::fp16, {});
  ASSERT_EQ(model.size(), exact.out.size());
  for (std::size_t i = 0; i < model.size(); ++i) {
    ASSERT_GT(b.deterministic[i], 0.0);
    ASSERT_LE(std::fabs(model[i] - exact.out[i]), b.deterministic[i]) << i;
  }
}

// The trace format holds K and V caches of q's width: writing a latent problem is refused, not
// written as two caches.
TEST(MlaTrace, TracesRefuseLatentCachesForNow) {
  const AttentionInputs in = attnscope::make_inputs(mla(), KvLayoutSpec{}, DataSpec{});
  const std::string path = ::testing::TempDir() + "latent_trace.safetensors";
  EXPECT_THROW(
      attnscope::trace::write_trace_point(path, in, attnscope::trace::RecordedOutputs{}, {}),
      std::invalid_argument);
}

// The format's cost when V's rounding errors are K's: the cost model draws them once and the
// measurement (FP64 over the dequantized latent cache against FP64 over the original) lies
// within four of the prediction's standard deviations.
TEST(MlaFp8Cost, PredictionMatchesTheMeasurement) {
  for (Fp8Format f : {Fp8Format::e4m3, Fp8Format::e5m2})
    for (KvScale s : {KvScale::tensor, KvScale::token}) {
      Problem p = mla(16, 256);
      p.batch = 1;
      p.kv_fp8 = f;
      p.kv_scale = s;
      const AttentionInputs in = attnscope::make_inputs(p, KvLayoutSpec{}, DataSpec{});
      const ref::Fp8Cost c = ref::fp8_cost(in);
      SCOPED_TRACE(std::string(to_string(f)) + " " + std::string(to_string(s)));
      ASSERT_GT(c.predicted_rel_l2, 0.0);
      const double ratio = c.measured_rel_l2 / c.predicted_rel_l2;
      EXPECT_LE(std::fabs(ratio - 1.0), 4.0 * c.predicted_relative_sd)
          << "measured " << c.measured_rel_l2 << ", predicted " << c.predicted_rel_l2
          << " (relative sd " << c.predicted_relative_sd << ")";
      // The first-order estimate, with K's and V's errors covarying, agrees to a few percent.
      EXPECT_NEAR(c.linear_rel_l2 / c.predicted_rel_l2, 1.0, 0.1);
    }
}

}  // namespace
