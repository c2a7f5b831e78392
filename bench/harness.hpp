// The GPU benchmark harness: every registered stage and path timed with device events on one
// stream, cold L2 by default, outputs poisoned before the timed runs and checked after them,
// and each benchmark's fewest bytes and FLOPs turned into bandwidth and percent of the copy
// bandwidth the harness measures at start-up.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "attnscope/core/layout.hpp"
#include "attnscope/core/path.hpp"
#include "attnscope/core/problem.hpp"
#include "attnscope/kernels/device_problem.hpp"
#include "attnscope/kernels/registry.hpp"
#include "attnscope/kernels/runtime.hpp"

namespace attnscope::bench {

// What one benchmark times is a Path: a single stage, a family's three stages in sequence
// (unfused), or a single-pass path.

// What a path moves, declared buffer by buffer as nvbench does: each input it reads and each
// output it writes, once (the fewest bytes the path must move), and its floating-point
// operations. The benchmarks report the totals as Google Benchmark rate counters.
struct BufferTraffic {
  std::string name;  // "k", "scores", ...; the unfused path's carry their stage: "qk.k"
  double bytes = 0.0;
  bool written = false;  // an output; else an input
};
struct Traffic {
  std::vector<BufferTraffic> buffers;
  double flops = 0.0;
  double read_bytes() const;
  double written_bytes() const;
  double bytes() const { return read_bytes() + written_bytes(); }
  // "reads q, k; writes scores" (names only, for the context).
  std::string describe() const;
};
// seq_lens: a ragged batch's lengths (empty: every sequence seq_len long); K and V count the
// positions each sequence attends.
Traffic traffic(Path path, const Problem& p, const std::vector<std::int64_t>& seq_lens = {});
// The StageOutput flags a path writes: poisoned before its timed runs, checked after them.
unsigned outputs_of(Path path);

// One benchmark: a path of one implementation (a family for unfused) on one problem and layout.
struct BenchCase {
  Path path = Path::fused;
  std::string impl;                 // e.g. "attnscope.fused"; the family ("attnscope") if unfused
  std::vector<std::string> timed;   // implementations launched in the timed region, in order
  std::vector<std::string> before;  // run once, untimed: they make the inputs (softmax, pv)
  Problem problem;
  KvLayoutSpec layout;
  int splits = 0;  // window splits requested of every timed launch; 0: the implementation chooses
  std::vector<std::int64_t> seq_lens;  // a ragged batch's lengths; empty: not ragged
  std::int64_t ragged_min = 0;         // the shortest length a ragged batch was drawn from
  // e.g.
  // fused/impl:attnscope.fused/acc:fp32/in:fp16/d:128/b:1/qh:32/kvh:8/q:1/window:4096/layout:bhsd
  std::string name(bool hot) const;
};

struct Options {
  bool hot = false;              // keep L2 warm between iterations (no flush)
  std::string set = "default";   // quick, default or full
  std::int64_t flush_bytes = 0;  // 0: twice the L2 size
  // How the flush evicts L2: by reading the flush buffer (L2 left holding clean lines only) or by
  // overwriting it (L2 left holding dirty lines, written back to memory inside the next timed
  // region: memory traffic no benchmark declares, which the read peak's probe does not pay).
  bool flush_by_write = false;
  double timeout_s = 10.0;  // a timed run longer than this is taken for a hung kernel
  std::uint64_t seed = 20261126;
  gpu::NameFilter filter;  // implementations to time (--attnscope_impl); empty: all
  int splits = 0;          // window splits requested of every launch (--attnscope_splits); 0: own
  int page_size = 16;      // positions a page of the paged shapes (--attnscope_page_size)
  bool shuffle_pages = true;  // --attnscope_pages=scattered|consecutive
};

// A benchmark that cannot run on this device: skipped with the message.
class NotRunnable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Harness {
 public:
  static Harness& instance();

  // Finds the GPU; unless `measure` is false (listing only), measures the copy bandwidth and
  // allocates the L2 flush buffer. Without a GPU it records why, and every benchmark skips.
  void init(const Options& options, bool measure);
  // Records the device, the peak and the timing rules in the benchmark context.
  void add_context() const;
  // One line for the log: device, peak, L2 mode.
  std::string describe() const;

  bool gpu() const { return gpu_; }
  const std::string& no_gpu_reason() const { return no_gpu_reason_; }
  const Options& options() const { return options_; }
  const gpu::DeviceInfo& device() const { return device_; }
  double peak_gbps() const { return peak_gbps_; }            // device-to-device copy
  double peak_read_gbps() const { return peak_read_gbps_; }  // streaming read
  // The tensor-core probe's FLOP/s (mma.sync, fp16 operands, fp32 accumulation); 0 where the
  // platform has none.
  double peak_mma_flops() const { return peak_mma_flops_; }
  void* stream() const { return stream_ ? stream_->handle() : nullptr; }
  // Holds the stream ahead of each timed region until its launches are enqueued.
  gpu::StreamHold& hold() { return *hold_; }

  // After a kernel that never ended, the device is unusable for this process: every later
  // benchmark skips, naming the one that hung, and the process must end without touching the
  // GPU again (freeing memory would wait for the hung kernel).
  void mark_hung(const std::string& benchmark) { hung_in_ = benchmark; }
  const std::string& hung_in() const { return hung_in_; }

  // Enqueues the eviction of L2 (cold mode) on the stream: a read of a buffer twice the L2 size,
  // or with Options::flush_by_write an overwrite of it.
  void flush_l2();
  // The flush as the context and the log name it.
  std::string flush_description() const;
  // The device-resident problem, made on first use and kept while consecutive benchmarks share
  // it (registration order groups them by shape). The previous one is freed first; throws
  // NotRunnable when the new one (plus `workspace_bytes`) does not fit in free device memory.
  gpu::DeviceProblem& problem(const Problem& p, const KvLayoutSpec& layout,
                              std::size_t workspace_bytes,
                              const std::vector<std::int64_t>& seq_lens = {});

 private:
  Harness() = default;
  void measure_peak();

  Options options_;
  bool gpu_ = false;
  std::string no_gpu_reason_;
  gpu::DeviceInfo device_;
  std::unique_ptr<gpu::Stream> stream_;
  std::unique_ptr<gpu::StreamHold> hold_;
  gpu::DeviceBuffer flush_;
  gpu::DeviceBuffer flush_sink_;  // the read flush's 16-byte result
  double peak_gbps_ = 0.0;
  double peak_read_gbps_ = 0.0;
  std::string peak_read_shape_;
  int read_shapes_tried_ = 0;
  double peak_mma_flops_ = 0.0;
  int mma_probe_blocks_ = 0;
  static constexpr int kMmaProbeIters = 2048;  // rounds of the tensor-core probe a warp
  std::size_t peak_copy_bytes_ = 0;
  int peak_reps_ = 0;
  std::string problem_key_;
  std::unique_ptr<gpu::DeviceProblem> problem_;
  std::string hung_in_;
};

// The body of every registered benchmark.
void run_case(benchmark::State& state, const BenchCase& c);

}  // namespace attnscope::bench
