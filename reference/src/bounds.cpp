#include "attnscope/reference/bounds.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "attnscope/core/parallel.hpp"
#include "attnscope/reference/stages.hpp"

// Conventions of every bound below.
//  - Standard model with gradual underflow (Higham, sec. 2.2): fl(a op b) = (a op b)(1 + d) + e,
//    |d| <= u, |e| <= eta = half the subnormal spacing of the format. Sums that underflow are
//    exact, so eta enters once per product or quotient only. Overflow is not modelled.
//  - Operands are converted to the accumulation format before use, as a kernel must; the
//    conversion error is evaluated exactly on the data (zero for the usual format pairs).
//  - A dot product or sum whose longest rounding chain is `depth` satisfies
//    |fl(sum) - sum| <= gamma_depth * sum |terms| in any order (Higham, sec. 3.1 and 4.2);
//    with fused multiply-adds the chain length is the number of roundings, not of operations.
//  - Storing an accumulation-format value in the output format is exact when the output format
//    holds every value of the accumulation format (fp16 -> fp16/fp32, fp32 -> fp32).

namespace attnscope::bounds {

namespace {

using std::int64_t;

constexpr double kInf = std::numeric_limits<double>::infinity();

// Half the subnormal spacing: the largest absolute error of a rounding that underflows.
double underflow_eta(DType t) {
  return 0.5 * ulp_of(t, 0.0);
}

struct Rounding {
  double u = 0.0;
  double eta = 0.0;
};

Rounding output_rounding(DType out, Accum acc) {
  const bool exact = acc == Accum::fp16 ? out != DType::bf16 : out == DType::fp32;
  if (exact) return {};
  return {unit_roundoff(out), underflow_eta(out)};
}

// Adds the output rounding to a bound err of a result of magnitude |value|: the stored result
// is within u_out |computed| + eta_out of the computed one, and |computed| <= |value| + err.
double with_output(double err, double value, const Rounding& out) {
  if (out.u == 0.0) return err;  // exact store; keeps an infinite err from turning into NaN
  return err + out.u * (std::fabs(value) + err) + out.eta;
}

// g * x with 0 * inf = 0: an infinite gamma (n u >= 1) says nothing about zero terms.
double times(double g, double x) {
  return x == 0.0 ? 0.0 : g * x;
}

int64_t chain_length(const StageFormats& f, int64_t n) {
  return f.depth > 0 ? f.depth : n;
}

bool is_power_of_two(double x) {
  int e = 0;
  return x != 0.0 && std::isfinite(x) && std::fabs(std::frexp(x, &e)) == 0.5;
}

void check_size(std::size_t got, int64_t want, const char* what) {
  if (got != static_cast<std::size_t>(want))
    throw std::invalid_argument(std::string(what) + " has " + std::to_string(got) +
                                " elements, expected " + std::to_string(want));
}

// The deterministic bound holds always, so the probabilistic variant never needs more: gamma~
// exceeds gamma for chains shorter than about lambda^2.
double probabilistic_gamma(int64_t n, double u, double lambda) {
  return std::min(gamma(n, u), gamma_tilde(n, u, lambda));
}

// Threads pay off once a chunk carries this many scalar operations.
constexpr int64_t kWorkPerChunk = 1 << 15;
int64_t min_chunk(int64_t work_per_item) {
  return std::max<int64_t>(1, kWorkPerChunk / std::max<int64_t>(1, work_per_item));
}

// Both variants of the softmax bound from one pass over the data; err_det / err_prob are the
// absolute logit errors each variant propagates (empty: exact logits).
ElementBounds softmax_impl(const AttentionInputs& in, const std::vector<double>& logits,
                           double logit_scale, const std::vector<double>& err_det,
                           const std::vector<double>& err_prob, const StageFormats& f,
                           double exp_ulps) {
  const Problem& p = in.problem;
  const int64_t W = p.window, rows = p.lse_elems();
  check_size(logits.size(), p.score_elems(), "softmax_bounds logits");
  if (!err_det.empty()) check_size(err_det.size(), p.score_elems(), "softmax_bounds logit_error");
  if (!err_prob.empty()) check_size(err_prob.size(), p.score_elems(), "softmax_bounds logit_error");

  const DType acc_t = accum_dtype(f.accum);
  const double u = unit_roundoff(f.accum), eta = underflow_eta(acc_t);
  const int64_t depth = chain_length(f, W);
  const double g_det = bounds::gamma(depth, u), g_prob = probabilistic_gamma(depth, u, f.lambda);
  const Rounding out = output_rounding(f.output, f.accum);
  const double c = logit_scale, c_acc = round_to(acc_t, c);
  const bool scale_exact = is_power_of_two(c_acc);
  // An exp within exp_ulps ulps: one ulp is at most 2u relative, and at most 2 eta absolute
  // where the result is subnormal.
  const double exp_rel = 2.0 * exp_ulps * u, exp_abs = 2.0 * exp_ulps * eta;
  // The kernel may divide, or multiply by a rounded reciprocal: two roundings cover both.
  const double div_rel = (1.0 + u) * (1.0 + u);

  ElementBounds r;
  r.deterministic.assign(logits.size(), 0.0);
  r.probabilistic.assign(logits.size(), 0.0);

  parallel_for(
      rows,
      [&](int64_t r0, int64_t r1) {
        // Per-row scratch, [window] each.
        std::vector<double> x(static_cast<std::size_t>(W)), a(static_cast<std::size_t>(W)),
            y(static_cast<std::size_t>(W)), pi(static_cast<std::size_t>(W)),
            eps(static_cast<std::size_t>(W));
        std::vector<char> live(static_cast<std::size_t>(W));
        for (int64_t row = r0; row < r1; ++row) {
          const auto [b, h, t] = p.score_row(row);
          (void)h;
          const int64_t start = p.window_start(t), base = row * W;
          const double* l = logits.data() + base;

          // Exact shifted logits of the given (centre) logits.
          double m = -kInf;
          int64_t n_live = 0;
          for (int64_t j = 0; j < W; ++j) {
            const std::size_t k = static_cast<std::size_t>(j);
            live[k] = in.attends(b, start + j) && l[j] != -kInf;
            if (!live[k]) continue;
            ++n_live;
            x[k] = c * l[j];
            m = std::max(m, x[k]);
          }
          if (n_live == 0) continue;
          double s = 0.0;
          for (int64_t j = 0; j < W; ++j) {
            const std::size_t k = static_cast<std::size_t>(j);
            if (live[k]) s += (y[k] = std::exp(x[k] - m));
          }
          for (int64_t j = 0; j < W; ++j)
            if (live[static_cast<std::size_t>(j)]) y[static_cast<std::size_t>(j)] /= s;

          for (int variant = 0; variant < 2; ++variant) {
            const std::vector<double>& err = variant == 0 ? err_det : err_prob;
            const double g = variant == 0 ? g_det : g_prob;
            std::vector<double>& dst = variant == 0 ? r.deterministic : r.probabilistic;

            // a_j >= |x^_j - c l'_j|: the rounding error of the scaled logit the kernel forms
            // from the logit l'_j it received (conversion of logit and scale to the
            // accumulation format, then a rounded multiply, exact for a power-of-two scale).
            // Received logits within dl of the given ones are in an unknown format, so their
            // conversion is bounded by u |l'| + eta rather than evaluated.
            double amax = 0.0;
            for (int64_t j = 0; j < W; ++j) {
              const std::size_t k = static_cast<std::size_t>(j);
              if (!live[k]) continue;
              const double dl = err.empty() ? 0.0 : err[base + k];
              const double l_abs = std::fabs(l[j]) + dl;
              const double conv =
                  dl == 0.0 ? std::fabs(round_to(acc_t, l[j]) - l[j]) : u * l_abs + eta;
              a[k] = std::fabs(c_acc) * conv + std::fabs(c_acc - c) * l_abs +
                     (scale_exact ? 0.0 : u * std::fabs(c_acc) * (l_abs + conv) + eta);
              amax = std::max(amax, a[k]);
            }

            // Propagated logit error, exact rather than first order: logits off by delta_j with
            // |delta_j| <= dx_j give y'_i / y_i = exp(delta_i) / sum_j y_j exp(delta_j) (the max
            // cancels), so |y'_i / y_i - 1| <= pi_i =
            // max(e^dx_i / sum_j y_j e^-dx_j - 1, 1 - e^-dx_i / sum_j y_j e^dx_j).
            double sum_up = 0.0, sum_dn = 0.0, err_max = 0.0;
            for (int64_t j = 0; j < W; ++j) {
              const std::size_t k = static_cast<std::size_t>(j);
              if (!live[k]) continue;
              const double dx = err.empty() ? 0.0 : std::fabs(c) * err[base + k];
              err_max = std::max(err_max, dx);
              sum_up += y[k] * std::exp(dx);
              sum_dn += y[k] * std::exp(-dx);
            }
            for (int64_t j = 0; j < W; ++j) {
              const std::size_t k = static_cast<std::size_t>(j);
              if (!live[k]) continue;
              const double dx = err.empty() ? 0.0 : std::fabs(c) * err[base + k];
              pi[k] = err.empty()
                          ? 0.0
                          : std::max(std::exp(dx) / sum_dn - 1.0, 1.0 - std::exp(-dx) / sum_up);
            }

            // Relative error eps_j of each e^_j = exp(t^_j): the shifted argument is off by the
            // scaled-logit errors of j and of the max, the rounded subtraction (|t| u; a
            // subtraction that underflows is exact) and, when the kernel received perturbed
            // logits, by their error; exp(t + dt) = exp(t) exp(dt). The weighted mean
            // E = sum_j y_j eps_j is the relative error the numerator errors put on the sum,
            // with weights taken at the perturbed logits (y_j (1 + pi_j) bounds them).
            double e_mean = 0.0;
            for (int64_t j = 0; j < W; ++j) {
              const std::size_t k = static_cast<std::size_t>(j);
              if (!live[k]) continue;
              const double dx = err.empty() ? 0.0 : std::fabs(c) * err[base + k];
              const double t_abs = std::fabs(x[k] - m) + dx + err_max;
              const double dt = (a[k] + amax) * (1.0 + u) + u * t_abs;
              const double growth = std::expm1(dt);
              eps[k] = growth + (1.0 + growth) * exp_rel;
              e_mean += y[k] * (1.0 + pi[k]) * eps[k];
            }
            // The sum: S^ = (1 + theta) sum_j e^_j with |theta| <= gamma (all terms >= 0), and
            // sum_j e^_j within S (1 +- E) +- n exp_abs; S >= 1 because the max term is
            // exp(0) = 1. So S^ / S lies in [1 + lo, 1 + hi].
            const double under = double(n_live) * exp_abs;
            const double lo = (1.0 - g) * (1.0 - e_mean - under) - 1.0;
            const double hi = (1.0 + g) * (1.0 + e_mean + under) - 1.0;
            for (int64_t j = 0; j < W; ++j) {
              const std::size_t k = static_cast<std::size_t>(j);
              if (!live[k]) continue;
              double bound = kInf;
              if (1.0 + lo > 0.0 && std::isfinite(g)) {
                // e^_i / S^ against y_i: relative rho, plus the numerator's underflow.
                const double rho =
                    std::max((1.0 + eps[k]) / (1.0 + lo) - 1.0, 1.0 - (1.0 - eps[k]) / (1.0 + hi));
                const double rounding =
                    y[k] * ((1.0 + rho) * div_rel - 1.0) + exp_abs / (1.0 + lo) * div_rel + eta;
                // Against the exact softmax of the exact logits: the rounding bound holds at the
                // perturbed logits, where y is at most y (1 + pi).
                bound = rounding * (1.0 + pi[k]) + y[k] * pi[k];
                bound = with_output(bound, y[k], out);
              }
              dst[base + k] = bound;
            }
          }
        }
      },
      min_chunk(8 * W));
  return r;
}

// Every value of `from` is a value of `to` (the conversion is exact and can be skipped).
bool exact_in(DType from, DType to) {
  return from == to || to == DType::fp32 || (from == DType::fp16 && to == DType::fp16);
}

// Both variants of the P.V bound in one pass; dp_det / dp_prob as err_* above.
ElementBounds pv_impl(const AttentionInputs& in, const std::vector<double>& probs,
                      const std::vector<double>& dp_det, const std::vector<double>& dp_prob,
                      const StageFormats& f) {
  const Problem& p = in.problem;
  const int D = p.value_dim(), group = p.group();
  const int64_t W = p.window;
  check_size(probs.size(), p.score_elems(), "pv_bounds probs");
  if (!dp_det.empty()) check_size(dp_det.size(), p.score_elems(), "pv_bounds prob_error");
  if (!dp_prob.empty()) check_size(dp_prob.size(), p.score_elems(), "pv_bounds prob_error");

  const DType acc_t = accum_dtype(f.accum);
  const double u = unit_roundoff(f.accum), eta = underflow_eta(acc_t);
  const int64_t depth = chain_length(f, W);
  const double g_det = bounds::gamma(depth, u), g_prob = probabilistic_gamma(depth, u, f.lambda);
  const Rounding out = output_rounding(f.output, f.accum);
  const KvAddressing addr = in.layout.addressing();
  const bool v_exact = exact_in(p.input, acc_t);  // V converts to the accumulation format exactly

  ElementBounds r;
  r.deterministic.assign(static_cast<std::size_t>(p.out_elems()), 0.0);
  r.probabilistic.assign(static_cast<std::size_t>(p.out_elems()), 0.0);

  // Work items: (query row, block of v_dim), so one long row still spreads over threads.
  constexpr int kBlock = 32;
  const int blocks = (D + kBlock - 1) / kBlock;
  const int64_t rows = p.lse_elems();  // [batch, q_heads, q_len]
  parallel_for(
      rows * blocks,
      [&](int64_t i0, int64_t i1) {
        // Per output element of the block: sum p v, and for each variant the input error
        // sum |p~ v~ - p v| and the magnitude sum |p~ v~| the accumulation acts on.
        double exact[kBlock], in_err[2][kBlock], mag[2][kBlock];
        for (int64_t item = i0; item < i1; ++item) {
          const int64_t row = item / blocks;
          const int d0 = static_cast<int>(item % blocks) * kBlock, d1 = std::min(D, d0 + kBlock);
          const auto [b, h, t] = p.score_row(row);
          const int64_t start = p.window_start(t), base = row * W;
          std::fill(std::begin(exact), std::end(exact), 0.0);
          for (auto& e : in_err) std::fill(std::begin(e), std::end(e), 0.0);
          for (auto& e : mag) std::fill(std::begin(e), std::end(e), 0.0);
          for (int64_t j = 0; j < W; ++j) {
            if (!in.attends(b, start + j)) continue;  // probability 0, V never read
            const std::size_t k = static_cast<std::size_t>(base + j);
            const double pj = probs[k];
            // |p~ - p| and |p~| for the probability the kernel multiplies (converted to the
            // accumulation format). Exact probabilities: the conversion error itself. Perturbed
            // ones (|p^ - p| <= dp) in an unknown format: dp plus a worst-case conversion.
            double p_dev[2], p_mag[2];
            for (int v = 0; v < 2; ++v) {
              const std::vector<double>& dp = v == 0 ? dp_det : dp_prob;
              if (dp.empty()) {
                const double pa = round_to(acc_t, pj);
                p_dev[v] = std::fabs(pa - pj);
                p_mag[v] = std::fabs(pa);
              } else {
                const double hi = std::fabs(pj) + dp[k];
                p_dev[v] = dp[k] + u * hi + eta;
                p_mag[v] = hi * (1.0 + u) + eta;
              }
            }
            const int64_t off = in.kv_offset(addr, b, h / group, start + j);
            for (int d = d0; d < d1; ++d) {
              const double vj = in.v.get(off + d), vj_acc = v_exact ? vj : round_to(acc_t, vj);
              const double va = std::fabs(vj_acc), dv = std::fabs(vj_acc - vj);
              const int i = d - d0;
              exact[i] += pj * vj;
              for (int v = 0; v < 2; ++v) {
                // An unbounded probability error (inf) times a zero V element adds nothing.
                in_err[v][i] += times(p_dev[v], va) + std::fabs(pj) * dv;
                mag[v][i] += times(p_mag[v], va);
              }
            }
          }
          for (int d = d0; d < d1; ++d) {
            const int i = d - d0;
            const std::size_t o = static_cast<std::size_t>(in.out_offset(b, t, h) + d);
            for (int v = 0; v < 2; ++v) {
              const double g = v == 0 ? g_det : g_prob;
              // Accumulation, then W fused multiply-adds that may each underflow by eta.
              double e = in_err[v][i] + times(g, mag[v][i]) + double(W) * eta * (1.0 + g);
              e = with_output(e, exact[i], out);
              (v == 0 ? r.deterministic : r.probabilistic)[o] = e;
            }
          }
        }
      },
      min_chunk(W * kBlock));
  return r;
}

}  // namespace

double gamma(std::int64_t n, double u) {
  if (n <= 0) return 0.0;
  const double nu = double(n) * u;
  return nu >= 1.0 ? kInf : nu / (1.0 - nu);
}

double gamma_tilde(std::int64_t n, double u, double lambda) {
  if (n <= 0) return 0.0;
  const double nd = double(n);
  return std::expm1(lambda * std::sqrt(nd) * u + nd * u * u / (1.0 - u));
}

double hm_confidence(std::int64_t n, double u, double lambda) {
  const double q = 2.0 * double(std::max<std::int64_t>(n, 0)) *
                   std::exp(-lambda * lambda * (1.0 - u) * (1.0 - u) / 2.0);
  return std::clamp(1.0 - q, 0.0, 1.0);
}

ElementBounds qk_bounds(const AttentionInputs& in, const StageFormats& f, bool apply_scale) {
  const Problem& p = in.problem;
  const int D = p.head_dim, group = p.group();
  const int64_t W = p.window;
  const DType acc_t = accum_dtype(f.accum);
  const double u = unit_roundoff(f.accum), eta = underflow_eta(acc_t);
  const int64_t depth = chain_length(f, D);
  const double g_det = gamma(depth, u), g_prob = probabilistic_gamma(depth, u, f.lambda);
  const Rounding out = output_rounding(f.output, f.accum);
  const double c = apply_scale ? p.effective_scale() : 1.0;
  const double c_acc = round_to(acc_t, c);
  const KvAddressing addr = in.layout.addressing();
  const bool k_exact = exact_in(p.input, acc_t);  // K converts to the accumulation format exactly

  // q in double and in the accumulation format: [batch, q_len, q_heads, head_dim]. Where q enters
  // as binary16 under a power of two a query (f.q_binary16_scaled), q_acc is that value scaled
  // back, and row_down[row] its 2^-e, by which the dot's underflow is scaled.
  std::vector<double> q(static_cast<std::size_t>(p.q_elems())), q_acc(q.size());
  for (std::size_t i = 0; i < q.size(); ++i) {
    q[i] = in.q.get(static_cast<int64_t>(i));
    q_acc[i] = round_to(acc_t, q[i]);
  }
  std::vector<double> row_down(q.size() / static_cast<std::size_t>(D), 1.0);
  if (f.q_binary16_scaled) {
    for (std::size_t row = 0; row < row_down.size(); ++row) {
      const double* qr = q.data() + row * static_cast<std::size_t>(D);
      double top = 0.0;
      for (int d = 0; d < D; ++d)
        if (std::isfinite(qr[d])) top = std::max(top, std::fabs(qr[d]));
      const int E = top >= 0x1p-126 ? std::ilogb(top) + 127 : 0;
      const int e = std::min(126, 142 - E);
      row_down[row] = std::ldexp(1.0, -e);
      for (int d = 0; d < D; ++d)
        q_acc[row * static_cast<std::size_t>(D) + static_cast<std::size_t>(d)] =
            std::ldexp(round_to(DType::fp16, std::ldexp(qr[d], e)), -e);
    }
  }

  ElementBounds r;
  r.deterministic.assign(static_cast<std::size_t>(p.score_elems()), 0.0);
  r.probabilistic.assign(static_cast<std::size_t>(p.score_elems()), 0.0);
  parallel_for(
      p.score_elems(),
      [&](int64_t e0, int64_t e1) {
        for (int64_t e = e0; e < e1; ++e) {
          const int64_t j = e % W;
          const auto [b, h, t] = p.score_row(e / W);
          const int64_t pos = p.window_start(t) + j;
          if (!in.attends(b, pos)) continue;  // -inf in every implementation: no error
          const int64_t kb = in.kv_offset(addr, b, h / group, pos);
          const std::size_t qb = static_cast<std::size_t>(in.q_offset(b, t, h));
          // Products of converted operands are exact in double (at most 48 bits).
          double dot = 0.0, mag = 0.0, conv = 0.0;
          for (int d = 0; d < D; ++d) {
            const double kd = in.k.get(kb + d), kd_acc = k_exact ? kd : round_to(acc_t, kd);
            const double prod = q[qb + d] * kd, prod_acc = q_acc[qb + d] * kd_acc;
            dot += prod;
            mag += std::fabs(prod_acc);
            conv += std::fabs(prod_acc - prod);
          }
          const double s = c * dot;
          // Scaled q: the sum's underflow is at the row's scale 2^e (row_down is 1 elsewhere).
          const double down = row_down[qb / static_cast<std::size_t>(D)];
          for (int v = 0; v < 2; ++v) {
            const double g = v == 0 ? g_det : g_prob;
            double err = conv + times(g, mag) + double(D) * eta * down * (1.0 + g);
            if (apply_scale) {
              // fl(dot^ * c~): the dot's error scaled by |c~|, the scale's conversion error
              // and one rounded multiply, both relative to the score itself.
              err = (std::fabs(c_acc) * err + std::fabs(c_acc - c) * std::fabs(dot)) * (1.0 + u) +
                    u * std::fabs(s) + eta;
            }
            // Scaled q: that multiply is taken at the row's scale (its underflow, eta there, is
            // eta x 2^-e here), then x 2^-e, exact unless the result is subnormal.
            if (f.q_binary16_scaled) err += (apply_scale ? eta * (down - 1.0) : 0.0) + eta;
            err = with_output(err, s, out);
            (v == 0 ? r.deterministic : r.probabilistic)[static_cast<std::size_t>(e)] = err;
          }
        }
      },
      min_chunk(2 * D));
  return r;
}

ElementBounds softmax_bounds(const AttentionInputs& in, const std::vector<double>& logits,
                             double logit_scale, const std::vector<double>& logit_error,
                             const StageFormats& f, double exp_ulps) {
  return softmax_impl(in, logits, logit_scale, logit_error, logit_error, f, exp_ulps);
}

ElementBounds pv_bounds(const AttentionInputs& in, const std::vector<double>& probs,
                        const std::vector<double>& prob_error, const StageFormats& f) {
  return pv_impl(in, probs, prob_error, prob_error, f);
}

ElementBounds attention_bounds(const AttentionInputs& in, const StageFormats& qk_f,
                               const StageFormats& softmax_f, const StageFormats& pv_f) {
  // Each stage's bound is taken around the exact intermediates, with the previous stage's bound
  // as the error of its input; the deterministic and probabilistic chains stay separate. The scale
  // is applied in QK. A fused kernel stores no intermediates (pass output = the accumulation
  // format), and its online-softmax rescaling adds one rounded multiply per key tile to every
  // partial sum: count those in softmax_f.depth and pv_f.depth.
  const std::vector<double> scores = ref::qk<double>(in, true);
  return attention_bounds(in, scores, ref::softmax<double>(in, scores, 1.0),
                          qk_bounds(in, qk_f, true), softmax_f, pv_f);
}

ElementBounds attention_bounds(const AttentionInputs& in, const std::vector<double>& scores,
                               const std::vector<double>& probs, const ElementBounds& qk,
                               const StageFormats& softmax_f, const StageFormats& pv_f) {
  const ElementBounds sm =
      softmax_impl(in, scores, 1.0, qk.deterministic, qk.probabilistic, softmax_f, 2.0);
  return pv_impl(in, probs, sm.deterministic, sm.probabilistic, pv_f);
}

std::vector<double> lse_bounds(const AttentionInputs& in, const std::vector<double>& lse_ref,
                               const std::vector<double>& probs_ref,
                               const std::vector<double>& logit_error, double logit_scale,
                               const StageFormats& f) {
  const Problem& p = in.problem;
  const double u = unit_roundoff(f.accum);
  const double eta = 0.5 * ulp_of(accum_dtype(f.accum), 0.0);
  const double g = gamma_tilde(f.depth, u, f.lambda);
  std::vector<double> b(lse_ref.size());
  for (std::size_t r = 0; r < b.size(); ++r) {
    double prop = 0.0;
    if (!logit_error.empty())
      for (std::int64_t j = 0; j < p.window; ++j) {
        const std::size_t k = r * std::size_t(p.window) + std::size_t(j);
        prop += probs_ref[k] * logit_error[k] * logit_scale;
      }
    // The sum of shifted exponentials is at least 1; each term may underflow by eta.
    const double eps = g + 3.0 * u + prop + double(p.window) * eta;
    b[r] = (eps < 1.0 ? eps / (1.0 - eps) : std::numeric_limits<double>::infinity()) +
           2.0 * 0x1p-24 * (std::fabs(lse_ref[r]) + 1.0);
  }
  return b;
}

}  // namespace attnscope::bounds
