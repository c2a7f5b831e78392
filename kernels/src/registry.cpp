// attnscope's own implementations, registered under "attnscope.<stage>".
#include <algorithm>
#include <mutex>

#include <stdexcept>

#include "attnscope/kernels/runtime.hpp"
#include "stage_kernels.hpp"

namespace attnscope::gpu {

std::string_view to_string(Stage s) {
  switch (s) {
    case Stage::qk: return "qk";
    case Stage::softmax: return "softmax";
    case Stage::pv: return "pv";
    case Stage::fused: return "fused";
    case Stage::split_kv: return "split_kv";
  }
  return "?";
}

Stage parse_stage(std::string_view s) {
  for (Stage st : {Stage::qk, Stage::softmax, Stage::pv, Stage::fused, Stage::split_kv})
    if (to_string(st) == s) return st;
  throw std::invalid_argument("unknown stage '" + std::string(s) +
                              "' (expected qk, softmax, pv, fused or split_kv)");
}

namespace detail {

void check_grid(std::int64_t x, std::int64_t y, std::int64_t z, const char* kernel) {
  if (x < 1 || x > 0x7fffffff || y < 1 || y > 65535 || z < 1 || z > 65535)
    throw GpuError(std::string(kernel) + ": grid " + std::to_string(x) + " x " + std::to_string(y) +
                   " x " + std::to_string(z) + " exceeds the launch limits");
}

int auto_splits(const Problem& p, int q_tile, std::int64_t min_len) {
  const std::int64_t span = p.window + p.q_len - 1;
  const std::int64_t tiles = (std::int64_t(p.group()) * p.q_len + q_tile - 1) / q_tile;
  const std::int64_t blocks = std::int64_t(p.batch) * p.kv_heads * tiles;
  const std::int64_t want = (2LL * multiprocessor_count() + blocks - 1) / blocks;
  const std::int64_t most = std::max<std::int64_t>(1, span / min_len);
  return static_cast<int>(std::clamp<std::int64_t>(want, 1, std::min<std::int64_t>(most, 65535)));
}

std::string qk_summation_order(const Problem& p) {
  const int vec = 16 / static_cast<int>(size_of(p.input));
  const int lpr = lanes_per_row(p);
  return "warp_tree(lanes=" + std::to_string(lpr) + ",vec=" + std::to_string(vec) +
         ",pack=" + (p.accum == Accum::fp16 ? "2" : "1") + ")";
}


std::string softmax_summation_order(const Problem& p) {
  return "warp_tree(lanes=" + std::to_string(kSmThreads) + ",vec=" + (p.window % 4 == 0 ? "4" : "1") + ")";
}


int pv_splits(const Problem& p, int requested) {
  if (requested > 0) return static_cast<int>(std::min<std::int64_t>(requested, p.window + p.q_len - 1));
  return auto_splits(p, query_tile(p), 128);
}

std::size_t pv_workspace_bytes(const Problem& p, int splits) {
  const int s = pv_splits(p, splits);
  return s > 1 ? std::size_t(p.batch) * p.q_len * p.q_heads * s * p.head_dim * sizeof(float) : 0;
}

std::string pv_summation_order(const Problem& p, int splits) {
  const int lpr = lanes_per_row(p);
  const int s = pv_splits(p, splits);
  const std::int64_t span = p.window + p.q_len - 1;
  return "warp_tree(lanes=" + std::to_string(kPvThreads / lpr) + ",vec=1,chunk=" +
         std::to_string((span + s - 1) / s) + ")";
}


int split_kv_splits(const Problem& p, int requested) {
  if (requested > 0) return static_cast<int>(std::min<std::int64_t>(requested, p.window + p.q_len - 1));
  return auto_splits(p, query_tile(p), 256);
}

std::size_t split_kv_workspace_bytes(const Problem& p, int splits) {
  const std::size_t rows = std::size_t(p.batch) * p.q_len * p.q_heads;
  const std::size_t s = static_cast<std::size_t>(split_kv_splits(p, splits));
  return rows * s * (std::size_t(p.head_dim) + 1) * sizeof(float);
}

std::string decode_summation_order(const Problem& p, int splits) {
  // The dot as in qk; the running sum and the output accumulate like pv's chunks, each key
  // rescaled when the running max grows.
  const std::int64_t span = p.window + p.q_len - 1;
  return "dot=" + qk_summation_order(p) + ";values=warp_tree(lanes=" +
         std::to_string(kDecThreads / lanes_per_row(p)) + ",vec=1,chunk=" +
         std::to_string((span + splits - 1) / splits) + ")";
}

namespace {

// Common limits of the stage kernels.
std::string common_reason(const Problem& p, KvLayoutKind) {
  try {
    p.validate();
  } catch (const std::exception& e) {
    return e.what();
  }
  if (p.accum == Accum::fp16 && p.input != DType::fp16)
    return "fp16 accumulation is implemented for fp16 inputs only (other inputs would be rounded "
           "to fp16 first)";
  return {};
}

}  // namespace
}  // namespace detail

namespace {

std::vector<Implementation>& mutable_registry() {
  static std::vector<Implementation> r = [] {
    using namespace detail;
    std::vector<Implementation> v;
    auto none = [](const Problem&, int) { return std::size_t{0}; };
    v.push_back({"attnscope.qk", Stage::qk, qk_summation_order, common_reason, none, launch_qk});
    v.push_back({"attnscope.softmax", Stage::softmax, softmax_summation_order, common_reason, none,
                 launch_softmax});
    v.push_back({"attnscope.pv", Stage::pv, [](const Problem& p) { return pv_summation_order(p, 0); },
                 common_reason, pv_workspace_bytes, launch_pv});
    v.push_back({"attnscope.fused", Stage::fused,
                 [](const Problem& p) { return decode_summation_order(p, 1); }, common_reason, none,
                 launch_fused});
    v.push_back({"attnscope.split_kv", Stage::split_kv,
                 [](const Problem& p) { return decode_summation_order(p, split_kv_splits(p, 0)); },
                 common_reason, split_kv_workspace_bytes, launch_split_kv});
    return v;
  }();
  return r;
}

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

const std::vector<Implementation>& registry() { return mutable_registry(); }

void register_implementation(Implementation impl) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto& r = mutable_registry();
  if (std::any_of(r.begin(), r.end(), [&](const Implementation& i) { return i.name == impl.name; }))
    throw std::invalid_argument("an implementation named '" + impl.name + "' is already registered");
  r.push_back(std::move(impl));
}

std::vector<const Implementation*> implementations(Stage s) {
  std::vector<const Implementation*> out;
  for (const Implementation& i : registry())
    if (i.stage == s) out.push_back(&i);
  return out;
}

}  // namespace attnscope::gpu
