// attnscope report DIR: the plots and report.md of a results folder, drawn by tools/report.py.
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "process.hpp"

namespace attnscope::cli {

int run_report(const ReportOptions& opt) {
  // The script of the source tree this binary was built from, else the installed one.
  std::string script;
  for (const char* candidate : {ATTNSCOPE_REPORT_SCRIPT, ATTNSCOPE_INSTALLED_REPORT_SCRIPT})
    if (access(candidate, R_OK) == 0) {
      script = candidate;
      break;
    }
  if (script.empty()) {
    std::cerr << "attnscope report: report.py not found at " << ATTNSCOPE_REPORT_SCRIPT << " or "
              << ATTNSCOPE_INSTALLED_REPORT_SCRIPT << "\n";
    return 2;
  }
  std::vector<std::string> args = {opt.python, script, opt.results};
  if (!opt.out.empty()) {
    args.push_back("--out");
    args.push_back(opt.out);
  }
  const int rc = wait_for(spawn(args));
  return rc == 127 ? 2 : rc;
}

}  // namespace attnscope::cli
