// The launch geometry of attnscope's stage kernels, shared by the device code and the host code
// that declares each kernel's summation order: one definition, so the order the precision model
// follows is the order the kernel runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "attnscope/core/problem.hpp"

namespace attnscope::gpu::detail {

// Block sizes.
inline constexpr int kQkThreads = 256;
inline constexpr int kSmThreads = 512;
inline constexpr int kPvThreads = 256;
inline constexpr int kDecThreads = 128;
// pv streams V and its probabilities through shared memory: up to kPvStages tiles of at most
// kPvStageBytes of V in flight.
inline constexpr int kPvStages = 5;
inline constexpr int kPvStageBytes = 8192;

// A lane loads 16 bytes of a row at a time: row_vec elements.
constexpr int row_vec(int elem_bytes) {
  return 16 / elem_bytes;
}
// Lanes holding one row of head_dim elements: the most, up to 16 (so a warp of 32 or 64 holds
// whole rows), a power of two, whose 16-byte words split the row evenly (head_dim 96 in fp16: 4
// lanes of 3 words each).
constexpr int row_lanes(int head_dim, int elem_bytes) {
  const int words = head_dim / row_vec(elem_bytes);
  int lanes = 16;
  while (lanes > 1 && words % lanes != 0) lanes /= 2;
  return lanes;
}
// Row-groups of a block: positions r, r + rows, ... go to row-group r.
constexpr int row_groups(int threads, int head_dim, int elem_bytes) {
  return threads / row_lanes(head_dim, elem_bytes);
}

// Keys per row-group and tile of a kernel that streams rows through shared memory: the QT x TK
// scores of a tile fit the lanes of a row (one score a lane after the reduce-scatter of
// tile_dot.hpp), at most 4, and `rows` x TK rows of `kv` tensors (K alone, V alone, or K and V)
// within `stage_bytes`.
constexpr int tile_keys(int qt, int head_dim, int elem_bytes, int rows, int kv, int stage_bytes) {
  const int lanes = row_lanes(head_dim, elem_bytes);
  int t = 4;
  while (t > 1 && (qt * t > lanes || rows * t * kv * head_dim * elem_bytes > stage_bytes)) t /= 2;
  return t;
}
// Floats a lane holds for each row-sized fragment of its qt queries (q, or an accumulator): what
// sets a kernel's registers and so its resident blocks.
constexpr int lane_query_floats(int qt, int head_dim, int elem_bytes) {
  return qt * (head_dim / row_lanes(head_dim, elem_bytes));
}

// qk streams K through shared memory: kQkStages tiles of at most kQkStageBytes in flight.
inline constexpr int kQkStages = 4;
inline constexpr int kQkStageBytes = 8192;
// Resident qk blocks a multiprocessor (its launch bounds): three where a lane's queries take at
// most 32 floats, else two.
constexpr int qk_blocks_per_sm(int qt, int head_dim, int elem_bytes) {
  return lane_query_floats(qt, head_dim, elem_bytes) <= 32 ? 3 : 2;
}

// The most queries a tile of the lane kernels holds (8, 4 or 2): at most the lanes of a row
// (each keeps one score of a tile after the reduce-scatter of tile_dot.hpp), and a lane's share
// of their rows within 64 floats: 8 at head_dim 64 and 128, 4 at 256, 2 at 96 and 192 in fp16
// and bf16 (rows of 24 elements a lane; tiles of 4 there spill qk's and pv's registers and pass
// the decode kernel's 48 KiB of static shared memory).
constexpr int lane_query_cap(int head_dim, int elem_bytes) {
  const int lanes = row_lanes(head_dim, elem_bytes), per_lane = head_dim / lanes;
  int qt = 8;
  while (qt > 1 && (qt > lanes || qt * per_lane > 64)) qt /= 2;
  return qt;
}

// Queries per tile: every query of a KV head shares one pass over its K/V rows, and each takes
// registers, so small groups (Llama's 4) use tiles of 4, and no tile passes lane_query_cap.
inline int query_tile(const Problem& p) {
  const int want = p.group() * p.q_len <= 4 ? 4 : 8;
  const int cap = lane_query_cap(p.head_dim, static_cast<int>(size_of(p.input)));
  return want < cap ? want : cap;
}

// softmax reads 4 scores a thread at a time where every row is 16-byte aligned.
constexpr int softmax_vec(std::int64_t window) {
  return window % 4 == 0 ? 4 : 1;
}

// Positions every query of a row of queries touches: the window plus q_len - 1.
inline std::int64_t span_of(const Problem& p) {
  return p.window + p.q_len - 1;
}

// Window splits that fill a device of `multiprocessors`: as many as fit in one wave of two blocks
// per multiprocessor (rounded down: one more split than fits starts a second, mostly idle wave,
// which the tune run measured at 1.2x to 1.45x the best count), at least `min_len` positions
// each, at most 65535 (the grid limit).
inline int auto_splits(const Problem& p, int multiprocessors, std::int64_t min_len) {
  const std::int64_t tiles =
      (std::int64_t(p.group()) * p.q_len + query_tile(p) - 1) / query_tile(p);
  const std::int64_t blocks = std::int64_t(p.batch) * p.kv_heads * tiles;
  const std::int64_t want = 2LL * multiprocessors / blocks;
  const std::int64_t by_len = span_of(p) / min_len;
  const std::int64_t most = by_len < 1 ? 1 : (by_len > 65535 ? 65535 : by_len);
  return static_cast<int>(want < 1 ? 1 : (want > most ? most : want));
}
inline constexpr std::int64_t kPvMinSplitLen = 128;

// fused and split_kv (decode_kernel.hpp). A block of kDecThreads holds every query of a tile
// (all query heads of a GQA group where they fit) and streams its part of the window through
// shared memory in tiles: each row-group takes decode_tile_keys consecutive rows of its own
// (positions r, r + rows, ...), kDecStages tiles in flight.
inline constexpr int kDecStages = 3;
// An fp8 cache's tiles hold half the bytes: five in flight (within 48 KiB of static shared memory
// with their per-token scales).
inline constexpr int kDecStagesFp8 = 5;
inline constexpr int kDecStageBytes = 16384;  // K and V bytes of one tile, at most

// The matrix-instruction decode kernel (decode_mma.hpp): the dots and the weighted sum done as
// matrix products rather than lane by lane, on NVIDIA GPUs (mma.sync, compute capability 8.0 and
// later), fp16 q and cache, fp32 accumulation, head_dim 64, 96, 128 and 192, at every count of
// queries a KV head. A block holds kMmaNarrowQueries or kMmaQueries queries (the instructions'
// columns or rows) and its 4 warps take 16 positions each of every tile of kMmaKeys.
#if defined(ATTNSCOPE_PLATFORM_CUDA)
inline constexpr bool kMmaDecodePlatform = true;
#else
inline constexpr bool kMmaDecodePlatform = false;
#endif
inline constexpr int kMmaQueries = 16;
// Up to 8 queries a KV head the block holds 8, as the instructions' columns (decode_mma8_kernel),
// down to one (MHA): the kernel streams the same bytes as the lane kernel and its dots cost
// nothing next to them. On the H200 (results/nvidia-h200/mma_group1_fnuz_tile), with one or two
// queries a KV head it ran faster than the lane kernel on every shape timed: Phi-3-mini (MHA,
// head_dim 96) b16 x 4K 209.3 against 241.4 us, 32 heads MHA b8 x 8K 237.5 against 246.1 us.
inline constexpr int kMmaNarrowQueries = 8;
inline constexpr int kMmaKeys = 64;
inline constexpr int kMmaStages = 3;
inline constexpr int kMmaStagesFp8 = 4;  // an fp8 tile is half the bytes: more in flight
// The most bytes of a block's stages: three fp16 tiles at head_dim 128 (at 192, two).
inline constexpr int kMmaStreamBytes = 3 * 32768;
// Resident blocks a multiprocessor (the kernel's launch bounds): two on an fp16 cache (three
// stages of 32 KiB of K and V each), three on an fp8 one (four of 16 KiB; about 168 registers a
// thread).
constexpr int mma_blocks_per_sm(bool fp8) {
  return fp8 ? 3 : 2;
}
// The head_dims it is built for: 128 with any cache; 64, 96 and 192 with an fp16 one. (At 96 an
// fp8 row is 6 chunks of 16 bytes, which V's reads, 4 chunks at a time, do not cover; at 192 a
// block would need more than a third of a multiprocessor's shared memory for the fp8 kernel's
// stages.)
constexpr bool mma_decode_head_dim(int head_dim, bool fp8_cache) {
  return head_dim == 128 || (!fp8_cache && (head_dim == 64 || head_dim == 96 || head_dim == 192));
}
// An fp8 cache takes it with any scale granularity, and with fp16 or bf16 q (bf16 q converted to
// binary16 under a power of two a query: decode_mma.hpp's QBf16).
inline bool decode_uses_mma(const Problem& p) {
  if (p.latent) return false;  // the latent kernel's (decode_mla.hpp)
  if (!kMmaDecodePlatform || p.accum != Accum::fp32) return false;
  if (p.input != DType::fp16 && !(p.input == DType::bf16 && p.kv_fp8)) return false;
  return mma_decode_head_dim(p.head_dim, p.kv_fp8.has_value());
}

// The latent (MLA) decode kernel (decode_mla.hpp): NVIDIA matrix instructions, fp16 or bf16 q
// and cache (or fp16 q and an fp8 cache), fp32 accumulation. A block holds 16 x mla_query_tiles
// queries (of the one latent head), two warps for each 16, and streams tiles of kMlaKeys positions,
// kMlaStages in flight.
inline constexpr int kMlaKeys = 32;
inline constexpr int kMlaStages = 2;
// Tiles of 16 queries a block: the fewest that hold a row of the latent head's queries (heads x
// q_len), up to 4.
inline int mla_query_tiles(const Problem& p) {
  const std::int64_t n = std::int64_t(p.group()) * p.q_len;
  return n <= 16 ? 1 : n <= 32 ? 2 : 4;
}
// Resident blocks a multiprocessor: shared memory (two 36 KiB tiles and 18 KiB of q a tile of
// queries) and registers (about 200 a thread) leave room for two blocks of one or two tiles of
// queries, one of four.
constexpr int mla_blocks_per_sm(int query_tiles) {
  return query_tiles >= 4 ? 1 : 2;
}
// Why the latent kernel does not run a latent problem; empty when it does.
inline std::string mla_support(const Problem& p) {
  if (!kMmaDecodePlatform)
    return "the latent (MLA) decode kernel uses NVIDIA's matrix instructions (mma.sync); an "
           "MFMA port for AMD GPUs is not written";
  if (p.input == DType::fp32)
    return "the latent (MLA) decode kernel reads fp16 or bf16 q and caches (fp32 is not "
           "implemented)";
  if (p.kv_fp8 && p.input != DType::fp16)
    return "the latent (MLA) decode kernel reads fp8 caches with fp16 q (bf16 q with an fp8 "
           "latent cache is not implemented)";
  if (p.kv_fp8 && p.kv_scale == KvScale::token)
    return "the latent (MLA) decode kernel takes fp8 caches with one scale per tensor or KV head: "
           "a per-token V scale folded into the weights could carry their binary16 halves past "
           "binary16's range";
  if (p.accum != Accum::fp32) return "the latent (MLA) decode kernel accumulates in fp32";
  return {};
}

// Queries per block: every query of a KV head's row (group x q_len) up to 8, 4 at head_dim 256;
// kMmaNarrowQueries or kMmaQueries for the matrix-instruction kernels, 16 x mla_query_tiles for
// the latent one.
inline int decode_query_tile(const Problem& p) {
  if (p.latent) return 16 * mla_query_tiles(p);
  if (decode_uses_mma(p))
    return std::int64_t(p.group()) * p.q_len <= kMmaNarrowQueries ? kMmaNarrowQueries : kMmaQueries;
  const std::int64_t n = std::int64_t(p.group()) * p.q_len;
  const int most = lane_query_cap(p.head_dim, static_cast<int>(size_of(p.input)));
  const int qt = n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : 8;
  return qt < most ? qt : most;
}
// Keys per row-group and tile: K and V rows of a tile within kDecStageBytes.
constexpr int decode_tile_keys(int qt, int head_dim, int elem_bytes) {
  return tile_keys(qt, head_dim, elem_bytes, row_groups(kDecThreads, head_dim, elem_bytes), 2,
                   kDecStageBytes);
}
// Resident blocks a multiprocessor the decode kernel is built for (its launch bounds): four where
// a lane's queries and accumulators take at most 32 floats each, else two.
constexpr int decode_blocks_per_sm(int qt, int head_dim, int elem_bytes) {
  return lane_query_floats(qt, head_dim, elem_bytes) <= 32 ? 4 : 2;
}
inline constexpr std::int64_t kDecodeMinSplitLen = 64;
// Blocks a KV head's row of queries takes: group x q_len queries, decode_query_tile a block.
inline std::int64_t decode_query_tiles(const Problem& p) {
  const int qt = decode_query_tile(p);
  return (std::int64_t(p.group()) * p.q_len + qt - 1) / qt;
}
// Positions a decode block streams per tile: decode_tile_keys rows for each row-group.
constexpr int decode_tile_positions(int qt, int head_dim, int elem_bytes) {
  return row_groups(kDecThreads, head_dim, elem_bytes) * decode_tile_keys(qt, head_dim, elem_bytes);
}

// Window splits for fused and split_kv: blocks = batch x kv_heads x query tiles, `slots` =
// resident blocks on the device. None where the blocks fill 80% of the slots. Otherwise the time
// of a launch is modelled, in positions, as
//   waves x (a split's positions rounded up to whole tiles + kDecodeBlockCost) + kDecodeMergeCost x
//   splits
// (a block streams whole tiles; the merge reads every split's partial): the count with the least
// modelled time wins, the smaller on a tie. The two costs were fitted to the tune run's times on
// an H200 (results/nvidia-h200/tuning/): with them the chosen count is within 3% of the best
// measured one on every default shape. Splits hold at least kDecodeMinSplitLen positions, and
// the count stays within the grid limit.
inline constexpr std::int64_t kDecodeBlockCost = 32;
inline constexpr std::int64_t kDecodeMergeCost = 4;
// What both split heuristics model a launch with.
// dense_slots: the blocks decode_auto_splits fills, the resident ones but for an fp8 cache on the
// matrix-instruction kernels: three blocks a multiprocessor fit there, but grids of about two a
// multiprocessor ran faster on the H200 (results/nvidia-h200/fp8_splits/: Llama-3-8B b16 x 32K at
// 2 splits against 3, 2-4% faster; b1 x 32K at 32 against 47, 8%), so that count is chosen as if
// two fit. fill_long: e4m3fnuz, converted by integer operations, whose warps have more
// instructions a tile to hide, takes the splits that fill all resident slots in one wave where
// they stay long (kFillLongSplit positions or more): on the H200 (results/nvidia-h200/fnuz_pairs/)
// Llama-3-8B b16 x 32K ran 6% faster at 3 splits (10923 positions) than at 2, and b1 x 32K 5%
// slower at 47 (697) than at 32. The ragged model keeps the resident count: on the fp8 serving
// batch it picks within 2% of the best count swept.
inline constexpr std::int64_t kFillLongSplit = 8192;
struct DecodeLaunchModel {
  std::int64_t slots;        // resident blocks on the device
  std::int64_t dense_slots;  // the slots decode_auto_splits fills
  std::int64_t span;         // positions of the longest sequence some query attends
  std::int64_t keys;         // positions a block streams per tile
  std::int64_t most;         // the most splits tried
  bool fill_long;            // fill every resident slot where the splits stay long (above)
  DecodeLaunchModel(const Problem& p, int multiprocessors) {
    const int qt = decode_query_tile(p);
    const int eb = static_cast<int>(size_of(p.input));
    const bool mma = decode_uses_mma(p);
    slots = std::int64_t(multiprocessors) * (p.latent ? mla_blocks_per_sm(mla_query_tiles(p))
                                             : mma    ? mma_blocks_per_sm(p.kv_fp8.has_value())
                                                      : decode_blocks_per_sm(qt, p.head_dim, eb));
    dense_slots =
        !p.latent && mma && p.kv_fp8.has_value() ? std::int64_t(multiprocessors) * 2 : slots;
    fill_long = !p.latent && mma && p.kv_fp8 == Fp8Format::e4m3fnuz;
    span = span_of(p);
    keys = p.latent ? kMlaKeys : mma ? kMmaKeys : decode_tile_positions(qt, p.head_dim, eb);
    most = span / kDecodeMinSplitLen;
    if (most > 1024) most = 1024;
    if (most < 1) most = 1;
  }
};

inline int decode_auto_splits(const Problem& p, int multiprocessors) {
  const DecodeLaunchModel m(p, multiprocessors);
  const std::int64_t blocks = std::int64_t(p.batch) * p.kv_heads * decode_query_tiles(p);
  const std::int64_t slots = m.dense_slots, span = m.span, keys = m.keys, most = m.most;
  // No split where the grid already fills most of a wave.
  if (blocks * 5 >= slots * 4) return 1;
  std::int64_t best = 1;
  std::int64_t best_cost = 0;
  for (std::int64_t s = 1; s <= most; ++s) {
    const std::int64_t waves = (blocks * s + slots - 1) / slots;
    const std::int64_t len = ((span + s - 1) / s + keys - 1) / keys * keys;
    const std::int64_t cost = waves * (len + kDecodeBlockCost) + kDecodeMergeCost * s;
    if (s == 1 || cost < best_cost) {
      best = s;
      best_cost = cost;
    }
  }
  if (m.fill_long) {
    const std::int64_t fill = std::min(m.slots / blocks, most);
    if (fill > best && (span + fill - 1) / fill >= kFillLongSplit) best = fill;
  }
  return static_cast<int>(best);
}

// The first split (of split_len positions from span_start, both in the longest sequence's
// positions) that holds a position of a sequence whose position 0 is there at `start` (the
// longest length minus its own): 0 for a sequence that starts at or before the span.
constexpr std::int64_t first_split_at(std::int64_t start, std::int64_t span_start,
                                      std::int64_t split_len) {
  return start > span_start ? (start - span_start) / split_len : 0;
}

// Window splits of a ragged batch (`lens`: the [batch] sequence lengths). Splits cut the longest
// sequence's span; a shorter sequence's positions fall in its last splits, and the grid has no
// block for the splits before its start. The time is modelled, in positions, as the positions of
// the blocks (each rounded up to whole tiles, plus kRaggedBlockCost a block) spread over the
// slots, plus half a split (the tail: blocks that start last), plus the merge as above: long
// sequences are cut into many blocks of one size and short ones into few. The block cost and the
// tail were fitted to a sweep of split counts on the serving batch of the default benchmarks on
// an H200 (results/nvidia-h200/ragged/): the count chosen is the fastest measured there.
inline constexpr std::int64_t kRaggedBlockCost = 150;
inline int decode_auto_splits_ragged(const Problem& p, int multiprocessors,
                                     const std::int64_t* lens) {
  const DecodeLaunchModel m(p, multiprocessors);
  const std::int64_t per_seq = std::int64_t(p.kv_heads) * decode_query_tiles(p);
  const std::int64_t slots = m.slots, span = m.span, keys = m.keys, most = m.most;
  std::int64_t best = 1;
  std::int64_t best_cost = 0;
  for (std::int64_t s = 1; s <= most; ++s) {
    const std::int64_t len = (span + s - 1) / s;
    // Blocks of each sequence: the splits its span [span - own, span) meets.
    std::int64_t positions = 0;
    for (int b = 0; b < p.batch; ++b) {
      const std::int64_t own = lens[b] < span ? lens[b] : span;
      const std::int64_t first = first_split_at(span - lens[b], 0, len);
      positions += ((own + keys - 1) / keys * keys + (s - first) * kRaggedBlockCost) * per_seq;
    }
    const std::int64_t rounded = (len + keys - 1) / keys * keys;
    const std::int64_t cost = (positions + slots - 1) / slots + rounded / 2 + kDecodeMergeCost * s;
    if (s == 1 || cost < best_cost) {
      best = s;
      best_cost = cost;
    }
  }
  return static_cast<int>(best);
}

// Workspace of fused and split_kv at `splits` (decode_kernel.hpp's DecodeWorkspace): partials
// and their log-sum-exps, and (fused) the ticket counters; none without splits.
inline std::size_t decode_workspace_bytes(const Problem& p, int splits, bool tickets) {
  if (splits <= 1) return 0;
  const std::size_t rows = std::size_t(p.batch) * p.q_len * p.q_heads;
  return rows * std::size_t(splits) * (std::size_t(p.value_dim()) + 1) * sizeof(float) +
         (tickets ? std::size_t(p.batch) * std::size_t(decode_query_tiles(p)) *
                        std::size_t(p.kv_heads) * sizeof(unsigned)
                  : 0);
}

}  // namespace attnscope::gpu::detail
