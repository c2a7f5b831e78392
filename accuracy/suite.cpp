// accuracy_main: the accuracy cases of whatever is registered, as GoogleTest tests named after
// their case, so a failure names the implementation, the case and the stage.
#include "attnscope/accuracy/suite.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "attnscope/core/records.hpp"
#include "attnscope/kernels/registry.hpp"
#include "attnscope/kernels/runtime.hpp"
#include "cases.hpp"
#include "evaluate.hpp"

#ifndef ATTNSCOPE_GIT_COMMIT
#define ATTNSCOPE_GIT_COMMIT "unknown"
#endif

namespace attnscope {
namespace accuracy {
namespace {

struct Options {
  CaseSelection selection;
  std::string jsonl = "accuracy.jsonl";
  std::string trace_dir;
};

struct Environment {
  bool gpu = false;
  std::string reason;
  gpu::DeviceInfo device;
  std::string jsonl;
  std::string trace_dir;
  std::unique_ptr<JsonlWriter> writer;
  std::string error;  // set-up failed: every case fails with this
};

Environment& environment() {
  static Environment env;
  return env;
}

// The GPU is looked for when the first case runs, not while tests are listed.
Environment& ready_environment() {
  static bool done = false;
  Environment& e = environment();
  if (!done) {
    done = true;
    e.gpu = gpu::gpu_available(&e.reason);
    if (e.gpu) {
      try {
        e.device = gpu::device_info();
        // One run, one file: records of an earlier run are replaced, never appended to.
        e.writer = std::make_unique<JsonlWriter>(e.jsonl, false);
        if (!e.trace_dir.empty()) std::filesystem::create_directories(e.trace_dir);
      } catch (const std::exception& x) {
        e.error = x.what();
      }
    }
  }
  return e;
}

class AccuracyTest : public ::testing::Test {
 public:
  explicit AccuracyTest(AccuracyCase c) : c_(std::move(c)) {}

  void TestBody() override {
    Environment& env = ready_environment();
    if (!env.gpu) GTEST_SKIP() << "GPU accuracy case not run: " << env.reason;
    if (!env.error.empty()) FAIL() << "accuracy suite set-up failed: " << env.error;
    // A checkout without git history (e.g. a copied tree) can name its commit at run time.
    const char* commit = std::getenv("ATTNSCOPE_COMMIT");
    const std::string context = c_.name() + " (implementation " + c_.impl + ", path " +
                                std::string(to_string(c_.path)) + ") on " + env.device.name;
    CaseResult r;
    try {
      r = run_case(c_, env.device, commit ? commit : ATTNSCOPE_GIT_COMMIT, env.trace_dir);
    } catch (const std::exception& e) {
      FAIL() << context << ": the case could not run: " << e.what();
    }
    env.writer->write(r.record);
    EXPECT_TRUE(r.pass) << context << ": "
                        << (r.first_failing_stage.empty()
                                ? std::string("outside its budget")
                                : "first stage to leave its budget: " + r.first_failing_stage)
                        << "\n"
                        << r.report();
  }

 private:
  AccuracyCase c_;
};

// The fp8 conversions the decode kernels use, on the GPU, for every code of every format.
TEST(GpuPlatform, Fp8ConversionsAreExactForEveryCode) {
  Environment& env = ready_environment();
  if (!env.gpu) GTEST_SKIP() << "GPU test not run: " << env.reason;
  std::string what;
  ASSERT_NO_THROW(what = gpu::check_fp8_conversions());
  EXPECT_NE(what.find("(3072 conversions)"), std::string::npos) << what;
}

const char* env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

// Takes attnscope's flags out of argv; throws std::invalid_argument on a bad value or an
// unknown --attnscope_ flag.
Options parse_options(int& argc, char** argv) {
  Options o;
  std::string sweep = env_or("ATTNSCOPE_ACCURACY_SWEEP", "default");
  std::string filter = env_or("ATTNSCOPE_ACCURACY_IMPL", "");
  o.jsonl = env_or("ATTNSCOPE_ACCURACY_JSONL", "accuracy.jsonl");
  o.trace_dir = env_or("ATTNSCOPE_ACCURACY_TRACE_DIR", "");
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* flag) -> const char* {
      const std::size_t n = std::strlen(flag);
      return a.compare(0, n, flag) == 0 ? argv[i] + n : nullptr;
    };
    if (const char* v = value("--attnscope_impl=")) {
      filter = v;
    } else if (const char* v2 = value("--attnscope_sweep=")) {
      sweep = v2;
    } else if (const char* v4 = value("--attnscope_trace_dir=")) {
      o.trace_dir = v4;
      if (o.trace_dir.empty()) throw std::invalid_argument("--attnscope_trace_dir needs a folder");
    } else if (const char* v3 = value("--attnscope_jsonl=")) {
      o.jsonl = v3;
      if (o.jsonl.empty()) throw std::invalid_argument("--attnscope_jsonl needs a path");
    } else if (a.rfind("--attnscope", 0) == 0) {
      throw std::invalid_argument("unknown option '" + a +
                                  "' (attnscope's: --attnscope_impl=, --attnscope_sweep=, "
                                  "--attnscope_jsonl=, --attnscope_trace_dir=)");
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  argv[argc] = nullptr;
  o.selection.sweep = parse_sweep(sweep);
  o.selection.filter = gpu::NameFilter(filter);
  return o;
}

}  // namespace
}  // namespace accuracy

int accuracy_main(int argc, char** argv) {
  using namespace accuracy;
  Options o;
  try {
    o = parse_options(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << argv[0] << ": " << e.what() << "\n";
    return 2;
  }
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1) {
    std::cerr << argv[0] << ": unknown argument '" << argv[1] << "'\n";
    return 2;
  }
  environment().jsonl = o.jsonl;
  environment().trace_dir = o.trace_dir;

  std::vector<LeftOut> left_out;
  const std::vector<AccuracyCase> cases = make_cases(o.selection, &left_out);
  if (cases.empty() && !o.selection.filter.empty()) {
    std::string known;
    for (const gpu::Implementation* i : gpu::implementations()) known += " " + i->name;
    for (const std::string& f : gpu::unfused_families()) known += " " + gpu::unfused_name(f);
    std::cerr << argv[0]
              << ": no accuracy case matches the implementation filter (registered:" << known
              << ")\n";
    return 2;
  }
  if (!GTEST_FLAG_GET(list_tests)) {
    for (const LeftOut& l : left_out)
      std::cerr << "accuracy: " << l.impl << ": " << l.cases << " case" << (l.cases == 1 ? "" : "s")
                << " left out: " << l.reason << "\n";
  }
  for (const AccuracyCase& c : cases) {
    ::testing::RegisterTest("Accuracy", c.name().c_str(), nullptr, nullptr, __FILE__, __LINE__,
                            [c]() -> ::testing::Test* { return new AccuracyTest(c); });
  }
  return RUN_ALL_TESTS();
}

}  // namespace attnscope
