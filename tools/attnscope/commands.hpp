// Subcommands of the attnscope command line.
#pragma once

#include <string>
#include <vector>

namespace attnscope::cli {

struct SelfcheckOptions {
  std::string json_path;  // empty: no JSON record
  bool require_gpu = false;
};

// Prints the platform, the GPU found (running the self-check kernel) and the reference's
// accuracy; returns the process exit code.
int run_selfcheck(const SelfcheckOptions& opt);

struct TraceCheckOptions {
  std::vector<std::string> paths;  // .safetensors files, trace directories, or folders of them
  std::string precision = "fp64";  // or "quad"
  std::string jsonl;               // empty: no records
  bool no_diagnosis = false;
  bool quiet = false;  // the summary table only
};

// Exit code: 0 every stage of every point within budget, 1 some stage outside, 2 a trace that
// could not be read or is inconsistent.
int run_trace_check(const TraceCheckOptions& opt);

struct CompareOptions {
  std::string old_path, new_path;
  double threshold = 0.05;
  double alpha = 0.05;
  double accuracy_threshold = 0.25;
  std::string filter;
  std::string json;  // empty: no file
  bool all = false;  // print unchanged rows too
};

// Exit code: 0 no regression, 1 a regression, 2 a file that could not be read or compared.
int run_compare(const CompareOptions& opt);

struct Fp8CostOptions {
  std::vector<std::string> formats{"e4m3", "e5m2", "e4m3fnuz"};
  std::vector<std::string> scales{"tensor", "head", "token"};
  std::vector<long> windows{1024, 4096, 32768};
  std::vector<std::string> distributions{"normal", "heavy_tailed"};
  std::string json;  // empty: the table only
  // An implementation run on the GPU on every row's inputs: measured_rel_l2 is its output against
  // FP64 over the unquantized values. Empty: the FP64 references only.
  std::string impl;
};

// Exit code: 0 done, 1 a kernel's output not fully written, 2 usage error, no GPU for --impl, an
// implementation that cannot run the rows, or a file that could not be written.
int run_fp8_cost(const Fp8CostOptions& opt);

struct GateOptions {
  std::string impl;                 // implementation filter (GLOB[,GLOB]); empty: all
  std::vector<std::string> paths;   // qk, softmax, pv, unfused, fused, split_kv; empty: all
  std::vector<std::string> accums;  // fp32, fp16; empty: both
  std::vector<long> windows;        // empty: all
  std::string sweep = "default";    // default, full or tune
  std::string jsonl;                // merged records (replaced); empty: none
  std::string junit;                // merged JUnit XML; empty: none
  std::string gpus = "1";           // GPUs to use: a count or "all"
  int shards = 0;                   // processes, shard i on GPU i mod gpus; 0: one a GPU
  std::string log;                  // a copy of what the gate prints; empty: none
  std::string suite;                // accuracy_suite binary; empty: the build tree's
  bool quiet = false;
};

// Exit code: 0 every case that ran passed, 1 a case failed, 2 usage error or a shard that did
// not complete.
int run_gate(const GateOptions& opt);

struct BenchOptions {
  std::string set = "default";     // quick, default, full or tune
  std::string filter;              // regular expression on benchmark names; empty: all
  bool hot = false;                // keep L2 warm
  std::string flush;               // how a cold run evicts L2: read, write; empty: its default
  int repetitions = 0;             // 0: the suite's default
  std::string out;                 // Google Benchmark JSON; empty: none
  std::string log;                 // a copy of the console output; empty: none
  std::string binary;              // bench_attention; empty: the build tree's
  std::vector<std::string> extra;  // passed on to bench_attention as they are
  bool quiet = false;
};

// Exit code: 0 the suite ran (benchmarks that cannot run on this machine skip, saying why), 2
// usage error, a file that cannot be written, or a run that did not complete.
int run_bench(const BenchOptions& opt);

struct RunOptions {
  std::string out;                // results folder; empty: results/<gpu model>
  std::string sweep = "default";  // accuracy cases
  std::string set = "default";    // benchmark shapes
  int repetitions = 0;            // benchmarks and peers; 0: their defaults
  std::string flush;              // benchmarks and peers: how L2 is evicted; empty: default
  std::string gpus = "1";         // the gate's GPUs
  bool no_peers = false;
  std::string python = "python3";
  bool quiet = false;
};

// Exit code: 0 done and the accuracy gate passed, 1 the gate failed (everything else ran), 2 a
// step that could not run.
int run_main_job(const RunOptions& opt);

struct ReportOptions {
  std::string results;  // a results folder, e.g. results/nvidia-h200
  std::string out;      // empty: the results folder
  std::string python = "python3";
};

// Runs tools/report.py (python3 with matplotlib); its exit code, or 2 when it cannot be started.
int run_report(const ReportOptions& opt);

// Prints e.g. "nvidia-h100-80gb-hbm3"; exit code 1 (and the reason on stderr) without a GPU.
int print_gpu_name();
// The GPU's model name made safe for a folder: lower case, runs of other characters as '-'.
std::string folder_name(const std::string& model);

}  // namespace attnscope::cli
