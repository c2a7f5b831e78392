// attnscope's stage kernels seen from the host: launchers, split counts and summation orders.
// The orders are built from config.hpp, the same constants the kernels compile with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "attnscope/kernels/registry.hpp"
#include "config.hpp"
#include "params.hpp"

namespace attnscope::gpu::detail {

int multiprocessor_count();
// Grid-dimension guard: y and z are limited to 65535 on every platform, x to 2^31 - 1 blocks and
// (HIP on ROCm counts work-items) fewer than 2^32 threads of `threads` a block.
void check_grid(std::int64_t x, std::int64_t y, std::int64_t z, const char* kernel,
                int threads = 1);
// The grid of x x y x z blocks with the part of z past 65535 carried on x (x x ceil(z / 65535),
// y, min(z, 65535)): the kernel recovers its indices with unfold_block. Throws GpuError where
// even that passes the limits.
struct Grid3 {
  unsigned x, y, z;
};
Grid3 fold_grid(std::int64_t x, std::int64_t y, std::int64_t z, const char* kernel,
                int threads = 1);

void launch_qk(const StageArgs& a);
void launch_softmax(const StageArgs& a);
void launch_pv(const StageArgs& a);
void launch_fused(const StageArgs& a);
void launch_split_kv(const StageArgs& a);
// qk and pv on a latent (MLA) cache: the latent decode kernel's stage passes (stage_mla.hip).
void launch_qk_mla(const StageArgs& a);
void launch_pv_mla(const StageArgs& a);

// Window splits: the requested count (at most one per position), else enough to fill the device.
// Throws std::invalid_argument when the count must be chosen and the context names no device.
int pv_splits(const Problem& p, const LaunchContext& c);
int split_kv_splits(const Problem& p, const LaunchContext& c);
int fused_splits(const Problem& p, const LaunchContext& c);
// The same, for a launch on the current device.
LaunchContext launch_context(const StageArgs& a);

// Throws GpuError when the caller's workspace (StageArgs::workspace_bytes, where it says) is
// smaller than a launch needs: a workspace sized for another split count (a LaunchContext that
// did not carry the ragged lengths the launch sees) would be written past its end.
void check_workspace(const StageArgs& a, std::size_t need, const char* kernel);

std::size_t pv_workspace_bytes(const Problem& p, const LaunchContext& c);
std::size_t split_kv_workspace_bytes(const Problem& p, const LaunchContext& c);
std::size_t fused_workspace_bytes(const Problem& p, const LaunchContext& c);

KernelOrder qk_order(const Problem& p);
KernelOrder softmax_order(const Problem& p);
KernelOrder pv_order(const Problem& p, const LaunchContext& c);
// fused and split_kv: the dot as qk's; the online softmax per row-group, splits merged in order.
KernelOrder decode_order(const Problem& p, int splits);

// attnscope's own implementations, as the registry adds them on first use.
std::vector<Implementation> attnscope_implementations();

}  // namespace attnscope::gpu::detail
