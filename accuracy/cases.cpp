#include "cases.hpp"

#include <sstream>

namespace attnscope::accuracy {

std::string_view to_string(Path p) {
  switch (p) {
    case Path::unfused: return "unfused";
    case Path::fused: return "fused";
    case Path::split_kv: return "split_kv";
  }
  return "?";
}

std::string AccuracyCase::name() const {
  const Problem& p = problem;
  std::ostringstream s;
  s << to_string(path) << "_acc_" << to_string(p.accum) << "_w" << p.window << "_d" << p.head_dim
    << "_in_" << to_string(p.input) << "_" << to_string(data.dist) << "_" << to_string(layout.kind);
  if (layout.kind == KvLayoutKind::paged) s << "p" << layout.page_size;
  if (layout.layers > 1) s << "_L" << layout.layers << "l" << layout.layer;
  if (layout.seq_capacity) s << "_cap" << layout.seq_capacity;
  s << "_g" << p.group() << "_qh" << p.q_heads << "_q" << p.q_len << "_b" << p.batch;
  if (p.seq_len != p.window + p.q_len - 1) s << "_s" << p.seq_len;
  if (path == Path::unfused) s << (scale_in_softmax ? "_scale_softmax" : "_scale_qk");
  return s.str();
}

namespace {

// The base shape: Llama-style GQA (group 4) decode at fp16.
AccuracyCase base(Path path, Accum acc, std::int64_t window) {
  AccuracyCase c;
  c.path = path;
  c.impl = path == Path::unfused ? "attnscope.qk" : path == Path::fused ? "attnscope.fused" : "attnscope.split_kv";
  c.problem.batch = 1;
  c.problem.q_heads = 8;
  c.problem.kv_heads = 2;
  c.problem.q_len = 1;
  c.problem.window = window;
  c.problem.seq_len = window + 3;  // a cache longer than the window: the window start matters
  c.problem.head_dim = 128;
  c.problem.input = DType::fp16;
  c.problem.output = DType::fp16;
  c.problem.accum = acc;
  return c;
}

}  // namespace

std::vector<AccuracyCase> make_cases(bool full) {
  std::vector<AccuracyCase> cases;
  const std::vector<std::int64_t> windows = {1, 2, 17, 64, 256, 1000, 4096, 32768, 131072};
  for (Path path : {Path::unfused, Path::fused, Path::split_kv}) {
    for (Accum acc : {Accum::fp32, Accum::fp16}) {
      for (std::int64_t w : windows) cases.push_back(base(path, acc, w));

      // Each other axis varied around the base at a mid-size window.
      const std::vector<std::int64_t> around = full ? std::vector<std::int64_t>{17, 1000, 32768}
                                                    : std::vector<std::int64_t>{1000};
      for (std::int64_t w : around) {
        for (int d : {64, 256}) {
          AccuracyCase c = base(path, acc, w);
          c.problem.head_dim = d;
          cases.push_back(c);
        }
        if (acc == Accum::fp32) {
          for (DType in : {DType::bf16, DType::fp32}) {
            AccuracyCase c = base(path, acc, w);
            c.problem.input = in;
            c.problem.output = in;
            cases.push_back(c);
          }
        }
        for (Distribution dist : {Distribution::uniform, Distribution::heavy_tailed, Distribution::large_logits}) {
          AccuracyCase c = base(path, acc, w);
          c.data.dist = dist;
          cases.push_back(c);
        }
        {
          AccuracyCase c = base(path, acc, w);
          c.layout.kind = KvLayoutKind::bshd;
          c.layout.layers = 3;
          c.layout.layer = 2;
          cases.push_back(c);
        }
        for (int page : {16, 7}) {
          AccuracyCase c = base(path, acc, w);
          c.layout.kind = KvLayoutKind::paged;
          c.layout.page_size = page;
          c.layout.spare_pages = 5;
          cases.push_back(c);
        }
        {
          AccuracyCase c = base(path, acc, w);
          c.layout.seq_capacity = c.problem.seq_len + 29;
          c.layout.layers = 2;
          c.layout.layer = 1;
          cases.push_back(c);
        }
        for (int group : {1, 8}) {
          AccuracyCase c = base(path, acc, w);
          c.problem.kv_heads = 8 / group;
          c.problem.q_heads = 8;
          if (group == 8) c.problem.q_heads = 16, c.problem.kv_heads = 2;
          cases.push_back(c);
        }
        for (int q_len : {4, 16}) {
          AccuracyCase c = base(path, acc, w);
          c.problem.q_len = q_len;
          c.problem.seq_len = w + q_len + 2;
          cases.push_back(c);
        }
        {
          AccuracyCase c = base(path, acc, w);
          c.problem.batch = 3;
          cases.push_back(c);
        }
        if (path == Path::unfused) {
          AccuracyCase c = base(path, acc, w);
          c.scale_in_softmax = true;
          cases.push_back(c);
        }
      }
    }
  }
  return cases;
}

}  // namespace attnscope::accuracy
