// qk and pv on latent (MLA) caches: the latent decode kernel's scores and values passes
// (decode_mla.hpp), pv's split partials added by pv_combine (pv_kernel.hpp).
#include "decode_mla.hpp"
#include "pv_kernel.hpp"

namespace attnscope::gpu::detail {

#if defined(ATTNSCOPE_PLATFORM_CUDA)

namespace {

template <int MT, MlaPass kPass, class C>
void launch_mla_stage_tile(const StageArgs& a, int splits) {
  using G = MlaGeom<MT, C>;
  constexpr bool kValues = kPass == MlaPass::values;
  const char* who = kValues ? "pv" : "qk";
  auto* kernel = decode_mla_kernel<MT, true, C, kPass>;
  static const bool sized = [&] {
    ATTNSCOPE_CHECK(hipFuncSetAttributeMaxDynamicSharedMemory(kernel, G::SMEM));
    return true;
  }();
  (void)sized;
  KernelParams p = make_params(a, G::QT);
  if (!kValues && a.scale_in_softmax) p.scale = 1.0f;  // softmax applies it
  p.splits = splits;
  p.split_len = (p.span + splits - 1) / splits;
  const std::int64_t rows = std::int64_t(p.batch) * p.q_len * p.q_heads;
  if (kValues && splits > 1) {
    if (a.workspace == nullptr) throw GpuError("pv: workspace required for split windows");
    check_workspace(a, std::size_t(rows) * splits * G::DV * sizeof(float), who);
  }
  p.grid_x = splits;
  const Grid3 g = fold_grid(splits, p.kv_heads, std::int64_t(p.batch) * p.q_tiles, who, G::THREADS);
  hipStream_t st = static_cast<hipStream_t>(a.stream);
  kernel<<<dim3(g.x, g.y, g.z), G::THREADS, G::SMEM, st>>>(p);
  ATTNSCOPE_CHECK_LAUNCH();
  if (kValues && splits > 1) {
    check_grid(rows, 1, 1, "pv_combine");
    pv_combine<Accum::fp32><<<dim3(unsigned(rows)), 128, 0, st>>>(p, G::DV);
    ATTNSCOPE_CHECK_LAUNCH();
  }
}

template <MlaPass kPass, class C>
void launch_mla_stage_c(const StageArgs& a, int splits) {
  switch (mla_query_tiles(a.problem)) {
    case 1:
      launch_mla_stage_tile<1, kPass, C>(a, splits);
      return;
    case 2:
      launch_mla_stage_tile<2, kPass, C>(a, splits);
      return;
    default:
      launch_mla_stage_tile<4, kPass, C>(a, splits);
  }
}

template <MlaPass kPass>
void launch_mla_stage(const StageArgs& a, int splits) {
  const std::string why = mla_support(a.problem);
  if (!why.empty()) throw GpuError(why);
  if (a.problem.kv_fp8) throw GpuError("the unfused stages read no fp8 cache");
  if (a.problem.input == DType::bf16)
    launch_mla_stage_c<kPass, Bf16>(a, splits);
  else
    launch_mla_stage_c<kPass, __half>(a, splits);
}

}  // namespace

void launch_qk_mla(const StageArgs& a) {
  // Each score is one dot: the split count (runs of positions that fill the device) leaves the
  // order alone.
  launch_mla_stage<MlaPass::scores>(a, decode_auto_splits(a.problem, multiprocessor_count()));
}

void launch_pv_mla(const StageArgs& a) {
  launch_mla_stage<MlaPass::values>(a, pv_splits(a.problem, launch_context(a)));
}

#else

// ROCm: no latent kernel (mla_support refuses latent problems there).
void launch_qk_mla(const StageArgs& a) {
  throw GpuError(mla_support(a.problem));
}
void launch_pv_mla(const StageArgs& a) {
  throw GpuError(mla_support(a.problem));
}

#endif

}  // namespace attnscope::gpu::detail
