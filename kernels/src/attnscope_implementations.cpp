// attnscope's own implementations: what each supports, the scratch it needs, and the summation
// order it uses, registered under "attnscope.<path>".
#include <algorithm>
#include <stdexcept>

#include "attnscope/kernels/runtime.hpp"
#include "stage_kernels.hpp"

namespace attnscope::gpu::detail {

void check_grid(std::int64_t x, std::int64_t y, std::int64_t z, const char* kernel, int threads) {
  if (x < 1 || x > 0x7fffffff || x * threads > 0xffffffffLL || y < 1 || y > 65535 || z < 1 ||
      z > 65535)
    throw GpuError(std::string(kernel) + ": grid " + std::to_string(x) + " x " + std::to_string(y) +
                   " x " + std::to_string(z) + " of " + std::to_string(threads) +
                   " threads exceeds the launch limits");
}

void check_workspace(const StageArgs& a, std::size_t need, const char* kernel) {
  if (a.workspace_bytes > 0 && need > a.workspace_bytes)
    throw GpuError(std::string(kernel) + ": the launch needs " + std::to_string(need) +
                   " bytes of workspace and was given " + std::to_string(a.workspace_bytes) +
                   " (sized with another LaunchContext: the same splits and ragged lengths "
                   "must size it)");
}

void check_page_bytes(const KvAddressing& kv, DType elem, const char* kernel) {
  if (kv.block_table == nullptr) return;
  const auto e = static_cast<std::int64_t>(size_of(elem));
  const std::int64_t page = kv.stride_page * e,
                     rows = std::int64_t(kv.page_size) * kv.stride_seq * e;
  if (page > 0x7fffffffLL || rows > 0x7fffffffLL || page < 0 || rows < 0)
    throw GpuError(std::string(kernel) + ": a page of " +
                   std::to_string(page > rows ? page : rows) +
                   " bytes; pages are addressed in 32 bits (at most 2^31 - 1 bytes)");
}

Grid3 fold_grid(std::int64_t x, std::int64_t y, std::int64_t z, const char* kernel, int threads) {
  const std::int64_t lo = z < 65535 ? z : 65535;
  const std::int64_t hi = lo > 0 ? (z + lo - 1) / lo : 1;
  check_grid(x * hi, y, lo, kernel, threads);
  return {static_cast<unsigned>(x * hi), static_cast<unsigned>(y), static_cast<unsigned>(lo)};
}

namespace {

int splits_for(const Problem& p, const LaunchContext& c, std::int64_t min_len, const char* who) {
  if (c.splits > 0) return static_cast<int>(std::min<std::int64_t>(c.splits, span_of(p)));
  if (c.multiprocessors < 1)
    throw std::invalid_argument(std::string(who) +
                                ": the split count is chosen from the device's multiprocessor "
                                "count, and none was given");
  return auto_splits(p, c.multiprocessors, min_len);
}

int elem_bytes(const Problem& p) {
  return static_cast<int>(size_of(p.input));
}

}  // namespace

namespace {
int decode_splits(const Problem& p, const LaunchContext& c, const char* who) {
  if (c.splits > 0) return static_cast<int>(std::min<std::int64_t>(c.splits, span_of(p)));
  if (c.multiprocessors < 1)
    throw std::invalid_argument(std::string(who) +
                                ": the split count is chosen from the device's multiprocessor "
                                "count, and none was given");
  if (c.seq_lens != nullptr) return decode_auto_splits_ragged(p, c.multiprocessors, c.seq_lens);
  return decode_auto_splits(p, c.multiprocessors);
}
}  // namespace

// A latent cache's pv runs the latent decode kernel's blocks (stage_mla.hip): its splits as
// split_kv's.
int pv_splits(const Problem& p, const LaunchContext& c) {
  if (p.latent) return decode_splits(p, c, "attnscope.pv");
  return splits_for(p, c, kPvMinSplitLen, "attnscope.pv");
}

int split_kv_splits(const Problem& p, const LaunchContext& c) {
  return decode_splits(p, c, "attnscope.split_kv");
}
int fused_splits(const Problem& p, const LaunchContext& c) {
  return decode_splits(p, c, "attnscope.fused");
}

LaunchContext launch_context(const StageArgs& a) {
  LaunchContext c;
  c.splits = a.splits;
  c.seq_lens = a.host_seq_lens;
  // The count the caller sized the workspace with, so the launch splits as it was told.
  if (a.splits <= 0)
    c.multiprocessors = a.multiprocessors > 0 ? a.multiprocessors : multiprocessor_count();
  return c;
}

std::size_t pv_workspace_bytes(const Problem& p, const LaunchContext& c) {
  const int s = pv_splits(p, c);
  return s > 1 ? std::size_t(p.batch) * p.q_len * p.q_heads * s * p.value_dim() * sizeof(float) : 0;
}

std::size_t split_kv_workspace_bytes(const Problem& p, const LaunchContext& c) {
  return decode_workspace_bytes(p, split_kv_splits(p, c), false);
}
std::size_t fused_workspace_bytes(const Problem& p, const LaunchContext& c) {
  return decode_workspace_bytes(p, fused_splits(p, c), true);
}

// Per score: the lane's elements sequentially (two interleaved binary16 accumulators with
// packed fp16 arithmetic), then an ascending butterfly over the lanes of a row.
KernelOrder qk_order(const Problem& p) {
  KernelOrder o;
  if (p.latent) {
    // The latent kernel's scores pass: the dot as in its attention (decode_order).
    o.dot = SummationOrder::mma_of(2, 16);
    o.truncating = true;
    return o;
  }
  o.dot = SummationOrder::warp_tree_of(row_lanes(p.head_dim, elem_bytes(p)), row_vec(elem_bytes(p)),
                                       p.accum == Accum::fp16 ? 2 : 1);
  return o;
}

// One block of kSmThreads per row, softmax_vec scores a thread at a time.
KernelOrder softmax_order(const Problem& p) {
  KernelOrder o;
  o.values = SummationOrder::warp_tree_of(kSmThreads, softmax_vec(p.window));
  return o;
}

// Row-group r of a block takes positions r, r + rows, ... of its split; the row-groups are
// added by an ascending tree, the splits in order.
KernelOrder pv_order(const Problem& p, const LaunchContext& c) {
  KernelOrder o;
  o.splits = pv_splits(p, c);
  o.device_dependent = c.splits <= 0;
  if (p.latent) {
    // The latent kernel's values pass: the weighted sum as in its attention (decode_order), each
    // probability entering as two values of the operands' format; splits added in order.
    o.values = SummationOrder::mma_of(1, 8, (span_of(p) + o.splits - 1) / o.splits);
    o.extra_roundings = p.input == DType::bf16 ? 8 + 256 : 12;
    o.truncating = true;
    return o;
  }
  o.values = SummationOrder::warp_tree_of(row_groups(kPvThreads, p.head_dim, elem_bytes(p)), 1, 1,
                                          (span_of(p) + o.splits - 1) / o.splits);
  return o;
}

// An fp8 cache (cache_read.hpp) adds roundings to each product's chain. fp32 accumulation: one,
// the score multiplier fp32(scale x K scale) (the score multiply itself is a T cache's too), and
// the V scale's multiply, once on each weight or on the output. fp16 accumulation: two, each
// element rounded to fp32 and to binary16 after its scale multiply.
//
// The matrix-instruction kernel (decode_mma.hpp): the dot in head_dim / 16 instructions of 16
// terms each; the weighted sum over the 4 warps' accumulators, 8 positions an instruction, each
// p entering as two binary16 values (the instruction sums 16 products: 8 roundings more in its
// chain, and 4 for the split's error of at most 2^-21 = 4 u), and the instructions' rounding
// taken as possibly toward zero.
KernelOrder decode_order(const Problem& p, int splits) {
  if (p.latent) {
    // The latent kernel (decode_mla.hpp): the dot over 576 channels in instructions of 16, the
    // even ones into one accumulator and the odd into another, then added; the weighted sum in
    // one accumulator a split (a warp holds a query's 256 columns over every position), 8
    // positions an instruction, each p as two values of the operands' format: binary16 (as the
    // matrix-instruction kernel: 12 roundings more) or bfloat16, whose pair carries p to a
    // relative 2^-16 = 256 u (8 + 256 more). (The sum of the weights is shallower than the
    // declared order: each warp's over its halves of the tiles, the pair's two added at the end.)
    KernelOrder o;
    o.dot = SummationOrder::mma_of(2, 16);
    o.splits = splits;
    o.values = SummationOrder::mma_of(1, 8, (span_of(p) + splits - 1) / splits);
    o.extra_roundings = p.input == DType::bf16 ? 8 + 256 : 12;
    o.truncating = true;
    o.fp8_roundings = p.kv_fp8 ? 1 : 0;  // the score multiplier; the V scale on the output
    return o;
  }
  if (decode_uses_mma(p)) {
    // The dot in steps of 16 dimensions into one accumulator, or (the 8-query kernel) the even
    // steps into one and the odd into another, then added.
    KernelOrder o;
    o.dot = SummationOrder::mma_of(decode_query_tile(p) == kMmaNarrowQueries ? 2 : 1, 16);
    o.splits = splits;
    o.values = SummationOrder::mma_of(kDecThreads / 32, 8, (span_of(p) + splits - 1) / splits);
    o.extra_roundings = 12;
    o.truncating = true;
    // The score multiplier, one rounding more per token (fl(fl(scale x log2 e) x K scale)); the
    // V scale on the output, or per token once on a weight (fl(p x V scale x 2^-e)).
    o.fp8_roundings = p.kv_fp8 ? 1 : 0;
    o.q_binary16_scaled = p.input == DType::bf16;  // bf16 q with an fp8 cache (QBf16)
    return o;
  }
  KernelOrder o = qk_order(p);
  o.fp8_roundings = !p.kv_fp8 ? 0 : (p.accum == Accum::fp16 ? 2 : 1);
  o.splits = splits;
  o.values = SummationOrder::warp_tree_of(row_groups(kDecThreads, p.head_dim, elem_bytes(p)), 1, 1,
                                          (span_of(p) + splits - 1) / splits);
  return o;
}

namespace {

// The launch grid's limits, known before any launch: KV heads on y (at most 65535), softmax's
// rows on x (at most 2^31 - 1); batch x query tiles past z's 65535 are carried on x. A problem
// past them is unsupported, so its cases and benchmarks skip with this reason instead of failing
// at launch.
std::string grid_support(Path path, const Problem& p) {
  constexpr std::int64_t kMaxYZ = 65535;
  if (path == Path::softmax) {
    // One block a row; HIP on ROCm counts the grid's threads, fewer than 2^32.
    const std::int64_t rows = std::int64_t(p.batch) * p.q_heads * p.q_len;
    if (rows * kSmThreads > 0xffffffffLL)
      return std::to_string(rows) + " rows of scores exceed the grid's 2^32 threads in x (" +
             std::to_string(kSmThreads) + " a row)";
    return {};
  }
  if (p.kv_heads > kMaxYZ)
    return std::to_string(p.kv_heads) + " KV heads exceed the grid's 65535 blocks in y";
  // batch x query tiles past 65535 are carried on x (fold_grid).
  return {};
}

// What every stage kernel of attnscope supports: every problem and layout the model allows
// within the grid limits, but fp16 accumulation for fp16 inputs only.
std::string attnscope_support(Path path, const Problem& p, const KvLayoutSpec& layout) {
  // softmax reads no cache; qk and pv on a latent cache are the latent kernel's passes.
  if (p.latent && path != Path::softmax) {
    const std::string why = mla_support(p);
    if (!why.empty()) return why;
  }
  if (p.accum == Accum::fp16 && p.input != DType::fp16)
    return "fp16 accumulation is implemented for fp16 inputs only (other inputs would be rounded "
           "to fp16 first)";
  if (layout.kind == KvLayoutKind::paged) {
    // A page holds page_size positions of every KV head (KvLayout); its rows are addressed in
    // 32 bits (check_page_bytes).
    const double page =
        double(layout.page_size) * p.kv_heads * p.head_dim * double(size_of(p.kv_dtype()));
    if (page > 2147483647.0)
      return "a page of " + std::to_string(static_cast<long long>(page)) +
             " bytes: the kernels address a page in 32 bits (at most 2^31 - 1 bytes)";
  }
  return grid_support(path, p);
}

Implementation own(Path path, std::function<void(const StageArgs&)> launch) {
  Implementation i;
  i.name = "attnscope." + std::string(to_string(path));
  i.family = "attnscope";
  i.path = path;
  i.unsupported_reason = [path](const Problem& p, const KvLayoutSpec& layout) {
    return attnscope_support(path, p, layout);
  };
  i.launch = std::move(launch);
  // qk writes a masked key's score as -inf, softmax gives it probability 0, pv and the
  // single-pass paths never read its V.
  i.takes_key_mask = true;
  // Ragged batches: positions before a sequence's start are not attended, and never read.
  i.takes_seq_lens = true;
  return i;
}

}  // namespace

std::vector<Implementation> attnscope_implementations() {
  std::vector<Implementation> v;
  Implementation qk = own(Path::qk, launch_qk);
  qk.takes_latent_cache = true;
  qk.summation_order = [](const Problem& p, const LaunchContext&) { return qk_order(p); };
  v.push_back(std::move(qk));

  Implementation sm = own(Path::softmax, launch_softmax);
  sm.takes_latent_cache = true;  // scores only: what the cache held does not matter to it
  sm.summation_order = [](const Problem& p, const LaunchContext&) { return softmax_order(p); };
  v.push_back(std::move(sm));

  Implementation pv = own(Path::pv, launch_pv);
  pv.takes_latent_cache = true;
  pv.summation_order = pv_order;
  pv.workspace_bytes = pv_workspace_bytes;
  v.push_back(std::move(pv));

  Implementation fused = own(Path::fused, launch_fused);
  fused.summation_order = [](const Problem& p, const LaunchContext& c) {
    KernelOrder o = decode_order(p, fused_splits(p, c));
    o.device_dependent = c.splits <= 0;
    return o;
  };
  fused.workspace_bytes = fused_workspace_bytes;
  fused.takes_fp8_cache = true;
  fused.takes_latent_cache = true;
  v.push_back(std::move(fused));

  Implementation split = own(Path::split_kv, launch_split_kv);
  split.summation_order = [](const Problem& p, const LaunchContext& c) {
    KernelOrder o = decode_order(p, split_kv_splits(p, c));
    o.device_dependent = c.splits <= 0;
    return o;
  };
  split.workspace_bytes = split_kv_workspace_bytes;
  split.takes_fp8_cache = true;
  split.takes_latent_cache = true;
  v.push_back(std::move(split));
  return v;
}

}  // namespace attnscope::gpu::detail
