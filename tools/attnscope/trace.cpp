// attnscope trace check PATH...: an engine's recorded attention checked stage by stage.
#include <algorithm>
#include <iostream>
#include <memory>

#include "attnscope/core/records.hpp"
#include "attnscope/reference/trace_check.hpp"
#include "commands.hpp"

namespace attnscope::cli {

int run_trace_check(const TraceCheckOptions& opt) {
  std::vector<std::string> points;
  try {
    points = trace::find_traces(opt.paths);
  } catch (const trace::TraceError& e) {
    std::cerr << "attnscope trace check: " << e.what() << "\n";
    return 2;
  }
  std::unique_ptr<JsonlWriter> jsonl;
  if (!opt.jsonl.empty()) {
    try {
      jsonl = std::make_unique<JsonlWriter>(opt.jsonl, false);
    } catch (const std::exception& e) {
      std::cerr << "attnscope trace check: " << e.what() << "\n";
      return 2;
    }
  }
  trace::CheckOptions options;
  options.quad = opt.precision == "quad";
  options.diagnose = !opt.no_diagnosis;
  std::vector<trace::PointReport> reports;
  bool unreadable = false;
  for (const std::string& path : points) {
    try {
      reports.push_back(trace::check_trace(trace::read_trace(path), options));
      if (!opt.quiet) std::cout << trace::format_point(reports.back()) << "\n";
      if (jsonl) jsonl->write(reports.back().record);
    } catch (const trace::TraceError& e) {
      std::cerr << "attnscope trace check: " << e.what() << "\n";
      unreadable = true;
    } catch (const std::exception& e) {
      // Anything else (memory, a failed record write) makes the point unreadable, not failed.
      std::cerr << "attnscope trace check: " << path << ": " << e.what() << "\n";
      unreadable = true;
    }
  }
  bool failed = false;
  for (const trace::PointReport& r : reports) failed = failed || !r.pass;
  if (reports.size() > 1 || opt.quiet) std::cout << trace::format_summary(reports);
  std::cout << points.size() << " trace point" << (points.size() == 1 ? "" : "s") << ": "
            << reports.size() -
                   std::size_t(std::count_if(reports.begin(), reports.end(),
                                             [](const trace::PointReport& r) { return !r.pass; }))
            << " within budget, "
            << std::count_if(reports.begin(), reports.end(),
                             [](const trace::PointReport& r) { return !r.pass; })
            << " outside, " << points.size() - reports.size() << " unreadable\n";
  return unreadable ? 2 : failed ? 1 : 0;
}

}  // namespace attnscope::cli
