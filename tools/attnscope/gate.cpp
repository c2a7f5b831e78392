// attnscope gate: the accuracy suite as a CI gate, with filters, JSON Lines records, a JUnit
// report and the cases sharded over the GPUs of the machine (GoogleTest sharding, one process a
// shard, shard i on GPU i mod the GPU count), the shards' records merged in the order one run
// would write them.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "attnscope/kernels/runtime.hpp"
#include "commands.hpp"
#include "process.hpp"

namespace attnscope::cli {

namespace {

namespace fs = std::filesystem;

// Entry i of a comma-separated device list (the list itself where it is shorter).
std::string nth_entry(const std::string& list, int i) {
  std::vector<std::string> parts;
  std::stringstream in(list);
  std::string p;
  while (std::getline(in, p, ',')) parts.push_back(p);
  return i < static_cast<int>(parts.size()) ? parts[static_cast<std::size_t>(i)] : list;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// GoogleTest filter for the path, accumulation and window choices (case names are
// <family>_<path>_acc_<accum>_w<window>_...).
std::string gtest_filter(const GateOptions& o) {
  std::vector<std::string> paths = o.paths.empty() ? std::vector<std::string>{"*"} : o.paths;
  std::vector<std::string> accums = o.accums.empty() ? std::vector<std::string>{"*"} : o.accums;
  std::vector<std::string> windows;
  for (long w : o.windows) windows.push_back(std::to_string(w));
  if (windows.empty()) windows.push_back("*");
  std::string f;
  for (const auto& p : paths)
    for (const auto& a : accums)
      for (const auto& w : windows) {
        if (!f.empty()) f += ':';
        f += "Accuracy.*_" + p + "_acc_" + a + "_w" + w + "_*";
      }
  return f;
}

std::vector<std::string> common_args(const GateOptions& o, const std::string& suite) {
  std::vector<std::string> a = {suite, "--gtest_filter=" + gtest_filter(o),
                                "--attnscope_sweep=" + o.sweep};
  if (!o.impl.empty()) a.push_back("--attnscope_impl=" + o.impl);
  return a;
}

}  // namespace

int run_gate(const GateOptions& opt) {
  const std::string suite = !opt.suite.empty() ? opt.suite : std::string(ATTNSCOPE_ACCURACY_SUITE);
  if (access(suite.c_str(), X_OK) != 0) {
    std::cerr << "attnscope gate: the accuracy suite " << suite
              << " is not there (build the accuracy_suite target, or give --suite)\n";
    return 2;
  }
  int gpus = 1;
  if (opt.gpus == "all") {
    gpus = std::max(1, gpu::device_count());
  } else {
    try {
      std::size_t used = 0;
      gpus = std::stoi(opt.gpus, &used);
      if (used != opt.gpus.size() || gpus < 1) throw std::invalid_argument(opt.gpus);
    } catch (const std::exception&) {
      std::cerr << "attnscope gate: --gpus takes a positive count or 'all', not '" << opt.gpus
                << "'\n";
      return 2;
    }
    const int have = gpu::device_count();
    if (have > 0 && gpus > have) {
      std::cerr << "attnscope gate: --gpus " << gpus << " but this machine has " << have << " GPU"
                << (have == 1 ? "" : "s") << "\n";
      return 2;
    }
  }
  if (opt.shards < 0) {
    std::cerr << "attnscope gate: --shards takes a positive count\n";
    return 2;
  }
  const int shards = opt.shards > 0 ? opt.shards : gpus;
  if (shards < gpus) {
    std::cerr << "attnscope gate: --shards " << shards << " leaves some of the " << gpus
              << " GPUs idle\n";
    return 2;
  }
  std::ofstream log;
  if (!open_log(log, opt.log, "attnscope gate")) return 2;
  // Everything the gate prints also goes to the log.
  auto say = [&](const std::string& text) {
    std::cout << text;
    std::cout.flush();
    if (log.is_open()) log << text << std::flush;
  };
  const std::string where = shards > 1 ? " as " + std::to_string(shards) + " shards on " +
                                             std::to_string(gpus) + " GPU" + (gpus == 1 ? "" : "s")
                                       : "";

  // The cases in the order one run takes them.
  // A fresh scratch folder of this run's own (never one an earlier run left), removed on every
  // way out.
  std::string scratch_name = (fs::temp_directory_path() / "attnscope_gate_XXXXXX").string();
  if (mkdtemp(scratch_name.data()) == nullptr) {
    std::cerr << "attnscope gate: cannot create a scratch folder in " << fs::temp_directory_path()
              << "\n";
    return 2;
  }
  const fs::path scratch = scratch_name;
  struct RemoveOnExit {
    fs::path dir;
    ~RemoveOnExit() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } remove_scratch{scratch};
  std::vector<std::string> list_args = common_args(opt, suite);
  list_args.push_back("--gtest_list_tests");
  if (const int rc = wait_for(spawn(list_args, {}, (scratch / "list.txt").string())); rc != 0) {
    std::cerr << "attnscope gate: listing the cases failed (exit " << rc << "):\n"
              << read_file((scratch / "list.txt").string());
    return 2;
  }
  std::map<std::string, std::size_t> position;
  {
    std::istringstream in(read_file((scratch / "list.txt").string()));
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("  ", 0) == 0) {
        const std::string name = line.substr(2, line.find_first_of(" \t#", 2) - 2);
        position.emplace(name, position.size());
      }
  }
  if (position.empty()) {
    // A gate that checks nothing must not pass.
    std::cerr << "attnscope gate: no case of the " << opt.sweep
              << " sweep matches the filters (--impl, --path, --accum, --window)\n";
    return 2;
  }
  if (!opt.quiet) say("gate: " + std::to_string(position.size()) + " cases" + where + "\n");

  const auto start = std::chrono::steady_clock::now();
  std::vector<pid_t> pids;
  for (int i = 0; i < shards; ++i) {
    std::vector<std::string> args = common_args(opt, suite);
    args.push_back("--gtest_brief=1");
    args.push_back("--attnscope_jsonl=" +
                   (scratch / ("shard" + std::to_string(i) + ".jsonl")).string());
    args.push_back("--gtest_output=xml:" +
                   (scratch / ("shard" + std::to_string(i) + ".xml")).string());
    // Sharding is the gate's alone: variables inherited from the caller are replaced, or
    // removed (an empty value) for a single run.
    std::map<std::string, std::string> env;
    env["GTEST_TOTAL_SHARDS"] = shards > 1 ? std::to_string(shards) : "";
    env["GTEST_SHARD_INDEX"] = shards > 1 ? std::to_string(i) : "";
    if (gpus > 1) {
      // Shard i sees GPU i mod gpus of those this process sees (HIP's list where it is set,
      // else CUDA's: HIP honours its own first), named the same way to both runtimes.
      const char* hip = std::getenv("HIP_VISIBLE_DEVICES");
      const char* cuda = std::getenv("CUDA_VISIBLE_DEVICES");
      const char* seen = hip != nullptr && *hip != '\0' ? hip : cuda;
      const std::string dev =
          seen != nullptr && *seen != '\0' ? nth_entry(seen, i % gpus) : std::to_string(i % gpus);
      env["CUDA_VISIBLE_DEVICES"] = dev;
      env["HIP_VISIBLE_DEVICES"] = dev;
    }
    pids.push_back(spawn(args, env, (scratch / ("shard" + std::to_string(i) + ".log")).string()));
  }
  // Progress: the records the shards have written so far (each case's record is flushed as it
  // finishes).
  std::vector<int> status(static_cast<std::size_t>(shards), -1);
  {
    Progress progress("gate", "cases", position.size(), opt.quiet);
    for (int running = shards; running > 0;) {
      running = 0;
      for (int i = 0; i < shards; ++i) {
        int rc = 0;
        if (status[i] < 0 && has_ended(pids[i], &rc)) status[i] = rc;
        running += status[i] < 0 ? 1 : 0;
      }
      if (progress.shown()) {
        std::size_t done = 0;
        for (int i = 0; i < shards; ++i) {
          const std::string text =
              read_file((scratch / ("shard" + std::to_string(i) + ".jsonl")).string());
          done += static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
        }
        progress.update(std::min(done, position.size()));
      }
      if (running > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  int worst = 0;
  for (int i = 0; i < shards; ++i) {
    const int rc = status[i];
    const std::string shard_log =
        read_file((scratch / ("shard" + std::to_string(i) + ".log")).string());
    if (!opt.quiet || rc > 1) say(shard_log);
    if (rc > 1)
      say("attnscope gate: shard " + std::to_string(i) + " ended with exit status " +
          std::to_string(rc) + "\n");
    worst = std::max(worst, rc);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // Records of every shard, in the single run's order.
  std::vector<std::pair<std::size_t, std::string>> records;
  int passed = 0, failed = 0;
  for (int i = 0; i < shards; ++i) {
    std::istringstream in(read_file((scratch / ("shard" + std::to_string(i) + ".jsonl")).string()));
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      nlohmann::json r;
      try {
        r = nlohmann::json::parse(line);
      } catch (const std::exception&) {
        // A record cut short: the shard ended while writing it.
        say("attnscope gate: shard " + std::to_string(i) +
            " left an incomplete record; the run did not complete\n");
        worst = std::max(worst, 2);
        ++failed;
        continue;
      }
      const std::string name = r.value("case", std::string());
      const auto it = position.find(name);
      records.emplace_back(it == position.end() ? position.size() : it->second, line);
      (r.value("pass", false) ? passed : failed) += 1;
    }
  }
  std::stable_sort(records.begin(), records.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  if (!opt.jsonl.empty()) {
    std::ofstream out(opt.jsonl);  // replaced, never appended
    for (const auto& r : records) out << r.second << "\n";
    out.flush();
    if (!out) {
      std::cerr << "attnscope gate: cannot write " << opt.jsonl << "\n";
      return 2;
    }
  }
  // Test cases of the shards' GoogleTest reports, merged in the same order.
  int skipped = 0, xml_failed = 0;
  std::vector<std::pair<std::size_t, std::string>> testcases;
  for (int i = 0; i < shards; ++i) {
    const std::string xml = read_file((scratch / ("shard" + std::to_string(i) + ".xml")).string());
    for (std::size_t at = xml.find("<testcase "); at != std::string::npos;
         at = xml.find("<testcase ", at + 1)) {
      const std::size_t open_end = xml.find('>', at);
      if (open_end == std::string::npos) break;
      std::size_t end = open_end + 1;  // <testcase ... /> or <testcase ...> ... </testcase>
      if (xml[open_end - 1] != '/') {
        const std::size_t close = xml.find("</testcase>", open_end);
        if (close == std::string::npos) break;
        end = close + std::strlen("</testcase>");
      }
      const std::string t = xml.substr(at, end - at);
      std::size_t pos = position.size();
      const std::size_t n0 = t.find(" name=\"");
      if (n0 != std::string::npos) {
        const std::size_t n1 = t.find('"', n0 + 7);
        const auto p = position.find(t.substr(n0 + 7, n1 - n0 - 7));
        if (p != position.end()) pos = p->second;
      }
      if (t.find("<skipped") != std::string::npos) ++skipped;
      if (t.find("<failure") != std::string::npos) ++xml_failed;
      testcases.emplace_back(pos, t);
    }
  }
  std::stable_sort(testcases.begin(), testcases.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  failed = std::max(failed, xml_failed);  // a case that could not run fails without a record
  if (!opt.junit.empty()) {
    std::ofstream out(opt.junit);
    out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"" << testcases.size()
        << "\" failures=\"" << failed << "\" skipped=\"" << skipped << "\" time=\"" << seconds
        << "\" name=\"attnscope gate\">\n  <testsuite name=\"Accuracy\" tests=\""
        << testcases.size() << "\" failures=\"" << failed << "\" skipped=\"" << skipped << "\">\n";
    for (const auto& t : testcases) out << "    " << t.second << "\n";
    out << "  </testsuite>\n</testsuites>\n";
    out.flush();
    if (!out) {
      std::cerr << "attnscope gate: cannot write " << opt.junit << "\n";
      return 2;
    }
  }
  // Every listed case must be in a shard's report (passed, failed or skipped); fewer means a
  // shard did not finish. A case that failed without a record (it could not run) still counts.
  if (testcases.size() < position.size()) {
    say("attnscope gate: " + std::to_string(position.size() - testcases.size()) + " of " +
        std::to_string(position.size()) +
        " cases are in no shard's report: the run did not complete\n");
    worst = std::max(worst, 2);
  }

  say("gate: " + std::to_string(passed) + " passed, " + std::to_string(failed) + " failed, " +
      std::to_string(skipped) + " skipped of " + std::to_string(position.size()) + " cases in " +
      std::to_string(static_cast<long>(seconds + 0.5)) + " s" + where + "\n");
  if (worst > 1) return 2;
  return failed > 0 || worst == 1 ? 1 : 0;
}

}  // namespace attnscope::cli
