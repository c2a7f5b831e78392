// The one place where ROCm and NVIDIA differ. Kernel sources spell HIP only; on ROCm this
// includes the HIP runtime, on NVIDIA (nvcc compiling .hip files as CUDA) it maps the HIP names
// attnscope uses onto the CUDA runtime. The mapping is deliberately limited to what the project
// calls: Debian's HIP-on-NVIDIA headers no longer compile against CUDA 13.
#pragma once

#include "attnscope/core/fp8.hpp"

#if defined(ATTNSCOPE_PLATFORM_ROCM)
#include <hip/hip_fp16.h>
#include <hip/hip_runtime.h>
#elif defined(ATTNSCOPE_PLATFORM_CUDA)
#include <cuda_fp16.h>
#include <cuda_runtime.h>

using hipError_t = cudaError_t;
using hipStream_t = cudaStream_t;
using hipEvent_t = cudaEvent_t;
using hipDeviceAttribute_t = cudaDeviceAttr;
using hipMemcpyKind = cudaMemcpyKind;

#define hipSuccess cudaSuccess
#define hipMemcpyHostToDevice cudaMemcpyHostToDevice
#define hipMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define hipMemcpyDeviceToDevice cudaMemcpyDeviceToDevice
#define hipDeviceAttributeMultiprocessorCount cudaDevAttrMultiProcessorCount
#define hipDeviceAttributeL2CacheSize cudaDevAttrL2CacheSize
#define hipDeviceAttributeWarpSize cudaDevAttrWarpSize
#define hipDeviceAttributeMaxSharedMemoryPerBlock cudaDevAttrMaxSharedMemoryPerBlock
#define hipDeviceAttributeSharedMemPerBlockOptin cudaDevAttrMaxSharedMemoryPerBlockOptin
#define hipDeviceAttributeComputeCapabilityMajor cudaDevAttrComputeCapabilityMajor
#define hipDeviceAttributeComputeCapabilityMinor cudaDevAttrComputeCapabilityMinor
#define hipDeviceAttributeClockRate cudaDevAttrClockRate
#define hipDeviceAttributeMemoryClockRate cudaDevAttrMemoryClockRate
#define hipDeviceAttributeMemoryBusWidth cudaDevAttrGlobalMemoryBusWidth
#define hipErrorNoDevice cudaErrorNoDevice
#define hipErrorInsufficientDriver cudaErrorInsufficientDriver
#define hipErrorNotReady cudaErrorNotReady
#define hipHostMallocMapped cudaHostAllocMapped
#define hipHostMallocCoherent 0u  // mapped memory is coherent on CUDA

inline const char* hipGetErrorString(hipError_t e) {
  return cudaGetErrorString(e);
}
inline const char* hipGetErrorName(hipError_t e) {
  return cudaGetErrorName(e);
}
inline hipError_t hipGetLastError() {
  return cudaGetLastError();
}
inline hipError_t hipGetDeviceCount(int* n) {
  return cudaGetDeviceCount(n);
}
inline hipError_t hipSetDevice(int d) {
  return cudaSetDevice(d);
}
inline hipError_t hipGetDevice(int* d) {
  return cudaGetDevice(d);
}
inline hipError_t hipDeviceSynchronize() {
  return cudaDeviceSynchronize();
}
inline hipError_t hipDeviceGetAttribute(int* v, hipDeviceAttribute_t a, int d) {
  return cudaDeviceGetAttribute(v, a, d);
}
inline hipError_t hipDeviceGetName(char* name, int len, int d) {
  // cudaDeviceProp's name field is still present in CUDA 13; only this field is read.
  cudaDeviceProp prop{};
  const cudaError_t e = cudaGetDeviceProperties(&prop, d);
  if (e != cudaSuccess) return e;
  int i = 0;
  for (; i + 1 < len && prop.name[i] != '\0'; ++i) name[i] = prop.name[i];
  if (len > 0) name[i] = '\0';
  return cudaSuccess;
}
inline hipError_t hipDeviceGetPCIBusId(char* id, int len, int d) {
  return cudaDeviceGetPCIBusId(id, len, d);
}
inline hipError_t hipMalloc(void** p, size_t n) {
  return cudaMalloc(p, n);
}
inline hipError_t hipFree(void* p) {
  return cudaFree(p);
}
inline hipError_t hipMemcpy(void* d, const void* s, size_t n, hipMemcpyKind k) {
  return cudaMemcpy(d, s, n, k);
}
inline hipError_t hipMemcpyAsync(void* d, const void* s, size_t n, hipMemcpyKind k,
                                 hipStream_t st) {
  return cudaMemcpyAsync(d, s, n, k, st);
}
inline hipError_t hipHostMalloc(void** p, size_t n, unsigned flags) {
  return cudaHostAlloc(p, n, flags);
}
inline hipError_t hipHostFree(void* p) {
  return cudaFreeHost(p);
}
inline hipError_t hipHostGetDevicePointer(void** d, void* h, unsigned flags) {
  return cudaHostGetDevicePointer(d, h, flags);
}
inline hipError_t hipMemset(void* p, int v, size_t n) {
  return cudaMemset(p, v, n);
}
inline hipError_t hipMemsetAsync(void* p, int v, size_t n, hipStream_t st) {
  return cudaMemsetAsync(p, v, n, st);
}
inline hipError_t hipMemGetInfo(size_t* free_bytes, size_t* total) {
  return cudaMemGetInfo(free_bytes, total);
}
inline hipError_t hipStreamCreate(hipStream_t* s) {
  return cudaStreamCreate(s);
}
inline hipError_t hipStreamDestroy(hipStream_t s) {
  return cudaStreamDestroy(s);
}
inline hipError_t hipStreamSynchronize(hipStream_t s) {
  return cudaStreamSynchronize(s);
}
inline hipError_t hipEventCreate(hipEvent_t* e) {
  return cudaEventCreate(e);
}
inline hipError_t hipEventDestroy(hipEvent_t e) {
  return cudaEventDestroy(e);
}
inline hipError_t hipEventRecord(hipEvent_t e, hipStream_t s) {
  return cudaEventRecord(e, s);
}
inline hipError_t hipEventSynchronize(hipEvent_t e) {
  return cudaEventSynchronize(e);
}
inline hipError_t hipEventQuery(hipEvent_t e) {
  return cudaEventQuery(e);
}
inline hipError_t hipEventElapsedTime(float* ms, hipEvent_t a, hipEvent_t b) {
  return cudaEventElapsedTime(ms, a, b);
}
inline hipError_t hipDriverGetVersion(int* v) {
  return cudaDriverGetVersion(v);
}
inline hipError_t hipRuntimeGetVersion(int* v) {
  return cudaRuntimeGetVersion(v);
}
template <class F>
inline hipError_t hipFuncSetAttributeMaxDynamicSharedMemory(F* f, int bytes) {
  return cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}
#else
#error \
    "attnscope/platform/hip_platform.hpp needs ATTNSCOPE_PLATFORM_ROCM or ATTNSCOPE_PLATFORM_CUDA"
#endif

#if defined(ATTNSCOPE_PLATFORM_ROCM)
template <class F>
inline hipError_t hipFuncSetAttributeMaxDynamicSharedMemory(F* f, int bytes) {
  return hipFuncSetAttribute(reinterpret_cast<const void*>(f),
                             hipFuncAttributeMaxDynamicSharedMemorySize, bytes);
}
#endif

namespace attnscope::gpu {

// Warp (wavefront) width as a compile-time constant: 64 on CDNA (gfx9), 32 on RDNA and NVIDIA.
// The host pass sees no target; host code must query hipDeviceAttributeWarpSize instead.
#if defined(ATTNSCOPE_PLATFORM_ROCM) && defined(__HIP_DEVICE_COMPILE__)
#if defined(__AMDGCN_WAVEFRONT_SIZE)
inline constexpr int kWarpSize = __AMDGCN_WAVEFRONT_SIZE;
#else
inline constexpr int kWarpSize = 64;
#endif
#else
inline constexpr int kWarpSize = 32;
#endif

// Butterfly exchange within a warp of width W (W a power of two, at most kWarpSize).
template <int W = kWarpSize, class T>
__device__ __forceinline__ T shfl_xor(T v, int lane_mask) {
#if defined(ATTNSCOPE_PLATFORM_CUDA)
  return __shfl_xor_sync(0xffffffffu, v, lane_mask, W);
#else
  return __shfl_xor(v, lane_mask, W);
#endif
}

// True when `pred` holds on every lane of the warp (wavefront); every lane must call it.
__device__ __forceinline__ bool warp_all(bool pred) {
#if defined(ATTNSCOPE_PLATFORM_CUDA)
  return __all_sync(0xffffffffu, pred) != 0;
#else
  return __all(pred) != 0;
#endif
}

// Lane `src` (counted within each segment of W lanes) of the caller's segment.
template <int W = kWarpSize, class T>
__device__ __forceinline__ T shfl_idx(T v, int src) {
#if defined(ATTNSCOPE_PLATFORM_CUDA)
  return __shfl_sync(0xffffffffu, v, src, W);
#else
  return __shfl(v, src, W);
#endif
}

// A barrier of the calling warp (every lane calls it): its lanes' shared-memory accesses before
// it are ordered before those after it.
__device__ __forceinline__ void sync_warp() {
#if defined(ATTNSCOPE_PLATFORM_CUDA)
  __syncwarp();
#else
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "wavefront");
  __builtin_amdgcn_wave_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "wavefront");
#endif
}

// Asynchronous 16-byte copies from global to shared memory, in groups: copy16 queues a copy
// (16 zero bytes where `pred` is false, and `src` is then not read), commit closes the group of
// the copies queued since the last commit, and wait<N> waits until at most N groups of this
// thread are pending. A thread sees its own copies after the wait; other threads' copies need a
// barrier as well. cp.async on NVIDIA sm_80 and later; elsewhere (ROCm, older NVIDIA) a plain
// load and store, complete when copy16 returns, so commit and wait have nothing to do.
#if defined(ATTNSCOPE_PLATFORM_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define ATTNSCOPE_ASYNC_COPY 1
#else
#define ATTNSCOPE_ASYNC_COPY 0
#endif
struct AsyncCopy {
  __device__ static __forceinline__ void copy16(void* dst, const void* src, bool pred) {
#if ATTNSCOPE_ASYNC_COPY
    const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src),
                 "r"(pred ? 16 : 0)
                 : "memory");
#else
    *static_cast<uint4*>(dst) = pred ? *static_cast<const uint4*>(src) : make_uint4(0u, 0u, 0u, 0u);
#endif
  }
  // The same for 8 bytes (dst and src 8-byte aligned): an fp8 lane's chunk of a row.
  __device__ static __forceinline__ void copy8(void* dst, const void* src, bool pred) {
#if ATTNSCOPE_ASYNC_COPY
    const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(d), "l"(src),
                 "r"(pred ? 8 : 0)
                 : "memory");
#else
    *static_cast<uint2*>(dst) = pred ? *static_cast<const uint2*>(src) : make_uint2(0u, 0u);
#endif
  }
  // The same for 4 bytes (dst and src 4-byte aligned); a zero where `pred` is false.
  __device__ static __forceinline__ void copy4(void* dst, const void* src, bool pred) {
#if ATTNSCOPE_ASYNC_COPY
    const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src),
                 "r"(pred ? 4 : 0)
                 : "memory");
#else
    *static_cast<unsigned*>(dst) = pred ? *static_cast<const unsigned*>(src) : 0u;
#endif
  }
  __device__ static __forceinline__ void commit() {
#if ATTNSCOPE_ASYNC_COPY
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
  }
  template <int N>
  __device__ static __forceinline__ void wait() {
#if ATTNSCOPE_ASYNC_COPY
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
  }
};

// A load that reads the device-coherent level (L2), not a possibly stale L1 line: for data
// other blocks of the same launch wrote and published with a fence and an atomic.
__device__ __forceinline__ float load_coherent(const float* p) {
#if defined(ATTNSCOPE_PLATFORM_CUDA)
  return __ldcg(p);
#else
  return __uint_as_float(__atomic_load_n(reinterpret_cast<const unsigned*>(p), __ATOMIC_RELAXED));
#endif
}

// fp8 KV-cache codes to binary16, exactly: every value of e4m3 (OCP), e5m2 and e4m3fnuz is a
// binary16 value, subnormals included. The two codes in the low 16 bits of `pair` (the low byte
// first) become a __half2, the first code in its low half. NaN codes give NaN, and e5m2's
// infinities infinities. NVIDIA GPUs of compute capability 8.9 and later convert e4m3 and e5m2 in
// hardware (cvt.rn.f16x2.e4m3x2 / .e5m2x2, the instruction cuda_fp8.h uses); elsewhere, and for
// e4m3fnuz, integer operations give the same values: e5m2 is binary16's upper byte; e4m3 and
// e4m3fnuz place their sign, exponent and mantissa fields in binary16's, then one exact multiply
// by 2^(15 - bias) (2^8 and 2^7) rescales the exponent and normalizes subnormal codes.
#if defined(ATTNSCOPE_PLATFORM_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
#define ATTNSCOPE_FP8_CVT 1
#else
#define ATTNSCOPE_FP8_CVT 0
#endif

// A __half2's bits (the low half in the low 16 bits) and back, unchanged.
__device__ __forceinline__ __half2 half2_of_bits(unsigned bits) {
  __half2 h;
  __builtin_memcpy(&h, &bits, sizeof(h));
  return h;
}
__device__ __forceinline__ unsigned bits_of_half2(__half2 h) {
  unsigned bits;
  __builtin_memcpy(&bits, &h, sizeof(bits));
  return bits;
}

// The bits of the __half2 of the two codes in the low (kHigh: high) 16 bits of `word`.
// kSoftware: the integer path even where the hardware converts (the self-check compares them).
template <Fp8Format F, bool kHigh = false, bool kSoftware = false>
__device__ __forceinline__ unsigned fp8x2_bits(unsigned word) {
#if ATTNSCOPE_FP8_CVT
  if constexpr (!kSoftware && (F == Fp8Format::e4m3 || F == Fp8Format::e5m2)) {
    // The half is taken as an operand of the conversion (l or h), not moved first.
    unsigned r;
#define ATTNSCOPE_FP8X2_CVT(FORMAT, HALF)                                                   \
  asm("{.reg .b16 l, h;\n mov.b32 {l, h}, %1;\n cvt.rn.f16x2." FORMAT "x2 %0, " HALF ";\n}" \
      : "=r"(r)                                                                             \
      : "r"(word))
    if constexpr (F == Fp8Format::e4m3 && kHigh)
      ATTNSCOPE_FP8X2_CVT("e4m3", "h");
    else if constexpr (F == Fp8Format::e4m3)
      ATTNSCOPE_FP8X2_CVT("e4m3", "l");
    else if constexpr (kHigh)
      ATTNSCOPE_FP8X2_CVT("e5m2", "h");
    else
      ATTNSCOPE_FP8X2_CVT("e5m2", "l");
#undef ATTNSCOPE_FP8X2_CVT
    return r;
  }
#endif
  const unsigned pair = kHigh ? word >> 16 : word;
  // Each code in the low byte of its 16-bit half.
  const unsigned u = (pair & 0xffu) | ((pair & 0xff00u) << 8);
  if constexpr (F == Fp8Format::e5m2) {
    return u << 8;
  } else {
    const unsigned mag = u & 0x007f007fu;
    const unsigned placed = (mag << 7) | ((u & 0x00800080u) << 8);
    constexpr float kRescale = F == Fp8Format::e4m3 ? 256.0f : 128.0f;
    const unsigned r = bits_of_half2(__hmul2(half2_of_bits(placed), __float2half2_rn(kRescale)));
    // NaN codes: e4m3's S.1111.111 (a half's mag + 1 reaches bit 7 for mag 0x7f only) and
    // e4m3fnuz's 1.0000.000, its only NaN, where zero's sign would be (0x80 - mag keeps bit 7 for
    // mag 0 only). Neither carries or borrows into the other half. Bit 7 of a half times 0xff is
    // 0x7f80: ORed into the value, an exponent of all ones and a mantissa not zero, a NaN.
    const unsigned nan_bit = F == Fp8Format::e4m3 ? (mag + 0x00010001u) & 0x00800080u
                                                  : (0x00800080u - mag) & u & 0x00800080u;
    return r | nan_bit * 0xffu;
  }
}
template <Fp8Format F, bool kSoftware = false>
__device__ __forceinline__ __half2 fp8x2_to_half2(unsigned pair) {
  return half2_of_bits(fp8x2_bits<F, false, kSoftware>(pair));
}

// The matrix-instruction kernels convert fp8 codes by fp8x4_bits_tile, which gives a word's four
// codes' values times fp8_tile_scale<M> as fp8x2_bits's two pairs (lo: the word's low half, hi:
// its high half), in one of two ways (Fp8Tiles M). The kernels fold 1 / fp8_tile_scale<M> into
// the score multiplier and the output's factor (powers of two: the same results bit for bit,
// outside fp32's subnormal range).
// - plain: e4m3 and e5m2, by fp8x2_bits (the hardware's conversion where there is one).
// - integer: e4m3fnuz. Its sign, exponent and mantissa fields placed in binary16's give 2^-7
//   times its value, exactly (fnuz_x2_bits), but for 0x80, its NaN, which gives -0. The kernels
//   check a warp's words of a tile for that code (fp8_special_bits, ORed over a lane's words) and
//   vote once (fp8_tile_vote): a tile that holds it takes the same path with NaN in its place.
//   The hardware's e4m3 conversion serves e4m3fnuz's other codes but 0x7f and 0xff (+-240,
//   e4m3's NaNs) at twice their values; checking for those three codes and taking it where a
//   tile holds none ran slower on an H200 than the integer operations (and per-token scales put
//   +-240 in every row).
enum class Fp8Tiles { plain, integer };
template <Fp8Format F>
inline constexpr Fp8Tiles kFp8Tiles =
    F == Fp8Format::e4m3fnuz ? Fp8Tiles::integer : Fp8Tiles::plain;
template <Fp8Tiles M>
inline constexpr float fp8_tile_scale = M == Fp8Tiles::integer ? 0.0078125f : 1.0f;  // 2^-7

// Bit 7 of each byte of the result is set where that byte of `word` is 0x80 (the other bits are
// not meaningful): its low 7 bits l all zeros with the sign set (0x80 - l keeps bit 7 only for
// l = 0). No byte borrows from the next.
__device__ __forceinline__ unsigned fnuz_nan_bytes(unsigned word) {
  return (0x80808080u - (word & 0x7f7f7f7fu)) & word;
}

// e4m3fnuz's codes 0 and 2 (kOdd: 1 and 3) of `word` as a __half2's bits at 2^-7 times their
// values, exactly (code 0 or 1 in the low half): the code's sign goes to binary16's bit 15, its
// exponent and mantissa to bits 7..13 (e4m3fnuz's bias 8 against binary16's 15; its subnormals
// are binary16's). Codes 1 and 3 sit in their halves' upper bytes, where the sign already is and
// the 7 low bits move down one; codes 0 and 2 in the lower bytes, where both move up (x 2^8 and
// x 2^7: multiplies, which the compiler may give the FMA pipe, the rest being the ALU's). Code
// 0x80 gives -0, or (kNan) a NaN.
template <bool kOdd, bool kNan>
__device__ __forceinline__ unsigned fnuz_x2_bits(unsigned word) {
  const unsigned placed = kOdd ? (word & 0x80008000u) + ((word & 0x7f007f00u) >> 1)
                               : (word & 0x00800080u) * 256u + (word & 0x007f007fu) * 128u;
  if constexpr (!kNan) {
    return placed;
  } else {
    // Bit 15 of a half where its code is 0x80; that bit minus bit 9 is 0x7e00, which ORed into
    // -0 (0x8000) gives a NaN.
    const unsigned bits = fnuz_nan_bytes(word);
    const unsigned nan = kOdd ? bits & 0x80008000u : (bits & 0x00800080u) * 256u;
    return placed | (nan - (nan >> 6));
  }
}

// What fp8_tile_vote takes of a word, ORed over a lane's words of the tile: fnuz_nan_bytes
// (integer), 0 (plain).
template <Fp8Tiles M>
__device__ __forceinline__ unsigned fp8_special_bits(unsigned word) {
  if constexpr (M == Fp8Tiles::integer) {
    return fnuz_nan_bytes(word);
  } else {
    (void)word;
    return 0u;
  }
}

// bf16 q on the matrix-instruction kernels (decode_mma.hpp, with an fp8 cache): each query's row
// is converted once to binary16 under a power of two of its own, 2^e with e = min(126, 142 - E),
// E the biased exponent of the row's largest finite |q|, which so lands in [2^15, 2^16) (a
// bfloat16 value there is at most 65280, within binary16's range). Its scores are multiplied by
// the score's multiplier, then by 2^-e: exact unless the result is subnormal, and the product
// before it is 2^e times the score, which (dots of binary16 values and codes below 2^16, at most
// 2^40) leaves binary32's range only for a multiplier above 2^88. A bfloat16 element converts
// exactly unless its lowest bit falls below binary16's 2^-24 after the scaling, that is where it
// is more than about 2^31 below its row's largest; those round to nearest even, as the budget's
// bound takes them (bounds::StageFormats::q_binary16_scaled). NaN and infinities stay what they
// are. The self-check converts every bfloat16 code this way.
struct QBf16 {
  // m and the bits of |x| of the two elements of w where finite (bits of magnitudes order as the
  // magnitudes do).
  __device__ static unsigned abs_max(unsigned w, unsigned m) {
    const unsigned a = w & 0x7fffu, b = w >> 16 & 0x7fffu;
    m = a < 0x7f80u && a > m ? a : m;
    return b < 0x7f80u && b > m ? b : m;
  }
  // e from the bits of a row's largest finite |q|: from 126 (a zero or subnormal largest) down to
  // -112.
  __device__ static int exponent(unsigned max_bits) {
    const int e = 142 - static_cast<int>(max_bits >> 7);
    return e < 126 ? e : 126;
  }
  __device__ static float up(int e) { return __int_as_float((127 + e) << 23); }
  __device__ static float down(int e) { return __int_as_float((127 - e) << 23); }
  // The two bfloat16 elements of w (low half first) x 2^e as a binary16 pair. The float product
  // is exact unless below 2^-126, where binary16 rounds it to zero either way.
  __device__ static unsigned convert(unsigned w, float up) {
    const float lo = __fmul_rn(__uint_as_float(w << 16), up);
    const float hi = __fmul_rn(__uint_as_float(w & 0xffff0000u), up);
    return bits_of_half2(__floats2half2_rn(lo, hi));
  }
};

// Whether fp8x4_bits_tile<F, true> (M = kFp8Tiles<F>) serves every word of every lane of the warp,
// from each lane's OR of fp8_special_bits over its words (every lane calls it; the answer is the
// warp's).
template <Fp8Tiles M>
__device__ __forceinline__ bool fp8_tile_vote(unsigned special) {
  if constexpr (M == Fp8Tiles::plain) {
    (void)special;
    return true;
  } else {
    return warp_all((special & 0x80808080u) == 0u);
  }
}
// The same, from the lane's words.
template <Fp8Tiles M, int N>
__device__ __forceinline__ bool fp8_tile_plain(const unsigned (&words)[N]) {
  unsigned special = 0u;
#pragma unroll
  for (int i = 0; i < N; ++i) special |= fp8_special_bits<M>(words[i]);
  return fp8_tile_vote<M>(special);
}

// Which of a word's four codes fp8x4_bits_tile pairs: plain, codes 0, 1 (lo) and 2, 3 (hi), the
// halves the hardware converts; integer (kFp8Interleaved), codes 0, 2 (lo) and 1, 3 (hi), which
// take the fewest integer operations (fnuz_x2_bits). The kernels order q's dimensions, and V's
// codes, to match.
template <Fp8Format F>
inline constexpr bool kFp8Interleaved = kFp8Tiles<F> == Fp8Tiles::integer;

// The conversion in F's way (kFp8Tiles<F>), its pairs as kFp8Interleaved<F> says; kPlain: the
// tile holds no code that way checks for.
template <Fp8Format F, bool kPlain>
__device__ __forceinline__ void fp8x4_bits_tile(unsigned word, unsigned& lo, unsigned& hi) {
  if constexpr (kFp8Tiles<F> == Fp8Tiles::plain) {
    lo = fp8x2_bits<F>(word);
    hi = fp8x2_bits<F, true>(word);
  } else {
    lo = fnuz_x2_bits<false, !kPlain>(word);
    hi = fnuz_x2_bits<true, !kPlain>(word);
  }
}

// Matrix instructions of one warp (NVIDIA compute capability 8.0 and later; elsewhere the
// kernels that use them are not launched, config.hpp's kMmaDecodePlatform).
#if defined(ATTNSCOPE_PLATFORM_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define ATTNSCOPE_MMA 1
#else
#define ATTNSCOPE_MMA 0
#endif

// c (16 x 8, fp32) += a (16 x 16, binary16, or bfloat16 where kBf16, row-major) x b (16 x 8, of
// the same format, column-major), in mma.m16n8k16's fragment layouts: lane l holds a's rows l / 4
// and l / 4 + 8 and b's column l / 4, at columns (of a; rows of b) 2 (l % 4) + {0, 1} and + 8;
// c's rows l / 4 and l / 4 + 8, columns 2 (l % 4) + {0, 1}.
template <bool kBf16 = false>
__device__ __forceinline__ void mma_16x8x16(float (&c)[4], const unsigned (&a)[4], unsigned b0,
                                            unsigned b1) {
#if ATTNSCOPE_MMA
#define ATTNSCOPE_MMA_16X8X16(TYPES)                                          \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TYPES                 \
               ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n" \
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])               \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1))
  if constexpr (kBf16)
    ATTNSCOPE_MMA_16X8X16("bf16.bf16");
  else
    ATTNSCOPE_MMA_16X8X16("f16.f16");
#undef ATTNSCOPE_MMA_16X8X16
#else
  (void)c;
  (void)a;
  (void)b0;
  (void)b1;
#endif
}

// Four 8 x 8 matrices of binary16 from shared memory: lanes 8 i .. 8 i + 7 give the addresses of
// matrix i's rows (16 bytes each); r[i] then holds, at lane l, matrix i's elements (row l / 4,
// columns 2 (l % 4) and 2 (l % 4) + 1): the fragment layouts of mma_16x8x16's a (matrices in
// the order rows 0-7 / 8-15 of columns 0-7, then of columns 8-15) and b (of K^T: a matrix is 8
// rows of K, 8 of their columns).
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* row) {
#if ATTNSCOPE_MMA
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
#else
  (void)row;
  r[0] = r[1] = r[2] = r[3] = 0u;
#endif
}

// Four 8 x 8 matrices of binary16 from shared memory, transposed: lanes 8 i .. 8 i + 7 give the
// addresses of matrix i's rows (16 bytes each); r[i] then holds, at lane l, matrix i's elements
// (row 2 (l % 4), column l / 4) and (row 2 (l % 4) + 1, column l / 4).
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* row) {
#if ATTNSCOPE_MMA
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
#else
  (void)row;
  r[0] = r[1] = r[2] = r[3] = 0u;
#endif
}

}  // namespace attnscope::gpu
