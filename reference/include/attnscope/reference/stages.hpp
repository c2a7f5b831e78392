// High-precision references of every attention stage, templated on the real type:
// double (FP64) and Quad (Boost.Multiprecision binary128, 113-bit significand).
// They read K/V through the same KvAddressing the kernels use. Multi-threaded on the host.
#pragma once

#include <boost/multiprecision/cpp_bin_float.hpp>
#include <vector>

#include "attnscope/core/inputs.hpp"

namespace attnscope::ref {

using Quad = boost::multiprecision::cpp_bin_float_quad;

// Every intermediate of the unfused path, in the shapes the kernels write.
template <class Real>
struct Trace {
  std::vector<Real> scores;  // [batch, q_heads, q_len, window]; scaled; masked keys = -inf
  std::vector<Real> probs;   // [batch, q_heads, q_len, window]; masked keys = 0
  std::vector<Real> lse;     // [batch, q_heads, q_len]; natural log of sum exp(scores)
  std::vector<Real> out;     // [batch, q_len, q_heads, head_dim]
};

// scores[b,h,t,j] = scale * sum_d q[b,t,h,d] * K[b, h / group, window_start(t) + j, d]
// (scale = 1 when apply_scale is false, for the path that scales inside softmax).
template <class Real>
std::vector<Real> qk(const AttentionInputs& in, bool apply_scale = true);

// Row softmax of `logits` ([batch, q_heads, q_len, window]) after multiplying them by
// `logit_scale`, max-shifted. Masked keys (in.key_mask) get probability 0. lse, if given,
// receives log(sum_j exp(logit_scale * logits_j)) per row.
template <class Real>
std::vector<Real> softmax(const AttentionInputs& in, const std::vector<Real>& logits,
                          double logit_scale = 1.0, std::vector<Real>* lse = nullptr);

// out[b,t,h,:] = sum_j probs[b,h,t,j] * V[b, h / group, window_start(t) + j, :]
template <class Real>
std::vector<Real> pv(const AttentionInputs& in, const std::vector<Real>& probs);

// The whole unfused path with every intermediate kept.
template <class Real>
Trace<Real> attention(const AttentionInputs& in);

// End-to-end output and log-sum-exp without materializing scores: streams each row once,
// as the FP64 reference for long windows must (memory and speed).
template <class Real>
void attention_output(const AttentionInputs& in, std::vector<Real>& out, std::vector<Real>& lse);

template <class Real>
std::vector<double> to_double(const std::vector<Real>& v);

}  // namespace attnscope::ref
