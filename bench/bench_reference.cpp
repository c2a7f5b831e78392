// Cost of the host references at decode shapes, and the error of the FP64 reference against the
// Quad (binary128) one at long windows, where FP64 accumulation error is largest.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attnscope/reference/stages.hpp"

namespace {

using attnscope::AttentionInputs;
using attnscope::DataSpec;
using attnscope::DType;
using attnscope::KvLayoutKind;
using attnscope::KvLayoutSpec;
using attnscope::Problem;
namespace ref = attnscope::ref;

// Llama-3-8B-like decode step: 32 query heads on 8 KV heads, the whole 128K cache attended.
Problem decode_problem(std::int64_t window, int q_heads, int kv_heads) {
  Problem p;
  p.batch = 1;
  p.q_heads = q_heads;
  p.kv_heads = kv_heads;
  p.q_len = 1;
  p.seq_len = window;
  p.window = window;
  p.head_dim = 128;
  p.input = DType::fp16;
  return p;
}

// Inputs are made once per shape and kept: generating a 128K x 8-head cache takes longer than the
// reference itself, and must stay outside the timed loop.
const AttentionInputs& cached_inputs(const Problem& p) {
  static std::map<std::string, std::unique_ptr<AttentionInputs>> cache;
  std::unique_ptr<AttentionInputs>& slot = cache[p.tag()];
  if (!slot) {
    KvLayoutSpec layout;
    layout.kind = KvLayoutKind::bhsd;
    slot = std::make_unique<AttentionInputs>(attnscope::make_inputs(p, layout, DataSpec{}));
  }
  return *slot;
}

// K and V bytes the reference reads (each attended row once).
double kv_bytes(const Problem& p) {
  return 2.0 * double(p.batch) * p.kv_heads * double(p.window) * p.head_dim *
         double(attnscope::size_of(p.input));
}

void bm_attention_output_fp64(benchmark::State& state, Problem p) {
  const AttentionInputs& in = cached_inputs(p);
  std::vector<double> out, lse;  // [batch, q_len, q_heads, head_dim], [batch, q_heads, q_len]
  for (auto _ : state) {
    ref::attention_output<double>(in, out, lse);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(kv_bytes(p)) * state.iterations());
}

void bm_attention_fp64(benchmark::State& state, Problem p) {
  const AttentionInputs& in = cached_inputs(p);
  for (auto _ : state) {
    ref::Trace<double> trace = ref::attention<double>(in);
    benchmark::DoNotOptimize(trace.out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(kv_bytes(p)) * state.iterations());
}

// Relative errors of x against the Quad values r, taken in Quad so that rounding r to double
// does not blur errors near one FP64 ulp.
struct QuadErrors {
  double rel_l2 = 0.0;
  double max_rel = 0.0;
};

QuadErrors quad_errors(const std::vector<double>& x, const std::vector<ref::Quad>& r) {
  ref::Quad err_sq(0), ref_sq(0), worst(0);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const ref::Quad e = abs(ref::Quad(x[i]) - r[i]);
    err_sq += e * e;
    ref_sq += r[i] * r[i];
    if (r[i] != 0) worst = std::max(worst, ref::Quad(e / abs(r[i])));
  }
  return {static_cast<double>(sqrt(err_sq / ref_sq)), static_cast<double>(worst)};
}

// Times the Quad reference and reports the FP64 reference's error against it as counters.
void bm_fp64_vs_quad(benchmark::State& state, Problem p) {
  const AttentionInputs& in = cached_inputs(p);
  std::vector<ref::Quad> out_q, lse_q;
  for (auto _ : state) {
    ref::attention_output<ref::Quad>(in, out_q, lse_q);
    benchmark::DoNotOptimize(out_q.data());
  }
  std::vector<double> out_d, lse_d;
  ref::attention_output<double>(in, out_d, lse_d);
  const QuadErrors out_err = quad_errors(out_d, out_q);
  const QuadErrors lse_err = quad_errors(lse_d, lse_q);
  state.counters["rel_l2"] = out_err.rel_l2;
  state.counters["max_rel"] = out_err.max_rel;
  state.counters["lse_max_rel"] = lse_err.max_rel;
}

std::string name(const char* what, const Problem& p) {
  return std::string("reference/") + what + "/layout:bhsd/" + p.tag();
}

bool register_benchmarks() {
  const Problem big = decode_problem(131072, 32, 8);
  benchmark::RegisterBenchmark(name("attention_output/real:fp64", big).c_str(),
                               bm_attention_output_fp64, big)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond)
      ->MinTime(2.0);
  benchmark::RegisterBenchmark(name("attention/real:fp64", big).c_str(), bm_attention_fp64, big)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond)
      ->MinTime(2.0);
  // One head keeps the Quad reference (software binary128) to seconds.
  for (const std::int64_t window : {32768, 131072}) {
    const Problem one = decode_problem(window, 1, 1);
    benchmark::RegisterBenchmark(name("fp64_vs_quad/attention_output", one).c_str(),
                                 bm_fp64_vs_quad, one)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(1);
  }
  return true;
}

const bool registered = register_benchmarks();

}  // namespace

BENCHMARK_MAIN();
