// Host launchers of attnscope's stage kernels (registered in registry.hip).
#pragma once

#include <cstddef>
#include <string>

#include "attnscope/kernels/registry.hpp"
#include "params.hpp"

namespace attnscope::gpu::detail {

void launch_qk(const StageArgs& a);
void launch_softmax(const StageArgs& a);
void launch_pv(const StageArgs& a);
void launch_fused(const StageArgs& a);
void launch_split_kv(const StageArgs& a);

std::string qk_summation_order(const Problem& p);
std::string softmax_summation_order(const Problem& p);
std::string pv_summation_order(const Problem& p, int splits);
std::string decode_summation_order(const Problem& p, int splits);

// Window splits (pv chunks, split_kv splits) that fill the device: about two blocks per
// multiprocessor, at least `min_len` positions each.
int auto_splits(const Problem& p, int q_tile, std::int64_t min_len);
int pv_splits(const Problem& p, int requested);
int split_kv_splits(const Problem& p, int requested);
std::size_t pv_workspace_bytes(const Problem& p, int splits);
std::size_t split_kv_workspace_bytes(const Problem& p, int splits);

}  // namespace attnscope::gpu::detail
