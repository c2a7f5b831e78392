// The benchmark suite as a library entry point: a program that registers its own
// implementations (gpu::register_implementation) and then calls bench_main times them beside
// attnscope's, with the same shapes, timing rules, counters and Google Benchmark JSON as
// attnscope's own bench_attention binary.
#pragma once

namespace attnscope {

// Takes Google Benchmark's flags and attnscope's (--attnscope_set, --attnscope_hot,
// --attnscope_flush_mib, --attnscope_timeout_s, --attnscope_impl; --help lists them).
// Returns 0 when the run completed, 1 for a failed GPU set-up or an unknown flag, 2 for a bad
// attnscope option or a filter that selects nothing, 3 when a kernel hung.
int bench_main(int argc, char** argv);

}  // namespace attnscope
