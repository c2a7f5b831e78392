// fused and split_kv: attnscope.fused and attnscope.split_kv (kernels in decode_kernel.hpp).
#include "decode_kernel.hpp"

namespace attnscope::gpu::detail {

void launch_fused(const StageArgs& a) {
  dispatch(a.problem, LaunchDecode<false, Fault::none>{a});
}
void launch_split_kv(const StageArgs& a) {
  dispatch(a.problem, LaunchDecode<true, Fault::none>{a});
}

}  // namespace attnscope::gpu::detail
