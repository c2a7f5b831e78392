// qk: attnscope.qk (kernel in qk_kernel.hpp).
#include "qk_kernel.hpp"

namespace attnscope::gpu::detail {

void launch_qk(const StageArgs& a) {
  if (a.problem.latent) return launch_qk_mla(a);
  dispatch(a.problem, LaunchQk<Fault::none>{a});
}

}  // namespace attnscope::gpu::detail
