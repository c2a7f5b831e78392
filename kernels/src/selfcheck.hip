// The platform self-check: proves that a build runs kernels, that the compiled warp width
// matches the device's, and that half arithmetic and warp shuffles work.
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

}  // namespace

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
    << " MiB): " << threads << " threads, warp reductions and binary16 FMA exact";
  return s.str();
}

}  // namespace attnscope::gpu
