#include "attnscope/core/path.hpp"

#include <stdexcept>
#include <string>

namespace attnscope {

std::string_view to_string(Path p) {
  switch (p) {
    case Path::qk:
      return "qk";
    case Path::softmax:
      return "softmax";
    case Path::pv:
      return "pv";
    case Path::unfused:
      return "unfused";
    case Path::fused:
      return "fused";
    case Path::split_kv:
      return "split_kv";
  }
  return "?";
}

Path parse_path(std::string_view s) {
  for (Path p : kAllPaths)
    if (to_string(p) == s) return p;
  throw std::invalid_argument("unknown path '" + std::string(s) +
                              "' (expected qk, softmax, pv, unfused, fused or split_kv)");
}

}  // namespace attnscope
