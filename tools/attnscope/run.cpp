// attnscope run: the main job. The self-check; where a GPU is present, the accuracy gate, the
// benchmarks, the PyTorch peers on the same shapes (where PyTorch with a GPU is installed), the
// benchmark report and the plots, all into one results folder.
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "attnscope/kernels/runtime.hpp"
#include "commands.hpp"
#include "process.hpp"

namespace attnscope::cli {

namespace {

namespace fs = std::filesystem;

// A script of the source tree this binary was built from.
std::string source_file(const std::string& relative) {
  return std::string(ATTNSCOPE_SOURCE_DIR) + "/" + relative;
}

void step(const std::string& what) {
  std::cout << "\nrun: " << what << "\n" << std::flush;
}

}  // namespace

int run_main_job(const RunOptions& opt) {
  step("self-check");
  SelfcheckOptions self;
  std::string why;
  if (!gpu::gpu_available(&why)) {
    const int rc = run_selfcheck(self);
    std::cout << "run: no GPU available (" << why
              << "); the self-check above is the whole job on this machine\n";
    return rc;
  }
  for (const char* script :
       {"tools/summarize_accuracy.py", "tools/bench_report.py", "bench/peers/torch_sdpa.py"})
    if (access(source_file(script).c_str(), R_OK) != 0) {
      std::cerr << "attnscope run: " << source_file(script)
                << " is missing: run needs the source tree attnscope was built from\n";
      return 2;
    }
  const std::string out =
      fs::absolute(!opt.out.empty() ? fs::path(opt.out)
                                    : fs::path("results") / folder_name(gpu::device_info().name))
          .lexically_normal()
          .string();
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) {
    std::cerr << "attnscope run: cannot create " << out << ": " << ec.message() << "\n";
    return 2;
  }
  self.json_path = out + "/selfcheck.json";
  if (const int rc = run_selfcheck(self); rc != 0) {
    std::cerr << "attnscope run: the self-check failed; nothing else runs\n";
    return rc;
  }

  // Outputs of an earlier run in this folder go first: a step that does not complete leaves no
  // stale file behind that looks like its result.
  for (const char* f : {"accuracy.jsonl", "accuracy.xml", "accuracy.log", "accuracy_summary.md",
                        "bench.json", "bench.log", "peers.json", "peers.log", "bench_report.md"})
    fs::remove(fs::path(out) / f, ec);
  step("accuracy gate -> " + out + "/accuracy.jsonl");
  GateOptions gate;
  gate.sweep = opt.sweep;
  gate.jsonl = out + "/accuracy.jsonl";
  gate.junit = out + "/accuracy.xml";
  gate.log = out + "/accuracy.log";
  gate.gpus = opt.gpus;
  gate.quiet = opt.quiet;
  const int gate_rc = run_gate(gate);
  if (gate_rc > 1) {
    std::cerr << "attnscope run: the accuracy gate did not complete (exit " << gate_rc << ")\n";
    return 2;
  }
  if (const int rc =
          wait_for(spawn({opt.python, source_file("tools/summarize_accuracy.py"), gate.jsonl}, {},
                         out + "/accuracy_summary.md"));
      rc != 0)
    std::cerr << "attnscope run: summarize_accuracy.py failed (exit " << rc << "), see " << out
              << "/accuracy_summary.md\n";

  step("benchmarks (" + opt.set + " set) -> " + out + "/bench.json");
  BenchOptions bench;
  bench.set = opt.set;
  bench.repetitions = opt.repetitions;
  bench.flush = opt.flush;
  bench.out = out + "/bench.json";
  bench.log = out + "/bench.log";
  bench.quiet = opt.quiet;
  if (const int rc = run_bench(bench); rc != 0) {
    std::cerr << "attnscope run: the benchmarks did not complete (exit " << rc << ")\n";
    return 2;
  }

  std::vector<std::string> report = {opt.python, source_file("tools/bench_report.py"), bench.out};
  const bool torch =
      !opt.no_peers &&
      wait_for(spawn({opt.python, "-c", "import torch; assert torch.cuda.is_available()"}, {},
                     "/dev/null")) == 0;
  if (torch) {
    step("PyTorch peers on the same shapes -> " + out + "/peers.json");
    std::vector<std::string> peers = {opt.python,      source_file("bench/peers/torch_sdpa.py"),
                                      "--shapes-from", bench.out,
                                      "--out",         out + "/peers.json"};
    if (!opt.flush.empty()) {
      peers.push_back("--flush");
      peers.push_back(opt.flush);
    }
    if (opt.repetitions > 0) {
      peers.push_back("--repetitions");
      peers.push_back(std::to_string(opt.repetitions));
    }
    const int rc = wait_for(spawn(peers, {}, out + "/peers.log"));
    if (rc == 0) {
      report.push_back("--peers");
      report.push_back(out + "/peers.json");
    } else {
      std::cerr << "attnscope run: the peers failed (exit " << rc << "), see " << out
                << "/peers.log\n";
    }
  } else {
    step(opt.no_peers ? "peers left out (--no-peers)"
                      : "PyTorch with a GPU not found: no peers in this run");
  }
  report.insert(report.end(), {"--accuracy", gate.jsonl, "--out", out + "/bench_report.md"});
  step("benchmark report -> " + out + "/bench_report.md");
  if (const int rc = wait_for(spawn(report)); rc != 0)
    std::cerr << "attnscope run: bench_report.py failed (exit " << rc << ")\n";

  step("plots -> " + out);
  ReportOptions plots;
  plots.results = out;
  plots.python = opt.python;
  if (run_report(plots) != 0)
    std::cout << "run: no plots (attnscope report needs python3 with matplotlib)\n";

  std::cout << "\nrun: done; results in " << out << "; accuracy gate "
            << (gate_rc == 0 ? "passed" : "FAILED (see accuracy.log)") << "\n";
  return gate_rc;
}

}  // namespace attnscope::cli
