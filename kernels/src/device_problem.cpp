#include "attnscope/kernels/device_problem.hpp"

namespace attnscope::gpu {

DeviceProblem::DeviceProblem(const AttentionInputs& in)
    : problem_(in.problem),
      kv_host_(in.layout.addressing()),
      q_(in.q.bytes()),
      k_(in.k.bytes()),
      v_(in.v.bytes()),
      block_table_(in.layout.block_table().size() * sizeof(std::int32_t)),
      scores_(std::size_t(in.problem.score_elems()) * sizeof(float)),
      probs_(std::size_t(in.problem.score_elems()) * sizeof(float)),
      out_(std::size_t(in.problem.out_elems()) * size_of(in.problem.output)),
      lse_(std::size_t(in.problem.lse_elems()) * sizeof(float)) {
  if (!in.key_mask.empty())
    throw std::invalid_argument("the GPU kernels take no key mask; generate inputs with mask_fraction 0");
  q_.upload(in.q.data(), in.q.bytes());
  k_.upload(in.k.data(), in.k.bytes());
  v_.upload(in.v.data(), in.v.bytes());
  block_table_.upload(in.layout.block_table().data(), block_table_.bytes());
}

StageArgs DeviceProblem::args(const Implementation& impl, int splits) {
  const std::size_t ws = impl.workspace_bytes ? impl.workspace_bytes(problem_, splits) : 0;
  if (ws > workspace_.bytes()) workspace_ = DeviceBuffer(ws);
  StageArgs a;
  a.problem = problem_;
  a.q = q_.data();
  a.k = k_.data();
  a.v = v_.data();
  a.kv = kv_host_;
  a.kv.block_table = kv_host_.block_table ? block_table_.as<std::int32_t>() : nullptr;
  a.scores = scores_.as<float>();
  a.probs = probs_.as<float>();
  a.out = out_.data();
  a.lse = lse_.as<float>();
  a.workspace = workspace_.data();
  a.splits = splits;
  return a;
}

void DeviceProblem::poison_outputs() {
  scores_.poison();
  probs_.poison();
  out_.poison();
  lse_.poison();
}

void DeviceProblem::run(const Implementation& impl, bool scale_in_softmax, int splits) {
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

std::vector<double> DeviceProblem::scores() const { return download_f32(scores_, problem_.score_elems()); }
std::vector<double> DeviceProblem::probs() const { return download_f32(probs_, problem_.score_elems()); }
std::vector<double> DeviceProblem::lse() const { return download_f32(lse_, problem_.lse_elems()); }

std::vector<double> DeviceProblem::out() const {
  HostTensor t(problem_.output, {problem_.out_elems()});
  out_.download(t.data(), t.bytes());
  return t.to_double();
}

void DeviceProblem::set_scores(const std::vector<double>& v) {
  if (std::int64_t(v.size()) != problem_.score_elems())
    throw std::invalid_argument("set_scores: expected " + std::to_string(problem_.score_elems()) + " values");
  upload_f32(scores_, v);
}

void DeviceProblem::set_probs(const std::vector<double>& v) {
  if (std::int64_t(v.size()) != problem_.score_elems())
    throw std::invalid_argument("set_probs: expected " + std::to_string(problem_.score_elems()) + " values");
  upload_f32(probs_, v);
}

std::size_t DeviceProblem::input_bytes() const { return q_.bytes() + k_.bytes() + v_.bytes(); }

}  // namespace attnscope::gpu
