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
  c.exact_out = exact.out;

  const KvAddressing a = in.layout.addressing();
  const int D = p.head_dim, DV = p.value_dim(), G = p.group();
  const double sc = p.effective_scale();
  // A latent cache's V is the first DV channels of its K rows: their quantization errors are the
  // same numbers, drawn once and entering the scores and the weighted sum together.
  // One pass per KV head of one sequence (its queries read the same cache elements, so they
  // share the elements' error variances and the draws): for each query position, the attended
  // keys' elements are gathered once, then
  //  - the first-order estimate, per row: sum_d [sum_j p_j^2 var(V_jd) + sum_j w_j u_jd^2], with
  //    w_j = p_j^2 var(s_j) and u_j = V_j - out;
  //  - the draws: each element's error uniform on [-w/2, w/2], w = sqrt(12 var), the same draw
  //    for every query of the KV head, the output recomputed exactly.
  const std::int64_t rows = std::int64_t(p.batch) * p.q_heads * p.q_len;
  const std::int64_t groups = std::int64_t(p.batch) * p.kv_heads;
  std::vector<double> linear(std::size_t(rows), 0.0);
  std::vector<double> mean(std::size_t(groups), 0.0), spread(std::size_t(groups), 0.0);
  parallel_for(
      groups,
      [&](std::int64_t g0, std::int64_t g1) {
        const std::size_t Dz = static_cast<std::size_t>(D), DVz = static_cast<std::size_t>(DV);
        std::vector<double> sq(static_cast<std::size_t>(samples));
        std::vector<double> var_k, var_v, sk, sv, vv, rk, rv, sp, pr, s0, err(DVz), vd(DVz),
            mdiag(DVz), u(DVz), ql(Dz * static_cast<std::size_t>(G));
        std::vector<std::int64_t> offs, js;
        for (std::int64_t g = g0; g < g1; ++g) {
          const int b = static_cast<int>(g / p.kv_heads), kvh = static_cast<int>(g % p.kv_heads);
          std::fill(sq.begin(), sq.end(), 0.0);
          for (int t = 0; t < p.q_len; ++t) {
            // The attended keys of query position t (js: their columns in the window) and their
            // elements' variances and widths.
            offs.clear();
            js.clear();
            var_k.clear();
            var_v.clear();
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
              js.push_back(j);
              for (int e = 0; e < D; ++e) {
                var_k.push_back(fp8_rounding_variance(in.k_orig.get(off + e), ks, f));
                sk.push_back(std::sqrt(12.0 * var_k.back()));
              }
              for (int e = 0; e < DV; ++e) {
                const double x = in.v_orig.get(off + e);
                var_v.push_back(fp8_rounding_variance(x, vs, f));
                sv.push_back(std::sqrt(12.0 * var_v.back()));
                vv.push_back(x);
              }
            }
            const std::size_t n = offs.size();
            if (n == 0) continue;
            sp.resize(n);
            pr.resize(n);
            s0.resize(n * static_cast<std::size_t>(G));
            for (int hq = 0; hq < G; ++hq) {
              const int h = kvh * G + hq;
              const std::int64_t row = (std::int64_t(b) * p.q_heads + h) * p.q_len + t;
              const std::int64_t q0 = in.q_offset(b, t, h), out0 = in.out_offset(b, t, h);
              double* q = ql.data() + std::size_t(hq) * Dz;
              for (int e = 0; e < D; ++e) q[e] = in.q.get(q0 + e);
              for (std::size_t k = 0; k < n; ++k)
                s0[std::size_t(hq) * n + k] = exact.scores[std::size_t(row * p.window + js[k])];
              // The first-order estimate of the row.
              std::fill(vd.begin(), vd.end(), 0.0);
              std::fill(mdiag.begin(), mdiag.end(), 0.0);
              for (std::size_t k = 0; k < n; ++k) {
                const double pj = exact.probs[std::size_t(row * p.window + js[k])];
                if (pj == 0.0) continue;
                double score_var = 0.0;
                for (int e = 0; e < D; ++e)
                  score_var += q[e] * q[e] * var_k[k * Dz + std::size_t(e)];
                const double w = pj * pj * score_var * sc * sc;
                for (int d = 0; d < DV; ++d) {
                  const std::size_t i = k * DVz + std::size_t(d);
                  u[std::size_t(d)] = vv[i] - exact.out[std::size_t(out0 + d)];
                  vd[std::size_t(d)] += pj * pj * var_v[i];
                  // Latent: V's error is K's, so the two terms covary by
                  // p_j^2 sc q_d var(K_jd) u_jd (twice, in the square).
                  if (p.latent)
                    vd[std::size_t(d)] += 2.0 * pj * pj * sc * q[d] * var_v[i] * u[std::size_t(d)];
                }
                if (w == 0.0) continue;
                for (int d = 0; d < DV; ++d)
                  mdiag[std::size_t(d)] += w * u[std::size_t(d)] * u[std::size_t(d)];
              }
              double trace = 0.0;
              for (int d = 0; d < DV; ++d) trace += vd[std::size_t(d)] + mdiag[std::size_t(d)];
              linear[std::size_t(row)] = trace;
            }
            rk.resize(n * Dz);
            rv.resize(n * DVz);
            for (int smp = 0; smp < samples; ++smp) {
              // The draw, once for every query of the KV head (a latent cache's V draws are
              // its K draws).
              const std::uint64_t ks = 2 * std::uint64_t(smp), vs = p.latent ? ks : ks + 1;
              for (std::size_t k = 0; k < n; ++k) {
                for (int e = 0; e < D; ++e) {
                  const std::uint64_t at = std::uint64_t(offs[k] + e);
                  rk[k * Dz + std::size_t(e)] = to_unit_open(counter_hash(seed, ks, at)) - 0.5;
                }
                for (int e = 0; e < DV; ++e) {
                  const std::uint64_t at = std::uint64_t(offs[k] + e);
                  rv[k * DVz + std::size_t(e)] = to_unit_open(counter_hash(seed, vs, at)) - 0.5;
                }
              }
              for (int hq = 0; hq < G; ++hq) {
                const std::int64_t out0 = in.out_offset(b, t, kvh * G + hq);
                const double* q = ql.data() + std::size_t(hq) * Dz;
                double top = -INFINITY;
                for (std::size_t k = 0; k < n; ++k) {
                  double ds = 0.0;
                  for (int e = 0; e < D; ++e) {
                    const std::size_t i = k * Dz + std::size_t(e);
                    ds += q[e] * sk[i] * rk[i];
                  }
                  sp[k] = s0[std::size_t(hq) * n + k] + sc * ds;
                  top = std::max(top, sp[k]);
                }
                double l = 0.0;
                for (std::size_t k = 0; k < n; ++k) l += (pr[k] = std::exp(sp[k] - top));
                std::fill(err.begin(), err.end(), 0.0);
                for (std::size_t k = 0; k < n; ++k) {
                  const double pj = pr[k] / l;
                  for (int d = 0; d < DV; ++d) {
                    const std::size_t i = k * DVz + std::size_t(d);
                    err[std::size_t(d)] += pj * (vv[i] + sv[i] * rv[i]);
                  }
                }
                double e2 = 0.0;
                for (int d = 0; d < DV; ++d) {
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
  double var_sum = 0.0;  // in row order
  for (double x : linear) var_sum += x;
  c.linear_rel_l2 = ref2 > 0.0 ? std::sqrt(var_sum / ref2) : std::sqrt(var_sum);
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
