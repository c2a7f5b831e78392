#include "evaluate.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "attnscope/core/records.hpp"
#include "attnscope/core/trace.hpp"
#include "attnscope/kernels/device_problem.hpp"
#include "attnscope/kernels/registry.hpp"
#include "attnscope/reference/bounds.hpp"
#include "attnscope/reference/fp8_cost.hpp"
#include "attnscope/reference/judge.hpp"
#include "attnscope/reference/precision_model.hpp"
#include "attnscope/reference/stages.hpp"

namespace attnscope::accuracy {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::int64_t depth_of(const std::optional<SummationOrder>& order, std::int64_t n) {
  return summation_depth(order.value_or(SummationOrder{}), n);
}

// The depth a budget takes: the order's chain plus the roundings the kernel adds (an fp8 cache's
// scales, a weight carried as two binary16 values); four times that where the accumulation may
// round toward zero. A unit roundoff twice over is gamma_n(2u) = gamma_2n(u) for the
// deterministic bound and needs 4n in the probabilistic one (its error grows as sqrt(n) u).
std::int64_t budget_depth(std::int64_t depth, const KernelOrder& o) {
  const std::int64_t d = depth + o.fp8_roundings + o.extra_roundings;
  return o.truncating ? 4 * d : d;
}

// Measured against the precision model: the kernel's rel_l2 (to the reference) may exceed the
// model's, on the same inputs, by kModelFactor. The model reproduces the H200's fp16 rel_l2
// within 4% on every fp16 case of the suite; the factor leaves room for the GPU's expf, which is
// not correctly rounded. Output rounding alone (the rounded reference) is the floor.
constexpr double kModelFactor = 1.5;

Check model_gate(const Problem& p, std::string what, std::string field,
                 const std::vector<double>& got, const std::vector<double>& model_out,
                 const std::vector<double>& ref) {
  Check c;
  c.what = std::move(what);
  c.field = std::move(field);
  const std::int64_t n = std::int64_t(ref.size());
  c.metrics = compare(n, got.data(), ref.data(), p.output);
  const Metrics mm = compare(n, model_out.data(), ref.data(), p.output);
  std::vector<double> rounded(ref.size());
  for (std::size_t i = 0; i < ref.size(); ++i) rounded[i] = round_to(p.output, ref[i]);
  const double floor = compare(n, rounded.data(), ref.data(), p.output).rel_l2;
  c.budget_max = kModelFactor * std::max(mm.rel_l2, floor);  // an allowed rel_l2
  c.budget_ratio =
      c.budget_max > 0.0 ? c.metrics.rel_l2 / c.budget_max : (c.metrics.rel_l2 > 0.0 ? kInf : 0.0);
  c.worst = c.metrics.worst_index;
  c.worst_where = coordinates(p, TensorShape::out, c.worst);
  c.pass = c.metrics.nan_count == 0 && c.metrics.inf_count == 0 && c.metrics.nan_lost == 0 &&
           c.budget_ratio <= 1.0;
  c.model_rel_l2 = mm.rel_l2;
  c.model_max_abs = mm.max_abs;
  return c;
}

template <class Real>
std::vector<double> d(const std::vector<Real>& v) {
  return ref::to_double(v);
}

// The cache elements as a kernel under fp16 accumulation reads an fp8 cache (cache_read.hpp):
// binary16(fp32(code) x scale). in.k holds code x scale exactly, so an element's fp32 scale is
// in.k / code wherever the code is finite and not zero (where it is, the element is in.k).
AttentionInputs fp16_read_of_fp8(const AttentionInputs& in) {
  AttentionInputs r = in;
  auto read = [&](const HostTensor& codes, HostTensor& vals) {
    for (std::int64_t i = 0; i < vals.numel(); ++i) {
      const double c = codes.get(i);  // the code's value, exactly
      if (c == 0.0 || !std::isfinite(c)) continue;
      const float scale = static_cast<float>(vals.get(i) / c);
      volatile float prod = static_cast<float>(c) * scale;  // one binary32 rounding
      vals.set(i, round_to(DType::fp16, static_cast<double>(prod)));
    }
  };
  read(in.k_cache, r.k);
  read(in.v_cache, r.v);
  return r;
}

// An fp8 case's format cost, the kernel's output against FP64 over the values before
// quantization, is held within kCostSigmas of the cost model's predicted standard deviations of
// its prediction (ref::fp8_cost): the host tests hold the FP64 references to the same.
constexpr double kCostSigmas = 4.0;

}  // namespace

std::string CaseResult::report() const {
  std::string s;
  for (const Check& c : checks) s += describe(c) + "\n";
  return s;
}

CaseResult run_case(const AccuracyCase& c, const gpu::DeviceInfo& device, const std::string& commit,
                    const std::string& trace_dir) {
  const auto t0 = std::chrono::steady_clock::now();
  const Problem& p = c.problem;
  const AttentionInputs in = make_inputs(p, c.layout, c.data);
  gpu::DeviceProblem dp(in);
  const gpu::LaunchContext ctx = dp.launch_context(c.splits);
  CaseResult res;
  nlohmann::json& j = res.record;
  j["case"] = c.name();
  j["path"] = to_string(c.path);
  j["implementation"] = c.impl;
  j["family"] = c.family;
  j.update(to_json(p));
  j.update(to_json(c.layout));
  j.update(to_json(c.data));
  if (!in.seq_lens.empty()) j["seq_lens"] = in.seq_lens;
  j["gpu"] = device.name;
  j["gpu_arch"] = device.arch;
  j["commit"] = commit;

  // FP64 reference; the 113-bit one where it is affordable.
  const bool use_quad = p.score_elems() * p.head_dim <= (std::int64_t(1) << 21);
  j["reference"] = use_quad ? "binary128" : "fp64";
  ref::Trace<double> T;
  if (use_quad) {
    const ref::Trace<ref::Quad> q = ref::attention<ref::Quad>(in);
    T = {d(q.scores), d(q.probs), d(q.lse), d(q.out)};
  } else {
    T = ref::attention<double>(in);
  }
  const double scale = p.effective_scale();
  const double lambda = bounds::kDefaultLambda;
  auto add = [&](Check ch) {
    nlohmann::json& r = j;
    add_metrics(r, ch.metrics, ch.field);
    r[ch.field + "budget_max"] = json_number(ch.budget_max);
    r[ch.field + "budget_ratio"] = json_number(ch.budget_ratio);
    r[ch.field + "pass"] = ch.pass;
    if (ch.model_rel_l2 >= 0.0) {
      r[ch.field + "predicted_rel_l2"] = json_number(ch.model_rel_l2);
      r[ch.field + "predicted_max_abs"] = json_number(ch.model_max_abs);
    }
    res.pass = res.pass && ch.pass;
    res.checks.push_back(std::move(ch));
  };

  // Where an order (and so a budget) depends on the device or was not declared, the record says so.
  auto note_order = [&](const gpu::Implementation& impl, const KernelOrder& o) {
    if (!impl.declares_order()) j["order_undeclared"].push_back(impl.name);
    if (o.device_dependent) {
      j["order_device_dependent"].push_back(impl.name);
      j["multiprocessors"] = ctx.multiprocessors;
    }
  };

  // The unfused stages on one set of device buffers: each stage's local check uses the
  // reference applied to exactly what the previous GPU stage produced.
  struct Unfused {
    std::vector<double> scores, probs, out, lse;
    bounds::ElementBounds qk_b, sm_e2e, pv_e2e;
    std::vector<double> scores_ref;
  };
  // The unfused path of `family` (the case's own, or the one a single-pass path is compared with).
  auto run_unfused = [&](const std::string& family, bool judge_stages) {
    Unfused u;
    const gpu::Implementation& qk = *gpu::family_stage(family, Path::qk);
    const gpu::Implementation& sm = *gpu::family_stage(family, Path::softmax);
    const gpu::Implementation& pv = *gpu::family_stage(family, Path::pv);
    const KernelOrder qk_o = qk.order(p, ctx), sm_o = sm.order(p, ctx), pv_o = pv.order(p, ctx);
    const bool sis = c.path == Path::unfused && c.scale_in_softmax;
    const double logit_scale = sis ? scale : 1.0;
    // A stage's declared extra roundings and possibly truncating instructions (the latent
    // kernel's passes) deepen its chains as the single-pass paths' do.
    const bounds::StageFormats f_qk{p.accum, budget_depth(depth_of(qk_o.dot, p.head_dim), qk_o),
                                    DType::fp32, lambda};
    // The fp32 softmax keeps a running (max, sum) with rescaling: each step may round twice.
    const std::int64_t sm_depth =
        depth_of(sm_o.values, p.window) * (p.accum == Accum::fp32 ? 2 : 1);
    const bounds::StageFormats f_sm{p.accum, sm_depth, DType::fp32, lambda};
    const bounds::StageFormats f_pv{p.accum, budget_depth(depth_of(pv_o.values, p.window), pv_o),
                                    p.output, lambda};

    dp.poison_outputs();
    dp.run(qk, sis);
    u.scores = dp.scores();
    u.scores_ref =
        sis ? (use_quad ? d(ref::qk<ref::Quad>(in, false)) : ref::qk<double>(in, false)) : T.scores;
    u.qk_b = bounds::qk_bounds(in, f_qk, !sis);

    dp.poison_outputs();
    dp.set_scores(u.scores);
    dp.run(sm, sis);
    u.probs = dp.probs();
    u.lse = dp.lse();
    u.sm_e2e = bounds::softmax_bounds(in, u.scores_ref, logit_scale, u.qk_b.probabilistic, f_sm);

    dp.poison_outputs();
    dp.set_probs(u.probs);
    dp.run(pv, false, c.splits);
    u.out = dp.out();
    u.pv_e2e = bounds::pv_bounds(in, T.probs, u.sm_e2e.probabilistic, f_pv);
    if (!judge_stages) return u;

    j["qk_order"] = qk_o.describe();
    j["softmax_order"] = sm_o.describe();
    j["pv_order"] = pv_o.describe();
    note_order(qk, qk_o);
    note_order(sm, sm_o);
    note_order(pv, pv_o);
    // Local: each stage against the reference on its actual inputs.
    std::vector<double> lse_loc;
    const std::vector<double> probs_loc = ref::softmax<double>(in, u.scores, logit_scale, &lse_loc);
    const std::vector<double> out_loc = ref::pv<double>(in, u.probs);
    std::vector<Check> local;
    local.push_back(judge(p, "qk", "qk_", TensorShape::scores, u.scores, u.scores_ref,
                          u.qk_b.probabilistic, DType::fp32));
    local.push_back(judge(p, "softmax (on the GPU's scores)", "softmax_local_", TensorShape::scores,
                          u.probs, probs_loc,
                          bounds::softmax_bounds(in, u.scores, logit_scale, {}, f_sm).probabilistic,
                          DType::fp32));
    local.push_back(judge(p, "pv (on the GPU's probabilities)", "pv_local_", TensorShape::out,
                          u.out, out_loc, bounds::pv_bounds(in, u.probs, {}, f_pv).probabilistic,
                          p.output));
    local.push_back(
        judge(p, "lse (on the GPU's scores)", "lse_local_", TensorShape::rows, u.lse, lse_loc,
              bounds::lse_bounds(in, lse_loc, probs_loc, {}, logit_scale, f_sm), DType::fp32));
    if (p.accum == Accum::fp16) {
      // The bound grows past the output itself at long fp16 windows; the precision model of
      // pv's own order on the same probabilities keeps the check able to fail.
      std::vector<double> pred =
          model::model_pv(in, u.probs, Accum::fp16, pv_o.values.value_or(SummationOrder{}));
      for (double& x : pred) x = round_to(p.output, x);
      local.push_back(model_gate(p, "pv (on the GPU's probabilities) against the precision model",
                                 "pv_local_model_", u.out, pred, out_loc));
    }
    const char* names[] = {"qk", "softmax", "pv", "softmax", "pv"};
    for (std::size_t s = 0; s < local.size(); ++s)
      if (!local[s].pass && res.first_failing_stage.empty()) res.first_failing_stage = names[s];
    for (Check& ch : local) add(std::move(ch));
    // End to end: each intermediate against the exact one, budgets propagated through stages.
    add(judge(p, "softmax", "softmax_", TensorShape::scores, u.probs, T.probs,
              u.sm_e2e.probabilistic, DType::fp32));
    add(judge(p, "lse", "lse_", TensorShape::rows, u.lse, T.lse,
              bounds::lse_bounds(in, T.lse, T.probs, u.qk_b.probabilistic, logit_scale, f_sm),
              DType::fp32));
    add(judge(p, "pv", "pv_", TensorShape::out, u.out, T.out, u.pv_e2e.probabilistic, p.output));
    add(judge(p, "attn_out", "attn_out_", TensorShape::out, u.out, T.out, u.pv_e2e.probabilistic,
              p.output));
    return u;
  };

  // The case's inputs and the GPU's outputs as an engine trace point, for attnscope trace check.
  auto record_trace = [&](trace::RecordedOutputs o, std::map<std::string, std::string> meta) {
    if (trace_dir.empty()) return;
    o.out_format = std::string(to_string(p.output));
    meta["engine"] = c.impl;
    meta["step"] = "0";
    const std::string path = trace_dir + "/" + c.name() + ".safetensors";
    trace::write_trace_point(path, in, o, meta);
    j["trace"] = path;
  };

  if (c.path == Path::unfused) {
    const Unfused u = run_unfused(c.family, true);
    const KernelOrder qk_o = gpu::family_stage(c.family, Path::qk)->order(p, ctx);
    const KernelOrder sm_o = gpu::family_stage(c.family, Path::softmax)->order(p, ctx);
    const KernelOrder pv_o = gpu::family_stage(c.family, Path::pv)->order(p, ctx);
    // The scores the trace holds are after the scale: the GPU's, scaled here as the softmax
    // kernel scales them (a binary32 multiply by the binary32 scale) if it applied the scale.
    std::vector<double> scores = u.scores;
    if (c.scale_in_softmax)
      for (double& s : scores) s = double(float(s) * float(scale));
    record_trace({&scores, &u.probs, &u.out, &u.lse, ""},
                 {{"dot_order", qk_o.dot.value_or(SummationOrder{}).name()},
                  {"softmax_order", sm_o.values.value_or(SummationOrder{}).name()},
                  {"values_order", pv_o.values.value_or(SummationOrder{}).name()}});
  } else {
    const gpu::Implementation& impl = gpu::implementation(c.impl);
    const KernelOrder order = impl.order(p, ctx);
    j["order"] = order.describe();
    j["splits"] = order.splits;
    j["requested_splits"] = c.splits;
    note_order(impl, order);
    // Online softmax: every accumulation step may round twice (rescale, then add). An fp8
    // cache's scales add the roundings the implementation declares.
    const std::int64_t values_depth = budget_depth(2 * depth_of(order.values, p.window), order);
    const bounds::StageFormats f_qk{p.accum, budget_depth(depth_of(order.dot, p.head_dim), order),
                                    DType::fp32, lambda, order.q_binary16_scaled};
    const bounds::StageFormats f_sm{p.accum, values_depth, DType::fp32, lambda};
    const bounds::StageFormats f_pv{p.accum, values_depth, p.output, lambda};
    dp.poison_outputs();
    dp.run(impl, false, c.splits);
    const std::vector<double> out = dp.out(), lse = dp.lse();
    const std::size_t first_check = res.checks.size();
    const bounds::ElementBounds b = bounds::attention_bounds(in, f_qk, f_sm, f_pv);
    add(judge(p, "attn_out", "attn_out_", TensorShape::out, out, T.out, b.probabilistic, p.output));
    // Determinism: a second run on the same inputs (outputs poisoned again) must give the same
    // values element by element: a zero budget against the first run.
    dp.poison_outputs();
    dp.run(impl, false, c.splits);
    const std::vector<double> zero_out(out.size(), 0.0), zero_lse(lse.size(), 0.0);
    add(judge(p, "attn_out, second run against the first", "repeat_attn_out_", TensorShape::out,
              dp.out(), out, zero_out, p.output));
    if (impl.writes_lse)
      add(judge(p, "lse, second run against the first", "repeat_lse_", TensorShape::rows, dp.lse(),
                lse, zero_lse, DType::fp32));
    if (impl.writes_lse) {
      const bounds::ElementBounds qk_b = bounds::qk_bounds(in, f_qk, true);
      add(judge(p, "lse", "lse_", TensorShape::rows, lse, T.lse,
                bounds::lse_bounds(in, T.lse, T.probs, qk_b.probabilistic, 1.0, f_sm),
                DType::fp32));
    }

    // Fused against unfused on the same inputs: the implementation's own family's unfused
    // path where it has one, else attnscope's.
    const auto families = gpu::unfused_families();
    const bool own = std::find(families.begin(), families.end(), c.family) != families.end();
    const std::string cmp = own ? c.family : std::string("attnscope");
    bool cmp_runs = std::find(families.begin(), families.end(), cmp) != families.end();
    for (Path stage : {Path::qk, Path::softmax, Path::pv})
      cmp_runs = cmp_runs && gpu::family_stage(cmp, stage)->why_unsupported(p, c.layout).empty();
    if (cmp_runs) {
      const Unfused u = run_unfused(cmp, false);
      j["unfused_family"] = cmp;
      add_metrics(j, compare(p.out_elems(), u.out.data(), T.out.data(), p.output),
                  "unfused_attn_out_");
    }

    // The target: every element within 1 ulp of the correctly rounded reference, and rel_l2
    // within 5% of the rounded reference's own.
    std::vector<double> rounded(T.out.size());
    double max_ulp = 0.0;
    for (std::size_t i = 0; i < rounded.size(); ++i) {
      rounded[i] = round_to(p.output, T.out[i]);
      if (std::isnan(out[i]) && std::isnan(rounded[i])) continue;  // a NaN input that arrived
      max_ulp = std::max(max_ulp, ulp_distance(p.output, out[i], rounded[i]));
    }
    const Metrics rm = compare(p.out_elems(), rounded.data(), T.out.data(), p.output);
    j["max_ulp_vs_rounded_reference"] = json_number(max_ulp);
    const SummationOrder vals = order.values.value_or(SummationOrder{});
    // model_decode follows row-groups taking tiles of vec positions with one accumulator each.
    const bool modelled = (vals.kind == OrderKind::sequential ||
                           (vals.kind == OrderKind::warp_tree && vals.pack == 1)) &&
                          order.dot.value_or(SummationOrder{}).kind != OrderKind::mma &&
                          !order.truncating;
    if (p.accum == Accum::fp16 && modelled) {
      // The precision model of this kernel's own order (online softmax per row-group, tree merge,
      // split combine) on the same inputs: a check that can fail where the bound cannot.
      // Sequential values are one row-group.
      const int rows = vals.kind == OrderKind::warp_tree ? vals.lanes : 1;
      const std::int64_t split_len = vals.chunk > 0 ? vals.chunk : p.window + p.q_len - 1;
      std::vector<double> pred, pred_lse;
      // An fp8 cache is modelled on the elements as the kernel reads them.
      model::model_decode(p.kv_fp8 ? fp16_read_of_fp8(in) : in, Accum::fp16,
                          order.dot.value_or(SummationOrder{}), rows, split_len, pred, pred_lse,
                          vals.kind == OrderKind::warp_tree ? vals.vec : 1);
      for (double& x : pred) x = round_to(p.output, x);
      add(model_gate(p, "attn_out against the precision model", "attn_out_model_", out, pred,
                     T.out));
    } else if (p.accum == Accum::fp16) {
      j["model_gate"] =
          "not run: the precision model follows sequential orders and warp_tree "
          "orders with one accumulator per row-group (pack 1) only, and no matrix instructions";
    }
    j["rounded_reference_rel_l2"] = rm.rel_l2;
    if (p.kv_fp8 && c.data.nan_in_window) {
      // A NaN in the cache has no rounding to predict: the NaN's reaching the output is checked
      // against the dequantized reference above.
      j["fp8_cost_check"] = "not run: a NaN inside the window";
    } else if (p.kv_fp8) {
      // The second reference: FP64 attention over the values before quantization. The kernel's
      // error against it is what the format costs (with the kernel's own, far smaller), held to
      // the cost model's prediction from the data.
      const ref::Fp8Cost cost = ref::fp8_cost(in);
      Check ch;
      ch.what = "attn_out against FP64 over the unquantized cache (the format's cost)";
      ch.field = "fp8_cost_attn_out_";
      ch.metrics = compare(p.out_elems(), out.data(), cost.exact_out.data(), p.output);
      ch.model_rel_l2 = cost.predicted_rel_l2;
      ch.model_max_abs = -1.0;
      // An allowed rel_l2: the prediction plus kCostSigmas of its spread.
      ch.budget_max = cost.predicted_rel_l2 * (1.0 + kCostSigmas * cost.predicted_relative_sd);
      const double low = cost.predicted_rel_l2 * (1.0 - kCostSigmas * cost.predicted_relative_sd);
      ch.budget_ratio = ch.budget_max > 0.0 ? ch.metrics.rel_l2 / ch.budget_max : 0.0;
      ch.worst = ch.metrics.worst_index;
      ch.worst_where = coordinates(p, TensorShape::out, ch.worst);
      // Far below the prediction fails too: a cache the kernel did not read as quantized.
      ch.pass = ch.metrics.nan_count == 0 && ch.metrics.inf_count == 0 &&
                ch.metrics.nan_lost == 0 && ch.budget_ratio <= 1.0 && ch.metrics.rel_l2 >= low;
      j["fp8_cost_fp64_rel_l2"] = json_number(cost.measured_rel_l2);
      j["fp8_cost_predicted_relative_sd"] = json_number(cost.predicted_relative_sd);
      j["fp8_cost_allowed_low"] = json_number(low);
      add(std::move(ch));
    }
    j["rel_l2_over_rounded"] =
        json_number(rm.rel_l2 > 0 ? res.checks[first_check].metrics.rel_l2 / rm.rel_l2 : 0.0);
    for (std::size_t k = first_check; k < res.checks.size(); ++k)
      if (!res.checks[k].pass && res.first_failing_stage.empty())
        res.first_failing_stage = std::string(to_string(c.path)) + " (" + res.checks[k].what + ")";
    // The online softmax's running sum follows the values' order.
    record_trace({nullptr, nullptr, &out, impl.writes_lse ? &lse : nullptr, ""},
                 {{"dot_order", order.dot.value_or(SummationOrder{}).name()},
                  {"softmax_order", order.values.value_or(SummationOrder{}).name()},
                  {"values_order", order.values.value_or(SummationOrder{}).name()}});
  }

  // fp16 accumulation: a score past binary16's range overflows in any order; a failure says so.
  std::string overflow;
  if (p.accum == Accum::fp16) {
    overflow = fp16_overflow(p, ref::qk<double>(in, false));
    if (!overflow.empty()) {
      j["fp16_overflow"] = overflow;
      if (!res.pass)
        res.first_failing_stage =
            overflow + (res.first_failing_stage.empty()
                            ? ""
                            : "; first stage out of budget: " + res.first_failing_stage);
    }
  }
  if (c.expect_fp16_overflow) {
    // No budget can hold past binary16's range: the case passes when the overflow is named.
    j["expect_fp16_overflow"] = true;
    j["within_budget"] = res.pass;
    res.pass = !overflow.empty();
    res.first_failing_stage =
        res.pass ? "" : "fp16 accumulation past binary16's range, not reported as overflow";
  }
  j["first_failing_stage"] = res.first_failing_stage.empty()
                                 ? nlohmann::json(nullptr)
                                 : nlohmann::json(res.first_failing_stage);
  j["pass"] = res.pass;
  j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace attnscope::accuracy
