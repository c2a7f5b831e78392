// Counter-based random numbers: value i of a stream depends only on (seed, stream, i), so data is
// identical whatever the thread count or the order of generation.
#pragma once

#include <cmath>
#include <cstdint>

namespace attnscope {

inline constexpr std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() { return mix64(state_ += 0x9e3779b97f4a7c15ull); }

 private:
  std::uint64_t state_;
};

inline std::uint64_t counter_hash(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  return mix64(mix64(seed ^ mix64(stream + 0x632be59bd9b4e019ull)) + i * 0x9e3779b97f4a7c15ull);
}

// Uniform in (0, 1): never 0, so log() is safe, and never 1 ((2^53 - 1) + 0.5 rounds to 2^53,
// so the top value is clamped to the largest double below 1).
inline double to_unit_open(std::uint64_t bits) {
  const double u = (static_cast<double>(bits >> 11) + 0.5) * 0x1p-53;
  return u < 1.0 ? u : 0x1.fffffffffffffp-1;
}

// Standard normal by Box-Muller on two counter-derived uniforms.
inline double counter_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  const double u1 = to_unit_open(counter_hash(seed, stream, 2 * i));
  const double u2 = to_unit_open(counter_hash(seed, stream, 2 * i + 1));
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace attnscope
