#include "attnscope/reference/fp8_cost.hpp"

#include <cmath>
#include <stdexcept>
#include <vector>

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

Fp8Cost fp8_cost(const AttentionInputs& in) {
  const Problem& p = in.problem;
  if (!p.kv_fp8 || in.k_orig.numel() == 0)
    throw std::invalid_argument("fp8_cost: the inputs hold no quantized cache");
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
  // key's score): covariance C = diag(vd) + sum_j w_j u_j u_j^T, with vd the V terms, w_j =
  // p_j^2 var(s_j) and u_j = V_j - out. Its squared norm has mean tr C and, were the errors
  // Gaussian, variance 2 tr C^2 = 2 [sum vd^2 + 2 sum_j w_j sum_d vd u_jd^2 + sum_jk w_j w_k
  // (u_j . u_k)^2]; the last sum keeps the keys of weight above 1e-9 of the row's largest.
  double var_sum = 0.0, var_sq = 0.0;
  std::vector<double> qv(std::size_t(D), 0.0), vd(std::size_t(D), 0.0);
  std::vector<double> w;
  std::vector<std::vector<double>> u;
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.q_heads; ++h)
      for (int t = 0; t < p.q_len; ++t) {
        const std::int64_t row = (std::int64_t(b) * p.q_heads + h) * p.q_len + t;
        const std::int64_t out0 = in.q_offset(b, t, h);
        for (int d = 0; d < D; ++d) {
          qv[std::size_t(d)] = in.q.get(out0 + d);
          vd[std::size_t(d)] = 0.0;
        }
        w.clear();
        u.clear();
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
          w.push_back(pj * pj * score_var * sc * sc);
          u.emplace_back(std::size_t(D));
          for (int d = 0; d < D; ++d) {
            const double x = in.v_orig.get(off + d);
            u.back()[std::size_t(d)] = x - exact.out[std::size_t(out0 + d)];
            vd[std::size_t(d)] += pj * pj * fp8_rounding_variance(x, vs, f);
          }
        }
        double trace = 0.0, trace_sq = 0.0, w_max = 0.0;
        for (int d = 0; d < D; ++d) {
          trace += vd[std::size_t(d)];
          trace_sq += vd[std::size_t(d)] * vd[std::size_t(d)];
        }
        std::vector<std::size_t> heavy;
        for (std::size_t j = 0; j < w.size(); ++j) w_max = std::max(w_max, w[j]);
        for (std::size_t j = 0; j < w.size(); ++j) {
          double uu = 0.0, vu = 0.0;
          for (int d = 0; d < D; ++d) {
            uu += u[j][std::size_t(d)] * u[j][std::size_t(d)];
            vu += vd[std::size_t(d)] * u[j][std::size_t(d)] * u[j][std::size_t(d)];
          }
          trace += w[j] * uu;
          trace_sq += 2.0 * w[j] * vu;
          if (w[j] > 1e-9 * w_max) heavy.push_back(j);
        }
        for (std::size_t x : heavy)
          for (std::size_t y : heavy) {
            double dot = 0.0;
            for (int d = 0; d < D; ++d) dot += u[x][std::size_t(d)] * u[y][std::size_t(d)];
            trace_sq += w[x] * w[y] * dot * dot;
          }
        var_sum += trace;
        var_sq += 2.0 * trace_sq;
      }
  c.predicted_rel_l2 = ref2 > 0.0 ? std::sqrt(var_sum / ref2) : std::sqrt(var_sum);
  // rel_l2 is the square root of the squared error's sum: half its relative spread.
  c.predicted_relative_sd = var_sum > 0.0 ? 0.5 * std::sqrt(var_sq) / var_sum : 0.0;
  return c;
}

}  // namespace attnscope::ref
