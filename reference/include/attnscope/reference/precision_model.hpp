// Precision models: host emulation of an algorithm in its working precision, in a given
// summation order, so the error an accumulation format is expected to give at a window size
// can be told apart from a bug.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attnscope/core/dtype.hpp"
#include "attnscope/core/inputs.hpp"
#include "attnscope/core/order.hpp"

namespace attnscope::model {

// The order vocabulary lives in core (kernels declare their orders with it); the model's
// functions take it under these names.
using ::attnscope::KernelOrder;
using ::attnscope::OrderKind;
using ::attnscope::parse_order;
using ::attnscope::summation_depth;
using ::attnscope::SummationOrder;

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
std::vector<double> model_pv(const AttentionInputs& in, const std::vector<double>& probs, Accum acc,
                             const SummationOrder& order);

// The fused and split_kv decode kernels emulated in the accumulation format. For each query,
// the span [window_start(0), seq_len) is cut into runs of `split_len` positions from its start;
// in each run, row-group r of `rows` takes positions r, r + rows, ... and keeps an online softmax
// (running max in fp32; running sum and output in the accumulation format, both rescaled by
// exp(old max - new max) when the max grows; each key's weight exp(s - max) evaluated in fp32 and
// rounded to the format; s = fp32(dot) * scale, the dot in the `dot` order). Row-groups merge by
// an ascending tree, each side scaled by its exp(m - max); a run's output is acc / sum in the
// format, its lse = max + log(sum) in fp32; runs combine in fp32 in run order, weighted by
// exp(lse - max lse). out: [batch, q_len, q_heads, v_dim] before output rounding;
// lse: [batch, q_heads, q_len].
// With tile > 1 a row-group takes tiles of `tile` consecutive positions (tiles r, r + rows, ...)
// and updates its max once per tile, before the tile's weights (the values order's vec); tile 1
// is the per-key update above, bit for bit.
void model_decode(const AttentionInputs& in, Accum acc, const SummationOrder& dot, int rows,
                  std::int64_t split_len, std::vector<double>& out, std::vector<double>& lse,
                  int tile = 1);

}  // namespace attnscope::model
