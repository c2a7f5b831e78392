#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>

#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"attnscope: microbenchmarks and accuracy checks of attention stages on GPUs"};
  app.require_subcommand(1);

  attnscope::cli::SelfcheckOptions self;
  CLI::App* selfcheck = app.add_subcommand(
      "selfcheck", "Report the GPU platform, run the self-check kernel, and check the reference");
  selfcheck->add_option("--json", self.json_path, "Also write the results as one JSON record");
  selfcheck->add_flag("--require-gpu", self.require_gpu, "Fail when no GPU can be used");

  CLI::App* gpu_name = app.add_subcommand(
      "gpu-name", "Print the GPU model as a folder name (results/<gpu-model>/); fail without a GPU");

  CLI11_PARSE(app, argc, argv);
  try {
    if (selfcheck->parsed()) return attnscope::cli::run_selfcheck(self);
    if (gpu_name->parsed()) return attnscope::cli::print_gpu_name();
  } catch (const std::exception& e) {
    std::cerr << "attnscope: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
