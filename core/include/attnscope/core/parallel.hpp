// A minimal fork-join parallel loop over [0, n) on std::thread (host only).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <thread>
#include <vector>

#include "attnscope/core/parse.hpp"

namespace attnscope {

// Worker threads of parallel_for: ATTNSCOPE_HOST_THREADS where it is set (a count in [1, 65536];
// anything else throws std::invalid_argument naming the variable), else every hardware thread.
// (Giving each of two gate shards half the cores made the shards slower on a 32-core machine with
// two H200s than letting both use all of them: results/nvidia-h200x2/equal_core_share_d01302a/.)
inline unsigned host_threads() {
  static const unsigned n = [] {
    const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    const char* e = std::getenv("ATTNSCOPE_HOST_THREADS");
    if (e == nullptr || *e == '\0') return hw;
    return static_cast<unsigned>(parse_integer(e, "ATTNSCOPE_HOST_THREADS", 1, 65536));
  }();
  return n;
}

// Calls fn(begin, end) on contiguous chunks; the first exception thrown is rethrown.
template <class Fn>
void parallel_for(std::int64_t n, Fn&& fn, std::int64_t min_chunk = 1) {
  if (n <= 0) return;
  const std::int64_t max_workers =
      std::max<std::int64_t>(1, n / std::max<std::int64_t>(1, min_chunk));
  const std::int64_t workers = std::min<std::int64_t>(host_threads(), max_workers);
  if (workers <= 1) {
    fn(std::int64_t{0}, n);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(workers));
  const std::int64_t chunk = (n + workers - 1) / workers;
  for (std::int64_t w = 0; w < workers; ++w) {
    const std::int64_t b = w * chunk, e = std::min(n, b + chunk);
    if (b >= e) break;
    pool.emplace_back([&, w, b, e] {
      try {
        fn(b, e);
      } catch (...) {
        errors[static_cast<std::size_t>(w)] = std::current_exception();
      }
    });
  }
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace attnscope
