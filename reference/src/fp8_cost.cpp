#include "attnscope/reference/fp8_cost.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "attnscope/core/parallel.hpp"
#include "attnscope/core/random.hpp"
#include "attnscope/reference/stages.hpp"

namespace attnscope::ref {

double fp8_rounding_variance(double x, double scale, Fp8Format f) {
  if (!std::isfinite(x) || !(scale > 0.0)) return 0.0;
  const double y = std::fabs(x / scale);
  const Fp8Layout l = fp8_layout(f);
  // The element that set its scale (the largest magnitude under it) maps to the format's largest
  // value up to the scale's fp32 rounding: stored exactly, not a uniform draw over the top
  // binade's wide cells. Past the largest value, the saturated part counts whole.
  if (std::fabs(y - fp8_max(f)) <= fp8_max(f) * 0x1p-20) return 0.0;
  if (y > fp8_max(f)) {
    const double over = (y - fp8_max(f)) * scale;
    return over * over;
  }
  // An element in the cell of zero rounds to zero: its error is the element itself, not a
  // uniform draw over the cell (a small element under a large scale is mostly such).
  if (y <= 0.5 * fp8_min_subnormal(f)) return x * x;
  double spacing = fp8_min_subnormal(f);  // the subnormal range and the lowest binade
  if (y >= std::ldexp(1.0, 1 - l.bias)) {
    int e = 0;
    std::frexp(y, &e);  // y in [2^(e-1), 2^e)
    spacing = std::ldexp(1.0, e - 1 - l.man_bits);
  }
  const double s = spacing * scale;
  return s * s / 12.0;
}

Fp8Cost fp8_cost(const AttentionInputs& in, int samples, std::uint64_t seed) {
  const Problem& p = in.problem;
  if (!p.kv_fp8 || in.k_orig.numel() == 0)
    throw std::invalid_argument("fp8_cost: the inputs hold no quantized cache");
  if (samples < 2) throw std::invalid_argument("fp8_cost: at least 2 samples");
  const Fp8Format f = *p.kv_fp8;
  AttentionInputs orig = in;
  orig.k = in.k_orig;
  orig.v = in.v_orig;
  const Trace<double> exact = attention<double>(orig);
  std::vector<double> deq, deq_lse;
  attention_output<double>(in, deq, deq_lse);

  Fp8Cost c;
  double err2 = 0.0, ref2 = 0.0;
  for (std::size_t i = 0; i < deq.size(); ++i) {
    const double e = deq[i] - exact.out[i];
    err2 += e * e;
    ref2 += exact.out[i] * exact.out[i];
  }
  c.measured_rel_l2 = ref2 > 0.0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);

  const KvAddressing a = in.layout.addressing();
  const int D = p.head_dim, G = p.group();
  const double sc = p.effective_scale();
  // Per row, the error vector is A z with z independent unit errors (one a V element, one a
  // key's score): covariance C = diag(vd) + M, M = sum_j w_j u_j u_j^T, with vd the V terms,
  // w_j = p_j^2 var(s_j) and u_j = V_j - out. Its squared norm has mean tr C and, were the errors
  // Gaussian, variance 2 tr C^2 = 2 [sum vd^2 + 2 sum_d vd M_dd + |M|_F^2].
  double var_sum = 0.0, var_sq = 0.0;
  std::vector<double> qv(std::size_t(D), 0.0), vd(std::size_t(D), 0.0), u(std::size_t(D), 0.0);
  std::vector<double> m(std::size_t(D) * std::size_t(D), 0.0);
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.q_heads; ++h)
      for (int t = 0; t < p.q_len; ++t) {
        const std::int64_t row = (std::int64_t(b) * p.q_heads + h) * p.q_len + t;
        const std::int64_t out0 = in.q_offset(b, t, h);
        for (int d = 0; d < D; ++d) {
          qv[std::size_t(d)] = in.q.get(out0 + d);
          vd[std::size_t(d)] = 0.0;
        }
        std::fill(m.begin(), m.end(), 0.0);
        for (std::int64_t j = 0; j < p.window; ++j) {
          const double pj = exact.probs[std::size_t(row * p.window + j)];
          const std::int64_t pos = p.window_start(t) + j;
          if (pj == 0.0 || !in.attends(b, pos)) continue;
          const std::int64_t off = in.kv_offset(a, b, h / G, pos);
          const std::int64_t s = kv_scale_index(p, h / G, off);
          const double ks = in.k_scale.get(s), vs = in.v_scale.get(s);
          double score_var = 0.0;
          for (int e = 0; e < D; ++e)
            score_var += qv[std::size_t(e)] * qv[std::size_t(e)] *
                         fp8_rounding_variance(in.k_orig.get(off + e), ks, f);
          const double w = pj * pj * score_var * sc * sc;
          for (int d = 0; d < D; ++d) {
            const double x = in.v_orig.get(off + d);
            u[std::size_t(d)] = x - exact.out[std::size_t(out0 + d)];
            vd[std::size_t(d)] += pj * pj * fp8_rounding_variance(x, vs, f);
          }
          if (w == 0.0) continue;
          for (int d = 0; d < D; ++d) {
            const double wu = w * u[std::size_t(d)];
            double* md = m.data() + std::size_t(d) * std::size_t(D);
            for (int e = 0; e < D; ++e) md[e] += wu * u[std::size_t(e)];
          }
        }
        double trace = 0.0, trace_sq = 0.0;
        for (int d = 0; d < D; ++d) {
          const double md = m[std::size_t(d) * std::size_t(D + 1)];
          trace += vd[std::size_t(d)] + md;
          trace_sq += vd[std::size_t(d)] * vd[std::size_t(d)] + 2.0 * vd[std::size_t(d)] * md;
        }
        for (double x : m) trace_sq += x * x;
        var_sum += trace;
        var_sq += 2.0 * trace_sq;
      }
  (void)var_sq;
  c.linear_rel_l2 = ref2 > 0.0 ? std::sqrt(var_sum / ref2) : std::sqrt(var_sum);

  // The draws, one KV head of one sequence at a time (its queries share the cache's errors).
  const std::int64_t groups = std::int64_t(p.batch) * p.kv_heads;
  std::vector<double> mean(std::size_t(groups), 0.0), spread(std::size_t(groups), 0.0);
  parallel_for(
      groups,
      [&](std::int64_t g0, std::int64_t g1) {
        std::vector<double> sq(static_cast<std::size_t>(samples));
        std::vector<double> sk, sv, vv, sp, pr, err(static_cast<std::size_t>(D)),
            ql(static_cast<std::size_t>(D));
        std::vector<std::int64_t> offs;
        for (std::int64_t g = g0; g < g1; ++g) {
          const int b = static_cast<int>(g / p.kv_heads), kvh = static_cast<int>(g % p.kv_heads);
          std::fill(sq.begin(), sq.end(), 0.0);
          for (int t = 0; t < p.q_len; ++t) {
            // The keys of query position t and their elements' error widths (uniform on
            // [-w/2, w/2]: w = sqrt(12 var)).
            offs.clear();
            sk.clear();
            sv.clear();
            vv.clear();
            for (std::int64_t j = 0; j < p.window; ++j) {
              const std::int64_t pos = p.window_start(t) + j;
              if (!in.attends(b, pos)) continue;
              const std::int64_t off = in.kv_offset(a, b, kvh, pos);
              const std::int64_t si = kv_scale_index(p, kvh, off);
              const double ks = in.k_scale.get(si), vs = in.v_scale.get(si);
              offs.push_back(off);
              for (int e = 0; e < D; ++e) {
                sk.push_back(
                    std::sqrt(12.0 * fp8_rounding_variance(in.k_orig.get(off + e), ks, f)));
                const double x = in.v_orig.get(off + e);
                sv.push_back(std::sqrt(12.0 * fp8_rounding_variance(x, vs, f)));
                vv.push_back(x);
              }
            }
            const std::size_t n = offs.size();
            if (n == 0) continue;
            sp.resize(n);
            pr.resize(n);
            for (int hq = 0; hq < G; ++hq) {
              const int h = kvh * G + hq;
              const std::int64_t row = (std::int64_t(b) * p.q_heads + h) * p.q_len + t;
              const std::int64_t out0 = in.q_offset(b, t, h);
              for (int e = 0; e < D; ++e) ql[std::size_t(e)] = in.q.get(out0 + e);
              // The exact scores of the attended keys, in order.
              std::size_t k = 0;
              std::vector<double> s0(n);
              for (std::int64_t j = 0; j < p.window && k < n; ++j)
                if (in.attends(b, p.window_start(t) + j))
                  s0[k++] = exact.scores[std::size_t(row * p.window + j)];
              for (int smp = 0; smp < samples; ++smp) {
                const std::uint64_t ks = 2 * std::uint64_t(smp), vs = ks + 1;
                double top = -INFINITY;
                for (std::size_t j = 0; j < n; ++j) {
                  double ds = 0.0;
                  for (int e = 0; e < D; ++e) {
                    const double r =
                        to_unit_open(counter_hash(seed, ks, std::uint64_t(offs[j] + e))) - 0.5;
                    ds += ql[std::size_t(e)] * sk[j * std::size_t(D) + std::size_t(e)] * r;
                  }
                  sp[j] = s0[j] + sc * ds;
                  top = std::max(top, sp[j]);
                }
                double l = 0.0;
                for (std::size_t j = 0; j < n; ++j) l += (pr[j] = std::exp(sp[j] - top));
                std::fill(err.begin(), err.end(), 0.0);
                for (std::size_t j = 0; j < n; ++j) {
                  const double pj = pr[j] / l;
                  for (int d = 0; d < D; ++d) {
                    const std::size_t i = j * std::size_t(D) + std::size_t(d);
                    const double r =
                        to_unit_open(counter_hash(seed, vs, std::uint64_t(offs[j] + d))) - 0.5;
                    err[std::size_t(d)] += pj * (vv[i] + sv[i] * r);
                  }
                }
                double e2 = 0.0;
                for (int d = 0; d < D; ++d) {
                  const double e = err[std::size_t(d)] - exact.out[std::size_t(out0 + d)];
                  e2 += e * e;
                }
                sq[std::size_t(smp)] += e2;
              }
            }
          }
          double mu = 0.0;
          for (double x : sq) mu += x;
          mu /= samples;
          double v = 0.0;
          for (double x : sq) v += (x - mu) * (x - mu);
          mean[std::size_t(g)] = mu;
          spread[std::size_t(g)] = v / (samples - 1);
        }
      },
      1);
  double mu = 0.0, var = 0.0;
  for (std::int64_t g = 0; g < groups; ++g) {
    mu += mean[std::size_t(g)];
    var += spread[std::size_t(g)];
  }
  c.samples = samples;
  c.predicted_rel_l2 = ref2 > 0.0 ? std::sqrt(mu / ref2) : std::sqrt(mu);
  // The measurement's spread and the estimate's (var / samples), on the squared error; rel_l2
  // is its square root: half the relative spread.
  c.predicted_relative_sd = mu > 0.0 ? 0.5 * std::sqrt(var * (1.0 + 1.0 / samples)) / mu : 0.0;
  return c;
}

}  // namespace attnscope::ref
