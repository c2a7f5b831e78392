// Strict reading of numbers and switches given on a command line or in the environment: the
// whole text must be the value, within its range, or std::invalid_argument says which option
// was wrong, what it got and what it takes ("1abc", "-5", "abc" and "" are all refused).
#pragma once

#include <cstdint>
#include <string>

namespace attnscope {

std::int64_t parse_integer(const std::string& text, const std::string& option, std::int64_t lo,
                           std::int64_t hi);
double parse_real(const std::string& text, const std::string& option, double lo, double hi);
// 1, true, yes, on / 0, false, no, off.
bool parse_switch(const std::string& text, const std::string& option);

}  // namespace attnscope
