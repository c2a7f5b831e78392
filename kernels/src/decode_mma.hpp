// fused and split_kv with matrix instructions (config.hpp's decode_uses_mma): where a KV head has
// many queries (a GQA group of 8 or more, or several query positions), the lane-by-lane dots and
// weighted sums of decode_kernel.hpp cost more instructions than the bytes they read; as matrix
// products on the tensor cores they do not.
//
// A block holds kMmaQueries = 16 queries of a KV head (the instructions' rows; rows past the
// row's queries repeat its first and are never written) and streams its part of the window in
// tiles of kMmaKeys = 64 positions, RowStream's row-groups copying them (cp.async) into shared
// memory, each warp's 16 positions there as its own rows. Per tile each warp, on its 16 positions:
//  - S = q K^T (16 x 16, fp32) by mma.m16n8k16 over head_dim in steps of 16 dimensions. The
//    dimensions of a step are taken in a lane-friendly order (any order of a dot's terms is the
//    dot's): lane l's four of step s are 16 s + 4 (l % 4) + {0, 1, 2, 3}, for q and K alike, so
//    a lane reads K with one 8-byte load; rows are stored with their 16-byte chunks XOR-swizzled
//    by the row, so a warp's loads are free of bank conflicts;
//  - the online softmax per query: the tile's max over the warp's positions, alpha =
//    exp(m_old - m_new) rescaling l and the output, p = exp(s - m_new) in fp32; l adds the tile's
//    p's summed by a tree (the lane's four, then over the quad);
//  - O += P V: each p, scaled by 2^15, is carried as the sum of two binary16 values (hi = its
//    rounding, lo = the rounding of the rest: relative error below 2^-21) and both enter one
//    mma.m16n8k16 per 8 positions, hi and lo as its two halves of k, against V's 8 rows twice
//    (ldmatrix.trans gives V's columns).
// The warps' states are merged as decode_kernel's row-groups are (finish_decode_block), with the
// output scaled back by 2^-15.
//
// An fp8 cache (one scale per tensor or KV head) is read as codes and converted exactly to
// binary16 (fp8x2_to_half2): K four codes a lane and step (one 4-byte load), V by ldmatrix.trans
// on code pairs, each pair split into its even and odd dimensions, which go to two output tiles.
// The K scale joins the score's multiplier and the V scale multiplies the output.
#pragma once

#include "decode_kernel.hpp"

namespace attnscope::gpu::detail {

#if defined(ATTNSCOPE_PLATFORM_CUDA)

// C: the cache's elements, __half or an fp8 code (cache_read.hpp).
template <int D, class C = __half>
struct MmaGeom {
  using S = RowSplit<__half, D>;
  using CR = CacheRead<__half, C>;
  static constexpr int EB = CR::EB;          // bytes of a cache element
  using Word = typename CR::Word;            // a lane's copy: 8 elements (16 or 8 bytes)
  static constexpr int L = S::LPR;           // lanes of a row-group (RowStream)
  static constexpr int R = kDecThreads / L;  // row-groups
  static constexpr int WARPS = kDecThreads / kWarpSize;  // 4
  static constexpr int RPW = kWarpSize / L;              // row-groups a warp
  static constexpr int TK = 16 / RPW;                    // rows a row-group per tile
  static constexpr int KEYS = R * TK;                    // positions a tile
  static constexpr int ROW_BYTES = D * EB;
  static constexpr int CHUNKS = ROW_BYTES / 16;  // 16-byte chunks of a row
  static constexpr int STAGE_BYTES = WARPS * 2 * 16 * ROW_BYTES;
  static constexpr int STAGES = CR::kFp8 ? kMmaStagesFp8 : kMmaStages;
  static constexpr int STREAM_BYTES = STAGES * STAGE_BYTES;
  static constexpr int SCRATCH_BYTES = MergeScratch<kMmaQueries, WARPS, D>::FLOATS * 4;
  static constexpr int SMEM_BYTES =
      (STREAM_BYTES > SCRATCH_BYTES + 16 ? STREAM_BYTES : SCRATCH_BYTES + 16);
  static_assert(KEYS == kMmaKeys && WARPS * 16 == KEYS, "a warp takes 16 positions a tile");
  static_assert(S::VEC == 8 && D / 8 == S::NCH * L, "a lane's copy is 8 elements");
  static_assert(CHUNKS >= 8, "rows are swizzled over 8 chunks");
  // Byte offset of warp w's row n (of K: kv 0, V: kv 1) in a stage, and of its 16-byte chunk c,
  // chunks XOR-swizzled by the row.
  __device__ static int row(int w, int kv, int n) { return ((w * 2 + kv) * 16 + n) * ROW_BYTES; }
  __device__ static int chunk(int w, int kv, int n, int c) {
    return row(w, kv, n) + ((c ^ (n & 7)) << 4);
  }
  // The Word of a lane's copy ch (elements 8 ch .. 8 ch + 7 of the row).
  __device__ static int word(int w, int kv, int n, int ch) {
    constexpr int PER = 16 / static_cast<int>(sizeof(Word));  // copies a chunk
    return (chunk(w, kv, n, ch / PER) + (ch % PER) * static_cast<int>(sizeof(Word))) /
           static_cast<int>(sizeof(Word));
  }
};

template <int D, bool kSeparate, class C>
__global__ __launch_bounds__(kDecThreads, kMmaBlocksPerSm) void decode_mma_kernel(KernelParams p) {
#if ATTNSCOPE_MMA
  using G = MmaGeom<D, C>;
  using CR = typename G::CR;
  using Word = typename G::Word;
  using Pol = AccPolicy<__half, Accum::fp32, D>;
  constexpr int QT = kMmaQueries, R = G::R, L = G::L, TK = G::TK, W = G::WARPS;
  constexpr float kUp = 32768.0f, kDown = 1.0f / 32768.0f;  // 2^15: p's binary16 halves
  extern __shared__ uint4 smem[];
  const int tid = static_cast<int>(threadIdx.x);
  const int lir = tid % L, rg = tid / L;
  const int warp = tid / kWarpSize, lane = tid % kWarpSize;
  const int g = lane / 4, q4 = lane % 4;  // fragment row and column pair

  DecodeBlock blk;
  if (!blk.place(p, reinterpret_cast<int*>(smem), QT)) return;
  const int split = blk.split, b = blk.b, tile = blk.tile, kvh = blk.kvh, nq = blk.nq;
  const int first = blk.first;
  auto out_row_of = [&](int i) { return blk.out_row(p, i); };
  // The query of each of this lane's two rows (g, g + 8; past nq the block's first), its window.
  int qrow[2];
  std::int64_t key_lo[2], key_hi[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = g + 8 * r;
    qrow[r] = out_row_of(i < nq ? i : 0);
    blk.window(p, i, key_lo[r], key_hi[r]);
  }
  // q as the A operand of each step of 16 dimensions, in the lane order above.
  constexpr int STEPS = D / 16;
  unsigned qa[STEPS][4];
#pragma unroll
  for (int s = 0; s < STEPS; ++s)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint2 x = *reinterpret_cast<const uint2*>(static_cast<const __half*>(p.q) +
                                                      std::int64_t(qrow[r]) * D + 16 * s + 4 * q4);
      qa[s][r] = x.x;      // dimensions 4 q4, +1: a's columns 2 q4, +1
      qa[s][2 + r] = x.y;  // dimensions 4 q4 + 2, +3: a's columns 2 q4 + 8, +9
    }

  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  const std::int64_t shift = seq_shift(p, b);
  std::int64_t c0, c1;
  split_run(p, split, shift, G::KEYS, c0, c1);
  RowStream<Fault::none, __half, D, R, TK, G::EB> rows(p.kv, b, kvh, c0, c1, rg, lir, shift);
  const void* const src[2] = {p.k, p.v};
  char* const stages = reinterpret_cast<char*>(smem);
  // fp8 caches: one K and one V scale for the block, the score's multiplier fp32(scale x K scale)
  // and the output's. (Per-token scales take the lane kernel: a V scale folded into p could
  // carry p x 2^15 past binary16's range.)
  float score_mul = p.scale, v_scale = 1.0f;
  if constexpr (CR::kFp8) {
    score_mul = __fmul_rn(p.scale, p.k_scale[kvh * p.scale_step]);
    v_scale = p.v_scale[kvh * p.scale_step];
  }
  // Row-group rg's row j is row n = (rg % RPW) x TK + j of its warp.
  const int n_base = (rg % G::RPW) * TK;
  auto queue = [&](int t) {
    // The stage was read by other lanes of this warp in the tile before.
    sync_warp();
    // A masked position's row is not read (its p is 0, but 0 x a NaN a cache may hold there is
    // NaN): zeros instead.
    const std::int64_t pos0 = rows.pos0(t);
    const int stage = t % G::STAGES;
    rows.queue(
        t, src, reinterpret_cast<Word*>(stages + stage * G::STAGE_BYTES),
        [&](int j, int kv, int c) { return G::word(warp, kv, n_base + j, c * L + lir); },
        [](int, std::int64_t, bool) {},
        [&](int j) {
          const std::int64_t pos = pos0 + std::int64_t(j) * R;
          return p.key_mask == nullptr || (pos < c1 && key_attended<Fault::none>(p, b, shift, pos));
        });
  };
  // The position of the warp's row n in tile t.
  auto pos_of = [&](int t, int n) {
    return c0 + std::int64_t(t) * G::KEYS + (n % TK) * R + warp * G::RPW + n / TK;
  };
  stream_tiles<G::STAGES>(rows.ntiles, queue, [&](int t) {
    sync_warp();  // the warp's rows were copied by its lanes
    const char* st = stages + (t % G::STAGES) * G::STAGE_BYTES;
    // S for the warp's rows 0..7 (s[0]) and 8..15 (s[1]).
    float s[2][4];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      s[h][0] = s[h][1] = s[h][2] = s[h][3] = 0.0f;
      const int n = 8 * h + g;  // K's row this lane reads: b's column
#pragma unroll
      for (int k = 0; k < STEPS; ++k) {
        if constexpr (CR::kFp8) {
          // The step's 16 codes are chunk k; this lane's four at 4 q4.
          const unsigned kw =
              *reinterpret_cast<const unsigned*>(st + G::chunk(warp, 0, n, k) + 4 * q4);
          mma_16x8x16(s[h], qa[k], bits_of_half2(fp8x2_to_half2<CR::kFormat>(kw)),
                      bits_of_half2(fp8x2_to_half2<CR::kFormat>(kw >> 16)));
        } else {
          const uint2 kw = *reinterpret_cast<const uint2*>(
              st + G::chunk(warp, 0, n, 2 * k + q4 / 2) + (q4 % 2) * 8);
          mma_16x8x16(s[h], qa[k], kw.x, kw.y);
        }
      }
    }
    // Scores, and the positions outside a row's window or not attended: -inf.
    float tmax[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int n = 8 * h + 2 * q4 + e;
        const std::int64_t pos = pos_of(t, n);
        const bool key_in = pos < c1 && key_attended<Fault::none>(p, b, shift, pos);
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const bool in = key_in && pos >= key_lo[r] && pos < key_hi[r];
          float& x = s[h][2 * r + e];
          x = in ? __fmul_rn(x, score_mul) : -INFINITY;
          tmax[r] = fmaxf(tmax[r], x);
        }
      }
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tmax[r] = fmaxf(tmax[r], shfl_xor(tmax[r], 1));
      tmax[r] = fmaxf(tmax[r], shfl_xor(tmax[r], 2));
      const float mn = fmaxf(m[r], tmax[r]);
      alpha[r] = m[r] == -INFINITY ? 0.0f : expf(m[r] - mn);  // l and o are 0 before any key
      m[r] = mn;
    }
    // p = exp(s - m) (0 where s is -inf), each as binary16 halves of p x 2^15; the tile's sum.
    unsigned hi[2][2], lo[2][2];  // [h][row r]: the pair of columns 2 q4, +1
    float tsum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float pv[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float x = s[h][2 * r + e];
          pv[e] = x == -INFINITY ? 0.0f : expf(x - m[r]);
        }
        tsum[r] += pv[0] + pv[1];
        const __half2 ph = __floats2half2_rn(pv[0] * kUp, pv[1] * kUp);
        const float2 back = __half22float2(ph);
        const __half2 pl = __floats2half2_rn(pv[0] * kUp - back.x, pv[1] * kUp - back.y);
        hi[h][r] = bits_of_half2(ph);
        lo[h][r] = bits_of_half2(pl);
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tsum[r] += shfl_xor(tsum[r], 1);
      tsum[r] += shfl_xor(tsum[r], 2);
      l[r] = l[r] * alpha[r] + tsum[r];
    }
    if (!warp_all(alpha[0] == 1.0f && alpha[1] == 1.0f)) {
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        o[n][0] *= alpha[0];
        o[n][1] *= alpha[0];
        o[n][2] *= alpha[1];
        o[n][3] *= alpha[1];
      }
    }
    // O += P V, 8 positions a step: a = (hi | lo) of those positions, b = their V rows twice.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const unsigned a[4] = {hi[h][0], hi[h][1], lo[h][0], lo[h][1]};
#pragma unroll
      for (int c = 0; c < G::CHUNKS / 4; ++c) {
        // Matrix i: V's rows 8 h .. 8 h + 7, chunk 4 c + i.
        const int n = 8 * h + lane % 8;
        unsigned v[4];
        ldmatrix_x4_trans(v, st + G::chunk(warp, 1, n, 4 * c + lane / 8));
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          if constexpr (CR::kFp8) {
            // A chunk is 16 codes, read as 8 pairs: v[i] holds, for rows 2 q4 and 2 q4 + 1,
            // the codes of dimensions 16 cc + 2 g and + 1 (cc = 4 c + i). Output tile 2 cc
            // takes the even dimensions, 2 cc + 1 the odd.
            const unsigned even = __byte_perm(v[i], 0u, 0x0020);
            const unsigned odd = __byte_perm(v[i], 0u, 0x0031);
            const unsigned be = bits_of_half2(fp8x2_to_half2<CR::kFormat>(even));
            const unsigned bo = bits_of_half2(fp8x2_to_half2<CR::kFormat>(odd));
            mma_16x8x16(o[2 * (4 * c + i)], a, be, be);
            mma_16x8x16(o[2 * (4 * c + i) + 1], a, bo, bo);
          } else {
            mma_16x8x16(o[4 * c + i], a, v[i], v[i]);
          }
        }
      }
    }
  });
  AsyncCopy::wait<0>();
  __syncthreads();  // every warp is done with the tiles: their memory becomes the merge scratch

  const MergeScratch<QT, W, D> ms(reinterpret_cast<float*>(smem));
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
        ms.acc[(i * W + warp) * D + d0] = o[n][2 * r] * kDown;
        ms.acc[(i * W + warp) * D + d1] = o[n][2 * r + 1] * kDown;
      }
      if (q4 == 0) {
        ms.m[i * W + warp] = m[r];
        ms.l[i * W + warp] = l[r];
      }
    }
  }
  __syncthreads();
  finish_decode_block<Pol, W, QT, D, kSeparate, Fault::none>(
      p, ms, reinterpret_cast<unsigned*>(reinterpret_cast<char*>(smem) + G::SMEM_BYTES - 16), nq, b,
      split, first, tile, kvh, out_row_of, CR::kFp8, v_scale);
#else
  (void)p;
#endif
}

template <int D, bool kSeparate, class C>
void launch_decode_mma(const StageArgs& a) {
  constexpr int bytes = MmaGeom<D, C>::SMEM_BYTES;
  auto* kernel = decode_mma_kernel<D, kSeparate, C>;
  static const bool sized = [&] {
    ATTNSCOPE_CHECK(hipFuncSetAttributeMaxDynamicSharedMemory(kernel, bytes));
    return true;
  }();
  (void)sized;
  launch_decode_blocks<Fault::none, D, kSeparate>(
      a, kMmaQueries, [&](dim3 grid, const KernelParams& p, hipStream_t st) {
        kernel<<<grid, kDecThreads, bytes, st>>>(p);
      });
}

#else

// ROCm: no matrix-instruction decode kernel (an MFMA one is not written); decode_uses_mma is false
// there, so this is never called.
template <int D, bool kSeparate, class C>
void launch_decode_mma(const StageArgs&) {
  throw GpuError("the matrix-instruction decode kernel is built for NVIDIA GPUs only");
}

#endif

}  // namespace attnscope::gpu::detail
