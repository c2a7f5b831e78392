// The runtime of a build without a GPU backend: everything reports that no backend was built.
#include "attnscope/kernels/runtime.hpp"
#include "stage_kernels.hpp"

namespace attnscope::gpu {

namespace {
[[noreturn]] void no_backend() {
  throw GpuError(
      "attnscope was built without a GPU backend (configure with -DATTNSCOPE_GPU=cuda or rocm)");
}
}  // namespace

const char* platform_name() {
  return "none";
}
bool gpu_available(std::string* reason) {
  if (reason) *reason = "attnscope was built without a GPU backend (ATTNSCOPE_GPU=none)";
  return false;
}
int device_count() {
  return 0;
}
DeviceInfo device_info() {
  no_backend();
}
std::int64_t free_device_bytes() {
  no_backend();
}
DeviceBuffer::DeviceBuffer(std::size_t) {
  no_backend();
}
DeviceBuffer::~DeviceBuffer() = default;
DeviceBuffer::DeviceBuffer(DeviceBuffer&&) noexcept = default;
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&&) noexcept = default;
void DeviceBuffer::upload(const void*, std::size_t) {
  no_backend();
}
void DeviceBuffer::download(void*, std::size_t) const {
  no_backend();
}
void DeviceBuffer::poison() {
  no_backend();
}
void DeviceBuffer::fill_async(int, void*) {
  no_backend();
}
void DeviceBuffer::copy_from_async(const DeviceBuffer&, void*) {
  no_backend();
}
void synchronize() {
  no_backend();
}
Stream::Stream() {
  no_backend();
}
Stream::~Stream() = default;
Stream::Stream(Stream&&) noexcept = default;
Stream& Stream::operator=(Stream&&) noexcept = default;
void Stream::synchronize() const {
  no_backend();
}
EventTimer::EventTimer(void*) {
  no_backend();
}
EventTimer::~EventTimer() = default;
void EventTimer::start() {
  no_backend();
}
void EventTimer::stop() {
  no_backend();
}
float EventTimer::elapsed_ms(double) const {
  no_backend();
}
void fill_normal(void*, std::int64_t, DType, std::uint64_t, void*, std::int64_t) {
  no_backend();
}
std::int64_t count_nan(const void*, std::int64_t, DType, void*) {
  no_backend();
}
StreamHold::StreamHold() {
  no_backend();
}
StreamHold::~StreamHold() = default;
void StreamHold::hold(void*, double) {
  no_backend();
}
void StreamHold::release() {}
bool StreamHold::timed_out() const {
  return false;
}
void read_async(const DeviceBuffer&, DeviceBuffer&, void*, ReadShape) {
  no_backend();
}
std::vector<ReadShape> read_shapes() {
  return {};
}
bool mma_probe_available() {
  return false;
}
void mma_probe_async(DeviceBuffer&, int, int, void*) {
  no_backend();
}
std::string run_selfcheck() {
  no_backend();
}
std::string check_fp8_conversions() {
  no_backend();
}

}  // namespace attnscope::gpu

namespace attnscope::gpu::detail {
int multiprocessor_count() {
  no_backend();
}
void launch_qk(const StageArgs&) {
  no_backend();
}
void launch_softmax(const StageArgs&) {
  no_backend();
}
void launch_pv(const StageArgs&) {
  no_backend();
}
void launch_fused(const StageArgs&) {
  no_backend();
}
void launch_split_kv(const StageArgs&) {
  no_backend();
}
}  // namespace attnscope::gpu::detail
