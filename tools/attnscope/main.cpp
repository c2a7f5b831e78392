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

  attnscope::cli::TraceCheckOptions trace_opt;
  CLI::App* trace_cmd = app.add_subcommand("trace", "Engine traces: recorded attention tensors");
  trace_cmd->require_subcommand(1);
  CLI::App* trace_check = trace_cmd->add_subcommand(
      "check",
      "Check recorded trace points stage by stage against the reference (no GPU needed). Exit "
      "status 0: every stage within budget; 1: a stage outside it; 2: a trace unreadable or "
      "inconsistent");
  trace_check->add_option("paths", trace_opt.paths,
                          ".safetensors files, directories with meta.json and .npy files, or folders of them")
      ->required();
  trace_check->add_option("--precision", trace_opt.precision, "Reference precision")
      ->check(CLI::IsMember({"fp64", "quad"}));
  trace_check->add_option("--jsonl", trace_opt.jsonl, "Write one JSON record per trace point");
  trace_check->add_flag("--no-diagnosis", trace_opt.no_diagnosis,
                        "Do not try alternative semantics on a failing stage");
  trace_check->add_flag("--quiet", trace_opt.quiet, "Print the summary table only");

  CLI11_PARSE(app, argc, argv);
  try {
    if (selfcheck->parsed()) return attnscope::cli::run_selfcheck(self);
    if (gpu_name->parsed()) return attnscope::cli::print_gpu_name();
    if (trace_check->parsed()) return attnscope::cli::run_trace_check(trace_opt);
  } catch (const std::exception& e) {
    std::cerr << "attnscope: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
