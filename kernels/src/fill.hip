// Device-side helpers of the benchmarks: deterministic N(0, 1) inputs made on the GPU, NaN counts
// of outputs (poisoned outputs left unwritten), and the hold that keeps a stream waiting
// ahead of a timed region until the host has enqueued it.
#include <algorithm>
#include <atomic>

#include "attnscope/core/random.hpp"
#include "common.hpp"
#include "stage_kernels.hpp"

namespace attnscope::gpu {

namespace {

constexpr int kFillThreads = 256;

// Blocks of a grid-stride loop over n elements: enough to fill the device, never more than needed.
unsigned grid_for(std::int64_t n) {
  const std::int64_t want = (n + kFillThreads - 1) / kFillThreads;
  const std::int64_t most = std::int64_t(detail::multiprocessor_count()) * 16;
  return static_cast<unsigned>(std::max<std::int64_t>(1, std::min(want, most)));
}

// Box-Muller on two uniforms cut from one counter hash: u1 in (0, 1) keeps the log finite
// (23 bits plus one half are exact in float), u2 in [0, 1).
__device__ __forceinline__ float normal_at(std::uint64_t key, std::uint64_t i) {
  const std::uint64_t h = mix64(key + i * 0x9e3779b97f4a7c15ull);
  const float u1 = (static_cast<float>(h >> 41) + 0.5f) * 0x1p-23f;
  const float u2 = static_cast<float>((h >> 16) & 0xffffffull) * 0x1p-24f;
  return sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
}

__global__ void fill_normal_kernel(void* data, std::int64_t n, DType type, std::uint64_t key,
                                   std::int64_t row) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  if (is_fp8(type)) {
    // The codes of N(0, 1) values under the scale fp8_fill_scale: x / scale, rounded, saturating;
    // where rows are given, one element of each (at a position hashed from the row) the format's
    // largest magnitude with its value's sign.
    const Fp8Format f = fp8_format_of(type);
    const float top = static_cast<float>(fp8_max(f));
    const float inv = static_cast<float>(fp8_max(f) / kFp8FillAmax);
    for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
      float x = normal_at(key, static_cast<std::uint64_t>(i)) * inv;
      if (row > 0 &&
          static_cast<std::uint64_t>(i % row) ==
              mix64(key ^ static_cast<std::uint64_t>(i / row)) % static_cast<std::uint64_t>(row))
        x = copysignf(top, x);
      static_cast<std::uint8_t*>(data)[i] = float_to_fp8(x, f, true);
    }
    return;
  }
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    detail::store_output(data, i, normal_at(key, static_cast<std::uint64_t>(i)), type);
}

// NaN tests on the raw bits: exponent all ones and a non-zero significand.
__device__ __forceinline__ bool is_nan_at(const void* data, std::int64_t i, DType type) {
  switch (type) {
    case DType::fp32:
      return (static_cast<const unsigned*>(data)[i] & 0x7fffffffu) > 0x7f800000u;
    case DType::fp16:
      return (static_cast<const std::uint16_t*>(data)[i] & 0x7fffu) > 0x7c00u;
    case DType::bf16:
      return (static_cast<const std::uint16_t*>(data)[i] & 0x7fffu) > 0x7f80u;
    case DType::fp64:
      return (static_cast<const unsigned long long*>(data)[i] & 0x7fffffffffffffffull) >
             0x7ff0000000000000ull;
    case DType::fp8_e4m3:
    case DType::fp8_e5m2:
    case DType::fp8_e4m3fnuz:
      return fp8_is_nan(static_cast<const std::uint8_t*>(data)[i], fp8_format_of(type));
  }
  return false;
}

__global__ void count_nan_kernel(const void* data, std::int64_t n, DType type,
                                 unsigned long long* count) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  unsigned long long c = 0;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    c += is_nan_at(data, i, type) ? 1ull : 0ull;
  if (c) atomicAdd(count, c);
}

// Reads every 16-byte word once, U loads in flight per thread (a grid-stride loop), folded into
// one word per thread that is stored only if it equals a value it never takes: the loads stay,
// and the probe moves no bytes but the ones it reads.
template <int U>
__global__ void read_kernel(const uint4* data, std::int64_t n, uint4* sink) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  uint4 acc = make_uint4(0u, 0u, 0u, 0u);
  std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + (U - 1) * stride < n; i += U * stride) {
    uint4 x[U];
#pragma unroll
    for (int u = 0; u < U; ++u) x[u] = data[i + u * stride];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      acc.x ^= x[u].x;
      acc.y ^= x[u].y;
      acc.z ^= x[u].z;
      acc.w ^= x[u].w;
    }
  }
  for (; i < n; i += stride) {
    const uint4 a = data[i];
    acc.x ^= a.x;
    acc.y ^= a.y;
    acc.z ^= a.z;
    acc.w ^= a.w;
  }
  if (acc.x == 0x9e3779b9u && acc.y == 0x7f4a7c15u && acc.z == 0xf39cc060u && acc.w == 0x5cedc834u)
    sink[0] = acc;
}

// Polls the host's release flag (pinned host memory, read over the bus on every pass) until it
// is set or `limit` has passed; the latter is recorded in timed_out. The limit is in ns of the
// global timer on CUDA (independent of the SM clock), in shader-clock cycles elsewhere.
__device__ inline long long hold_now() {
#if defined(ATTNSCOPE_PLATFORM_CUDA)
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return static_cast<long long>(t);
#else
  return clock64();
#endif
}

__global__ void hold_kernel(const volatile int* release, volatile int* timed_out, long long limit) {
  const long long start = hold_now();
  while (*release == 0) {
    if (hold_now() - start > limit) {
      *timed_out = 1;
      return;
    }
  }
}

#if !defined(ATTNSCOPE_PLATFORM_CUDA)
// The shader clock's rate; clock64() counts its cycles (approximately so on some AMD parts,
// which is enough for a timeout).
int clock_khz() {
  static const int khz = [] {
    int dev = 0, k = 0;
    ATTNSCOPE_CHECK(hipGetDevice(&dev));
    ATTNSCOPE_CHECK(hipDeviceGetAttribute(&k, hipDeviceAttributeClockRate, dev));
    return k > 0 ? k : 1000000;
  }();
  return khz;
}
#endif

// Rounds of kMmaProbeChains independent mma.m16n8k16 a warp; the sums reach `sink` only if
// they equal a value they never take, so the work stays.
__global__ __launch_bounds__(kFillThreads) void mma_probe_kernel(float* sink, int iters) {
  const unsigned one = 0x3c003c00u;                                               // binary16 1, 1
  const unsigned tiny = 0x14001400u ^ (static_cast<unsigned>(threadIdx.x) & 1u);  // ~2^-10
  const unsigned a[4] = {one, one, one, one};
  float c[kMmaProbeChains][4] = {};
  for (int i = 0; i < iters; ++i)
#pragma unroll
    for (int k = 0; k < kMmaProbeChains; ++k) mma_16x8x16(c[k], a, tiny, tiny);
  float s = 0.0f;
#pragma unroll
  for (int k = 0; k < kMmaProbeChains; ++k) s += c[k][0] + c[k][1] + c[k][2] + c[k][3];
  if (s == -1.0f) sink[0] = s;
}

}  // namespace

bool mma_probe_available() {
#if defined(ATTNSCOPE_PLATFORM_CUDA)
  const std::string arch = device_info().arch;  // "sm_" and the compute capability x 10
  return arch.rfind("sm_", 0) == 0 && std::stoi(arch.substr(3)) >= 80;
#else
  return false;
#endif
}

void mma_probe_async(DeviceBuffer& sink, int blocks, int iters, void* stream) {
  if (!mma_probe_available())
    throw GpuError("the tensor-core probe needs mma.sync (NVIDIA compute capability 8.0 or later)");
  if (sink.bytes() < sizeof(float)) throw GpuError("mma_probe_async: the sink needs 4 bytes");
  if (blocks < 1 || iters < 1) throw GpuError("mma_probe_async: blocks and iters must be >= 1");
  mma_probe_kernel<<<dim3(unsigned(blocks)), kFillThreads, 0, static_cast<hipStream_t>(stream)>>>(
      sink.as<float>(), iters);
  ATTNSCOPE_CHECK_LAUNCH();
}

void fill_normal(void* data, std::int64_t elems, DType type, std::uint64_t seed, void* stream,
                 std::int64_t top_row) {
  if (elems <= 0) return;
  if (is_fp8(type) && (top_row < 0 || (top_row > 0 && elems % top_row != 0)))
    throw GpuError("fill_normal: top_row (" + std::to_string(top_row) +
                   ") must be 0 or divide the " + std::to_string(elems) + " elements");
  // Distinct seeds give unrelated sequences: the seed is hashed before the counter is added.
  const std::uint64_t key = mix64(seed ^ 0x5bd1e9955bd1e995ull);
  fill_normal_kernel<<<grid_for(elems), kFillThreads, 0, static_cast<hipStream_t>(stream)>>>(
      data, elems, type, key, is_fp8(type) ? top_row : std::int64_t(0));
  ATTNSCOPE_CHECK_LAUNCH();
}

std::int64_t count_nan(const void* data, std::int64_t elems, DType type, void* stream) {
  if (elems <= 0) return 0;
  const hipStream_t st = static_cast<hipStream_t>(stream);
  DeviceBuffer count(sizeof(unsigned long long));
  count.fill_async(0, stream);
  count_nan_kernel<<<grid_for(elems), kFillThreads, 0, st>>>(data, elems, type,
                                                             count.as<unsigned long long>());
  ATTNSCOPE_CHECK_LAUNCH();
  unsigned long long host = 0;
  ATTNSCOPE_CHECK(hipMemcpyAsync(&host, count.data(), sizeof(host), hipMemcpyDeviceToHost, st));
  ATTNSCOPE_CHECK(hipStreamSynchronize(st));
  return static_cast<std::int64_t>(host);
}

std::vector<ReadShape> read_shapes() {
  std::vector<ReadShape> shapes;
  for (int loads : {4, 8, 16})
    for (int blocks : {2, 4, 8}) shapes.push_back({loads, blocks});
  return shapes;
}

void read_async(const DeviceBuffer& buffer, DeviceBuffer& sink, void* stream, ReadShape shape) {
  if (sink.bytes() < sizeof(uint4)) throw GpuError("read_async: the sink needs 16 bytes");
  if (shape.blocks_per_sm < 1 || shape.blocks_per_sm > 8)
    throw GpuError("read_async: blocks_per_sm " + std::to_string(shape.blocks_per_sm) +
                   " is not in 1..8");
  const std::int64_t words = static_cast<std::int64_t>(buffer.bytes() / sizeof(uint4));
  if (words <= 0) return;
  const std::int64_t want = (words + kFillThreads - 1) / kFillThreads;
  const std::int64_t wave = std::int64_t(detail::multiprocessor_count()) * shape.blocks_per_sm;
  const unsigned grid = static_cast<unsigned>(std::max<std::int64_t>(1, std::min(want, wave)));
  const hipStream_t st = static_cast<hipStream_t>(stream);
  const uint4* d = buffer.as<const uint4>();
  switch (shape.loads) {
    case 4:
      read_kernel<4><<<grid, kFillThreads, 0, st>>>(d, words, sink.as<uint4>());
      break;
    case 8:
      read_kernel<8><<<grid, kFillThreads, 0, st>>>(d, words, sink.as<uint4>());
      break;
    case 16:
      read_kernel<16><<<grid, kFillThreads, 0, st>>>(d, words, sink.as<uint4>());
      break;
    default:
      throw GpuError("read_async: loads " + std::to_string(shape.loads) + " is not 4, 8 or 16");
  }
  ATTNSCOPE_CHECK_LAUNCH();
}

StreamHold::StreamHold() {
  void* h = nullptr;
  // Coherent: the device sees the host's release without a flush (HIP's default for mapped
  // memory depends on HIP_HOST_COHERENT; CUDA's mapped memory always is).
  ATTNSCOPE_CHECK(hipHostMalloc(&h, 2 * sizeof(int), hipHostMallocMapped | hipHostMallocCoherent));
  host_ = h;
  static_cast<volatile int*>(host_)[0] = 1;  // nothing held yet
  static_cast<volatile int*>(host_)[1] = 0;
  void* d = nullptr;
  const hipError_t e = hipHostGetDevicePointer(&d, h, 0);
  if (e != hipSuccess) {
    (void)hipHostFree(h);
    ATTNSCOPE_CHECK(e);
  }
  device_ = d;
}

StreamHold::~StreamHold() {
  // A hold still queued would read freed memory: let it go and wait for it first.
  release();
  (void)hipDeviceSynchronize();
  (void)hipHostFree(host_);
}

void StreamHold::hold(void* stream, double timeout_ms) {
  volatile int* h = static_cast<volatile int*>(host_);
  h[0] = 0;
  h[1] = 0;
  std::atomic_thread_fence(std::memory_order_seq_cst);
#if defined(ATTNSCOPE_PLATFORM_CUDA)
  const long long limit = static_cast<long long>(timeout_ms * 1e6);  // ns
#else
  const long long limit = static_cast<long long>(timeout_ms * clock_khz());  // cycles
#endif
  const int* d = static_cast<const int*>(device_);
  hold_kernel<<<1, 1, 0, static_cast<hipStream_t>(stream)>>>(d, const_cast<int*>(d) + 1,
                                                             limit > 0 ? limit : 1);
  try {
    ATTNSCOPE_CHECK_LAUNCH();
  } catch (...) {
    release();
    throw;
  }
}

void StreamHold::release() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  static_cast<volatile int*>(host_)[0] = 1;
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

bool StreamHold::timed_out() const {
  return static_cast<const volatile int*>(host_)[1] != 0;
}

}  // namespace attnscope::gpu
