// The registry of attention-stage implementations. Suites iterate over whatever is registered,
// so an engine's own kernels can be registered beside attnscope's.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "attnscope/core/layout.hpp"
#include "attnscope/core/problem.hpp"

namespace attnscope::gpu {

enum class Stage { qk, softmax, pv, fused, split_kv };
std::string_view to_string(Stage s);
Stage parse_stage(std::string_view s);

// Device pointers and the problem, as a launch sees them. Unused pointers may be null.
struct StageArgs {
  Problem problem;
  const void* q = nullptr;  // [batch, q_len, q_heads, head_dim], problem.input
  const void* k = nullptr;  // K cache addressed by kv (problem.input)
  const void* v = nullptr;  // V cache addressed by kv (problem.input)
  KvAddressing kv;          // block_table, if any, is a device pointer
  float* scores = nullptr;  // [batch, q_heads, q_len, window] fp32: qk writes, softmax reads
  float* probs = nullptr;   // [batch, q_heads, q_len, window] fp32: softmax writes, pv reads
  void* out = nullptr;      // [batch, q_len, q_heads, head_dim], problem.output
  float* lse = nullptr;     // [batch, q_heads, q_len]: softmax, fused and split_kv write it
  bool scale_in_softmax = false;  // qk writes unscaled dots and softmax applies the scale
  void* workspace = nullptr;      // implementation scratch (workspace_bytes)
  int splits = 0;                 // split_kv: number of window splits (0: chosen to fill the GPU)
  void* stream = nullptr;         // hipStream_t; null: the default stream
};

struct Implementation {
  std::string name;  // unique, e.g. "attnscope.qk"
  Stage stage;
  // The summation order the kernel uses, in the words of model::SummationOrder, documented so
  // the precision model can follow it (e.g. "warp_tree(lanes=16,vec=8)").
  std::function<std::string(const Problem&)> summation_order;
  // Empty when supported; otherwise why not (the suites skip with this reason).
  std::function<std::string(const Problem&, KvLayoutKind)> unsupported_reason;
  std::function<std::size_t(const Problem&, int splits)> workspace_bytes;
  std::function<void(const StageArgs&)> launch;  // enqueues; throws GpuError on failure
};

const std::vector<Implementation>& registry();
// Adds an implementation (e.g. an engine's kernel); throws if the name is taken.
void register_implementation(Implementation impl);
std::vector<const Implementation*> implementations(Stage s);

}  // namespace attnscope::gpu
