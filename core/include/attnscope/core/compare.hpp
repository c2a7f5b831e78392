// Comparing two runs: Google Benchmark JSON files (attnscope's or its peers') by the median time
// of each benchmark with a rank test over the repetitions, and accuracy JSON Lines files case by
// case. Used by `attnscope compare OLD NEW`.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace attnscope::diff {

// Two-sided Mann-Whitney U test: the probability, were both samples drawn from one distribution,
// of a rank sum at least as far from its mean as the one observed. Exact (the distribution of U
// enumerated) when there are no ties and each sample has at most 50 values; otherwise the normal
// approximation with the tie correction of the variance and a continuity correction. NaN when a
// sample is empty.
double mann_whitney_p(const std::vector<double>& a, const std::vector<double>& b);

double median(std::vector<double> v);  // NaN when empty

// One Google Benchmark JSON file: each benchmark's per-repetition real times in nanoseconds, in
// the file's order. Aggregates (mean, median, ...) are ignored where the repetitions are present;
// a file with aggregates only contributes its median as one sample.
struct BenchRuns {
  std::vector<std::string> order;
  std::map<std::string, std::vector<double>> ns;
  std::map<std::string, std::string> errors;  // benchmarks that reported an error
};
// Throws std::runtime_error naming the file when it cannot be read or is not such a file.
BenchRuns read_benchmark_json(const std::string& path);

struct Options {
  double threshold = 0.05;           // relative change that counts (median ratio beyond 1 +- it)
  double alpha = 0.05;               // significance level of the rank test
  double accuracy_threshold = 0.25;  // relative growth of a case's error/budget that counts
  std::string filter;                // POSIX extended regular expression on names; empty: all
};

// faster / slower: significant and beyond the threshold; same: not significant, or within the
// threshold; ambiguous: too few repetitions for the test to reach the significance level at
// all; error: the new run reported an error (was_error: only the old one did); only_old /
// only_new: in one file.
struct BenchDiff {
  std::string name;
  std::size_t n_old = 0, n_new = 0;
  double old_ns = 0, new_ns = 0;  // medians
  double ratio = 0;               // new / old
  double p = 0;                   // of the rank test; NaN when not computed
  std::string verdict;
};
std::vector<BenchDiff> compare_benchmarks(const BenchRuns& old_run, const BenchRuns& new_run,
                                          const Options& opt);

// One accuracy JSON Lines file: records keyed by implementation and case; a case recorded twice
// (a file appended across runs) is an error.
struct AccuracyCase {
  bool pass = false;
  double rel_l2 = 0;        // attn_out (or the stage's output) rel_l2
  double budget_ratio = 0;  // the largest error / budget of any check; inf / nan as recorded
  std::string first_failing_stage;
};
struct AccuracyRuns {
  std::vector<std::string> order;
  std::map<std::string, AccuracyCase> cases;
};
AccuracyRuns read_accuracy_jsonl(const std::string& path);

// now_failing: passed before, fails now; now_passing: the reverse; worse: rel_l2 grew by more
// than accuracy_threshold, or the largest error/budget did and now exceeds 0.5 (within a factor
// of two of failing); closer_to_budget: error/budget grew that much but stays at most 0.5 (a
// changed order can tighten the budget at the same error); better: rel_l2 shrank by more than
// the threshold; same; only_old / only_new.
struct AccuracyDiff {
  std::string key;
  AccuracyCase old_case, new_case;
  std::string verdict;
};
std::vector<AccuracyDiff> compare_accuracy(const AccuracyRuns& old_run, const AccuracyRuns& new_run,
                                           const Options& opt);

// Why `pattern` is not a usable filter (empty when it is); compare_* throw
// std::invalid_argument with the same text.
std::string filter_error(const std::string& pattern);

// True for verdicts that make `attnscope compare` exit with status 1.
bool is_regression(const std::string& verdict);

}  // namespace attnscope::diff
