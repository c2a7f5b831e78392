// One attention problem resident on the GPU: inputs uploaded once, every stage's outputs
// allocated, poisoned before a run and checked after it. Used by the accuracy suite, the
// benchmarks and the command line alike, so they exercise the kernels through the same path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attnscope/core/inputs.hpp"
#include "attnscope/core/tensor.hpp"
#include "attnscope/kernels/registry.hpp"
#include "attnscope/kernels/runtime.hpp"

namespace attnscope::gpu {

class DeviceProblem {
 public:
  // Uploads q, the K/V caches and the block table. Throws GpuError on any failed call.
  explicit DeviceProblem(const AttentionInputs& in);

  const Problem& problem() const { return problem_; }
  // Arguments with every device pointer set; workspace sized for `impl` at `splits`.
  StageArgs args(const Implementation& impl, int splits = 0);
  // Fills every output (scores, probs, out, lse) with NaN.
  void poison_outputs();
  // Runs impl and waits for it.
  void run(const Implementation& impl, bool scale_in_softmax = false, int splits = 0);

  // Copies of the outputs: scores/probs [batch, q_heads, q_len, window], out
  // [batch, q_len, q_heads, head_dim] (as stored in problem.output), lse [batch, q_heads, q_len].
  std::vector<double> scores() const;
  std::vector<double> probs() const;
  std::vector<double> out() const;
  std::vector<double> lse() const;
  // Replaces the scores (softmax input) or probs (pv input) with given values, so a stage can be
  // run on exactly the inputs another path produced.
  void set_scores(const std::vector<double>& v);
  void set_probs(const std::vector<double>& v);

  std::size_t input_bytes() const;

 private:
  std::vector<double> download_f32(const DeviceBuffer& b, std::int64_t n) const;
  void upload_f32(DeviceBuffer& b, const std::vector<double>& v);

  Problem problem_;
  KvAddressing kv_host_;
  DeviceBuffer q_, k_, v_, block_table_;
  DeviceBuffer scores_, probs_, out_, lse_, workspace_;
};

}  // namespace attnscope::gpu
