// fused and split_kv with matrix instructions (decode_mma.hpp) for bf16 q on fp8 caches of every
// format: q converted to binary16 under a power of two a query (QBf16). In a source of its own so
// that it compiles beside decode_fp8_*.hip.
#include "decode_mma.hpp"

namespace attnscope::gpu::detail {

template void launch_decode_mma<128, false, Fp8Code<Fp8Format::e4m3>, Bf16>(const StageArgs&);
template void launch_decode_mma<128, true, Fp8Code<Fp8Format::e4m3>, Bf16>(const StageArgs&);
template void launch_decode_mma<128, false, Fp8Code<Fp8Format::e5m2>, Bf16>(const StageArgs&);
template void launch_decode_mma<128, true, Fp8Code<Fp8Format::e5m2>, Bf16>(const StageArgs&);
template void launch_decode_mma<128, false, Fp8Code<Fp8Format::e4m3fnuz>, Bf16>(const StageArgs&);
template void launch_decode_mma<128, true, Fp8Code<Fp8Format::e4m3fnuz>, Bf16>(const StageArgs&);

}  // namespace attnscope::gpu::detail
