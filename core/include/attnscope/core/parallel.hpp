// A minimal fork-join parallel loop over [0, n) on std::thread (host only).
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace attnscope {

inline unsigned host_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1u : n;
}

// Calls fn(begin, end) on contiguous chunks; the first exception thrown is rethrown.
template <class Fn>
void parallel_for(std::int64_t n, Fn&& fn, std::int64_t min_chunk = 1) {
  if (n <= 0) return;
  const std::int64_t max_workers = std::max<std::int64_t>(1, n / std::max<std::int64_t>(1, min_chunk));
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
