// The accuracy suite's cases, generated from the registry: one attention problem, its data and
// cache layout, and the path of one implementation (or of a family's unfused stages) it runs.
#pragma once

#include <string>
#include <vector>

#include "attnscope/core/inputs.hpp"
#include "attnscope/core/layout.hpp"
#include "attnscope/core/path.hpp"
#include "attnscope/core/problem.hpp"
#include "attnscope/kernels/registry.hpp"

namespace attnscope::accuracy {

struct AccuracyCase {
  // unfused: the family's qk, softmax and pv in sequence, each stage also checked on the exact
  // inputs the previous GPU stage produced; fused / split_kv: one implementation, compared
  // beside attnscope's unfused path on the same inputs.
  Path path = Path::unfused;
  std::string impl;  // the implementation, or "<family>.unfused"
  std::string family;
  Problem problem;
  KvLayoutSpec layout;
  DataSpec data;
  bool scale_in_softmax = false;  // unfused only
  std::string suffix;             // appended to the name (random cases: "_rand<k>")
  int splits = 0;                 // window splits requested (pv, split_kv); 0: the kernel chooses
  // fp16 accumulation on logits past binary16's range: no kernel can meet a budget, and the case
  // passes when the gate names the overflow (fp16_overflow in its record) instead.
  bool expect_fp16_overflow = false;
  // "<impl>_acc_<accum>_w<window>_d<head_dim>_in_<input>_<distribution>_<layout>..." with the
  // implementation's dots as underscores: a valid GoogleTest name, so a failure names itself.
  std::string name() const;
};

// default_set and full: the cases above; tune: split_kv at every split count a tuning run of the
// benchmarks times (tuning_splits) and at its own choice, on the default benchmark shapes at
// batch 1 (the error of a split count does not depend on the batch).
enum class Sweep { default_set, full, tune };
Sweep parse_sweep(std::string_view s);  // "default", "full" or "tune"; throws std::invalid_argument

struct CaseSelection {
  Sweep sweep = Sweep::default_set;
  gpu::NameFilter filter;  // implementation names, "<family>.unfused" for unfused paths
};

// Cases that an implementation does not support are left out; each distinct reason is reported
// once with the number of cases it covers.
struct LeftOut {
  std::string impl;
  std::string reason;
  int cases = 0;
};

// For every selected implementation (fused, split_kv) and unfused family: accumulation x window
// {1, 2, 17, 64, 256, 1000, 4096, 32768, 131072} on the base shape (GQA group 4 decode at fp16,
// bhsd, or the first cache layout the implementation supports), and each other axis (head_dim,
// input dtype, distribution, layout, GQA group, q_len, batch, scale placement) varied around it.
// The full sweep varies the axes at three windows instead of one.
std::vector<AccuracyCase> make_cases(const CaseSelection& selection,
                                     std::vector<LeftOut>* left_out = nullptr);

// `n` random cases from `seed` (the same seed gives the same cases): each a selected target and
// a problem it supports, every axis drawn: batch 1-3, KV heads 1-4, GQA group 1-8, q_len 1-16,
// window log-uniform in 1..16384 (a cache up to 7 positions longer), head_dim 64/128/256, input
// fp16/bf16/fp32, accumulation fp32 or fp16, layout bhsd/bshd/paged with layer slices, tail
// capacity, page sizes 1-64 and spare pages, every distribution, scale placement and data seed.
// Problems are kept below 2^22 scores so the reference stays fast.
std::vector<AccuracyCase> random_cases(const CaseSelection& selection, int n, std::uint64_t seed);

}  // namespace attnscope::accuracy
