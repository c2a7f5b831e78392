// Host-side GPU runtime API of attnscope: device discovery, checked buffers, streams, timing.
// Plain C++: callers (accuracy, bench, tools) need no HIP headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace attnscope::gpu {

// Any failed GPU runtime call: names the call, the file and the line.
class GpuError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "rocm", "cuda" or "none": the platform this build targets.
const char* platform_name();

// True when a usable GPU is present; otherwise *reason (if given) says why not.
bool gpu_available(std::string* reason = nullptr);

struct DeviceInfo {
  std::string name;
  std::string arch;  // "sm_90", "gfx90a", ...
  int multiprocessors = 0;
  int warp_size = 0;
  std::int64_t l2_bytes = 0;
  std::int64_t global_bytes = 0;
  int runtime_version = 0;
  int driver_version = 0;
};
DeviceInfo device_info();

// Device memory owned by RAII; every call checked.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  std::size_t bytes() const { return bytes_; }
  void upload(const void* host, std::size_t bytes);
  void download(void* host, std::size_t bytes) const;
  // Fills every byte with 0xFF: NaN in fp16, bf16 and fp32, so unwritten outputs show.
  void poison();

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

void synchronize();

// Runs the platform self-check kernel: a warp-width butterfly reduction and a half-precision
// FMA per thread, compared on the host. Returns a one-line description; throws on failure.
std::string run_selfcheck();

}  // namespace attnscope::gpu
