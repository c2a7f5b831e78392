// fused and split_kv: attnscope.fused and attnscope.split_kv (kernels in decode_kernel.hpp; fp8
// caches in decode_fp8_*.hip).
#include "decode_kernel.hpp"

namespace attnscope::gpu::detail {

namespace {

template <bool kSeparate>
void launch_decode(const StageArgs& a) {
  if (a.problem.latent) {
    launch_decode_mla(a, kSeparate);
    return;
  }
  if (!a.problem.kv_fp8) {
    dispatch(a.problem, LaunchDecode<kSeparate, Fault::none>{a});
    return;
  }
  switch (*a.problem.kv_fp8) {
    case Fp8Format::e4m3:
      launch_decode_fp8<Fp8Format::e4m3>(a, kSeparate);
      return;
    case Fp8Format::e5m2:
      launch_decode_fp8<Fp8Format::e5m2>(a, kSeparate);
      return;
    case Fp8Format::e4m3fnuz:
      launch_decode_fp8<Fp8Format::e4m3fnuz>(a, kSeparate);
      return;
  }
  throw GpuError("unknown fp8 format");
}

}  // namespace

void launch_fused(const StageArgs& a) {
  launch_decode<false>(a);
}
void launch_split_kv(const StageArgs& a) {
  launch_decode<true>(a);
}

}  // namespace attnscope::gpu::detail
