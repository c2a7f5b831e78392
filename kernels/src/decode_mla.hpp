// fused and split_kv on a latent (MLA) cache: one cache of 576-wide rows shared by every query
// head, the scores over all 576 channels and V the rows' first 512. With 16 to 128 query heads
// on one cache row, decode is compute-bound, and both products run on the tensor cores
// (mma.m16n8k16, fp16 operands, fp32 accumulation).
//
// A block of 4 warps holds kMlaQueries = 16 queries (the instructions' rows; rows past the
// block's queries repeat its first and are never written) and streams its split in tiles of
// kMlaKeys = 32 positions, kMlaStages tiles in flight (cp.async, 4 threads a row). q's 16 rows
// and the tiles sit in shared memory with each row's 16-byte chunks XOR-swizzled by the row
// (rows are 1152 bytes, a multiple of 128, so without it a column of rows is one bank), and are
// read with ldmatrix. Per tile:
//  - S = q K^T, the warps side by side on the keys: warp w takes positions 8 w .. 8 w + 7 of the
//    tile, 36 instructions of 16 channels each, into four accumulators in turn (so that four
//    instructions are in flight, not one chain of 36), joined by a tree;
//  - the online softmax, one running max for the block: each warp's max of its scores, exchanged
//    through shared memory; alpha = exp(m_old - m_new) rescales the output, p = exp(s - m_new)
//    in fp32. Each warp sums its own p's into its l (same m and alpha everywhere, so the warps'
//    l's add up at the end);
//  - O += P V, the warps side by side on the output: warp w takes columns 128 w .. 128 w + 127
//    (64 fp32 accumulators a lane) over all 32 positions. Each p, scaled by 2^15, is carried as
//    two binary16 values (hi, its rounding, lo, the rounding of the rest: relative error below
//    2^-21); the warp that computed them stores them in shared memory as the a operand of one
//    mma.m16n8k16 per 8 positions (hi and lo as its two halves of k), and V's rows enter twice
//    (ldmatrix.trans).
// The block ends as the other decode kernels do (finish_decode_block, one state a query): out and
// lse, or the split's partial, merged by split_kv's combine or in the launch.
#pragma once

#include "decode_kernel.hpp"

namespace attnscope::gpu::detail {

#if defined(ATTNSCOPE_PLATFORM_CUDA)

struct MlaGeom {
  static constexpr int DQ = Problem::kMlaQkDim, DV = Problem::kMlaVDim;
  static constexpr int QT = kMlaQueries, KEYS = kMlaKeys, STAGES = kMlaStages;
  static constexpr int W = kDecThreads / kWarpSize;  // 4 warps
  static constexpr int KPW = KEYS / W;               // positions a warp in the dot: 8
  static constexpr int NT = DV / W / 8;              // output tiles of 8 columns a warp: 16
  static constexpr int DOT_CHAINS = 4;               // the dot's independent accumulators
  static constexpr int ROW = DQ * 2;                 // bytes of a q or cache row
  static constexpr int CH = ROW / 16;                // its 16-byte chunks: 72
  static constexpr int LPR = kDecThreads / KEYS;     // threads copying a row: 4
  static constexpr int STAGE = KEYS * ROW;
  static constexpr int Q_AT = STAGES * STAGE;               // q's rows
  static constexpr int P_AT = Q_AT + QT * ROW;              // p's a operands [W][lane][4]
  static constexpr int MAX_AT = P_AT + W * kWarpSize * 16;  // the warps' maxima [W][QT]
  static constexpr int SMEM = MAX_AT + W * QT * 4 + 16;     // and fused's merge flag
  static_assert(DOT_CHAINS == 4, "the dot's accumulators are joined by a tree of two levels");
  static_assert(KPW == 8 && CH % 8 == 0 && CH % LPR == 0 && DV % (W * 32) == 0, "geometry");
  static_assert(MergeScratch<QT, 1, DV>::FLOATS * 4 <= Q_AT, "the merge scratch over the tiles");
  // Byte offset of chunk c of row n (of a stage, or of q), chunks XOR-swizzled by the row.
  __device__ static int chunk(int n, int c) { return n * ROW + ((c ^ (n & 7)) << 4); }
  // The same as the offset of chunk r < 8 of row n plus 128 a: chunk 8 a + r. A lane's loads
  // take r from a few per-lane offsets and a from the (unrolled) loop, an immediate.
  __device__ static int chunk_low(int n, int r) { return n * ROW + ((r ^ (n & 7)) << 4); }
};

template <bool kSeparate>
__global__ __launch_bounds__(kDecThreads, kMlaBlocksPerSm) void decode_mla_kernel(KernelParams p) {
#if ATTNSCOPE_MMA
  using G = MlaGeom;
  using Pol = AccPolicy<__half, Accum::fp32, G::DV>;
  constexpr int QT = G::QT, W = G::W, KEYS = G::KEYS, STAGES = G::STAGES;
  constexpr float kUp = 32768.0f, kDown = 1.0f / 32768.0f;  // 2^15: p's binary16 halves
  extern __shared__ uint4 smem[];
  char* const sm = reinterpret_cast<char*>(smem);
  const int tid = static_cast<int>(threadIdx.x);
  const int warp = tid / kWarpSize, lane = tid % kWarpSize;
  const int g = lane / 4, q4 = lane % 4;  // fragment row and column pair

  int split, b, tile, kvh;
  if (!decode_block_indices(p, reinterpret_cast<int*>(smem), split, b, tile, kvh)) return;
  const int q0 = tile * QT;
  const int nq = min(QT, p.group * p.q_len - q0);
  const int first = first_split(p, b);
  if (split < first) return;

  // The output row (b, t, h) of query i < nq of the block.
  auto out_row_of = [&](int i) {
    const int qi = q0 + i;
    const int t = qi / p.group, h = query_head<Fault::none>(kvh, qi % p.group, p.group, p.kv_heads);
    return (b * p.q_len + t) * p.q_heads + h;
  };
  // The window of this lane's two rows (g, g + 8; past nq the block's first query's).
  std::int64_t key_lo[2], key_hi[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = g + 8 * r < nq ? g + 8 * r : 0;
    const int t = (q0 + i) / p.group;
    const std::int64_t win_end = p.seq_len - p.q_len + t + 1;
    key_lo[r] = win_end - p.window;
    key_hi[r] = win_end;
  }

  const std::int64_t shift = seq_shift(p, b);
  std::int64_t c0, c1;
  split_run(p, split, shift, KEYS, c0, c1);
  const int ntiles = c1 > c0 ? static_cast<int>((c1 - c0 + KEYS - 1) / KEYS) : 0;

  // q's rows, in the first copy group.
  for (int x = tid; x < QT * G::CH; x += kDecThreads) {
    const int i = x / G::CH, c = x % G::CH;
    const int row = out_row_of(i < nq ? i : 0);
    AsyncCopy::copy16(sm + G::Q_AT + G::chunk(i, c),
                      static_cast<const char*>(p.q) + std::int64_t(row) * G::ROW + c * 16, true);
  }
  // Tile t's rows: thread tid copies chunks tid % LPR, + LPR, ... of row tid / LPR. A position
  // outside the split, the sequence or the mask is not read (its p is 0, but 0 x a NaN a cache
  // may hold there is NaN): zeros instead.
  // Chunk c = 4 j + clane (j = 2 a + h) is at chunk_low(crow, 4 h + clane) + 128 a.
  const int crow = tid / G::LPR, clane = tid % G::LPR;
  static_assert(G::LPR == 4, "a row's copies step 4 chunks");
  const int cdst[2] = {G::chunk_low(crow, clane), G::chunk_low(crow, 4 + clane)};
  auto load_tile = [&](int t) {
    const std::int64_t pos = c0 + std::int64_t(t) * KEYS + crow;
    const bool ok = pos < c1 && key_attended<Fault::none>(p, b, shift, pos);
    const char* src = static_cast<const char*>(p.k) +
                      (ok ? p.kv.offset(b, kvh, pos + shift) * 2 : 0) + clane * 16;
    char* dst = sm + (t % STAGES) * G::STAGE;
#pragma unroll
    for (int j = 0; j < G::CH / G::LPR; ++j)
      AsyncCopy::copy16(dst + cdst[j % 2] + 128 * (j / 2), src + 64 * j, ok);
  };
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ntiles) load_tile(s);
    AsyncCopy::commit();
  }

  float o[G::NT][4];
#pragma unroll
  for (int n = 0; n < G::NT; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  // Per-lane parts of the ldmatrix addresses (chunk_low): K's rows 8 warp + lane % 8 at chunks
  // 2 k + lane / 8 (k even), q's rows lane % 16 at chunks 2 s + lane / 16, V's rows
  // 8 kk + lane % 8 at chunks 16 warp + 4 c + lane / 8.
  const int l8 = lane % 8;
  const int kofs[2] = {G::chunk_low(G::KPW * warp + l8, lane / 8),
                       G::chunk_low(G::KPW * warp + l8, 4 + lane / 8)};
  int qofs[4];
#pragma unroll
  for (int m = 0; m < 4; ++m) qofs[m] = G::chunk_low(lane % 16, 2 * m + lane / 16);
  static_assert(G::NT == 16, "a warp's V columns are two 128-byte groups a pair of steps");
  const int vofs[2] = {G::chunk_low(l8, lane / 8) + 256 * warp,
                       G::chunk_low(l8, 4 + lane / 8) + 256 * warp};
  float* const red_max = reinterpret_cast<float*>(sm + G::MAX_AT);  // [W][QT]
  uint4* const pa = reinterpret_cast<uint4*>(sm + G::P_AT);         // [W][lane]
  const char* const qs = sm + G::Q_AT;

  for (int t = 0; t < ntiles; ++t) {
    // Tile t has landed, and every warp is done with tile t - 1: its stage takes tile
    // t + STAGES - 1.
    AsyncCopy::wait<STAGES - 2>();
    __syncthreads();
    if (t + STAGES - 1 < ntiles) load_tile(t + STAGES - 1);
    AsyncCopy::commit();
    const char* st = sm + (t % STAGES) * G::STAGE;

    // S for the warp's 8 positions: 36 steps of 16 channels, K's chunks 2k .. 2k + 3 (steps k
    // and k + 1) by one ldmatrix. Step k adds into accumulator k % 4 (four independent chains
    // of instructions), and the four are joined by a tree: (0 + 1) + (2 + 3).
    float sc[G::DOT_CHAINS][4] = {};
#pragma unroll
    for (int k = 0; k < G::DQ / 16; k += 2) {
      unsigned kb[4];
      ldmatrix_x4(kb, st + kofs[(k / 2) % 2] + 128 * (k / 4));
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        unsigned qa[4];
        ldmatrix_x4(qa, qs + qofs[(k + u) % 4] + 128 * ((k + u) / 4));
        mma_16x8x16(sc[(k + u) % G::DOT_CHAINS], qa, kb[2 * u], kb[2 * u + 1]);
      }
    }
    float s[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) s[e] = (sc[0][e] + sc[1][e]) + (sc[2][e] + sc[3][e]);
    // Scores; positions outside a row's window or not attended: -inf. s[e] is row g, s[2 + e]
    // row g + 8, position 2 q4 + e of the warp's.
    float tmax[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const std::int64_t pos = c0 + std::int64_t(t) * KEYS + G::KPW * warp + 2 * q4 + e;
      const bool key_in = pos < c1 && key_attended<Fault::none>(p, b, shift, pos);
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const bool in = key_in && pos >= key_lo[r] && pos < key_hi[r];
        float& x = s[2 * r + e];
        x = in ? __fmul_rn(x, p.scale) : -INFINITY;
        tmax[r] = fmaxf(tmax[r], x);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tmax[r] = fmaxf(tmax[r], shfl_xor(tmax[r], 1));
      tmax[r] = fmaxf(tmax[r], shfl_xor(tmax[r], 2));
    }
    if (q4 == 0) {
      red_max[warp * QT + g] = tmax[0];
      red_max[warp * QT + g + 8] = tmax[1];
    }
    __syncthreads();
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mn = m[r];
#pragma unroll
      for (int w = 0; w < W; ++w) mn = fmaxf(mn, red_max[w * QT + g + 8 * r]);
      alpha[r] = m[r] == -INFINITY ? 0.0f : expf(m[r] - mn);  // l and o are 0 before any key
      m[r] = mn;
    }
    // p = exp(s - m) (0 where s is -inf) as binary16 halves of p x 2^15; the warp's sums.
    unsigned hi[2], lo[2];
    float tsum[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float pv[2];
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float x = s[2 * r + e];
        pv[e] = x == -INFINITY ? 0.0f : expf(x - m[r]);
      }
      tsum[r] = pv[0] + pv[1];
      const __half2 ph = __floats2half2_rn(pv[0] * kUp, pv[1] * kUp);
      const float2 back = __half22float2(ph);
      const __half2 pl = __floats2half2_rn(pv[0] * kUp - back.x, pv[1] * kUp - back.y);
      hi[r] = bits_of_half2(ph);
      lo[r] = bits_of_half2(pl);
      tsum[r] += shfl_xor(tsum[r], 1);
      tsum[r] += shfl_xor(tsum[r], 2);
      l[r] = l[r] * alpha[r] + tsum[r];
    }
    // The a operand of the step over this warp's positions: rows g and g + 8, hi as k 2 q4, +1,
    // lo as k 8 + 2 q4, +1.
    pa[warp * kWarpSize + lane] = make_uint4(hi[0], hi[1], lo[0], lo[1]);
    if (!warp_all(alpha[0] == 1.0f && alpha[1] == 1.0f)) {
#pragma unroll
      for (int n = 0; n < G::NT; ++n) {
        o[n][0] *= alpha[0];
        o[n][1] *= alpha[0];
        o[n][2] *= alpha[1];
        o[n][3] *= alpha[1];
      }
    }
    __syncthreads();  // every warp's p
    // O += P V over the tile's positions, 8 a step (warp kk's), for the warp's 128 columns.
#pragma unroll
    for (int kk = 0; kk < W; ++kk) {
      const uint4 a4 = pa[kk * kWarpSize + lane];
      const unsigned a[4] = {a4.x, a4.y, a4.z, a4.w};
#pragma unroll
      for (int c = 0; c < G::NT / 4; ++c) {
        // Matrix i: V's rows 8 kk .. 8 kk + 7, chunk 16 warp + 4 c + i.
        unsigned v[4];
        ldmatrix_x4_trans(v, st + kk * G::KPW * G::ROW + vofs[c % 2] + 128 * (c / 2));
#pragma unroll
        for (int i = 0; i < 4; ++i) mma_16x8x16(o[4 * c + i], a, v[i], v[i]);
      }
    }
  }
  AsyncCopy::wait<0>();
  __syncthreads();  // every warp is done with the tiles: their memory becomes the merge scratch

  const MergeScratch<QT, 1, G::DV> ms(reinterpret_cast<float*>(smem));
  float* const lw = red_max;  // the warps' l's [W][QT]
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = g + 8 * r;
    if (i < nq) {
#pragma unroll
      for (int n = 0; n < G::NT; ++n) {
        const int d = 8 * (G::NT * warp + n) + 2 * q4;
        ms.acc[i * G::DV + d] = o[n][2 * r] * kDown;
        ms.acc[i * G::DV + d + 1] = o[n][2 * r + 1] * kDown;
      }
      if (q4 == 0) {
        lw[warp * QT + i] = l[r];
        if (warp == 0) ms.m[i] = m[r];
      }
    }
  }
  __syncthreads();
  if (tid < nq) {
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < W; ++w) sum += lw[w * QT + tid];
    ms.l[tid] = sum;
  }
  __syncthreads();
  finish_decode_block<Pol, 1, QT, G::DV, kSeparate, Fault::none>(
      p, ms, reinterpret_cast<unsigned*>(sm + G::SMEM - 16), nq, b, split, first, tile, kvh,
      out_row_of, false, 1.0f);
#else
  (void)p;
#endif
}

template <bool kSeparate>
void launch_decode_mla(const StageArgs& a) {
  const std::string why = mla_support(a.problem);
  if (!why.empty()) throw GpuError(why);
  constexpr int bytes = MlaGeom::SMEM;
  auto* kernel = decode_mla_kernel<kSeparate>;
  static const bool sized = [&] {
    ATTNSCOPE_CHECK(hipFuncSetAttributeMaxDynamicSharedMemory(kernel, bytes));
    return true;
  }();
  (void)sized;
  launch_decode_blocks<Fault::none, MlaGeom::DV, kSeparate>(
      a, kMlaQueries, [&](dim3 grid, const KernelParams& p, hipStream_t st) {
        kernel<<<grid, kDecThreads, bytes, st>>>(p);
      });
}

#else

// ROCm: no latent decode kernel (an MFMA one is not written); mla_support refuses latent
// problems there, so this is never called.
template <bool kSeparate>
void launch_decode_mla(const StageArgs& a) {
  throw GpuError(mla_support(a.problem));
}

#endif

}  // namespace attnscope::gpu::detail
