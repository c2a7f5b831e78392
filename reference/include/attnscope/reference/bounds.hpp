// Rounding-error bounds per stage, computed from the data. They become accuracy budgets.
//  - gamma_n = n u / (1 - n u): the deterministic bound of recursive summation and dot
//    products (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., sec. 3.1).
//  - gamma~_n(lambda) = exp(lambda sqrt(n) u + n u^2 / (1 - u)) - 1: the probabilistic bound of
//    Higham & Mary (SIAM J. Sci. Comput. 41(5), 2019), holding with probability at least
//    1 - 2n exp(-lambda^2 (1 - u)^2 / 2) for independent, mean-zero rounding errors.
//  - softmax: the shifted algorithm's error analysis of Blanchard, Higham & Higham
//    (IMA J. Numer. Anal. 41(4), 2021), evaluated to first order on the actual data.
#pragma once

#include <cstdint>
#include <vector>

#include "attnscope/core/dtype.hpp"
#include "attnscope/core/inputs.hpp"

namespace attnscope::bounds {

double gamma(std::int64_t n, double u);  // +inf when n u >= 1
double gamma_tilde(std::int64_t n, double u, double lambda);
// 1 - 2 n exp(-lambda^2 (1-u)^2 / 2), clamped to [0, 1].
double hm_confidence(std::int64_t n, double u, double lambda);

inline constexpr double kDefaultLambda = 6.0;

// Absolute error bounds, one per output element, deterministic and probabilistic.
struct ElementBounds {
  std::vector<double> deterministic;
  std::vector<double> probabilistic;
};

struct StageFormats {
  Accum accum = Accum::fp32;   // accumulation format of the sums
  std::int64_t depth = 0;      // rounding chain length (model::summation_depth); 0: window
  DType output = DType::fp32;  // format the stage's result is stored in
  double lambda = kDefaultLambda;
  // qk only (KernelOrder::q_binary16_scaled): each query's row enters the dot as binary16 values
  // of q x 2^e, e = min(126, 142 - E) with E the biased exponent of the row's largest finite |q|
  // (0 where it is zero or subnormal), rounded to nearest even; the dot is accumulated and
  // multiplied by the scale at that scale, then by 2^-e (exact unless the result is subnormal).
  bool q_binary16_scaled = false;
};

// QK scores ([batch, q_heads, q_len, window]): gamma_depth(u_acc) * |scale| * sum |q_i k_i|,
// plus the rounding of the scale multiply and of the output.
ElementBounds qk_bounds(const AttentionInputs& in, const StageFormats& f, bool apply_scale = true);

// Softmax probabilities from given logits (as the stage received them) with an absolute error
// bound on those logits (empty: exact). exp is assumed correctly rounded to within `exp_ulps`
// ulps of the accumulation format.
ElementBounds softmax_bounds(const AttentionInputs& in, const std::vector<double>& logits,
                             double logit_scale, const std::vector<double>& logit_error,
                             const StageFormats& f, double exp_ulps = 2.0);

// P.V output ([batch, q_len, q_heads, v_dim]) from given probabilities and an absolute
// error bound on them (empty: exact): gamma_depth * sum |p_j v_jd| + sum |dp_j| |v_jd| + output.
ElementBounds pv_bounds(const AttentionInputs& in, const std::vector<double>& probs,
                        const std::vector<double>& prob_error, const StageFormats& f);

// lse = max + log(sum) per row ([batch, q_heads, q_len]) from the reference lse and
// probabilities and an absolute error bound on the logits (empty: exact): the sum's relative
// error bound eps at f's depth gives |log(1 + eps)| <= eps / (1 - eps); the float log and add
// add 2 u32 (|lse| + 1).
std::vector<double> lse_bounds(const AttentionInputs& in, const std::vector<double>& lse_ref,
                               const std::vector<double>& probs_ref,
                               const std::vector<double>& logit_error, double logit_scale,
                               const StageFormats& f);

// End-to-end bound of the output of the whole path (unfused or fused with online softmax),
// composing the three stages from the exact scores and probabilities of `in`.
ElementBounds attention_bounds(const AttentionInputs& in, const StageFormats& qk_f,
                               const StageFormats& softmax_f, const StageFormats& pv_f);
// The same from the exact scores and probabilities and the qk bounds, where the caller has them.
ElementBounds attention_bounds(const AttentionInputs& in, const std::vector<double>& scores,
                               const std::vector<double>& probs, const ElementBounds& qk,
                               const StageFormats& softmax_f, const StageFormats& pv_f);

}  // namespace attnscope::bounds
