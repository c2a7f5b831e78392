// Host-side GPU runtime API of attnscope: device discovery, checked buffers, streams, timing.
// Plain C++: callers (accuracy, bench, tools) need no HIP headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "attnscope/core/dtype.hpp"

namespace attnscope::gpu {

// Any failed GPU runtime call: names the call, the file and the line.
class GpuError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// GPU work that did not finish within a deadline: a kernel that never ends. The device cannot be
// used further by this process; only its exit ends the kernel.
class GpuTimeout : public GpuError {
 public:
  using GpuError::GpuError;
};

// "rocm", "cuda" or "none": the platform this build targets.
const char* platform_name();

// True when a usable GPU is present; otherwise *reason (if given) says why not.
bool gpu_available(std::string* reason = nullptr);
// GPUs this process can use (0 without a usable runtime or backend).
int device_count();

struct DeviceInfo {
  int ordinal = 0;         // the current device, among the `visible` ones
  int visible = 0;         // GPUs this process can use (CUDA_/HIP_VISIBLE_DEVICES apply)
  std::string pci_bus_id;  // "0000:19:00.0": which physical GPU
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
// Device memory free now, in bytes.
std::int64_t free_device_bytes();

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
  // Enqueues a fill of every byte with `value` on `stream` (a hipStream_t; null: the default).
  void fill_async(int value, void* stream = nullptr);
  // Enqueues a device-to-device copy of bytes() bytes from `src`, which must be as large.
  void copy_from_async(const DeviceBuffer& src, void* stream = nullptr);

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

void synchronize();

// A GPU stream owned by RAII. handle() is the hipStream_t that StageArgs::stream takes.
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(Stream&& o) noexcept;
  Stream& operator=(Stream&& o) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  void* handle() const { return stream_; }
  void synchronize() const;

 private:
  void* stream_ = nullptr;
};

// Times work on one stream with a pair of device events: the interval is the GPU's own, from
// the point the stream reaches start() to the point it reaches stop(), free of host overheads.
class EventTimer {
 public:
  explicit EventTimer(void* stream = nullptr);
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;

  void start();
  void stop();
  // Waits for the stop event, then returns the interval in milliseconds. With timeout_s > 0 the
  // wait polls and throws GpuTimeout once timeout_s seconds have passed without the stop event.
  float elapsed_ms(double timeout_s = 0.0) const;

 private:
  void* stream_ = nullptr;
  void* start_ = nullptr;
  void* stop_ = nullptr;
};

// Fills `elems` values of `type` at device address `data` with N(0, 1) values; value i depends
// only on (seed, i). Benchmark inputs of tens of GiB are made this way in a fraction of a second,
// where the host generator (make_inputs) would take minutes.
// An fp8 type stores the codes of those values under the scale kFp8FillAmax / the format's
// largest value (fp8_fill_scale): a cache quantized as engines do, for data whose largest
// magnitude is about kFp8FillAmax (values past it saturate). top_row > 0 (fp8 only; it divides
// elems): one element of each row of top_row elements, at a position hashed from the row, holds
// the format's largest magnitude (others may too, saturated), as a cache quantized with a scale
// per row (per token) holds at least once, its row's largest value mapped there.
void fill_normal(void* data, std::int64_t elems, DType type, std::uint64_t seed,
                 void* stream = nullptr, std::int64_t top_row = 0);
inline constexpr double kFp8FillAmax = 4.0;
inline float fp8_fill_scale(Fp8Format f) {
  return static_cast<float>(kFp8FillAmax / fp8_max(f));
}
// The number of NaN values among `elems` values of `type` at `data`; waits for the result.
std::int64_t count_nan(const void* data, std::int64_t elems, DType type, void* stream = nullptr);
// How the streaming-read probe reads: 16-byte loads in flight per thread (4, 8 or 16) and
// resident blocks of 256 threads per multiprocessor (the grid is one wave of them).
struct ReadShape {
  int loads = 4;
  int blocks_per_sm = 8;
};
// The shapes a peak measurement tries; the best of them is the measured read peak.
std::vector<ReadShape> read_shapes();
// Enqueues a read of every 16-byte word of `buffer` (whole words only) that writes nothing:
// the streaming-read bandwidth probe. `sink` (16 bytes) is never written in practice.
void read_async(const DeviceBuffer& buffer, DeviceBuffer& sink, void* stream = nullptr,
                ReadShape shape = {});
// The tensor-core probe: the throughput of mma.m16n8k16 with binary16 operands and fp32
// accumulation (the instruction of the matrix-instruction decode kernels), the ceiling of a
// kernel that mostly multiplies. `blocks` blocks of 256 threads, each warp running `iters`
// rounds of kMmaProbeChains independent instructions; mma_probe_flops counts their FLOPs (2 a
// multiply-add). Available on NVIDIA GPUs of compute capability 8.0 and later
// (mma_probe_available); elsewhere mma_probe_async throws GpuError.
inline constexpr int kMmaProbeChains = 8;
bool mma_probe_available();
void mma_probe_async(DeviceBuffer& sink, int blocks, int iters, void* stream = nullptr);
inline double mma_probe_flops(int blocks, int iters) {
  return double(blocks) * 8.0 * double(iters) * kMmaProbeChains * 2.0 * 16 * 8 * 16;
}
// Holds a stream until the host releases it. Enqueued ahead of a timed region, every launch of
// the region is queued before the start event fires, however many launches the region has and
// however long the host takes to enqueue them, so launch latency stays out of the measurement.
// The hold is a one-thread kernel polling a flag in pinned host memory that the device reads
// directly; it ends by itself after `timeout_ms` of GPU clock if the host never releases it
// (an exception between hold and release), and says so through timed_out().
class StreamHold {
 public:
  StreamHold();
  ~StreamHold();
  StreamHold(const StreamHold&) = delete;
  StreamHold& operator=(const StreamHold&) = delete;
  // Enqueues the hold on `stream`; the previous hold must have been released.
  void hold(void* stream, double timeout_ms = 1000.0);
  // Lets the held stream go on.
  void release();
  // Whether the last hold ended by its timeout rather than by release(); meaningful once the
  // stream has passed the hold (after a synchronisation).
  bool timed_out() const;

 private:
  void* host_ = nullptr;    // pinned: [0] the release flag, [1] set by a hold that timed out
  void* device_ = nullptr;  // the same words as the device addresses them
};

// Runs the platform self-check kernel: a warp-width butterfly reduction and a half-precision
// FMA per thread, compared on the host. Returns a one-line description; throws on failure.
std::string run_selfcheck();

// Converts all 256 codes of each fp8 format to binary16 on the GPU, by the decode kernels' path
// (the hardware's conversion where there is one) and by the integer path, and compares both with
// the exact values (attnscope/core/fp8.hpp). Returns a one-line description; throws GpuError on
// any difference. run_selfcheck includes it.
std::string check_fp8_conversions();

}  // namespace attnscope::gpu
