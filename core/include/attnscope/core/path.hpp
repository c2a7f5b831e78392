// The stages and paths of attention, one vocabulary for the kernels, the accuracy suite and the
// benchmarks: an implementation is a stage (qk, softmax, pv) or a single-pass path (fused,
// split_kv); the unfused path is a family's three stages run in sequence.
#pragma once

#include <array>
#include <string_view>

namespace attnscope {

enum class Path { qk, softmax, pv, unfused, fused, split_kv };

inline constexpr std::array<Path, 6> kAllPaths = {Path::qk,      Path::softmax, Path::pv,
                                                  Path::unfused, Path::fused,   Path::split_kv};
// The kinds an implementation may be registered as (every path but unfused).
inline constexpr std::array<Path, 5> kImplementationPaths = {Path::qk, Path::softmax, Path::pv,
                                                             Path::fused, Path::split_kv};
// The paths that compute attention end to end, which the accuracy suite gates.
inline constexpr std::array<Path, 3> kEndToEndPaths = {Path::unfused, Path::fused, Path::split_kv};

inline constexpr bool is_stage(Path p) {
  return p == Path::qk || p == Path::softmax || p == Path::pv;
}
inline constexpr bool is_single_pass(Path p) {
  return p == Path::fused || p == Path::split_kv;
}

std::string_view to_string(Path p);
Path parse_path(std::string_view s);  // throws std::invalid_argument naming the choices

}  // namespace attnscope
