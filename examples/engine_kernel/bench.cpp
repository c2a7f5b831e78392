// attnscope's benchmarks with myengine's kernel registered beside attnscope's: the same shapes,
// timing rules, counters and Google Benchmark JSON as attnscope's own bench_attention.
//   engine_bench --attnscope_impl='myengine.*,attnscope.fused,attnscope.split_kv'
#include "attnscope/bench/suite.hpp"
#include "engine_decode.hpp"

int main(int argc, char** argv) {
  myengine::register_kernels(false);
  return attnscope::bench_main(argc, argv);
}
