#include <chrono>
#include <thread>
#include <utility>

#include "attnscope/kernels/check.hpp"
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
    if (reason)
      *reason =
          std::string("no usable GPU: ") + hipGetErrorName(e) + " (" + hipGetErrorString(e) + ")";
    return false;
  }
  if (n == 0) {
    if (reason) *reason = "no GPU device found";
    return false;
  }
  return true;
}

int device_count() {
  int n = 0;
  if (hipGetDeviceCount(&n) != hipSuccess) {
    (void)hipGetLastError();
    return 0;
  }
  return n;
}

DeviceInfo device_info() {
  DeviceInfo info;
  int dev = 0;
  ATTNSCOPE_CHECK(hipGetDevice(&dev));
  info.ordinal = dev;
  info.visible = device_count();
  char bus[64] = {};
  ATTNSCOPE_CHECK(hipDeviceGetPCIBusId(bus, sizeof(bus), dev));
  info.pci_bus_id = bus;
  char name[256] = {};
  ATTNSCOPE_CHECK(hipDeviceGetName(name, sizeof(name), dev));
  info.name = name;
  int major = 0, minor = 0, l2 = 0;
  ATTNSCOPE_CHECK(
      hipDeviceGetAttribute(&info.multiprocessors, hipDeviceAttributeMultiprocessorCount, dev));
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

std::int64_t free_device_bytes() {
  std::size_t free_b = 0, total_b = 0;
  ATTNSCOPE_CHECK(hipMemGetInfo(&free_b, &total_b));
  return static_cast<std::int64_t>(free_b);
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

void DeviceBuffer::fill_async(int value, void* stream) {
  if (bytes_)
    ATTNSCOPE_CHECK(hipMemsetAsync(ptr_, value, bytes_, static_cast<hipStream_t>(stream)));
}

void DeviceBuffer::copy_from_async(const DeviceBuffer& src, void* stream) {
  if (src.bytes_ < bytes_)
    throw GpuError("copy of " + std::to_string(bytes_) + " bytes from a buffer of " +
                   std::to_string(src.bytes_));
  if (bytes_)
    ATTNSCOPE_CHECK(hipMemcpyAsync(ptr_, src.ptr_, bytes_, hipMemcpyDeviceToDevice,
                                   static_cast<hipStream_t>(stream)));
}

void synchronize() {
  ATTNSCOPE_CHECK(hipDeviceSynchronize());
}

Stream::Stream() {
  hipStream_t s = nullptr;
  ATTNSCOPE_CHECK(hipStreamCreate(&s));
  stream_ = s;
}

Stream::~Stream() {
  if (stream_) (void)hipStreamDestroy(static_cast<hipStream_t>(stream_));
}

Stream::Stream(Stream&& o) noexcept : stream_(std::exchange(o.stream_, nullptr)) {}

Stream& Stream::operator=(Stream&& o) noexcept {
  if (this != &o) {
    if (stream_) (void)hipStreamDestroy(static_cast<hipStream_t>(stream_));
    stream_ = std::exchange(o.stream_, nullptr);
  }
  return *this;
}

void Stream::synchronize() const {
  ATTNSCOPE_CHECK(hipStreamSynchronize(static_cast<hipStream_t>(stream_)));
}

EventTimer::EventTimer(void* stream) : stream_(stream) {
  hipEvent_t a = nullptr, b = nullptr;
  ATTNSCOPE_CHECK(hipEventCreate(&a));
  start_ = a;
  try {
    ATTNSCOPE_CHECK(hipEventCreate(&b));
  } catch (...) {
    (void)hipEventDestroy(a);
    throw;
  }
  stop_ = b;
}

EventTimer::~EventTimer() {
  (void)hipEventDestroy(static_cast<hipEvent_t>(start_));
  (void)hipEventDestroy(static_cast<hipEvent_t>(stop_));
}

void EventTimer::start() {
  ATTNSCOPE_CHECK(
      hipEventRecord(static_cast<hipEvent_t>(start_), static_cast<hipStream_t>(stream_)));
}

void EventTimer::stop() {
  ATTNSCOPE_CHECK(
      hipEventRecord(static_cast<hipEvent_t>(stop_), static_cast<hipStream_t>(stream_)));
}

float EventTimer::elapsed_ms(double timeout_s) const {
  const hipEvent_t stop = static_cast<hipEvent_t>(stop_);
  if (timeout_s > 0.0) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
      const hipError_t e = hipEventQuery(stop);
      if (e == hipSuccess) break;
      if (e != hipErrorNotReady) ATTNSCOPE_CHECK(e);
      if (std::chrono::steady_clock::now() > deadline)
        throw GpuTimeout("GPU work did not finish within " +
                         std::to_string(static_cast<long long>(timeout_s)) +
                         " s: a kernel that never ends");
      std::this_thread::yield();
    }
  }
  ATTNSCOPE_CHECK(hipEventSynchronize(stop));
  float ms = 0.0f;
  ATTNSCOPE_CHECK(
      hipEventElapsedTime(&ms, static_cast<hipEvent_t>(start_), static_cast<hipEvent_t>(stop_)));
  return ms;
}

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
