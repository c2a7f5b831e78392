// fused and split_kv on an e4m3 KV cache (decode_kernel.hpp, decode_mma.hpp, decode_mla.hpp,
// cache_read.hpp).
#include "decode_kernel.hpp"
#include "decode_mla.hpp"
#include "decode_mma.hpp"

namespace attnscope::gpu::detail {

template void launch_decode_mma<128, false, Fp8Code<Fp8Format::e4m3>, __half>(const StageArgs&);
template void launch_decode_mma<128, true, Fp8Code<Fp8Format::e4m3>, __half>(const StageArgs&);
// bf16 q's (decode_fp8_bf16q.hip), which LaunchDecode below calls.
extern template void launch_decode_mma<128, false, Fp8Code<Fp8Format::e4m3>, Bf16>(
    const StageArgs&);
extern template void launch_decode_mma<128, true, Fp8Code<Fp8Format::e4m3>, Bf16>(const StageArgs&);
template void launch_decode_mla_c<false, Fp8Code<Fp8Format::e4m3>>(const StageArgs&);
template void launch_decode_mla_c<true, Fp8Code<Fp8Format::e4m3>>(const StageArgs&);

template <>
void launch_decode_fp8<Fp8Format::e4m3>(const StageArgs& a, bool separate) {
  using C = Fp8Code<Fp8Format::e4m3>;
  if (separate)
    dispatch(a.problem, LaunchDecode<true, Fault::none, C>{a});
  else
    dispatch(a.problem, LaunchDecode<false, Fault::none, C>{a});
}

}  // namespace attnscope::gpu::detail
