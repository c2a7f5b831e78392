// attnscope fp8-cost: what each fp8 KV-cache format and scale granularity costs the attention
// output, per window and data distribution, measured with the FP64 references and predicted from
// each cache element's rounding (reference/fp8_cost.hpp).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "attnscope/core/inputs.hpp"
#include "attnscope/core/records.hpp"
#include "attnscope/reference/fp8_cost.hpp"
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
  nlohmann::json rows = nlohmann::json::array();
  std::printf("%-9s %-6s %8s %-13s %12s %12s %7s %7s %12s\n", "format", "scale", "window",
              "distribution", "measured", "predicted", "ratio", "rel.sd", "first-order");
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
          std::printf("%-9s %-6s %8ld %-13s %12.4e %12.4e %7.3f %7.3f %12.4e\n",
                      std::string(to_string(f)).c_str(), std::string(to_string(s)).c_str(), w,
                      std::string(to_string(d)).c_str(), c.measured_rel_l2, c.predicted_rel_l2,
                      c.predicted_rel_l2 > 0 ? c.measured_rel_l2 / c.predicted_rel_l2 : 0.0,
                      c.predicted_relative_sd, c.linear_rel_l2);
          std::fflush(stdout);
          rows.push_back({{"format", to_string(f)},
                          {"scale", to_string(s)},
                          {"window", w},
                          {"distribution", to_string(d)},
                          {"measured_rel_l2", json_number(c.measured_rel_l2)},
                          {"predicted_rel_l2", json_number(c.predicted_rel_l2)},
                          {"predicted_relative_sd", json_number(c.predicted_relative_sd)},
                          {"first_order_rel_l2", json_number(c.linear_rel_l2)},
                          {"prediction_samples", c.samples},
                          {"measured_by",
                           "FP64 attention over the dequantized cache against FP64 attention "
                           "over the values before quantization"},
                          {"problem", p.tag()}});
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
