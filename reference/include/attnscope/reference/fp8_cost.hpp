// What an fp8 KV cache costs the attention output, measured and predicted.
//
// measured: FP64 attention over the dequantized cache (AttentionInputs::k, v: code x scale)
// against FP64 attention over the values before quantization (k_orig, v_orig), as rel_l2.
// predicted: the first-order propagation of each cache element's rounding, every rounding error
// taken as independent, zero-mean and uniform over the fp8 spacing at the element (variance
// spacing^2 / 12, the spacing of x / scale's binade times the scale), but for an element in the
// cell of zero (its error is itself), the element that set its scale (stored exactly, as the
// format's largest value) and the saturated part of an element past the range (counted whole).
// For output (b, t, h, d), with p_j the
// probabilities, c the score scale and out the unquantized output:
//   Var = sum_j p_j^2 [ var(V_jd) + (V_jd - out_d)^2 c^2 sum_e q_e^2 var(K_je) ],
// and predicted rel_l2 = sqrt(sum Var / sum out^2).
#pragma once

#include <vector>

#include "attnscope/core/inputs.hpp"

namespace attnscope::ref {

struct Fp8Cost {
  double measured_rel_l2 = 0.0;
  // The model's expected rel_l2: the cache's rounding errors drawn from the model (each element
  // uniform with the variance below, independently; every query of a KV head sees the same
  // draws, as it reads the same cache), the output recomputed exactly for each draw (the
  // softmax's response to the score errors included, which first order misses once they reach
  // a unit), over `samples` draws.
  double predicted_rel_l2 = 0.0;
  // The spread the model expects of the measurement, as a relative standard deviation of
  // rel_l2 (half that of the squared error, from the draws' spread per KV head, the KV heads
  // independent), the estimate's own sampling error included.
  double predicted_relative_sd = 0.0;
  // The first-order propagation in closed form (see above): close to predicted_rel_l2 where the
  // score errors are small, below it where they are not.
  double linear_rel_l2 = 0.0;
  int samples = 0;
  // FP64 attention's output over the values before quantization ([batch, q_len, q_heads,
  // v_dim]): the reference measured_rel_l2 is taken against, for a kernel's output too.
  std::vector<double> exact_out;
};

// Throws std::invalid_argument unless `in` holds a quantized cache (problem.kv_fp8) and
// samples >= 2.
Fp8Cost fp8_cost(const AttentionInputs& in, int samples = 32, std::uint64_t seed = 20261201);

// The variance the model gives the rounding of element x under scale `scale` (see above).
double fp8_rounding_variance(double x, double scale, Fp8Format f);

}  // namespace attnscope::ref
