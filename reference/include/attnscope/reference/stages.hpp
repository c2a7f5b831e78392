// High-precision references of every attention stage, templated on the real type:
// double (FP64) and Quad (Boost.Multiprecision binary128, 113-bit significand).
// They read K/V through the same KvAddressing the kernels use. Multi-threaded on the host.
#pragma once

#include <boost/multiprecision/cpp_bin_float.hpp>
#include <cstdint>
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
  std::vector<Real> out;     // [batch, q_len, q_heads, v_dim]
};

// How the references cut the key span [window_start(0), seq_len) of each (batch, kv head):
// `splits` consecutive parts reduced independently (the unit of parallel work), each in pieces
// of at most `chunk` keys; pieces and parts are joined in order by a log-sum-exp merge (rescale
// to the larger max, then add). It depends on the problem only, so results are bit-identical
// whatever the thread count or the KV layout.
struct Blocking {
  int splits = 1;
  std::int64_t chunk = 0;
  // Merges that round, at most, on the way to one output row of attention_output (pv adds its
  // splits-1 partial sums, fewer). Error bounds charge each one rescale and one addition.
  std::int64_t max_merges(const Problem& p) const;
};
Blocking blocking(const Problem& p);

// scores[b,h,t,j] = scale * sum_d q[b,t,h,d] * K[b, h / group, window_start(t) + j, d]
// (scale = 1 when apply_scale is false, for the path that scales inside softmax). Masked keys
// get -inf. The dot product keeps 8 interleaved partial sums joined by a tree, so each term goes
// through at most head_dim/8 + 2 additions, and the scale is applied by one final multiply.
template <class Real>
std::vector<Real> qk(const AttentionInputs& in, bool apply_scale = true);

// Row softmax of `logits` ([batch, q_heads, q_len, window]) after multiplying them by
// `logit_scale`, max-shifted. Masked keys (in.key_mask) get probability 0. lse, if given,
// receives log(sum_j exp(logit_scale * logits_j)) per row. A row with no attended key gets
// probabilities 0 and lse -inf.
template <class Real>
std::vector<Real> softmax(const AttentionInputs& in, const std::vector<Real>& logits,
                          double logit_scale = 1.0, std::vector<Real>* lse = nullptr);

// out[b,t,h,:] = sum_j probs[b,h,t,j] * V[b, h / group, window_start(t) + j, :], masked keys
// left out (their V is never read).
template <class Real>
std::vector<Real> pv(const AttentionInputs& in, const std::vector<Real>& probs);

// The whole unfused path with every intermediate kept.
template <class Real>
Trace<Real> attention(const AttentionInputs& in);

// End-to-end output and log-sum-exp without materializing scores: streams each row once,
// as the FP64 reference for long windows must (memory and speed). Each chunk of keys (Blocking)
// is an exact two-pass softmax (scores, their max, then exp/sum/PV); chunks are joined by merges.
// Rows with no attended key get out 0 and lse -inf. out: [batch, q_len, q_heads, v_dim],
// lse: [batch, q_heads, q_len].
template <class Real>
void attention_output(const AttentionInputs& in, std::vector<Real>& out, std::vector<Real>& lse);

template <class Real>
std::vector<double> to_double(const std::vector<Real>& v);

}  // namespace attnscope::ref
