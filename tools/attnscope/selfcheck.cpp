#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "attnscope/core/records.hpp"
#include "attnscope/kernels/runtime.hpp"
#include "attnscope/reference/bounds.hpp"
#include "attnscope/reference/precision_model.hpp"
#include "attnscope/reference/stages.hpp"
#include "commands.hpp"

namespace attnscope::cli {

namespace {

// FP64 reference against the 113-bit one on one decode problem.
nlohmann::json reference_accuracy(std::int64_t window) {
  Problem p;
  p.q_heads = 4;
  p.kv_heads = 2;
  p.seq_len = window;
  p.window = window;
  p.head_dim = 128;
  const AttentionInputs in = make_inputs(p, KvLayoutSpec{}, DataSpec{});
  std::vector<double> out64, lse64;
  std::vector<ref::Quad> outq, lseq;
  ref::attention_output<double>(in, out64, lse64);
  ref::attention_output<ref::Quad>(in, outq, lseq);
  const std::vector<double> exact = ref::to_double(outq);
  const Metrics m = compare(p.out_elems(), out64.data(), exact.data(), DType::fp32);
  nlohmann::json j = {{"window", window},
                      {"fp64_vs_binary128_rel_l2", m.rel_l2},
                      {"fp64_vs_binary128_max_rel", m.max_rel}};
  std::printf("  window %7lld: FP64 vs binary128  rel_l2 %.2e  max_rel %.2e\n",
              static_cast<long long>(window), m.rel_l2, m.max_rel);
  return j;
}

// What FP16 accumulation is expected to cost on a QK dot of head_dim 128 and on the P.V sum
// over a window, from the precision model, next to the bounds.
nlohmann::json fp16_model(std::int64_t window) {
  Problem p;
  p.seq_len = window;
  p.window = window;
  p.head_dim = 128;
  const AttentionInputs in = make_inputs(p, KvLayoutSpec{}, DataSpec{});
  const ref::Trace<double> exact = ref::attention<double>(in);
  const model::SummationOrder order{model::OrderKind::warp_tree, 32, 8};
  const std::vector<double> pv16 = model::model_pv(in, exact.probs, Accum::fp16, order);
  const Metrics m = compare(p.out_elems(), pv16.data(), exact.out.data(), DType::fp16);
  bounds::StageFormats f{Accum::fp16, model::summation_depth(order, window), DType::fp32};
  const bounds::ElementBounds b = bounds::pv_bounds(in, exact.probs, {}, f);
  double det = 0.0, prob = 0.0;
  for (std::size_t i = 0; i < b.deterministic.size(); ++i) {
    det = std::max(det, b.deterministic[i]);
    prob = std::max(prob, b.probabilistic[i]);
  }
  std::printf(
      "  window %7lld: fp16-accumulated P.V (%s)  max_abs %.2e  bounds: prob %.2e det %.2e\n",
      static_cast<long long>(window), order.name().c_str(), m.max_abs, prob, det);
  return {{"window", window},
          {"order", order.name()},
          {"pv_max_abs", m.max_abs},
          {"pv_bound_probabilistic", prob},
          {"pv_bound_deterministic", det}};
}

}  // namespace

int run_selfcheck(const SelfcheckOptions& opt) {
  // The JSON file is opened before any work, so that a path that cannot be written fails at once.
  std::ofstream json_out;
  if (!opt.json_path.empty()) {
    json_out.open(opt.json_path, std::ios::trunc);
    if (!json_out) {
      std::fprintf(stderr, "attnscope selfcheck: cannot write '%s'\n", opt.json_path.c_str());
      return 2;
    }
  }
  nlohmann::json record;
  record["platform"] = gpu::platform_name();
  std::printf("attnscope self-check\n  GPU platform of this build: %s\n", gpu::platform_name());

  std::string reason;
  bool gpu_ok = gpu::gpu_available(&reason);
  if (gpu_ok) {
    const gpu::DeviceInfo info = gpu::device_info();
    record["gpu"] = {{"name", info.name},
                     {"arch", info.arch},
                     {"multiprocessors", info.multiprocessors},
                     {"warp_size", info.warp_size},
                     {"l2_bytes", info.l2_bytes},
                     {"global_bytes", info.global_bytes}};
    const std::string kernel = gpu::run_selfcheck();
    record["kernel_selfcheck"] = kernel;
    std::printf("  %s\n", kernel.c_str());
  } else {
    record["gpu"] = nullptr;
    record["gpu_unavailable_reason"] = reason;
    std::printf("  GPU: not used (%s)\n", reason.c_str());
  }

  std::printf(
      "Reference accuracy (batch 1, 4 query heads, 2 KV heads, head_dim 128, fp16 inputs):\n");
  for (std::int64_t w : {256, 4096}) record["reference"].push_back(reference_accuracy(w));
  std::printf("FP16 accumulation, precision model against bounds:\n");
  for (std::int64_t w : {256, 4096, 32768}) record["fp16_model"].push_back(fp16_model(w));

  if (json_out.is_open()) {
    json_out << record.dump(2) << "\n";
    json_out.flush();  // a full device or a lost file shows here, not as a silent exit 0
    json_out.close();
    if (json_out.fail()) {
      std::fprintf(stderr, "attnscope selfcheck: writing '%s' failed\n", opt.json_path.c_str());
      return 2;
    }
  }
  if (opt.require_gpu && !gpu_ok) {
    std::fprintf(stderr, "attnscope: --require-gpu given but no GPU can be used: %s\n",
                 reason.c_str());
    return 2;
  }
  return 0;
}

std::string folder_name(const std::string& model) {
  std::string out;
  for (char ch : model) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (std::isalnum(c))
      out += static_cast<char>(std::tolower(c));
    else if (!out.empty() && out.back() != '-')
      out += '-';
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? "unknown-gpu" : out;
}

int print_gpu_name() {
  std::string reason;
  if (!gpu::gpu_available(&reason)) {
    std::fprintf(stderr, "attnscope: no GPU: %s\n", reason.c_str());
    return 1;
  }
  std::printf("%s\n", folder_name(gpu::device_info().name).c_str());
  return 0;
}

}  // namespace attnscope::cli
