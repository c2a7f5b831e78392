// The mutants: attnscope's kernel templates instantiated with a planted Fault (kernels/src/
// fault.hpp), or attnscope's launches with their arguments corrupted the way a caller's bug
// would. Each is registered under a family of its own beside attnscope's implementations.
// Device faults are instantiated for fp16 inputs at head_dim 128 only (both accumulations), so
// the test binary stays small; the gate leaves the other cases out.
#include <functional>
#include <stdexcept>

#include "attnscope/kernels/registry.hpp"
#include "decode_kernel.hpp"
#include "mutants.hpp"
#include "pv_kernel.hpp"
#include "qk_kernel.hpp"
#include "softmax_kernel.hpp"

namespace attnscope::fault_injection {
namespace {

using gpu::Implementation;
using gpu::StageArgs;
using gpu::detail::Fault;

// Calls the launch functor for fp16 inputs at head_dim 128, the only instantiations made here.
template <class L>
void fp16_d128(const StageArgs& a, const L& l) {
  using T = typename gpu::detail::StorageOf<DType::fp16>::type;
  if (a.problem.input != DType::fp16 || a.problem.head_dim != 128)
    throw std::invalid_argument("mutants are built for fp16 inputs at head_dim 128 only");
  if (a.problem.accum == Accum::fp16)
    l.template operator()<T, Accum::fp16, 128>();
  else
    l.template operator()<T, Accum::fp32, 128>();
}

std::string fp16_d128_only(
    const Problem& p, const KvLayoutSpec& l,
    const std::function<std::string(const Problem&, const KvLayoutSpec&)>& own) {
  if (p.input != DType::fp16 || p.head_dim != 128)
    return "mutants are built for fp16, head_dim 128";
  return own(p, l);
}

template <Fault F>
void qk_f(const StageArgs& a) {
  fp16_d128(a, gpu::detail::LaunchQk<F>{a});
}
template <Fault F>
void pv_f(const StageArgs& a) {
  fp16_d128(a, gpu::detail::LaunchPv<F>{a});
}
template <Fault F>
void softmax_f(const StageArgs& a) {
  gpu::detail::launch_softmax_f<F>(a);
}
template <Fault F>
void fused_f(const StageArgs& a) {
  fp16_d128(a, gpu::detail::LaunchDecode<false, F>{a});
}
template <Fault F>
void split_kv_f(const StageArgs& a) {
  fp16_d128(a, gpu::detail::LaunchDecode<true, F>{a});
}

// A copy of attnscope's implementation of `path` under family `family`, launching `launch`.
Implementation copy_of(Path path, const std::string& family,
                       std::function<void(const StageArgs&)> launch, bool device_fault) {
  Implementation i = gpu::implementation("attnscope." + std::string(to_string(path)));
  i.name = family + "." + std::string(to_string(path));
  i.family = family;
  i.launch = std::move(launch);
  if (device_fault) {
    auto own = i.unsupported_reason;
    const bool decode = path == Path::fused || path == Path::split_kv;
    i.unsupported_reason = [own, decode](const Problem& p, const KvLayoutSpec& l) {
      // The faults are planted in the lane kernel; these problems run the matrix-instruction one.
      if (decode && gpu::detail::decode_uses_mma(p))
        return std::string(
            "the planted faults are in the lane decode kernel; this problem runs "
            "the matrix-instruction one");
      return fp16_d128_only(p, l, own);
    };
  }
  return i;
}

// A caller's bug: the launch gets corrupted arguments.
using Corrupt = std::function<void(StageArgs&)>;
std::function<void(const StageArgs&)> corrupted(Path path, Corrupt corrupt) {
  const auto launch = gpu::implementation("attnscope." + std::string(to_string(path))).launch;
  return [launch, corrupt](const StageArgs& a) {
    StageArgs b = a;
    corrupt(b);
    launch(b);
  };
}

struct Builder {
  std::vector<Mutant> out;

  // One mutant of a single-pass path.
  void single(const std::string& cls, Path path, std::function<void(const StageArgs&)> launch,
              bool device_fault, const std::string& where) {
    gpu::register_implementation(copy_of(path, cls, std::move(launch), device_fault));
    out.push_back({cls, path, cls + "." + std::string(to_string(path)), where});
  }
  // The unfused mutant: the family's three stages, given launches replacing attnscope's.
  void unfused(const std::string& cls, std::function<void(const StageArgs&)> qk,
               std::function<void(const StageArgs&)> sm, std::function<void(const StageArgs&)> pv,
               bool device_fault, const std::string& where) {
    const std::string family = cls + "_stages";
    const Path paths[] = {Path::qk, Path::softmax, Path::pv};
    std::function<void(const StageArgs&)> launches[] = {std::move(qk), std::move(sm),
                                                        std::move(pv)};
    for (int s = 0; s < 3; ++s) {
      auto launch =
          launches[s] ? launches[s]
                      : gpu::implementation("attnscope." + std::string(to_string(paths[s]))).launch;
      gpu::register_implementation(copy_of(paths[s], family, std::move(launch), device_fault));
    }
    out.push_back({cls, Path::unfused, gpu::unfused_name(family), where});
  }
  // A fault of the kernels' own code, in fused, split_kv and (where given) the unfused stages.
  template <Fault F>
  void device(const std::string& cls, bool qk, bool softmax, bool pv, bool fused,
              const std::string& where) {
    if (fused) single(cls, Path::fused, fused_f<F>, true, "decode kernel: " + where);
    single(cls, Path::split_kv, split_kv_f<F>, true, "decode kernel: " + where);
    if (qk || softmax || pv)
      unfused(cls, qk ? std::function<void(const StageArgs&)>(qk_f<F>) : nullptr,
              softmax ? std::function<void(const StageArgs&)>(softmax_f<F>) : nullptr,
              pv ? std::function<void(const StageArgs&)>(pv_f<F>) : nullptr, true,
              std::string(qk ? "qk " : "") + (softmax ? "softmax " : "") + (pv ? "pv " : "") +
                  "kernels: " + where);
  }
  // A caller's fault, in every path.
  void host(const std::string& cls, const Corrupt& corrupt, bool qk, bool softmax, bool pv,
            const std::string& where) {
    single(cls, Path::fused, corrupted(Path::fused, corrupt), false, "launch arguments: " + where);
    single(cls, Path::split_kv, corrupted(Path::split_kv, corrupt), false,
           "launch arguments: " + where);
    unfused(cls, qk ? corrupted(Path::qk, corrupt) : nullptr,
            softmax ? corrupted(Path::softmax, corrupt) : nullptr,
            pv ? corrupted(Path::pv, corrupt) : nullptr, false, "launch arguments: " + where);
  }
};

}  // namespace

std::vector<Mutant> register_mutants() {
  Builder b;
  b.host(
      "kv_layer_offset", [](StageArgs& a) { a.kv.layer_offset = 0; }, true, false, true,
      "the KV layer offset left out: every layer reads layer 0");
  b.device<Fault::gqa_interleaved>("gqa_head_map", true, false, true, true,
                                   "query head h reads KV head h % kv_heads, not h / group");
  b.device<Fault::first_key_dropped>("first_key_dropped", true, false, true, true,
                                     "the first key of the window left out");
  b.device<Fault::past_window>(
      "key_before_window", true, false, true, true,
      "fused: the key before the window attended too; stages: window shifted down by one");
  b.host(
      "scale_missing", [](StageArgs& a) { a.problem.scale = 1.0; }, true, true, true,
      "scores not multiplied by the scale");
  b.host(
      "scale_twice",
      [](StageArgs& a) {
        const double s = a.problem.effective_scale();
        a.problem.scale = s * s;
      },
      true, true, true, "the scale applied twice");
  b.device<Fault::no_max_shift>("no_max_shift", false, true, false, true,
                                "softmax without the max subtraction");
  b.device<Fault::block_table_ignored>("block_table_ignored", true, false, true, true,
                                       "a paged cache read as if its pages were in order");
  b.device<Fault::split_dropped>("split_dropped", false, false, false, false,
                                 "the combine leaves out the last split");
  b.device<Fault::beyond_seq_len>(
      "position_beyond_seq_len", true, false, true, true,
      "fused: position seq_len attended too; stages: window shifted up by one");
  b.device<Fault::missing_barrier>("missing_barrier", false, false, true, true,
                                   "a barrier of the row-group merge left out");
  b.device<Fault::mask_ignored>("mask_ignored", true, false, false, true,
                                "the key mask not applied: masked keys attended");
  b.device<Fault::finite_sentinel>(
      "finite_sentinel", true, false, false, true,
      "-5e4 for \"no key\": masked scores, and the online max's starting value");
  return b.out;
}

}  // namespace attnscope::fault_injection
