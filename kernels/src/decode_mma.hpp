// fused and split_kv with matrix instructions (config.hpp's decode_uses_mma): the lane-by-lane dots
// and weighted sums of decode_kernel.hpp cost more instructions than the bytes they read where a KV
// head has several queries (a GQA group, or several query positions); as matrix products on the
// tensor cores they do not, and with one query a KV head (MHA) the 8-query kernel below still
// streams the window faster than the lane kernel.
//
// decode_mma_kernel, from 9 queries a KV head (up to 8, decode_mma8_kernel below takes the
// products the other way round, 8 queries a block): a block holds kMmaQueries = 16 queries of a KV
// head (the instructions' rows; rows past the row's queries repeat its first and are never
// written; q in shared memory, read by ldmatrix) and streams its part of the window in tiles of
// kMmaKeys = 64 positions: each warp copies (cp.async) its own 16 consecutive positions of K and V
// into shared memory (WarpRows: on a paged cache a row's page, copied STAGES tiles ahead, and a
// mask byte, loaded a tile ahead, by one lane a row). A row there is its chunks of 16 bytes in
// groups of 8 (head_dim 64, 128 and 192 in fp16: 1, 2 and 3 groups) or 4 (96: 3 groups), each
// group XOR-swizzled by the row. Per tile each warp, on its 16 positions:
//  - S = q K^T (16 x 16, fp32) by mma.m16n8k16 over head_dim in steps of 16 dimensions. The
//    dimensions of a step are taken in a lane-friendly order (any order of a dot's terms is the
//    dot's): lane l's four of step s are 16 s + 4 (l % 4) + {0, 1, 2, 3}, for q and K alike, so
//    a lane reads K with one 8-byte load; the swizzle keeps a warp's loads free of bank
//    conflicts;
//  - scores outside a query's window, the split, the sequence or the mask are -inf; a warp's 16
//    positions that every query of the block attends, with no mask given, skip the tests;
//  - the online softmax per query, in base 2 (the score's multiplier holds log2 e): the tile's
//    max over the warp's positions, alpha = 2^(m_old - m_new) rescaling l and the output,
//    p = 2^(s - m_new) in fp32 (ex2_ftz: within 2 ulps, as the bounds assume); l adds the tile's
//    p's summed by a tree (the lane's four, then over the quad);
//  - O += P V: each p, scaled by 2^15, is carried as the sum of two binary16 values (hi = its
//    rounding, lo = the rounding of the rest: relative error below 2^-21) and both enter one
//    mma.m16n8k16 per 8 positions, hi and lo as its two halves of k, against V's 8 rows twice
//    (ldmatrix.trans gives V's columns).
// The warps' states are merged as decode_kernel's row-groups are (finish_decode_block), with the
// output scaled back by 2^-15.
//
// An fp8 cache (one scale per tensor, KV head or token) is read as codes and converted exactly to
// binary16 (fp8x4_bits_tile, each half of a word taken by the conversion itself): K four codes a
// lane and step (one 4-byte load), V by ldmatrix.trans on code pairs, each word's even and odd
// dimensions' pairs going to two output tiles (the word permuted once to that end where the
// conversion pairs its halves). e4m3fnuz codes convert to 2^-7 times their values by integer
// operations, pairing a word's codes 0, 2 and 1, 3 (q's dimensions ordered to match, q_pairs;
// the factor folded into the score's multiplier and the output's), where a warp's tile holds no
// NaN code, else with NaN in its place
// (fp8_tile_vote): a tile's words are read and voted on before they are converted. The K scale
// joins the score's multiplier and the V scale multiplies the output; per-token scales stream
// with their rows and multiply each key's score and weight (MmaRun, VScaleTop). On an fp8 cache the
// 8-query kernel runs one tile ahead: a tile's dot before the previous tile's softmax and weighted
// sum (stream_tiles_ahead), each tile's arithmetic unchanged.
#pragma once

#include <cstdlib>
#include <string>

#include "decode_kernel.hpp"

namespace attnscope::gpu::detail {

#if defined(ATTNSCOPE_PLATFORM_CUDA)

// 2^x by the special-function unit: exp2f without its fix-up for results below 2^-126, which
// are 0 here. Equal to exp2f (within 2 ulps) elsewhere; a weight or rescale factor below 2^-126
// changes l, whose largest term is 1, by less than 2^-126 a position.
__device__ __forceinline__ float ex2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// How the kernels convert the cache's codes (Fp8Tiles; plain for an fp16 cache).
template <class CR>
constexpr Fp8Tiles mma_tiles() {
  if constexpr (CR::kFp8)
    return kFp8Tiles<CR::kFormat>;
  else
    return Fp8Tiles::plain;
}

// Whether fp8x4_bits_tile pairs a word's codes 0, 2 and 1, 3 (kFp8Interleaved; false for an
// fp16 cache).
template <class CR>
constexpr bool mma_interleaved() {
  if constexpr (CR::kFp8)
    return kFp8Interleaved<CR::kFormat>;
  else
    return false;
}

// q's four elements of dimensions 4 j .. 4 j + 3 (v.x: the first two, v.y: the last two) in the
// order fp8x4_bits_tile gives K's codes: unchanged, or (kInterleaved) dimensions 4 j, + 2 in x
// and 4 j + 1, + 3 in y.
template <bool kInterleaved>
__device__ __forceinline__ uint2 q_pairs(uint2 v) {
  if constexpr (kInterleaved)
    return make_uint2(__byte_perm(v.x, v.y, 0x5410), __byte_perm(v.x, v.y, 0x7632));
  else
    return v;
}

// C: the cache's elements, __half or an fp8 code (cache_read.hpp). kQShared: q in shared memory
// (else in registers, where a block cannot have the memory: launch_decode_mma).
// kToken: an fp8 cache with per-token scales, which each stage holds after its rows.
template <int D, class C = __half, bool kQShared_ = true, bool kToken_ = false>
struct MmaGeom {
  static constexpr bool kQShared = kQShared_;
  static constexpr bool kToken = kToken_;
  using CR = CacheRead<__half, C>;
  static_assert(!kToken || CR::kFp8, "per-token scales are an fp8 cache's");
  static constexpr Fp8Tiles TILES = mma_tiles<CR>();
  static constexpr bool kInterleaved = mma_interleaved<CR>();
  static constexpr float TILE_SCALE = fp8_tile_scale<TILES>;
  static constexpr int EB = CR::EB;                      // bytes of a cache element
  static constexpr int WARPS = kDecThreads / kWarpSize;  // 4
  static constexpr int KEYS = WARPS * 16;                // positions a tile: 16 a warp
  static constexpr int ROW_BYTES = D * EB;               // a row in the cache
  static constexpr int CHUNKS = ROW_BYTES / 16;          // its 16-byte chunks
  // A row's chunks in shared memory are swizzled within groups of GROUP: 8 where a row holds
  // whole groups of 8 (head_dim 64, 128 and 192 in fp16: 1, 2 and 3 groups), else 4 (96 in fp16:
  // 3 groups of 4).
  static constexpr int GROUP = CHUNKS % 8 == 0 ? 8 : 4;
  static constexpr int UNITS = CHUNKS / GROUP;  // groups a row
  static constexpr bool kPow2Row = GROUP == 8 && (UNITS & (UNITS - 1)) == 0;
  // A warp copies 32 chunks (32 / GROUP groups) a pass, its 16 rows in PASSES.
  static constexpr int PASSES = CHUNKS / 2;
  static constexpr int ROWS_BYTES = WARPS * 2 * 16 * ROW_BYTES;  // a stage's rows of K and V
  static constexpr int STAGE_BYTES = ROWS_BYTES + (kToken ? WARPS * 2 * 16 * 4 : 0);
  // Up to kMmaStages (fp8: kMmaStagesFp8) stages, within the 96 KiB of head_dim 128's fp16
  // stream (head_dim 192: two stages of 48 KiB, so that two blocks still fit a multiprocessor).
  static constexpr int STAGES_WANTED = CR::kFp8 ? kMmaStagesFp8 : kMmaStages;
  static constexpr int STAGES = STAGES_WANTED * STAGE_BYTES <= kMmaStreamBytes
                                    ? STAGES_WANTED
                                    : kMmaStreamBytes / STAGE_BYTES;
  static constexpr int STREAM_BYTES = STAGES * STAGE_BYTES;
  // q's 16 rows after the stream, each padded by 16 bytes (ldmatrix's 8 rows then meet 32
  // different banks), its dimensions in the A operand's order (below).
  static constexpr int Q_ROW = D * 2 + 16;
  static constexpr int Q_AT = STREAM_BYTES;
  static constexpr int Q_BYTES = kQShared ? kMmaQueries * Q_ROW : 0;
  static constexpr int SCRATCH_BYTES = MergeScratch<kMmaQueries, WARPS, D>::FLOATS * 4;
  // Paged caches: each warp's ring of the page indices of its rows (WarpRows), RING slots of 16,
  // after q; the merge flag (the last 16 bytes) after it.
  static constexpr int RING = STAGES + 1;
  static constexpr int RING_AT = Q_AT + Q_BYTES;
  static constexpr int RING_BYTES = WARPS * RING * 16 * 4;
  static constexpr int SMEM_BYTES =
      (RING_AT + RING_BYTES > SCRATCH_BYTES ? RING_AT + RING_BYTES : SCRATCH_BYTES) + 16;
  static constexpr int BLOCKS_PER_SM = mma_blocks_per_sm(CR::kFp8);
  static_assert(KEYS == kMmaKeys, "a warp takes 16 positions a tile");
  static_assert(CHUNKS % 4 == 0 && STAGES >= 2,
                "V's chunks are read 4 at a time, and at least one tile is in flight");
  // Byte offset of warp w's row n (of K: kv 0, V: kv 1) in a stage, and of its 16-byte chunk c,
  // chunks XOR-swizzled within their group by the row's swizzle: n % 8 in groups of 8, (n / 2) % 4
  // in groups of 4. Either way the 8 rows n .. n + 7 (n a multiple of 8) put a chunk in 8
  // different 16-byte columns of the 128-byte bank window (groups of 4: the row's 16 x CHUNKS
  // bytes, an odd multiple of 64, alternate the window's halves), so ldmatrix's 8 rows, and a
  // warp's loads from 8 rows, are free of bank conflicts.
  __device__ static int swizzle(int n) { return GROUP == 8 ? (n & 7) : ((n >> 1) & 3); }
  __device__ static int row(int w, int kv, int n) { return ((w * 2 + kv) * 16 + n) * ROW_BYTES; }
  __device__ static int chunk(int w, int kv, int n, int c) {
    return row(w, kv, n) + ((c ^ swizzle(n)) << 4);
  }
  // For c0 < GROUP: chunk(w, kv, n, c0 ^ c1) = (chunk(w, kv, n, c0) ^ ((c1 % GROUP) << 4)) +
  // (c1 / GROUP) x 16 GROUP: rows and stages start at multiples of a group's bytes, below which
  // lie its chunks. So a lane computes one chunk of its row and reaches the others from it
  // (where a row is a power of two of 128-byte groups, by one XOR: their bits lie below the
  // row's).
  static_assert(ROW_BYTES % (16 * GROUP) == 0 && STAGE_BYTES % (16 * GROUP) == 0,
                "rows and stages start at a multiple of a group's bytes");
  static_assert(!kPow2Row || STAGE_BYTES % ROW_BYTES == 0,
                "one XOR reaches a row's chunks where stages start at a multiple of a row");
  __device__ static int other(int at, int c1) {
    if constexpr (kPow2Row)
      return at ^ (c1 << 4);
    else
      return (at ^ ((c1 % GROUP) << 4)) + (c1 / GROUP) * 16 * GROUP;
  }
  // Byte offset of the per-token scale of warp w's row n (of K: kv 0, V: kv 1) in a stage.
  __device__ static int scale(int w, int kv, int n) {
    return ROWS_BYTES + ((w * 2 + kv) * 16 + n) * 4;
  }
};

// Where a warp's rows of K and V are read from, and their copies: the warp's 16 consecutive
// positions of each tile, copied in G::PASSES passes of 32 chunks: in pass x, lane l copies chunk
// l % GROUP of the warp's group u = (32 / GROUP) x + l / GROUP, which is group u % UNITS of row
// u / UNITS. A row outside the split, before a ragged
// sequence's start or masked out is not read: its copy writes zeros (its p is 0, but 0 x a NaN the
// cache may hold there would be NaN).
//  - Contiguous caches: each copying lane steps its own rows' byte offsets by a tile's positions.
//  - Paged caches: lane l looks up row l % 16 of the tile to be queued next and hands the row's
//    offset to the copying lanes by a shuffle ("not read" is the offset's sign bit). The row's
//    block-table entry is copied into shared memory (cp.async, lanes 0-15, with the tile's rows)
//    G::STAGES tiles before the tile is queued, into the warp's ring of G::RING slots, so that
//    the table's latency hides behind the copies of the tiles between (a load one tile ahead
//    left an fp8 tile, which passes in half an fp16 tile's time, waiting on it). Lanes step the
//    page index and row within the page in 32 bits (tile_dot.hpp's RowStream does the same).
//  - A key mask's byte for each row is loaded one tile ahead.
//  - Per-token scales (G::kToken): lane l copies the K (lanes 0-15) or V scale (16-31) of the row
//    it looks up, row l % 16, into the stage after its rows (a zero where the row is not read).
template <class G>
struct WarpRows {
  static constexpr std::int64_t kNotRead = std::int64_t(-1) - 0x7fffffffffffffffLL;  // sign bit
  // The lane's stage offsets of its chunks of K's rows in the first SW passes: the swizzle of a
  // lane's row n (G::swizzle, periodic in 8 rows) and its group repeat after SW passes (8 rows).
  static constexpr int SW = G::PASSES / 2;
  static_assert(G::PASSES % SW == 0, "the swizzle repeats in whole passes");
  // Paged caches: a row's table entry is copied LA tiles before its tile is queued; the ring's
  // slot for tile n is n % RING, so the entry of tile n + LA goes to the slot tile n - 1 used.
  static constexpr int LA = G::STAGES, RING = G::RING;
  static_assert(RING == LA + 1, "the entry copied at a queue takes the previous tile's slot");
  int dst[SW];
  int lgroup, crow, cchunk;  // lane / GROUP; the lane's row and chunk in pass 0
  std::int64_t q_end;        // c1 + shift, at least 0: rows at sequence positions below it are read
  std::int64_t next_q;    // the sequence position of the lane's first copied row of the next tile
  std::int64_t next_off;  // contiguous: that row's byte offset in the cache, plus the chunk's
  std::int64_t row_bytes;
  const std::int32_t* table_row;  // paged: the sequence's block-table row; else null
  const std::uint8_t* mask_row;   // the sequence's key-mask row, or null
  // The row this lane looks up (row lane % 16), for the tile to be queued next: its sequence
  // position and (paged) its page's index in the table row, its row within the page; and the
  // same for the tile LA after it, whose table entry is copied next.
  std::int64_t own_q, ahead_q;
  std::int32_t own_index, own_row, ahead_index, ahead_row;
  std::int32_t page_size, step_pages, step_rows;  // a tile's positions: whole pages, rows left
  std::int64_t page_bytes, page_base;
  std::int32_t* ring;  // paged: the warp's ring of table entries, RING slots of 16 rows
  int slot;            // the ring's slot of the tile to be queued next
  int lane16;          // lane % 16: the row this lane looks up
  std::uint8_t keep;   // the looked-up mask byte (1 without a mask)
  // Per-token scales: the tensor of the lane's scale (K's or V's), where the scale goes in a stage,
  // and (contiguous caches) its row's byte offset less next_off.
  const float* scale_src;
  int scale_dst;
  std::int64_t own_delta;
  // first_pos: the longest-sequence position of the warp's first row of the first tile. smem: the
  // block's dynamic shared memory (the ring is at G::RING_AT).
  __device__ WarpRows(const KernelParams& p, int b, int kvh, std::int64_t first_pos,
                      std::int64_t c1, std::int64_t shift, int warp, int lane, void* smem)
      : lgroup(lane / G::GROUP),
        crow(lane / G::CHUNKS),
        cchunk(lane % G::CHUNKS),
        lane16(lane % 16),
        keep(1) {
#pragma unroll
    for (int x = 0; x < SW; ++x) dst[x] = G::chunk(warp, 0, pass_row(x), pass_chunk(x));
    const KvAddressing& kv = p.kv;
    constexpr int E = G::EB;
    q_end = c1 + shift > 0 ? c1 + shift : 0;
    next_q = first_pos + shift + crow;
    own_q = first_pos + shift + lane16;
    row_bytes = kv.stride_seq * E;
    scale_src = lane < 16 ? p.k_scale : p.v_scale;
    scale_dst = G::scale(warp, lane / 16, lane16);
    own_delta = (lane16 - crow) * row_bytes - cchunk * 16;
    mask_row = p.key_mask == nullptr ? nullptr : p.key_mask + std::int64_t(b) * p.seq_len;
    table_row = nullptr;
    next_off = 0;
    if (kv.block_table == nullptr) {
      next_off = kv.offset(b, kvh, 0) * E + next_q * row_bytes + cchunk * 16;
    } else {
      page_size = kv.page_size;
      step_pages = G::KEYS / page_size;
      step_rows = G::KEYS % page_size;
      page_bytes = kv.stride_page * E;
      page_base = (kv.layer_offset + std::int64_t(kvh) * kv.stride_head) * E;
      table_row = kv.block_table + std::int64_t(b) * kv.pages_per_seq;
      ring =
          reinterpret_cast<std::int32_t*>(static_cast<char*>(smem) + G::RING_AT) + warp * RING * 16;
      slot = 0;
      locate(own_q, own_index, own_row);
      // The entries of the first LA tiles, into slots 0 .. LA - 1, waited for here (a group of
      // their own, before the stream's); then the ahead cursor at tile LA.
      ahead_q = own_q;
      ahead_index = own_index;
      ahead_row = own_row;
#pragma unroll 1
      for (int n = 0; n < LA; ++n) {
        copy_entry(n);
        step(ahead_q, ahead_index, ahead_row);
      }
      AsyncCopy::commit();
      AsyncCopy::wait<0>();
      sync_warp();  // lanes 16-31 read the entries lanes 0-15 copied
    }
    look_up();
  }
  // The lane's row of the warp's 16 and its chunk in pass x: group (32 / GROUP) x + lane /
  // GROUP. Where a row is a power of two of 128-byte groups, the row steps by 32 / CHUNKS a pass
  // and the chunk stays.
  static constexpr int UPP = kWarpSize / G::GROUP;  // groups a pass
  __device__ __forceinline__ int pass_row(int x) const {
    if constexpr (G::kPow2Row)
      return x * (kWarpSize / G::CHUNKS) + crow;
    else
      return (UPP * x + lgroup) / G::UNITS;
  }
  __device__ __forceinline__ int pass_chunk(int x) const {
    if constexpr (G::kPow2Row)
      return cchunk;
    else
      return G::GROUP * ((UPP * x + lgroup) % G::UNITS) + cchunk % G::GROUP;
  }
  // Page index and row within the page of sequence position q (rows before the sequence start
  // are never read; their index only has to step).
  __device__ __forceinline__ void locate(std::int64_t q, std::int32_t& index,
                                         std::int32_t& row) const {
    const std::int64_t i = q >= 0 ? q / page_size : -1 - (-1 - q) / page_size;
    index = static_cast<std::int32_t>(i);
    row = static_cast<std::int32_t>(q - i * page_size);
  }
  // A cursor one tile on.
  __device__ __forceinline__ void step(std::int64_t& q, std::int32_t& index,
                                       std::int32_t& row) const {
    q += G::KEYS;
    index += step_pages;
    row += step_rows;
    if (row >= page_size) {
      row -= page_size;
      ++index;
    }
  }
  // Lanes 0-15 copy the table entry of the ahead cursor's row into the ring's slot `at` (zero
  // where the row is not read: queue() tests the row again).
  __device__ __forceinline__ void copy_entry(int at) const {
    if (static_cast<int>(threadIdx.x) % kWarpSize < 16) {
      const bool read = static_cast<std::uint64_t>(ahead_q) < static_cast<std::uint64_t>(q_end);
      AsyncCopy::copy4(ring + at * 16 + lane16, table_row + (read ? ahead_index : 0), read);
    }
  }
  // Loads the looked-up row's mask byte (0 for a row that is not read).
  __device__ __forceinline__ void look_up() {
    const bool read = static_cast<std::uint64_t>(own_q) < static_cast<std::uint64_t>(q_end);
    if (mask_row != nullptr) keep = read ? mask_row[own_q] : 0;
  }
  // Queues the warp's rows of the next tile into stage `st` (K's rows, then V's), then steps to
  // the tile after it and looks its rows up.
  __device__ __forceinline__ void queue(char* st, const void* const (&src)[2]) {
    const bool paged = table_row != nullptr, masked = mask_row != nullptr;
    // Paged: the looked-up row's page, from the ring (-1 where the row is not read).
    std::int32_t own_page = -1;
    if (paged) {
      const bool read = static_cast<std::uint64_t>(own_q) < static_cast<std::uint64_t>(q_end);
      const std::int32_t entry = ring[slot * 16 + lane16];
      own_page = read ? entry : -1;
    }
    if constexpr (G::kToken) {
      // The looked-up row's scale: the row's element offset / head_dim (an fp8 element is a byte).
      std::int64_t off = 0;
      bool ok;
      if (paged) {
        ok = own_page >= 0 && keep != 0;
        if (ok) off = page_base + std::int64_t(own_page) * page_bytes + own_row * row_bytes;
      } else {
        ok = static_cast<std::uint64_t>(own_q) < static_cast<std::uint64_t>(q_end) && keep != 0;
        if (ok) off = next_off + own_delta;
      }
      static_assert(G::EB == 1, "a row's scale index is its byte offset / head_dim");
      AsyncCopy::copy4(st + scale_dst, scale_src + static_cast<std::uint64_t>(off) / G::ROW_BYTES,
                       ok);
    }
    auto copy = [&](int pass, std::int64_t off, bool ok) {
      const int at = dst[pass % SW] + (pass / SW) * 8 * G::ROW_BYTES;
#pragma unroll
      for (int kv = 0; kv < 2; ++kv)
        AsyncCopy::copy16(st + at + kv * 16 * G::ROW_BYTES, static_cast<const char*>(src[kv]) + off,
                          ok);
    };
    // The lane's chunk of pass x against its chunk of pass 0, in bytes.
    auto chunk_step = [&](int pass) { return (pass_chunk(pass) - cchunk) * 16; };
    if (paged) {
      std::int64_t own_off = kNotRead;  // the looked-up row's byte offset
      if (own_page >= 0 && keep != 0)
        own_off = page_base + std::int64_t(own_page) * page_bytes + own_row * row_bytes;
#pragma unroll
      for (int pass = 0; pass < G::PASSES; ++pass) {
        const std::int64_t off = shfl_idx(own_off, pass_row(pass));  // lane n looked it up
        // The sign bit cleared: offset 0 where the row is not read.
        copy(pass, (off & 0x7fffffffffffffffLL) + pass_chunk(pass) * 16, off >= 0);
      }
      // The entry of the tile LA on, into the slot of the tile before this one (read at its
      // queue, before this queue's warp barrier).
      copy_entry(slot == 0 ? RING - 1 : slot - 1);
      step(ahead_q, ahead_index, ahead_row);
      slot = slot == RING - 1 ? 0 : slot + 1;
    } else {
      // The rows (of the lane's rows, counted from its row of pass 0) in the sequence and the
      // split: lo <= r < hi.
      const int lo = static_cast<int>(next_q >= 0 ? 0 : next_q > -16 ? -next_q : 16);
      const std::int64_t left = q_end - next_q;
      const int hi = static_cast<int>(left >= 16 ? 16 : left > 0 ? left : 0);
      const unsigned span = static_cast<unsigned>(hi > lo ? hi - lo : 0);
      auto in = [&](int r) { return static_cast<unsigned>(r - lo) < span; };
      if (masked) {
#pragma unroll
        for (int pass = 0; pass < G::PASSES; ++pass) {
          const int r = pass_row(pass) - crow;
          const int kept = shfl_idx(static_cast<int>(keep), pass_row(pass));  // lane n looked it up
          copy(pass, next_off + r * row_bytes + chunk_step(pass), in(r) && kept != 0);
        }
      } else {
#pragma unroll
        for (int pass = 0; pass < G::PASSES; ++pass) {
          const int r = pass_row(pass) - crow;
          copy(pass, next_off + r * row_bytes + chunk_step(pass), in(r));
        }
      }
      next_off += G::KEYS * row_bytes;
    }
    next_q += G::KEYS;
    if (paged) {
      step(own_q, own_index, own_row);
    } else {
      own_q += G::KEYS;
    }
    look_up();
  }
};

// The positions [c0, c1) a block of split `split` streams (split_run).
struct SplitSpan {
  std::int64_t c0, c1;
  __device__ SplitSpan(const KernelParams& p, int split, std::int64_t shift, int keys) {
    split_run(p, split, shift, keys, c0, c1);
  }
};
// What both matrix-instruction kernels set up before the stream, and their stream: the split's
// positions [c0, c1), the positions every query of the block attends (where no key mask is given,
// a warp's 16 positions inside them need no tests), the score's multiplier and the output's, and
// the warp's rows (tile t: positions c0 + KEYS t + 16 warp + n, n = 0 .. 15).
// fp8 caches: one K and one V scale for the block, or per-token scales (G::kToken, below). Scores
// are kept in base 2: x = s x fl(scale x K scale x log2 e), rounded once from double (per token:
// s x fl(fl(scale x log2 e) x the key's K scale), key_mul), and p = 2^(x - m), m the running max
// of x (converted back to base e for the merge, base_e).
template <class G>
struct MmaRun {
  std::int64_t shift;
  SplitSpan span;
  std::int64_t all_lo, all_hi;
  int ntiles;
  bool maskless;
  float score_mul, v_scale;
  // The lane's chunks in a stage (at), the same in both kernels' fragment layouts (lane = 4 g +
  // q4): of K, row g's chunk 0 (fp8: its bytes 4 q4) or q4 / 2 (bytes 8 (q4 % 2)), row g + 8
  // past it; of V, row lane % 8's chunk lane / 8, row 8 + lane % 8 past it.
  int k_lane, v_lane;
  const void* src[2];
  char* stages;
  WarpRows<G> rows;
  __device__ MmaRun(const KernelParams& p, const DecodeBlock& blk, int warp, int lane, void* smem)
      : shift(seq_shift(p, blk.b)),
        span(p, blk.split, shift, G::KEYS),
        rows(p, blk.b, blk.kvh, span.c0 + 16 * warp, span.c1, shift, warp, lane, smem) {
    const std::int64_t c0 = span.c0, c1 = span.c1;
    ntiles = c1 > c0 ? static_cast<int>((c1 - c0 + G::KEYS - 1) / G::KEYS) : 0;
    blk.common_window(p, all_lo, all_hi);
    all_lo = max(all_lo, -shift);
    all_hi = min(all_hi, c1);
    maskless = p.key_mask == nullptr;
    const int g = lane / 4, q4 = lane % 4;
    k_lane = G::CR::kFp8 ? G::chunk(warp, 0, g, 0) + 4 * q4
                         : G::chunk(warp, 0, g, q4 / 2) + (q4 % 2) * 8;
    v_lane = G::chunk(warp, 1, lane % 8, lane / 8);
    src[0] = p.k;
    src[1] = p.v;
    stages = static_cast<char*>(smem);
    double mul = p.scale;
    v_scale = 1.0f;
    if constexpr (G::CR::kFp8 && !G::kToken) {
      mul *= p.k_scale[blk.kvh * p.scale_step];
      v_scale = p.v_scale[blk.kvh * p.scale_step];
    }
    // Codes converted to fp8_tile_scale times their values (e4m3fnuz: 2^-7) give scores that
    // many times theirs: the multiplier takes its inverse (a power of two: exact).
    score_mul = __double2float_rn(mul * 1.4426950408889634) * (1.0f / G::TILE_SCALE);
  }
  // Per-token scales: the multiplier of the scores of the warp's row n of a stage, and that row's
  // V scale.
  __device__ float key_mul(const char* st, int warp, int n) const {
    return __fmul_rn(score_mul, *reinterpret_cast<const float*>(st + G::scale(warp, 0, n)));
  }
  __device__ static float v_scale_of(const char* st, int warp, int n) {
    return *reinterpret_cast<const float*>(st + G::scale(warp, 1, n));
  }
  __device__ char* stage(int t) const { return stages + (t % G::STAGES) * G::STAGE_BYTES; }
  // Tile t's stage as an offset from the stream's start, and the bytes at `lane` (that offset
  // plus a lane's G::chunk of c0) of chunk c0 ^ c1 (MmaGeom's XOR identity).
  __device__ static int stage_at(int t) { return (t % G::STAGES) * G::STAGE_BYTES; }
  __device__ int k_at(int t) const { return stage_at(t) + k_lane; }
  __device__ int v_at(int t) const { return stage_at(t) + v_lane; }
  __device__ const char* at(int lane, int c1) const { return stages + G::other(lane, c1); }
  // An fp8 cache's V words of a tile, all read before any is converted (fp8_tile_plain): matrix
  // i of vw[h][c] is V's rows 8 h .. 8 h + 7, chunk 4 c + i (ldmatrix.trans: for rows 2 q4 and
  // 2 q4 + 1, the codes of dimensions 16 cc + 2 g and + 1, cc = 4 c + i), so that
  // fp8x4_bits_tile's lo is the even dimensions' pair and hi the odd dimensions': permuted to
  // that end where it pairs a word's halves (codes 0, 2 and 1, 3 already are those pairs).
  static constexpr int V_CHUNK_GROUPS = G::CHUNKS / 4;
  __device__ void v_words(int vt, unsigned (&vw)[2][V_CHUNK_GROUPS][4]) const {
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int c = 0; c < V_CHUNK_GROUPS; ++c) {
        ldmatrix_x4_trans(vw[h][c], at(vt, 4 * c) + h * 8 * G::ROW_BYTES);
#pragma unroll
        for (int i = 0; i < 4; ++i)
          if constexpr (!G::kInterleaved) vw[h][c][i] = __byte_perm(vw[h][c][i], 0u, 0x3120);
      }
  }
  // f(std::true_type) where every lane's words w of the warp's tile take fp8x4_bits_tile's kPlain
  // (fp8_tile_plain), else f(std::false_type).
  template <int N, class F>
  __device__ static void convert_with(const unsigned (&w)[N], F&& f) {
    if (fp8_tile_plain<G::TILES>(w))
      f(std::true_type{});
    else
      f(std::false_type{});
  }
  __device__ __forceinline__ void queue(int t) {
    sync_warp();  // the stage was read by other lanes of this warp in the tile before
    rows.queue(stage(t), src);
  }
  // Whether the warp's 16 positions of tile t need no window, sequence, split or mask tests.
  __device__ __forceinline__ bool clean(std::int64_t wpos) const {
    return maskless && wpos >= all_lo && wpos + 16 <= all_hi;
  }
  __device__ static float base_e(float m) {
    return __double2float_rn(double(m) * 0.6931471805599453);
  }
  // Query i's running max (back in base e) and sum of warp `warp` into the merge scratch (each
  // kernel writes its output accumulators there in its own layout).
  template <class MS>
  __device__ static void put_state(const MS& ms, int i, int warp, float m, float l) {
    ms.m[i * G::WARPS + warp] = base_e(m);
    ms.l[i * G::WARPS + warp] = l;
  }
  // The block's end, once every warp's state is in the scratch: merged as the other decode
  // kernels' row-groups are (finish_decode_block; fused's merge flag in the memory's last word),
  // the V scale on the output where one scale serves the block.
  template <class Pol, int QT, int D, bool kSeparate, class OutRow>
  __device__ void finish(const KernelParams& p, const MergeScratch<QT, G::WARPS, D>& ms, void* smem,
                         const DecodeBlock& blk, OutRow out_row_of) const {
    __syncthreads();
    finish_decode_block<Pol, G::WARPS, QT, D, kSeparate, Fault::none>(
        p, ms, reinterpret_cast<unsigned*>(static_cast<char*>(smem) + G::SMEM_BYTES - 16), blk.nq,
        blk.b, blk.split, blk.first, blk.tile, blk.kvh, out_row_of, G::CR::kFp8 && !G::kToken,
        v_scale);
  }
};

// The online max of one query: the tile's max over the warp (tmax) joins m; alpha rescales l and
// the output. Before any attended key m is -inf (then l and o are 0: alpha 0); a row with none yet
// subtracts 0 (msub), so that 2^(-inf - 0) gives 0 for its -inf scores.
__device__ __forceinline__ void mma_online_max(float& m, float tmax, float& msub, float& alpha) {
  const float mn = fmaxf(m, tmax);
  msub = mn == -INFINITY ? 0.0f : mn;
  alpha = ex2_ftz(m - msub);
  m = mn;
}

// Per-token V scales: a weight is p x the key's V scale, which would carry p x 2^15 past
// binary16's range (weight_halves). The weights carry p x fl(V scale x 2^-e) instead, 2^e the
// least power of two at or above every V scale of the warp's rows so far (at least 2^-126; V
// scale x 2^-e is exact, at most 1), so a weight is at most p; when a tile raises e, the output is
// rescaled by 2^(e_old - e_new) with alpha (a power of two: exact but below 2^-126), and at the
// end multiplied by 2^e (`top`). A weight's binary16 halves keep it within a relative 2^-21
// while it is at least 2^-18, that is while p x V scale is at least 2^-18 of 2^e (2^e is within a
// factor 2 of the largest V scale so far); below, within 2^-40 x 2^e absolute.
struct VScaleTop {
  float top = 1.17549435e-38f;  // 2^-126
  float inv = 8.50705917e+37f;  // 2^126
  // The warp's largest V scale of a tile (NaNs left out) raises 2^e to the least power of two at
  // or above it; returns the output's factor 2^(e_old - e_new), 1 where e stays.
  __device__ __forceinline__ float raise(float vmax) {
    if (!(vmax > top)) return 1.0f;
    unsigned bits = __float_as_uint(vmax);
    if ((bits & 0x7fffffu) != 0) bits = (bits & 0x7f800000u) + 0x800000u;
    const float nt = __uint_as_float(bits);
    const float f = __fmul_rn(top, __frcp_rn(nt));
    top = nt;
    inv = __frcp_rn(nt);
    return f;
  }
  // A tile's step, the same in both kernels: v holds the V scales of the lane's positions, the
  // lanes at XOR distances LO, 2 LO, ... below HI the tile's others. Their largest raises 2^e
  // (NaNs and the zeros of rows not read left out), alpha_o[r] becomes alpha[r] x the output's
  // factor, and each v its weight's factor fl(V scale x 2^-e).
  template <int LO, int HI, int N, int R>
  __device__ __forceinline__ void step(float (&v)[N], const float (&alpha)[R],
                                       float (&alpha_o)[R]) {
    float vmax = 0.0f;
#pragma unroll
    for (int i = 0; i < N; ++i) vmax = fmaxf(vmax, v[i]);
#pragma unroll
    for (int x = LO; x < HI; x *= 2) vmax = fmaxf(vmax, shfl_xor(vmax, x));
    const float f = raise(vmax);
#pragma unroll
    for (int r = 0; r < R; ++r) alpha_o[r] = alpha[r] * f;
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] = __fmul_rn(v[i], inv);
  }
};

// Two weights p0, p1 as the binary16 pairs hi (their roundings, x 2^15) and lo (the roundings of
// the rest): hi + lo is each p x 2^15 within a relative 2^-21.
__device__ __forceinline__ void weight_halves(float p0, float p1, unsigned& hi, unsigned& lo) {
  constexpr float kUp = 32768.0f;
  const __half2 ph = __floats2half2_rn(p0 * kUp, p1 * kUp);
  const float2 back = __half22float2(ph);
  const __half2 pl = __floats2half2_rn(p0 * kUp - back.x, p1 * kUp - back.y);
  hi = bits_of_half2(ph);
  lo = bits_of_half2(pl);
}

// Launches a matrix-instruction kernel's blocks of qt queries with `bytes` of dynamic shared
// memory, which each kernel allows itself once (the static of its own launcher: every kernel here
// has the same type).
template <class K>
bool allow_mma_shared_memory(K* kernel, int bytes) {
  ATTNSCOPE_CHECK(hipFuncSetAttributeMaxDynamicSharedMemory(kernel, bytes));
  return true;
}
template <int D, bool kSeparate, class K>
void launch_mma_blocks(const StageArgs& a, K* kernel, int bytes, int qt) {
  launch_decode_blocks<Fault::none, D, kSeparate>(
      a, qt, [&](dim3 grid, const KernelParams& p, hipStream_t st) {
        kernel<<<grid, kDecThreads, bytes, st>>>(p);
      });
}

// Q: q's elements, __half, or Bf16 with an fp8 cache (QBf16).
template <int D, bool kSeparate, class C, class Q, bool kQShared, bool kToken>
__global__ __launch_bounds__(
    kDecThreads,
    MmaGeom<D, C, kQShared, kToken>::BLOCKS_PER_SM) void decode_mma_kernel(KernelParams p) {
#if ATTNSCOPE_MMA
  constexpr bool kQBf16 = std::is_same_v<Q, Bf16>;
  static_assert(kQBf16 || std::is_same_v<Q, __half>, "q is fp16 or bf16");
  using G = MmaGeom<D, C, kQShared, kToken>;
  static_assert(!kQBf16 || G::CR::kFp8, "bf16 q is converted to binary16 for an fp8 cache only");
  using CR = typename G::CR;
  using Pol = AccPolicy<__half, Accum::fp32, D>;
  constexpr int QT = kMmaQueries, W = G::WARPS;
  constexpr float kDown = 1.0f / 32768.0f;  // p x 2^15 in binary16 halves (weight_halves)
  extern __shared__ uint4 smem[];
  const int tid = static_cast<int>(threadIdx.x);
  const int warp = tid / kWarpSize, lane = tid % kWarpSize;
  const int g = lane / 4, q4 = lane % 4;  // fragment row and column pair

  DecodeBlock blk;
  if (!blk.place(p, reinterpret_cast<int*>(smem), QT)) return;
  const int b = blk.b, nq = blk.nq;
  auto out_row_of = [&](int i) { return blk.out_row(p, i); };
  // The window of each of this lane's two rows (g, g + 8; past nq the block's first query's).
  std::int64_t key_lo[2], key_hi[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) blk.window(p, g + 8 * r, key_lo[r], key_hi[r]);
  // q as the A operand of each step of 16 dimensions, in the lane order above: in shared memory,
  // row i's step s holds dimensions 16 s + 4 j, + 1 at columns 2 j, + 1 and 16 s + 4 j + 2, + 3 at
  // columns 2 j + 8, + 9 (j = 0 .. 3; where fp8x4_bits_tile interleaves, 16 s + 4 j, + 2 and
  // 16 s + 4 j + 1, + 3: q_pairs), so that ldmatrix hands each lane its a's; in registers
  // (qreg[s]), the lane's a's of each step. bf16 q is converted on the way (QBf16): in shared
  // memory each row's e is found first (a warp a row) and kept in the row's padding; in registers
  // the four lanes of a row (q4) hold all of it.
  constexpr int STEPS = D / 16;
  char* const qs = reinterpret_cast<char*>(smem) + G::Q_AT;
  auto q_words = [&](int i) {  // query i's row as 4-byte words
    return reinterpret_cast<const unsigned*>(static_cast<const char*>(p.q) +
                                             std::int64_t(out_row_of(i < nq ? i : 0)) * D * 2);
  };
  auto row_e = [&](int i) { return *reinterpret_cast<const int*>(qs + i * G::Q_ROW + D * 2); };
  unsigned qreg[kQShared ? 1 : STEPS][4];
  float qmul[2] = {1.0f, 1.0f};  // bf16 q: 2^-e of the lane's rows g, g + 8
  if constexpr (kQShared) {
    if constexpr (kQBf16) {
      for (int i = warp; i < QT; i += W) {
        const unsigned* row = q_words(i);
        unsigned mx = 0;
        for (int x = lane; x < D / 2; x += kWarpSize) mx = QBf16::abs_max(row[x], mx);
#pragma unroll
        for (int x = 1; x < kWarpSize; x *= 2) mx = max(mx, shfl_xor(mx, x));
        if (lane == 0) *reinterpret_cast<int*>(qs + i * G::Q_ROW + D * 2) = QBf16::exponent(mx);
      }
      __syncthreads();
    }
    for (int x = tid; x < QT * STEPS * 4; x += kDecThreads) {
      const int i = x / (STEPS * 4), s = x / 4 % STEPS, j = x % 4;
      uint2 v = *reinterpret_cast<const uint2*>(q_words(i) + 8 * s + 2 * j);
      if constexpr (kQBf16) {
        const float up = QBf16::up(row_e(i));
        v = make_uint2(QBf16::convert(v.x, up), QBf16::convert(v.y, up));
      }
      v = q_pairs<G::kInterleaved>(v);
      *reinterpret_cast<unsigned*>(qs + i * G::Q_ROW + 32 * s + 4 * j) = v.x;
      *reinterpret_cast<unsigned*>(qs + i * G::Q_ROW + 32 * s + 16 + 4 * j) = v.y;
    }
  } else {
    unsigned mx[2] = {0u, 0u};
#pragma unroll
    for (int s = 0; s < STEPS; ++s)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const uint2 x = q_pairs<G::kInterleaved>(
            *reinterpret_cast<const uint2*>(q_words(g + 8 * r) + 8 * s + 2 * q4));
        qreg[s][r] = x.x;      // dimensions 4 q4, +1: a's columns 2 q4, +1
        qreg[s][2 + r] = x.y;  // dimensions 4 q4 + 2, +3: a's columns 2 q4 + 8, +9
        if constexpr (kQBf16) mx[r] = QBf16::abs_max(x.y, QBf16::abs_max(x.x, mx[r]));
      }
    if constexpr (kQBf16) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
#pragma unroll
        for (int x = 1; x < 4; x *= 2) mx[r] = max(mx[r], shfl_xor(mx[r], x));
        const int e = QBf16::exponent(mx[r]);
        qmul[r] = QBf16::down(e);
        const float up = QBf16::up(e);
#pragma unroll
        for (int s = 0; s < STEPS; ++s) {
          qreg[s][r] = QBf16::convert(qreg[s][r], up);
          qreg[s][2 + r] = QBf16::convert(qreg[s][2 + r], up);
        }
      }
    }
  }
  // This lane's row of ldmatrix's four matrices (rows 0-7, 8-15 at columns 0-7, then at 8-15).
  const char* const qrow_at = qs + (lane % 16) * G::Q_ROW + (lane / 16) * 16;
  // q in shared memory was written by every thread. (place() ends with a barrier of its own where
  // it used the memory, and each warp's stream writes its own rows only: q in registers needs
  // none.)
  if constexpr (kQShared) __syncthreads();
  if constexpr (kQShared && kQBf16) {
#pragma unroll
    for (int r = 0; r < 2; ++r) qmul[r] = QBf16::down(row_e(g + 8 * r));
  }
  // A score of the lane's row r: x the key's multiplier, then (bf16 q) x 2^-e (QBf16).
  auto scaled = [&](float x, int r, float km) {
    x = __fmul_rn(x, km);
    return kQBf16 ? __fmul_rn(x, qmul[r]) : x;
  };

  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  VScaleTop vtop;

  MmaRun<G> run(p, blk, warp, lane, smem);
  const std::int64_t shift = run.shift, c0 = run.span.c0, c1 = run.span.c1;
  const float score_mul = run.score_mul;
  constexpr int HALF = 8 * G::ROW_BYTES;  // rows n + 8 against rows n
  stream_tiles<G::STAGES>(
      run.ntiles, [&](int t) { run.queue(t); },
      [&](int t) {
        sync_warp();  // the warp's rows (and scales) were copied by its lanes
        const char* st = run.stage(t);
        const int kt = run.k_at(t), vt = run.v_at(t);
        // The multiplier of the scores of the lane's columns 8 h + 2 q4 + e.
        float kmul[2][2];
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            if constexpr (kToken)
              kmul[h][e] = run.key_mul(st, warp, 8 * h + 2 * q4 + e);
            else
              kmul[h][e] = score_mul;
          }
        // S for the warp's rows 0..7 (s[0]) and 8..15 (s[1]).
        float s[2][4];
#pragma unroll
        for (int h = 0; h < 2; ++h) s[h][0] = s[h][1] = s[h][2] = s[h][3] = 0.0f;
        auto q_step = [&](int k, unsigned(&qa)[4]) {
          if constexpr (kQShared) {
            ldmatrix_x4(qa, qrow_at + 32 * k);
          } else {
#pragma unroll
            for (int x = 0; x < 4; ++x) qa[x] = qreg[k][x];
          }
        };
        if constexpr (CR::kFp8) {
          // K's row 8 h + g (b's column): the step's 16 codes are chunk k, this lane's four at
          // 4 q4; all of the tile's read before any is converted (fp8_tile_plain).
          unsigned kw[STEPS * 2];
#pragma unroll
          for (int k = 0; k < STEPS; ++k)
#pragma unroll
            for (int h = 0; h < 2; ++h)
              kw[2 * k + h] = *reinterpret_cast<const unsigned*>(run.at(kt, k) + h * HALF);
          auto steps = [&](auto plain) {
#pragma unroll
            for (int k = 0; k < STEPS; ++k) {
              unsigned qa[4];
              q_step(k, qa);
#pragma unroll
              for (int h = 0; h < 2; ++h) {
                unsigned b0, b1;
                fp8x4_bits_tile<CR::kFormat, decltype(plain)::value>(kw[2 * k + h], b0, b1);
                mma_16x8x16(s[h], qa, b0, b1);
              }
            }
          };
          MmaRun<G>::convert_with(kw, steps);
        } else {
#pragma unroll
          for (int k = 0; k < STEPS; ++k) {
            unsigned qa[4];
            q_step(k, qa);
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              // K's row 8 h + g (b's column), chunks 2 k and 2 k + 1.
              const uint2 kw = *reinterpret_cast<const uint2*>(run.at(kt, 2 * k) + h * HALF);
              mma_16x8x16(s[h], qa, kw.x, kw.y);
            }
          }
        }
        // Scores, and the positions outside a row's window or not attended: -inf. A warp's 16
        // positions that every query attends need no test.
        float tmax[2] = {-INFINITY, -INFINITY};
        const std::int64_t wpos = c0 + std::int64_t(t) * G::KEYS + 16 * warp;
        if (run.clean(wpos)) {
#pragma unroll
          for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int x = 0; x < 4; ++x) {
              s[h][x] = scaled(s[h][x], x / 2, kmul[h][x % 2]);
              tmax[x / 2] = fmaxf(tmax[x / 2], s[h][x]);
            }
        } else {
#pragma unroll
          for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const std::int64_t pos = wpos + 8 * h + 2 * q4 + e;
              const bool key_in = pos < c1 && key_attended<Fault::none>(p, b, shift, pos);
#pragma unroll
              for (int r = 0; r < 2; ++r) {
                const bool in = key_in && pos >= key_lo[r] && pos < key_hi[r];
                float& x = s[h][2 * r + e];
                x = in ? scaled(x, r, kmul[h][e]) : -INFINITY;
                tmax[r] = fmaxf(tmax[r], x);
              }
            }
        }
        float alpha[2], msub[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          tmax[r] = fmaxf(tmax[r], shfl_xor(tmax[r], 1));
          tmax[r] = fmaxf(tmax[r], shfl_xor(tmax[r], 2));
          mma_online_max(m[r], tmax[r], msub[r], alpha[r]);
        }
        // Per-token V scales: each weight's factor fl(V scale x 2^-e) (VScaleTop), the output's
        // factor for a raised e joining alpha.
        float vmul[4] = {1.0f, 1.0f, 1.0f, 1.0f};  // [2 h + e]: column 8 h + 2 q4 + e
        float alpha_o[2] = {alpha[0], alpha[1]};
        if constexpr (kToken) {
#pragma unroll
          for (int x = 0; x < 4; ++x)
            vmul[x] = MmaRun<G>::v_scale_of(st, warp, 8 * (x / 2) + 2 * q4 + x % 2);
          vtop.step<1, 4>(vmul, alpha, alpha_o);  // the warp's 16 positions over the lanes q4
        }
        // p = 2^(s - m) (0 where s is -inf), each weight (p, or per token p x vmul) as binary16
        // halves of it x 2^15; the tile's sum of the p's.
        unsigned hi[2][2], lo[2][2];  // [h][row r]: the pair of columns 2 q4, +1
        float tsum[2] = {0.0f, 0.0f};
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            float pv[2];
#pragma unroll
            for (int e = 0; e < 2; ++e) pv[e] = ex2_ftz(s[h][2 * r + e] - msub[r]);  // 0 at -inf
            tsum[r] += pv[0] + pv[1];
            if constexpr (kToken)
              weight_halves(__fmul_rn(pv[0], vmul[2 * h]), __fmul_rn(pv[1], vmul[2 * h + 1]),
                            hi[h][r], lo[h][r]);
            else
              weight_halves(pv[0], pv[1], hi[h][r], lo[h][r]);
          }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          tsum[r] += shfl_xor(tsum[r], 1);
          tsum[r] += shfl_xor(tsum[r], 2);
          l[r] = l[r] * alpha[r] + tsum[r];
        }
        if (!warp_all(alpha_o[0] == 1.0f && alpha_o[1] == 1.0f)) {
#pragma unroll
          for (int n = 0; n < D / 8; ++n) {
            o[n][0] *= alpha_o[0];
            o[n][1] *= alpha_o[0];
            o[n][2] *= alpha_o[1];
            o[n][3] *= alpha_o[1];
          }
        }
        // O += P V, 8 positions a step: a = (hi | lo) of those positions, b = their V rows twice.
        // Matrix i of (h, c): V's rows 8 h .. 8 h + 7, chunk 4 c + i.
        if constexpr (CR::kFp8) {
          // A chunk is 16 codes, read as 8 pairs (MmaRun::v_words). Output tile 2 cc takes the
          // even dimensions, 2 cc + 1 the odd.
          constexpr int CV = MmaRun<G>::V_CHUNK_GROUPS;
          unsigned vw[2][CV][4];
          run.v_words(vt, vw);
          auto products = [&](auto plain) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const unsigned a[4] = {hi[h][0], hi[h][1], lo[h][0], lo[h][1]};
#pragma unroll
              for (int c = 0; c < CV; ++c)
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                  unsigned be, bo;
                  fp8x4_bits_tile<CR::kFormat, decltype(plain)::value>(vw[h][c][i], be, bo);
                  mma_16x8x16(o[2 * (4 * c + i)], a, be, be);
                  mma_16x8x16(o[2 * (4 * c + i) + 1], a, bo, bo);
                }
            }
          };
          MmaRun<G>::convert_with(reinterpret_cast<const unsigned(&)[8 * CV]>(vw), products);
        } else {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const unsigned a[4] = {hi[h][0], hi[h][1], lo[h][0], lo[h][1]};
#pragma unroll
            for (int c = 0; c < G::CHUNKS / 4; ++c) {
              unsigned v[4];
              ldmatrix_x4_trans(v, run.at(vt, 4 * c) + h * HALF);
#pragma unroll
              for (int i = 0; i < 4; ++i) mma_16x8x16(o[4 * c + i], a, v[i], v[i]);
            }
          }
        }
      });
  AsyncCopy::wait<0>();
  __syncthreads();  // every warp is done with the tiles: their memory becomes the merge scratch

  const MergeScratch<QT, W, D> ms(reinterpret_cast<float*>(smem));
  // Per token: x 2^e (VScaleTop). Values of V converted to G::TILE_SCALE times theirs: / that
  // (a power of two: exact).
  const float down = (kToken ? kDown * vtop.top : kDown) * (1.0f / G::TILE_SCALE);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = g + 8 * r;
    if (i < nq) {
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        // Output tile n's columns 2 q4 and 2 q4 + 1: dimensions 8 n + 2 q4 + {0, 1}, or (fp8)
        // 16 (n / 2) + 4 q4 + {0, 2} + n % 2.
        const int d0 = CR::kFp8 ? 16 * (n / 2) + 4 * q4 + n % 2 : 8 * n + 2 * q4;
        const int d1 = CR::kFp8 ? d0 + 2 : d0 + 1;
        ms.acc[(i * W + warp) * D + d0] = o[n][2 * r] * down;
        ms.acc[(i * W + warp) * D + d1] = o[n][2 * r + 1] * down;
      }
      if (q4 == 0) MmaRun<G>::put_state(ms, i, warp, m[r], l[r]);
    }
  }
  run.template finish<Pol, QT, D, kSeparate>(p, ms, smem, blk, out_row_of);
#else
  (void)p;
#endif
}

// Up to kMmaNarrowQueries (8) queries a KV head (GQA groups 1 to 8 at one position), the block
// holds 8 queries and the products are taken the other way round: S^T = K q^T with a warp's 16
// positions as the instruction's 16 rows and the 8 queries as its 8 columns, and
// O^T += V^T P^T with 16 dimensions as the rows. No row is a repeated query, so a warp-tile takes
// half the instructions of the 16-query layout: head_dim / 16 products for S (K's codes converted
// once, as before) and head_dim / 8 for O, 4 weights a lane instead of 8, 32 accumulators.
//  - q is the B operand, in registers: lane (g, q4) holds query g's dimensions 16 s + 4 q4 +
//    {0, 1, 2, 3} of each step s (the lane order of decode_mma_kernel; rows past nq repeat the
//    first query and are never written).
//  - A warp's S^T: lane (g, q4) holds positions g and g + 8 for queries 2 q4 and 2 q4 + 1; a
//    query's max and sum run over the 8 lanes of its column (shuffles over g). The steps of 16
//    dimensions go to two accumulators, the even ones and the odd ones, added at the end (two
//    independent chains of instructions where decode_mma_kernel's two row halves give it two):
//    the dot's declared order is mma(lanes=2,vec=16) here, mma(lanes=1,vec=16) there.
//  - P^T as the B operand of O^T: each 8-position half's weights, as binary16 hi and lo parts of
//    p x 2^15, are the 8 x 8 matrices of S^T's fragment; movmatrix transposes them into B's
//    layout (k = positions: hi in k 0..7, lo in k 8..15, so V^T's 8 positions enter twice, as in
//    decode_mma_kernel). The weighted sum's order is decode_mma_kernel's.
//  - V^T is the A operand: ldmatrix.trans on V's rows gives a lane positions 2 q4, 2 q4 + 1 of
//    one dimension. fp16: output tile t's rows g, g + 8 are dimensions 16 t + g, 16 t + 8 + g.
//    fp8: a word of code pairs, permuted once, holds that pair for an even and an odd dimension;
//    tile t's rows are dimensions 32 (t / 2) + 2 g + t % 2 and that + 16.
__device__ __forceinline__ unsigned movmatrix_trans(unsigned x) {
  unsigned y;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
  return y;
}

template <int D, bool kSeparate, class C, class Q, bool kToken>
__global__ __launch_bounds__(
    kDecThreads,
    MmaGeom<D, C, false, kToken>::BLOCKS_PER_SM) void decode_mma8_kernel(KernelParams p) {
#if ATTNSCOPE_MMA
  constexpr bool kQBf16 = std::is_same_v<Q, Bf16>;
  static_assert(kQBf16 || std::is_same_v<Q, __half>, "q is fp16 or bf16");
  using G = MmaGeom<D, C, false, kToken>;
  static_assert(!kQBf16 || G::CR::kFp8, "bf16 q is converted to binary16 for an fp8 cache only");
  using CR = typename G::CR;
  using Pol = AccPolicy<__half, Accum::fp32, D>;
  constexpr int QT = kMmaNarrowQueries, W = G::WARPS, STEPS = D / 16, OUT_TILES = D / 16;
  constexpr float kDown = 1.0f / 32768.0f;  // p x 2^15 in binary16 halves (weight_halves)
  static_assert(QT == 8, "the queries are the instruction's 8 columns");
  extern __shared__ uint4 smem[];
  const int tid = static_cast<int>(threadIdx.x);
  const int warp = tid / kWarpSize, lane = tid % kWarpSize;
  const int g = lane / 4, q4 = lane % 4;

  DecodeBlock blk;
  if (!blk.place(p, reinterpret_cast<int*>(smem), QT)) return;
  const int b = blk.b, nq = blk.nq;
  auto out_row_of = [&](int i) { return blk.out_row(p, i); };
  // The windows of this lane's two columns (queries 2 q4 and 2 q4 + 1).
  std::int64_t key_lo[2], key_hi[2];
#pragma unroll
  for (int e = 0; e < 2; ++e) blk.window(p, 2 * q4 + e, key_lo[e], key_hi[e]);
  // q as the B operand of each step (qb[k]: query g's dimensions 16 k + 4 q4 .. + 3 in
  // fp8x4_bits_tile's order of K's codes, q_pairs). bf16 q (QBf16): query g's row is held by the
  // lanes q4 of its g; the 2^-e of the lane's columns (queries 2 q4, 2 q4 + 1) come from lanes
  // 8 q4 and 8 q4 + 4.
  unsigned qb[STEPS][2];
  float qmul[2] = {1.0f, 1.0f};
  {
    const unsigned* qrow = reinterpret_cast<const unsigned*>(
        static_cast<const char*>(p.q) + std::int64_t(out_row_of(g < nq ? g : 0)) * D * 2);
    unsigned mx = 0;
#pragma unroll
    for (int k = 0; k < STEPS; ++k) {
      const uint2 x =
          q_pairs<G::kInterleaved>(*reinterpret_cast<const uint2*>(qrow + 8 * k + 2 * q4));
      qb[k][0] = x.x;
      qb[k][1] = x.y;
      if constexpr (kQBf16) mx = QBf16::abs_max(x.y, QBf16::abs_max(x.x, mx));
    }
    if constexpr (kQBf16) {
#pragma unroll
      for (int x = 1; x < 4; x *= 2) mx = max(mx, shfl_xor(mx, x));
      const int e = QBf16::exponent(mx);
      const float up = QBf16::up(e);
#pragma unroll
      for (int k = 0; k < STEPS; ++k) {
        qb[k][0] = QBf16::convert(qb[k][0], up);
        qb[k][1] = QBf16::convert(qb[k][1], up);
      }
#pragma unroll
      for (int c = 0; c < 2; ++c) qmul[c] = QBf16::down(shfl_idx(e, 4 * (2 * q4 + c)));
    }
  }
  // A score of the lane's column (query 2 q4 + c): x the key's multiplier, then (bf16 q) x 2^-e
  // (QBf16).
  auto scaled = [&](float x, int c, float km) {
    x = __fmul_rn(x, km);
    return kQBf16 ? __fmul_rn(x, qmul[c]) : x;
  };

  float o[OUT_TILES][4];
#pragma unroll
  for (int t = 0; t < OUT_TILES; ++t) o[t][0] = o[t][1] = o[t][2] = o[t][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  VScaleTop vtop;

  MmaRun<G> run(p, blk, warp, lane, smem);
  const std::int64_t shift = run.shift, c0 = run.span.c0, c1 = run.span.c1;
  const float score_mul = run.score_mul;
  constexpr int HALF = 8 * G::ROW_BYTES;  // rows n + 8 against rows n
  // S^T of tile t: s[0], s[1] position g, s[2], s[3] position g + 8; queries 2 q4, 2 q4 + 1.
  // Two accumulators, the even steps' and the odd steps' (two independent chains of
  // instructions), added at the end.
  auto dot = [&](int t, float(&s)[4]) {
    const int kt = run.k_at(t);
    float s2[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    if constexpr (CR::kFp8) {
      // K's rows g and g + 8, chunk k of each: this lane's four codes at 4 q4, all of the tile's
      // read before any is converted (fp8_tile_plain).
      unsigned kw[2 * STEPS];
#pragma unroll
      for (int k = 0; k < STEPS; ++k) {
        const char* kp = run.at(kt, k);
        kw[2 * k] = *reinterpret_cast<const unsigned*>(kp);
        kw[2 * k + 1] = *reinterpret_cast<const unsigned*>(kp + HALF);
      }
      auto steps = [&](auto plain) {
#pragma unroll
        for (int k = 0; k < STEPS; ++k) {
          unsigned a[4];
          fp8x4_bits_tile<CR::kFormat, decltype(plain)::value>(kw[2 * k], a[0], a[2]);
          fp8x4_bits_tile<CR::kFormat, decltype(plain)::value>(kw[2 * k + 1], a[1], a[3]);
          mma_16x8x16(s2[k % 2], a, qb[k][0], qb[k][1]);
        }
      };
      MmaRun<G>::convert_with(kw, steps);
    } else {
#pragma unroll
      for (int k = 0; k < STEPS; ++k) {
        // K's rows g and g + 8, chunks 2 k and 2 k + 1.
        const char* kp = run.at(kt, 2 * k);
        const uint2 k0 = *reinterpret_cast<const uint2*>(kp);
        const uint2 k1 = *reinterpret_cast<const uint2*>(kp + HALF);
        const unsigned a[4] = {k0.x, k1.x, k0.y, k1.y};
        mma_16x8x16(s2[k % 2], a, qb[k][0], qb[k][1]);
      }
    }
#pragma unroll
    for (int x = 0; x < 4; ++x) s[x] = s2[0][x] + s2[1][x];
  };
  // The rest of tile t from its scores s: the softmax's step, the weights, O^T += V^T P^T.
  auto rest = [&](int t, float(&s)[4]) {
    const char* st = run.stage(t);
    const int vt = run.v_at(t);
    constexpr int CV = MmaRun<G>::V_CHUNK_GROUPS;
    // The multiplier of the scores of the lane's positions g + 8 h.
    float kmul[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      if constexpr (kToken)
        kmul[h] = run.key_mul(st, warp, g + 8 * h);
      else
        kmul[h] = score_mul;
    }
    float tmax[2] = {-INFINITY, -INFINITY};
    const std::int64_t wpos = c0 + std::int64_t(t) * G::KEYS + 16 * warp;
    if (run.clean(wpos)) {
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        s[x] = scaled(s[x], x % 2, kmul[x / 2]);
        tmax[x % 2] = fmaxf(tmax[x % 2], s[x]);
      }
    } else {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const std::int64_t pos = wpos + g + 8 * h;
        const bool key_in = pos < c1 && key_attended<Fault::none>(p, b, shift, pos);
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const bool in = key_in && pos >= key_lo[e] && pos < key_hi[e];
          float& x = s[2 * h + e];
          x = in ? scaled(x, e, kmul[h]) : -INFINITY;
          tmax[e] = fmaxf(tmax[e], x);
        }
      }
    }
    float alpha[2], msub[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
#pragma unroll
      for (int x = 4; x < 32; x *= 2) tmax[e] = fmaxf(tmax[e], shfl_xor(tmax[e], x));
      mma_online_max(m[e], tmax[e], msub[e], alpha[e]);
    }
    // Per-token V scales: each weight's factor fl(V scale x 2^-e) (VScaleTop), the output's
    // factor for a raised e joining alpha.
    float vmul[2] = {1.0f, 1.0f};
    float alpha_o[2] = {alpha[0], alpha[1]};
    if constexpr (kToken) {
#pragma unroll
      for (int h = 0; h < 2; ++h) vmul[h] = MmaRun<G>::v_scale_of(st, warp, g + 8 * h);
      vtop.step<4, 32>(vmul, alpha, alpha_o);  // positions g, g + 8 over the lanes g
    }
    // Weights (p, or per token p x vmul), their hi and lo binary16 parts (x 2^15) transposed
    // into P^T's B fragments; the tile's sum of the p's.
    unsigned bhi[2], blo[2];
    float tsum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float pv[2];
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        pv[e] = ex2_ftz(s[2 * h + e] - msub[e]);  // 0 at -inf
        tsum[e] += pv[e];
      }
      unsigned hi, lo;
      if constexpr (kToken)
        weight_halves(__fmul_rn(pv[0], vmul[h]), __fmul_rn(pv[1], vmul[h]), hi, lo);
      else
        weight_halves(pv[0], pv[1], hi, lo);
      bhi[h] = movmatrix_trans(hi);
      blo[h] = movmatrix_trans(lo);
    }
#pragma unroll
    for (int e = 0; e < 2; ++e) {
#pragma unroll
      for (int x = 4; x < 32; x *= 2) tsum[e] += shfl_xor(tsum[e], x);
      l[e] = l[e] * alpha[e] + tsum[e];
    }
    if (!warp_all(alpha_o[0] == 1.0f && alpha_o[1] == 1.0f)) {
#pragma unroll
      for (int t2 = 0; t2 < OUT_TILES; ++t2) {
        o[t2][0] *= alpha_o[0];
        o[t2][1] *= alpha_o[1];
        o[t2][2] *= alpha_o[0];
        o[t2][3] *= alpha_o[1];
      }
    }
    // O^T += V^T P^T, one 8-position half at a time. Matrix i of (h, c): V's rows 8 h .. 8 h + 7,
    // chunk 4 c + i.
    if constexpr (CR::kFp8) {
      unsigned vw[2][CV][4];
      run.v_words(vt, vw);
      auto products = [&](auto plain) {
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int c = 0; c < CV; ++c)
#pragma unroll
            for (int u = 0; u < 2; ++u) {
              unsigned e0, o0, e1, o1;
              fp8x4_bits_tile<CR::kFormat, decltype(plain)::value>(vw[h][c][2 * u], e0, o0);
              fp8x4_bits_tile<CR::kFormat, decltype(plain)::value>(vw[h][c][2 * u + 1], e1, o1);
              const unsigned ev[4] = {e0, e1, e0, e1};
              const unsigned od[4] = {o0, o1, o0, o1};
              mma_16x8x16(o[4 * c + 2 * u], ev, bhi[h], blo[h]);
              mma_16x8x16(o[4 * c + 2 * u + 1], od, bhi[h], blo[h]);
            }
      };
      MmaRun<G>::convert_with(reinterpret_cast<const unsigned(&)[8 * CV]>(vw), products);
    } else {
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int c = 0; c < G::CHUNKS / 4; ++c) {
          unsigned v[4];
          ldmatrix_x4_trans(v, run.at(vt, 4 * c) + h * HALF);
          const unsigned a0[4] = {v[0], v[1], v[0], v[1]};
          const unsigned a1[4] = {v[2], v[3], v[2], v[3]};
          mma_16x8x16(o[2 * c], a0, bhi[h], blo[h]);
          mma_16x8x16(o[2 * c + 1], a1, bhi[h], blo[h]);
        }
    }
  };
  // An fp8 tile is half the bytes of an fp16 one, and takes half the time to arrive: there the
  // warp begins the next tile's dot before this tile's softmax and weighted sum, so that the
  // instructions of two tiles overlap (each tile's arithmetic, and its order, as without).
  if constexpr (CR::kFp8) {
    float s_next[4];
    stream_tiles_ahead<G::STAGES>(
        run.ntiles, [&](int t) { run.queue(t); },
        [&] {
          sync_warp();  // the warp's rows (and scales) were copied by its lanes
          dot(0, s_next);
        },
        [&](int t) {
          sync_warp();
          float s[4];
#pragma unroll
          for (int x = 0; x < 4; ++x) s[x] = s_next[x];
          dot(t + 1, s_next);
          rest(t, s);
        });
  } else {
    stream_tiles<G::STAGES>(
        run.ntiles, [&](int t) { run.queue(t); },
        [&](int t) {
          sync_warp();  // the warp's rows (and scales) were copied by its lanes
          float s[4];
          dot(t, s);
          rest(t, s);
        });
  }
  AsyncCopy::wait<0>();
  __syncthreads();  // every warp is done with the tiles: their memory becomes the merge scratch

  const MergeScratch<QT, W, D> ms(reinterpret_cast<float*>(smem));
  // Per token: x 2^e (VScaleTop). Values of V converted to G::TILE_SCALE times theirs: / that
  // (a power of two: exact).
  const float down = (kToken ? kDown * vtop.top : kDown) * (1.0f / G::TILE_SCALE);
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int i = 2 * q4 + e;
    if (i < nq) {
#pragma unroll
      for (int t2 = 0; t2 < OUT_TILES; ++t2)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int d = CR::kFp8 ? 32 * (t2 / 2) + 16 * h + 2 * g + t2 % 2 : 16 * t2 + 8 * h + g;
          ms.acc[(i * W + warp) * D + d] = o[t2][2 * h + e] * down;
        }
      if (g == 0) MmaRun<G>::put_state(ms, i, warp, m[e], l[e]);
    }
  }
  run.template finish<Pol, QT, D, kSeparate>(p, ms, smem, blk, out_row_of);
#else
  (void)p;
#endif
}

template <int D, bool kSeparate, class C, class Q, bool kQShared, bool kToken>
void launch_decode_mma_with(const StageArgs& a) {
  auto* kernel = decode_mma_kernel<D, kSeparate, C, Q, kQShared, kToken>;
  constexpr int bytes = MmaGeom<D, C, kQShared, kToken>::SMEM_BYTES;
  static const bool allowed = allow_mma_shared_memory(kernel, bytes);
  (void)allowed;
  launch_mma_blocks<D, kSeparate>(a, kernel, bytes, kMmaQueries);
}

template <int D, bool kSeparate, class C, class Q, bool kToken>
void launch_decode_mma8(const StageArgs& a) {
  auto* kernel = decode_mma8_kernel<D, kSeparate, C, Q, kToken>;
  constexpr int bytes = MmaGeom<D, C, false, kToken>::SMEM_BYTES;
  static const bool allowed = allow_mma_shared_memory(kernel, bytes);
  (void)allowed;
  launch_mma_blocks<D, kSeparate>(a, kernel, bytes, kMmaNarrowQueries);
}

// Up to 8 queries a KV head: decode_mma8_kernel. Otherwise decode_mma_kernel, whose q goes to
// shared memory where a block may have the memory: an fp16 cache at head_dim 128 takes
// 100 KiB with it, past the 99 KiB a block gets on GPUs of compute capability 8.6, 8.9 and 12.x;
// there q stays in registers (the same arithmetic, so the same results). The environment variable
// ATTNSCOPE_MMA_Q_IN_REGISTERS=1 takes the registers everywhere, so that GPUs with the memory can
// check that variant too.
template <int D, bool kSeparate, class C, class Q, bool kToken>
void launch_decode_mma_scaled(const StageArgs& a) {
  if (decode_query_tile(a.problem) == kMmaNarrowQueries) {
    launch_decode_mma8<D, kSeparate, C, Q, kToken>(a);
    return;
  }
  using GS = MmaGeom<D, C, true, kToken>;
  if constexpr (GS::SMEM_BYTES <= 99 * 1024) {
    launch_decode_mma_with<D, kSeparate, C, Q, true, kToken>(a);
  } else {
    static const bool shared = [] {
      const char* forced = std::getenv("ATTNSCOPE_MMA_Q_IN_REGISTERS");
      if (forced != nullptr && std::string(forced) == "1") return false;
      int dev = 0, most = 0;
      ATTNSCOPE_CHECK(hipGetDevice(&dev));
      ATTNSCOPE_CHECK(hipDeviceGetAttribute(&most, hipDeviceAttributeSharedMemPerBlockOptin, dev));
      return GS::SMEM_BYTES <= most;
    }();
    if (shared)
      launch_decode_mma_with<D, kSeparate, C, Q, true, kToken>(a);
    else
      launch_decode_mma_with<D, kSeparate, C, Q, false, kToken>(a);
  }
}

// An fp8 cache with per-token scales takes the kernels' per-token variant (kToken).
template <int D, bool kSeparate, class C, class Q>
void launch_decode_mma(const StageArgs& a) {
  if constexpr (CacheRead<__half, C>::kFp8) {
    if (a.problem.kv_scale == KvScale::token) {
      launch_decode_mma_scaled<D, kSeparate, C, Q, true>(a);
      return;
    }
  }
  launch_decode_mma_scaled<D, kSeparate, C, Q, false>(a);
}

#else

// ROCm: no matrix-instruction decode kernel (an MFMA one is not written); decode_uses_mma is false
// there, so this is never called.
template <int D, bool kSeparate, class C, class Q>
void launch_decode_mma(const StageArgs&) {
  throw GpuError("the matrix-instruction decode kernel is built for NVIDIA GPUs only");
}

#endif

}  // namespace attnscope::gpu::detail
