// Streams of K/V rows through shared memory and the dots of a tile of K rows with every query
// of a block, shared by qk, pv and the decode kernel.
//
// A row of head_dim elements is held by the L lanes of a row-group (16 bytes a lane, 'chunks'
// of L x 16 bytes). For a tile of TK rows and QT queries a lane holds NV = QT x TK partial dots
// (its own elements summed sequentially); a reduce-scatter over the row's lanes at ascending
// distances then leaves each lane one complete score: the same sums, in the same tree, as an
// ascending butterfly over the L lanes per score (qk_order's warp_tree), with NV - 1 shuffles a
// lane instead of NV x log2(L).
#pragma once

#include "accum.hpp"
#include "fault.hpp"

namespace attnscope::gpu::detail {

// A row-group's share of a block's run [c0, c1) of KV positions, streamed tile by tile: tile t
// holds positions c0 + t x KEYS + j x R + rg (j < TK) of each tensor queued. Each lane copies the
// 16-byte words it later reads (AsyncCopy), zeros for rows that are not read: past c1, before a
// ragged batch's shorter sequence starts, and past the last tile.
//
// Paged caches: lane lir of a row-group looks up one row of each tile, row lir % TK (TK <= the
// row's lanes), one tile ahead, so that its block-table load is in flight while the tile before
// is computed; it steps the row's page from tile to tile without a division. The row's element
// offset then reaches the row's other lanes by a shuffle. Each lane thus does one row's address
// arithmetic a tile instead of TK rows', in a kernel whose instruction issue is as busy as its
// memory.
template <Fault F, class T, int D, int R, int TK>
struct RowStream {
  using S = RowSplit<T, D>;
  static constexpr int KEYS = R * TK;
  static constexpr int L = S::LPR;
  static_assert(TK <= L, "a lane of the row-group looks up each row of a tile");
  const KvAddressing& kv;
  int b, kvh, rg, lir, ntiles;
  std::int64_t c0, c1;
  std::int64_t shift;     // the sequence's own position of `pos` is pos + shift (seq_shift)
  std::int64_t next_off;  // contiguous layouts: offset of the row-group's next tile's first row
  // Paged: the row this lane looks up (jo), for the next tile to queue: its page's index in the
  // sequence's block-table row, its row within the page, and its page (-1: the row is not read).
  int jo;
  std::int64_t own_index;
  std::int32_t own_row, own_page;
  std::int32_t step_pages, step_rows;  // KEYS positions: whole pages and the rows left over
  std::int64_t page_base;              // the layer's and the KV head's offset
  const std::int32_t* table_row;       // the sequence's block-table row
  __device__ RowStream(const KvAddressing& kv_, int b_, int kvh_, std::int64_t c0_,
                       std::int64_t c1_, int rg_, int lir_, std::int64_t shift_ = 0)
      : kv(kv_), b(b_), kvh(kvh_), rg(rg_), lir(lir_), c0(c0_), c1(c1_), shift(shift_) {
    ntiles = c1 > c0 ? static_cast<int>((c1 - c0 + KEYS - 1) / KEYS) : 0;
    next_off = kv.block_table != nullptr
                   ? 0
                   : kv_offset<F>(kv, b, kvh, 0) + (c0 + shift + rg) * kv.stride_seq;
    jo = lir % TK;
    if (kv.block_table != nullptr) {
      step_pages = KEYS / kv.page_size;
      step_rows = KEYS % kv.page_size;
      page_base = kv.layer_offset + std::int64_t(kvh) * kv.stride_head;
      table_row = kv.block_table + std::int64_t(b) * kv.pages_per_seq;
      // Rows before the sequence start are never read; their index only has to step.
      const std::int64_t pos = c0 + jo * R + rg + shift;
      own_index = pos >= 0 ? pos / kv.page_size : -1 - (-1 - pos) / kv.page_size;
      own_row = static_cast<std::int32_t>(pos - own_index * kv.page_size);
      look_up(0);
    }
  }
  // First position of tile t for this row-group.
  __device__ std::int64_t pos0(int t) const {
    return c0 + std::int64_t(t) * KEYS + rg;
  }
  // The rows j of tile t that are read: lo <= j x R < hi. Rows before the sequence (a ragged
  // batch's shorter ones), past the run and past the last tile are not.
  __device__ __forceinline__ void read_range(int t, int& lo, int& hi) const {
    const std::int64_t p0 = pos0(t);
    const std::int64_t before = -(p0 + shift), left = c1 - p0;
    lo = before <= 0 ? 0 : (before >= KEYS ? KEYS : static_cast<int>(before));
    hi = left <= 0 ? 0 : (left >= KEYS ? KEYS : static_cast<int>(left));
  }
  __device__ bool row_read(int t, int j) const {
    int lo, hi;
    read_range(t, lo, hi);
    return lo <= j * R && j * R < hi;
  }
  // Issues the block-table load of this lane's row of tile t (paged).
  __device__ __forceinline__ void look_up(int t) {
    const bool read = row_read(t, jo);
    std::int32_t page;
    if (F == Fault::block_table_ignored)
      page = static_cast<std::int32_t>(std::int64_t(b) * kv.pages_per_seq + own_index);
    else
      page = read ? table_row[own_index] : -1;
    own_page = read ? page : -1;
  }
  // Steps this lane's row from tile t to tile t + 1 and looks it up.
  __device__ __forceinline__ void look_up_next(int t) {
    own_index += step_pages;
    own_row += step_rows;
    if (own_row >= kv.page_size) {
      own_row -= kv.page_size;
      ++own_index;
    }
    look_up(t + 1);
  }
  // Queues tile t (called for t = 0, 1, 2, ... in order, by every lane) of each tensor src[k]
  // into the words word(j, k, c) of its stage; the caller commits the group.
  template <int NKV, class Word>
  __device__ __forceinline__ void queue(int t, const T* const (&src)[NKV], uint4* st, Word word) {
    const bool paged = kv.block_table != nullptr;
    std::int64_t own_off = -1;  // paged: this lane's row's offset, -1 where it is not read
    int lo = 0, hi = 0;
    if (paged) {
      if (own_page >= 0)
        own_off = page_base + std::int64_t(own_page) * kv.stride_page +
                  std::int64_t(own_row) * kv.stride_seq;
    } else {
      read_range(t, lo, hi);
    }
#pragma unroll
    for (int j = 0; j < TK; ++j) {
      bool ok;
      std::int64_t off;
      if (paged) {
        off = shfl_idx<L>(own_off, j);  // from the row-group's lane j, which looked row j up
        ok = off >= 0;
        if (!ok) off = 0;
      } else {
        ok = lo <= j * R && j * R < hi;
        off = next_off + std::int64_t(j * R) * kv.stride_seq;
      }
#pragma unroll
      for (int k = 0; k < NKV; ++k)
#pragma unroll
        for (int c = 0; c < S::NCH; ++c)
          AsyncCopy::copy16(&st[word(j, k, c)], src[k] + off + (c * S::LPR + lir) * S::VEC, ok);
    }
    next_off += std::int64_t(KEYS) * kv.stride_seq;
    if (paged) look_up_next(t);
  }
};

// One step of the reduce-scatter of N values at lane distance M, then the rest: the lanes with
// bit M set keep the upper half of their values, the others the lower half, each adding its
// partner's copy of the half it keeps.
template <class Pol, int N, int M>
__device__ __forceinline__ void reduce_scatter(typename Pol::Dot* v, int lane) {
  if constexpr (N > 1) {
    const bool up = (lane & M) != 0;
#pragma unroll
    for (int i = 0; i < N / 2; ++i) {
      const typename Pol::Dot send = up ? v[i] : v[i + N / 2];
      const typename Pol::Dot keep = up ? v[i + N / 2] : v[i];
      v[i] = Pol::dot_add(keep, lane_xor(send, M));
    }
    reduce_scatter<Pol, N / 2, M * 2>(v, lane);
  }
}

// The lane (of a row's L >= NV lanes) that holds value idx after reduce_scatter<NV>, and lanes
// idx + k x NV: idx with its log2(NV) bits reversed.
template <int NV>
__host__ __device__ constexpr int scatter_owner(int idx) {
  int r = 0;
  for (int bit = 1, o = NV / 2; bit < NV; bit *= 2, o /= 2)
    if (idx & bit) r |= o;
  return r;
}

// Runs body(t) for tiles t = 0 .. ntiles - 1 of a stream with STAGES tiles in flight: queue(t)
// queues tile t into stage t % STAGES (called for t = 0, 1, 2, ... in order, past ntiles too,
// where it queues zeros), each call's copies a group; body(t) runs once this thread's copies of
// tile t have landed. Stage t % STAGES is queued into again only after body(t) returns.
template <int STAGES, class Queue, class Body>
__device__ __forceinline__ void stream_tiles(int ntiles, Queue&& queue, Body&& body) {
#pragma unroll
  for (int t = 0; t < STAGES - 1; ++t) {
    queue(t);
    AsyncCopy::commit();
  }
  for (int t = 0; t < ntiles; ++t) {
    queue(t + STAGES - 1);  // into the stage tile t - 1 used
    AsyncCopy::commit();
    AsyncCopy::wait<STAGES - 1>();
    body(t);
  }
}

// The lane's partial dots of the QT queries with TK rows of a stage (word(j, c) the 16-byte word
// of chunk c of the lane's row j), reduce-scattered: part[0] is the complete score
// scatter_owner<NV>(lane % NV) = j x QT + g.
template <class Pol, class T, int D, int QT, int TK, class Word>
__device__ __forceinline__ typename Pol::Dot tile_scores(const typename Pol::Frag* q,
                                                         const uint4* st, Word word, int lir) {
  using S = RowSplit<T, D>;
  constexpr int NV = QT * TK;
  typename Pol::Dot part[NV];
#pragma unroll
  for (int j = 0; j < TK; ++j) {
    RawRow<T, D> raw;
#pragma unroll
    for (int c = 0; c < S::NCH; ++c) raw.w[c] = st[word(j, c)];
    typename Pol::Frag k;
    Pol::from_raw(raw, k);
#pragma unroll
    for (int g = 0; g < QT; ++g) part[j * QT + g] = Pol::dot_lane(q[g], k);
  }
  reduce_scatter<Pol, NV, 1>(part, lir);
  // Where the scores are fewer than the lanes, the butterfly's remaining steps.
#pragma unroll
  for (int m = NV; m < S::LPR; m *= 2) part[0] = Pol::dot_add(part[0], lane_xor(part[0], m));
  return part[0];
}

}  // namespace attnscope::gpu::detail
