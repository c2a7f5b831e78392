// fused and split_kv on a latent (MLA) cache: one cache of 576-wide rows shared by every query
// head, the scores over all 576 channels and V the rows' first 512. With 16 to 128 query heads
// on one cache row, decode is compute-bound, and both products run on the tensor cores
// (mma.m16n8k16, fp16 or bf16 operands as q and the cache are, fp32 accumulation).
//
// A block holds QT = 16 MT queries (MT = 1, 2 or 4: the fewest 16-query tiles that hold a row's
// queries, up to 64; rows past the block's queries repeat its first and are never written) and
// 2 MT warps, a pair for each tile of 16 queries: warp 2 mt + h takes queries 16 mt .. 16 mt + 15,
// positions 16 h .. 16 h + 15 of each tile in the dot, and output columns 256 h .. 256 h + 255.
// The block streams its split in tiles of kMlaKeys = 32 positions through kMlaStages shared-memory
// stages (cp.async: the next tile's copy in flight while one is computed); q's rows and the tiles
// sit in shared memory with each row's 16-byte chunks XOR-swizzled by the row (rows are 1152
// bytes, a multiple of 128, so without it a column of rows is one bank), read with ldmatrix. Per
// tile, after one block barrier (two for an fp8 cache, whose codes are first converted into an
// fp16 tile), each warp meets only its pair (a 64-thread named barrier, twice a tile):
//  - S = q K^T for its 16 queries and its 16 positions: 36 steps of 16 channels, the even steps
//    into one set of accumulators and the odd into another (four independent chains), the two
//    added;
//  - the online softmax per query: the pair's max of the tile (each warp's, exchanged through
//    shared memory), alpha = exp(m_old - m_new) rescaling l and the output, p = exp(s - m_new) in
//    fp32; each warp's l adds its own positions' p's, and the pair's two l's add at the end;
//  - O += P V for its 256 columns (128 fp32 accumulators a lane) over the tile's 32 positions:
//    each p, scaled by 2^15, is carried as two values of the operands' format (hi, its rounding,
//    lo, the rounding of the rest: relative error below 2^-21 in binary16 for p above 2^-18 of
//    the running max, below which lo is subnormal and the error at most 2^-40 absolute; below
//    2^-16 in bfloat16), which are, as S's accumulator layout leaves them in the lane, the a
//    operand of one mma.m16n8k16 per 8 positions (hi and lo as its two halves of k); each warp
//    stores its two operands for its partner. V's rows (ldmatrix.trans) enter twice.
// A position one query of the block attends and another does not (several query positions, or
// a window shorter than the cache) enters the second one's sums with p = 0: a NaN or Inf the
// cache holds there would reach it (0 x NaN), where the references leave the position out. The
// matrix-instruction kernel shares this; positions no query of the block attends are not read.
// The block ends as the other decode kernels do (finish_decode_block, one state a query): out and
// lse, or the split's partial, merged by split_kv's combine or in the launch.
//
// The same kernel runs the unfused stages on a latent cache (MlaPass): `scores` is qk (S as
// above, scaled, written for each query's window, -inf where a key is masked or before the
// sequence's start); `values` is pv (the probabilities read from memory take the place of p, as
// the same hi and lo operands, and the weighted sum is the output, or the split's partial that
// pv_combine adds in split order).
#pragma once

#include "decode_kernel.hpp"

namespace attnscope::gpu::detail {

#if defined(ATTNSCOPE_PLATFORM_CUDA)

// C: the cache's elements, __half, Bf16 (q bf16 too) or an fp8 code (cache_read.hpp; q fp16).
template <int MT, class C = __half>
struct MlaGeom {
  using CR = CacheRead<__half, C>;
  static constexpr bool kFp8 = CR::kFp8;
  static constexpr bool kBf16 = std::is_same_v<C, Bf16>;
  static constexpr int DQ = Problem::kMlaQkDim, DV = Problem::kMlaVDim;
  static constexpr int QT = 16 * MT, KEYS = kMlaKeys, STAGES = kMlaStages;
  static constexpr int WARPS = 2 * MT, THREADS = WARPS * kWarpSize;
  static constexpr int NT = DV / 2 / 8;       // output tiles of 8 columns a warp: 32
  static constexpr int KT = KEYS / 8;         // the dot's tiles of 8 positions: 4
  static constexpr int ROW = DQ * 2;          // bytes of a q or cache row
  static constexpr int CH = ROW / 16;         // its 16-byte chunks: 72
  static constexpr int LPR = THREADS / KEYS;  // threads copying a row: 2, 4 or 8
  static constexpr int CPT = CH / LPR;        // chunks a thread copies a tile
  static constexpr int COFS = 8 / LPR;        // a copying thread's chunk offsets
  // An fp16 cache's tiles are copied as the kernel reads them (swizzled rows); an fp8 cache's
  // as stored (rows of 576 codes, 36 chunks), then converted into one fp16 tile (HT_AT).
  static constexpr int CROW = DQ * CR::EB, CCH = CROW / 16;
  static constexpr int STAGE = KEYS * CROW;
  static constexpr int HT_AT = STAGES * STAGE;
  static constexpr int Q_AT = HT_AT + (kFp8 ? KEYS * ROW : 0);  // q's rows
  static constexpr int X_AT = Q_AT + QT * ROW;  // a pair's exchange: maxima, then weights
  static constexpr int X_BYTES = 2 * 16 * 4 + KT * kWarpSize * 16;
  static constexpr int SMEM = X_AT + MT * X_BYTES + 16;  // and fused's merge flag
  static constexpr int BLOCKS_PER_SM = mla_blocks_per_sm(MT);
  static_assert(KEYS == 32 && CH % 8 == 0 && CH % LPR == 0 && 8 % LPR == 0, "geometry");
  // The merge scratch lies over the tiles and q, below the pair's exchange (whose first words
  // hold the warps' l's while the scratch is filled).
  static_assert(MergeScratch<QT, 1, DV>::FLOATS * 4 <= X_AT, "the merge scratch over the tiles");
  // Byte offset of chunk r < 8 of row n, chunks XOR-swizzled by the row; chunk 8 a + r is 128 a
  // bytes further. A lane's loads take r from a few per-lane offsets and a from the (unrolled)
  // loop, an immediate.
  __device__ static int chunk_low(int n, int r) { return n * ROW + ((r ^ (n & 7)) << 4); }
};

// What a launch computes: attention (fused, split_kv), or one unfused stage.
enum class MlaPass { attention, scores, values };

template <int MT, bool kSeparate, class C, MlaPass kPass = MlaPass::attention>
__global__ __launch_bounds__(MlaGeom<MT, C>::THREADS,
                             MlaGeom<MT, C>::BLOCKS_PER_SM) void decode_mla_kernel(KernelParams p) {
#if ATTNSCOPE_MMA
  using G = MlaGeom<MT, C>;
  constexpr bool kScores = kPass == MlaPass::scores, kValues = kPass == MlaPass::values;
  static_assert(kPass == MlaPass::attention || !G::kFp8, "the unfused stages read no fp8 cache");
  using Pol = AccPolicy<std::conditional_t<G::kBf16, Bf16, __half>, Accum::fp32, G::DV>;
  constexpr int QT = G::QT, KEYS = G::KEYS, STAGES = G::STAGES, NT = G::NT, KT = G::KT;
  constexpr float kUp = 32768.0f, kDown = 1.0f / 32768.0f;  // 2^15: p's binary16 halves
  extern __shared__ uint4 smem[];
  char* const sm = reinterpret_cast<char*>(smem);
  const int tid = static_cast<int>(threadIdx.x);
  const int warp = tid / kWarpSize, lane = tid % kWarpSize;
  const int mt = warp / 2, half = warp % 2;  // the warp's 16 queries and 256 columns
  const int g = lane / 4, q4 = lane % 4, l8 = lane % 8;

  DecodeBlock blk;
  if (!blk.place(p, reinterpret_cast<int*>(smem), QT, kPass != MlaPass::attention)) return;
  const int split = blk.split, b = blk.b, tile = blk.tile, kvh = blk.kvh, nq = blk.nq;
  const int first = blk.first;
  auto out_row_of = [&](int i) { return blk.out_row(p, i); };
  // The window of this lane's two rows (16 mt + g, + 8; past nq the block's first query's).
  std::int64_t key_lo[2], key_hi[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) blk.window(p, 16 * mt + g + 8 * r, key_lo[r], key_hi[r]);

  const std::int64_t shift = seq_shift(p, b);
  std::int64_t c0, c1;
  if constexpr (kScores) {
    // Every position of the split gets its score, -inf before the sequence's start.
    c0 = p.span_start + std::int64_t(split) * p.split_len;
    c1 = min(c0 + p.split_len, p.span_start + p.span);
  } else {
    split_run(p, split, shift, KEYS, c0, c1);
  }
  const int ntiles = c1 > c0 ? static_cast<int>((c1 - c0 + KEYS - 1) / KEYS) : 0;

  // q's rows, in the first copy group (pv reads none).
  for (int x = tid; x < (kValues ? 0 : QT * G::CH); x += G::THREADS) {
    const int i = x / G::CH, c = x % G::CH;
    const int row = out_row_of(i < nq ? i : 0);
    AsyncCopy::copy16(sm + G::Q_AT + G::chunk_low(i, c % 8) + 128 * (c / 8),
                      static_cast<const char*>(p.q) + std::int64_t(row) * G::ROW + c * 16, true);
  }
  // Tile t's rows: thread tid copies chunks c = clane + LPR j of row tid / LPR, at
  // chunk_low(crow, LPR (j % COFS) + clane) + 128 (j / COFS). A position outside the split, the
  // sequence or the mask is not read (its p is 0, but 0 x a NaN a cache may hold there is NaN):
  // zeros instead.
  const int crow = tid / G::LPR, clane = tid % G::LPR;
  int cdst[G::COFS];
#pragma unroll
  for (int m = 0; m < G::COFS; ++m) cdst[m] = G::chunk_low(crow, G::LPR * m + clane);
  auto load_tile = [&](int t) {
    char* dst = sm + (t % STAGES) * G::STAGE;
    if constexpr (G::kFp8) {
      // 36 chunks of codes a row, as stored, one row's chunks after another over the threads.
      for (int x = tid; x < KEYS * G::CCH; x += G::THREADS) {
        const int row = x / G::CCH, c = x % G::CCH;
        const std::int64_t pos = c0 + std::int64_t(t) * KEYS + row;
        const bool ok = pos < c1 && key_attended<Fault::none>(p, b, shift, pos);
        const char* src =
            static_cast<const char*>(p.k) + (ok ? p.kv.offset(b, kvh, pos + shift) : 0) + c * 16;
        AsyncCopy::copy16(dst + row * G::CROW + c * 16, src, ok);
      }
    } else {
      const std::int64_t pos = c0 + std::int64_t(t) * KEYS + crow;
      const bool ok = pos < c1 && key_attended<Fault::none>(p, b, shift, pos);
      const char* src = static_cast<const char*>(p.k) +
                        (ok ? p.kv.offset(b, kvh, pos + shift) * 2 : 0) + clane * 16;
#pragma unroll
      for (int j = 0; j < G::CPT; ++j) {
        // pv reads V's 512 channels only (chunks 64 on: the rotary ones).
        if (kValues && G::LPR * j >= G::DV * 2 / 16) continue;
        AsyncCopy::copy16(dst + cdst[j % G::COFS] + 128 * (j / G::COFS), src + 16 * G::LPR * j, ok);
      }
    }
  };
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ntiles) load_tile(s);
    AsyncCopy::commit();
  }

  // Per-lane parts of the ldmatrix addresses: q's rows 16 mt + lane % 16 at chunks
  // 2 k + lane / 16; K's rows 16 half + 8 (lane / 16) + lane % 8 at chunks 2 k + (lane / 8) % 2
  // (n-tiles 2 half and 2 half + 1 of step k); V's rows 8 j + lane % 8 at chunks
  // 32 half + 4 c + lane / 8 (output tiles 4 c .. 4 c + 3).
  int qofs[4], kofs[4];
#pragma unroll
  for (int m = 0; m < 4; ++m) {
    qofs[m] = G::chunk_low(16 * mt + lane % 16, 2 * m + lane / 16);
    kofs[m] = G::chunk_low(8 * (lane / 16) + l8, 2 * m + (lane / 8) % 2);
  }
  const int vofs[2] = {G::chunk_low(l8, lane / 8) + 512 * half,
                       G::chunk_low(l8, 4 + lane / 8) + 512 * half};
  const char* const qs = sm + G::Q_AT;
  // The pair's exchange: [half][16 rows] maxima, then the a operands [step][lane].
  float* const pmax = reinterpret_cast<float*>(sm + G::X_AT + mt * G::X_BYTES);
  uint4* const pfrag = reinterpret_cast<uint4*>(sm + G::X_AT + mt * G::X_BYTES + 2 * 16 * 4);
  // A barrier of the pair's 64 threads (named barrier 1 + mt; 0 is __syncthreads').
  auto pair_sync = [&] {
    asm volatile("bar.sync %0, %1;" ::"r"(1 + mt), "r"(2 * kWarpSize) : "memory");
  };

  // fp8 caches: one scale for the block, the score's multiplier fp32(scale x K scale); the V
  // scale (the same, of the one cache) multiplies the output. (Per-token scales are refused: a
  // V scale folded into p could carry p x 2^15 past binary16's range.)
  float score_mul = p.scale, v_scale = 1.0f;
  if constexpr (G::kFp8) {
    score_mul = __fmul_rn(p.scale, p.k_scale[kvh * p.scale_step]);
    v_scale = p.v_scale[kvh * p.scale_step];
  }

  // The instruction of the operands' format.
  auto mma = [](float(&acc)[4], const unsigned(&x)[4], unsigned y0, unsigned y1) {
    mma_16x8x16<G::kBf16>(acc, x, y0, y1);
  };
  // Two weights (already x 2^15) as the operands' format's hi and lo halves, packed in pairs:
  // hi the rounding of w, lo the rounding of w - hi (exact in fp32). binary16: relative error
  // below 2^-21; bfloat16 (8 significant bits): below 2^-16.
  auto split_weights = [](float w0, float w1, unsigned& hi, unsigned& lo) {
    if constexpr (G::kBf16) {
      const std::uint16_t h0 = float_to_bf16_bits(w0), h1 = float_to_bf16_bits(w1);
      const std::uint16_t l0 = float_to_bf16_bits(w0 - to_float(Bf16{h0}));
      const std::uint16_t l1 = float_to_bf16_bits(w1 - to_float(Bf16{h1}));
      hi = static_cast<unsigned>(h0) | (static_cast<unsigned>(h1) << 16);
      lo = static_cast<unsigned>(l0) | (static_cast<unsigned>(l1) << 16);
    } else {
      const __half2 ph = __floats2half2_rn(w0, w1);
      const float2 back = __half22float2(ph);
      hi = bits_of_half2(ph);
      lo = bits_of_half2(__floats2half2_rn(w0 - back.x, w1 - back.y));
    }
  };

  // The stage passes' rows of scores or probabilities, for this lane's two queries (nullptr past
  // nq: nothing written, p read as 0).
  float* prow[2] = {nullptr, nullptr};
  if constexpr (kPass != MlaPass::attention) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int i = 16 * mt + g + 8 * r;
      if (i < nq) prow[r] = (kScores ? p.scores : p.probs) + blk.score_row(p, i);
    }
  }
  // values: tile t's probabilities for this lane's two queries and positions 16 half + 8 j +
  // 2 q4 + e, [j][r][e], loaded a tile ahead (0 outside the query's window, the split or the
  // mask: such a position's V row is zeros, or is another query's and enters with p = 0).
  float pr[2][2][2] = {};
  auto load_probs = [&](int t, float(&x)[2][2][2]) {
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const std::int64_t pos = c0 + std::int64_t(t) * KEYS + 16 * half + 8 * j + 2 * q4 + e;
        const bool key_in = t < ntiles && pos < c1 && key_attended<Fault::none>(p, b, shift, pos);
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const bool in = key_in && prow[r] != nullptr && pos >= key_lo[r] && pos < key_hi[r];
          x[j][r][e] = in ? __ldg(prow[r] + (pos - key_lo[r])) : 0.0f;
        }
      }
  };
  if constexpr (kValues) load_probs(0, pr);

  float o[kScores ? 1 : NT][4];
#pragma unroll
  for (int n = 0; n < (kScores ? 1 : NT); ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  // qk: q's fragments stay in registers (144 a lane, which attention's accumulators take), so a
  // step of the dot reads only K from shared memory.
  unsigned qreg[kScores ? G::DQ / 16 : 1][4];
  if constexpr (kScores) {
    AsyncCopy::wait<STAGES - 2>();  // q came with tile 0
    __syncthreads();
#pragma unroll
    for (int k = 0; k < G::DQ / 16; ++k) ldmatrix_x4(qreg[k], qs + qofs[k % 4] + 128 * (k / 4));
  }

  for (int t = 0; t < ntiles; ++t) {
    // Tile t has landed, and every warp is done with tile t - 1: its stage takes tile
    // t + STAGES - 1.
    AsyncCopy::wait<STAGES - 2>();
    __syncthreads();
    if (t + STAGES - 1 < ntiles) load_tile(t + STAGES - 1);
    AsyncCopy::commit();
    const char* st = sm + (t % STAGES) * G::STAGE;
    if constexpr (G::kFp8) {
      // The tile's codes become binary16 exactly (fp8x2_to_half2): 16 codes a chunk, two
      // chunks of the fp16 tile, swizzled as an fp16 cache's tile is.
      char* const ht = sm + G::HT_AT;
      for (int x = tid; x < KEYS * G::CCH; x += G::THREADS) {
        const int row = x / G::CCH, c = x % G::CCH;
        const uint4 w = *reinterpret_cast<const uint4*>(st + row * G::CROW + c * 16);
        const unsigned words[4] = {w.x, w.y, w.z, w.w};
        unsigned h[8];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          h[2 * i] = fp8x2_bits<G::CR::kFormat>(words[i]);
          h[2 * i + 1] = fp8x2_bits<G::CR::kFormat, true>(words[i]);
        }
        *reinterpret_cast<uint4*>(ht + G::chunk_low(row, (2 * c) % 8) + 128 * (2 * c / 8)) =
            make_uint4(h[0], h[1], h[2], h[3]);
        *reinterpret_cast<uint4*>(ht + G::chunk_low(row, (2 * c + 1) % 8) +
                                  128 * ((2 * c + 1) / 8)) = make_uint4(h[4], h[5], h[6], h[7]);
      }
      __syncthreads();
      st = ht;
    }

    if constexpr (kValues) {
      // pv: the probabilities as the a operands, exactly as attention's weights (x 2^15, hi and
      // lo halves), stored for the pair; the next tile's loads go out first.
      float cur[2][2][2];
#pragma unroll
      for (int j = 0; j < 2; ++j)
#pragma unroll
        for (int r = 0; r < 2; ++r) cur[j][r][0] = pr[j][r][0], cur[j][r][1] = pr[j][r][1];
      if (t + 1 < ntiles) load_probs(t + 1, pr);
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        unsigned hl[4];
#pragma unroll
        for (int r = 0; r < 2; ++r)
          split_weights(cur[j][r][0] * kUp, cur[j][r][1] * kUp, hl[r], hl[2 + r]);
        pfrag[(2 * half + j) * kWarpSize + lane] = make_uint4(hl[0], hl[1], hl[2], hl[3]);
      }
      pair_sync();
    } else {
      // S for the warp's 16 positions of the tile (16 half .. 16 half + 15, n-tiles 2 half and
      // 2 half + 1): 36 steps of 16 channels, each one q fragment and one K fragment; step k adds
      // into accumulator set k % 2 (four independent chains), the two sets added at the end.
      float sc[2][2][4] = {};
#pragma unroll
      for (int k = 0; k < G::DQ / 16; ++k) {
        unsigned qa[4], kb[4];
        if constexpr (kScores) {
#pragma unroll
          for (int i = 0; i < 4; ++i) qa[i] = qreg[k][i];
        } else {
          ldmatrix_x4(qa, qs + qofs[k % 4] + 128 * (k / 4));
        }
        ldmatrix_x4(kb, st + 16 * half * G::ROW + kofs[k % 4] + 128 * (k / 4));
        mma(sc[k % 2][0], qa, kb[0], kb[1]);
        mma(sc[k % 2][1], qa, kb[2], kb[3]);
      }
      float s[2][4];
#pragma unroll
      for (int j = 0; j < 2; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[j][e] = sc[0][j][e] + sc[1][j][e];
      if constexpr (kScores) {
        // qk: each query's scores over its window (j = pos - window start), -inf for a key the
        // mask leaves out or one before the sequence's start.
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const std::int64_t pos = c0 + std::int64_t(t) * KEYS + 16 * half + 8 * j + 2 * q4 + e;
            if (pos >= c1) continue;
            const bool key_in = key_attended<Fault::none>(p, b, shift, pos);
#pragma unroll
            for (int r = 0; r < 2; ++r)
              if (prow[r] != nullptr && pos >= key_lo[r] && pos < key_hi[r])
                prow[r][pos - key_lo[r]] =
                    key_in ? __fmul_rn(s[j][2 * r + e], score_mul) : -INFINITY;
          }
      } else {
        // Scores; positions outside a row's window or not attended: -inf. s[j][2 r + e] is row
        // g + 8 r, position 16 half + 8 j + 2 q4 + e of the tile.
        float tmax[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const std::int64_t pos = c0 + std::int64_t(t) * KEYS + 16 * half + 8 * j + 2 * q4 + e;
            const bool key_in = pos < c1 && key_attended<Fault::none>(p, b, shift, pos);
#pragma unroll
            for (int r = 0; r < 2; ++r) {
              const bool in = key_in && pos >= key_lo[r] && pos < key_hi[r];
              float& x = s[j][2 * r + e];
              x = in ? __fmul_rn(x, score_mul) : -INFINITY;
              tmax[r] = fmaxf(tmax[r], x);
            }
          }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          tmax[r] = fmaxf(tmax[r], shfl_xor(tmax[r], 1));
          tmax[r] = fmaxf(tmax[r], shfl_xor(tmax[r], 2));
        }
        // The pair's maxima meet in shared memory: both warps take the same running max.
        if (q4 == 0) {
          pmax[half * 16 + g] = tmax[0];
          pmax[half * 16 + g + 8] = tmax[1];
        }
        pair_sync();
        float alpha[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const float mn = fmaxf(m[r], fmaxf(pmax[g + 8 * r], pmax[16 + g + 8 * r]));
          alpha[r] = m[r] == -INFINITY ? 0.0f : expf(m[r] - mn);  // l and o are 0 before any key
          m[r] = mn;
        }
        // p = exp(s - m) (0 where s is -inf) as binary16 halves of p x 2^15: for positions
        // 8 j' .. 8 j' + 7 of the tile (j' = 2 half + j), the a operand {hi row g, hi row g + 8,
        // lo row g, lo row g + 8}, stored for both warps of the pair.
        float tsum[2] = {0.0f, 0.0f};
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          unsigned hl[4];
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            float pv[2];
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const float x = s[j][2 * r + e];
              pv[e] = x == -INFINITY ? 0.0f : expf(x - m[r]);
            }
            tsum[r] += pv[0] + pv[1];
            split_weights(pv[0] * kUp, pv[1] * kUp, hl[r], hl[2 + r]);
          }
          pfrag[(2 * half + j) * kWarpSize + lane] = make_uint4(hl[0], hl[1], hl[2], hl[3]);
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          tsum[r] += shfl_xor(tsum[r], 1);
          tsum[r] += shfl_xor(tsum[r], 2);
          l[r] = l[r] * alpha[r] + tsum[r];  // this warp's positions only: the pair's l's add up
        }
        if (!warp_all(alpha[0] == 1.0f && alpha[1] == 1.0f)) {
#pragma unroll
          for (int n = 0; n < NT; ++n) {
            o[n][0] *= alpha[0];
            o[n][1] *= alpha[0];
            o[n][2] *= alpha[1];
            o[n][3] *= alpha[1];
          }
        }
        pair_sync();  // the pair's weights
      }
    }
    // O += P V: 8 positions a step, the warp's 32 output tiles, V's columns by ldmatrix.trans.
    if constexpr (!kScores) {
#pragma unroll
      for (int j = 0; j < KT; ++j) {
        const uint4 a4 = pfrag[j * kWarpSize + lane];
        const unsigned a[4] = {a4.x, a4.y, a4.z, a4.w};
#pragma unroll
        for (int c = 0; c < NT / 4; ++c) {
          unsigned v[4];
          ldmatrix_x4_trans(v, st + 8 * j * G::ROW + vofs[c % 2] + 128 * (c / 2));
#pragma unroll
          for (int i = 0; i < 4; ++i) mma(o[(4 * c + i) % (kScores ? 1 : NT)], a, v[i], v[i]);
        }
      }
    }
  }
  AsyncCopy::wait<0>();
  if constexpr (kScores) {
    (void)m, (void)l;
  } else if constexpr (kValues) {
    // pv: the sum (x 2^-15), to out, or to the split's partial [row, split, 512].
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int i = 16 * mt + g + 8 * r;
      if (i >= nq) continue;
      const std::int64_t row = out_row_of(i);
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        const int d = 256 * half + 8 * n + 2 * q4;
        const float x0 = o[n][2 * r] * kDown, x1 = o[n][2 * r + 1] * kDown;
        if (p.splits == 1) {
          store_output(p.out, row * G::DV + d, x0, p.output);
          store_output(p.out, row * G::DV + d + 1, x1, p.output);
        } else {
          float* w = static_cast<float*>(p.workspace) + (row * p.splits + split) * G::DV + d;
          *reinterpret_cast<float2*>(w) = make_float2(x0, x1);
        }
      }
    }
    (void)m, (void)l;
  } else {
    __syncthreads();  // every warp is done with the tiles: their memory becomes the merge scratch

    const MergeScratch<QT, 1, G::DV> ms(reinterpret_cast<float*>(smem));
    float* const pl_end = reinterpret_cast<float*>(sm + G::X_AT);  // [half][QT]: the warps' l's
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int i = 16 * mt + g + 8 * r;
      if (i < nq) {
#pragma unroll
        for (int n = 0; n < NT; ++n) {
          const int d = 256 * half + 8 * n + 2 * q4;
          ms.acc[i * G::DV + d] = o[n][2 * r] * kDown;
          ms.acc[i * G::DV + d + 1] = o[n][2 * r + 1] * kDown;
        }
        if (q4 == 0) pl_end[half * QT + i] = l[r];
        if (q4 == 0 && half == 0) ms.m[i] = m[r];
      }
    }
    __syncthreads();
    if (tid < nq) ms.l[tid] = pl_end[tid] + pl_end[QT + tid];  // the pair's positions
    __syncthreads();
    finish_decode_block<Pol, 1, QT, G::DV, kSeparate, Fault::none, G::THREADS>(
        p, ms, reinterpret_cast<unsigned*>(sm + G::SMEM - 16), nq, b, split, first, tile, kvh,
        out_row_of, G::kFp8, v_scale);
  }
#else
  (void)p;
#endif
}

template <int MT, bool kSeparate, class C>
void launch_decode_mla_tile(const StageArgs& a) {
  using G = MlaGeom<MT, C>;
  auto* kernel = decode_mla_kernel<MT, kSeparate, C>;
  static const bool sized = [&] {
    ATTNSCOPE_CHECK(hipFuncSetAttributeMaxDynamicSharedMemory(kernel, G::SMEM));
    return true;
  }();
  (void)sized;
  launch_decode_blocks<Fault::none, G::DV, kSeparate>(
      a, G::QT, [&](dim3 grid, const KernelParams& p, hipStream_t st) {
        kernel<<<grid, G::THREADS, G::SMEM, st>>>(p);
      });
}

template <bool kSeparate, class C>
void launch_decode_mla_c(const StageArgs& a) {
  const std::string why = mla_support(a.problem);
  if (!why.empty()) throw GpuError(why);
  switch (mla_query_tiles(a.problem)) {
    case 1:
      launch_decode_mla_tile<1, kSeparate, C>(a);
      return;
    case 2:
      launch_decode_mla_tile<2, kSeparate, C>(a);
      return;
    default:
      launch_decode_mla_tile<4, kSeparate, C>(a);
  }
}

#else

// ROCm: no latent decode kernel (an MFMA one is not written); mla_support refuses latent
// problems there, so this is never called.
template <bool kSeparate, class C>
void launch_decode_mla_c(const StageArgs& a) {
  throw GpuError(mla_support(a.problem));
}

#endif

}  // namespace attnscope::gpu::detail
