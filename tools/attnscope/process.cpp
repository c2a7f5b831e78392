#include "process.hpp"

#include <fcntl.h>
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

// What a child needs, made before fork: after fork only async-signal-safe calls are made (the
// parent may have GPU runtime threads).
struct ChildImage {
  std::vector<std::string> env_strings;
  std::vector<char*> argv, envp;
  ChildImage(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
    // The parent's environment, less the variables `env` names; an empty value in `env` unsets.
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string kv(*e);
      const std::string key = kv.substr(0, kv.find('='));
      if (env.count(key) == 0) env_strings.push_back(kv);
    }
    for (const auto& [k, v] : env)
      if (!v.empty()) env_strings.push_back(k + "=" + v);
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
  }
  [[noreturn]] void exec() const {
    execvpe(argv[0], argv.data(), envp.data());
    const char* msg = "attnscope: cannot run a child program (exec failed)\n";
    (void)!write(STDERR_FILENO, msg, std::strlen(msg));
    _exit(127);
  }
};

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace

pid_t spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
            const std::string& log) {
  if (args.empty()) throw std::invalid_argument("spawn: no program");
  const ChildImage image(args, env);
  int log_fd = -1;
  if (!log.empty()) {
    log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0) throw std::runtime_error("cannot write " + log + ": " + std::strerror(errno));
  }
  std::cout.flush();
  std::cerr.flush();
  const pid_t pid = fork();
  if (pid < 0) {
    if (log_fd >= 0) close(log_fd);
    throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    if (log_fd >= 0 && (dup2(log_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0))
      _exit(127);
    image.exec();
  }
  if (log_fd >= 0) close(log_fd);
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
  const ChildImage image(args, env);
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
    image.exec();
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
