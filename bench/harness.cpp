#include "harness.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace attnscope::bench {

namespace {

constexpr std::int64_t kMiB = std::int64_t(1) << 20;
constexpr std::int64_t kGiB = std::int64_t(1) << 30;

// Warm-up before each run of a benchmark: at least kWarmupMin launches and kWarmupMs of GPU
// time (clocks ramp up, code and the TLB are loaded), at most kWarmupMax launches.
constexpr int kWarmupMin = 3;
constexpr int kWarmupMax = 50;
constexpr double kWarmupMs = 5.0;
// A stream hold that outlasts this much GPU time was never released: the host stalled between
// hold and release (or threw), and the timed region cannot be trusted.
constexpr double kHoldTimeoutMs = 1000.0;
// Device memory left free beyond a problem's own needs (runtime, L2 flush, allocator slack).
constexpr std::int64_t kMemoryMargin = 256 * kMiB;

std::string gib(double bytes) {
  char s[32];
  std::snprintf(s, sizeof(s), "%.2f GiB", bytes / double(kGiB));
  return s;
}

std::string fixed(double v, int digits) {
  char s[64];
  std::snprintf(s, sizeof(s), "%.*f", digits, v);
  return s;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::vector<const gpu::Implementation*> resolve(const std::vector<std::string>& names) {
  std::vector<const gpu::Implementation*> out;
  for (const std::string& n : names) out.push_back(&gpu::implementation(n));
  return out;
}

}  // namespace

double Traffic::read_bytes() const {
  double n = 0.0;
  for (const BufferTraffic& b : buffers) n += b.written ? 0.0 : b.bytes;
  return n;
}

double Traffic::written_bytes() const {
  double n = 0.0;
  for (const BufferTraffic& b : buffers) n += b.written ? b.bytes : 0.0;
  return n;
}

std::string Traffic::describe() const {
  std::string reads, writes;
  for (const BufferTraffic& b : buffers) {
    std::string& list = b.written ? writes : reads;
    list += (list.empty() ? "" : ", ") + b.name;
  }
  return "reads " + reads + "; writes " + writes;
}

namespace {

// The sizes of a problem's tensors as the paths move them.
struct TensorBytes {
  double q, kv, scores, out, lse;  // kv: the K (or V) positions some query attends
  double v_rows;                   // the V rows' bytes (a latent cache's first v_dim channels)
  double kv_scales;                // an fp8 cache's scales of K (or V); 0 otherwise
  double dot_flops, pv_flops, softmax_flops;
  TensorBytes(const Problem& p, const std::vector<std::int64_t>& seq_lens) {
    const double in = double(size_of(p.input));
    const double kv_elem = double(size_of(p.kv_dtype()));
    const std::int64_t span = p.window + p.q_len - 1;
    // The positions some query of each sequence attends: its span, cut at its start.
    double positions = double(p.batch) * double(span);
    if (!seq_lens.empty()) {
      positions = 0.0;
      for (std::int64_t len : seq_lens) positions += double(len < span ? len : span);
    }
    q = double(p.q_elems()) * in;
    kv = positions * p.kv_heads * p.head_dim * kv_elem;         // a latent cache: the one cache
    v_rows = positions * p.kv_heads * p.value_dim() * kv_elem;  // what P V reads of it
    // fp32 scales: one a tensor, a KV head, or a cache row of the positions read.
    kv_scales = !p.kv_fp8                      ? 0.0
                : p.kv_scale == KvScale::token ? positions * p.kv_heads * 4.0
                : p.kv_scale == KvScale::head  ? p.kv_heads * 4.0
                                               : 4.0;
    scores = double(p.score_elems()) * sizeof(float);  // fp32 scores or probabilities
    out = double(p.out_elems()) * double(size_of(p.output));
    lse = double(p.lse_elems()) * sizeof(float);
    // One multiply-add per attended score and dim; max, subtract, exp, sum, scale per score.
    const double attended = double(p.score_elems()) * positions / (double(p.batch) * double(span));
    dot_flops = 2.0 * attended * p.head_dim;
    pv_flops = 2.0 * attended * p.value_dim();
    softmax_flops = 5.0 * attended;
  }
};

BufferTraffic reads(std::string name, double bytes) {
  return {std::move(name), bytes, false};
}
BufferTraffic writes(std::string name, double bytes) {
  return {std::move(name), bytes, true};
}

}  // namespace

Traffic traffic(Path path, const Problem& p, const std::vector<std::int64_t>& seq_lens) {
  const TensorBytes t(p, seq_lens);
  switch (path) {
    case Path::qk:  // q . K over the window
      return {{reads("q", t.q), reads("k", t.kv), writes("scores", t.scores)}, t.dot_flops};
    case Path::softmax:  // scaled softmax of each row (the fewest bytes: the scores read once)
      return {{reads("scores", t.scores), writes("probs", t.scores), writes("lse", t.lse)},
              t.softmax_flops};
    case Path::pv:  // P . V over the window
      return {{reads("probs", t.scores), reads("v", t.v_rows), writes("out", t.out)}, t.pv_flops};
    case Path::unfused: {  // the three stages in sequence
      Traffic all;
      for (Path stage : {Path::qk, Path::softmax, Path::pv}) {
        const Traffic s = traffic(stage, p, seq_lens);
        for (const BufferTraffic& b : s.buffers)
          all.buffers.push_back({std::string(to_string(stage)) + "." + b.name, b.bytes, b.written});
        all.flops += s.flops;
      }
      return all;
    }
    case Path::fused:
    case Path::split_kv: {  // q, K and V read once; the split partials stay in L2 or are not
                            // counted
      // A latent cache is read once, as K and as V.
      Traffic f{p.latent ? std::vector<BufferTraffic>{reads("q", t.q), reads("latent", t.kv)}
                         : std::vector<BufferTraffic>{reads("q", t.q), reads("k", t.kv),
                                                      reads("v", t.kv)},
                t.dot_flops + t.pv_flops + t.softmax_flops};
      if (p.kv_fp8) {  // an fp8 cache's scales
        f.buffers.push_back(reads("k_scale", t.kv_scales));
        if (!p.latent) f.buffers.push_back(reads("v_scale", t.kv_scales));
      }
      f.buffers.push_back(writes("out", t.out));
      f.buffers.push_back(writes("lse", t.lse));
      return f;
    }
  }
  return {};
}

unsigned outputs_of(Path path) {
  switch (path) {
    case Path::qk:
      return gpu::kScores;
    case Path::softmax:
      return gpu::kProbs | gpu::kLse;
    case Path::pv:
      return gpu::kOut;
    case Path::unfused:
      return gpu::kAllOutputs;
    case Path::fused:
    case Path::split_kv:
      return gpu::kOut | gpu::kLse;
  }
  return gpu::kAllOutputs;
}

std::string BenchCase::name(bool hot) const {
  const Problem& p = problem;
  std::ostringstream s;
  s << to_string(path) << "/impl:" << impl << "/acc:" << to_string(p.accum)
    << "/in:" << to_string(p.input) << "/d:" << p.head_dim << "/b:" << p.batch
    << "/qh:" << p.q_heads << "/kvh:" << p.kv_heads << "/q:" << p.q_len << "/window:" << p.window
    << "/layout:" << to_string(layout.kind);
  if (layout.kind == KvLayoutKind::paged) {
    s << "/page:" << layout.page_size;
    if (!layout.shuffle_pages) s << "/pages:consecutive";
  }
  if (p.output != p.input) s << "/out:" << to_string(p.output);
  if (p.latent) s << "/latent:v" << p.value_dim();
  if (p.kv_fp8) s << "/kv:" << to_string(*p.kv_fp8) << "-" << to_string(p.kv_scale);
  if (ragged_min > 0) s << "/ragged:" << ragged_min;
  if (splits > 0) s << "/splits:" << splits;
  if (hot) s << "/l2:hot";
  return s.str();
}

Harness& Harness::instance() {
  static Harness h;
  return h;
}

void Harness::init(const Options& options, bool measure) {
  options_ = options;
  gpu_ = gpu::gpu_available(&no_gpu_reason_);
  if (!gpu_) return;
  device_ = gpu::device_info();
  if (!measure) return;
  stream_ = std::make_unique<gpu::Stream>();
  hold_ = std::make_unique<gpu::StreamHold>();
  const std::int64_t l2 = device_.l2_bytes > 0 ? device_.l2_bytes : 64 * kMiB;
  flush_ = gpu::DeviceBuffer(
      static_cast<std::size_t>(options_.flush_bytes > 0 ? options_.flush_bytes : 2 * l2));
  flush_sink_ = gpu::DeviceBuffer(16);
  // Written once, so that a read flush reads defined memory; the write-back of these lines
  // happens in the first flush, before any timed region.
  flush_.fill_async(0, stream());
  measure_peak();
}

// Peak: a device-to-device copy far larger than L2, timed with events; bandwidth counts the
// bytes read and the bytes written, as the benchmarks' byte counts do.
void Harness::measure_peak() {
  constexpr int kWarm = 2;
  peak_reps_ = 10;
  const std::int64_t quarter_free = gpu::free_device_bytes() / 4;
  peak_copy_bytes_ =
      static_cast<std::size_t>(std::min<std::int64_t>(kGiB, quarter_free) / kMiB * kMiB);
  if (peak_copy_bytes_ == 0)
    throw gpu::GpuError("too little free device memory to measure the copy bandwidth");
  gpu::DeviceBuffer src(peak_copy_bytes_), dst(peak_copy_bytes_);
  src.fill_async(0x3c, stream());
  dst.fill_async(0, stream());
  gpu::EventTimer timer(stream());
  // The median time of peak_reps_ runs of `launch`, after kWarm untimed ones, each timed as the
  // benchmarks are: the stream held until the launch is enqueued, so launch latency stays out. A
  // run whose hold ended by its timeout (the host's delay in it) is run again, up to 3 times.
  auto median_ms = [&](const auto& launch) {
    for (int i = 0; i < kWarm; ++i) launch();
    std::vector<double> ms;
    for (int i = 0, again = 0; i < peak_reps_; ++i) {
      hold_->hold(stream(), kHoldTimeoutMs);
      try {
        timer.start();
        launch();
        timer.stop();
      } catch (...) {
        hold_->release();
        throw;
      }
      hold_->release();
      const double t = timer.elapsed_ms();
      if (hold_->timed_out() && again < 3) {
        ++again;
        --i;
        continue;
      }
      ms.push_back(t);
    }
    return median(ms);
  };
  peak_gbps_ = 2.0 * double(peak_copy_bytes_) /
               (median_ms([&] { dst.copy_from_async(src, stream()); }) * 1e-3) / 1e9;

  // Streaming reads of the same buffer: the ceiling of a kernel that mostly reads (decode
  // attention reads K and V and writes little). The probe is tried in every shape
  // gpu::read_shapes() lists; the peak is the best shape's median.
  gpu::DeviceBuffer sink(16);
  const double read_bytes = double(peak_copy_bytes_ / 16 * 16);
  for (const gpu::ReadShape& shape : gpu::read_shapes()) {
    const double gbps =
        read_bytes / (median_ms([&] { gpu::read_async(src, sink, stream(), shape); }) * 1e-3) / 1e9;
    if (gbps > peak_read_gbps_) {
      peak_read_gbps_ = gbps;
      peak_read_shape_ = std::to_string(shape.loads) + " loads in flight a thread, " +
                         std::to_string(shape.blocks_per_sm) +
                         " blocks of 256 threads a multiprocessor";
    }
    ++read_shapes_tried_;
  }

  // Tensor-core throughput: the probe at 1 to 4 blocks of 8 warps a multiprocessor, the best
  // median; the ceiling of a compute-bound path such as latent (MLA) decode with many heads.
  if (gpu::mma_probe_available()) {
    for (int per_sm : {1, 2, 4}) {
      const int blocks = device_.multiprocessors * per_sm;
      const double flops =
          gpu::mma_probe_flops(blocks, kMmaProbeIters) /
          (median_ms([&] { gpu::mma_probe_async(sink, blocks, kMmaProbeIters, stream()); }) * 1e-3);
      if (flops > peak_mma_flops_) {
        peak_mma_flops_ = flops;
        mma_probe_blocks_ = blocks;
      }
    }
  }
}

void Harness::add_context() const {
  benchmark::AddCustomContext("attnscope_platform", gpu::platform_name());
  benchmark::AddCustomContext("bench_set", options_.set);
  if (!gpu_) {
    benchmark::AddCustomContext("gpu", "none: " + no_gpu_reason_);
    return;
  }
  benchmark::AddCustomContext("gpu", device_.name);
  // One GPU is timed a run: the current device (the first visible one; CUDA_VISIBLE_DEVICES or
  // HIP_VISIBLE_DEVICES choose another).
  benchmark::AddCustomContext("gpu_ordinal", std::to_string(device_.ordinal));
  benchmark::AddCustomContext("gpu_pci_bus_id", device_.pci_bus_id);
  benchmark::AddCustomContext("gpus_visible", std::to_string(device_.visible));
  benchmark::AddCustomContext("gpu_arch", device_.arch);
  benchmark::AddCustomContext("gpu_multiprocessors", std::to_string(device_.multiprocessors));
  benchmark::AddCustomContext("gpu_l2_bytes", std::to_string(device_.l2_bytes));
  benchmark::AddCustomContext("gpu_memory_bytes", std::to_string(device_.global_bytes));
  benchmark::AddCustomContext("gpu_runtime_version", std::to_string(device_.runtime_version));
  benchmark::AddCustomContext("gpu_driver_version", std::to_string(device_.driver_version));
  if (peak_gbps_ > 0.0) {
    benchmark::AddCustomContext("peak_copy_GBps", fixed(peak_gbps_, 1));
    benchmark::AddCustomContext(
        "peak_copy_method", "median of " + std::to_string(peak_reps_) +
                                " device-to-device copies of " + std::to_string(peak_copy_bytes_) +
                                " bytes timed with events, the stream held as for a benchmark; "
                                "(read + write bytes) / time");
  }
  if (peak_read_gbps_ > 0.0) {
    benchmark::AddCustomContext("peak_read_GBps", fixed(peak_read_gbps_, 1));
    benchmark::AddCustomContext(
        "peak_read_method",
        "best of " + std::to_string(read_shapes_tried_) + " probe shapes, each the median of " +
            std::to_string(peak_reps_) + " streaming reads of " + std::to_string(peak_copy_bytes_) +
            " bytes (16-byte loads, nothing written) timed with events, the stream held as for a "
            "benchmark; "
            "bytes read / time; best shape: " +
            peak_read_shape_ +
            ". pct_of_read_peak: a path's declared bytes (reads and writes) per "
            "second over it");
  }
  if (peak_mma_flops_ > 0.0) {
    benchmark::AddCustomContext("peak_mma_TFLOPs", fixed(peak_mma_flops_ / 1e12, 1));
    benchmark::AddCustomContext(
        "peak_mma_method",
        "best of 1, 2 and 4 blocks of 256 threads a multiprocessor, each the median of " +
            std::to_string(peak_reps_) + " runs of " + std::to_string(gpu::kMmaProbeChains) +
            " independent mma.sync.m16n8k16 (fp16 operands, fp32 accumulation) a warp, " +
            std::to_string(kMmaProbeIters) + " rounds; best: " + std::to_string(mma_probe_blocks_) +
            " blocks. pct_of_mma_peak: a path's declared FLOPs per second over it");
  }
  benchmark::AddCustomContext("l2_mode", options_.hot ? "hot" : "cold");
  benchmark::AddCustomContext("l2_flush_bytes",
                              options_.hot ? "0" : std::to_string(flush_.bytes()));
  benchmark::AddCustomContext("l2_flush", options_.hot ? "none" : flush_description());
  benchmark::AddCustomContext(
      "timing", "device events around the timed launches on one stream; " +
                    std::to_string(kWarmupMin) + " to " + std::to_string(kWarmupMax) +
                    " warm-up launches (at least " + fixed(kWarmupMs, 0) +
                    " ms) per run; the stream is held by a kernel polling a host flag until "
                    "every launch of the timed region is enqueued, so launch latency stays out" +
                    (options_.hot ? "" : "; L2 flushed before each iteration, outside it"));
  benchmark::AddCustomContext(
      "counters",
      "bytes (bytes_read + bytes_written): the fewest bytes the path must move, declared per "
      "buffer "
      "(traffic_<path>); GB/s, FLOP/s, pct_of_peak (of peak_copy_GBps) and pct_of_read_peak (of "
      "peak_read_GBps) are rate counters over the GPU time");
  for (Path path : {Path::qk, Path::softmax, Path::pv, Path::unfused, Path::fused, Path::split_kv})
    benchmark::AddCustomContext("traffic_" + std::string(to_string(path)),
                                traffic(path, Problem{}).describe());
}

std::string Harness::describe() const {
  if (!gpu_) return std::string("no GPU: ") + no_gpu_reason_;
  std::ostringstream s;
  s << device_.name << " (GPU " << device_.ordinal << " of " << device_.visible << " visible, "
    << device_.pci_bus_id << ", timed alone; " << device_.arch << ", " << device_.multiprocessors
    << " multiprocessors, L2 " << device_.l2_bytes / kMiB << " MiB, "
    << gib(double(device_.global_bytes)) << ")";
  if (peak_gbps_ > 0.0)
    s << "; copy bandwidth " << fixed(peak_gbps_, 1) << " GB/s (median of " << peak_reps_ << " x "
      << peak_copy_bytes_ / kMiB << " MiB device-to-device copies)";
  if (peak_read_gbps_ > 0.0) s << "; read bandwidth " << fixed(peak_read_gbps_, 1) << " GB/s";
  s << "; L2 " << (options_.hot ? "hot" : "cold (flush: " + flush_description() + ")") << "; set "
    << options_.set;
  return s.str();
}

void Harness::flush_l2() {
  if (options_.flush_by_write)
    flush_.fill_async(0, stream());
  else
    gpu::read_async(flush_, flush_sink_, stream(), gpu::ReadShape{});
}

std::string Harness::flush_description() const {
  return std::to_string(flush_.bytes() / kMiB) + " MiB " +
         (options_.flush_by_write ? "overwritten (L2 left dirty: its write-back falls in the timed "
                                    "region)"
                                  : "read (L2 left clean)");
}

gpu::DeviceProblem& Harness::problem(const Problem& p, const KvLayoutSpec& layout,
                                     std::size_t workspace_bytes,
                                     const std::vector<std::int64_t>& seq_lens) {
  std::string key = p.tag() + "/" + layout.tag();
  for (std::int64_t len : seq_lens) key += "/" + std::to_string(len);
  if (problem_ && key == problem_key_) return *problem_;
  problem_.reset();  // free the previous shape before measuring what is free
  problem_key_.clear();
  const double need = double(gpu::DeviceProblem::device_bytes(p, layout) + workspace_bytes);
  const std::int64_t free_bytes = gpu::free_device_bytes();
  if (need + double(kMemoryMargin) > double(free_bytes))
    throw NotRunnable("does not fit in device memory: needs " + gib(need) +
                      " (inputs, outputs, workspace) plus a " + gib(double(kMemoryMargin)) +
                      " margin; " + gib(double(free_bytes)) + " free of " +
                      gib(double(device_.global_bytes)));
  problem_ = std::make_unique<gpu::DeviceProblem>(p, layout, options_.seed, seq_lens);
  problem_key_ = key;
  return *problem_;
}

void run_case(benchmark::State& state, const BenchCase& c) {
  Harness& h = Harness::instance();
  if (!h.gpu()) {
    state.SkipWithError(("not run: " + h.no_gpu_reason()).c_str());
    return;
  }
  if (!h.hung_in().empty()) {
    state.SkipWithError(("not run: the GPU hung in " + h.hung_in()).c_str());
    return;
  }
  try {
    const Problem& p = c.problem;
    const std::vector<const gpu::Implementation*> before = resolve(c.before);
    const std::vector<const gpu::Implementation*> timed = resolve(c.timed);
    std::vector<const gpu::Implementation*> all = before;
    all.insert(all.end(), timed.begin(), timed.end());
    gpu::LaunchContext ctx;
    ctx.multiprocessors = h.device().multiprocessors;
    ctx.splits = c.splits;
    ctx.seq_lens = c.seq_lens.empty() ? nullptr : c.seq_lens.data();
    std::size_t workspace = 0;
    for (const gpu::Implementation* impl : all) {
      const std::string why = impl->why_unsupported(p, c.layout);
      if (!why.empty()) throw NotRunnable("unsupported by " + impl->name + ": " + why);
      if (!c.seq_lens.empty() && !impl->takes_seq_lens)
        throw NotRunnable("unsupported by " + impl->name + ": takes no sequence lengths (ragged)");
      workspace = std::max(workspace, impl->workspace(p, ctx));
    }
    gpu::DeviceProblem& dp = h.problem(p, c.layout, workspace, c.seq_lens);

    // The implementations share one workspace: a first pass grows it to the largest need, so
    // the pointers the second pass hands out stay valid.
    for (const gpu::Implementation* impl : all) (void)dp.args(*impl, c.splits);
    auto args_of = [&](const std::vector<const gpu::Implementation*>& impls) {
      std::vector<gpu::StageArgs> v;
      for (const gpu::Implementation* impl : impls) {
        gpu::StageArgs a = dp.args(*impl, c.splits);
        a.stream = h.stream();
        v.push_back(a);
      }
      return v;
    };
    const std::vector<gpu::StageArgs> before_args = args_of(before);
    const std::vector<gpu::StageArgs> timed_args = args_of(timed);
    for (std::size_t i = 0; i < before.size(); ++i) before[i]->launch(before_args[i]);

    const bool cold = !h.options().hot;
    gpu::EventTimer timer(h.stream());
    // One launch of the timed kernels, unheld, first: loading a kernel's module on its first
    // launch (CUDA's lazy loading) waits for the device to go idle, which a held stream never
    // does until the hold's timeout.
    for (std::size_t i = 0; i < timed.size(); ++i) timed[i]->launch(timed_args[i]);
    gpu::synchronize();
    gpu::StreamHold& hold = h.hold();
    int hold_timeouts = 0;  // timed regions whose hold ended by its timeout
    auto timed_run_ms = [&] {
      if (cold) h.flush_l2();
      hold.hold(h.stream(), kHoldTimeoutMs);
      try {
        timer.start();
        for (std::size_t i = 0; i < timed.size(); ++i) timed[i]->launch(timed_args[i]);
        timer.stop();
      } catch (...) {
        hold.release();
        throw;
      }
      hold.release();
      const double ms = timer.elapsed_ms(h.options().timeout_s);
      if (hold.timed_out()) ++hold_timeouts;
      return double(ms);
    };
    double warm_ms = 0.0;
    for (int i = 0; i < kWarmupMax && (i < kWarmupMin || warm_ms < kWarmupMs); ++i)
      warm_ms += timed_run_ms();

    hold_timeouts = 0;  // the warm-up's do not count
    unsigned outputs = outputs_of(c.path);
    for (const gpu::Implementation* impl : timed)
      if (is_single_pass(impl->path) && !impl->writes_lse) outputs &= ~unsigned(gpu::kLse);
    dp.poison_outputs(outputs);
    gpu::synchronize();
    for (auto _ : state) state.SetIterationTime(timed_run_ms() * 1e-3);
    gpu::synchronize();
    // Reported after the timed loop, so that every repetition runs the same iterations.
    if (hold_timeouts > 0)
      throw NotRunnable(std::to_string(hold_timeouts) + " of " +
                        std::to_string(state.iterations()) +
                        " timed regions started before the host had enqueued them (the stream hold "
                        "ended by its " +
                        fixed(kHoldTimeoutMs, 0) +
                        " ms timeout): their times include the "
                        "host's enqueueing");
    const std::int64_t nan = dp.nan_count(outputs);
    if (nan > 0)
      throw NotRunnable(std::to_string(nan) +
                        " output values are NaN after the timed runs (outputs are poisoned with "
                        "NaN before them): elements left unwritten, or NaN computed");

    // Rates are Google Benchmark's: a counter's value per iteration over the manual (GPU) time.
    const Traffic k = traffic(c.path, p, c.seq_lens);
    using benchmark::Counter;
    state.counters["bytes"] = k.bytes();
    state.counters["bytes_read"] = k.read_bytes();
    state.counters["bytes_written"] = k.written_bytes();
    state.counters["GB/s"] = Counter(k.bytes() / 1e9, Counter::kIsIterationInvariantRate);
    state.counters["FLOP/s"] = Counter(k.flops, Counter::kIsIterationInvariantRate);
    state.counters["pct_of_peak"] =
        Counter(h.peak_gbps() > 0.0 ? 100.0 * k.bytes() / 1e9 / h.peak_gbps() : 0.0,
                Counter::kIsIterationInvariantRate);
    state.counters["pct_of_read_peak"] =
        Counter(h.peak_read_gbps() > 0.0 ? 100.0 * k.bytes() / 1e9 / h.peak_read_gbps() : 0.0,
                Counter::kIsIterationInvariantRate);
    if (h.peak_mma_flops() > 0.0)
      state.counters["pct_of_mma_peak"] =
          Counter(100.0 * k.flops / h.peak_mma_flops(), Counter::kIsIterationInvariantRate);
    // The window splits of the last timed launch (its order's), for tuning reports.
    state.counters["splits"] = timed.back()->order(p, ctx).splits;
    if (c.timed.size() > 1) {
      std::string label;
      for (const std::string& n : c.timed) label += (label.empty() ? "" : "+") + n;
      state.SetLabel(label);
    }
  } catch (const gpu::GpuTimeout& e) {
    h.mark_hung(c.name(h.options().hot));
    state.SkipWithError(
        (std::string("GPU hang: ") + e.what() + "; no further benchmark runs in this process")
            .c_str());
  } catch (const NotRunnable& e) {
    state.SkipWithError(e.what());
  } catch (const std::exception& e) {
    state.SkipWithError((std::string("error: ") + e.what()).c_str());
  }
}

}  // namespace attnscope::bench
