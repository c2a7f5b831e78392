// attnscope's GPU benchmarks of every registered stage and path (see bench/suite.cpp).
#include "attnscope/bench/suite.hpp"

int main(int argc, char** argv) {
  return attnscope::bench_main(argc, argv);
}
