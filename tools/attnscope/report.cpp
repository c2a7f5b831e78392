// attnscope report DIR: the plots and report.md of a results folder, drawn by tools/report.py.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "commands.hpp"

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
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::cout.flush();
  execvp(opt.python.c_str(), argv.data());
  std::cerr << "attnscope report: cannot run " << opt.python << ": " << std::strerror(errno) << "\n";
  return 2;
}

}  // namespace attnscope::cli
