// attnscope compare: the rank test, and benchmark and accuracy runs compared.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "attnscope/core/compare.hpp"

using namespace attnscope::diff;

namespace {

std::string temp_file(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

BenchRuns runs(const std::string& name, std::vector<double> ns) {
  BenchRuns r;
  r.order.push_back(name);
  r.ns[name] = std::move(ns);
  return r;
}

}  // namespace

// Exact two-sided p-values of the U test (as scipy.stats.mannwhitneyu computes them).
TEST(MannWhitney, ExactWithoutTies) {
  EXPECT_NEAR(mann_whitney_p({1, 2, 3, 4, 5}, {6, 7, 8, 9, 10}), 2.0 / 252.0, 1e-12);
  EXPECT_NEAR(mann_whitney_p({6, 7, 8, 9, 10}, {1, 2, 3, 4, 5}), 2.0 / 252.0, 1e-12);
  // U = 3 of 9 for n = m = 3: P(U <= 3) = 7 / 20.
  EXPECT_NEAR(mann_whitney_p({1, 3, 5}, {2, 4, 6}), 0.7, 1e-12);
  EXPECT_NEAR(mann_whitney_p({1, 2, 3}, {4, 5, 6}), 0.1, 1e-12);  // the least p at 3 and 3
  EXPECT_DOUBLE_EQ(mann_whitney_p({1, 6}, {2, 3, 4, 5}), 1.0);    // U at its mean
  EXPECT_TRUE(std::isnan(mann_whitney_p({}, {1.0})));
}

TEST(MannWhitney, NormalApproximationWithTies) {
  // Equal samples: no evidence of a difference.
  EXPECT_DOUBLE_EQ(mann_whitney_p({1, 1, 1}, {1, 1, 1}), 1.0);
  const double p = mann_whitney_p({1, 1, 2, 2, 3, 3, 4, 4}, {5, 5, 6, 6, 7, 7, 8, 8});
  EXPECT_GT(p, 0.0);
  EXPECT_LT(p, 0.002);  // fully separated samples of 8 and 8
  EXPECT_DOUBLE_EQ(p, mann_whitney_p({5, 5, 6, 6, 7, 7, 8, 8}, {1, 1, 2, 2, 3, 3, 4, 4}));
}

TEST(CompareBenchmarks, VerdictsFollowTheRatioAndTheTest) {
  Options o;
  const std::string n = "fused/x";
  auto one = [&](std::vector<double> a, std::vector<double> b) {
    return compare_benchmarks(runs(n, a), runs(n, b), o).at(0);
  };
  const BenchDiff slower = one({100, 101, 102, 103, 104}, {110, 111, 112, 113, 114});
  EXPECT_EQ(slower.verdict, "slower");
  EXPECT_NEAR(slower.ratio, 112.0 / 102.0, 1e-12);
  EXPECT_TRUE(is_regression(slower.verdict));
  EXPECT_EQ(one({110, 111, 112, 113, 114}, {100, 101, 102, 103, 104}).verdict, "faster");
  // Significant but within the 5% threshold.
  EXPECT_EQ(one({100, 101, 102, 103, 104}, {105, 105.5, 106, 106.5, 107}).verdict, "same");
  // 10% slower but three repetitions a side can never reach p < 0.05.
  EXPECT_EQ(one({100, 101, 102}, {110, 111, 112}).verdict, "ambiguous");
  // Overlapping samples: not significant, so the same.
  EXPECT_EQ(one({100, 120, 101, 119, 100}, {121, 100, 118, 102, 120}).verdict, "same");

  BenchRuns with_error = runs(n, {});
  with_error.ns.clear();
  with_error.errors[n] = "12 outputs not written";
  EXPECT_EQ(compare_benchmarks(runs(n, {1, 2, 3}), with_error, o).at(0).verdict, "error");
  EXPECT_EQ(compare_benchmarks(with_error, runs(n, {1, 2, 3}), o).at(0).verdict, "was_error");
  const auto only = compare_benchmarks(runs("a", {1}), runs("b", {1}), o);
  ASSERT_EQ(only.size(), 2u);
  EXPECT_EQ(only[0].verdict, "only_old");
  EXPECT_EQ(only[1].verdict, "only_new");
  o.filter = "^b$";
  EXPECT_EQ(compare_benchmarks(runs("a", {1}), runs("b", {1}), o).size(), 1u);
}

TEST(CompareBenchmarks, ReadsGoogleBenchmarkJson) {
  const std::string path = temp_file("bench.json", R"J({"context": {}, "benchmarks": [
    {"name": "x/manual_time", "run_name": "x/manual_time", "run_type": "iteration", "real_time": 2.0, "time_unit": "us"},
    {"name": "x/manual_time", "run_name": "x/manual_time", "run_type": "iteration", "real_time": 3.0, "time_unit": "us"},
    {"name": "x/manual_time_median", "run_name": "x/manual_time", "run_type": "aggregate", "aggregate_name": "median", "real_time": 2.5, "time_unit": "us"},
    {"name": "y", "run_name": "y", "run_type": "aggregate", "aggregate_name": "median", "real_time": 4.0, "time_unit": "ms"},
    {"name": "z", "run_name": "z", "error_occurred": true, "error_message": "hung"}]})J");
  const BenchRuns r = read_benchmark_json(path);
  ASSERT_EQ(r.order.size(), 3u);
  EXPECT_EQ(r.ns.at("x/manual_time"), (std::vector<double>{2000.0, 3000.0}));
  EXPECT_EQ(r.ns.at("y"), (std::vector<double>{4e6}));  // aggregates only: the median
  EXPECT_EQ(r.errors.at("z"), "hung");
  EXPECT_THROW(read_benchmark_json(temp_file("bad.json", "{\"x\": 1}")), std::runtime_error);
  EXPECT_THROW(read_benchmark_json(temp_file("bad2.json", "not json")), std::runtime_error);
  EXPECT_THROW(read_benchmark_json(::testing::TempDir() + "missing.json"), std::runtime_error);
}

TEST(CompareAccuracy, CasesByImplementationAndName) {
  const std::string a = temp_file(
      "a.jsonl",
      R"J({"implementation": "i", "case": "c1", "pass": true, "attn_out_rel_l2": 1e-4, "attn_out_budget_ratio": 0.2, "lse_budget_ratio": 0.1})J"
      "\n"
      R"J({"implementation": "i", "case": "c2", "pass": true, "attn_out_rel_l2": 1e-4, "attn_out_budget_ratio": 0.2})J"
      "\n"
      R"J({"implementation": "i", "case": "c3", "pass": true, "attn_out_rel_l2": 1e-4, "attn_out_budget_ratio": 0.2})J"
      "\n");
  const std::string b = temp_file(
      "b.jsonl",
      R"J({"implementation": "i", "case": "c1", "pass": true, "attn_out_rel_l2": 1e-4, "attn_out_budget_ratio": 0.21, "lse_budget_ratio": 0.1})J"
      "\n"
      R"J({"implementation": "i", "case": "c2", "pass": false, "attn_out_rel_l2": "nan", "attn_out_budget_ratio": "nan", "first_failing_stage": "fused (attn_out)"})J"
      "\n"
      R"J({"implementation": "i", "case": "c3", "pass": true, "attn_out_rel_l2": 2e-4, "attn_out_budget_ratio": 0.5})J"
      "\n");
  const AccuracyRuns ra = read_accuracy_jsonl(a), rb = read_accuracy_jsonl(b);
  EXPECT_DOUBLE_EQ(ra.cases.at("i c1").budget_ratio, 0.2);  // the largest of the checks
  EXPECT_TRUE(std::isnan(rb.cases.at("i c2").budget_ratio));
  const auto d = compare_accuracy(ra, rb, Options{});
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].verdict, "same");
  EXPECT_EQ(d[1].verdict, "now_failing");
  EXPECT_EQ(d[1].new_case.first_failing_stage, "fused (attn_out)");
  EXPECT_EQ(d[2].verdict, "worse");  // rel_l2 doubled
  EXPECT_EQ(compare_accuracy(rb, ra, Options{})[2].verdict, "better");
  // The same error against a tighter budget: reported, a regression only near the budget.
  AccuracyRuns tight = ra, near = ra;
  tight.cases["i c1"].budget_ratio = 0.4;
  near.cases["i c1"].budget_ratio = 0.6;
  EXPECT_EQ(compare_accuracy(ra, tight, Options{})[0].verdict, "closer_to_budget");
  EXPECT_FALSE(is_regression("closer_to_budget"));
  EXPECT_EQ(compare_accuracy(ra, near, Options{})[0].verdict, "worse");
  // A file appended across runs holds a case twice.
  EXPECT_THROW(read_accuracy_jsonl(
                   temp_file("dup.jsonl", std::string(R"J({"case": "c", "pass": true})J") + "\n" +
                                              R"J({"case": "c", "pass": true})J" + "\n")),
               std::runtime_error);
  EXPECT_THROW(read_accuracy_jsonl(temp_file("notrec.jsonl", "{\"x\": 1}\n")), std::runtime_error);
}
