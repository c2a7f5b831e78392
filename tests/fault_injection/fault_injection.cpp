// Proves the accuracy gate's sensitivity and its specificity on the GPU:
//   fault_injection --mutants --out FILE [--classes a,b | --mutant IMPL] [--max-window W]
//                   [--records FILE]
//     registers a mutant of attnscope's kernels per fault class and path (mutants.hip) and runs
//     each through the default gate (the cases make_cases generates for it, judged by run_case,
//     as accuracy_suite does); writes a JSON list of {class, path, cases_run, cases_failed,
//     caught, ...}. Exit 0 when every mutant was caught.
//   fault_injection --false-alarms N --seed S --out FILE [--records FILE]
//     runs attnscope's correct kernels on N random problems (random_cases) under the default
//     budgets; writes {cases, failed, seed, ...}. Exit 0 when none failed.
// Exit 2 for bad usage or no GPU.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attnscope/core/records.hpp"
#include "attnscope/kernels/registry.hpp"
#include "attnscope/kernels/runtime.hpp"
#include "cases.hpp"
#include "evaluate.hpp"
#include "mutants.hpp"

namespace {

using namespace attnscope;
using accuracy::AccuracyCase;
using accuracy::CaseResult;

struct Options {
  bool mutants = false;
  int false_alarms = 0;
  std::uint64_t seed = 20261130;
  std::string out, records;
  std::set<std::string> classes;
  std::string mutant;           // one mutant by its implementation name
  std::int64_t max_window = 0;  // mutants: only cases up to this window (0: all), for slow tools
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "fault_injection: " << why
            << "\nusage: fault_injection --mutants --out FILE [--classes a,b | --mutant IMPL] "
               "[--max-window W]\n"
               "                       [--records FILE]\n"
               "       fault_injection --false-alarms N [--seed S] --out FILE [--records FILE]\n";
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--mutants")
        o.mutants = true;
      else if (a == "--false-alarms")
        o.false_alarms = std::stoi(value());
      else if (a == "--seed")
        o.seed = std::stoull(value());
      else if (a == "--out")
        o.out = value();
      else if (a == "--records")
        o.records = value();
      else if (a == "--max-window")
        o.max_window = std::stoll(value());
      else if (a == "--mutant")
        o.mutant = value();
      else if (a == "--classes") {
        const std::string v = value();
        std::size_t at = 0;
        while (at <= v.size()) {
          const std::size_t comma = std::min(v.find(',', at), v.size());
          if (comma > at) o.classes.insert(v.substr(at, comma - at));
          at = comma + 1;
        }
      } else
        usage("unknown argument '" + a + "'");
    } catch (const std::logic_error&) {
      usage("bad value for " + a);
    }
  }
  if (o.mutants == (o.false_alarms > 0))
    usage("give one of --mutants and --false-alarms N (N > 0)");
  if (o.out.empty()) usage("--out FILE is required");
  return o;
}

struct Runner {
  gpu::DeviceInfo device;
  std::string commit;
  std::unique_ptr<JsonlWriter> records;

  enum class Verdict { pass, fail, error };
  // Runs a case through the gate. A case that could not run (an exception: a launch that
  // failed) is an error, not a verdict of the gate, and is counted apart.
  Verdict run(const AccuracyCase& c, nlohmann::json& failure) {
    try {
      const CaseResult r = run_case(c, device, commit);
      if (records) records->write(r.record);
      if (!r.pass) {
        failure = {{"case", c.name()}, {"stage", r.first_failing_stage}, {"report", r.report()}};
        return Verdict::fail;
      }
      return Verdict::pass;
    } catch (const std::exception& e) {
      failure = {{"case", c.name()}, {"error", e.what()}};
      return Verdict::error;
    }
  }
};

void write_json(const std::string& path, const nlohmann::json& j) {
  std::ofstream f(path);
  f << j.dump(2) << "\n";
  if (!f) {
    std::cerr << "fault_injection: cannot write " << path << "\n";
    std::exit(2);
  }
}

}  // namespace

int run_main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  std::string reason;
  if (!gpu::gpu_available(&reason)) {
    std::cerr << "fault_injection: no GPU: " << reason << "\n";
    return 2;
  }
  Runner run;
  run.device = gpu::device_info();
  const char* commit = std::getenv("ATTNSCOPE_COMMIT");
  run.commit = commit ? commit : "unknown";
  if (!o.records.empty()) run.records = std::make_unique<JsonlWriter>(o.records, false);
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };

  if (o.mutants) {
    const std::vector<fault_injection::Mutant> mutants = fault_injection::register_mutants();
    std::set<std::string> known_classes, known_impls;
    for (const fault_injection::Mutant& m : mutants) {
      known_classes.insert(m.fault_class);
      known_impls.insert(m.impl);
    }
    for (const std::string& c : o.classes)
      if (!known_classes.count(c)) usage("unknown fault class '" + c + "'");
    if (!o.mutant.empty() && !known_impls.count(o.mutant))
      usage("unknown mutant '" + o.mutant + "'");
    nlohmann::json out = nlohmann::json::array();
    bool all_caught = true;
    for (const fault_injection::Mutant& m : mutants) {
      if (!o.classes.empty() && !o.classes.count(m.fault_class)) continue;
      if (!o.mutant.empty() && m.impl != o.mutant) continue;
      accuracy::CaseSelection sel;
      sel.filter = gpu::NameFilter(m.impl);
      std::vector<AccuracyCase> cases;
      for (AccuracyCase& c : accuracy::make_cases(sel))
        if (o.max_window <= 0 || c.problem.window <= o.max_window) cases.push_back(std::move(c));
      int failed = 0, errored = 0;
      nlohmann::json first = nullptr, first_error = nullptr;
      for (const AccuracyCase& c : cases) {
        nlohmann::json failure;
        switch (run.run(c, failure)) {
          case Runner::Verdict::pass:
            break;
          case Runner::Verdict::fail:
            if (failed++ == 0) first = failure;
            break;
          case Runner::Verdict::error:
            if (errored++ == 0) first_error = failure;
            break;
        }
      }
      const bool caught = failed > 0;
      all_caught = all_caught && caught;
      std::cerr << (caught ? "caught   " : "MISSED   ") << m.fault_class << " ("
                << to_string(m.path) << "): " << failed << " of " << cases.size()
                << " cases failed  [" << seconds() << " s]\n";
      out.push_back({{"class", m.fault_class},
                     {"path", std::string(to_string(m.path))},
                     {"implementation", m.impl},
                     {"fault", m.where},
                     {"cases_run", cases.size()},
                     {"cases_failed", failed},
                     {"cases_errored", errored},
                     {"first_error", first_error},
                     {"caught", caught},
                     {"detector", "accuracy gate"},
                     {"first_failure", first},
                     {"gpu", run.device.name},
                     {"commit", run.commit}});
    }
    write_json(o.out, out);
    return all_caught ? 0 : 1;
  }

  accuracy::CaseSelection sel;
  sel.filter = gpu::NameFilter("attnscope.*");
  const std::vector<AccuracyCase> cases = accuracy::random_cases(sel, o.false_alarms, o.seed);
  nlohmann::json failures = nlohmann::json::array();
  std::map<std::string, int> per_path;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    nlohmann::json failure;
    if (run.run(cases[i], failure) != Runner::Verdict::pass) failures.push_back(failure);
    ++per_path[std::string(to_string(cases[i].path))];
    if ((i + 1) % 100 == 0)
      std::cerr << (i + 1) << " of " << cases.size() << " random cases, " << failures.size()
                << " failed  [" << seconds() << " s]\n";
  }
  write_json(o.out, {{"cases", cases.size()},
                     {"failed", failures.size()},
                     {"seed", o.seed},
                     {"cases_per_path", per_path},
                     {"failures", failures},
                     {"gpu", run.device.name},
                     {"commit", run.commit},
                     {"seconds", seconds()}});
  return failures.empty() ? 0 : 1;
}

int main(int argc, char** argv) {
  try {
    return run_main(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "fault_injection: " << e.what() << "\n";
    return 2;
  }
}
