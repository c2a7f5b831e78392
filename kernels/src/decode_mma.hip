// fused and split_kv with matrix instructions (decode_mma.hpp) on fp16 caches; fp8 caches in
// decode_fp8_*.hip.
#include "decode_mma.hpp"

namespace attnscope::gpu::detail {

template void launch_decode_mma<64, false, __half, __half>(const StageArgs&);
template void launch_decode_mma<64, true, __half, __half>(const StageArgs&);
template void launch_decode_mma<96, false, __half, __half>(const StageArgs&);
template void launch_decode_mma<96, true, __half, __half>(const StageArgs&);
template void launch_decode_mma<128, false, __half, __half>(const StageArgs&);
template void launch_decode_mma<128, true, __half, __half>(const StageArgs&);
template void launch_decode_mma<192, false, __half, __half>(const StageArgs&);
template void launch_decode_mma<192, true, __half, __half>(const StageArgs&);

}  // namespace attnscope::gpu::detail
