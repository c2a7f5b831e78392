// Judging a computed tensor against the reference with a per-element budget: the metrics, the
// largest error-to-budget ratio and the coordinates of the element where it occurs. Shared by
// the GPU accuracy suite and the engine-trace checker.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attnscope/core/metrics.hpp"
#include "attnscope/core/problem.hpp"

namespace attnscope {

// The layouts of the attention tensors, for naming an element by its coordinates.
enum class TensorShape {
  scores,  // [batch, q_heads, q_len, window]: scores and probabilities
  out,     // [batch, q_len, q_heads, head_dim]
  rows,    // [batch, q_heads, q_len]: lse
};

// "(batch b, head h, query t, position pos)" and the like; "-" for a negative index.
std::string coordinates(const Problem& p, TensorShape shape, std::int64_t i);

// One compared quantity (a stage's output, locally or end to end).
struct Check {
  std::string what;   // e.g. "qk", "softmax (local)", "attn_out"
  std::string field;  // JSON prefix: qk_, softmax_, pv_, attn_out_, lse_, ...
  Metrics metrics;
  double budget_max = 0.0;    // largest per-element budget
  double budget_ratio = 0.0;  // max_i |err_i| / budget_i: <= 1 passes
  std::int64_t worst = -1;    // element with the largest ratio
  std::string worst_where;    // its coordinates
  bool pass = true;
  // Checks against the precision model: its rel_l2 and max_abs on the same inputs (else -1).
  double model_rel_l2 = -1.0;
  double model_max_abs = -1.0;
};

// got against ref with budget[i] per element. Non-finite values where the reference has the same
// non-finite value are no error; NaN or Inf elsewhere, or an error with a zero budget, fails.
Check judge(const Problem& p, std::string what, std::string field, TensorShape shape,
            const std::vector<double>& got, const std::vector<double>& ref,
            const std::vector<double>& budget, DType format);

// fp16 accumulation holds q.k in binary16: where an exact dot product (before the scale) passes
// binary16's largest finite value, 65504, the kernel's score overflows whatever its summation
// order. Returns "" when none does, else the reason, e.g. "fp16 overflow: |q.k| reaches 7.2e+04
// at (batch 0, head 3, query 0, position 17), past binary16's largest finite value 65504".
// `dots` are the exact unscaled q.k, in the scores' layout.
std::string fp16_overflow(const Problem& p, const std::vector<double>& dots);

// "  ok   qk: max_abs ..., mae ..., rel_l2 ..., nan 0, inf 0; budget max ..., error/budget ... at
// (...)"
std::string describe(const Check& c);

}  // namespace attnscope
