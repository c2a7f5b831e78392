// softmax: attnscope.softmax (kernel in softmax_kernel.hpp).
#include "softmax_kernel.hpp"

namespace attnscope::gpu::detail {

void launch_softmax(const StageArgs& a) {
  launch_softmax_f<Fault::none>(a);
}

}  // namespace attnscope::gpu::detail
