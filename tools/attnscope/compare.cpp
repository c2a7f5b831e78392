// attnscope compare OLD NEW: two benchmark runs (Google Benchmark JSON) or two accuracy runs
// (JSON Lines), benchmark by benchmark or case by case.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "attnscope/core/compare.hpp"
#include "attnscope/core/records.hpp"
#include "commands.hpp"

namespace attnscope::cli {

namespace {

bool is_jsonl(const std::string& path) {
  return path.size() >= 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string time_text(double ns) {
  if (!(ns > 0)) return "-";
  if (ns < 1e3) return fmt("%.1f ns", ns);
  if (ns < 1e6) return fmt("%.2f us", ns / 1e3);
  if (ns < 1e9) return fmt("%.3f ms", ns / 1e6);
  return fmt("%.3f s", ns / 1e9);
}

void summary(const std::map<std::string, int>& counts, std::size_t total, const char* what,
             int regressions, const diff::Options& o) {
  std::cout << "compare: " << total << " " << what << ":";
  bool first = true;
  for (const auto& [v, n] : counts) {
    std::cout << (first ? " " : ", ") << n << " " << v;
    first = false;
  }
  std::cout << "; " << regressions << (regressions == 1 ? " regression" : " regressions")
            << " (threshold " << o.threshold * 100 << "%, alpha " << o.alpha
            << ", accuracy threshold " << o.accuracy_threshold * 100 << "%)\n";
}

}  // namespace

int run_compare(const CompareOptions& opt) {
  diff::Options o;
  o.threshold = opt.threshold;
  o.alpha = opt.alpha;
  o.accuracy_threshold = opt.accuracy_threshold;
  o.filter = opt.filter;
  if (is_jsonl(opt.old_path) != is_jsonl(opt.new_path)) {
    std::cerr << "attnscope compare: " << opt.old_path << " and " << opt.new_path
              << " are not the same kind of file (benchmark .json against accuracy .jsonl)\n";
    return 2;
  }
  if (const std::string why = diff::filter_error(o.filter); !why.empty()) {
    std::cerr << "attnscope compare: --filter: " << why << "\n";
    return 2;
  }
  nlohmann::json records = nlohmann::json::array();
  std::map<std::string, int> counts;
  int regressions = 0;
  try {
    if (is_jsonl(opt.old_path)) {
      const auto diffs = diff::compare_accuracy(diff::read_accuracy_jsonl(opt.old_path),
                                                diff::read_accuracy_jsonl(opt.new_path), o);
      for (const auto& d : diffs) {
        ++counts[d.verdict];
        const bool bad = diff::is_regression(d.verdict);
        regressions += bad;
        if (opt.all || d.verdict != "same")
          std::cout << (bad ? "REGRESSION " : "           ") << d.verdict << "  error/budget "
                    << fmt("%.3g", d.old_case.budget_ratio) << " -> "
                    << fmt("%.3g", d.new_case.budget_ratio) << "  rel_l2 "
                    << fmt("%.3g", d.old_case.rel_l2) << " -> " << fmt("%.3g", d.new_case.rel_l2)
                    << (d.new_case.first_failing_stage.empty()
                            ? ""
                            : "  first failing stage: " + d.new_case.first_failing_stage)
                    << "  " << d.key << "\n";
        records.push_back({{"case", d.key},
                           {"verdict", d.verdict},
                           {"regression", bad},
                           {"old_pass", d.old_case.pass},
                           {"new_pass", d.new_case.pass},
                           {"old_budget_ratio", json_number(d.old_case.budget_ratio)},
                           {"new_budget_ratio", json_number(d.new_case.budget_ratio)},
                           {"old_rel_l2", json_number(d.old_case.rel_l2)},
                           {"new_rel_l2", json_number(d.new_case.rel_l2)}});
      }
      summary(counts, diffs.size(), "cases", regressions, o);
    } else {
      const auto diffs = diff::compare_benchmarks(diff::read_benchmark_json(opt.old_path),
                                                  diff::read_benchmark_json(opt.new_path), o);
      for (const auto& d : diffs) {
        ++counts[d.verdict];
        const bool bad = diff::is_regression(d.verdict);
        regressions += bad;
        if (opt.all || d.verdict != "same")
          std::cout << (bad ? "REGRESSION " : "           ") << d.verdict << "  "
                    << fmt("%.3f", d.ratio) << "x  p "
                    << (std::isnan(d.p) ? std::string("-") : fmt("%.3g", d.p)) << "  "
                    << time_text(d.old_ns) << " (" << d.n_old << ") -> " << time_text(d.new_ns)
                    << " (" << d.n_new << ")  " << d.name << "\n";
        records.push_back({{"name", d.name},
                           {"verdict", d.verdict},
                           {"regression", bad},
                           {"old_median_ns", json_number(d.old_ns)},
                           {"new_median_ns", json_number(d.new_ns)},
                           {"old_repetitions", d.n_old},
                           {"new_repetitions", d.n_new},
                           {"ratio", json_number(d.ratio)},
                           {"p", json_number(d.p)}});
      }
      summary(counts, diffs.size(), "benchmarks", regressions, o);
    }
  } catch (const std::exception& e) {
    std::cerr << "attnscope compare: " << e.what() << "\n";
    return 2;
  }
  if (!opt.json.empty()) {
    std::ofstream out(opt.json);
    out << records.dump(1) << "\n";
    out.flush();
    if (!out) {
      std::cerr << "attnscope compare: cannot write " << opt.json << "\n";
      return 2;
    }
  }
  return regressions > 0 ? 1 : 0;
}

}  // namespace attnscope::cli
