// pv: attnscope.pv (kernel in pv_kernel.hpp).
#include "pv_kernel.hpp"

namespace attnscope::gpu::detail {

void launch_pv(const StageArgs& a) {
  if (a.problem.latent) return launch_pv_mla(a);
  dispatch(a.problem, LaunchPv<Fault::none>{a});
}

}  // namespace attnscope::gpu::detail
