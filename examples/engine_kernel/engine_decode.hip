// myengine's decode attention: one query per sequence attends the last `window` positions of
// its sequence in the engine's KV cache, which holds every layer in one buffer,
// [layers, batch, capacity, kv_heads, head_dim] (bshd per layer), fp16, head_dim 128.
//
// A block owns one (query head, sequence). Its 4 groups of 32 lanes take keys g, g + 4, ...;
// each lane holds 4 consecutive dimensions, so a dot is 4 fused multiply-adds and a butterfly
// over the 32 lanes. Each group keeps an online softmax (running max, sum, output in fp32);
// the groups are merged by an ascending tree in shared memory.
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "attnscope/kernels/check.hpp"
#include "attnscope/kernels/registry.hpp"
#include "attnscope/platform/hip_platform.hpp"
#include "engine_decode.hpp"

namespace myengine {
namespace {

constexpr int kHeadDim = 128;
constexpr int kLanes = 32;  // lanes per key
constexpr int kDimsPerLane = kHeadDim / kLanes;
constexpr int kGroups = 4;  // key groups per block
constexpr int kThreads = kLanes * kGroups;
static_assert(kLanes == 32,
              "a group of lanes is one warp on NVIDIA: its shuffles use the full mask");

// The engine's cache: [layers, batch, capacity, kv_heads, head_dim].
struct KvCache {
  const __half* k;
  const __half* v;
  int batch;
  int kv_heads;
  std::int64_t capacity;

  __device__ std::int64_t offset(int layer, int b, std::int64_t pos, int h) const {
    return (((std::int64_t(layer) * batch + b) * capacity + pos) * kv_heads + h) * kHeadDim;
  }
};

struct DecodeParams {
  const __half* q;  // [batch, q_heads, head_dim]
  KvCache cache;
  int layer;  // the layer this step reads
  int q_heads;
  std::int64_t seq_len;
  std::int64_t window;
  float scale;
  __half* out;  // [batch, q_heads, head_dim]
  float* lse;   // [batch, q_heads]
};

template <bool kLayer0Bug>
__global__ __launch_bounds__(kThreads) void decode_attention(DecodeParams p) {
  const int h = static_cast<int>(blockIdx.x);
  const int b = static_cast<int>(blockIdx.y);
  const int kvh = h / (p.q_heads / p.cache.kv_heads);
  const int lane = static_cast<int>(threadIdx.x) % kLanes;
  const int g = static_cast<int>(threadIdx.x) / kLanes;
  // The planted bug: the layer offset is left out, so every layer reads layer 0.
  const int layer = kLayer0Bug ? 0 : p.layer;

  float q[kDimsPerLane];
  const __half* qrow = p.q + (std::int64_t(b) * p.q_heads + h) * kHeadDim + lane * kDimsPerLane;
  for (int i = 0; i < kDimsPerLane; ++i) q[i] = __half2float(qrow[i]);

  float m = -INFINITY, l = 0.0f, acc[kDimsPerLane] = {};
  const std::int64_t first = p.seq_len - p.window;
  for (std::int64_t j = g; j < p.window; j += kGroups) {
    const std::int64_t row = p.cache.offset(layer, b, first + j, kvh) + lane * kDimsPerLane;
    float s = 0.0f;
    for (int i = 0; i < kDimsPerLane; ++i) s = fmaf(q[i], __half2float(p.cache.k[row + i]), s);
    for (int mask = 1; mask < kLanes; mask *= 2) s += attnscope::gpu::shfl_xor<kLanes>(s, mask);
    s *= p.scale;
    float w = 1.0f;
    if (s > m) {
      const float alpha = expf(m - s);  // 0 on the first key
      l *= alpha;
      for (int i = 0; i < kDimsPerLane; ++i) acc[i] *= alpha;
      m = s;
    } else {
      w = expf(s - m);
    }
    l += w;
    for (int i = 0; i < kDimsPerLane; ++i)
      acc[i] = fmaf(w, __half2float(p.cache.v[row + i]), acc[i]);
  }

  __shared__ float sm_m[kGroups], sm_l[kGroups], sm_acc[kGroups][kHeadDim];
  for (int i = 0; i < kDimsPerLane; ++i) sm_acc[g][lane * kDimsPerLane + i] = acc[i];
  if (lane == 0) {
    sm_m[g] = m;
    sm_l[g] = l;
  }
  __syncthreads();
  for (int step = 1; step < kGroups; step *= 2) {
    const bool active = g % (2 * step) == 0;
    float mm = 0.0f, new_l = 0.0f;
    if (active) {
      const float m1 = sm_m[g], m2 = sm_m[g + step];
      mm = fmaxf(m1, m2);
      const float f1 = m1 == -INFINITY ? 0.0f : expf(m1 - mm);
      const float f2 = m2 == -INFINITY ? 0.0f : expf(m2 - mm);
      for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane * kDimsPerLane + i;
        sm_acc[g][d] = sm_acc[g][d] * f1 + sm_acc[g + step][d] * f2;
      }
      new_l = sm_l[g] * f1 + sm_l[g + step] * f2;
    }
    __syncthreads();  // every lane of the group has read sm_m and sm_l
    if (active && lane == 0) {
      sm_m[g] = mm;
      sm_l[g] = new_l;
    }
    __syncthreads();
  }
  if (g == 0) {
    __half* orow = p.out + (std::int64_t(b) * p.q_heads + h) * kHeadDim;
    for (int i = 0; i < kDimsPerLane; ++i) {
      const int d = lane * kDimsPerLane + i;
      orow[d] = __float2half_rn(sm_acc[0][d] / sm_l[0]);
    }
    if (lane == 0) p.lse[std::int64_t(b) * p.q_heads + h] = sm_m[0] + logf(sm_l[0]);
  }
}

using attnscope::KvLayoutKind;
using attnscope::KvLayoutSpec;
using attnscope::Problem;

std::string unsupported(const Problem& p, const KvLayoutSpec& layout) {
  if (layout.kind != KvLayoutKind::bshd) return "myengine's cache is bshd";
  if (p.input != attnscope::DType::fp16 || p.output != attnscope::DType::fp16)
    return "fp16 inputs and output only";
  if (p.accum != attnscope::Accum::fp32) return "fp32 accumulation only";
  if (p.head_dim != kHeadDim) return "head_dim 128 only";
  if (p.q_len != 1) return "decode only (q_len 1)";
  return {};
}

// attnscope hands over its arguments; the engine's launch reads what its own code reads: the
// cache buffer with every layer, the layer index and the capacity.
template <bool kLayer0Bug>
void launch(const attnscope::gpu::StageArgs& a) {
  const Problem& p = a.problem;
  const attnscope::KvAddressing& kv = a.kv;
  if (kv.block_table != nullptr || kv.stride_head != kHeadDim ||
      kv.stride_seq != std::int64_t(p.kv_heads) * kHeadDim || kv.stride_batch % kv.stride_seq != 0)
    throw std::invalid_argument("myengine.decode: not a bshd cache");
  const std::int64_t layer_elems = kv.stride_batch * p.batch;
  DecodeParams d{};
  d.q = static_cast<const __half*>(a.q);
  d.cache = {static_cast<const __half*>(a.k), static_cast<const __half*>(a.v), p.batch, p.kv_heads,
             kv.stride_batch / kv.stride_seq};
  d.layer = static_cast<int>(kv.layer_offset / layer_elems);
  d.q_heads = p.q_heads;
  d.seq_len = p.seq_len;
  d.window = p.window;
  d.scale = static_cast<float>(p.effective_scale());
  d.out = static_cast<__half*>(a.out);
  d.lse = a.lse;
  decode_attention<kLayer0Bug><<<dim3(unsigned(p.q_heads), unsigned(p.batch)), kThreads, 0,
                                 static_cast<hipStream_t>(a.stream)>>>(d);
  ATTNSCOPE_CHECK(hipGetLastError());
}

}  // namespace

void register_kernels(bool plant_layer0_bug) {
  attnscope::gpu::Implementation impl;
  impl.name = "myengine.decode";
  impl.family = "myengine";
  impl.path = attnscope::Path::fused;
  impl.unsupported_reason = unsupported;
  // The order the budgets derive from: the dot as 4 sequential products per lane and a
  // butterfly over 32 lanes; the values as 4 groups taking every 4th key, merged by a tree.
  impl.summation_order = [](const Problem& p, const attnscope::gpu::LaunchContext&) {
    attnscope::KernelOrder o;
    o.dot = attnscope::SummationOrder::warp_tree_of(kLanes, kDimsPerLane);
    o.values = attnscope::SummationOrder::warp_tree_of(kGroups, 1, 1, p.window);
    return o;
  };
  impl.launch = plant_layer0_bug ? launch<true> : launch<false>;
  attnscope::gpu::register_implementation(std::move(impl));
}

}  // namespace myengine
