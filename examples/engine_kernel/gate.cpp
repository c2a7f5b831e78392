// attnscope's accuracy gate over myengine's kernel: the same cases, budgets, JSONL records and
// GoogleTest output as attnscope's own accuracy_suite, for whatever is registered.
//   engine_gate --attnscope_impl='myengine.*'                     the engine's kernel only
//   engine_gate --attnscope_impl='myengine.*' --plant-bug=layer0  with every layer reading layer 0
#include <cstring>
#include <iostream>

#include "attnscope/accuracy/suite.hpp"
#include "engine_decode.hpp"

int main(int argc, char** argv) {
  bool plant = false;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--plant-bug=layer0") == 0) {
      plant = true;
    } else if (std::strncmp(argv[i], "--plant-bug", 11) == 0) {
      std::cerr << argv[0] << ": unknown bug '" << argv[i]
                << "' (the one on offer: --plant-bug=layer0)\n";
      return 2;
    } else {
      argv[kept++] = argv[i];
    }
  }
  argv[kept] = nullptr;
  myengine::register_kernels(plant);
  return attnscope::accuracy_main(kept, argv);
}
