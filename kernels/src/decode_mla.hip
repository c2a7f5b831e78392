// fused and split_kv on latent (MLA) caches (decode_mla.hpp).
#include "decode_mla.hpp"

namespace attnscope::gpu::detail {

template void launch_decode_mla<false>(const StageArgs&);
template void launch_decode_mla<true>(const StageArgs&);

}  // namespace attnscope::gpu::detail
