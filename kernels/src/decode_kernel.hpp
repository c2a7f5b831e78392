// fused and split_kv: attention from q, K and V to out and log-sum-exp in one pass over the
// window with an online softmax (running max m, running sum l, output accumulator rescaled when
// m grows).
//
// A block owns (split, KV head, batch x query tile) and holds every query of its tile, so each
// K/V row is read from memory once for all query heads of a GQA group. Its row-groups of LPR
// lanes take positions r, r + ROWS, ... of the block's part of the window, TK of them a tile,
// kDecStages tiles in flight through shared memory (AsyncCopy: cp.async where the platform has
// it). Each lane copies exactly the 16-byte words it later reads, so the pipeline needs no block
// barrier.
//
// Per tile a lane computes its part of the QT x TK dots, and a reduce-scatter over the row's
// lanes (ascending distances) leaves each lane one complete score: the same sums, in the same
// tree, as the butterfly of qk, one exp a lane instead of one per lane and score. The lane owning
// (query g, key j) works out that key's online-softmax step, exactly the per-key step of the
// precision model: with m the running max before the key, either the key raises the max
// (alpha = exp(m - s) rescales l and acc, p = 1) or it does not (p = exp(s - m)). The steps are
// broadcast to the row's lanes, which apply them key by key. Row-groups are merged by an
// ascending tree in shared memory.
//  - one split: the block normalizes and writes out and lse;
//  - more splits (flash-decoding): each block writes its normalized partial output and
//    log-sum-exp; the splits are merged in split order, weighting each by exp(lse_s - max lse),
//    in fp32, by decode_combine (split_kv) or, in the same launch, by the block that finishes a
//    row's splits last (fused: a ticket counter per row of blocks in the workspace, which every
//    complete launch leaves at zero).
// fp16 accumulation keeps l and acc in binary16 (scores from the binary16 dot, exp evaluated in
// fp32 and rounded to binary16); fp32 accumulation keeps them in float.
#pragma once

#include <type_traits>

#include "accum.hpp"
#include "cache_read.hpp"
#include "fault.hpp"
#include "stage_kernels.hpp"
#include "tile_dot.hpp"

namespace attnscope::gpu::detail {

// C: the cache's elements (T, or an fp8 code: cache_read.hpp).
template <class T, int D, int QT, class C = T>
struct DecodeGeom {
  using S = RowSplit<T, D>;
  using CR = CacheRead<T, C>;
  using Word = typename CR::Word;
  static constexpr int L = S::LPR;           // lanes of a row-group
  static constexpr int R = kDecThreads / L;  // row-groups
  static constexpr int CH = S::NCH;          // 16-byte words of a row a lane holds
  static constexpr int TK = decode_tile_keys(QT, D, static_cast<int>(sizeof(T)));
  static constexpr int NV = QT * TK;                       // scores of a row-group per tile
  static constexpr int KEYS = R * TK;                      // positions per tile
  static constexpr int STAGE_WORDS = TK * R * 2 * CH * L;  // of Word
  // An fp8 cache's tile is half the bytes: more of them in flight.
  static constexpr int STAGES = CR::kFp8 ? kDecStagesFp8 : kDecStages;
  // Per-token scales: K's and V's of each row of a stage, after the stages' words.
  static constexpr int SCALES = CR::kFp8 ? 2 * KEYS : 0;
  static constexpr int STREAM_BYTES =
      STAGES * (STAGE_WORDS * static_cast<int>(sizeof(Word)) + SCALES * 4);
  static constexpr int MIN_BLOCKS = decode_blocks_per_sm(QT, D, static_cast<int>(sizeof(T)));
  static_assert(NV <= L && (NV & (NV - 1)) == 0, "a row's lanes hold the tile's scores");
  // After the last tile the shared memory holds the merge scratch (every query's row-group
  // states, the merge weights and sums) and, in its last word, fused's merge flag.
  static constexpr int SCRATCH_WORDS = ((QT * R * D + 4 * QT * R + QT) * 4 + 15) / 16;
  static constexpr int SMEM_WORDS = (STREAM_BYTES + 15) / 16 > SCRATCH_WORDS + 1
                                        ? (STREAM_BYTES + 15) / 16
                                        : SCRATCH_WORDS + 1;

  // Word (key j of the tile, row-group, K = 0 / V = 1, chunk, lane) within a stage: the lanes of
  // a row are adjacent, so a row-group's reads are free of bank conflicts.
  __device__ static int word(int j, int rg, int kv, int c, int lane) {
    return (((j * R + rg) * 2 + kv) * CH + c) * L + lane;
  }
  // The per-token scale of (key j, row-group, K = 0 / V = 1) within a stage's scales.
  __device__ static int scale_at(int j, int rg, int kv) { return (j * R + rg) * 2 + kv; }
  // The lane that holds score idx = j * QT + g after the reduce-scatter.
  __host__ __device__ static constexpr int owner(int idx) { return scatter_owner<NV>(idx); }
};

// Offsets of the split partials, their log-sum-exps and the ticket counters in the workspace.
struct DecodeWorkspace {
  float* part;       // [row (b, t, h)][split][v_dim]
  float* lse;        // [row][split]
  unsigned* ticket;  // [batch x query tile][kv head]
  __host__ __device__ DecodeWorkspace(void* ws, const KernelParams& p) {
    const std::int64_t rows = std::int64_t(p.batch) * p.q_len * p.q_heads;
    part = static_cast<float*>(ws);
    lse = part + rows * p.splits * p.v_dim;
    ticket = reinterpret_cast<unsigned*>(lse + rows * p.splits);
  }
};

// The first split that holds a position of sequence b: 0 unless the batch is ragged and the
// sequence starts (at -seq_shift) after the span's first splits. The blocks of the splits before
// it return at once, writing nothing, and the merge starts at it: the splits before hold no key
// (their weight would be none), so the results are those of every split merged.
__device__ __forceinline__ int first_split(const KernelParams& p, int b) {
  return static_cast<int>(first_split_at(-seq_shift(p, b), p.span_start, p.split_len));
}

// The sequence and split of item `item` of a ragged batch's grid (KernelParams::ragged_items):
// sequence 0's splits from its first, then sequence 1's, and so on. One warp finds it (an
// inclusive scan of the sequences' split counts, a warp's width of sequences at a time) and
// writes it to where[0] (sequence) and where[1] (split).
__device__ __forceinline__ void locate_item(const KernelParams& p, int item, int* where) {
  constexpr int W = kWarpSize;
  const int lane = static_cast<int>(threadIdx.x) % W;
  int base = 0;
  for (int c = 0; c < p.batch; c += W) {
    const int bb = c + lane;
    const int first = bb < p.batch ? first_split(p, bb) : p.splits;
    const int n = p.splits - first;
    int incl = n;
#pragma unroll
    for (int d = 1; d < W; d *= 2) {
      const int y = shfl_idx(incl, lane >= d ? lane - d : lane);
      if (lane >= d) incl += y;
    }
    if (item >= base + incl - n && item < base + incl) {
      where[0] = bb;
      where[1] = first + (item - (base + incl - n));
    }
    base += shfl_idx(incl, W - 1);
    if (item < base) return;  // uniform over the warp
  }
}

// A decode block's split, sequence, query tile and KV head. The grid is (split, KV head, batch x
// query tile), or on a ragged batch (item x KV head, 1, query tile) with no block for a split
// before its sequence's start, the KV heads of an item next to each other (as a sequence's blocks
// are on the other grid: neighbours in memory); there one warp finds the item (locate_item) and
// passes it through `scratch` (shared memory not yet in use). False for a block past the folded
// grid's last z, which returns at once (uniform over the block).
__device__ __forceinline__ bool decode_block_indices(const KernelParams& p, int* scratch,
                                                     int& split, int& b, int& tile, int& kvh) {
  if (p.ragged_items > 0) {
    kvh = static_cast<int>(blockIdx.x) % p.kv_heads;
    if (static_cast<int>(threadIdx.x) < kWarpSize)
      locate_item(p, static_cast<int>(blockIdx.x) / p.kv_heads, scratch);
    __syncthreads();
    b = scratch[0];
    split = scratch[1];
    tile = static_cast<int>(blockIdx.z);
    __syncthreads();
    return true;
  }
  kvh = static_cast<int>(blockIdx.y);
  int bz;
  if (!unfold_block(p, split, bz)) return false;
  b = bz / p.q_tiles;
  tile = bz % p.q_tiles;
  return true;
}

// A matrix-instruction decode block (decode_mma.hpp, decode_mla.hpp): its split, sequence, query
// tile and KV head (decode_block_indices), its nq queries from q0 of a tile of qt, and its
// sequence's first split. place() is false for a block with nothing to do (past the folded grid,
// or a split before its sequence's start), uniformly over the block.
struct DecodeBlock {
  int split, b, tile, kvh, q0, nq, first;
  // every_split: a block for a split before its sequence's start has work too (the latent
  // stage passes, which write every split's scores or partial).
  __device__ bool place(const KernelParams& p, int* scratch, int qt, bool every_split = false) {
    if (!decode_block_indices(p, scratch, split, b, tile, kvh)) return false;
    q0 = tile * qt;
    nq = min(qt, p.group * p.q_len - q0);
    first = first_split(p, b);
    return every_split || split >= first;
  }
  // The row [b, h, t] of query i < nq in scores and probabilities ([batch, q_heads, q_len,
  // window]), in elements.
  __device__ std::int64_t score_row(const KernelParams& p, int i) const {
    const int qi = q0 + i;
    const int t = qi / p.group, h = query_head<Fault::none>(kvh, qi % p.group, p.group, p.kv_heads);
    return ((std::int64_t(b) * p.q_heads + h) * p.q_len + t) * p.window;
  }
  // The output row (b, t, h) of query i < nq.
  __device__ int out_row(const KernelParams& p, int i) const {
    const int qi = q0 + i;
    const int t = qi / p.group, h = query_head<Fault::none>(kvh, qi % p.group, p.group, p.kv_heads);
    return (b * p.q_len + t) * p.q_heads + h;
  }
  // The window [lo, hi) of query i (past nq: of the block's first query, whose row stands in).
  __device__ void window(const KernelParams& p, int i, std::int64_t& lo, std::int64_t& hi) const {
    const int t = (q0 + (i < nq ? i : 0)) / p.group;
    hi = p.seq_len - p.q_len + t + 1;
    lo = hi - p.window;
  }
  // The positions [lo, hi) inside every one of its queries' windows (empty where lo >= hi):
  // windows end later for later query positions and have one length.
  __device__ void common_window(const KernelParams& p, std::int64_t& lo, std::int64_t& hi) const {
    const int t_first = q0 / p.group, t_last = (q0 + nq - 1) / p.group;
    hi = p.seq_len - p.q_len + t_first + 1;
    lo = p.seq_len - p.q_len + t_last + 1 - p.window;
  }
};

// The positions [c0, c1) a block of split `split` streams, in tiles of `keys`. A shorter sequence
// of a ragged batch starts at -shift: the whole tiles before it hold no key and are skipped (the
// streams keep their positions, so the order is unchanged); a split that ends before it streams
// nothing.
__device__ __forceinline__ void split_run(const KernelParams& p, int split, std::int64_t shift,
                                          int keys, std::int64_t& c0, std::int64_t& c1) {
  c0 = p.span_start + std::int64_t(split) * p.split_len;
  c1 = min(c0 + p.split_len, p.span_start + p.span);
  if (c1 <= -shift)
    c0 = c1;
  else if (c0 < -shift)
    c0 += (-shift - c0) / keys * keys;
}

// Merges the split partials of one (b, t, h) row in split order, in fp32, with one warp: the
// max of the partials' log-sum-exps, weights w_s = exp(lse_s - max) (splits with no key weigh
// nothing), out = sum_s w_s part_s / sum_s w_s, both sums sequential over s. Lane l takes
// elements l, l + W, ...; the weights of W splits at a time are worked out one a lane and passed
// round, and the partials' loads are unrolled so that many are in flight together.
// kCoherent: the partials were written by other blocks of this launch.
template <Fault F, bool kCoherent, int D>
__device__ __forceinline__ void combine_row(const KernelParams& p, std::int64_t row, int lane) {
  constexpr int W = kWarpSize;
  constexpr int E = (D + W - 1) / W;
  const DecodeWorkspace w(p.workspace, p);
  const int first = first_split(p, static_cast<int>(row / (std::int64_t(p.q_heads) * p.q_len)));
  const int splits = p.splits - first;  // the row's splits, from its first
  const float* part = w.part + (row * p.splits + first) * D;
  const float* lse_part = w.lse + row * p.splits + first;
  auto ld = [](const float* x) { return kCoherent ? load_coherent(x) : __ldg(x); };
  // The fault leaves the last split out of the merge.
  const int merged = F == Fault::split_dropped && splits > 1 ? splits - 1 : splits;
  float mx = -INFINITY;  // the max is exact in any order
  for (int s = lane; s < splits; s += W) mx = fmaxf(mx, ld(lse_part + s));
#pragma unroll
  for (int m = W / 2; m >= 1; m /= 2) mx = fmaxf(mx, shfl_xor(mx, m));
  float wsum = 0.0f;
  float o[E];
#pragma unroll
  for (int e = 0; e < E; ++e) o[e] = 0.0f;
  for (int base = 0; base < merged; base += W) {
    const int n = min(W, merged - base);
    float wl = -1.0f;  // -1: no key, no weight
    if (lane < n) {
      const float ls = ld(lse_part + base + lane);
      if (ls != -INFINITY) wl = expf(ls - mx);
    }
    const float* pb = part + std::int64_t(base) * D;
    constexpr int U = 8;  // splits whose partials are loaded before any is added
    for (int s0 = 0; s0 < n; s0 += U) {
      float ws[U], x[U][E];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int s = min(s0 + u, n - 1);  // past n: loaded, not added
        ws[u] = shfl_idx(wl, s);
#pragma unroll
        for (int e = 0; e < E; ++e)
          x[u][e] = lane + e * W < D ? ld(pb + std::int64_t(s) * D + lane + e * W) : 0.0f;
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (s0 + u < n && !(ws[u] < 0.0f)) {  // a NaN weight reaches the output
          wsum += ws[u];
#pragma unroll
          for (int e = 0; e < E; ++e) o[e] = fmaf(ws[u], x[u][e], o[e]);
        }
      }
    }
  }
  // No split attended a key (a fully masked row): out 0 and lse -inf, not 0 / 0.
  const bool none = wsum == 0.0f;
#pragma unroll
  for (int e = 0; e < E; ++e)
    if (lane + e * W < D)
      store_output(p.out, row * D + lane + e * W, none ? 0.0f : o[e] / wsum, p.output);
  if (lane == 0) {
    const int h = static_cast<int>(row % p.q_heads);
    const int t = static_cast<int>(row / p.q_heads % p.q_len);
    const int b = static_cast<int>(row / (std::int64_t(p.q_heads) * p.q_len));
    p.lse[(std::int64_t(b) * p.q_heads + h) * p.q_len + t] = none ? -INFINITY : mx + logf(wsum);
  }
}

// split_kv's merge: kCombineRows rows a block of kCombineThreads, a warp a row at a time.
inline constexpr int kCombineThreads = 128;
inline constexpr int kCombineRows = 4;
template <Fault F, int D>
__global__ __launch_bounds__(kCombineThreads) void decode_combine(KernelParams p) {
  const std::int64_t rows = std::int64_t(p.batch) * p.q_len * p.q_heads;
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize,
            lane = static_cast<int>(threadIdx.x) % kWarpSize;
  for (int r = warp; r < kCombineRows; r += kCombineThreads / kWarpSize) {
    const std::int64_t row = std::int64_t(blockIdx.x) * kCombineRows + r;
    if (row < rows) combine_row<F, false, D>(p, row, lane);
  }
}

// The merge scratch of a decode block, over the tiles' memory once every tile is read: the
// groups' states of every query (acc [QT][R][D], m and l [QT][R]), the weights of each query's
// tree merge (fac [QT][R][2]: those of the merge into r - s at r) and the merged sums (fin_l).
template <int QT, int R, int D>
struct MergeScratch {
  static constexpr int FLOATS = QT * R * D + 4 * QT * R + QT;
  float *acc, *m, *l, *fac, *fin_l;
  __device__ explicit MergeScratch(float* at)
      : acc(at), m(at + QT * R * D), l(m + QT * R), fac(l + QT * R), fin_l(fac + 2 * QT * R) {}
};

// The end of a decode block, once the R groups' states of its nq queries are in the scratch and a
// barrier has passed: each query's merge by the ascending tree (pairs (r, r + s) for s = 1, 2,
// 4, ...) worked out once, its weights by one thread a query, then applied by one thread an
// output element with all R states of that element in registers; then out and lse (one split) or
// the split's partial and log-sum-exp, and fused's in-launch merge of the splits (`flag`: a
// shared word past the scratch). scale_out: every output element is multiplied by out_mul (an
// fp8 cache's V scale).
// THREADS: the block's threads.
template <class Pol, int R, int QT, int D, bool kSeparate, Fault F, int THREADS = kDecThreads,
          class OutRow>
__device__ __forceinline__ void finish_decode_block(const KernelParams& p,
                                                    const MergeScratch<QT, R, D>& ms,
                                                    unsigned* flag, int nq, int b, int split,
                                                    int first, int tile, int kvh, OutRow out_row_of,
                                                    bool scale_out, float out_mul) {
  using Sc = typename Pol::Scalar;
  const DecodeWorkspace w(p.workspace, p);
  float* const red_acc = ms.acc;
  float* const red_m = ms.m;
  float* const red_l = ms.l;
  float* const fac = ms.fac;
  float* const fin_l = ms.fin_l;
  if (static_cast<int>(threadIdx.x) < nq) {
    const int i = static_cast<int>(threadIdx.x);
    float mv[R], lv[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      mv[r] = red_m[i * R + r];
      lv[r] = red_l[i * R + r];
    }
#pragma unroll
    for (int s = 1; s < R; s *= 2)
#pragma unroll
      for (int r = 0; r < R; r += 2 * s) {
        const float m1 = mv[r], m2 = mv[r + s];
        const float mm = fmaxf(m1, m2);
        // An empty row-group has m = -inf and weighs nothing.
        const Sc f1 = Pol::from_float(m1 == -INFINITY ? 0.0f : expf(m1 - mm));
        const Sc f2 = Pol::from_float(m2 == -INFINITY ? 0.0f : expf(m2 - mm));
        fac[(i * R + r + s) * 2] = Pol::to_float_s(f1);
        fac[(i * R + r + s) * 2 + 1] = Pol::to_float_s(f2);
        lv[r] = Pol::to_float_s(Pol::add(Pol::mul(Pol::from_float(lv[r]), f1),
                                         Pol::mul(Pol::from_float(lv[r + s]), f2)));
        mv[r] = mm;
      }
    const float lf = Pol::to_float_s(Pol::from_float(lv[0]));
    fin_l[i] = lf;
    // No key: -inf. A NaN sum (a NaN score: a latent cache's NaN is in K too) stays NaN, so that
    // the split merge carries it to the output instead of weighing the split as empty.
    const float lse = lf != 0.0f ? mv[0] + logf(lf) : -INFINITY;
    const int row = out_row_of(i);
    if (p.splits == 1) {
      const int t = row / p.q_heads % p.q_len, h = row % p.q_heads;
      p.lse[(std::int64_t(b) * p.q_heads + h) * p.q_len + t] = lse;
    } else {
      w.lse[std::int64_t(row) * p.splits + split] = lse;
    }
  }
  if constexpr (F != Fault::missing_barrier) __syncthreads();
  for (int x = static_cast<int>(threadIdx.x); x < nq * D; x += THREADS) {
    const int i = x / D, d = x % D;
    float av[R];
#pragma unroll
    for (int r = 0; r < R; ++r) av[r] = red_acc[(i * R + r) * D + d];
#pragma unroll
    for (int s = 1; s < R; s *= 2)
#pragma unroll
      for (int r = 0; r < R; r += 2 * s) {
        const Sc f1 = Pol::from_float(fac[(i * R + r + s) * 2]);
        const Sc f2 = Pol::from_float(fac[(i * R + r + s) * 2 + 1]);
        av[r] = Pol::to_float_s(Pol::add(Pol::mul(Pol::from_float(av[r]), f1),
                                         Pol::mul(Pol::from_float(av[r + s]), f2)));
      }
    const float lf = fin_l[i];
    float o =
        lf == 0.0f ? 0.0f : Pol::to_float_s(Pol::div(Pol::from_float(av[0]), Pol::from_float(lf)));
    if (scale_out) o = __fmul_rn(o, out_mul);
    const int row = out_row_of(i);
    if (p.splits == 1)
      store_output(p.out, std::int64_t(row) * D + d, o, p.output);
    else
      w.part[(std::int64_t(row) * p.splits + split) * D + d] = o;
  }

  if constexpr (!kSeparate) {
    if (p.splits > 1) {
      // Publish this block's partials, then take a ticket; the block with the last one merges.
      __threadfence();
      __syncthreads();
      unsigned* merges_here = flag;
      if (threadIdx.x == 0) {
        const unsigned last = static_cast<unsigned>(p.splits - first - 1);
        *merges_here = atomicInc(&w.ticket[(std::int64_t(b) * p.q_tiles + tile) * p.kv_heads + kvh],
                                 last) == last;
      }
      __syncthreads();
      if (*merges_here) {
        __threadfence();
        // A warp a row: the block's rows are merged side by side.
        const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
        const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
        for (int i = warp; i < nq; i += THREADS / kWarpSize)
          combine_row<F, true, D>(p, out_row_of(i), lane);
      }
    }
  }
}

// kSeparate: split partials are merged by decode_combine (split_kv); otherwise in the launch.
// C: the cache's elements, T or an fp8 code (cache_read.hpp).
template <class T, class C, Accum A, int D, int QT, bool kSeparate, Fault F>
__global__ __launch_bounds__(kDecThreads, (DecodeGeom<T, D, QT, C>::MIN_BLOCKS)) void decode_kernel(
    KernelParams p) {
  using G = DecodeGeom<T, D, QT, C>;
  using CR = typename G::CR;
  using Word = typename G::Word;
  using Pol = AccPolicy<T, A, D>;
  using S = RowSplit<T, D>;
  using Sc = typename Pol::Scalar;
  using Dot = typename Pol::Dot;
  constexpr int L = G::L, R = G::R, TK = G::TK, NV = G::NV, CH = G::CH;
  __shared__ uint4 tiles[G::SMEM_WORDS];
  const int lir = static_cast<int>(threadIdx.x) % L;
  const int rg = static_cast<int>(threadIdx.x) / L;
  int split, b, tile, kvh;
  // Passed through the tiles' memory (static shared memory is at its limit), before the first
  // tile is queued there.
  if (!decode_block_indices(p, reinterpret_cast<int*>(tiles), split, b, tile, kvh)) return;
  const int q0 = tile * QT;
  const int nq = min(QT, p.group * p.q_len - q0);
  // A split before a ragged batch's shorter sequence starts holds none of its keys.
  const int first = first_split(p, b);
  if (split < first) return;

  // Queries past nq repeat the tile's first query and are never written.
  typename Pol::Frag q[QT];
  typename Pol::Frag acc[QT];
  Sc l[QT];
#pragma unroll
  for (int i = 0; i < QT; ++i) {
    const int qi = q0 + (i < nq ? i : 0);
    const int t = qi / p.group, h = query_head<F>(kvh, qi % p.group, p.group, p.kv_heads);
    Pol::load(static_cast<const T*>(p.q) + ((std::int64_t(b) * p.q_len + t) * p.q_heads + h) * D,
              lir, q[i]);
    Pol::zero(acc[i]);
    l[i] = Pol::from_float(0.0f);
  }
  // The output row (b, t, h) of query i < nq of the tile.
  auto out_row_of = [&](int i) {
    const int qi = q0 + i;
    const int t = qi / p.group, h = query_head<F>(kvh, qi % p.group, p.group, p.kv_heads);
    return (b * p.q_len + t) * p.q_heads + h;
  };

  // The score this lane owns: query g_own, key j_own of each tile, and that query's keys.
  const int own = G::owner(lir % NV);
  const int g_own = own % QT, j_own = own / QT;
  const int t_own = (q0 + (g_own < nq ? g_own : 0)) / p.group;
  const std::int64_t win_end = p.seq_len - p.q_len + t_own + 1;  // one past the query's last key
  const std::int64_t key_lo = win_end - p.window + FaultWindow<F>::lo;
  const std::int64_t key_hi = win_end + FaultWindow<F>::hi;
  // No key yet: -inf (a finite sentinel would lose rows whose logits all lie below it).
  constexpr float kNoKey = F == Fault::finite_sentinel ? -5e4f : -INFINITY;
  float m_own = F == Fault::no_max_shift ? 0.0f : kNoKey;

  const std::int64_t shift = seq_shift(p, b);
  std::int64_t c0, c1;
  split_run(p, split, shift, G::KEYS, c0, c1);
  RowStream<F, T, D, R, TK, CR::EB> rows(p.kv, b, kvh, c0, c1, rg, lir, shift);
  const int ntiles = rows.ntiles;
  const void* const src[2] = {p.k, p.v};
  Word* const words = reinterpret_cast<Word*>(tiles);
  // fp8 caches (cache_read.hpp): per-token scales stream with their rows, after the stages'
  // words; one K and one V scale for the block otherwise. Under fp32 accumulation the score
  // multiplier is fp32(scale x K scale), and the V scale multiplies each weight (per token) or
  // the output; under fp16 accumulation both scales go into the elements.
  constexpr bool kElemScale = CR::kFp8 && A == Accum::fp16;
  float* const scales = reinterpret_cast<float*>(words + G::STAGES * G::STAGE_WORDS);
  const bool token = CR::kFp8 && p.token_scales;
  float k_scale = 1.0f, v_scale = 1.0f, score_mul = p.scale;
  if constexpr (CR::kFp8) {
    if (!token) {
      k_scale = p.k_scale[kvh * p.scale_step];
      v_scale = p.v_scale[kvh * p.scale_step];
      if constexpr (!kElemScale) score_mul = __fmul_rn(p.scale, k_scale);
    }
  }
  // Queues tile t (zeros past the split) into stage t % STAGES, and its rows' per-token scales:
  // lane 2 j + kv of the row-group copies row j's scale of K (kv 0) or V (kv 1).
  auto queue = [&](int t) {
    const int stage = t % G::STAGES;
    // The stage's scales were read by other lanes of the row-group in the tile before: a warp
    // barrier orders those reads before these copies.
    if (token) sync_warp();
    rows.queue(
        t, src, words + stage * G::STAGE_WORDS,
        [&](int j, int kv, int c) { return G::word(j, rg, kv, c, lir); },
        [&](int j, std::int64_t off, bool ok) {
          if constexpr (CR::kFp8) {
            if (token && (lir >> 1) == j) {
              const float* from = (lir & 1) ? p.v_scale : p.k_scale;
              AsyncCopy::copy4(scales + stage * G::SCALES + G::scale_at(j, rg, lir & 1),
                               from + static_cast<std::uint64_t>(off) / D, ok);
            }
          }
        });
  };
  // The lane's fragment of K (kv 0) or V (kv 1) of row j of a stage.
  auto frag_of = [&](const Word* st, const float* sst, int j, int kv, typename Pol::Frag& f) {
    Word w[CH];
#pragma unroll
    for (int c = 0; c < CH; ++c) w[c] = st[G::word(j, rg, kv, c, lir)];
    float elem_scale = 0.0f;
    if constexpr (kElemScale)
      elem_scale = token ? sst[G::scale_at(j, rg, kv)] : (kv == 0 ? k_scale : v_scale);
    CR::template frag<Pol, D>(w, elem_scale, f);
  };
  // The weight that multiplies row j's V (fp32 accumulation, per-token V scales): p x its scale.
  auto v_weight = [&](const float* sst, int j, Sc ps) -> Sc {
    if constexpr (CR::kFp8 && !kElemScale)
      if (token) return __fmul_rn(ps, sst[G::scale_at(j, rg, 1)]);
    return ps;
  };
  static_assert(2 * TK <= L, "a row-group's lanes copy its rows' scales");
  stream_tiles<G::STAGES>(ntiles, queue, [&](int t) {
    const Word* st = words + (t % G::STAGES) * G::STAGE_WORDS;
    const float* sst = scales + (t % G::STAGES) * G::SCALES;
    if constexpr (CR::kFp8) {
      // The scales were copied by other lanes of the row-group: a warp barrier makes their
      // copies visible (a row-group lies within one warp).
      if (token) sync_warp();
    }

    const Dot score = tile_scores<Pol, T, D, QT, TK>(
        q, [&](int j, typename Pol::Frag& k) { frag_of(st, sst, j, 0, k); }, lir);

    // The owned key's step of the online softmax.
    float mul = score_mul;
    if constexpr (CR::kFp8 && !kElemScale)
      if (token) mul = __fmul_rn(p.scale, sst[G::scale_at(j_own, rg, 0)]);
    const float s = __fmul_rn(Pol::dot_float(score), mul);
    const std::int64_t pos = c0 + std::int64_t(t) * G::KEYS + j_own * R + rg;
    // Keys outside the window, and masked keys, are skipped: they leave the max alone and
    // their V is never applied.
    const bool in = pos < c1 && pos >= key_lo && pos < key_hi && key_attended<F>(p, b, shift, pos);
    const float s_in = in ? s : kNoKey;
    float m_before = m_own, m_tile = m_own;
#pragma unroll
    for (int j = 0; j < TK; ++j) {
      const float sj = shfl_idx<L>(s_in, G::owner(j * QT + g_own));
      if (j < j_own) m_before = fmaxf(m_before, sj);
      m_tile = fmaxf(m_tile, sj);
    }
    bool grew = false;
    if constexpr (F == Fault::no_max_shift) {
      m_before = 0.0f;
    } else {
      grew = s > m_before;
      m_own = m_tile;
    }
    const float e = expf(grew ? m_before - s : s - m_before);  // alpha if grew, else p
    // 2: outside the window; sign bit set: grew (alpha = -code, p = 1); else p = code.
    const float code = !in ? 2.0f : (grew ? -e : e);

    // Every lane of the row applies the steps, key by key for each query. Mostly no key of the
    // warp's tiles raises a max or lies outside a window: then each step is p alone.
    if (warp_all(in && !grew)) {
#pragma unroll
      for (int j = 0; j < TK; ++j) {
        typename Pol::Frag v;
        frag_of(st, sst, j, 1, v);
#pragma unroll
        for (int g = 0; g < QT; ++g) {
          const Sc ps = Pol::from_float(shfl_idx<L>(e, G::owner(j * QT + g)));
          l[g] = Pol::add(l[g], ps);
          Pol::axpy(v_weight(sst, j, ps), v, acc[g]);
        }
      }
      return;
    }
    // Some key raised a max (the first keys of a split mostly do), or lies outside a window.
    // Where every key is in, no step is skipped: the test is left out.
    auto steps = [&](auto all_in) {
#pragma unroll
      for (int j = 0; j < TK; ++j) {
        typename Pol::Frag v;
        frag_of(st, sst, j, 1, v);
#pragma unroll
        for (int g = 0; g < QT; ++g) {
          const float cg = shfl_idx<L>(code, G::owner(j * QT + g));
          if (decltype(all_in)::value || cg != 2.0f) {
            const bool up = (__float_as_uint(cg) >> 31) != 0u;
            if (up) {
              const Sc alpha = Pol::from_float(-cg);
              l[g] = Pol::mul(l[g], alpha);
              Pol::scale(alpha, acc[g]);
            }
            const Sc ps = Pol::from_float(up ? 1.0f : cg);
            l[g] = Pol::add(l[g], ps);
            Pol::axpy(v_weight(sst, j, ps), v, acc[g]);
          }
        }
      }
    };
    if (warp_all(in))
      steps(std::true_type{});
    else
      steps(std::false_type{});
  });
  AsyncCopy::wait<0>();
  __syncthreads();  // every lane is done with the tiles: their memory becomes the merge scratch

  // The row-groups' states of every query at once, then the ascending tree of each query's merge
  // (pairs (r, r + s) for s = 1, 2, 4, ...) worked out once: its weights by one thread a query,
  // then applied by one thread an output element, all R states of that element in registers.
  const MergeScratch<QT, R, D> ms(reinterpret_cast<float*>(tiles));
  float* const red_acc = ms.acc;
  float* const red_m = ms.m;
  float* const red_l = ms.l;
#pragma unroll
  for (int i = 0; i < QT; ++i) {
    const float mi = shfl_idx<L>(m_own, G::owner(i));  // key 0 of query i
    if (i >= nq) continue;                             // nq is uniform over the block
#pragma unroll
    for (int c = 0; c < S::NCH; ++c)
#pragma unroll
      for (int e = 0; e < S::VEC; ++e)
        red_acc[(i * R + rg) * D + S::dim(c, lir, e)] = Pol::get(acc[i], c * S::VEC + e);
    if (lir == 0) {
      red_m[i * R + rg] = mi;
      red_l[i * R + rg] = Pol::to_float_s(l[i]);
    }
  }
  __syncthreads();
  // fp32 accumulation of an fp8 cache with one V scale for every key: the output's.
  const bool scale_out = CR::kFp8 && !kElemScale && !token;
  finish_decode_block<Pol, R, QT, D, kSeparate, F>(
      p, ms, reinterpret_cast<unsigned*>(tiles + G::SMEM_WORDS - 1), nq, b, split, first, tile, kvh,
      out_row_of, scale_out, v_scale);
}

// A decode launch with qt queries a block: its parameters, split count, workspace and grid;
// kernel(grid, params, stream) launches the blocks, then split_kv's merge runs.
template <Fault F, int D, bool kSeparate, class Kernel>
void launch_decode_blocks(const StageArgs& a, int qt, Kernel&& kernel) {
  KernelParams p = make_params(a, qt);
  // Faults that attend keys outside the window widen the span the blocks walk.
  constexpr int below = FaultWindow<F>::lo < 0 ? -FaultWindow<F>::lo : 0;
  p.span_start -= below;
  p.span += below + FaultWindow<F>::hi;
  p.splits = kSeparate ? split_kv_splits(a.problem, launch_context(a))
                       : fused_splits(a.problem, launch_context(a));
  p.split_len = (p.span + p.splits - 1) / p.splits;
  const char* who = kSeparate ? "split_kv" : "fused";
  if (p.splits > 1 && a.workspace == nullptr)
    throw GpuError(std::string(who) + ": workspace required");
  check_workspace(a, decode_workspace_bytes(a.problem, p.splits, !kSeparate), who);
  hipStream_t st = static_cast<hipStream_t>(a.stream);
  // A ragged batch whose lengths the host knows: a block for each split that holds positions
  // of its sequence, and none for the splits before a sequence's start.
  if (a.seq_lens != nullptr && a.host_seq_lens != nullptr && p.splits > 1) {
    std::int64_t items = 0;
    for (int b = 0; b < p.batch; ++b)
      items += p.splits - first_split_at(p.seq_len - a.host_seq_lens[b], p.span_start, p.split_len);
    p.ragged_items = static_cast<int>(items);
    check_grid(items * p.kv_heads, 1, p.q_tiles, who, kDecThreads);
  }
  p.grid_x = p.splits;
  const Grid3 g =
      p.ragged_items > 0
          ? Grid3{unsigned(std::int64_t(p.ragged_items) * p.kv_heads), 1u, unsigned(p.q_tiles)}
          : fold_grid(p.splits, p.kv_heads, std::int64_t(p.batch) * p.q_tiles, who, kDecThreads);
  kernel(dim3(g.x, g.y, g.z), p, st);
  ATTNSCOPE_CHECK_LAUNCH();
  if (kSeparate && p.splits > 1) {
    const std::int64_t rows = std::int64_t(p.batch) * p.q_len * p.q_heads;
    const std::int64_t blocks = (rows + kCombineRows - 1) / kCombineRows;
    check_grid(blocks, 1, 1, "split_kv combine");
    decode_combine<F, D><<<dim3(unsigned(blocks)), kCombineThreads, 0, st>>>(p);
    ATTNSCOPE_CHECK_LAUNCH();
  }
}

template <class T, class C, Accum A, int D, bool kSeparate, Fault F>
struct DecodeLaunch {
  const StageArgs& a;
  template <int QT>
  void run() const {
    launch_decode_blocks<F, D, kSeparate>(
        a, QT, [](dim3 grid, const KernelParams& p, hipStream_t st) {
          decode_kernel<T, C, A, D, QT, kSeparate, F><<<grid, kDecThreads, 0, st>>>(p);
        });
  }
};

// The matrix-instruction kernels (decode_mma.hpp, config.hpp's decode_uses_mma) at head_dim D on
// a cache of C with q of Q (__half, or Bf16 with an fp8 cache): instantiated in decode_mma.hip
// and decode_fp8_*.hip.
template <int D, bool kSeparate, class C, class Q>
void launch_decode_mma(const StageArgs& a);

// The latent (MLA) decode kernel (decode_mla.hpp) on a cache of C (__half or an fp8 code):
// instantiated in decode_mla.hip and decode_fp8_*.hip; launch_decode_mla picks the cache's.
template <bool kSeparate, class C>
void launch_decode_mla_c(const StageArgs& a);
void launch_decode_mla(const StageArgs& a, bool separate);

// Runs launch.template run<QT>() with the query tile decode_query_tile(p) chooses (at most
// lane_query_cap: only those are instantiated).
template <class T, int D, class L>
void with_decode_query_tile(const Problem& p, const L& launch) {
  constexpr int cap = lane_query_cap(D, static_cast<int>(sizeof(T)));
  const int qt = decode_query_tile(p);
  if (qt == 1) {
    launch.template run<1>();
    return;
  }
  if constexpr (cap <= 2) {
    launch.template run<2>();
  } else {
    if (qt == 2) {
      launch.template run<2>();
    } else if constexpr (cap >= 8) {
      if (qt == 8)
        launch.template run<8>();
      else
        launch.template run<4>();
    } else {
      launch.template run<4>();
    }
  }
}

// C: the cache's elements where they are not T's (an fp8 code, Fp8Code<F>).
template <bool kSeparate, Fault F, class C = void>
struct LaunchDecode {
  const StageArgs& a;
  template <class T, Accum A, int D>
  void operator()() const {
    using CC = std::conditional_t<std::is_void_v<C>, T, C>;
    if (decode_uses_mma(a.problem)) {
      constexpr bool q_ok =
          std::is_same_v<T, __half> || (std::is_same_v<T, Bf16> && !std::is_void_v<C>);
      if constexpr (F == Fault::none && q_ok && A == Accum::fp32 &&
                    mma_decode_head_dim(D, !std::is_void_v<C>)) {
        launch_decode_mma<D, kSeparate, CC, T>(a);
        return;
      }
      throw GpuError("this problem runs the matrix-instruction decode kernel, which has no " +
                     std::string(F == Fault::none ? "instance for it" : "planted faults"));
    }
    if constexpr (std::is_void_v<C> || sizeof(T) == 2)
      with_decode_query_tile<T, D>(a.problem, DecodeLaunch<T, CC, A, D, kSeparate, F>{a});
    else
      throw GpuError("an fp8 KV cache is read with fp16 or bf16 queries");
  }
};

// fused (separate false) and split_kv on an fp8 cache of format FM: one instantiation a
// format, each in its own source (decode_fp8_*.hip).
template <Fp8Format FM>
void launch_decode_fp8(const StageArgs& a, bool separate);

}  // namespace attnscope::gpu::detail
