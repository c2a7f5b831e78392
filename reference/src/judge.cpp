#include "attnscope/reference/judge.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace attnscope {

std::string coordinates(const Problem& p, TensorShape shape, std::int64_t i) {
  if (i < 0) return "-";
  std::ostringstream s;
  if (shape == TensorShape::scores) {
    const auto [b, h, t] = p.score_row(i / p.window);
    s << "(batch " << b << ", head " << h << ", query " << t << ", position "
      << p.window_start(t) + i % p.window << ")";
  } else if (shape == TensorShape::out) {
    const std::int64_t d = i % p.value_dim(), r = i / p.value_dim();
    const std::int64_t h = r % p.q_heads, t = r / p.q_heads % p.q_len, b = r / p.q_heads / p.q_len;
    s << "(batch " << b << ", query " << t << ", head " << h << ", dim " << d << ")";
  } else {
    const auto [b, h, t] = p.score_row(i);
    s << "(batch " << b << ", head " << h << ", query " << t << ")";
  }
  return s.str();
}

Check judge(const Problem& p, std::string what, std::string field, TensorShape shape,
            const std::vector<double>& got, const std::vector<double>& ref,
            const std::vector<double>& budget, DType format) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  if (got.size() != ref.size() || budget.size() != ref.size())
    throw std::logic_error(what + ": result, reference and budget sizes differ");
  Check c;
  c.what = std::move(what);
  c.field = std::move(field);
  c.metrics = compare(std::int64_t(got.size()), got.data(), ref.data(), format);
  for (std::size_t i = 0; i < got.size(); ++i) {
    c.budget_max = std::max(c.budget_max, budget[i]);
    double r = 0.0;
    if (std::isnan(ref[i]) || (std::isinf(ref[i]) && got[i] == ref[i])) continue;
    if (!std::isfinite(got[i]))
      r = kInf;
    else {
      const double e = std::fabs(got[i] - ref[i]);
      r = e == 0.0 ? 0.0 : budget[i] > 0.0 ? e / budget[i] : kInf;
    }
    if (r > c.budget_ratio || c.worst < 0) {
      if (r >= c.budget_ratio) c.worst = std::int64_t(i);
      c.budget_ratio = std::max(c.budget_ratio, r);
    }
  }
  c.worst_where = coordinates(p, shape, c.worst);
  c.pass = c.metrics.nan_count == 0 && c.metrics.inf_count == 0 && c.metrics.nan_lost == 0 &&
           c.budget_ratio <= 1.0;
  return c;
}

std::string fp16_overflow(const Problem& p, const std::vector<double>& dots) {
  constexpr double kHalfMax = 65504.0;
  std::int64_t worst = -1;
  double largest = 0.0;
  for (std::size_t i = 0; i < dots.size(); ++i)
    if (std::isfinite(dots[i]) && std::fabs(dots[i]) > largest) {
      largest = std::fabs(dots[i]);
      worst = static_cast<std::int64_t>(i);
    }
  if (largest <= kHalfMax) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3g", largest);
  return std::string("fp16 overflow: |q.k| reaches ") + buf + " at " +
         coordinates(p, TensorShape::scores, worst) +
         ", past binary16's largest finite value 65504";
}

std::string describe(const Check& c) {
  std::ostringstream s;
  s << "  " << (c.pass ? "ok  " : "FAIL") << " " << c.what << ": max_abs " << c.metrics.max_abs
    << ", mae " << c.metrics.mae << ", rel_l2 " << c.metrics.rel_l2 << ", nan "
    << c.metrics.nan_count << ", inf " << c.metrics.inf_count << ", NaN lost " << c.metrics.nan_lost
    << "; budget max " << c.budget_max << ", error/budget " << c.budget_ratio << " at "
    << c.worst_where;
  return s.str();
}

}  // namespace attnscope
