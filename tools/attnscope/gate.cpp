// attnscope gate: the accuracy suite as a CI gate, with filters, JSON Lines records, a JUnit
// report and the cases sharded over the GPUs of the machine (GoogleTest sharding, one process a
// GPU), the shards' records merged in the order one run would write them.
#include <sys/wait.h>
#include <unistd.h>

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
#include <vector>

#include "attnscope/kernels/runtime.hpp"
#include "commands.hpp"

namespace attnscope::cli {

namespace {

namespace fs = std::filesystem;

// Runs argv with extra environment variables, stdout and stderr to `log`; returns its pid.
pid_t spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
            const std::string& log) {
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    if (!log.empty()) {
      if (!std::freopen(log.c_str(), "w", stdout)) _exit(127);
      if (dup2(fileno(stdout), fileno(stderr)) < 0) _exit(127);
    }
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    std::fprintf(stderr, "attnscope gate: cannot run %s: %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return 127;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

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
  std::vector<std::string> a = {suite, "--gtest_filter=" + gtest_filter(o), "--attnscope_sweep=" + o.sweep};
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
  int shards = 1;
  if (opt.gpus == "all") {
    shards = std::max(1, gpu::device_count());
  } else {
    try {
      std::size_t used = 0;
      shards = std::stoi(opt.gpus, &used);
      if (used != opt.gpus.size() || shards < 1) throw std::invalid_argument(opt.gpus);
    } catch (const std::exception&) {
      std::cerr << "attnscope gate: --gpus takes a positive count or 'all', not '" << opt.gpus << "'\n";
      return 2;
    }
    const int have = gpu::device_count();
    if (have > 0 && shards > have) {
      std::cerr << "attnscope gate: --gpus " << shards << " but this machine has " << have << " GPU"
                << (have == 1 ? "" : "s") << "\n";
      return 2;
    }
  }

  // The cases in the order one run takes them.
  const fs::path scratch = fs::temp_directory_path() / ("attnscope_gate_" + std::to_string(getpid()));
  fs::create_directories(scratch);
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
  if (!opt.quiet)
    std::cout << "gate: " << position.size() << " cases" << (shards > 1 ? " over " + std::to_string(shards) + " GPUs" : "")
              << "\n";

  const auto start = std::chrono::steady_clock::now();
  std::vector<pid_t> pids;
  for (int i = 0; i < shards; ++i) {
    std::vector<std::string> args = common_args(opt, suite);
    args.push_back("--gtest_brief=1");
    args.push_back("--attnscope_jsonl=" + (scratch / ("shard" + std::to_string(i) + ".jsonl")).string());
    args.push_back("--gtest_output=xml:" + (scratch / ("shard" + std::to_string(i) + ".xml")).string());
    std::map<std::string, std::string> env;
    if (shards > 1) {
      env["GTEST_TOTAL_SHARDS"] = std::to_string(shards);
      env["GTEST_SHARD_INDEX"] = std::to_string(i);
      // Shard i sees the i-th GPU of those this process sees.
      for (const char* var : {"CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"}) {
        const char* seen = std::getenv(var);
        env[var] = seen != nullptr && *seen != '\0' ? nth_entry(seen, i) : std::to_string(i);
      }
    }
    pids.push_back(spawn(args, env, (scratch / ("shard" + std::to_string(i) + ".log")).string()));
  }
  int worst = 0;
  for (int i = 0; i < shards; ++i) {
    const int rc = wait_for(pids[i]);
    const std::string log = read_file((scratch / ("shard" + std::to_string(i) + ".log")).string());
    if (!opt.quiet || rc > 1) std::cout << log;
    if (rc > 1) std::cerr << "attnscope gate: shard " << i << " ended with exit status " << rc << "\n";
    worst = std::max(worst, rc);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // Records of every shard, in the single run's order.
  std::vector<std::pair<std::size_t, std::string>> records;
  int passed = 0, failed = 0;
  for (int i = 0; i < shards; ++i) {
    std::istringstream in(read_file((scratch / ("shard" + std::to_string(i) + ".jsonl")).string()));
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const nlohmann::json r = nlohmann::json::parse(line);
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
  int skipped = 0;
  std::vector<std::pair<std::size_t, std::string>> testcases;
  for (int i = 0; i < shards; ++i) {
    const std::string xml = read_file((scratch / ("shard" + std::to_string(i) + ".xml")).string());
    for (std::size_t at = xml.find("<testcase "); at != std::string::npos; at = xml.find("<testcase ", at + 1)) {
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
      testcases.emplace_back(pos, t);
    }
  }
  std::stable_sort(testcases.begin(), testcases.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  if (!opt.junit.empty()) {
    std::ofstream out(opt.junit);
    out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"" << testcases.size()
        << "\" failures=\"" << failed << "\" skipped=\"" << skipped << "\" time=\"" << seconds
        << "\" name=\"attnscope gate\">\n  <testsuite name=\"Accuracy\" tests=\"" << testcases.size()
        << "\" failures=\"" << failed << "\" skipped=\"" << skipped << "\">\n";
    for (const auto& t : testcases) out << "    " << t.second << "\n";
    out << "  </testsuite>\n</testsuites>\n";
    out.flush();
    if (!out) {
      std::cerr << "attnscope gate: cannot write " << opt.junit << "\n";
      return 2;
    }
  }
  std::error_code ec;
  fs::remove_all(scratch, ec);
  std::cout << "gate: " << passed << " passed, " << failed << " failed, " << skipped << " skipped of "
            << position.size() << " cases in " << static_cast<long>(seconds + 0.5) << " s"
            << (shards > 1 ? " on " + std::to_string(shards) + " GPUs" : "") << "\n";
  if (worst > 1) return 2;
  return failed > 0 || worst == 1 ? 1 : 0;
}

}  // namespace attnscope::cli
