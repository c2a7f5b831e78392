// attnscope fp8-cost: what each fp8 KV-cache format and scale granularity costs the attention
// output, per window and data distribution, measured with the FP64 references and predicted from
// each cache element's rounding (reference/fp8_cost.hpp); with --impl, an implementation's
// output on the GPU measured against the same unquantized reference.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "attnscope/core/inputs.hpp"
#include "attnscope/core/metrics.hpp"
#include "attnscope/core/records.hpp"
#include "attnscope/kernels/device_problem.hpp"
#include "attnscope/kernels/registry.hpp"
#include "attnscope/kernels/runtime.hpp"
#include "attnscope/reference/fp8_cost.hpp"
#include "attnscope/reference/stages.hpp"
#include "commands.hpp"

namespace attnscope::cli {

int run_fp8_cost(const Fp8CostOptions& opt) {
  // The output is checked before the work: a path that cannot be written is refused up front.
  std::ofstream out;
  if (!opt.json.empty()) {
    out.open(opt.json);
    if (!out) {
      std::cerr << "attnscope fp8-cost: cannot write " << opt.json << "\n";
      return 2;
    }
  }
  std::vector<Fp8Format> formats;
  std::vector<KvScale> scales;
  std::vector<Distribution> dists;
  try {
    for (const std::string& f : opt.formats) formats.push_back(parse_fp8_format(f));
    for (const std::string& s : opt.scales) scales.push_back(parse_kv_scale(s));
    for (const std::string& d : opt.distributions) dists.push_back(parse_distribution(d));
  } catch (const std::invalid_argument& e) {
    std::cerr << "attnscope fp8-cost: " << e.what() << "\n";
    return 2;
  }
  // A kernel to measure: a GPU, and an implementation that reads fp8 caches.
  const gpu::Implementation* impl = nullptr;
  gpu::DeviceInfo device;
  if (!opt.impl.empty()) {
    try {
      impl = &gpu::implementation(opt.impl);
    } catch (const std::invalid_argument& e) {
      std::cerr << "attnscope fp8-cost: " << e.what() << "\n";
      return 2;
    }
    std::string why;
    if (!gpu::gpu_available(&why)) {
      std::cerr << "attnscope fp8-cost: --impl needs a GPU: " << why << "\n";
      return 2;
    }
    device = gpu::device_info();
  }
  nlohmann::json rows = nlohmann::json::array();
  std::printf("%-9s %-6s %8s %-13s %12s %12s %7s %7s %12s%s\n", "format", "scale", "window",
              "distribution", "measured", "predicted", "ratio", "rel.sd", "first-order",
              impl ? "    fp64-deq  kernel-vs-deq" : "");
  for (Fp8Format f : formats)
    for (KvScale s : scales)
      for (long w : opt.windows)
        for (Distribution d : dists) {
          // One Llama-style GQA row block: 8 query heads on 2 KV heads, head_dim 128, fp16 q.
          Problem p;
          p.q_heads = 8;
          p.kv_heads = 2;
          p.head_dim = 128;
          p.seq_len = p.window = w;
          p.kv_fp8 = f;
          p.kv_scale = s;
          DataSpec data;
          data.dist = d;
          const AttentionInputs in = make_inputs(p, KvLayoutSpec{}, data);
          const ref::Fp8Cost c = ref::fp8_cost(in);
          nlohmann::json row = {{"format", to_string(f)},
                                {"scale", to_string(s)},
                                {"window", w},
                                {"distribution", to_string(d)},
                                {"measured_rel_l2", json_number(c.measured_rel_l2)},
                                {"predicted_rel_l2", json_number(c.predicted_rel_l2)},
                                {"predicted_relative_sd", json_number(c.predicted_relative_sd)},
                                {"first_order_rel_l2", json_number(c.linear_rel_l2)},
                                {"prediction_samples", c.samples},
                                {"measured_by",
                                 "FP64 attention over the dequantized cache against FP64 "
                                 "attention over the values before quantization"},
                                {"problem", p.tag()}};
          double measured = c.measured_rel_l2, own = 0.0;
          if (impl) {
            const std::string why = impl->why_unsupported(p, KvLayoutSpec{});
            if (!why.empty()) {
              std::cerr << "attnscope fp8-cost: " << opt.impl << " cannot run " << p.tag() << ": "
                        << why << "\n";
              return 2;
            }
            gpu::DeviceProblem dp(in);
            dp.poison_outputs();
            dp.run(*impl);
            const std::vector<double> got = dp.out();
            // Every element written: the outputs were poisoned with NaN, and this data has none.
            for (double x : got)
              if (std::isnan(x)) {
                std::cerr << "attnscope fp8-cost: " << opt.impl << " left output elements of "
                          << p.tag() << " unwritten (NaN)\n";
                return 1;
              }
            AttentionInputs orig = in;
            orig.k = in.k_orig;
            orig.v = in.v_orig;
            const std::vector<double> ref_orig = ref::attention<double>(orig).out;
            const std::vector<double> ref_deq = ref::attention<double>(in).out;
            measured = compare(p.out_elems(), got.data(), ref_orig.data(), p.output).rel_l2;
            own = compare(p.out_elems(), got.data(), ref_deq.data(), p.output).rel_l2;
            row["measured_rel_l2"] = json_number(measured);
            row["fp64_measured_rel_l2"] = json_number(c.measured_rel_l2);
            row["kernel_vs_dequantized_rel_l2"] = json_number(own);
            row["measured_by"] = opt.impl + " on " + device.name +
                                 " against FP64 attention over the values before quantization";
            row["implementation"] = opt.impl;
            row["gpu"] = device.name;
          }
          std::printf("%-9s %-6s %8ld %-13s %12.4e %12.4e %7.3f %7.3f %12.4e",
                      std::string(to_string(f)).c_str(), std::string(to_string(s)).c_str(), w,
                      std::string(to_string(d)).c_str(), measured, c.predicted_rel_l2,
                      c.predicted_rel_l2 > 0 ? measured / c.predicted_rel_l2 : 0.0,
                      c.predicted_relative_sd, c.linear_rel_l2);
          if (impl) std::printf(" %12.4e %12.4e", c.measured_rel_l2, own);
          std::printf("\n");
          std::fflush(stdout);
          rows.push_back(std::move(row));
        }
  if (!opt.json.empty()) {
    out << rows.dump(2) << "\n";
    out.flush();
    if (!out) {
      std::cerr << "attnscope fp8-cost: writing " << opt.json << " failed\n";
      return 2;
    }
  }
  return 0;
}

}  // namespace attnscope::cli
