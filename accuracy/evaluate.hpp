// Runs one accuracy case on the GPU through the registered implementations and judges every
// stage against the high-precision reference with budgets derived from the error bounds.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attnscope/core/metrics.hpp"
#include "attnscope/reference/judge.hpp"
#include "attnscope/kernels/runtime.hpp"
#include "cases.hpp"

namespace attnscope::accuracy {

struct CaseResult {
  std::vector<Check> checks;
  std::string first_failing_stage;  // unfused: the first stage to leave its local budget
  bool pass = true;
  nlohmann::json record;
  std::string report() const;  // the measured errors, budgets and worst elements
};

// The budget of a case is the probabilistic bound (Higham & Mary, lambda = 6) of every element,
// for the summation depth of the kernel's documented order; Inf or NaN where the reference has
// none always fails, as does any element left unwritten (outputs are poisoned with NaN). With
// fp16 accumulation the bound outgrows the output at long windows, so the P.V stage and the
// fused paths are also held to the precision model of the kernel's own order (model_gate).
// With trace_dir, the case's inputs and the GPU's outputs are also written there as an engine
// trace point (<case>.safetensors), which `attnscope trace check` reads.
CaseResult run_case(const AccuracyCase& c, const gpu::DeviceInfo& device, const std::string& commit,
                    const std::string& trace_dir = "");

}  // namespace attnscope::accuracy
