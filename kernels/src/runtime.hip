#include <utility>

#include "check.hpp"
#include "stage_kernels.hpp"

namespace attnscope::gpu {

namespace detail {
void throw_error(hipError_t e, const char* call, const char* file, int line) {
  throw GpuError(std::string(call) + " failed: " + hipGetErrorName(e) + " (" +
                 hipGetErrorString(e) + ") at " + file + ":" + std::to_string(line));
}
}  // namespace detail

const char* platform_name() {
#if defined(ATTNSCOPE_PLATFORM_CUDA)
  return "cuda";
#else
  return "rocm";
#endif
}

bool gpu_available(std::string* reason) {
  int n = 0;
  const hipError_t e = hipGetDeviceCount(&n);
  if (e != hipSuccess) {
    (void)hipGetLastError();  // clear the sticky error of a failed runtime start
    if (reason) *reason = std::string("no usable GPU: ") + hipGetErrorName(e) + " (" +
                          hipGetErrorString(e) + ")";
    return false;
  }
  if (n == 0) {
    if (reason) *reason = "no GPU device found";
    return false;
  }
  return true;
}

DeviceInfo device_info() {
  DeviceInfo info;
  int dev = 0;
  ATTNSCOPE_CHECK(hipGetDevice(&dev));
  char name[256] = {};
  ATTNSCOPE_CHECK(hipDeviceGetName(name, sizeof(name), dev));
  info.name = name;
  int major = 0, minor = 0, l2 = 0;
  ATTNSCOPE_CHECK(hipDeviceGetAttribute(&info.multiprocessors, hipDeviceAttributeMultiprocessorCount, dev));
  ATTNSCOPE_CHECK(hipDeviceGetAttribute(&info.warp_size, hipDeviceAttributeWarpSize, dev));
  ATTNSCOPE_CHECK(hipDeviceGetAttribute(&l2, hipDeviceAttributeL2CacheSize, dev));
  ATTNSCOPE_CHECK(hipDeviceGetAttribute(&major, hipDeviceAttributeComputeCapabilityMajor, dev));
  ATTNSCOPE_CHECK(hipDeviceGetAttribute(&minor, hipDeviceAttributeComputeCapabilityMinor, dev));
  info.l2_bytes = l2;
#if defined(ATTNSCOPE_PLATFORM_CUDA)
  info.arch = "sm_" + std::to_string(major * 10 + minor);
#else
  hipDeviceProp_t prop{};
  ATTNSCOPE_CHECK(hipGetDeviceProperties(&prop, dev));
  info.arch = prop.gcnArchName;
#endif
  std::size_t free_b = 0, total_b = 0;
  ATTNSCOPE_CHECK(hipMemGetInfo(&free_b, &total_b));
  info.global_bytes = static_cast<std::int64_t>(total_b);
  ATTNSCOPE_CHECK(hipRuntimeGetVersion(&info.runtime_version));
  ATTNSCOPE_CHECK(hipDriverGetVersion(&info.driver_version));
  return info;
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes > 0) ATTNSCOPE_CHECK(hipMalloc(&ptr_, bytes));
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) (void)hipFree(ptr_);  // destructors must not throw
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) (void)hipFree(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::upload(const void* host, std::size_t bytes) {
  if (bytes > bytes_)
    throw GpuError("upload of " + std::to_string(bytes) + " bytes into a buffer of " +
                   std::to_string(bytes_));
  if (bytes) ATTNSCOPE_CHECK(hipMemcpy(ptr_, host, bytes, hipMemcpyHostToDevice));
}

void DeviceBuffer::download(void* host, std::size_t bytes) const {
  if (bytes > bytes_)
    throw GpuError("download of " + std::to_string(bytes) + " bytes from a buffer of " +
                   std::to_string(bytes_));
  if (bytes) ATTNSCOPE_CHECK(hipMemcpy(host, ptr_, bytes, hipMemcpyDeviceToHost));
}

void DeviceBuffer::poison() {
  if (bytes_) ATTNSCOPE_CHECK(hipMemset(ptr_, 0xFF, bytes_));
}

void synchronize() { ATTNSCOPE_CHECK(hipDeviceSynchronize()); }

namespace detail {
int multiprocessor_count() {
  static const int n = [] {
    int dev = 0, sms = 0;
    ATTNSCOPE_CHECK(hipGetDevice(&dev));
    ATTNSCOPE_CHECK(hipDeviceGetAttribute(&sms, hipDeviceAttributeMultiprocessorCount, dev));
    return sms;
  }();
  return n;
}
}  // namespace detail

}  // namespace attnscope::gpu
