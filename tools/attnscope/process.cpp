#include "process.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <utility>

namespace attnscope::cli {

namespace {

[[noreturn]] void exec_child(const std::vector<std::string>& args,
                             const std::map<std::string, std::string>& env) {
  for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execvp(argv[0], argv.data());
  std::fprintf(stderr, "attnscope: cannot run %s: %s\n", argv[0], std::strerror(errno));
  _exit(127);
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace

pid_t spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
            const std::string& log) {
  if (args.empty()) throw std::invalid_argument("spawn: no program");
  std::cout.flush();
  std::cerr.flush();
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    if (!log.empty()) {
      if (!std::freopen(log.c_str(), "w", stdout)) _exit(127);
      if (dup2(fileno(stdout), fileno(stderr)) < 0) _exit(127);
    }
    exec_child(args, env);
  }
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return 127;
  return decode_status(status);
}

bool has_ended(pid_t pid, int* status) {
  int s = 0;
  pid_t r;
  while ((r = waitpid(pid, &s, WNOHANG)) < 0)
    if (errno != EINTR) {
      *status = 127;
      return true;
    }
  if (r == 0) return false;
  *status = decode_status(s);
  return true;
}

int run_lines(const std::vector<std::string>& args,
              const std::function<void(const std::string&)>& on_line,
              const std::map<std::string, std::string>& env) {
  if (args.empty()) throw std::invalid_argument("run_lines: no program");
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  std::cout.flush();
  std::cerr.flush();
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    close(fds[0]);
    if (dup2(fds[1], STDOUT_FILENO) < 0 || dup2(fds[1], STDERR_FILENO) < 0) _exit(127);
    close(fds[1]);
    exec_child(args, env);
  }
  close(fds[1]);
  std::string pending;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buf, static_cast<std::size_t>(n));
    std::size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      on_line(pending.substr(0, nl));
      pending.erase(0, nl + 1);
    }
  }
  close(fds[0]);
  if (!pending.empty()) on_line(pending);
  return wait_for(pid);
}

bool open_log(std::ofstream& log, const std::string& path, const std::string& who) {
  if (path.empty()) return true;
  log.open(path, std::ios::trunc);
  if (log) return true;
  std::cerr << who << ": cannot write " << path << "\n";
  return false;
}

Progress::Progress(std::string what, std::string unit, std::size_t total, bool quiet)
    : what_(std::move(what)), unit_(std::move(unit)), total_(total) {
  const char* term = std::getenv("TERM");
  enabled_ = !quiet && total > 0 && isatty(STDERR_FILENO) != 0 &&
             !(term != nullptr && std::strcmp(term, "dumb") == 0);
  start_ = last_ = std::chrono::steady_clock::now();
  draw(true);
}

Progress::~Progress() {
  clear();
}

void Progress::update(std::size_t done) {
  done_ = done;
  draw(done_ >= total_);
}

void Progress::print(const std::string& line) {
  clear();
  std::cout << line << "\n";
  std::cout.flush();
  draw(true);
}

void Progress::clear() {
  if (!enabled_ || !drawn_) return;
  std::cerr << "\r\033[K";
  std::cerr.flush();
  drawn_ = false;
}

void Progress::draw(bool force) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_ < std::chrono::milliseconds(200)) return;
  last_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  std::string line = what_ + ": " + std::to_string(done_) + " of " + std::to_string(total_) + " " +
                     unit_ + ", " + std::to_string(static_cast<long>(elapsed)) + " s";
  if (done_ > 0 && done_ < total_) {
    const double left = elapsed / double(done_) * double(total_ - done_);
    line += ", about " + std::to_string(static_cast<long>(std::ceil(left))) + " s left";
  }
  std::cout.flush();
  std::cerr << "\r\033[K" << line;
  std::cerr.flush();
  drawn_ = true;
}

}  // namespace attnscope::cli
