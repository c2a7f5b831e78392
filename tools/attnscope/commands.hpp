// Subcommands of the attnscope command line.
#pragma once

#include <string>

namespace attnscope::cli {

struct SelfcheckOptions {
  std::string json_path;  // empty: no JSON record
  bool require_gpu = false;
};

// Prints the platform, the GPU found (running the self-check kernel) and the reference's
// accuracy; returns the process exit code.
int run_selfcheck(const SelfcheckOptions& opt);

}  // namespace attnscope::cli
