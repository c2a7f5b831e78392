// Mutants of attnscope's own kernels, one per fault class and path, for the fault-injection run.
#pragma once

#include <string>
#include <vector>

#include "attnscope/core/path.hpp"

namespace attnscope::fault_injection {

struct Mutant {
  std::string fault_class;  // e.g. "kv_layer_offset"
  Path path;                // unfused, fused or split_kv
  std::string impl;         // the name the gate selects it by
  std::string where;        // what was changed
};

// Registers every mutant (each a copy of an attnscope implementation with one fault) and
// returns them in class order.
std::vector<Mutant> register_mutants();

}  // namespace attnscope::fault_injection
