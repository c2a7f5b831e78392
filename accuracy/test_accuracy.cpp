// The accuracy suite: every case of make_cases() against the high-precision reference.
// Without a GPU every case skips with the reason. ATTNSCOPE_ACCURACY_SWEEP=full selects the
// larger sweep; ATTNSCOPE_ACCURACY_JSONL names the JSON Lines file (default accuracy.jsonl).
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "attnscope/core/records.hpp"
#include "attnscope/kernels/registry.hpp"
#include "attnscope/kernels/runtime.hpp"
#include "cases.hpp"
#include "evaluate.hpp"

#ifndef ATTNSCOPE_GIT_COMMIT
#define ATTNSCOPE_GIT_COMMIT "unknown"
#endif

namespace attnscope::accuracy {
namespace {

bool full_sweep() {
  const char* s = std::getenv("ATTNSCOPE_ACCURACY_SWEEP");
  return s != nullptr && std::string(s) == "full";
}

struct Environment {
  bool gpu = false;
  std::string reason;
  gpu::DeviceInfo device;
  std::unique_ptr<JsonlWriter> writer;
};

Environment& environment() {
  static Environment env = [] {
    Environment e;
    e.gpu = gpu::gpu_available(&e.reason);
    if (e.gpu) {
      e.device = gpu::device_info();
      const char* path = std::getenv("ATTNSCOPE_ACCURACY_JSONL");
      e.writer = std::make_unique<JsonlWriter>(path ? path : "accuracy.jsonl");
    }
    return e;
  }();
  return env;
}

class Accuracy : public ::testing::TestWithParam<AccuracyCase> {};

TEST_P(Accuracy, WithinBudget) {
  Environment& env = environment();
  if (!env.gpu) GTEST_SKIP() << "GPU accuracy case not run: " << env.reason;
  const AccuracyCase& c = GetParam();
  for (const gpu::Implementation& impl : gpu::registry()) {
    if (impl.name != c.impl) continue;
    const std::string why = impl.unsupported_reason(c.problem, c.layout.kind);
    if (!why.empty()) GTEST_SKIP() << c.impl << " does not support this case: " << why;
  }
  // A checkout without git history (e.g. a copied tree) can name its commit at run time.
  const char* commit = std::getenv("ATTNSCOPE_COMMIT");
  const CaseResult r = run_case(c, env.device, commit ? commit : ATTNSCOPE_GIT_COMMIT);
  env.writer->write(r.record);
  EXPECT_TRUE(r.pass) << c.name() << " on " << env.device.name << "\n" << r.report();
}

INSTANTIATE_TEST_SUITE_P(Cases, Accuracy, ::testing::ValuesIn(make_cases(full_sweep())),
                         [](const ::testing::TestParamInfo<AccuracyCase>& param) {
                           return param.param.name();
                         });

}  // namespace
}  // namespace attnscope::accuracy
