// Precision models: host emulation of an algorithm in its working precision, in a given
// summation order, so the error an accumulation format is expected to give at a window size
// can be told apart from a bug.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attnscope/core/dtype.hpp"
#include "attnscope/core/inputs.hpp"

namespace attnscope::model {

enum class OrderKind {
  sequential,  // s = ((x0 + x1) + x2) + ...
  pairwise,    // recursive halving, as a balanced tree
  warp_tree,   // lane l accumulates chunks l, l + lanes, ... of `vec` consecutive elements
               // sequentially (element by element), then a butterfly over the lanes with
               // ascending distance (xor 1, 2, 4, ...), as the kernels' shuffles and trees do
};

struct SummationOrder {
  OrderKind kind = OrderKind::sequential;
  int lanes = 32;  // warp_tree: lanes taking part (a power of two)
  int vec = 1;     // warp_tree: consecutive elements one lane takes per step
  // warp_tree: interleaved accumulators per lane (2 for packed half2 arithmetic): the k-th
  // element a lane visits goes to accumulator k % pack; they are added in order at the end.
  int pack = 1;
  // Any kind: when > 0, the sequence is cut into runs of `chunk` consecutive elements, each
  // reduced in this order, and the run results are added sequentially (split windows).
  std::int64_t chunk = 0;
  // "sequential", "pairwise", "warp_tree(lanes=32,vec=8)" (+ ",pack=2", ",chunk=4096")
  std::string name() const;
};

// Reads the form name() writes (and the short "warp_tree(32x8)"); throws
// std::invalid_argument on anything else.
SummationOrder parse_order(const std::string& text);

// The longest chain of roundings an element's contribution passes through: the n of gamma_n.
std::int64_t summation_depth(const SummationOrder& order, std::int64_t n);

// sum_i x_i * y_i evaluated in the accumulation format: each product-accumulate is one
// fused multiply-add rounded once to the format (fp16: binary16, fp32: binary32).
double model_dot(Accum acc, const SummationOrder& order, const double* x, const double* y,
                 std::int64_t n);
// sum_i x_i in the accumulation format, in the given order.
double model_sum(Accum acc, const SummationOrder& order, const double* x, std::int64_t n);

// Stage models on real inputs: what a kernel with this accumulation and order computes
// (inputs as stored, products fused into the accumulation, result as a double before any
// output rounding). Shapes as in ref::Trace.
std::vector<double> model_qk(const AttentionInputs& in, Accum acc, const SummationOrder& order,
                             bool apply_scale = true);
std::vector<double> model_pv(const AttentionInputs& in, const std::vector<double>& probs,
                             Accum acc, const SummationOrder& order);

// The fused and split_kv decode kernels emulated in the accumulation format. For each query,
// the span [window_start(0), seq_len) is cut into runs of `split_len` positions from its start;
// in each run, row-group r of `rows` takes positions r, r + rows, ... and keeps an online softmax
// (running max in fp32; running sum and output in the accumulation format, both rescaled by
// exp(old max - new max) when the max grows; each key's weight exp(s - max) evaluated in fp32 and
// rounded to the format; s = fp32(dot) * scale, the dot in the `dot` order). Row-groups merge by
// an ascending tree, each side scaled by its exp(m - max); a run's output is acc / sum in the
// format, its lse = max + log(sum) in fp32; runs combine in fp32 in run order, weighted by
// exp(lse - max lse). out: [batch, q_len, q_heads, head_dim] before output rounding;
// lse: [batch, q_heads, q_len].
void model_decode(const AttentionInputs& in, Accum acc, const SummationOrder& dot, int rows,
                  std::int64_t split_len, std::vector<double>& out, std::vector<double>& lse);

}  // namespace attnscope::model
