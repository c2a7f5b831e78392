#include "attnscope/core/metrics.hpp"

#include <cmath>
#include <limits>

namespace attnscope {

namespace {
double smallest_normal(DType t) {
  return t == DType::fp16 ? 0x1p-14 : 0x1p-126;
}
}  // namespace

Metrics compare(std::int64_t n, const std::function<double(std::int64_t)>& got,
                const std::function<double(std::int64_t)>& ref, DType output_format) {
  Metrics m;
  m.count = n;
  const double floor = smallest_normal(output_format);
  double sum_abs = 0.0, sum_sq = 0.0, ref_sq = 0.0;
  std::int64_t finite = 0;
  bool worst_is_nonfinite = false;
  for (std::int64_t i = 0; i < n; ++i) {
    const double x = got(i), r = ref(i);
    if (std::isnan(x) && !std::isnan(r)) {
      if (m.nan_count++ == 0 && !worst_is_nonfinite) {
        m.worst_index = i, m.worst_value = x, m.worst_ref = r, worst_is_nonfinite = true;
      }
      continue;
    }
    if (std::isnan(r) && !std::isnan(x)) {
      if (m.nan_lost++ == 0 && !worst_is_nonfinite) {
        m.worst_index = i, m.worst_value = x, m.worst_ref = r, worst_is_nonfinite = true;
      }
      continue;
    }
    if (std::isinf(x) && !std::isnan(r) && x != r) {  // incl. an infinity of the wrong sign
      if (m.inf_count++ == 0 && !worst_is_nonfinite) {
        m.worst_index = i, m.worst_value = x, m.worst_ref = r, worst_is_nonfinite = true;
      }
      continue;
    }
    if (!std::isfinite(r) || !std::isfinite(x)) continue;  // both non-finite alike: no error
    const double e = std::fabs(x - r);
    ++finite;
    sum_abs += e;
    sum_sq += e * e;
    ref_sq += r * r;
    if (e > m.max_abs || m.worst_index < 0) {
      m.max_abs = std::max(m.max_abs, e);
      if (!worst_is_nonfinite) m.worst_index = i, m.worst_value = x, m.worst_ref = r;
    }
    m.max_rel = std::max(m.max_rel, e / std::max(std::fabs(r), floor));
    m.max_ulp = std::max(m.max_ulp, ulp_distance(output_format, x, r));
  }
  m.mae = finite > 0 ? sum_abs / double(finite) : 0.0;
  m.rel_l2 = ref_sq > 0.0 ? std::sqrt(sum_sq / ref_sq) : std::sqrt(sum_sq);
  return m;
}

Metrics compare(std::int64_t n, const double* got, const double* ref, DType output_format) {
  return compare(
      n, [got](std::int64_t i) { return got[i]; }, [ref](std::int64_t i) { return ref[i]; },
      output_format);
}

}  // namespace attnscope
