// The one place where ROCm and NVIDIA differ. Kernel sources spell HIP only; on ROCm this
// includes the HIP runtime, on NVIDIA (nvcc compiling .hip files as CUDA) it maps the HIP names
// attnscope uses onto the CUDA runtime. The mapping is deliberately limited to what the project
// calls: Debian's HIP-on-NVIDIA headers no longer compile against CUDA 13.
#pragma once

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
#define hipDeviceAttributeComputeCapabilityMajor cudaDevAttrComputeCapabilityMajor
#define hipDeviceAttributeComputeCapabilityMinor cudaDevAttrComputeCapabilityMinor
#define hipDeviceAttributeClockRate cudaDevAttrClockRate
#define hipDeviceAttributeMemoryClockRate cudaDevAttrMemoryClockRate
#define hipDeviceAttributeMemoryBusWidth cudaDevAttrGlobalMemoryBusWidth
#define hipErrorNoDevice cudaErrorNoDevice
#define hipErrorInsufficientDriver cudaErrorInsufficientDriver
#define hipErrorNotReady cudaErrorNotReady

inline const char* hipGetErrorString(hipError_t e) { return cudaGetErrorString(e); }
inline const char* hipGetErrorName(hipError_t e) { return cudaGetErrorName(e); }
inline hipError_t hipGetLastError() { return cudaGetLastError(); }
inline hipError_t hipGetDeviceCount(int* n) { return cudaGetDeviceCount(n); }
inline hipError_t hipSetDevice(int d) { return cudaSetDevice(d); }
inline hipError_t hipGetDevice(int* d) { return cudaGetDevice(d); }
inline hipError_t hipDeviceSynchronize() { return cudaDeviceSynchronize(); }
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
inline hipError_t hipMalloc(void** p, size_t n) { return cudaMalloc(p, n); }
inline hipError_t hipFree(void* p) { return cudaFree(p); }
inline hipError_t hipMemcpy(void* d, const void* s, size_t n, hipMemcpyKind k) {
  return cudaMemcpy(d, s, n, k);
}
inline hipError_t hipMemcpyAsync(void* d, const void* s, size_t n, hipMemcpyKind k,
                                 hipStream_t st) {
  return cudaMemcpyAsync(d, s, n, k, st);
}
inline hipError_t hipMemset(void* p, int v, size_t n) { return cudaMemset(p, v, n); }
inline hipError_t hipMemsetAsync(void* p, int v, size_t n, hipStream_t st) {
  return cudaMemsetAsync(p, v, n, st);
}
inline hipError_t hipMemGetInfo(size_t* free_bytes, size_t* total) {
  return cudaMemGetInfo(free_bytes, total);
}
inline hipError_t hipStreamCreate(hipStream_t* s) { return cudaStreamCreate(s); }
inline hipError_t hipStreamDestroy(hipStream_t s) { return cudaStreamDestroy(s); }
inline hipError_t hipStreamSynchronize(hipStream_t s) { return cudaStreamSynchronize(s); }
inline hipError_t hipEventCreate(hipEvent_t* e) { return cudaEventCreate(e); }
inline hipError_t hipEventDestroy(hipEvent_t e) { return cudaEventDestroy(e); }
inline hipError_t hipEventRecord(hipEvent_t e, hipStream_t s) { return cudaEventRecord(e, s); }
inline hipError_t hipEventSynchronize(hipEvent_t e) { return cudaEventSynchronize(e); }
inline hipError_t hipEventQuery(hipEvent_t e) { return cudaEventQuery(e); }
inline hipError_t hipEventElapsedTime(float* ms, hipEvent_t a, hipEvent_t b) {
  return cudaEventElapsedTime(ms, a, b);
}
inline hipError_t hipDriverGetVersion(int* v) { return cudaDriverGetVersion(v); }
inline hipError_t hipRuntimeGetVersion(int* v) { return cudaRuntimeGetVersion(v); }
template <class F>
inline hipError_t hipFuncSetAttributeMaxDynamicSharedMemory(F* f, int bytes) {
  return cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}
#else
#error "attnscope/platform/hip_platform.hpp needs ATTNSCOPE_PLATFORM_ROCM or ATTNSCOPE_PLATFORM_CUDA"
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

}  // namespace attnscope::gpu
