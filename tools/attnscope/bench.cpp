// attnscope bench: the benchmark suite (bench_attention) with the common choices as options, its
// console output passed through (and to a log), a progress line on a terminal.
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "commands.hpp"
#include "process.hpp"

namespace attnscope::cli {

namespace {

// The benchmark a console line of Google Benchmark reports on, or "" for other lines: its first
// word, less an aggregate's suffix (_mean, _median, _stddev, _cv).
std::string benchmark_of(const std::string& line) {
  std::string word = line.substr(0, line.find_first_of(" \t"));
  for (const char* suffix : {"_mean", "_median", "_stddev", "_cv"}) {
    const std::string s(suffix);
    if (word.size() > s.size() && word.compare(word.size() - s.size(), s.size(), s) == 0) {
      word.resize(word.size() - s.size());
      break;
    }
  }
  return word;
}

// The bench_attention command line the options make.
std::vector<std::string> bench_args(const BenchOptions& opt) {
  const std::string binary = !opt.binary.empty() ? opt.binary : std::string(ATTNSCOPE_BENCH_BINARY);
  std::vector<std::string> a = {binary, "--attnscope_set=" + opt.set};
  if (!opt.filter.empty()) a.push_back("--benchmark_filter=" + opt.filter);
  if (opt.hot) a.push_back("--attnscope_hot");
  if (!opt.flush.empty()) a.push_back("--attnscope_flush=" + opt.flush);
  if (opt.repetitions > 0)
    a.push_back("--benchmark_repetitions=" + std::to_string(opt.repetitions));
  for (const auto& e : opt.extra) a.push_back(e);
  return a;
}

}  // namespace

int run_bench(const BenchOptions& opt) {
  std::vector<std::string> args = bench_args(opt);
  if (access(args[0].c_str(), X_OK) != 0) {
    std::cerr << "attnscope bench: the benchmark binary " << args[0]
              << " is not there (build the bench_attention target, or give --binary)\n";
    return 2;
  }
  std::ofstream log;
  if (!open_log(log, opt.log, "attnscope bench")) return 2;
  if (!opt.out.empty()) {
    std::ofstream probe(opt.out, std::ios::app);  // fail now, not after the run
    if (!probe) {
      std::cerr << "attnscope bench: cannot write " << opt.out << "\n";
      return 2;
    }
  }

  // The benchmarks the run will take, for the progress line: each listed name is a line of one
  // word.
  std::set<std::string> names;
  {
    std::vector<std::string> list = args;
    list.push_back("--benchmark_list_tests=true");
    std::string listing;  // for the error message
    const int rc = run_lines(list, [&](const std::string& line) {
      listing += line + "\n";
      if (!line.empty() && line.find(' ') == std::string::npos) names.insert(line);
    });
    if (rc != 0) {
      std::cerr << "attnscope bench: listing the benchmarks failed (exit " << rc << "):\n"
                << listing;
      return 2;
    }
  }
  if (names.empty()) {
    std::cerr << "attnscope bench: no benchmark matches"
              << (opt.filter.empty() ? std::string() : " --filter '" + opt.filter + "'") << "\n";
    return 2;
  }

  if (!opt.out.empty()) {
    args.push_back("--benchmark_out=" + opt.out);
    args.push_back("--benchmark_out_format=json");
  }
  std::set<std::string> done, skipped;
  Progress progress("bench", "benchmarks", names.size(), opt.quiet);
  std::vector<std::string> tail;  // the last lines, shown when the run fails
  const int rc = run_lines(args, [&](const std::string& line) {
    if (log.is_open()) log << line << "\n" << std::flush;
    const std::string b = benchmark_of(line);
    const bool error = line.find("ERROR OCCURRED") != std::string::npos;
    // --quiet keeps the reasons a benchmark did not run.
    if (!opt.quiet || error) {
      if (progress.shown())
        progress.print(line);
      else
        std::cout << line << "\n" << std::flush;
    }
    tail.push_back(line);
    if (tail.size() > 20) tail.erase(tail.begin());
    if (names.count(b) != 0) {
      done.insert(b);
      if (error) skipped.insert(b);
      progress.update(done.size());
    }
  });
  progress.clear();
  if (rc != 0)
    std::cerr << "attnscope bench: bench_attention ended with exit status " << rc << "\n";
  else
    std::cout << "bench: " << done.size() - skipped.size() << " timed, " << skipped.size()
              << " not run (reasons above) of " << names.size() << " benchmarks"
              << (opt.out.empty() ? std::string() : "; results in " + opt.out) << "\n";
  return rc == 0 ? 0 : 2;
}

}  // namespace attnscope::cli
