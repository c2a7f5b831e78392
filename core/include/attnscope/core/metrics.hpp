// Error metrics of a result against a reference.
#pragma once

#include <cstdint>
#include <functional>

#include "attnscope/core/dtype.hpp"

namespace attnscope {

struct Metrics {
  std::int64_t count = 0;
  double mae = 0.0;      // mean |x - ref|
  double max_abs = 0.0;  // max |x - ref|
  // max |x - ref| / max(|ref|, smallest normal of the output format)
  double max_rel = 0.0;
  double rel_l2 = 0.0;            // ||x - ref||_2 / ||ref||_2 (absolute l2 when ref is all zeros)
  double max_ulp = 0.0;           // max |x - ref| in ulps of the output format at ref
  std::int64_t nan_count = 0;     // NaN in x where ref is not NaN
  std::int64_t inf_count = 0;     // Inf in x where ref is finite or the opposite Inf
  std::int64_t nan_lost = 0;      // x not NaN where ref is NaN: a NaN input that did not arrive
  std::int64_t worst_index = -1;  // index of max_abs (or of the first NaN/Inf)
  double worst_value = 0.0;
  double worst_ref = 0.0;
};

// got(i) and ref(i) for i in [0, n). NaN/Inf elements are counted and left out of the sums.
Metrics compare(std::int64_t n, const std::function<double(std::int64_t)>& got,
                const std::function<double(std::int64_t)>& ref, DType output_format);
Metrics compare(std::int64_t n, const double* got, const double* ref, DType output_format);

}  // namespace attnscope
