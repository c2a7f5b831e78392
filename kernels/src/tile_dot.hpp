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
// ragged batch's shorter sequence starts, and past the last tile. A row is read when its
// sequence position q = pos + shift lies in [0, c1 + shift): one unsigned comparison.
//
// Paged caches: lane lir of a row-group looks up one row of each tile, row lir % TK (TK <= the
// row's lanes), one tile ahead, so that its block-table load is in flight while the tile before
// is computed; it steps the row's page from tile to tile without a division. The row's byte
// offset then reaches the row's other lanes by a shuffle, with its sign bit set where the row is
// not read. Each lane thus does one row's address arithmetic a tile instead of TK rows', in a
// kernel whose instruction issue is as busy as its memory. A page's rows are addressed in 32 bits
// (check_page_bytes).
//
// EB: bytes of a cache element. The row's split over lanes is T's (the queries' format); an fp8
// cache (EB 1) keeps it, each lane copying the 8 bytes of codes that hold its VEC elements.
template <Fault F, class T, int D, int R, int TK, int EB = static_cast<int>(sizeof(T))>
struct RowStream {
  using S = RowSplit<T, D>;
  static constexpr int KEYS = R * TK;
  static constexpr int L = S::LPR;
  static constexpr std::int64_t kNotRead = std::int64_t(-1) - 0x7fffffffffffffffLL;  // sign bit
  static_assert(TK <= L, "a lane of the row-group looks up each row of a tile");
  int ntiles;
  int rg;
  std::int64_t c0;
  std::uint64_t q_end;    // c1 + shift, at least 0: rows at sequence positions below it are read
  std::int64_t next_q;    // the sequence position of the row-group's next tile's first row
  std::int64_t next_off;  // contiguous layouts: byte offset of the next tile's first row
  std::int64_t row_step;  // contiguous layouts: bytes between the rows j and j + 1 of a tile
  // Paged: the row this lane looks up (jo), for the next tile to queue: its sequence position,
  // its page's index in the sequence's block-table row, its row within the page, and its page
  // (-1: the row is not read).
  std::int64_t own_q;
  std::int32_t own_index, own_row, own_page;
  std::int32_t page_size, step_pages, step_rows;  // KEYS positions: whole pages, rows left over
  std::int32_t page_bytes, row_bytes;
  std::int64_t page_base;         // bytes to the layer's and the KV head's part of page 0
  const std::int32_t* table_row;  // the sequence's block-table row
  __device__ RowStream(const KvAddressing& kv, int b, int kvh, std::int64_t c0_, std::int64_t c1,
                       int rg_, int lir, std::int64_t shift = 0)
      : rg(rg_), c0(c0_) {
    ntiles = c1 > c0 ? static_cast<int>((c1 - c0 + KEYS - 1) / KEYS) : 0;
    q_end = static_cast<std::uint64_t>(c1 + shift > 0 ? c1 + shift : 0);
    next_q = c0 + rg + shift;
    constexpr int E = EB;
    if (kv.block_table == nullptr) {
      next_off = (kv_offset<F>(kv, b, kvh, 0) + next_q * kv.stride_seq) * E;
      row_step = std::int64_t(R) * kv.stride_seq * E;
      table_row = nullptr;
      return;
    }
    page_size = kv.page_size;
    step_pages = KEYS / page_size;
    step_rows = KEYS % page_size;
    page_bytes = static_cast<std::int32_t>(kv.stride_page * E);
    row_bytes = static_cast<std::int32_t>(kv.stride_seq * E);
    page_base = (kv.layer_offset + std::int64_t(kvh) * kv.stride_head) * E;
    table_row = kv.block_table + std::int64_t(b) * kv.pages_per_seq;
    // Rows before the sequence start are never read; their index only has to step.
    own_q = next_q + (lir % TK) * R;
    const std::int64_t index = own_q >= 0 ? own_q / page_size : -1 - (-1 - own_q) / page_size;
    own_index = static_cast<std::int32_t>(index);
    own_row = static_cast<std::int32_t>(own_q - index * page_size);
    if (F == Fault::block_table_ignored)
      own_index = static_cast<std::int32_t>(std::int64_t(b) * kv.pages_per_seq + own_index);
    look_up();
  }
  // First position of tile t for this row-group.
  __device__ std::int64_t pos0(int t) const { return c0 + std::int64_t(t) * KEYS + rg; }
  // Issues the block-table load of this lane's row of the next tile (paged). The fault reads
  // page own_index of the whole cache, as if the table were the identity.
  __device__ __forceinline__ void look_up() {
    const bool read = static_cast<std::uint64_t>(own_q) < q_end;
    if (F == Fault::block_table_ignored)
      own_page = read ? own_index : -1;
    else
      own_page = read ? table_row[own_index] : -1;  // no load for a row that is not read
  }
  // Steps this lane's row to the next tile and looks it up.
  __device__ __forceinline__ void look_up_next() {
    own_q += KEYS;
    own_index += step_pages;
    own_row += step_rows;
    if (own_row >= page_size) {
      own_row -= page_size;
      ++own_index;
    }
    look_up();
  }
  // Queues tile t (called for t = 0, 1, 2, ... in order, by every lane) of each tensor src[k]
  // into the words word(j, k, c) of its stage (16 bytes, or 8 where EB is 1); the caller commits
  // the group. row(j, off, ok) is called for each row j of the tile with its byte offset in the
  // cache and whether it is read, for copies of its own (an fp8 cache's per-token scales).
  // keep(j): whether row j is read at all where the stream would read it (a kernel that must not
  // read a masked position's row); the rows it drops are zeros.
  template <int NKV, class W, class Word, class Row, class Keep>
  __device__ __forceinline__ void queue(int, const void* const (&src)[NKV], W* st, Word word,
                                        Row&& row, Keep&& keep) {
    const bool paged = table_row != nullptr;
    const int lir = static_cast<int>(threadIdx.x) % L;
    std::int64_t own_off = kNotRead;  // paged: this lane's row's byte offset
    if (paged && own_page >= 0)
      own_off = page_base + std::int64_t(own_page) * page_bytes + own_row * row_bytes;
#pragma unroll
    for (int j = 0; j < TK; ++j) {
      bool ok;
      std::int64_t off;
      if (paged) {
        off = shfl_idx<L>(own_off, j);  // from the row-group's lane j, which looked row j up
        ok = off >= 0;
        off &= 0x7fffffffffffffffLL;  // the sign bit cleared: 0 where the row is not read
      } else {
        ok = static_cast<std::uint64_t>(next_q + j * R) < q_end;
        off = next_off + j * row_step;
      }
      ok = ok && keep(j);
#pragma unroll
      for (int k = 0; k < NKV; ++k)
#pragma unroll
        for (int c = 0; c < S::NCH; ++c) {
          const char* from =
              static_cast<const char*>(src[k]) + off + (c * S::LPR + lir) * S::VEC * EB;
          if constexpr (S::VEC * EB == 16)
            AsyncCopy::copy16(&st[word(j, k, c)], from, ok);
          else
            AsyncCopy::copy8(&st[word(j, k, c)], from, ok);
        }
      row(j, off, ok);
    }
    next_q += KEYS;
    if (paged)
      look_up_next();
    else
      next_off += KEYS / R * row_step;
  }
  template <int NKV, class W, class Word, class Row>
  __device__ __forceinline__ void queue(int t, const void* const (&src)[NKV], W* st, Word word,
                                        Row&& row) {
    queue(t, src, st, word, row, [](int) { return true; });
  }
  template <int NKV, class W, class Word>
  __device__ __forceinline__ void queue(int t, const void* const (&src)[NKV], W* st, Word word) {
    queue(
        t, src, st, word, [](int, std::int64_t, bool) {}, [](int) { return true; });
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
// tiles t .. t + AHEAD have landed (AHEAD 0 or 1; with 1, start() runs first, once tile 0 has,
// and STAGES - 2 tiles stay in flight). Stage t % STAGES is queued into again only after body(t)
// returns.
template <int STAGES, int AHEAD, class Queue, class Start, class Body>
__device__ __forceinline__ void stream_tiles_landed(int ntiles, Queue&& queue, Start&& start,
                                                    Body&& body) {
  static_assert(AHEAD == 0 || AHEAD == 1, "body(t) holds tile t, or tiles t and t + 1");
  static_assert(STAGES - 1 - AHEAD >= 1, "at least one tile in flight");
  constexpr int kPending = STAGES - 1 - AHEAD;  // copy groups left in flight at body(t)
#pragma unroll
  for (int t = 0; t < STAGES - 1; ++t) {
    queue(t);
    AsyncCopy::commit();
  }
  if constexpr (AHEAD > 0) {
    AsyncCopy::wait<kPending>();
    start();
  }
  for (int t = 0; t < ntiles; ++t) {
    queue(t + STAGES - 1);  // into the stage tile t - 1 used
    AsyncCopy::commit();
    AsyncCopy::wait<kPending>();
    body(t);
  }
}

// body(t) once tile t has landed.
template <int STAGES, class Queue, class Body>
__device__ __forceinline__ void stream_tiles(int ntiles, Queue&& queue, Body&& body) {
  stream_tiles_landed<STAGES, 0>(
      ntiles, queue, [] {}, body);
}

// One tile ahead: start() once tile 0 has landed, body(t) once tile t + 1 has too (past ntiles
// that tile is zeros), so that body(t) can begin tile t + 1's work before it ends tile t's.
template <int STAGES, class Queue, class Start, class Body>
__device__ __forceinline__ void stream_tiles_ahead(int ntiles, Queue&& queue, Start&& start,
                                                   Body&& body) {
  stream_tiles_landed<STAGES, 1>(ntiles, queue, start, body);
}

// The lane's partial dots of the QT queries with TK rows of a stage (frag(j, k) reads the lane's
// part of row j into k), reduce-scattered: part[0] is the complete score
// scatter_owner<NV>(lane % NV) = j x QT + g.
template <class Pol, class T, int D, int QT, int TK, class Frag>
__device__ __forceinline__ typename Pol::Dot tile_scores(const typename Pol::Frag* q, Frag frag,
                                                         int lir) {
  using S = RowSplit<T, D>;
  constexpr int NV = QT * TK;
  typename Pol::Dot part[NV];
#pragma unroll
  for (int j = 0; j < TK; ++j) {
    typename Pol::Frag k;
    frag(j, k);
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
