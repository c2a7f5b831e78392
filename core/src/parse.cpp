#include "attnscope/core/parse.hpp"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

namespace attnscope {

namespace {

[[noreturn]] void refuse(const std::string& text, const std::string& option,
                         const std::string& takes) {
  throw std::invalid_argument(option + ": '" + text + "' is not " + takes);
}

template <class T>
std::string range(T lo, T hi) {
  std::ostringstream s;
  s << "in [" << lo << ", " << hi << "]";
  return s.str();
}

}  // namespace

std::int64_t parse_integer(const std::string& text, const std::string& option, std::int64_t lo,
                           std::int64_t hi) {
  const std::string takes = "an integer " + range(lo, hi);
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0])))
    refuse(text, option, takes);
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno == ERANGE || end == text.c_str() || *end != '\0' || v < lo || v > hi)
    refuse(text, option, takes);
  return static_cast<std::int64_t>(v);
}

double parse_real(const std::string& text, const std::string& option, double lo, double hi) {
  const std::string takes = "a number " + range(lo, hi);
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0])))
    refuse(text, option, takes);
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (errno == ERANGE || end == text.c_str() || *end != '\0' || !std::isfinite(v) || v < lo ||
      v > hi)
    refuse(text, option, takes);
  return v;
}

bool parse_switch(const std::string& text, const std::string& option) {
  if (text == "1" || text == "true" || text == "yes" || text == "on") return true;
  if (text == "0" || text == "false" || text == "no" || text == "off") return false;
  refuse(text, option, "a switch (1, true, yes, on / 0, false, no, off)");
}

}  // namespace attnscope
