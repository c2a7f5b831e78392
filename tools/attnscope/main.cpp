#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>

#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"attnscope: microbenchmarks and accuracy checks of attention stages on GPUs"};
  app.require_subcommand(1);
  // A path option given as "" would silently mean "none": refused.
  const CLI::Validator not_empty(
      [](std::string& v) { return v.empty() ? std::string("an empty path") : std::string(); },
      "PATH");

  attnscope::cli::SelfcheckOptions self;
  CLI::App* selfcheck = app.add_subcommand(
      "selfcheck", "Report the GPU platform, run the self-check kernel, and check the reference");
  selfcheck->add_option("--json", self.json_path, "Also write the results as one JSON record")
      ->check(not_empty);
  selfcheck->add_flag("--require-gpu", self.require_gpu, "Fail when no GPU can be used");

  CLI::App* gpu_name = app.add_subcommand(
      "gpu-name",
      "Print the GPU model as a folder name (results/<gpu-model>/); fail without a GPU");

  attnscope::cli::TraceCheckOptions trace_opt;
  CLI::App* trace_cmd = app.add_subcommand("trace", "Engine traces: recorded attention tensors");
  trace_cmd->require_subcommand(1);
  CLI::App* trace_check = trace_cmd->add_subcommand(
      "check",
      "Check recorded trace points stage by stage against the reference (no GPU needed). Exit "
      "status 0: every stage within budget; 1: a stage outside it; 2: a trace unreadable or "
      "inconsistent");
  trace_check
      ->add_option(
          "paths", trace_opt.paths,
          ".safetensors files, directories with meta.json and .npy files, or folders of them")
      ->required();
  trace_check->add_option("--precision", trace_opt.precision, "Reference precision")
      ->check(CLI::IsMember({"fp64", "quad"}));
  trace_check->add_option("--jsonl", trace_opt.jsonl, "Write one JSON record per trace point")
      ->check(not_empty);
  trace_check->add_flag("--no-diagnosis", trace_opt.no_diagnosis,
                        "Do not try alternative semantics on a failing stage");
  trace_check->add_flag("--quiet", trace_opt.quiet, "Print the summary table only");

  attnscope::cli::CompareOptions cmp;
  CLI::App* compare = app.add_subcommand(
      "compare",
      "Compare two runs: two benchmark files (Google Benchmark JSON, attnscope's or the peers'), "
      "benchmark by benchmark (median ratio, Mann-Whitney U test over the repetitions), or two "
      "accuracy files (.jsonl), case by case. Exit status 0: no regression; 1: a benchmark slower "
      "beyond the threshold and significant, a benchmark that errs, a case that now fails or "
      "whose error/budget grew beyond the accuracy threshold; 2: a file unreadable");
  compare->add_option("old", cmp.old_path, "The reference run")
      ->required()
      ->check(CLI::ExistingFile);
  compare->add_option("new", cmp.new_path, "The run to judge")
      ->required()
      ->check(CLI::ExistingFile);
  compare->add_option("--threshold", cmp.threshold, "Relative change of the median that counts")
      ->check(CLI::Range(0.0, 10.0))
      ->capture_default_str();
  compare->add_option("--alpha", cmp.alpha, "Significance level of the rank test")
      ->check(CLI::Range(1e-9, 0.5))
      ->capture_default_str();
  compare
      ->add_option("--accuracy-threshold", cmp.accuracy_threshold,
                   "Relative growth of a case's largest error/budget that counts")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  compare->add_option("--filter", cmp.filter, "Regular expression on benchmark names or cases");
  compare->add_option("--json", cmp.json, "Also write every comparison as JSON")->check(not_empty);
  compare->add_flag("--all", cmp.all, "Print unchanged benchmarks and cases too");

  attnscope::cli::GateOptions gate_opt;
  CLI::App* gate = app.add_subcommand(
      "gate",
      "Run the accuracy suite as a gate: every case against its budget, records merged in case "
      "order. Exit status 0: every case that ran passed; 1: a case failed; 2: usage error or a "
      "shard that did not complete");
  gate->add_option("--impl", gate_opt.impl, "Implementations, GLOB[,GLOB] (e.g. 'myengine.*')");
  gate->add_option("--path", gate_opt.paths, "Paths (repeatable)")
      ->check(CLI::IsMember({"qk", "softmax", "pv", "unfused", "fused", "split_kv"}));
  gate->add_option("--accum", gate_opt.accums, "Accumulations (repeatable)")
      ->check(CLI::IsMember({"fp32", "fp16"}));
  gate->add_option("--window", gate_opt.windows, "Windows (repeatable)")
      ->check(CLI::PositiveNumber);
  gate->add_option("--sweep", gate_opt.sweep, "Case set")
      ->check(CLI::IsMember({"default", "full", "tune"}))
      ->capture_default_str();
  gate->add_option("--jsonl", gate_opt.jsonl,
                   "Write the records (JSON Lines) here, replacing the file")
      ->check(not_empty);
  gate->add_option("--junit", gate_opt.junit, "Write a JUnit XML report here")->check(not_empty);
  gate->add_option("--gpus", gate_opt.gpus,
                   "Shard the cases over this many GPUs (one process each), or 'all'")
      ->capture_default_str();
  gate->add_option(
          "--shards", gate_opt.shards,
          "Processes to shard the cases over, shard i on GPU i mod --gpus (default: one a GPU); "
          "two shards on one GPU give the same records as one run")
      ->check(CLI::PositiveNumber);
  gate->add_option("--log", gate_opt.log, "Also write what the gate prints here")->check(not_empty);
  gate->add_option("--suite", gate_opt.suite, "The accuracy_suite binary (default: this build's)")
      ->check(not_empty);
  gate->add_flag("--quiet", gate_opt.quiet, "Print the closing line and failures only");

  attnscope::cli::BenchOptions bench_opt;
  CLI::App* bench = app.add_subcommand(
      "bench",
      "Run the benchmark suite (bench_attention): every registered implementation on the shapes of "
      "a set, GPU time from device events, cold L2 unless --hot. Exit status 0: the suite ran "
      "(benchmarks this machine cannot run skip, saying why); 2: usage error or a run that did not "
      "complete. Arguments after -- go to bench_attention (Google Benchmark's flags and "
      "--attnscope_* ones)");
  bench->add_option("--set", bench_opt.set, "Shapes: quick, default, full, or tune (split counts)")
      ->check(CLI::IsMember({"quick", "default", "full", "tune"}))
      ->capture_default_str();
  bench->add_option("--filter", bench_opt.filter,
                    "Regular expression on benchmark names (a leading - excludes)");
  CLI::Option* bench_hot = bench->add_flag(
      "--hot", bench_opt.hot, "Keep L2 warm between iterations (default: flushed before each)");
  bench
      ->add_option("--flush", bench_opt.flush,
                   "How L2 is flushed: read (a buffer twice its size read, L2 left clean; the "
                   "default) or write (overwritten, as a memset flush does: the dirty lines' "
                   "write-back falls in the timed region). Default: ATTNSCOPE_BENCH_FLUSH, else "
                   "read")
      ->check(CLI::IsMember({"read", "write"}))
      ->excludes(bench_hot);
  bench
      ->add_option("--repetitions", bench_opt.repetitions,
                   "Repetitions of each benchmark (default 10)")
      ->check(CLI::PositiveNumber);
  bench->add_option("--out", bench_opt.out, "Write the results as Google Benchmark JSON here")
      ->check(not_empty);
  bench->add_option("--log", bench_opt.log, "Also write the console output here")->check(not_empty);
  bench
      ->add_option("--binary", bench_opt.binary,
                   "The bench_attention binary (default: this build's)")
      ->check(not_empty);
  bench->add_flag("--quiet", bench_opt.quiet, "Print nothing but errors and the closing line");
  bench->add_option("extra", bench_opt.extra, "Arguments for bench_attention, after --");

  attnscope::cli::RunOptions run_opt;
  CLI::App* run = app.add_subcommand(
      "run",
      "The main job: the self-check, then where a GPU is present the accuracy gate, the "
      "benchmarks, "
      "the PyTorch peers on the same shapes (where PyTorch with a GPU is installed), the benchmark "
      "report and the plots, into results/<gpu model>/. Exit status 0: done, gate passed; 1: the "
      "gate failed (the rest ran); 2: a step could not run");
  run->add_option("--out", run_opt.out, "Results folder (default: results/<gpu model>)")
      ->check(not_empty);
  run->add_option("--sweep", run_opt.sweep, "Accuracy cases")
      ->check(CLI::IsMember({"default", "full", "tune"}))
      ->capture_default_str();
  run->add_option("--set", run_opt.set, "Benchmark shapes")
      ->check(CLI::IsMember({"quick", "default", "full", "tune"}))
      ->capture_default_str();
  run->add_option("--repetitions", run_opt.repetitions,
                  "Repetitions of each benchmark and peer (default 10)")
      ->check(CLI::PositiveNumber);
  run->add_option("--gpus", run_opt.gpus, "GPUs for the accuracy gate: a count or 'all'")
      ->capture_default_str();
  run->add_flag("--no-peers", run_opt.no_peers, "Leave out the PyTorch peers");
  run->add_option("--flush", run_opt.flush,
                  "How the benchmarks and the peers flush L2: read (L2 left clean) or write. "
                  "Default: ATTNSCOPE_BENCH_FLUSH, else read")
      ->check(CLI::IsMember({"read", "write"}));
  run->add_option("--python", run_opt.python, "The Python for the peers, reports and plots")
      ->capture_default_str()
      ->check(not_empty);
  run->add_flag("--quiet", run_opt.quiet, "Less output: no progress lines, no per-case logs");

  attnscope::cli::Fp8CostOptions fp8;
  CLI::App* fp8_cost = app.add_subcommand(
      "fp8-cost",
      "What an fp8 KV cache costs the attention output, per format, scale granularity, window "
      "and data distribution: FP64 attention over the dequantized cache against FP64 attention "
      "over the values before quantization (rel_l2), beside the error predicted from each cache "
      "element's rounding (no GPU needed); with --impl, a kernel's output measured the same way");
  fp8_cost->add_option("--formats", fp8.formats, "fp8 formats")
      ->check(CLI::IsMember({"e4m3", "e4m3fn", "e5m2", "e4m3fnuz"}))
      ->capture_default_str();
  fp8_cost->add_option("--scales", fp8.scales, "Scale granularities")
      ->check(CLI::IsMember({"tensor", "head", "token"}))
      ->capture_default_str();
  fp8_cost->add_option("--windows", fp8.windows, "Windows (keys a query attends)")
      ->check(CLI::Range(1L, 1L << 20))
      ->capture_default_str();
  fp8_cost->add_option("--distributions", fp8.distributions, "Data distributions")
      ->check(CLI::IsMember({"normal", "uniform", "heavy_tailed", "large_logits"}))
      ->capture_default_str();
  fp8_cost->add_option("--json", fp8.json, "Also write the rows as a JSON array")->check(not_empty);
  fp8_cost
      ->add_option("--impl", fp8.impl,
                   "Also run this implementation (attnscope.fused, attnscope.split_kv, or an "
                   "engine's that reads fp8 caches) on the GPU: measured_rel_l2 becomes its "
                   "output's against the unquantized reference")
      ->check(not_empty);

  attnscope::cli::ReportOptions rep;
  CLI::App* report = app.add_subcommand(
      "report",
      "Draw a results folder: accuracy_vs_window.png (error against the window with the bound "
      "and the precision model), bandwidth.png (% of the read and copy peaks beside the peers), "
      "fused_vs_unfused.png, tuning.png, and report.md linking them (python3 and matplotlib)");
  report->add_option("results", rep.results, "A results folder, e.g. results/nvidia-h200")
      ->required()
      ->check(CLI::ExistingDirectory);
  report->add_option("--out", rep.out, "Where the files go (default: the results folder)")
      ->check(not_empty);
  report->add_option("--python", rep.python, "The Python that has matplotlib")
      ->capture_default_str()
      ->check(not_empty);

  // A first word that is neither an option nor a command: name it (CLI11 would say only that
  // a subcommand is required).
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    std::string names;
    for (const CLI::App* sub : app.get_subcommands({})) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::cerr << "attnscope: unknown command '" << argv[1] << "' (commands: " << names << ")\n";
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error (unknown or malformed option, missing
    // argument, a file that does not exist) exits 2, as unreadable input does.
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (selfcheck->parsed()) return attnscope::cli::run_selfcheck(self);
    if (gpu_name->parsed()) return attnscope::cli::print_gpu_name();
    if (trace_check->parsed()) return attnscope::cli::run_trace_check(trace_opt);
    if (compare->parsed()) return attnscope::cli::run_compare(cmp);
    if (report->parsed()) return attnscope::cli::run_report(rep);
    if (gate->parsed()) return attnscope::cli::run_gate(gate_opt);
    if (bench->parsed()) return attnscope::cli::run_bench(bench_opt);
    if (run->parsed()) return attnscope::cli::run_main_job(run_opt);
    if (fp8_cost->parsed()) return attnscope::cli::run_fp8_cost(fp8);
  } catch (const std::exception& e) {
    // A command that could not do its work (not a verdict of 1): exit status 2.
    std::cerr << "attnscope: error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
