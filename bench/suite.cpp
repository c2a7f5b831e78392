// GPU benchmarks of every registered stage and path: qk, softmax, pv, unfused (the three in
// sequence, as an engine runs them), fused and split_kv, over decode shapes. Names spell the
// configuration, e.g.
//   fused/impl:attnscope.fused/acc:fp32/in:fp16/d:128/b:1/qh:32/kvh:8/q:1/window:4096/layout:bhsd
// Unsupported implementations are registered and skip with their reason, so every configuration
// of a set appears in the output.
//
// bench_main (attnscope/bench/suite.hpp) runs them over whatever is registered.
//
// Options (flags are read before Google Benchmark's; environment variables in parentheses):
//   --attnscope_set=quick|default|full|tune  (ATTNSCOPE_BENCH_SET)  shapes; default: default;
//                                       tune: split_kv over split counts on the default shapes
//   --attnscope_hot                     (ATTNSCOPE_BENCH_HOT=1) keep L2 warm between iterations
//   --attnscope_flush_mib=N             (ATTNSCOPE_BENCH_FLUSH_MIB)  L2 flush size, 0 to 1048576;
//                                       0: 2 x L2
//   --attnscope_flush=read|write        (ATTNSCOPE_BENCH_FLUSH)  how the flush evicts L2: read
//                                       (default) leaves it clean; write (a memset, as many
//                                       harnesses flush) leaves dirty lines whose write-back
//                                       lands in the timed region
//   --attnscope_timeout_s=S             (ATTNSCOPE_BENCH_TIMEOUT_S)  a timed run longer than S
//                                       (0.001 to 86400)
//                                       seconds is a hung kernel: the rest skip, exit status 3
// Unless given, --benchmark_repetitions=10, --benchmark_min_time=0.01 (manual time) and
// --benchmark_display_aggregates_only=true are added: the console shows mean, median, stddev
// and cv; --benchmark_out=FILE --benchmark_out_format=json keeps every repetition as well.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "attnscope/core/parse.hpp"
#include "attnscope/core/shapes.hpp"
#include "attnscope/kernels/registry.hpp"
#include "attnscope/kernels/runtime.hpp"
#include "attnscope/bench/suite.hpp"
#include "harness.hpp"

namespace {

using attnscope::Accum;
using attnscope::DType;
using attnscope::KvLayoutKind;
using attnscope::KvLayoutSpec;
using attnscope::parse_integer;
using attnscope::parse_real;
using attnscope::parse_switch;
using attnscope::Path;
using attnscope::Problem;
using attnscope::bench::BenchCase;
using attnscope::bench::Harness;
using attnscope::bench::Options;
namespace gpu = attnscope::gpu;

using attnscope::DecodeShape;

// The stage of `family`, or attnscope's when the family has none: softmax and pv benchmarks
// need their inputs made by some qk (and softmax).
std::string stage_of(const std::string& family, Path stage) {
  const gpu::Implementation* own = gpu::family_stage(family, stage);
  return own ? own->name : gpu::family_stage("attnscope", stage)->name;
}

std::vector<BenchCase> make_cases(const std::vector<DecodeShape>& shapes,
                                  const gpu::NameFilter& filter, const Options& o) {
  std::vector<BenchCase> cases;
  // Shape-major order: consecutive benchmarks share the device-resident inputs.
  for (const DecodeShape& shape : shapes) {
    auto add = [&](Path path, std::string impl, std::vector<std::string> timed,
                   std::vector<std::string> before) {
      BenchCase c;
      c.path = path;
      c.impl = std::move(impl);
      c.timed = std::move(timed);
      c.before = std::move(before);
      c.problem = shape.problem();
      c.layout = shape.layout_spec();
      if (shape.page_size == 0) c.layout.page_size = o.page_size;
      c.layout.shuffle_pages = o.shuffle_pages;
      c.seq_lens = shape.seq_lens();
      c.ragged_min = shape.ragged_min;
      c.splits = o.splits;
      cases.push_back(std::move(c));
    };
    for (Path path : attnscope::kAllPaths) {
      if (path == Path::unfused) {
        for (const std::string& f : gpu::unfused_families())
          if (filter.matches(gpu::unfused_name(f)))
            add(path, f, {stage_of(f, Path::qk), stage_of(f, Path::softmax), stage_of(f, Path::pv)},
                {});
        continue;
      }
      for (const gpu::Implementation* i : gpu::implementations(path)) {
        if (!filter.matches(i->name)) continue;
        std::vector<std::string> before;
        if (path == Path::softmax || path == Path::pv)
          before.push_back(stage_of(i->family, Path::qk));
        if (path == Path::pv) before.push_back(stage_of(i->family, Path::softmax));
        add(path, i->name, {i->name}, std::move(before));
        // An implementation that addresses another cache layout only (an engine's kernel) is
        // timed on the first of bshd and paged that it supports.
        BenchCase& c = cases.back();
        if (!i->why_unsupported(c.problem, c.layout).empty()) {
          for (KvLayoutKind k : {KvLayoutKind::bshd, KvLayoutKind::paged}) {
            KvLayoutSpec l = c.layout;
            l.kind = k;
            if (i->why_unsupported(c.problem, l).empty()) {
              c.layout = l;
              break;
            }
          }
        }
      }
    }
  }
  return cases;
}

// The tune set: split_kv on every default shape at each split count tuning_splits gives, and at
// the count the implementation chooses (splits 0), so a report can set the heuristic beside the
// best count. Split counts change the summation order: the accuracy suite's tune sweep
// evaluates the same counts.
std::vector<BenchCase> make_tuning_cases(const std::vector<DecodeShape>& shapes,
                                         const gpu::NameFilter& filter) {
  std::vector<BenchCase> cases;
  for (const DecodeShape& shape : shapes)
    for (const gpu::Implementation* i : gpu::implementations(Path::split_kv)) {
      if (shape.ragged_min > 0) continue;          // the tuning table is of the dense shapes
      if (shape.kv_fp8 || shape.latent) continue;  // and of fp16 caches of K and V heads
      if (!filter.matches(i->name)) continue;
      std::vector<int> splits =
          attnscope::tuning_splits(shape.problem(), attnscope::kTuneMinSplitLen);
      splits.insert(splits.begin(), 0);
      for (int s : splits) {
        BenchCase c;
        c.path = Path::split_kv;
        c.impl = i->name;
        c.timed = {i->name};
        c.problem = shape.problem();
        c.layout = shape.layout_spec();
        c.splits = s;
        cases.push_back(std::move(c));
      }
    }
  return cases;
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

bool starts_with(const char* s, const char* prefix) {
  return std::strncmp(s, prefix, std::strlen(prefix)) == 0;
}

// Takes attnscope's own flags out of argv (Google Benchmark rejects flags it does not know).
Options parse_options(int& argc, char** argv) {
  Options o;
  o.set = env_or("ATTNSCOPE_BENCH_SET", "default");
  // Flush sizes up to 1 TiB; a timed run may take up to a day before it counts as hung.
  auto flush_mib = [](const std::string& v, const char* what) {
    return parse_integer(v, what, 0, std::int64_t(1) << 20) << 20;
  };
  auto timeout_s = [](const std::string& v, const char* what) {
    return parse_real(v, what, 1e-3, 86400.0);
  };
  o.hot = parse_switch(env_or("ATTNSCOPE_BENCH_HOT", "0"), "ATTNSCOPE_BENCH_HOT");
  o.flush_bytes = flush_mib(env_or("ATTNSCOPE_BENCH_FLUSH_MIB", "0"), "ATTNSCOPE_BENCH_FLUSH_MIB");
  auto flush_mode = [](const std::string& v, const char* what) {
    if (v == "write") return true;
    if (v == "read") return false;
    throw std::invalid_argument(std::string(what) + ": '" + v + "' is not one of read, write");
  };
  o.flush_by_write = flush_mode(env_or("ATTNSCOPE_BENCH_FLUSH", "read"), "ATTNSCOPE_BENCH_FLUSH");
  o.timeout_s = timeout_s(env_or("ATTNSCOPE_BENCH_TIMEOUT_S", "10"), "ATTNSCOPE_BENCH_TIMEOUT_S");
  o.filter = gpu::NameFilter(env_or("ATTNSCOPE_BENCH_IMPL", ""));
  auto splits = [](const std::string& v, const char* what) {
    return static_cast<int>(parse_integer(v, what, 0, 65535));
  };
  o.splits = splits(env_or("ATTNSCOPE_BENCH_SPLITS", "0"), "ATTNSCOPE_BENCH_SPLITS");
  auto page_size = [](const std::string& v, const char* what) {
    return static_cast<int>(parse_integer(v, what, 1, 1 << 16));
  };
  auto pages = [](const std::string& v, const char* what) {
    if (v == "scattered") return true;
    if (v == "consecutive") return false;
    throw std::invalid_argument(std::string(what) + ": '" + v +
                                "' is not one of scattered, consecutive");
  };
  o.page_size = page_size(env_or("ATTNSCOPE_BENCH_PAGE_SIZE", "16"), "ATTNSCOPE_BENCH_PAGE_SIZE");
  o.shuffle_pages = pages(env_or("ATTNSCOPE_BENCH_PAGES", "scattered"), "ATTNSCOPE_BENCH_PAGES");
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (starts_with(a, "--attnscope_set=")) {
      o.set = a + std::strlen("--attnscope_set=");
    } else if (std::strcmp(a, "--attnscope_hot") == 0) {
      o.hot = true;
    } else if (starts_with(a, "--attnscope_hot=")) {
      o.hot = parse_switch(a + std::strlen("--attnscope_hot="), "--attnscope_hot");
    } else if (starts_with(a, "--attnscope_flush_mib=")) {
      o.flush_bytes = flush_mib(a + std::strlen("--attnscope_flush_mib="), "--attnscope_flush_mib");
    } else if (starts_with(a, "--attnscope_flush=")) {
      o.flush_by_write = flush_mode(a + std::strlen("--attnscope_flush="), "--attnscope_flush");
    } else if (starts_with(a, "--attnscope_timeout_s=")) {
      o.timeout_s = timeout_s(a + std::strlen("--attnscope_timeout_s="), "--attnscope_timeout_s");
    } else if (starts_with(a, "--attnscope_page_size=")) {
      o.page_size = page_size(a + std::strlen("--attnscope_page_size="), "--attnscope_page_size");
    } else if (starts_with(a, "--attnscope_pages=")) {
      o.shuffle_pages = pages(a + std::strlen("--attnscope_pages="), "--attnscope_pages");
    } else if (starts_with(a, "--attnscope_splits=")) {
      o.splits = splits(a + std::strlen("--attnscope_splits="), "--attnscope_splits");
    } else if (starts_with(a, "--attnscope_impl=")) {
      o.filter = gpu::NameFilter(a + std::strlen("--attnscope_impl="));
    } else if (starts_with(a, "--attnscope")) {
      throw std::invalid_argument(std::string("unknown option '") + a + "' (see --help)");
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  if (o.set != "quick" && o.set != "default" && o.set != "full" && o.set != "tune")
    throw std::invalid_argument("unknown benchmark set '" + o.set +
                                "' (expected quick, default, full or tune)");
  if (o.set == "tune" && o.splits > 0)
    throw std::invalid_argument(
        "--attnscope_splits does not apply to the tune set, which times every split count");
  return o;
}

bool has_flag(int argc, char** argv, const char* flag, const char* env) {
  const std::string prefix = std::string("--") + flag;
  for (int i = 1; i < argc; ++i)
    if (argv[i] == prefix || starts_with(argv[i], (prefix + "=").c_str())) return true;
  return std::getenv(env) != nullptr;  // Google Benchmark reads BENCHMARK_<FLAG> as well
}

void print_help() {
  benchmark::PrintDefaultHelp();
  std::cout
      << "attnscope options (before Google Benchmark's; environment variables too):\n"
         "  --attnscope_set=quick|default|full|tune  (ATTNSCOPE_BENCH_SET)\n"
         "  --attnscope_hot                     (ATTNSCOPE_BENCH_HOT=1)\n"
         "  --attnscope_flush_mib=N             (ATTNSCOPE_BENCH_FLUSH_MIB)\n"
         "  --attnscope_flush=read|write        (ATTNSCOPE_BENCH_FLUSH) evict L2 by reading the\n"
         "                                      flush buffer (default: L2 left clean) or by\n"
         "                                      overwriting it (dirty lines written back in the\n"
         "                                      timed region)\n"
         "  --attnscope_timeout_s=S             (ATTNSCOPE_BENCH_TIMEOUT_S)\n"
         "  --attnscope_impl=GLOB[,GLOB...]     (ATTNSCOPE_BENCH_IMPL) implementations to time;\n"
         "                                      <family>.unfused names a family's unfused path\n"
         "  --attnscope_splits=N                (ATTNSCOPE_BENCH_SPLITS) window splits asked of\n"
         "                                      every launch (pv, fused, split_kv); 0: their own\n"
         "  --attnscope_page_size=N             (ATTNSCOPE_BENCH_PAGE_SIZE) positions a page of\n"
         "                                      the paged shapes (16)\n"
         "  --attnscope_pages=scattered|consecutive  (ATTNSCOPE_BENCH_PAGES) a sequence's pages\n"
         "                                      anywhere in the cache, or one after another\n";
}

}  // namespace

namespace attnscope {

int bench_main(int argc, char** argv) {
  Options options;
  try {
    options = parse_options(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "bench_attention: " << e.what() << "\n";
    return 2;
  }
  const bool gpu_present = gpu::gpu_available();
  // Listing needs no measurement (Initialize below consumes the flag, so look for it first).
  bool listing = false;
  for (int i = 1; i < argc; ++i)
    listing = listing || (starts_with(argv[i], "--benchmark_list_tests") &&
                          std::strcmp(argv[i], "--benchmark_list_tests=false") != 0);

  // Defaults for GPU timing: each iteration is timed on its own, so a short minimum time with
  // many repetitions gives the median and the spread without hours of flushes and syncs.
  std::vector<std::string> extra;
  if (!has_flag(argc, argv, "benchmark_repetitions", "BENCHMARK_REPETITIONS"))
    extra.push_back(gpu_present ? "--benchmark_repetitions=10" : "--benchmark_repetitions=1");
  if (!has_flag(argc, argv, "benchmark_min_time", "BENCHMARK_MIN_TIME"))
#if defined(ATTNSCOPE_BENCHMARK_MIN_TIME_SUFFIX)
    extra.push_back("--benchmark_min_time=0.01s");
#else
    extra.push_back("--benchmark_min_time=0.01");
#endif
  if (!has_flag(argc, argv, "benchmark_display_aggregates_only",
                "BENCHMARK_DISPLAY_AGGREGATES_ONLY") &&
      !has_flag(argc, argv, "benchmark_report_aggregates_only", "BENCHMARK_REPORT_AGGREGATES_ONLY"))
    extra.push_back("--benchmark_display_aggregates_only=true");
  std::vector<char*> args(argv, argv + argc);
  for (std::string& e : extra) args.push_back(e.data());
  int n = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&n, args.data(), print_help);
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;

  Harness& h = Harness::instance();
  try {
    h.init(options, !listing);
  } catch (const std::exception& e) {
    std::cerr << "bench_attention: GPU set-up failed: " << e.what() << "\n";
    return 1;
  }
  h.add_context();
  if (!listing) {
    if (h.gpu())
      std::cerr << "bench_attention: " << h.describe() << "\n";
    else
      std::cerr << "bench_attention: not run: " << h.no_gpu_reason()
                << ". Every benchmark is skipped with this reason.\n";
  }

  const std::vector<BenchCase> cases =
      options.set == "tune"
          ? make_tuning_cases(attnscope::bench_shapes("default"), options.filter)
          : make_cases(attnscope::bench_shapes(options.set), options.filter, options);
  if (cases.empty()) {
    std::cerr << "bench_attention: no registered implementation matches --attnscope_impl\n";
    return 2;
  }
  for (const BenchCase& c : cases) {
    benchmark::RegisterBenchmark(
        c.name(options.hot).c_str(),
        [c](benchmark::State& state) { attnscope::bench::run_case(state, c); })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  const std::size_t ran = benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  // A filter that selects nothing is a mistake, not an empty result (listing included).
  if (ran == 0) {
    std::cerr << "bench_attention: no benchmark matches the filter (--benchmark_filter, "
                 "--attnscope_impl, --attnscope_set); nothing was run\n";
    return 2;
  }
  if (!h.hung_in().empty()) {
    // The output files are complete; releasing GPU memory now would wait on the hung kernel.
    std::cerr << "bench_attention: the GPU hung in " << h.hung_in()
              << "; the benchmarks after it were skipped\n";
    std::cout.flush();
    std::fflush(nullptr);
    std::_Exit(3);
  }
  return 0;
}

}  // namespace attnscope
