// Host tests of the stage references: closed forms, invariances, layouts, masking, GQA, and the
// FP64 reference against the Quad (binary128) one within a derived error budget.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "attnscope/reference/bounds.hpp"
#include "attnscope/reference/judge.hpp"
#include "attnscope/reference/precision_model.hpp"
#include "attnscope/reference/stages.hpp"

namespace {

using attnscope::AttentionInputs;
using attnscope::DataSpec;
using attnscope::Distribution;
using attnscope::DType;
using attnscope::KvLayout;
using attnscope::KvLayoutKind;
using attnscope::KvLayoutSpec;
using attnscope::Problem;
using attnscope::ref::Quad;
namespace ref = attnscope::ref;

constexpr double kU = 0x1p-53;  // unit roundoff of double
constexpr double kInf = std::numeric_limits<double>::infinity();

// gamma_k = k u / (1 - k u): the relative error bound of k chained roundings (Higham).
double gamma_n(std::int64_t k) {
  return double(k) * kU / (1.0 - double(k) * kU);
}

Problem make_problem(int batch, int q_heads, int kv_heads, int q_len, std::int64_t seq_len,
                     std::int64_t window, int head_dim = 64, DType input = DType::fp16) {
  Problem p;
  p.batch = batch;
  p.q_heads = q_heads;
  p.kv_heads = kv_heads;
  p.q_len = q_len;
  p.seq_len = seq_len;
  p.window = window;
  p.head_dim = head_dim;
  p.input = input;
  return p;
}

AttentionInputs make(const Problem& p, Distribution dist = Distribution::normal,
                     double mask_fraction = 0.0, const KvLayoutSpec& layout = KvLayoutSpec{}) {
  DataSpec data;
  data.dist = dist;
  data.mask_fraction = mask_fraction;
  return attnscope::make_inputs(p, layout, data);
}

// Index into [batch, q_heads, q_len, window] and [batch, q_heads, q_len].
std::int64_t score_index(const Problem& p, int b, int h, int t, std::int64_t j) {
  return ((std::int64_t(b) * p.q_heads + h) * p.q_len + t) * p.window + j;
}
std::int64_t row_index(const Problem& p, int b, int h, int t) {
  return (std::int64_t(b) * p.q_heads + h) * p.q_len + t;
}
double k_at(const AttentionInputs& in, int b, int kvh, std::int64_t pos, int d) {
  return in.k.get(in.layout.offset(b, kvh, pos, d));
}
double v_at(const AttentionInputs& in, int b, int kvh, std::int64_t pos, int d) {
  return in.v.get(in.layout.offset(b, kvh, pos, d));
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

// ---------------------------------------------------------------------------------------------
// Error budget of the FP64 references (first order in u = 2^-53; second-order terms, below
// 1e-25 relative for these sizes, are dropped). Per query row with n attended keys, exact scores
// s_j, c = max_j s_j, exact probabilities P_j and D = head_dim:
//  - scores: products of fp16/bf16/fp32 values are exact in double; the 8-lane dot adds each term
//    at most D/8 + 2 times and the scale multiply rounds once, so
//      |s^_j - s_j| <= e_j = gamma_{D/8+3} * scale * sum_d |q_d k_jd|.
//  - unnormalized weights p^_j = exp(fl(s^_j - c^)): the shift c^ is common to all terms and
//    cancels in the normalized result; the subtraction rounds (u |s_j - c|) and glibc exp is
//    within 1 ulp (2u), so p^_j = exp(s_j - c)(1 + rho_j), |rho_j| <= r_j = e_j + u|s_j - c| + 2u.
//  - each log-sum-exp merge of attention_output (ref::Blocking::max_merges of them, at most)
//    rescales by exp(fl(m - M)) and adds: 4u + u R per merge, R = max_j s_j - min_j s_j.
//  - the sum of n weights: sigma = sum_j P_j r_j + gamma_{n-1} + merges (4u + u R).
//  - probabilities: |P^_j - P_j| <= P_j (r_j + sigma + u).
//  - out_d = sum_j P_j v_jd: n products and adds (gamma_n) on perturbed weights, then the
//    normalization, so with C_d = sum_j P_j |v_jd|:
//      |o^_d - o_d| <= sum_j P_j |v_jd| (r_j + gamma_n) + (sigma + merges (4u + u R) + u) C_d.
//    C_d / |o_d| is the condition number of the weighted sum: the relative error of an output
//    element is only bounded by it, which is why the check is per element against this budget.
//  - lse = c + log(sum): the weights' relative error shifts log(sum) by at most sigma; glibc log
//    rounds within 1 ulp (2u log n at most) and the final add rounds once: sigma + 2u log n +
//    u |lse|.
// The same derivation covers attention() (normalize, then pv over splits whose partial sums are
// merges too) and attention_output(). The Quad reference has the same bounds with u = 2^-113,
// 10^-19 times smaller, so it stands in for the exact values.
struct Fp64Budget {
  std::vector<double> score;  // [batch, q_heads, q_len, window]
  std::vector<double> prob;   // [batch, q_heads, q_len, window]
  std::vector<double> lse;    // [batch, q_heads, q_len]
  std::vector<double> out;    // [batch, q_len, q_heads, head_dim]
};

// `exact` holds the (near-)exact scores and probabilities the budget is evaluated at.
template <class Real>
Fp64Budget fp64_budget(const AttentionInputs& in, const ref::Trace<Real>& exact) {
  const Problem& p = in.problem;
  const int D = p.head_dim;
  const double scale = p.effective_scale();
  const double merge_err =
      double(ref::blocking(p).max_merges(p)) * 4.0 * kU;  // the u R part is added per row
  const double merges = double(ref::blocking(p).max_merges(p));
  Fp64Budget budget;
  budget.score.assign(std::size_t(p.score_elems()), 0.0);
  budget.prob.assign(std::size_t(p.score_elems()), 0.0);
  budget.lse.assign(std::size_t(p.lse_elems()), 0.0);
  budget.out.assign(std::size_t(p.out_elems()), 0.0);
  std::vector<double> r(std::size_t(p.window), 0.0);  // [window]
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.q_heads; ++h)
      for (int t = 0; t < p.q_len; ++t) {
        const int kvh = h / p.group();
        const std::int64_t start = p.window_start(t);
        const std::int64_t row = row_index(p, b, h, t);
        double s_max = -kInf, s_min = kInf;
        std::int64_t n = 0;
        for (std::int64_t j = 0; j < p.window; ++j) {
          if (!in.attends(b, start + j)) continue;
          const double s = static_cast<double>(exact.scores[std::size_t(row * p.window + j)]);
          s_max = std::max(s_max, s);
          s_min = std::min(s_min, s);
          ++n;
        }
        const double range_err = merges * kU * (s_max - s_min);
        double sigma = gamma_n(n - 1) + merge_err + range_err;
        for (std::int64_t j = 0; j < p.window; ++j) {
          if (!in.attends(b, start + j)) continue;
          double abs_dot = 0.0;
          for (int d = 0; d < D; ++d)
            abs_dot +=
                std::fabs(in.q.get(in.q_offset(b, t, h) + d) * k_at(in, b, kvh, start + j, d));
          const std::size_t at = std::size_t(row * p.window + j);
          const double s = static_cast<double>(exact.scores[at]);
          budget.score[at] = gamma_n(D / 8 + 3) * scale * abs_dot;
          r[std::size_t(j)] = budget.score[at] + kU * (s_max - s) + 2.0 * kU;
          sigma += static_cast<double>(exact.probs[at]) * r[std::size_t(j)];
        }
        for (std::int64_t j = 0; j < p.window; ++j) {
          const std::size_t at = std::size_t(row * p.window + j);
          if (in.attends(b, start + j))
            budget.prob[at] =
                static_cast<double>(exact.probs[at]) * (r[std::size_t(j)] + sigma + kU);
        }
        const double lse = static_cast<double>(exact.lse[std::size_t(row)]);
        budget.lse[std::size_t(row)] = sigma + 2.0 * kU * std::log(double(n)) + kU * std::fabs(lse);
        for (int d = 0; d < D; ++d) {
          double weighted = 0.0, cond = 0.0;
          for (std::int64_t j = 0; j < p.window; ++j) {
            if (!in.attends(b, start + j)) continue;
            const double w = static_cast<double>(exact.probs[std::size_t(row * p.window + j)]) *
                             std::fabs(v_at(in, b, kvh, start + j, d));
            weighted += w * (r[std::size_t(j)] + gamma_n(n));
            cond += w;
          }
          budget.out[std::size_t(in.q_offset(b, t, h) + d)] =
              weighted + (sigma + merge_err + range_err + kU) * cond;
        }
      }
  return budget;
}

// Errors of x against near-exact Quad values, taken in Quad so that rounding the reference to
// double does not blur errors of an FP64 ulp.
struct Check {
  std::int64_t violations = 0;  // elements with |x - exact| > budget (or mismatched non-finites)
  double rel_l2 = 0.0;          // ||x - exact|| / ||exact||
  double rel_l2_budget = 0.0;   // ||budget|| / ||exact||
  double max_rel = 0.0;         // max |x - exact| / |exact| over nonzero exact
  double worst_ratio = 0.0;     // max |x - exact| / budget
};

template <class Real>
Check check_within(const std::vector<double>& x, const std::vector<Real>& exact,
                   const std::vector<double>& budget) {
  Check c;
  Quad err_sq(0), ref_sq(0), budget_sq(0);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const Quad e_ref(exact[i]);
    if (!std::isfinite(x[i]) || !isfinite(e_ref)) {
      if (!(x[i] == static_cast<double>(e_ref))) ++c.violations;  // -inf must meet -inf
      continue;
    }
    const Quad err = abs(Quad(x[i]) - e_ref);
    if (err > Quad(budget[i])) ++c.violations;
    err_sq += err * err;
    ref_sq += e_ref * e_ref;
    budget_sq += Quad(budget[i]) * Quad(budget[i]);
    if (e_ref != 0) c.max_rel = std::max(c.max_rel, static_cast<double>(err / abs(e_ref)));
    if (budget[i] > 0.0)
      c.worst_ratio = std::max(c.worst_ratio, static_cast<double>(err) / budget[i]);
  }
  if (ref_sq > 0) {
    c.rel_l2 = static_cast<double>(sqrt(err_sq / ref_sq));
    c.rel_l2_budget = static_cast<double>(sqrt(budget_sq / ref_sq));
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// Closed forms.

// All keys equal: every score of a row is the same, so probabilities are exactly 1/window and
// out is the mean of the window's V rows.
TEST(ReferenceClosedForm, EqualKeysGiveUniformProbsAndMeanOfV) {
  const Problem p = make_problem(2, 4, 2, 2, 40, 32);
  AttentionInputs in = make(p);
  for (int b = 0; b < p.batch; ++b)
    for (int kvh = 0; kvh < p.kv_heads; ++kvh)
      for (std::int64_t pos = 1; pos < p.seq_len; ++pos)
        for (int d = 0; d < p.head_dim; ++d)
          in.k.set(in.layout.offset(b, kvh, pos, d), k_at(in, b, kvh, 0, d));

  const ref::Trace<double> tr = ref::attention<double>(in);
  std::vector<double> out2, lse2;
  ref::attention_output<double>(in, out2, lse2);
  const double W = double(p.window);
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.q_heads; ++h)
      for (int t = 0; t < p.q_len; ++t) {
        const std::int64_t row = row_index(p, b, h, t);
        const double s = tr.scores[std::size_t(score_index(p, b, h, t, 0))];
        for (std::int64_t j = 0; j < p.window; ++j) {
          ASSERT_EQ(tr.scores[std::size_t(score_index(p, b, h, t, j))], s);
          // exp(0) = 1, the sum W is exact, and 1/W rounds once.
          ASSERT_EQ(tr.probs[std::size_t(score_index(p, b, h, t, j))], 1.0 / W);
        }
        // lse = s + log W: log within 1 ulp (2u log W) and one rounding of the sum.
        const double lse_exact = static_cast<double>(Quad(s) + log(Quad(p.window)));
        for (const double lse : {tr.lse[std::size_t(row)], lse2[std::size_t(row)]})
          EXPECT_LE(std::fabs(lse - lse_exact), 2.0 * kU * std::log(W) + kU * std::fabs(lse));
        for (int d = 0; d < p.head_dim; ++d) {
          Quad mean(0);
          double mean_abs = 0.0;
          for (std::int64_t j = 0; j < p.window; ++j) {
            const double v = v_at(in, b, h / p.group(), p.window_start(t) + j, d);
            mean += Quad(v);
            mean_abs += std::fabs(v);
          }
          mean /= Quad(p.window);
          mean_abs /= W;
          // W products by the rounded 1/W and W additions, plus that rounding: gamma_{W+2}.
          const std::int64_t o = in.q_offset(b, t, h) + d;
          EXPECT_LE(static_cast<double>(abs(Quad(tr.out[std::size_t(o)]) - mean)),
                    gamma_n(p.window + 2) * mean_abs);
          EXPECT_LE(static_cast<double>(abs(Quad(out2[std::size_t(o)]) - mean)),
                    gamma_n(p.window + 2) * mean_abs);
        }
      }
}

// q = e_c reads channel c of every key: scores are exactly scale * K[pos, c]. Channel c differs
// per (head, query), which pins the GQA head mapping and each query's window to exact values.
TEST(ReferenceClosedForm, OneHotQueryReadsOneKeyChannel) {
  const Problem p = make_problem(2, 8, 2, 3, 50, 20);
  AttentionInputs in = make(p);
  auto channel = [](int h, int t) { return 3 * h + t; };
  for (int b = 0; b < p.batch; ++b)
    for (int t = 0; t < p.q_len; ++t)
      for (int h = 0; h < p.q_heads; ++h)
        for (int d = 0; d < p.head_dim; ++d)
          in.q.set(in.q_offset(b, t, h) + d, d == channel(h, t) ? 1.0 : 0.0);

  const std::vector<double> s = ref::qk<double>(in);
  const std::vector<Quad> sq = ref::qk<Quad>(in);
  const double scale = p.effective_scale();
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.q_heads; ++h)
      for (int t = 0; t < p.q_len; ++t)
        for (std::int64_t j = 0; j < p.window; ++j) {
          const double k = k_at(in, b, h / p.group(), p.window_start(t) + j, channel(h, t));
          const std::size_t at = std::size_t(score_index(p, b, h, t, j));
          ASSERT_EQ(s[at], scale * k) << "b" << b << " h" << h << " t" << t << " j" << j;
          // scale (53 bits) times an fp16 value (11 bits) is exact in binary128.
          ASSERT_TRUE(sq[at] == Quad(scale) * Quad(k));
        }
}

// A window of one key: probability 1, lse equal to the score, out equal to that V row, exactly.
TEST(ReferenceClosedForm, WindowOneReturnsThatValueRow) {
  const Problem p = make_problem(1, 4, 2, 4, 16, 1, 128);
  const AttentionInputs in = make(p);
  const ref::Trace<double> tr = ref::attention<double>(in);
  const ref::Trace<Quad> trq = ref::attention<Quad>(in);
  std::vector<double> out2, lse2;
  ref::attention_output<double>(in, out2, lse2);
  for (int h = 0; h < p.q_heads; ++h)
    for (int t = 0; t < p.q_len; ++t) {
      const std::size_t row = std::size_t(row_index(p, 0, h, t));
      EXPECT_EQ(tr.probs[row], 1.0);
      EXPECT_TRUE(trq.probs[row] == 1);
      EXPECT_EQ(tr.lse[row], tr.scores[row]);
      EXPECT_EQ(lse2[row], tr.scores[row]);
      EXPECT_TRUE(trq.lse[row] == trq.scores[row]);
      const std::int64_t pos = p.seq_len - p.q_len + t;  // the query's own position
      for (int d = 0; d < p.head_dim; ++d) {
        const double v = v_at(in, 0, h / p.group(), pos, d);
        const std::size_t o = std::size_t(in.q_offset(0, t, h) + d);
        ASSERT_EQ(tr.out[o], v);
        ASSERT_EQ(out2[o], v);
        ASSERT_TRUE(trq.out[o] == Quad(v));
      }
    }
}

// Three keys with scores 0, 1, 2 (scale 1, q = e_0, K[pos, 0] = pos) and V[pos] = (pos + 1,
// (-1)^pos, ...): probs = (1, e, e^2) / Z. With n = 3 every result passes through at most 8
// roundings of at most 2u each (exp and log within 1 ulp), so 16u relative to the weighted
// magnitudes bounds the error.
void hand_computed_case(bool mask_middle) {
  Problem p = make_problem(1, 1, 1, 1, 3, 3, 64, DType::fp32);
  p.scale = 1.0;
  AttentionInputs in = make(p);
  for (int d = 0; d < p.head_dim; ++d) in.q.set(d, d == 0 ? 1.0 : 0.0);
  for (int pos = 0; pos < 3; ++pos) {
    in.k.set(in.layout.offset(0, 0, pos, 0), pos);
    in.v.set(in.layout.offset(0, 0, pos, 0), pos + 1);
    in.v.set(in.layout.offset(0, 0, pos, 1), pos % 2 == 0 ? 1.0 : -1.0);
  }
  if (mask_middle) in.key_mask = {1, 0, 1};

  const Quad e = exp(Quad(1));
  const Quad w[3] = {Quad(1), mask_middle ? Quad(0) : e, e * e};
  const Quad z = w[0] + w[1] + w[2];
  const ref::Trace<double> tr = ref::attention<double>(in);
  std::vector<double> out2, lse2;
  ref::attention_output<double>(in, out2, lse2);
  const double tol = 16.0 * kU;
  for (int j = 0; j < 3; ++j) {
    EXPECT_EQ(tr.scores[std::size_t(j)], (mask_middle && j == 1) ? -kInf : double(j));
    const Quad prob = w[j] / z;
    EXPECT_LE(static_cast<double>(abs(Quad(tr.probs[std::size_t(j)]) - prob)),
              tol * static_cast<double>(prob));
  }
  if (mask_middle) {
    EXPECT_EQ(tr.probs[1], 0.0);
  }
  const Quad lse = log(z);
  EXPECT_LE(static_cast<double>(abs(Quad(tr.lse[0]) - lse)), tol * static_cast<double>(lse));
  EXPECT_LE(static_cast<double>(abs(Quad(lse2[0]) - lse)), tol * static_cast<double>(lse));
  for (int d = 0; d < p.head_dim; ++d) {
    Quad o(0), weighted_abs(0);
    for (int j = 0; j < 3; ++j) {
      const Quad v(v_at(in, 0, 0, j, d));
      o += w[j] / z * v;
      weighted_abs += w[j] / z * abs(v);
    }
    const double bound = tol * static_cast<double>(weighted_abs);
    EXPECT_LE(static_cast<double>(abs(Quad(tr.out[std::size_t(d)]) - o)), bound) << "d" << d;
    EXPECT_LE(static_cast<double>(abs(Quad(out2[std::size_t(d)]) - o)), bound) << "d" << d;
  }
  // The closed form itself, spelled out for the first two channels.
  const Quad o0 = mask_middle ? (1 + 3 * e * e) / z : (1 + 2 * e + 3 * e * e) / z;
  const Quad o1 = mask_middle ? (1 + e * e) / z : (1 - e + e * e) / z;
  EXPECT_LE(static_cast<double>(abs(Quad(tr.out[0]) - o0)), tol * static_cast<double>(o0));
  EXPECT_LE(static_cast<double>(abs(Quad(tr.out[1]) - o1)), tol);
}

TEST(ReferenceClosedForm, HandComputedThreeKeys) {
  hand_computed_case(false);
}
TEST(ReferenceClosedForm, HandComputedThreeKeysMaskedMiddle) {
  hand_computed_case(true);
}

// ---------------------------------------------------------------------------------------------
// Invariances.

// Adding c to every logit leaves the max-shifted softmax unchanged. Logits are rounded to
// multiples of 2^-20 below 2^10 in magnitude, so x + c is exact and the shifted differences are
// bit-identical: probabilities must be too, even for c = +-1000 where an unshifted exp overflows
// or underflows.
TEST(ReferenceInvariance, SoftmaxIsShiftInvariant) {
  const Problem p = make_problem(1, 4, 2, 2, 300, 257, 128);
  const AttentionInputs in = make(p, Distribution::large_logits, 0.2);
  std::vector<double> logits = ref::qk<double>(in);
  for (double& x : logits)
    if (std::isfinite(x)) x = std::ldexp(std::nearbyint(std::ldexp(x, 20)), -20);
  std::vector<double> lse;
  const std::vector<double> probs = ref::softmax<double>(in, logits, 1.0, &lse);
  for (const double c : {3.0, 1000.0, -1000.0}) {
    std::vector<double> shifted = logits;
    for (double& x : shifted) x += c;
    std::vector<double> lse_c;
    const std::vector<double> probs_c = ref::softmax<double>(in, shifted, 1.0, &lse_c);
    EXPECT_TRUE(same_bits(probs, probs_c)) << "shift " << c;
    for (std::size_t r = 0; r < lse.size(); ++r) {
      // lse and lse_c each round once after the same exact m + log(sum): the difference from an
      // exact shift is at most u |lse| + u |lse_c|.
      const Quad diff = abs(Quad(lse_c[r]) - (Quad(lse[r]) + Quad(c)));
      EXPECT_LE(static_cast<double>(diff), kU * (std::fabs(lse[r]) + std::fabs(lse_c[r])));
    }
  }
}

// Rows sum to one: sum_j fl(p_j / S^) = (sum_j p_j / S^)(1 + u) and S^ is within gamma_{n-1}
// of sum_j p_j, so |sum - 1| <= gamma_n (sums taken in Quad). The Quad reference likewise, at
// its own unit roundoff.
TEST(ReferenceInvariance, ProbabilitiesSumToOne) {
  const Problem p = make_problem(2, 4, 2, 3, 700, 600);
  const AttentionInputs in = make(p, Distribution::heavy_tailed, 0.3);
  const std::vector<double> probs = ref::softmax<double>(in, ref::qk<double>(in));
  const std::vector<Quad> probs_q = ref::softmax<Quad>(in, ref::qk<Quad>(in));
  const double u_quad = std::ldexp(1.0, -113);
  for (std::int64_t row = 0; row < p.lse_elems(); ++row) {
    const int b = static_cast<int>(row / (std::int64_t(p.q_heads) * p.q_len));
    const int t = static_cast<int>(row % p.q_len);
    Quad sum(0), sum_q(0);
    std::int64_t n = 0;
    for (std::int64_t j = 0; j < p.window; ++j) {
      sum += Quad(probs[std::size_t(row * p.window + j)]);
      sum_q += probs_q[std::size_t(row * p.window + j)];
      n += in.attends(b, p.window_start(t) + j) ? 1 : 0;
    }
    ASSERT_LT(n, p.window);  // the mask removed keys from this row
    EXPECT_LE(static_cast<double>(abs(sum - 1)), gamma_n(n)) << "row " << row;
    EXPECT_LE(static_cast<double>(abs(sum_q - 1)), 2.0 * double(n) * u_quad) << "row " << row;
  }
}

// Scaling inside the softmax (qk unscaled, softmax logit_scale = scale) rounds the same product
// scale * dot once, like qk's own final multiply: results are bit-identical.
TEST(ReferenceInvariance, ScaleInsideSoftmaxMatchesScaledScores) {
  for (const double scale : {0.0, 0.3}) {
    Problem p = make_problem(1, 8, 2, 2, 200, 150, 128);
    p.scale = scale;
    const AttentionInputs in = make(p, Distribution::normal, 0.1);
    std::vector<double> lse_a, lse_b;
    const std::vector<double> a = ref::softmax<double>(in, ref::qk<double>(in, true), 1.0, &lse_a);
    const std::vector<double> b =
        ref::softmax<double>(in, ref::qk<double>(in, false), p.effective_scale(), &lse_b);
    EXPECT_TRUE(same_bits(a, b)) << "scale " << scale;
    EXPECT_TRUE(same_bits(lse_a, lse_b)) << "scale " << scale;
    std::vector<Quad> lse_qa, lse_qb;
    const std::vector<Quad> qa = ref::softmax<Quad>(in, ref::qk<Quad>(in, true), 1.0, &lse_qa);
    const std::vector<Quad> qb =
        ref::softmax<Quad>(in, ref::qk<Quad>(in, false), p.effective_scale(), &lse_qb);
    EXPECT_TRUE(qa == qb);
    EXPECT_TRUE(lse_qa == lse_qb);
  }
}

// The unfused path and the streaming one sum in different orders (and attention_output merges
// many chunks here), so they agree within the sum of their budgets, not bitwise.
TEST(ReferenceInvariance, AttentionMatchesAttentionOutput) {
  const Problem p = make_problem(1, 8, 1, 4, 20010, 20000);
  const AttentionInputs in = make(p, Distribution::normal, 0.1);
  ASSERT_GT(ref::blocking(p).splits, 1);
  ASSERT_GT(ref::blocking(p).max_merges(p), ref::blocking(p).splits);
  const ref::Trace<double> tr = ref::attention<double>(in);
  std::vector<double> out, lse;
  ref::attention_output<double>(in, out, lse);
  Fp64Budget budget = fp64_budget(in, tr);
  for (double& x : budget.out) x *= 2.0;
  for (double& x : budget.lse) x *= 2.0;
  const Check out_check = check_within(out, tr.out, budget.out);
  const Check lse_check = check_within(lse, tr.lse, budget.lse);
  EXPECT_EQ(out_check.violations, 0) << "worst error/budget " << out_check.worst_ratio;
  EXPECT_EQ(lse_check.violations, 0) << "worst error/budget " << lse_check.worst_ratio;
  EXPECT_FALSE(same_bits(out, tr.out));  // the orders do differ: the check above is not vacuous
}

// make_inputs stores the same logical data in every layout, and the reference sums in an order
// fixed by the problem alone: FP64 results must be bit-identical across layouts.
TEST(ReferenceInvariance, ResultsDoNotDependOnLayout) {
  const Problem p = make_problem(2, 8, 2, 3, 300, 250);
  auto spec = [](KvLayoutKind kind, int layers, int layer, std::int64_t capacity, int page_size,
                 int spare_pages) {
    KvLayoutSpec s;
    s.kind = kind;
    s.layers = layers;
    s.layer = layer;
    s.seq_capacity = capacity;
    s.page_size = page_size;
    s.spare_pages = spare_pages;
    s.page_seed = 9;
    return s;
  };
  const AttentionInputs base = make(p, Distribution::heavy_tailed, 0.2);
  const ref::Trace<double> want = ref::attention<double>(base);
  std::vector<double> want_out, want_lse;
  ref::attention_output<double>(base, want_out, want_lse);

  const KvLayoutSpec layouts[] = {
      spec(KvLayoutKind::bshd, 1, 0, 0, 16, 0),   spec(KvLayoutKind::paged, 1, 0, 0, 16, 0),
      spec(KvLayoutKind::paged, 1, 0, 0, 7, 5),   spec(KvLayoutKind::bhsd, 3, 2, 0, 16, 0),
      spec(KvLayoutKind::bhsd, 1, 0, 333, 16, 0), spec(KvLayoutKind::bshd, 2, 1, 320, 16, 0),
      spec(KvLayoutKind::paged, 3, 1, 0, 32, 3),
  };
  for (const KvLayoutSpec& s : layouts) {
    const AttentionInputs in = make(p, Distribution::heavy_tailed, 0.2, s);
    const ref::Trace<double> got = ref::attention<double>(in);
    std::vector<double> out, lse;
    ref::attention_output<double>(in, out, lse);
    EXPECT_TRUE(same_bits(got.scores, want.scores)) << s.tag();
    EXPECT_TRUE(same_bits(got.probs, want.probs)) << s.tag();
    EXPECT_TRUE(same_bits(got.lse, want.lse)) << s.tag();
    EXPECT_TRUE(same_bits(got.out, want.out)) << s.tag();
    EXPECT_TRUE(same_bits(out, want_out)) << s.tag();
    EXPECT_TRUE(same_bits(lse, want_lse)) << s.tag();
    if (s.layer != 0) {
      // Reading layer 0's slice of the same buffers (the wrong-pointer bug) must show.
      AttentionInputs wrong = in;
      KvLayoutSpec layer0 = s;
      layer0.layer = 0;
      wrong.layout = KvLayout(p, layer0);
      std::vector<double> wrong_out, wrong_lse;
      ref::attention_output<double>(wrong, wrong_out, wrong_lse);
      EXPECT_FALSE(same_bits(wrong_out, want_out)) << s.tag();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Masking and GQA.

// Masked keys get score -inf and probability 0, and carry no weight: poisoning their K and V
// with NaN changes nothing, bit for bit.
TEST(ReferenceMask, MaskedKeysGetZeroProbabilityAndNoWeight) {
  const Problem p = make_problem(2, 4, 2, 2, 200, 150);
  const AttentionInputs in = make(p, Distribution::normal, 0.3);
  const ref::Trace<double> tr = ref::attention<double>(in);
  std::vector<double> out, lse;
  ref::attention_output<double>(in, out, lse);

  AttentionInputs poisoned = in;
  std::int64_t masked = 0;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (int b = 0; b < p.batch; ++b)
    for (std::int64_t pos = 0; pos < p.seq_len; ++pos) {
      if (in.attends(b, pos)) continue;
      for (int kvh = 0; kvh < p.kv_heads; ++kvh)
        for (int d = 0; d < p.head_dim; ++d) {
          poisoned.k.set(in.layout.offset(b, kvh, pos, d), nan);
          poisoned.v.set(in.layout.offset(b, kvh, pos, d), nan);
        }
      for (int h = 0; h < p.q_heads; ++h)
        for (int t = 0; t < p.q_len; ++t) {
          const std::int64_t j = pos - p.window_start(t);
          if (j < 0 || j >= p.window) continue;
          ++masked;
          EXPECT_EQ(tr.scores[std::size_t(score_index(p, b, h, t, j))], -kInf);
          EXPECT_EQ(tr.probs[std::size_t(score_index(p, b, h, t, j))], 0.0);
        }
    }
  ASSERT_GT(masked, 0);

  const ref::Trace<double> tp = ref::attention<double>(poisoned);
  std::vector<double> out_p, lse_p;
  ref::attention_output<double>(poisoned, out_p, lse_p);
  EXPECT_TRUE(same_bits(tp.scores, tr.scores));
  EXPECT_TRUE(same_bits(tp.probs, tr.probs));
  EXPECT_TRUE(same_bits(tp.out, tr.out));
  EXPECT_TRUE(same_bits(out_p, out));
  EXPECT_TRUE(same_bits(lse_p, lse));

  // Without the mask the same data gives another output: the mask did act.
  AttentionInputs unmasked = in;
  unmasked.key_mask.clear();
  std::vector<double> out_u, lse_u;
  ref::attention_output<double>(unmasked, out_u, lse_u);
  EXPECT_FALSE(same_bits(out_u, out));

  // pv alone on the FP64 probabilities: sum over attended keys, n products and additions.
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.q_heads; ++h)
      for (int t = 0; t < p.q_len; ++t)
        for (int d = 0; d < p.head_dim; ++d) {
          Quad o(0);
          double weighted_abs = 0.0;
          std::int64_t n = 0;
          for (std::int64_t j = 0; j < p.window; ++j) {
            const std::int64_t pos = p.window_start(t) + j;
            if (!in.attends(b, pos)) continue;
            const double prob = tr.probs[std::size_t(score_index(p, b, h, t, j))];
            const double v = v_at(in, b, h / p.group(), pos, d);
            o += Quad(prob) * Quad(v);
            weighted_abs += std::fabs(prob * v);
            ++n;
          }
          const double got = tr.out[std::size_t(in.q_offset(b, t, h) + d)];
          ASSERT_LE(static_cast<double>(abs(Quad(got) - o)), gamma_n(n) * weighted_abs);
        }
}

// q heads 0-3 read kv head 0 and 4-7 read kv head 1. Negating kv head 1's V negates exactly the
// outputs of heads 4-7 (rounding is sign-symmetric); negating kv head 0's K negates exactly the
// scores of heads 0-3. Nothing else moves.
TEST(ReferenceGqa, KvHeadFeedsOnlyItsGroup) {
  const Problem p = make_problem(1, 8, 2, 2, 64, 48, 128, DType::bf16);
  const AttentionInputs in = make(p, Distribution::uniform);
  const ref::Trace<double> tr = ref::attention<double>(in);

  AttentionInputs flipped = in;
  for (std::int64_t pos = 0; pos < p.seq_len; ++pos)
    for (int d = 0; d < p.head_dim; ++d) {
      const std::int64_t v1 = in.layout.offset(0, 1, pos, d), k0 = in.layout.offset(0, 0, pos, d);
      flipped.v.set(v1, -in.v.get(v1));
      flipped.k.set(k0, -in.k.get(k0));
    }
  const ref::Trace<double> tf = ref::attention<double>(flipped);
  for (int h = 0; h < p.q_heads; ++h)
    for (int t = 0; t < p.q_len; ++t) {
      const bool group0 = h / p.group() == 0;
      for (std::int64_t j = 0; j < p.window; ++j) {
        const std::size_t at = std::size_t(score_index(p, 0, h, t, j));
        ASSERT_EQ(tf.scores[at], group0 ? -tr.scores[at] : tr.scores[at]) << "h" << h;
        if (!group0) {
          ASSERT_EQ(tf.probs[at], tr.probs[at]) << "h" << h;
        }
      }
      for (int d = 0; d < p.head_dim; ++d) {
        const std::size_t o = std::size_t(in.q_offset(0, t, h) + d);
        if (!group0) {
          ASSERT_EQ(tf.out[o], -tr.out[o]) << "h" << h;
        }
      }
    }
  // Group 0's probabilities do change (its scores were negated): the heads are not all alike.
  EXPECT_FALSE(same_bits(tf.probs, tr.probs));
}

TEST(ReferenceApi, RejectsMisSizedStageInputs) {
  const Problem p = make_problem(1, 2, 1, 1, 32, 16);
  const AttentionInputs in = make(p);
  const std::vector<double> short_logits(std::size_t(p.score_elems() - 1), 0.0);
  EXPECT_THROW(ref::softmax<double>(in, short_logits), std::invalid_argument);
  EXPECT_THROW(ref::pv<double>(in, short_logits), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// FP64 against Quad within the derived budget.

struct QuadCase {
  std::int64_t window;
  Distribution dist;
  double mask_fraction;
  int q_heads, kv_heads, q_len;
};

void PrintTo(const QuadCase& c, std::ostream* os) {
  *os << "window " << c.window << ", " << attnscope::to_string(c.dist) << ", mask "
      << c.mask_fraction << ", q_heads " << c.q_heads << ", kv_heads " << c.kv_heads << ", q_len "
      << c.q_len;
}

std::string case_name(const testing::TestParamInfo<QuadCase>& info) {
  const QuadCase& c = info.param;
  std::string s = "w" + std::to_string(c.window) + "_" + std::string(attnscope::to_string(c.dist)) +
                  "_qh" + std::to_string(c.q_heads) + "_kvh" + std::to_string(c.kv_heads) + "_q" +
                  std::to_string(c.q_len);
  if (c.mask_fraction > 0.0) s += "_masked";
  return s;
}

class Fp64VsQuad : public testing::TestWithParam<QuadCase> {};

TEST_P(Fp64VsQuad, WithinDerivedBudget) {
  const QuadCase& c = GetParam();
  const Problem p = make_problem(1, c.q_heads, c.kv_heads, c.q_len, c.window + 8, c.window, 128);
  const AttentionInputs in = make(p, c.dist, c.mask_fraction);
  const ref::Trace<Quad> exact = ref::attention<Quad>(in);
  const ref::Trace<double> tr = ref::attention<double>(in);
  std::vector<double> out, lse;
  ref::attention_output<double>(in, out, lse);
  const Fp64Budget budget = fp64_budget(in, exact);

  struct Item {
    const char* name;
    Check check;
  };
  const Item items[] = {
      {"scores", check_within(tr.scores, exact.scores, budget.score)},
      {"probs", check_within(tr.probs, exact.probs, budget.prob)},
      {"lse", check_within(tr.lse, exact.lse, budget.lse)},
      {"out", check_within(tr.out, exact.out, budget.out)},
      {"stream_lse", check_within(lse, exact.lse, budget.lse)},
      {"stream_out", check_within(out, exact.out, budget.out)},
  };
  for (const Item& item : items) {
    EXPECT_EQ(item.check.violations, 0)
        << item.name << ": worst error/budget " << item.check.worst_ratio;
    EXPECT_LE(item.check.rel_l2, item.check.rel_l2_budget) << item.name;
    std::printf("  %-10s rel_l2 %.3e (budget %.3e)  max_rel %.3e  worst error/budget %.3f\n",
                item.name, item.check.rel_l2, item.check.rel_l2_budget, item.check.max_rel,
                item.check.worst_ratio);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Windows, Fp64VsQuad,
    testing::Values(QuadCase{1, Distribution::normal, 0.0, 4, 2, 2},
                    QuadCase{17, Distribution::normal, 0.0, 4, 2, 2},
                    QuadCase{256, Distribution::normal, 0.0, 4, 2, 2},
                    QuadCase{1000, Distribution::normal, 0.0, 4, 2, 2},
                    QuadCase{17, Distribution::large_logits, 0.0, 4, 2, 2},
                    QuadCase{256, Distribution::large_logits, 0.25, 4, 2, 2},
                    QuadCase{1000, Distribution::large_logits, 0.0, 4, 2, 2},
                    QuadCase{256, Distribution::heavy_tailed, 0.0, 4, 2, 2},
                    QuadCase{1000, Distribution::heavy_tailed, 0.25, 4, 2, 2},
                    QuadCase{5000, Distribution::normal, 0.0, 1, 1, 1},    // two splits
                    QuadCase{4099, Distribution::uniform, 0.0, 8, 1, 4}),  // splits and chunks
    case_name);

// The budget has teeth: the FP64 output rounded to float (an FP32-accumulating reference would
// be off by at least that much) breaks it.
TEST(Fp64VsQuadControl, BudgetRejectsFp32Rounding) {
  const Problem p = make_problem(1, 4, 2, 2, 264, 256, 128);
  const AttentionInputs in = make(p);
  const ref::Trace<Quad> exact = ref::attention<Quad>(in);
  std::vector<double> out, lse;
  ref::attention_output<double>(in, out, lse);
  const Fp64Budget budget = fp64_budget(in, exact);
  ASSERT_EQ(check_within(out, exact.out, budget.out).violations, 0);
  for (double& x : out) x = double(float(x));
  const Check rounded = check_within(out, exact.out, budget.out);
  EXPECT_GT(rounded.violations, p.out_elems() / 2);
  EXPECT_GT(rounded.rel_l2, rounded.rel_l2_budget);
}

}  // namespace

// fp16 overflow of q.k: named with the largest exact dot product and where it is; none where
// every dot fits binary16, as in the suite's large-logit data.
TEST(Fp16Overflow, NamesTheLargestDotPastBinary16) {
  attnscope::Problem p;
  p.q_heads = 2;
  p.kv_heads = 1;
  p.seq_len = p.window = 4;
  std::vector<double> dots(static_cast<std::size_t>(p.score_elems()), 1.0);
  EXPECT_EQ(attnscope::fp16_overflow(p, dots), "");
  dots[3] = 65504.0;  // the largest finite binary16 value still fits
  EXPECT_EQ(attnscope::fp16_overflow(p, dots), "");
  dots[5] = -70000.0;
  const std::string why = attnscope::fp16_overflow(p, dots);
  EXPECT_EQ(why.rfind("fp16 overflow: |q.k| reaches 7e+04 at ", 0), 0u) << why;
  EXPECT_NE(why.find("65504"), std::string::npos) << why;

  attnscope::Problem large = attnscope::Problem{};
  large.q_heads = 8;
  large.kv_heads = 2;
  large.seq_len = 1003;
  large.window = 1000;
  large.accum = attnscope::Accum::fp16;
  attnscope::DataSpec data;
  data.dist = attnscope::Distribution::large_logits;
  const attnscope::AttentionInputs in =
      attnscope::make_inputs(large, attnscope::KvLayoutSpec{}, data);
  EXPECT_EQ(attnscope::fp16_overflow(large, ref::qk<double>(in, false)), "");
}

// Poisoned caches: every slot no query attends holds NaN or Inf, the attended values are those
// of the plain inputs, and the reference (which reads only the windows) gives the same result.
TEST(PoisonedCache, OnlyUnattendedSlotsArePoisonedAndTheReferenceIgnoresThem) {
  Problem p;
  p.q_heads = 4;
  p.kv_heads = 2;
  p.q_len = 4;
  p.window = 20;
  p.seq_len = 33;  // positions 0..9 attended by no query
  for (KvLayoutKind kind : {KvLayoutKind::bhsd, KvLayoutKind::paged}) {
    KvLayoutSpec l;
    l.kind = kind;
    l.layers = 2;
    l.layer = 1;
    if (kind == KvLayoutKind::paged) {
      l.page_size = 7;
      l.spare_pages = 5;
    } else {
      l.seq_capacity = 41;
    }
    DataSpec plain, poisoned;
    poisoned.poison_outside = true;
    const AttentionInputs a = attnscope::make_inputs(p, l, plain);
    const AttentionInputs b = attnscope::make_inputs(p, l, poisoned);
    // Attended slots equal, every other slot non-finite.
    std::vector<bool> attended(static_cast<std::size_t>(b.layout.storage_elems()), false);
    const attnscope::KvAddressing addr = b.layout.addressing();
    for (int bb = 0; bb < p.batch; ++bb)
      for (int h = 0; h < p.kv_heads; ++h)
        for (std::int64_t pos = p.window_start(0); pos < p.seq_len; ++pos)
          for (int d = 0; d < p.head_dim; ++d)
            attended[std::size_t(addr.offset(bb, h, pos) + d)] = true;
    std::int64_t poisoned_slots = 0;
    for (std::int64_t i = 0; i < b.layout.storage_elems(); ++i) {
      if (attended[std::size_t(i)]) {
        ASSERT_EQ(b.k.get(i), a.k.get(i));
        ASSERT_EQ(b.v.get(i), a.v.get(i));
      } else {
        ASSERT_FALSE(std::isfinite(b.k.get(i))) << i;
        ASSERT_FALSE(std::isfinite(b.v.get(i))) << i;
        ++poisoned_slots;
      }
    }
    EXPECT_GT(poisoned_slots, b.layout.storage_elems() / 2);  // the other layer alone is half
    const auto ra = ref::attention<double>(a), rb = ref::attention<double>(b);
    ASSERT_EQ(ra.out.size(), rb.out.size());
    for (std::size_t i = 0; i < ra.out.size(); ++i) ASSERT_EQ(ra.out[i], rb.out[i]) << i;
    for (std::size_t i = 0; i < ra.lse.size(); ++i) ASSERT_EQ(ra.lse[i], rb.lse[i]) << i;
  }
}

namespace {

// Left padding masks a prefix of each sequence (of a drawn length, some sequences padded);
// fully masked sequences mask every position; the others keep their queries' own positions.
TEST(ReferenceMask, LeftPaddingAndFullyMaskedSequences) {
  const Problem p = make_problem(6, 4, 2, 3, 300, 200);
  DataSpec data;
  data.left_padding = true;
  data.fully_masked = 2;
  const AttentionInputs in = attnscope::make_inputs(p, KvLayoutSpec{}, data);
  ASSERT_EQ(in.key_mask.size(), std::size_t(p.batch * p.seq_len));
  int padded = 0;
  for (int b = 0; b < p.batch; ++b) {
    std::int64_t attended = 0, first = -1;
    for (std::int64_t pos = 0; pos < p.seq_len; ++pos)
      if (in.attends(b, pos)) {
        ++attended;
        if (first < 0) first = pos;
      }
    if (b < data.fully_masked) {
      EXPECT_EQ(attended, 0) << b;
      continue;
    }
    // One masked prefix, then every position attended, the queries' own included.
    EXPECT_EQ(attended, p.seq_len - first) << b;
    EXPECT_LE(first, p.seq_len - p.q_len) << b;
    padded += first > 0 ? 1 : 0;
  }
  EXPECT_GT(padded, 0);
  DataSpec bad;
  bad.fully_masked = p.batch + 1;
  EXPECT_THROW(attnscope::make_inputs(p, KvLayoutSpec{}, bad), std::invalid_argument);
}

// A fully masked row has a defined result in every reference: probabilities 0, lse -inf and
// out 0; the bounds and the precision model stay finite there (no 0/0 in a budget).
TEST(ReferenceMask, FullyMaskedRowsGiveZeroOutputAndMinusInfLse) {
  const Problem p = make_problem(3, 4, 2, 4, 140, 130);
  DataSpec data;
  data.fully_masked = 1;
  data.mask_fraction = 0.3;
  const AttentionInputs in = attnscope::make_inputs(p, KvLayoutSpec{}, data);
  const ref::Trace<double> tr = ref::attention<double>(in);
  std::vector<double> out, lse;
  ref::attention_output<double>(in, out, lse);
  const ref::Trace<Quad> tq = ref::attention<Quad>(in);
  attnscope::bounds::StageFormats f;
  const attnscope::bounds::ElementBounds eb = attnscope::bounds::attention_bounds(in, f, f, f);
  std::vector<double> model_out, model_lse;
  attnscope::model::model_decode(in, attnscope::Accum::fp16, attnscope::SummationOrder{}, 4, 37,
                                 model_out, model_lse, 1);
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.q_heads; ++h)
      for (int t = 0; t < p.q_len; ++t) {
        const std::size_t r = std::size_t(row_index(p, b, h, t));
        for (int d = 0; d < p.head_dim; ++d) {
          const std::size_t o = std::size_t(in.q_offset(b, t, h) + d);
          ASSERT_TRUE(std::isfinite(eb.probabilistic[o]) && std::isfinite(eb.deterministic[o]));
          ASSERT_TRUE(std::isfinite(model_out[o]));
          if (b == 0) {
            ASSERT_EQ(tr.out[o], 0.0);
            ASSERT_EQ(out[o], 0.0);
            ASSERT_EQ(static_cast<double>(tq.out[o]), 0.0);
            ASSERT_EQ(model_out[o], 0.0);
          } else {
            ASSERT_NE(tr.out[o], 0.0);
          }
        }
        if (b == 0) {
          EXPECT_EQ(tr.lse[r], -kInf);
          EXPECT_EQ(lse[r], -kInf);
          EXPECT_EQ(model_lse[r], -kInf);
          for (std::int64_t j = 0; j < p.window; ++j) {
            EXPECT_EQ(tr.scores[std::size_t(score_index(p, b, h, t, j))], -kInf);
            EXPECT_EQ(tr.probs[std::size_t(score_index(p, b, h, t, j))], 0.0);
          }
        } else {
          EXPECT_TRUE(std::isfinite(tr.lse[r]));
        }
      }
}

// negative_logits: every logit lies near -6e4, all of a row within a few units of each other, so
// no row is one-hot; the dots are exact in binary32 and pass binary16's range.
TEST(NegativeLogits, EveryLogitBelowMinus5e4AndTheDotsExactInBinary32) {
  for (int d : {64, 128, 256}) {
    const Problem p = make_problem(2, 4, 2, 2, 300, 299, d);
    const AttentionInputs in = make(p, Distribution::negative_logits);
    const std::vector<double> dots = ref::qk<double>(in, false);
    const std::vector<double> scores = ref::qk<double>(in, true);
    for (std::size_t i = 0; i < dots.size(); ++i) {
      ASSERT_EQ(double(float(dots[i])), dots[i]) << d << " " << i;
      ASSERT_LT(scores[i], -5e4) << d << " " << i;
      ASSERT_GT(scores[i], -7e4) << d << " " << i;
    }
    for (std::int64_t row = 0; row < p.lse_elems(); ++row) {
      const auto first = scores.begin() + row * p.window;
      const auto [lo, hi] = std::minmax_element(first, first + p.window);
      EXPECT_GT(*hi - *lo, 1.0) << d;    // the softmax is not uniform
      EXPECT_LT(*hi - *lo, 100.0) << d;  // nor one-hot
    }
    Problem p16 = p;
    p16.accum = attnscope::Accum::fp16;
    EXPECT_NE(attnscope::fp16_overflow(p16, dots), "") << d;
    const ref::Trace<double> tr = ref::attention<double>(in);
    for (double x : tr.out) ASSERT_TRUE(std::isfinite(x));
    for (double x : tr.lse) ASSERT_LT(x, -5e4);
  }
}

}  // namespace

namespace {

// Ragged lengths: the first sequence the longest, the others drawn within [max(min, q_len),
// seq_len], the same for the same seed, short and long ones both present.
TEST(Ragged, LengthsAreSeededAndWithinRange) {
  Problem p = make_problem(64, 4, 1, 2, 32768, 32767);
  const auto a = attnscope::ragged_lengths(p, 256, 7), b = attnscope::ragged_lengths(p, 256, 7);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, attnscope::ragged_lengths(p, 256, 8));
  ASSERT_EQ(a.size(), 64u);
  EXPECT_EQ(a[0], p.seq_len);
  int short_ones = 0, long_ones = 0;
  for (std::int64_t len : a) {
    EXPECT_GE(len, 256);
    EXPECT_LE(len, p.seq_len);
    short_ones += len < 2048 ? 1 : 0;
    long_ones += len > 8192 ? 1 : 0;
  }
  // Log-uniform over 256..32768: 3/7 of them below 2048, 2/7 above 8192.
  EXPECT_GT(short_ones, 12);
  EXPECT_GT(long_ones, 6);
  DataSpec bad;
  Problem small = make_problem(2, 4, 1, 1, 100, 100);
  bad.ragged_min_len = 101;
  EXPECT_THROW(attnscope::make_inputs(small, KvLayoutSpec{}, bad), std::invalid_argument);
}

// A ragged batch's sequence b gives what a batch of that one sequence gives: the same output and
// lse, and the same scores and probabilities where the window lies inside the sequence (-inf and
// 0 before its start). Checked on a paged cache, with windows cut at position 0 (q_len 1) and
// sliding windows inside the sequence (q_len 3).
TEST(Ragged, EachSequenceMatchesItsOwnProblem) {
  for (int q_len : {1, 3}) {
    const std::int64_t seq_len = 700, window = q_len == 1 ? 700 : 150;
    const Problem p = make_problem(5, 4, 2, q_len, seq_len, window);
    KvLayoutSpec l;
    l.kind = KvLayoutKind::paged;
    l.page_size = 16;
    l.spare_pages = 3;
    DataSpec data;
    data.ragged_min_len = q_len == 1 ? 20 : 160;
    data.poison_outside = true;
    const AttentionInputs in = attnscope::make_inputs(p, l, data);
    ASSERT_EQ(in.seq_lens.size(), 5u);
    const ref::Trace<double> tr = ref::attention<double>(in);
    std::vector<double> out, lse;
    ref::attention_output<double>(in, out, lse);
    const attnscope::KvAddressing addr = in.layout.addressing();
    for (int b = 0; b < p.batch; ++b) {
      const std::int64_t len = in.seq_len_of(b);
      Problem one = p;
      one.batch = 1;
      one.seq_len = len;
      one.window = std::min(window, len - q_len + 1);
      AttentionInputs s = attnscope::make_inputs(one, KvLayoutSpec{}, DataSpec{});
      for (int t = 0; t < q_len; ++t)
        for (int h = 0; h < p.q_heads; ++h)
          for (int d = 0; d < p.head_dim; ++d)
            s.q.set(s.q_offset(0, t, h) + d, in.q.get(in.q_offset(b, t, h) + d));
      const attnscope::KvAddressing sa = s.layout.addressing();
      for (int h = 0; h < p.kv_heads; ++h)
        for (std::int64_t pos = 0; pos < len; ++pos)
          for (int d = 0; d < p.head_dim; ++d) {
            s.k.set(sa.offset(0, h, pos) + d, in.k.get(addr.offset(b, h, pos) + d));
            s.v.set(sa.offset(0, h, pos) + d, in.v.get(addr.offset(b, h, pos) + d));
          }
      const ref::Trace<double> ts = ref::attention<double>(s);
      for (int h = 0; h < p.q_heads; ++h)
        for (int t = 0; t < q_len; ++t) {
          const double l1 = tr.lse[std::size_t(row_index(p, b, h, t))];
          const double l2 = ts.lse[std::size_t(row_index(one, 0, h, t))];
          ASSERT_NEAR(l1, l2, 1e-12 * std::fabs(l2)) << b << " " << h << " " << t;
          EXPECT_NEAR(lse[std::size_t(row_index(p, b, h, t))], l2, 1e-12 * std::fabs(l2));
          for (int d = 0; d < p.head_dim; ++d) {
            const double o2 = ts.out[std::size_t(s.q_offset(0, t, h) + d)];
            ASSERT_NEAR(tr.out[std::size_t(in.q_offset(b, t, h) + d)], o2, 1e-12) << b;
            ASSERT_NEAR(out[std::size_t(in.q_offset(b, t, h) + d)], o2, 1e-12) << b;
          }
          // Column j of the ragged row is the sequence's position len - q_len + t + 1 - window
          // + j; the one-sequence problem's column j2 is its position
          // len - q_len + t + 1 - one.window + j2.
          for (std::int64_t j = 0; j < window; ++j) {
            const std::int64_t pos = len - q_len + t + 1 - window + j;
            const double sc = tr.scores[std::size_t(score_index(p, b, h, t, j))];
            const double pr = tr.probs[std::size_t(score_index(p, b, h, t, j))];
            const std::int64_t j2 = pos - (len - q_len + t + 1 - one.window);
            if (pos < 0) {
              ASSERT_EQ(sc, -kInf);
              ASSERT_EQ(pr, 0.0);
            } else if (j2 >= 0) {
              ASSERT_EQ(sc, ts.scores[std::size_t(score_index(one, 0, h, t, j2))]);
              ASSERT_NEAR(pr, ts.probs[std::size_t(score_index(one, 0, h, t, j2))], 1e-13);
            }
          }
        }
    }
  }
}

}  // namespace

namespace {

// The problem and inputs of the NaN-inside-the-window tests (the NaN in V, or in K), with the
// reference's output and log-sum-exp.
DataSpec nan_spec(bool in_key) {
  DataSpec d;
  d.nan_in_window = true;
  d.nan_in_key = in_key;
  return d;
}
struct NanCase {
  Problem p = make_problem(2, 4, 2, 3, 50, 40);
  AttentionInputs in;
  std::vector<double> out, lse;
  explicit NanCase(bool in_key) : in(attnscope::make_inputs(p, KvLayoutSpec{}, nan_spec(in_key))) {
    ref::attention_output<double>(in, out, lse);
  }
  // Asserts that out is NaN exactly where want(b, h, channel) holds; returns how many are.
  template <class Want>
  std::int64_t nans_exactly_where(Want want) const {
    std::int64_t nans = 0;
    for (int b = 0; b < p.batch; ++b)
      for (int t = 0; t < p.q_len; ++t)
        for (int h = 0; h < p.q_heads; ++h)
          for (int dd = 0; dd < p.head_dim; ++dd) {
            const bool w = want(b, h, dd);
            const double x = out[std::size_t(in.q_offset(b, t, h) + dd)];
            EXPECT_EQ(std::isnan(x), w) << b << " " << t << " " << h << " " << dd;
            nans += w ? 1 : 0;
          }
    return nans;
  }
};

// NaN inside the window reaches exactly channel 0 of every query head of KV head 0 in sequence 0
// (the reference's output), and a result where it did not arrive fails the judge as a NaN lost.
TEST(NanInWindow, ReachesExactlyItsOutputsAndALostNanFails) {
  const NanCase nc(false);
  const Problem& p = nc.p;
  const std::vector<double>&out = nc.out, &lse = nc.lse;
  const std::int64_t nans = nc.nans_exactly_where(
      [&](int b, int h, int dd) { return b == 0 && h / p.group() == 0 && dd == 0; });
  for (double x : lse) ASSERT_TRUE(std::isfinite(x));  // V does not reach lse
  EXPECT_EQ(nans, p.q_len * p.group());
  // A result equal to the reference but finite where it is NaN: the NaN was lost.
  std::vector<double> lost = out;
  for (double& x : lost)
    if (std::isnan(x)) x = 0.0;
  const std::vector<double> budget(out.size(), 1.0);
  const attnscope::Check c = attnscope::judge(p, "out", "out_", attnscope::TensorShape::out, lost,
                                              out, budget, DType::fp16);
  EXPECT_FALSE(c.pass);
  EXPECT_EQ(c.metrics.nan_lost, nans);
  EXPECT_TRUE(
      attnscope::judge(p, "out", "out_", attnscope::TensorShape::out, out, out, budget, DType::fp16)
          .pass);
}

// The NaN in K (nan_in_key): every channel and the log-sum-exp of every query head of KV head 0
// in sequence 0 are NaN, and nothing else; nan_in_key alone is refused.
TEST(NanInWindow, InKeyReachesEveryOutputOfItsHeadsAndTheirLse) {
  const NanCase nc(true);
  const Problem& p = nc.p;
  const std::vector<double>& lse = nc.lse;
  const std::int64_t nans =
      nc.nans_exactly_where([&](int b, int h, int) { return b == 0 && h / p.group() == 0; });
  EXPECT_EQ(nans, std::int64_t(p.q_len) * p.group() * p.head_dim);
  std::int64_t lse_nans = 0;
  for (double x : lse) lse_nans += std::isnan(x) ? 1 : 0;
  EXPECT_EQ(lse_nans, std::int64_t(p.q_len) * p.group());
  DataSpec alone;
  alone.nan_in_key = true;
  EXPECT_THROW(attnscope::make_inputs(p, KvLayoutSpec{}, alone), std::invalid_argument);
}

// q_spread: each element is the plain draw x 2^(6 ((h % 5) - 2)), channels d % 5 == 4 a further
// 2^-40 down, exactly (bf16: a power of two changes no significant bit); binary16 inputs are
// refused.
TEST(QSpread, ScalesHeadsAndChannelsByPowersOfTwo) {
  Problem p;
  p.batch = 2;
  p.q_heads = 8;
  p.kv_heads = 2;
  p.q_len = 2;
  p.window = 16;
  p.seq_len = 17;
  p.head_dim = 64;
  p.input = p.output = DType::bf16;
  DataSpec plain;
  DataSpec spread = plain;
  spread.q_spread = true;
  const AttentionInputs a = attnscope::make_inputs(p, KvLayoutSpec{}, plain);
  const AttentionInputs b = attnscope::make_inputs(p, KvLayoutSpec{}, spread);
  for (int bb = 0; bb < p.batch; ++bb)
    for (int t = 0; t < p.q_len; ++t)
      for (int h = 0; h < p.q_heads; ++h)
        for (int d = 0; d < p.head_dim; ++d) {
          const std::int64_t i = a.q_offset(bb, t, h) + d;
          const int k = 6 * (h % 5 - 2) - (d % 5 == 4 ? 40 : 0);
          ASSERT_EQ(b.q.get(i), std::ldexp(a.q.get(i), k))
              << bb << " " << t << " " << h << " " << d;
        }
  EXPECT_EQ(a.k.to_double(), b.k.to_double());
  EXPECT_EQ(a.v.to_double(), b.v.to_double());
  p.input = p.output = DType::fp16;
  EXPECT_THROW(attnscope::make_inputs(p, KvLayoutSpec{}, spread), std::invalid_argument);
}

}  // namespace
