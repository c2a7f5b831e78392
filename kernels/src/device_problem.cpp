#include "attnscope/kernels/device_problem.hpp"

namespace attnscope::gpu {

DeviceProblem::DeviceProblem(const AttentionInputs& in)
    : problem_(in.problem),
      kv_host_(in.layout.addressing()),
      q_(in.q.bytes()),
      // An fp8 cache goes up as its codes and scales; in.k and in.v hold its dequantized values.
      k_(in.problem.kv_fp8 ? in.k_cache.bytes() : in.k.bytes()),
      // A latent cache is one buffer: V is K's memory.
      v_(in.problem.latent   ? 0
         : in.problem.kv_fp8 ? in.v_cache.bytes()
                             : in.v.bytes()),
      k_scale_(in.k_scale.bytes()),
      v_scale_(in.problem.latent ? 0 : in.v_scale.bytes()),
      block_table_(in.layout.block_table().size() * sizeof(std::int32_t)),
      scores_(std::size_t(in.problem.score_elems()) * sizeof(float)),
      probs_(std::size_t(in.problem.score_elems()) * sizeof(float)),
      out_(std::size_t(in.problem.out_elems()) * size_of(in.problem.output)),
      lse_(std::size_t(in.problem.lse_elems()) * sizeof(float)),
      key_mask_(in.key_mask.size()) {
  multiprocessors_ = device_info().multiprocessors;
  if (!in.key_mask.empty() &&
      std::int64_t(in.key_mask.size()) != std::int64_t(in.problem.batch) * in.problem.seq_len)
    throw std::invalid_argument(
        "key mask: expected batch x seq_len = " +
        std::to_string(std::int64_t(in.problem.batch) * in.problem.seq_len) + " entries, got " +
        std::to_string(in.key_mask.size()));
  key_mask_.upload(in.key_mask.data(), in.key_mask.size());
  set_seq_lens(in.seq_lens);
  q_.upload(in.q.data(), in.q.bytes());
  const HostTensor& k = in.problem.kv_fp8 ? in.k_cache : in.k;
  const HostTensor& v = in.problem.kv_fp8 ? in.v_cache : in.v;
  if (in.problem.kv_fp8 && (k.dtype() != in.problem.kv_dtype() || v.dtype() != k.dtype() ||
                            in.k_scale.numel() < 1 || in.v_scale.numel() < 1))
    throw std::invalid_argument("fp8 cache: the inputs hold no codes of " +
                                std::string(to_string(in.problem.kv_dtype())) + " or no scales");
  k_.upload(k.data(), k.bytes());
  k_scale_.upload(in.k_scale.data(), in.k_scale.bytes());
  if (!in.problem.latent) {
    v_.upload(v.data(), v.bytes());
    v_scale_.upload(in.v_scale.data(), in.v_scale.bytes());
  }
  block_table_.upload(in.layout.block_table().data(), block_table_.bytes());
}

void DeviceProblem::set_seq_lens(const std::vector<std::int64_t>& lens) {
  if (lens.empty()) return;
  if (std::int64_t(lens.size()) != problem_.batch)
    throw std::invalid_argument("ragged batch: expected " + std::to_string(problem_.batch) +
                                " sequence lengths, got " + std::to_string(lens.size()));
  for (std::size_t b = 0; b < lens.size(); ++b)
    if (lens[b] < problem_.q_len || lens[b] > problem_.seq_len)
      throw std::invalid_argument("ragged batch: sequence " + std::to_string(b) + " has length " +
                                  std::to_string(lens[b]) + ", outside [q_len, seq_len] = [" +
                                  std::to_string(problem_.q_len) + ", " +
                                  std::to_string(problem_.seq_len) + "]");
  host_seq_lens_ = lens;
  seq_lens_ = DeviceBuffer(lens.size() * sizeof(std::int64_t));
  seq_lens_.upload(lens.data(), seq_lens_.bytes());
}

DeviceProblem::DeviceProblem(const Problem& p, const KvLayoutSpec& layout_spec, std::uint64_t seed,
                             std::vector<std::int64_t> seq_lens)
    : problem_(p), multiprocessors_(device_info().multiprocessors) {
  const KvLayout layout(p, layout_spec);  // validates the problem and the layout
  set_seq_lens(seq_lens);
  const std::size_t in_size = size_of(p.input);
  const std::size_t kv_size = size_of(p.kv_dtype());
  q_ = DeviceBuffer(std::size_t(p.q_elems()) * in_size);
  k_ = DeviceBuffer(std::size_t(layout.storage_elems()) * kv_size);
  if (!p.latent) v_ = DeviceBuffer(std::size_t(layout.storage_elems()) * kv_size);
  if (p.kv_fp8) {
    // The codes of N(0, 1) values (fill_normal), each scale the one they were made with.
    const std::vector<float> scales(std::size_t(fp8_scale_count(p, layout.storage_elems())),
                                    fp8_fill_scale(*p.kv_fp8));
    k_scale_ = DeviceBuffer(scales.size() * sizeof(float));
    k_scale_.upload(scales.data(), k_scale_.bytes());
    if (!p.latent) {
      v_scale_ = DeviceBuffer(scales.size() * sizeof(float));
      v_scale_.upload(scales.data(), v_scale_.bytes());
    }
  }
  block_table_ = DeviceBuffer(layout.block_table().size() * sizeof(std::int32_t));
  scores_ = DeviceBuffer(std::size_t(p.score_elems()) * sizeof(float));
  probs_ = DeviceBuffer(std::size_t(p.score_elems()) * sizeof(float));
  out_ = DeviceBuffer(std::size_t(p.out_elems()) * size_of(p.output));
  lse_ = DeviceBuffer(std::size_t(p.lse_elems()) * sizeof(float));
  block_table_.upload(layout.block_table().data(), block_table_.bytes());
  // Device addressing: the block table, if any, at its device copy.
  kv_host_ = layout.addressing(block_table_.as<const std::int32_t>());
  // One seed per tensor, so q, K and V are unrelated sequences.
  fill_normal(q_.data(), p.q_elems(), p.input, seed ^ 0x1u);
  // Per-token fp8 scales: each cache row holds the format's largest magnitude, as an engine's
  // quantization leaves it.
  const std::int64_t top_row = p.kv_fp8 && p.kv_scale == KvScale::token ? p.head_dim : 0;
  fill_normal(k_.data(), layout.storage_elems(), p.kv_dtype(), seed ^ 0x2u, nullptr, top_row);
  if (!p.latent)
    fill_normal(v_.data(), layout.storage_elems(), p.kv_dtype(), seed ^ 0x3u, nullptr, top_row);
  synchronize();
}

std::size_t DeviceProblem::device_bytes(const Problem& p, const KvLayoutSpec& layout_spec) {
  const KvLayout layout(p, layout_spec);
  const std::size_t in_size = size_of(p.input);
  const std::size_t caches = p.latent ? 1 : 2;  // a latent cache is K and V at once
  const std::size_t scales =
      p.kv_fp8 ? caches * std::size_t(fp8_scale_count(p, layout.storage_elems())) * sizeof(float)
               : 0;
  return std::size_t(p.q_elems()) * in_size +
         caches * std::size_t(layout.storage_elems()) * size_of(p.kv_dtype()) + scales +
         layout.block_table().size() * sizeof(std::int32_t) +
         2 * std::size_t(p.score_elems()) * sizeof(float) +
         std::size_t(p.out_elems()) * size_of(p.output) +
         std::size_t(p.lse_elems()) * sizeof(float);
}

StageArgs DeviceProblem::args(const Implementation& impl, int splits) {
  const std::size_t ws = impl.workspace(problem_, launch_context(splits));
  if (ws > workspace_.bytes()) workspace_ = DeviceBuffer(ws);
  // Handed out zero-filled: an implementation may keep counters there that it returns to zero.
  if (ws > 0) {
    workspace_.fill_async(0);
    synchronize();
  }
  StageArgs a;
  a.problem = problem_;
  a.q = q_.data();
  a.k = k_.data();
  a.v = problem_.latent ? k_.data() : v_.data();
  a.kv = kv_host_;
  a.k_scale = k_scale_.bytes() > 0 ? k_scale_.as<const float>() : nullptr;
  a.v_scale = problem_.latent        ? a.k_scale
              : v_scale_.bytes() > 0 ? v_scale_.as<const float>()
                                     : nullptr;
  a.kv.block_table = kv_host_.block_table ? block_table_.as<std::int32_t>() : nullptr;
  a.key_mask = key_mask_.bytes() > 0 ? key_mask_.as<const std::uint8_t>() : nullptr;
  if (!host_seq_lens_.empty()) {
    a.seq_lens = seq_lens_.as<const std::int64_t>();
    a.host_seq_lens = host_seq_lens_.data();
  }
  a.scores = scores_.as<float>();
  a.probs = probs_.as<float>();
  a.out = out_.data();
  a.lse = lse_.as<float>();
  a.workspace = workspace_.data();
  a.workspace_bytes = workspace_.bytes();
  a.splits = splits;
  a.multiprocessors = multiprocessors_;
  return a;
}

void DeviceProblem::poison_outputs(unsigned which) {
  if (which & kScores) scores_.poison();
  if (which & kProbs) probs_.poison();
  if (which & kOut) out_.poison();
  if (which & kLse) lse_.poison();
}

std::int64_t DeviceProblem::nan_count(unsigned which) const {
  std::int64_t n = 0;
  if (which & kScores) n += count_nan(scores_.data(), problem_.score_elems(), DType::fp32);
  if (which & kProbs) n += count_nan(probs_.data(), problem_.score_elems(), DType::fp32);
  if (which & kOut) n += count_nan(out_.data(), problem_.out_elems(), problem_.output);
  if (which & kLse) n += count_nan(lse_.data(), problem_.lse_elems(), DType::fp32);
  return n;
}

void DeviceProblem::run(const Implementation& impl, bool scale_in_softmax, int splits) {
  if (key_mask_.bytes() > 0 && !impl.takes_key_mask)
    throw std::invalid_argument(impl.name +
                                " takes no key mask, and these inputs mask keys: its results "
                                "would attend the masked keys");
  if (!host_seq_lens_.empty() && !impl.takes_seq_lens)
    throw std::invalid_argument(impl.name +
                                " takes no sequence lengths, and this batch is ragged: its "
                                "results would attend positions outside the sequences");
  StageArgs a = args(impl, splits);
  a.scale_in_softmax = scale_in_softmax;
  impl.launch(a);
  synchronize();
}

std::vector<double> DeviceProblem::download_f32(const DeviceBuffer& b, std::int64_t n) const {
  std::vector<float> host(static_cast<std::size_t>(n));
  b.download(host.data(), host.size() * sizeof(float));
  return std::vector<double>(host.begin(), host.end());
}

void DeviceProblem::upload_f32(DeviceBuffer& b, const std::vector<double>& v) {
  std::vector<float> host(v.begin(), v.end());
  b.upload(host.data(), host.size() * sizeof(float));
}

std::vector<double> DeviceProblem::scores() const {
  return download_f32(scores_, problem_.score_elems());
}
std::vector<double> DeviceProblem::probs() const {
  return download_f32(probs_, problem_.score_elems());
}
std::vector<double> DeviceProblem::lse() const {
  return download_f32(lse_, problem_.lse_elems());
}

std::vector<double> DeviceProblem::out() const {
  HostTensor t(problem_.output, {problem_.out_elems()});
  out_.download(t.data(), t.bytes());
  return t.to_double();
}

void DeviceProblem::set_scores(const std::vector<double>& v) {
  if (std::int64_t(v.size()) != problem_.score_elems())
    throw std::invalid_argument("set_scores: expected " + std::to_string(problem_.score_elems()) +
                                " values");
  upload_f32(scores_, v);
}

void DeviceProblem::set_probs(const std::vector<double>& v) {
  if (std::int64_t(v.size()) != problem_.score_elems())
    throw std::invalid_argument("set_probs: expected " + std::to_string(problem_.score_elems()) +
                                " values");
  upload_f32(probs_, v);
}

LaunchContext DeviceProblem::launch_context(int splits) const {
  LaunchContext c;
  c.multiprocessors = multiprocessors_;
  c.splits = splits;
  c.seq_lens = host_seq_lens_.empty() ? nullptr : host_seq_lens_.data();
  return c;
}

std::size_t DeviceProblem::input_bytes() const {
  return q_.bytes() + k_.bytes() + v_.bytes();
}

}  // namespace attnscope::gpu
