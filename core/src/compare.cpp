#include "attnscope/core/compare.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <regex.h>
#include <set>
#include <sstream>
#include <stdexcept>

namespace attnscope::diff {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// An error/budget ratio past which a case is within a factor of two of failing.
constexpr double kNearBudget = 0.5;

// Ways of arranging n values of one sample and m of the other with U = u, for every u in
// [0, n m]: the coefficients of the Gaussian binomial [n + m choose n].
std::vector<double> u_counts(std::size_t n, std::size_t m) {
  // row[j] holds the counts for (i, j) while i grows: (i, j) = (i - 1, j) shifted by j, plus (i, j
  // - 1).
  std::vector<std::vector<double>> row(m + 1, std::vector<double>{1.0});
  for (std::size_t i = 1; i <= n; ++i) {
    std::vector<std::vector<double>> next(m + 1);
    next[0] = {1.0};
    for (std::size_t j = 1; j <= m; ++j) {
      std::vector<double> c(i * j + 1, 0.0);
      for (std::size_t u = 0; u < row[j].size(); ++u) c[u + j] += row[j][u];
      for (std::size_t u = 0; u < next[j - 1].size(); ++u) c[u] += next[j - 1][u];
      next[j] = std::move(c);
    }
    row = std::move(next);
  }
  return row[m];
}

double to_ns(double t, const std::string& unit) {
  if (unit == "ns") return t;
  if (unit == "us") return t * 1e3;
  if (unit == "ms") return t * 1e6;
  if (unit == "s") return t * 1e9;
  throw std::runtime_error("unknown time_unit \"" + unit + "\"");
}

double number_of(const nlohmann::json& v) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "inf" || s == "+inf" || s == "Infinity")
      return std::numeric_limits<double>::infinity();
    if (s == "-inf" || s == "-Infinity") return -std::numeric_limits<double>::infinity();
    if (s == "nan" || s == "NaN") return kNaN;
  }
  return kNaN;
}

// A POSIX extended regular expression (regex.h: no std::regex, whose instantiations GCC 12
// warns about under -O3 with the sanitizers).
class Matcher {
 public:
  explicit Matcher(const std::string& pattern) : empty_(pattern.empty()) {
    if (empty_) return;
    const int rc = regcomp(&re_, pattern.c_str(), REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
      char buf[256];
      regerror(rc, &re_, buf, sizeof buf);
      throw std::invalid_argument("not a regular expression: '" + pattern + "': " + buf);
    }
  }
  ~Matcher() {
    if (!empty_) regfree(&re_);
  }
  Matcher(const Matcher&) = delete;
  Matcher& operator=(const Matcher&) = delete;
  bool operator()(const std::string& s) const {
    return empty_ || regexec(&re_, s.c_str(), 0, nullptr, 0) == 0;
  }

 private:
  bool empty_;
  regex_t re_{};
};

// The names of the old run in its order, then those only the new run has, in its order: each
// once, and only those the filter keeps.
std::vector<std::string> merged_order(const std::vector<std::string>& old_order,
                                      const std::vector<std::string>& new_order,
                                      const std::string& filter) {
  const Matcher keep(filter);
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto* order : {&old_order, &new_order})
    for (const auto& n : *order)
      if (keep(n) && seen.insert(n).second) out.push_back(n);
  return out;
}

}  // namespace

double median(std::vector<double> v) {
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  const std::size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

double mann_whitney_p(const std::vector<double>& a, const std::vector<double>& b) {
  const std::size_t n = a.size(), m = b.size();
  if (n == 0 || m == 0) return kNaN;
  // Ranks of the pooled sample, ties sharing their mean rank.
  std::vector<std::pair<double, int>> all;
  for (double x : a) all.emplace_back(x, 0);
  for (double x : b) all.emplace_back(x, 1);
  std::sort(all.begin(), all.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  const std::size_t total = n + m;
  double rank_sum_a = 0, tie_term = 0;
  bool ties = false;
  for (std::size_t i = 0; i < total;) {
    std::size_t j = i;
    while (j < total && all[j].first == all[i].first) ++j;
    const double t = double(j - i), mean_rank = 0.5 * double(i + j + 1);  // ranks i+1 .. j
    if (j - i > 1) {
      ties = true;
      tie_term += t * t * t - t;
    }
    for (std::size_t k = i; k < j; ++k)
      if (all[k].second == 0) rank_sum_a += mean_rank;
    i = j;
  }
  const double u = rank_sum_a - double(n) * double(n + 1) / 2.0;  // pairs with a above b
  const double nm = double(n) * double(m), mu = nm / 2.0;
  if (!ties && n <= 50 && m <= 50) {
    const std::vector<double> c = u_counts(n, m);
    double all_ways = 0;
    for (double x : c) all_ways += x;
    const auto lo = static_cast<std::size_t>(std::llround(std::min(u, nm - u)));
    double tail = 0;
    for (std::size_t k = 0; k <= lo; ++k) tail += c[k];
    return std::min(1.0, 2.0 * tail / all_ways);
  }
  const double nt = double(total);
  const double var = nm / 12.0 * ((nt + 1.0) - tie_term / (nt * (nt - 1.0)));
  if (var <= 0) return 1.0;
  const double z = (std::fabs(u - mu) - 0.5) / std::sqrt(var);
  return z <= 0 ? 1.0 : std::min(1.0, std::erfc(z / std::sqrt(2.0)));
}

BenchRuns read_benchmark_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot be read");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": not JSON (" + e.what() + ")");
  }
  if (!j.is_object() || !j.contains("benchmarks") || !j["benchmarks"].is_array())
    throw std::runtime_error(path + ": not a Google Benchmark JSON file (no \"benchmarks\" array)");
  BenchRuns r;
  std::map<std::string, double> median_only;
  for (const auto& b : j["benchmarks"]) {
    if (!b.is_object() || !b.contains("name"))
      throw std::runtime_error(path + ": a benchmark without a name");
    const std::string name = b.value("run_name", b["name"].get<std::string>());
    if (std::find(r.order.begin(), r.order.end(), name) == r.order.end()) r.order.push_back(name);
    if (b.value("error_occurred", false)) {
      r.errors[name] = b.value("error_message", std::string("error"));
      continue;
    }
    if (!b.contains("real_time")) continue;
    const double t = to_ns(number_of(b["real_time"]), b.value("time_unit", std::string("ns")));
    if (b.value("run_type", std::string("iteration")) == "aggregate") {
      if (b.value("aggregate_name", std::string()) == "median") median_only[name] = t;
      continue;
    }
    r.ns[name].push_back(t);
  }
  for (const auto& [name, t] : median_only)
    if (!r.ns.count(name)) r.ns[name].push_back(t);
  return r;
}

std::vector<BenchDiff> compare_benchmarks(const BenchRuns& old_run, const BenchRuns& new_run,
                                          const Options& opt) {
  const std::vector<std::string> names = merged_order(old_run.order, new_run.order, opt.filter);
  std::vector<BenchDiff> out;
  for (const auto& name : names) {
    BenchDiff d;
    d.name = name;
    d.p = kNaN;
    const auto o = old_run.ns.find(name), n = new_run.ns.find(name);
    const bool in_old = o != old_run.ns.end() || old_run.errors.count(name);
    const bool in_new = n != new_run.ns.end() || new_run.errors.count(name);
    if (o != old_run.ns.end()) {
      d.n_old = o->second.size();
      d.old_ns = median(o->second);
    }
    if (n != new_run.ns.end()) {
      d.n_new = n->second.size();
      d.new_ns = median(n->second);
    }
    if (!in_new) {
      d.verdict = "only_old";
    } else if (!in_old) {
      d.verdict = "only_new";
    } else if (new_run.errors.count(name) || d.n_new == 0) {
      d.verdict = "error";
    } else if (old_run.errors.count(name) || d.n_old == 0) {
      d.verdict = "was_error";
    } else {
      d.ratio = d.new_ns / d.old_ns;
      d.p = mann_whitney_p(o->second, n->second);
      // The smallest p-value the exact test can give these sample sizes: 2 / C(n + m, n).
      double least = 2.0;
      for (std::size_t k = 1; k <= d.n_old; ++k) least *= double(k) / double(d.n_new + k);
      const bool significant = d.p < opt.alpha;
      if (significant && d.ratio > 1.0 + opt.threshold)
        d.verdict = "slower";
      else if (significant && d.ratio < 1.0 - opt.threshold)
        d.verdict = "faster";
      else if (!significant && least >= opt.alpha &&
               (d.ratio > 1.0 + opt.threshold || d.ratio < 1.0 - opt.threshold))
        d.verdict = "ambiguous";
      else
        d.verdict = "same";
    }
    out.push_back(d);
  }
  return out;
}

AccuracyRuns read_accuracy_jsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot be read");
  AccuracyRuns r;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
      throw std::runtime_error(path + ":" + std::to_string(lineno) + ": not JSON (" + e.what() +
                               ")");
    }
    if (!j.is_object() || !j.contains("case") || !j.contains("pass"))
      throw std::runtime_error(path + ":" + std::to_string(lineno) +
                               ": not an accuracy record (no \"case\" or \"pass\")");
    const std::string key =
        j.value("implementation", std::string("?")) + " " + j["case"].get<std::string>();
    if (r.cases.count(key))
      throw std::runtime_error(path + ":" + std::to_string(lineno) + ": case " + key +
                               " recorded twice (a file appended across runs?)");
    AccuracyCase c;
    c.pass = j["pass"].get<bool>();
    c.rel_l2 = j.contains("attn_out_rel_l2") ? number_of(j["attn_out_rel_l2"]) : kNaN;
    c.budget_ratio = -std::numeric_limits<double>::infinity();
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& k = it.key();
      if (k.size() > 13 && k.compare(k.size() - 13, 13, "_budget_ratio") == 0) {
        const double v = number_of(it.value());
        if (std::isnan(v) || v > c.budget_ratio) c.budget_ratio = v;
        if (std::isnan(v)) break;
      }
    }
    if (j.contains("first_failing_stage") && j["first_failing_stage"].is_string())
      c.first_failing_stage = j["first_failing_stage"].get<std::string>();
    r.order.push_back(key);
    r.cases[key] = c;
  }
  return r;
}

std::vector<AccuracyDiff> compare_accuracy(const AccuracyRuns& old_run, const AccuracyRuns& new_run,
                                           const Options& opt) {
  const std::vector<std::string> keys = merged_order(old_run.order, new_run.order, opt.filter);
  std::vector<AccuracyDiff> out;
  for (const auto& k : keys) {
    AccuracyDiff d;
    d.key = k;
    const auto o = old_run.cases.find(k), n = new_run.cases.find(k);
    if (n == new_run.cases.end()) {
      d.old_case = o->second;
      d.verdict = "only_old";
    } else if (o == old_run.cases.end()) {
      d.new_case = n->second;
      d.verdict = "only_new";
    } else {
      d.old_case = o->second;
      d.new_case = n->second;
      const double grow = 1.0 + opt.accuracy_threshold;
      const double e0 = d.old_case.rel_l2, e1 = d.new_case.rel_l2;
      const double r0 = d.old_case.budget_ratio, r1 = d.new_case.budget_ratio;
      const bool error_grew = (std::isnan(e1) && !std::isnan(e0)) || e1 > e0 * grow;
      const bool ratio_grew = (std::isnan(r1) && !std::isnan(r0)) || r1 > r0 * grow;
      if (d.old_case.pass && !d.new_case.pass)
        d.verdict = "now_failing";
      else if (!d.old_case.pass && d.new_case.pass)
        d.verdict = "now_passing";
      else if (error_grew || (ratio_grew && !(r1 <= kNearBudget)))
        d.verdict = "worse";
      else if (ratio_grew)
        d.verdict = "closer_to_budget";
      else if (e1 < e0 / grow)
        d.verdict = "better";
      else
        d.verdict = "same";
    }
    out.push_back(d);
  }
  return out;
}

std::string filter_error(const std::string& pattern) {
  try {
    const Matcher m(pattern);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return {};
}

bool is_regression(const std::string& verdict) {
  return verdict == "slower" || verdict == "error" || verdict == "now_failing" ||
         verdict == "worse";
}

}  // namespace attnscope::diff
