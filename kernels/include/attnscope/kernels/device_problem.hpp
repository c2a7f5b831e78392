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

// The outputs of the stages, as bit flags: a stage benchmark poisons and checks only what its
// stage writes, and keeps the inputs an earlier stage produced.
enum StageOutput : unsigned {
  kScores = 1u,
  kProbs = 2u,
  kOut = 4u,
  kLse = 8u,
  kAllOutputs = kScores | kProbs | kOut | kLse,
};

class DeviceProblem {
 public:
  // Uploads q, the K/V caches, the block table and the key mask. Throws GpuError on any failed
  // call.
  explicit DeviceProblem(const AttentionInputs& in);
  // Benchmark inputs: q and the whole K/V storage (every layer, spare page and tail slot) filled
  // with N(0, 1) values on the GPU (fill_normal), from `seed`. Not the values make_inputs gives;
  // the accuracy suite keeps to the constructor above.
  // seq_lens: a ragged batch's [batch] lengths, each in [q_len, p.seq_len] (empty: none).
  DeviceProblem(const Problem& p, const KvLayoutSpec& layout, std::uint64_t seed,
                std::vector<std::int64_t> seq_lens = {});

  // Device bytes a problem takes (inputs, every output, the block table), before workspace.
  static std::size_t device_bytes(const Problem& p, const KvLayoutSpec& layout);

  const Problem& problem() const { return problem_; }
  // Arguments with every device pointer set; workspace sized for `impl` at `splits`.
  StageArgs args(const Implementation& impl, int splits = 0);
  // Fills the outputs named by `which` (StageOutput flags; default all) with NaN.
  void poison_outputs(unsigned which = kAllOutputs);
  // NaN values in the outputs named by `which`: after a poisoned run, the elements not written.
  std::int64_t nan_count(unsigned which) const;
  // Runs impl and waits for it.
  void run(const Implementation& impl, bool scale_in_softmax = false, int splits = 0);

  // Copies of the outputs: scores/probs [batch, q_heads, q_len, window], out
  // [batch, q_len, q_heads, v_dim] (as stored in problem.output), lse [batch, q_heads, q_len].
  std::vector<double> scores() const;
  std::vector<double> probs() const;
  std::vector<double> out() const;
  std::vector<double> lse() const;
  // Replaces the scores (softmax input) or probs (pv input) with given values, so a stage can be
  // run on exactly the inputs another path produced.
  void set_scores(const std::vector<double>& v);
  void set_probs(const std::vector<double>& v);

  std::size_t input_bytes() const;
  // The context launches on this device see: its multiprocessor count, and `splits`.
  LaunchContext launch_context(int splits = 0) const;

 private:
  std::vector<double> download_f32(const DeviceBuffer& b, std::int64_t n) const;
  void set_seq_lens(const std::vector<std::int64_t>& lens);  // validates and uploads
  void upload_f32(DeviceBuffer& b, const std::vector<double>& v);

  Problem problem_;
  int multiprocessors_ = 0;
  KvAddressing kv_host_;
  DeviceBuffer q_, k_, v_;
  DeviceBuffer k_scale_, v_scale_;  // fp8 caches: fp32 scales, empty otherwise
  DeviceBuffer block_table_;
  DeviceBuffer scores_, probs_, out_, lse_, workspace_;
  DeviceBuffer key_mask_;  // [batch, seq_len] bytes, empty without a mask
  DeviceBuffer seq_lens_;  // [batch] lengths of a ragged batch, empty otherwise
  std::vector<std::int64_t> host_seq_lens_;
};

}  // namespace attnscope::gpu
