// fused and split_kv with matrix instructions (decode_mma.hpp).
#include "decode_mma.hpp"

namespace attnscope::gpu::detail {

template void launch_decode_mma<64, false>(const StageArgs&);
template void launch_decode_mma<64, true>(const StageArgs&);
template void launch_decode_mma<128, false>(const StageArgs&);
template void launch_decode_mma<128, true>(const StageArgs&);

}  // namespace attnscope::gpu::detail
