// The platform self-check: proves that a build runs kernels, that the compiled warp width
// matches the device's, and that half arithmetic and warp shuffles work.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <vector>

#include "attnscope/kernels/check.hpp"

namespace attnscope::gpu {

namespace {

// out[2 * t] = butterfly sum of (lane + 1) over the warp; out[2 * t + 1] = fma(1.5, 2, 0.25 * t)
// computed in binary16 with t < 8 so every value is exact.
__global__ void selfcheck_kernel(float* out, int* compiled_warp) {
  const int t = static_cast<int>(threadIdx.x);
  const int lane = t % kWarpSize;
  float v = static_cast<float>(lane + 1);
#pragma unroll
  for (int m = kWarpSize / 2; m > 0; m /= 2) v += shfl_xor(v, m);
  out[2 * t] = v;
  const __half h = __hfma(__float2half(1.5f), __float2half(2.0f), __float2half(0.25f * (t % 8)));
  out[2 * t + 1] = __half2float(h);
  if (t == 0) *compiled_warp = kWarpSize;
}

// Every code of format F, as the decode kernels convert it (fp8x2_bits) and by the integer
// path: thread i converts the pair (i, 255 - i) both ways; out[4 i ..] = default low, high,
// integer low, high, as binary16 bits; out[1024] = 1 where the default path is the hardware's
// conversion (as compiled for this device), else 0. Even threads take the pair from a word's low
// half, odd ones from its high half, so every code passes through both.
template <Fp8Format F>
__global__ void fp8_convert_kernel(unsigned short* out) {
  const unsigned i = threadIdx.x;
  const unsigned pair = i | ((255u - i) << 8);
  const unsigned a = i % 2 == 0 ? fp8x2_bits<F>(pair) : fp8x2_bits<F, true>(pair << 16);
  const unsigned b = bits_of_half2(fp8x2_to_half2<F, true>(pair));
  out[4 * i] = static_cast<unsigned short>(a & 0xffffu);
  out[4 * i + 1] = static_cast<unsigned short>(a >> 16);
  out[4 * i + 2] = static_cast<unsigned short>(b & 0xffffu);
  out[4 * i + 3] = static_cast<unsigned short>(b >> 16);
  if (i == 0) out[1024] = ATTNSCOPE_FP8_CVT && F != Fp8Format::e4m3fnuz ? 1 : 0;
}

// A code as fp8_tile_kernel converts it, and check_tile_path expects: i, or 0 in place of
// e4m3fnuz's NaN, 0x80 (`clean`).
__host__ __device__ constexpr unsigned tile_path_code(unsigned i, bool clean) {
  return clean && i == 0x80u ? 0u : i;
}

// Code k (0 .. 3) of thread i's first word in fp8_tile_kernel: four different codes a word, so
// that the pairs fp8x4_bits_tile forms are seen.
__host__ __device__ constexpr unsigned tile_word_code(unsigned i, int k, bool clean) {
  return tile_path_code((i + 64u * static_cast<unsigned>(k)) & 0xffu, clean);
}

// The matrix-instruction kernels' path in F's way M = kFp8Tiles<F> (fp8_tile_plain over a
// warp's words of a tile, then fp8x4_bits_tile): thread i holds a tile of two words, the first the
// four codes tile_word_code(i, k, mode != 0), the second 0 or (mode 2, lane 5 of each warp) four
// codes 0x80; out[4 i ..] = lo's and hi's binary16 bits, low half first. Mode 0: the warps
// holding a code M checks for take its other path, the others kPlain; 1: every warp kPlain; 2:
// every warp the other path, for a code in another word of another lane (e4m3fnuz's; plain has
// one path).
template <Fp8Format F>
__global__ void fp8_tile_kernel(unsigned short* out, int mode) {
  constexpr Fp8Tiles M = kFp8Tiles<F>;
  const unsigned i = threadIdx.x;
  unsigned word = 0;
  for (int k = 0; k < 4; ++k) word |= tile_word_code(i, k, mode != 0) << (8 * k);
  const unsigned tile[2] = {word, mode == 2 && i % kWarpSize == 5 ? 0x80808080u : 0u};
  unsigned lo, hi;
  if (fp8_tile_plain<M>(tile))
    fp8x4_bits_tile<F, true>(tile[0], lo, hi);
  else
    fp8x4_bits_tile<F, false>(tile[0], lo, hi);
  out[4 * i] = static_cast<unsigned short>(lo & 0xffffu);
  out[4 * i + 1] = static_cast<unsigned short>(lo >> 16);
  out[4 * i + 2] = static_cast<unsigned short>(hi & 0xffffu);
  out[4 * i + 3] = static_cast<unsigned short>(hi >> 16);
}

// Throws unless binary16 bits `got` are `factor` times the value of code `code` of F, exactly
// (the sign of zero included; NaN for NaN codes).
template <Fp8Format F>
void expect_code(unsigned code, unsigned short got, const char* path, float factor = 1.0f) {
  const float want = fp8_to_float(static_cast<std::uint8_t>(code), F) * factor;
  const float v = half_to_float(got);
  const bool ok =
      std::isnan(want) ? std::isnan(v) : v == want && std::signbit(v) == std::signbit(want);
  if (!ok) {
    std::ostringstream s;
    s << "self-check: fp8 " << to_string(F) << " code 0x" << std::hex << code << std::dec
      << " converted " << path << " to binary16 0x" << std::hex << got << std::dec << " (" << v
      << "), expected " << want;
    throw GpuError(s.str());
  }
}

// Every code of F through the matrix-instruction kernels' path in F's way, in the three modes of
// fp8_tile_kernel: fp8_tile_scale<kFp8Tiles<F>> times its value.
template <Fp8Format F>
void check_tile_path(int& checked) {
  DeviceBuffer out(sizeof(unsigned short) * 4 * 256);
  std::vector<unsigned short> h(4 * 256);
  for (int mode : {0, 1, 2}) {
    out.poison();
    fp8_tile_kernel<F><<<1, 256>>>(out.as<unsigned short>(), mode);
    ATTNSCOPE_CHECK_LAUNCH();
    synchronize();
    out.download(h.data(), h.size() * sizeof(unsigned short));
    // Output k holds the word's code k, or (kFp8Interleaved: lo codes 0, 2, hi 1, 3) its code
    // 0, 2, 1, 3.
    constexpr int kCode[2][4] = {{0, 1, 2, 3}, {0, 2, 1, 3}};
    for (unsigned i = 0; i < 256; ++i)
      for (int k = 0; k < 4; ++k) {
        const unsigned c = tile_word_code(i, kCode[kFp8Interleaved<F> ? 1 : 0][k], mode != 0);
        expect_code<F>(c, h[4 * i + k], "by the matrix-instruction kernels' path",
                       fp8_tile_scale<kFp8Tiles<F>>);
        ++checked;
      }
  }
}

// Returns whether the kernels' path converted F in hardware.
template <Fp8Format F>
bool check_format(int& checked) {
  DeviceBuffer out(sizeof(unsigned short) * (4 * 256 + 1));
  out.poison();
  fp8_convert_kernel<F><<<1, 256>>>(out.as<unsigned short>());
  ATTNSCOPE_CHECK_LAUNCH();
  synchronize();
  std::vector<unsigned short> h(4 * 256 + 1);
  out.download(h.data(), h.size() * sizeof(unsigned short));
  for (unsigned i = 0; i < 256; ++i)
    for (int k = 0; k < 2; ++k) {
      const unsigned code = k == 0 ? i : 255u - i;
      for (int path = 0; path < 2; ++path) {
        expect_code<F>(code, h[4 * i + 2 * path + k],
                       path == 0 ? "by the kernels' path" : "by the integer path");
        ++checked;
      }
    }
  return h[1024] == 1;
}

// bf16 q's conversion to binary16 (QBf16) at the powers of two bf16_q_exp: thread i converts the
// word of codes i (low half) and 0xffff - i (high half) at each, out[(x * 65536 + i) * 2 ..] =
// the two binary16 bits; e_out[i] = the exponent a row whose only element is code i gets.
constexpr int kBf16ExpCount = 6;
__host__ __device__ constexpr int bf16_q_exp(int x) {
  constexpr int e[kBf16ExpCount] = {-112, -40, 0, 15, 40, 126};
  return e[x];
}
__global__ void bf16_q_kernel(unsigned short* out, int* e_out) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned word = i | ((0xffffu - i) << 16);
#pragma unroll
  for (int x = 0; x < kBf16ExpCount; ++x) {
    const unsigned h = QBf16::convert(word, QBf16::up(bf16_q_exp(x)));
    out[(x * 65536u + i) * 2] = static_cast<unsigned short>(h & 0xffffu);
    out[(x * 65536u + i) * 2 + 1] = static_cast<unsigned short>(h >> 16);
  }
  e_out[i] = QBf16::exponent(QBf16::abs_max(i, 0u));
}

// Every bfloat16 code through bf16_q_kernel: each conversion is binary16's rounding to nearest
// even of code x 2^e (NaN for NaN), and each exponent min(126, 142 - E) for a finite code of
// biased exponent E (126 for infinities and NaN, which a row's largest leaves out).
void check_bf16_q(int& checked) {
  DeviceBuffer out(sizeof(unsigned short) * 2 * 65536 * kBf16ExpCount), eb(sizeof(int) * 65536);
  out.poison();
  eb.poison();
  bf16_q_kernel<<<256, 256>>>(out.as<unsigned short>(), eb.as<int>());
  ATTNSCOPE_CHECK_LAUNCH();
  synchronize();
  std::vector<unsigned short> h(2 * 65536 * kBf16ExpCount);
  std::vector<int> e(65536);
  out.download(h.data(), h.size() * sizeof(unsigned short));
  eb.download(e.data(), e.size() * sizeof(int));
  for (unsigned i = 0; i < 65536; ++i) {
    for (int x = 0; x < kBf16ExpCount; ++x)
      for (int k = 0; k < 2; ++k) {
        const unsigned code = k == 0 ? i : 0xffffu - i;
        const double v =
            std::ldexp(double(bf16_to_float(static_cast<std::uint16_t>(code))), bf16_q_exp(x));
        const std::uint16_t want = double_to_half(v);
        const unsigned short got = h[(x * 65536u + i) * 2 + k];
        const bool ok = std::isnan(v) ? std::isnan(half_to_float(got)) : got == want;
        if (!ok) {
          std::ostringstream s;
          s << "self-check: bf16 code 0x" << std::hex << code << " x 2^" << std::dec
            << bf16_q_exp(x) << " converted to binary16 0x" << std::hex << got << ", expected 0x"
            << want;
          throw GpuError(s.str());
        }
        ++checked;
      }
    const unsigned E = (i >> 7) & 0xffu;
    const int want_e = E == 0xffu ? 126 : std::min(126, 142 - static_cast<int>(E));
    if (e[i] != want_e) {
      std::ostringstream s;
      s << "self-check: a bf16 q row of code 0x" << std::hex << i << std::dec << " got exponent "
        << e[i] << ", expected " << want_e;
      throw GpuError(s.str());
    }
  }
}

}  // namespace

std::string check_fp8_conversions() {
  int checked = 0;
  const bool hw = check_format<Fp8Format::e4m3>(checked);
  const bool hw2 = check_format<Fp8Format::e5m2>(checked);
  check_format<Fp8Format::e4m3fnuz>(checked);
  check_tile_path<Fp8Format::e4m3>(checked);
  check_tile_path<Fp8Format::e5m2>(checked);
  check_tile_path<Fp8Format::e4m3fnuz>(checked);
  int bf16_checked = 0;
  check_bf16_q(bf16_checked);
  std::ostringstream s;
  s << "fp8 to binary16 exact for all 256 codes of e4m3, e5m2 and e4m3fnuz, by the kernels' path ("
    << (hw && hw2 ? "the hardware's conversion for e4m3 and e5m2, integer operations for e4m3fnuz"
                  : "integer operations")
    << "), the integer path, and the matrix-instruction kernels' path (e4m3fnuz by integer "
       "operations at 2^-7 times its value, with NaN where a warp's tile holds 0x80; "
    << checked
    << " conversions); bf16 q to binary16 under a power of two (the "
       "matrix-instruction kernels') rounded to nearest even for all 65536 codes at 2^-112 .. "
       "2^126, and each code's row exponent ("
    << bf16_checked << " conversions)";
  return s.str();
}

std::string run_selfcheck() {
  const DeviceInfo info = device_info();
  const int threads = 2 * info.warp_size;
  DeviceBuffer out(sizeof(float) * 2 * threads), warp(sizeof(int));
  out.poison();
  warp.poison();
  selfcheck_kernel<<<1, threads>>>(out.as<float>(), warp.as<int>());
  ATTNSCOPE_CHECK_LAUNCH();
  synchronize();
  std::vector<float> host(2 * threads);
  int compiled_warp = 0;
  out.download(host.data(), host.size() * sizeof(float));
  warp.download(&compiled_warp, sizeof(int));
  if (compiled_warp != info.warp_size)
    throw GpuError("self-check: kernels were compiled for warp width " +
                   std::to_string(compiled_warp) + " but the device reports " +
                   std::to_string(info.warp_size));
  const float want_sum = 0.5f * info.warp_size * (info.warp_size + 1);
  for (int t = 0; t < threads; ++t) {
    const float want_fma = 3.0f + 0.25f * (t % 8);
    if (host[2 * t] != want_sum || host[2 * t + 1] != want_fma) {
      std::ostringstream s;
      s << "self-check: thread " << t << " wrote (" << host[2 * t] << ", " << host[2 * t + 1]
        << "), expected (" << want_sum << ", " << want_fma << ")";
      throw GpuError(s.str());
    }
  }
  std::ostringstream s;
  s << "self-check passed on " << info.name << " (" << info.arch << ", " << info.multiprocessors
    << " multiprocessors, warp " << info.warp_size << ", L2 " << (info.l2_bytes >> 20)
    << " MiB): " << threads << " threads, warp reductions and binary16 FMA exact; "
    << check_fp8_conversions();
  return s.str();
}

}  // namespace attnscope::gpu
