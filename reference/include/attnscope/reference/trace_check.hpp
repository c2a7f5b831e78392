// Checks an engine's recorded attention step (a trace point, attnscope/core/trace.hpp) stage by
// stage against the high-precision reference on the engine's own inputs to each stage, with
// budgets from the error bounds at the declared accumulation, and names the first stage outside
// its budget. When a stage fails, alternative semantics are tried on the same tensors and each
// one that explains the engine's numbers within budget is reported (the diagnosis).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attnscope/core/inputs.hpp"
#include "attnscope/core/trace.hpp"
#include "attnscope/reference/bounds.hpp"
#include "attnscope/reference/judge.hpp"

namespace attnscope::trace {

struct CheckOptions {
  bool quad = false;     // binary128 reference instead of FP64 (slow at long windows)
  bool diagnose = true;  // try the alternative semantics when a stage fails
  double lambda = bounds::kDefaultLambda;
};

// The stages in the order they run; a trace holds any subset of their outputs.
//   qk        scores           against the reference scores
//   softmax   probs            against softmax of the engine's scores (the reference's if none)
//   pv        out              against P.V of the engine's probs (only when probs are recorded)
//   attn_out  out              against the reference attention, end to end
//   lse       lse              against the reference log-sum-exp
struct PointReport {
  std::string path;
  std::map<std::string, std::string> metadata;
  Problem problem;
  KvLayoutSpec layout;
  std::vector<Check> checks;           // in stage order, the recorded ones
  std::string first_failing_stage;     // empty when every stage is within its budget
  std::vector<std::string> diagnosis;  // hypotheses that explain the failing stage
  bool pass = true;
  double worst_ratio = 0.0;  // largest error/budget over the checks
  nlohmann::json record;     // one JSONL record
  double seconds = 0.0;
};

// The names diagnosis reports: kv_layer:<L>, gqa_interleaved, window_shift:<k>, scale:<x>,
// no_max_shift, block_table_ignored, stale_positions; "no hypothesis matches" when none does.
inline constexpr const char* kNoHypothesis = "no hypothesis matches";

// The problem and inputs the trace describes. Moves the cache bytes out of `trace`. Throws
// TraceError naming the file and the tensor or metadata that is missing or inconsistent.
AttentionInputs inputs_of(TraceFile& trace);

PointReport check_trace(TraceFile trace, const CheckOptions& options = {});

// A table of the point's checks, the first failing stage and the diagnosis.
std::string format_point(const PointReport& r);
// One line per point, the worst error/budget first.
std::string format_summary(const std::vector<PointReport>& reports);

}  // namespace attnscope::trace
