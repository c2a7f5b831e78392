// Child processes and the progress line of the attnscope command line.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace attnscope::cli {

// Starts args[0] (a path, or a name looked up in PATH) with the environment changed by `env` (a
// variable set to "" is removed); its standard output and error go to `log` when that is not
// empty. Returns the pid; throws when the
// process cannot be created.
pid_t spawn(const std::vector<std::string>& args,
            const std::map<std::string, std::string>& env = {}, const std::string& log = "");
// Waits for pid: its exit status, 128 + the signal that ended it, or 127 when it cannot be
// waited for.
int wait_for(pid_t pid);
// Whether pid has ended, without blocking; its exit status (as wait_for gives it) in *status.
bool has_ended(pid_t pid, int* status);
// Runs args with standard output and error merged into a pipe, passing each line to on_line as
// it comes; returns the exit status as wait_for gives it (127: could not be started).
int run_lines(const std::vector<std::string>& args,
              const std::function<void(const std::string&)>& on_line,
              const std::map<std::string, std::string>& env = {});

// Opens `path` (replacing it) as a log of what a subcommand prints; an empty path opens nothing.
// False, with the reason on standard error after `who`, when it cannot be written.
bool open_log(std::ofstream& log, const std::string& path, const std::string& who);

// A one-line progress display on a terminal, e.g.
//   gate: 37 of 146 cases, 12 s, about 35 s left
// redrawn in place on standard error. It shows nothing when standard error is not a terminal
// (CI logs, pipes) or when `quiet` is set; print() writes a line of other output above it.
class Progress {
 public:
  Progress(std::string what, std::string unit, std::size_t total, bool quiet);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  bool shown() const { return enabled_; }
  // Sets the count done and redraws (at most five times a second, and always at the end).
  void update(std::size_t done);
  // Writes `line` (and a newline) to standard output with the progress line kept below it.
  void print(const std::string& line);
  // Erases the progress line.
  void clear();

 private:
  void draw(bool force);
  std::string what_, unit_;
  std::size_t total_ = 0, done_ = 0;
  bool enabled_ = false, drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace attnscope::cli
