// The runtime of a build without a GPU backend: everything reports that no backend was built.
#include "attnscope/kernels/runtime.hpp"
#include "stage_kernels.hpp"

namespace attnscope::gpu {

namespace {
[[noreturn]] void no_backend() {
  throw GpuError("attnscope was built without a GPU backend (configure with -DATTNSCOPE_GPU=cuda or rocm)");
}
}  // namespace

const char* platform_name() { return "none"; }
bool gpu_available(std::string* reason) {
  if (reason) *reason = "attnscope was built without a GPU backend (ATTNSCOPE_GPU=none)";
  return false;
}
DeviceInfo device_info() { no_backend(); }
DeviceBuffer::DeviceBuffer(std::size_t) { no_backend(); }
DeviceBuffer::~DeviceBuffer() = default;
DeviceBuffer::DeviceBuffer(DeviceBuffer&&) noexcept = default;
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&&) noexcept = default;
void DeviceBuffer::upload(const void*, std::size_t) { no_backend(); }
void DeviceBuffer::download(void*, std::size_t) const { no_backend(); }
void DeviceBuffer::poison() { no_backend(); }
void synchronize() { no_backend(); }
std::string run_selfcheck() { no_backend(); }

}  // namespace attnscope::gpu

namespace attnscope::gpu::detail {
int multiprocessor_count() { no_backend(); }
void launch_qk(const StageArgs&) { no_backend(); }
void launch_softmax(const StageArgs&) { no_backend(); }
void launch_pv(const StageArgs&) { no_backend(); }
void launch_fused(const StageArgs&) { no_backend(); }
void launch_split_kv(const StageArgs&) { no_backend(); }
}  // namespace attnscope::gpu::detail
