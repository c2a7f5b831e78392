// Faults that can be planted in attnscope's own kernels, to prove that the accuracy gate catches
// each class of bug it exists for. Every kernel template takes a Fault; attnscope's kernels are
// instantiated with Fault::none only, where each hook below compiles to the correct code. The
// fault-injection test (tests/fault_injection) instantiates the others.
#pragma once

#include <cstdint>

#include "attnscope/core/layout.hpp"
#include "attnscope/platform/hip_platform.hpp"

namespace attnscope::gpu::detail {

enum class Fault {
  none,
  gqa_interleaved,      // query head h reads KV head h % kv_heads instead of h / group
  first_key_dropped,    // the first key of each window is left out
  past_window,          // fused: one key before the window is attended too; qk: window shifted down
  no_max_shift,         // softmax without subtracting the maximum (overflows on large logits)
  block_table_ignored,  // a paged cache read as if its pages were in order
  split_dropped,        // split_kv: the combine leaves out the last split
  beyond_seq_len,       // fused: position seq_len is attended too; qk: window shifted up
  missing_barrier,      // a barrier of the row-group merge left out (a race)
  mask_ignored,         // the key mask is not applied: masked keys are attended
  finite_sentinel,      // -5e4 stands for "no key": masked scores, and the online max's start
};

// The keys a single-pass kernel attends: j in [lo, window + hi) of each query's window, j = 0 at
// window_start(t). `shift`: a qk kernel's score j holds the key at window_start(t) + j + shift.
template <Fault F>
struct FaultWindow {
  static constexpr int lo = F == Fault::first_key_dropped ? 1 : F == Fault::past_window ? -1 : 0;
  static constexpr int hi = F == Fault::beyond_seq_len ? 1 : 0;
  static constexpr int shift = F == Fault::past_window ? -1 : F == Fault::beyond_seq_len ? 1 : 0;
};

// The query head of the r-th query head (r < group) a block for KV head kvh serves.
template <Fault F>
__host__ __device__ __forceinline__ int query_head(int kvh, int r, int group, int kv_heads) {
  if constexpr (F == Fault::gqa_interleaved)
    return kvh + r * kv_heads;  // h % kv_heads == kvh
  else
    return kvh * group + r;
}

// Element offset of (batch b, KV head h, position pos) in the cache.
template <Fault F>
__host__ __device__ __forceinline__ std::int64_t kv_offset(const KvAddressing& kv, int b, int h,
                                                           std::int64_t pos) {
  if constexpr (F == Fault::block_table_ignored) {
    if (kv.block_table != nullptr) {
      const std::int64_t page = std::int64_t(b) * kv.pages_per_seq + pos / kv.page_size;
      return kv.layer_offset + page * kv.stride_page + (pos % kv.page_size) * kv.stride_seq +
             std::int64_t(h) * kv.stride_head;
    }
  }
  return kv.offset(b, h, pos);
}

}  // namespace attnscope::gpu::detail
