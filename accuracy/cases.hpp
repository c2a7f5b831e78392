// The accuracy suite's cases: one attention problem, its data and layout, and the path run.
#pragma once

#include <string>
#include <vector>

#include "attnscope/core/inputs.hpp"
#include "attnscope/core/layout.hpp"
#include "attnscope/core/problem.hpp"

namespace attnscope::accuracy {

// unfused: the registered qk, softmax and pv run in sequence with stage isolation;
// fused / split_kv: the single-pass paths, compared beside the unfused one on the same inputs.
enum class Path { unfused, fused, split_kv };
std::string_view to_string(Path p);

struct AccuracyCase {
  Path path = Path::unfused;
  std::string impl;  // implementation name (fused/split_kv); qk name for unfused
  Problem problem;
  KvLayoutSpec layout;
  DataSpec data;
  bool scale_in_softmax = false;  // unfused only
  std::string name() const;       // spells the case: a failure names itself
};

// The default suite (a CI gate on a GPU runner), or with `full` the larger opt-in sweep:
// accumulation x window {1, 2, 17, 64, 256, 1000, 4096, 32768, 131072} on the base shape, and
// each other axis (head_dim, input dtype, distribution, layout, GQA group, q_len, batch, scale
// placement) varied around it.
std::vector<AccuracyCase> make_cases(bool full);

}  // namespace attnscope::accuracy
