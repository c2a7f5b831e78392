// The registry of attention implementations. The accuracy suite and the benchmarks are generated
// from whatever is registered, so an engine registers its own kernels beside attnscope's and
// runs them through the same gate and the same benchmarks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "attnscope/core/layout.hpp"
#include "attnscope/core/order.hpp"
#include "attnscope/core/path.hpp"
#include "attnscope/core/problem.hpp"

namespace attnscope::gpu {

// Device pointers and the problem, as a launch sees them. Unused pointers may be null.
struct StageArgs {
  Problem problem;
  const void* q = nullptr;  // [batch, q_len, q_heads, head_dim], problem.input
  const void* k = nullptr;  // K cache addressed by kv (problem.kv_dtype())
  const void* v = nullptr;  // V cache addressed by kv (problem.kv_dtype())
  // fp8 caches (problem.kv_fp8): the fp32 scales of K and V, an element's value being its code's
  // times its scale: [1] (KvScale::tensor), [kv_heads] (head), or (token) one a cache row, at the
  // row's element offset in kv divided by head_dim.
  const float* k_scale = nullptr;
  const float* v_scale = nullptr;
  KvAddressing kv;  // block_table, if any, is a device pointer
  // [batch, seq_len]: 1 = the key at that position is attended, 0 = masked (its score -inf, its
  // probability 0, its V never read). Null: no mask. Given only to implementations that take one.
  const std::uint8_t* key_mask = nullptr;
  // Ragged batches: [batch] sequence lengths in [q_len, problem.seq_len] (device), and the same
  // lengths on the host (for planning the launch). Null: every sequence holds problem.seq_len
  // positions. Sequence b's query t sits at position seq_lens[b] - q_len + t; score column j of
  // its row is position seq_lens[b] - q_len + t + 1 - window + j, and columns before position 0
  // are not attended (score -inf, probability 0). Given only to implementations that take them.
  const std::int64_t* seq_lens = nullptr;
  const std::int64_t* host_seq_lens = nullptr;
  float* scores = nullptr;        // [batch, q_heads, q_len, window] fp32: qk writes, softmax reads
  float* probs = nullptr;         // [batch, q_heads, q_len, window] fp32: softmax writes, pv reads
  void* out = nullptr;            // [batch, q_len, q_heads, v_dim], problem.output
  float* lse = nullptr;           // [batch, q_heads, q_len]: softmax, fused and split_kv write it
  bool scale_in_softmax = false;  // qk writes unscaled dots and softmax applies the scale
  // Implementation scratch of workspace_bytes, zero-filled when allocated; an implementation
  // leaves it as it found it where it keeps state there (attnscope.fused: ticket counters).
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;  // its size where known (0: unknown), checked by attnscope's
  int splits = 0;                   // requested window splits (0: the implementation chooses)
  int multiprocessors = 0;          // of the device launched on (0: the current device's)
  void* stream = nullptr;           // hipStream_t; null: the default stream
};

// What a launch's shape may depend on besides the problem. Implementations that choose a split
// count to fill the device read the multiprocessor count; their order (and so the budget of a
// case) then holds for that device only, and KernelOrder::device_dependent says so. A workspace
// (and an order) must be asked for with the context the launch will see: the same splits and,
// for a ragged batch, the same lengths as StageArgs::host_seq_lens.
struct LaunchContext {
  int multiprocessors = 0;  // of the device the kernel runs on; 0 when unknown
  int splits = 0;           // requested window splits; 0: the implementation chooses
  // Ragged batches: the [batch] sequence lengths (host memory), so that a launch can balance
  // long and short sequences; null when every sequence holds problem.seq_len positions.
  const std::int64_t* seq_lens = nullptr;
};

struct Implementation {
  std::string name;         // unique, e.g. "attnscope.qk", "myengine.decode"
  std::string family;       // e.g. "attnscope": a family's qk -> softmax -> pv is its unfused path
  Path path = Path::fused;  // qk, softmax, pv, fused or split_kv (never unfused)
  // Empty when the implementation runs this problem on this cache layout; otherwise why not.
  // Absent: everything the problem model allows. The suites leave out what is unsupported and
  // say why.
  std::function<std::string(const Problem&, const KvLayoutSpec&)> unsupported_reason;
  // Device scratch a launch needs. Absent: none.
  std::function<std::size_t(const Problem&, const LaunchContext&)> workspace_bytes;
  // The summation orders the kernel uses on a problem. Absent: undeclared, and the budgets
  // assume sequential summation, the deepest order (the loosest budget).
  std::function<KernelOrder(const Problem&, const LaunchContext&)> summation_order;
  // Enqueues the kernel(s) on args.stream; throws (GpuError) on failure.
  std::function<void(const StageArgs&)> launch;
  // fused / split_kv: the kernel writes lse as well as out (checked and timed only then).
  bool writes_lse = true;
  // The kernel honours StageArgs::key_mask. Without, masked cases leave it out, saying so.
  bool takes_key_mask = false;
  // The kernel honours StageArgs::seq_lens (ragged batches). Without, ragged cases leave it out.
  bool takes_seq_lens = false;
  // The kernel reads an fp8 KV cache (Problem::kv_fp8): codes in StageArgs::k and v, scales in
  // StageArgs::k_scale and v_scale. Without, fp8-cache problems are unsupported, saying so.
  bool takes_fp8_cache = false;
  // The kernel reads a latent (MLA) cache (Problem::latent): StageArgs::k and v are the same
  // buffer of head_dim-wide rows (and k_scale and v_scale the same scales), V the first v_dim
  // channels of each row, the output v_dim wide. Without, latent problems are unsupported.
  bool takes_latent_cache = false;

  std::string why_unsupported(const Problem& p, const KvLayoutSpec& layout) const;
  std::size_t workspace(const Problem& p, const LaunchContext& c) const;
  // The declared order, or the sequential default for the parts the path uses.
  KernelOrder order(const Problem& p, const LaunchContext& c) const;
  bool declares_order() const { return static_cast<bool>(summation_order); }
};

// Every implementation, in registration order; attnscope's own come first. References stay
// valid while more are registered.
std::vector<const Implementation*> implementations();
std::vector<const Implementation*> implementations(Path path);
// Adds an implementation (e.g. an engine's kernel). Throws std::invalid_argument when the name
// is empty or taken, the family is empty, the path is unfused, or there is no launch.
const Implementation& register_implementation(Implementation impl);
// The implementation named `name`, or null.
const Implementation* find_implementation(std::string_view name);
// The implementation named `name`; throws std::invalid_argument listing the registered names.
const Implementation& implementation(std::string_view name);
// The stage implementation of a family (qk, softmax or pv), or null.
const Implementation* family_stage(std::string_view family, Path stage);
// The families with all three stages registered: each has an unfused path.
std::vector<std::string> unfused_families();

// Names the suites select by: an implementation's own name, or "<family>.unfused" for a
// family's unfused path.
std::string unfused_name(std::string_view family);

// Selection by name: a comma-separated list of glob patterns (*, ?, [...]) matched against the
// names above; an empty filter matches everything.
class NameFilter {
 public:
  NameFilter() = default;
  explicit NameFilter(std::string_view patterns);  // throws std::invalid_argument on "a,,b"
  bool matches(std::string_view name) const;
  bool empty() const { return patterns_.empty(); }
  const std::vector<std::string>& patterns() const { return patterns_; }

 private:
  std::vector<std::string> patterns_;
};

}  // namespace attnscope::gpu
