// fused and split_kv on latent (MLA) caches (decode_mla.hpp); fp8 caches' instances in
// decode_fp8_*.hip.
#include "decode_mla.hpp"

namespace attnscope::gpu::detail {

template void launch_decode_mla_c<false, __half>(const StageArgs&);
template void launch_decode_mla_c<true, __half>(const StageArgs&);
template void launch_decode_mla_c<false, Bf16>(const StageArgs&);
template void launch_decode_mla_c<true, Bf16>(const StageArgs&);

namespace {
template <class C>
void launch_mla(const StageArgs& a, bool separate) {
  if (separate)
    launch_decode_mla_c<true, C>(a);
  else
    launch_decode_mla_c<false, C>(a);
}
}  // namespace

void launch_decode_mla(const StageArgs& a, bool separate) {
  if (!a.problem.kv_fp8) {
    if (a.problem.input == DType::bf16)
      launch_mla<Bf16>(a, separate);
    else
      launch_mla<__half>(a, separate);
    return;
  }
  switch (*a.problem.kv_fp8) {
    case Fp8Format::e4m3:
      launch_mla<Fp8Code<Fp8Format::e4m3>>(a, separate);
      return;
    case Fp8Format::e5m2:
      launch_mla<Fp8Code<Fp8Format::e5m2>>(a, separate);
      return;
    case Fp8Format::e4m3fnuz:
      launch_mla<Fp8Code<Fp8Format::e4m3fnuz>>(a, separate);
      return;
  }
  throw GpuError("unknown fp8 format");
}

}  // namespace attnscope::gpu::detail
