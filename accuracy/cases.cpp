#include "cases.hpp"

#include "attnscope/core/random.hpp"
#include "attnscope/core/shapes.hpp"

#include <algorithm>

#include <cmath>
#include <map>
#include <sstream>
#include <stdexcept>

namespace attnscope::accuracy {

std::string AccuracyCase::name() const {
  const Problem& p = problem;
  std::ostringstream s;
  for (char ch : impl) s << (ch == '.' || ch == '-' ? '_' : ch);
  s << "_acc_" << to_string(p.accum) << "_w" << p.window << "_d" << p.head_dim;
  if (p.latent) s << "v" << p.value_dim() << "_latent";
  s << "_in_" << to_string(p.input) << "_" << to_string(data.dist) << "_" << to_string(layout.kind);
  if (layout.kind == KvLayoutKind::paged) s << "p" << layout.page_size;
  if (layout.layers > 1) s << "_L" << layout.layers << "l" << layout.layer;
  if (layout.seq_capacity) s << "_cap" << layout.seq_capacity;
  s << "_g" << p.group() << "_qh" << p.q_heads << "_q" << p.q_len << "_b" << p.batch;
  if (p.seq_len != p.window + p.q_len - 1) s << "_s" << p.seq_len;
  if (p.kv_fp8) s << "_kv" << to_string(*p.kv_fp8) << "_" << to_string(p.kv_scale);
  if (path == Path::unfused) s << (scale_in_softmax ? "_scale_softmax" : "_scale_qk");
  if (splits > 0) s << "_splits" << splits;
  if (data.poison_outside) s << "_poisoned";
  if (data.mask_fraction > 0.0)
    s << "_mask" << static_cast<int>(std::lround(data.mask_fraction * 100));
  if (data.left_padding) s << "_leftpad";
  if (data.fully_masked > 0) s << "_fullymasked" << data.fully_masked;
  if (data.ragged_min_len > 0) s << "_ragged" << data.ragged_min_len;
  if (data.nan_in_window) s << (data.nan_in_key ? "_naninkey" : "_naninwindow");
  if (data.q_spread) s << "_qspread";
  if (expect_fp16_overflow) s << "_expect_overflow";
  s << suffix;
  return s.str();
}

Sweep parse_sweep(std::string_view s) {
  if (s == "default") return Sweep::default_set;
  if (s == "full") return Sweep::full;
  if (s == "tune") return Sweep::tune;
  throw std::invalid_argument("unknown accuracy sweep '" + std::string(s) +
                              "' (expected default, full or tune)");
}

namespace {

// What a case runs: one implementation, or a family's three stages.
struct Target {
  Path path;
  std::string impl;
  std::string family;
  std::vector<const gpu::Implementation*> parts;
};

std::string why_unsupported(const Target& t, const AccuracyCase& c) {
  for (const gpu::Implementation* i : t.parts) {
    if (c.data.masks_keys() && !i->takes_key_mask)
      return t.parts.size() > 1 ? i->name + ": takes no key mask" : "takes no key mask";
    if (c.data.ragged_min_len > 0 && !i->takes_seq_lens)
      return t.parts.size() > 1 ? i->name + ": takes no sequence lengths (ragged batches)"
                                : "takes no sequence lengths (ragged batches)";
    const std::string why = i->why_unsupported(c.problem, c.layout);
    if (!why.empty()) return t.parts.size() > 1 ? i->name + ": " + why : why;
  }
  return {};
}

// The base shape: Llama-style GQA (group 4) decode at fp16.
AccuracyCase base(const Target& t, Accum acc, std::int64_t window) {
  AccuracyCase c;
  c.path = t.path;
  c.impl = t.impl;
  c.family = t.family;
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

// c on a paged cache of `page` rows a page (5 spare pages), layer 1 of 2, poisoned (NaN and Inf in
// every slot no query attends), at q_len 4 so that the first query's window starts after the
// others' span begins.
AccuracyCase paged_poisoned(AccuracyCase c, int page) {
  c.data.poison_outside = true;
  c.problem.q_len = 4;
  c.problem.seq_len = c.problem.window + 4 + 9;
  c.layout.kind = KvLayoutKind::paged;
  c.layout.page_size = page;
  c.layout.spare_pages = 5;
  c.layout.layers = 2;
  c.layout.layer = 1;
  return c;
}

std::vector<AccuracyCase> variants(const Target& t, Sweep sweep) {
  std::vector<AccuracyCase> cases;
  const std::vector<std::int64_t> windows = {1, 2, 17, 64, 256, 1000, 4096, 32768, 131072};
  for (Accum acc : {Accum::fp32, Accum::fp16}) {
    for (std::int64_t w : windows) cases.push_back(base(t, acc, w));
    if (acc == Accum::fp32) {
      // Limits: a cache of 2^32 elements whose layer read starts past 2^31 (element offsets
      // need 64 bits; everything else poisoned), and 70000 sequences (grid blocks past 65535).
      AccuracyCase big = base(t, acc, 1000);
      big.problem.kv_heads = 1;
      big.problem.q_heads = 4;
      big.layout.layers = 2;
      big.layout.layer = 1;
      big.layout.seq_capacity = (std::int64_t(1) << 24) + 7;
      big.data.poison_outside = true;
      cases.push_back(big);
      AccuracyCase many = base(t, acc, 5);
      many.problem.batch = 70000;
      many.problem.q_heads = 2;
      many.problem.kv_heads = 1;
      many.problem.head_dim = 64;
      many.problem.seq_len = 6;
      cases.push_back(many);
    }

    // Each other axis varied around the base at a mid-size window.
    const std::vector<std::int64_t> around = sweep == Sweep::full
                                                 ? std::vector<std::int64_t>{17, 1000, 32768}
                                                 : std::vector<std::int64_t>{1000};
    for (std::int64_t w : around) {
      // head_dim 96 (Phi-3's) and 192 split a row over 4 and 8 lanes in fp16, and take tiles of
      // 2 queries in the lane kernels.
      for (int d : {64, 96, 192, 256}) {
        AccuracyCase c = base(t, acc, w);
        c.problem.head_dim = d;
        cases.push_back(c);
      }
      // head_dim 96 and 192 on the matrix-instruction kernels (fp32 accumulation, the single-pass
      // paths), whose rows there are 12 and 24 chunks of 16 bytes (in groups of 4 and of 8): a
      // paged, poisoned cache at q_len 4 (16 queries a block), masked keys at q_len 1 (8 a
      // block), and a ragged batch of four sequences from [16, seq_len] (96: in 7-position pages,
      // poisoned past each sequence's end; 192: bhsd).
      if (acc == Accum::fp32 && (t.path == Path::fused || t.path == Path::split_kv))
        for (int d : {96, 192}) {
          AccuracyCase c = paged_poisoned(base(t, acc, w), 7);
          c.problem.head_dim = d;
          cases.push_back(c);
          c = base(t, acc, w);
          c.problem.head_dim = d;
          c.problem.batch = 3;
          c.problem.seq_len = w + 5;
          c.data.mask_fraction = 0.3;
          cases.push_back(c);
          c = d == 96 ? paged_poisoned(base(t, acc, w), 7) : base(t, acc, w);
          c.problem.head_dim = d;
          c.problem.batch = 4;
          c.problem.q_len = 1;
          c.problem.seq_len = w + 3;
          c.data.ragged_min_len = 16;
          cases.push_back(c);
        }
      // One to three queries a KV head on the matrix-instruction kernels (fp32 accumulation, the
      // single-pass paths: 8 queries a block, the columns past a head's queries unused): MHA at
      // head_dim 96 (Phi-3's) on a paged, poisoned cache at q_len 1; MHA in a ragged batch with
      // masked keys; three query positions of one head at head_dim 192; group 3 at head_dim 64;
      // group 2 on a heavy-tailed e4m3fnuz cache with per-token scales.
      if (acc == Accum::fp32 && (t.path == Path::fused || t.path == Path::split_kv)) {
        AccuracyCase c = paged_poisoned(base(t, acc, w), 7);
        c.problem.q_heads = c.problem.kv_heads;
        c.problem.head_dim = 96;
        c.problem.q_len = 1;
        c.problem.seq_len = w + 9;
        cases.push_back(c);
        c = base(t, acc, w);
        c.problem.q_heads = c.problem.kv_heads;
        c.problem.batch = 3;
        c.problem.seq_len = w + 5;
        c.data.ragged_min_len = 16;
        c.data.mask_fraction = 0.3;
        cases.push_back(c);
        c = base(t, acc, w);
        c.problem.q_heads = c.problem.kv_heads;
        c.problem.head_dim = 192;
        c.problem.q_len = 3;
        c.problem.seq_len = w + 3 + 4;
        cases.push_back(c);
        c = base(t, acc, w);
        c.problem.q_heads = 3 * c.problem.kv_heads;
        c.problem.head_dim = 64;
        cases.push_back(c);
        c = base(t, acc, w);
        c.problem.q_heads = 2 * c.problem.kv_heads;
        c.problem.kv_fp8 = Fp8Format::e4m3fnuz;
        c.problem.kv_scale = KvScale::token;
        c.data.dist = Distribution::heavy_tailed;
        cases.push_back(c);
      }
      if (acc == Accum::fp32) {
        for (DType in : {DType::bf16, DType::fp32}) {
          AccuracyCase c = base(t, acc, w);
          c.problem.input = in;
          c.problem.output = in;
          cases.push_back(c);
        }
      }
      for (Distribution dist :
           {Distribution::uniform, Distribution::heavy_tailed, Distribution::large_logits}) {
        AccuracyCase c = base(t, acc, w);
        c.data.dist = dist;
        cases.push_back(c);
      }
      {
        AccuracyCase c = base(t, acc, w);
        c.layout.kind = KvLayoutKind::bshd;
        c.layout.layers = 3;
        c.layout.layer = 2;
        cases.push_back(c);
      }
      for (int page : {16, 7}) {
        AccuracyCase c = base(t, acc, w);
        c.layout.kind = KvLayoutKind::paged;
        c.layout.page_size = page;
        c.layout.spare_pages = 5;
        cases.push_back(c);
      }
      {
        AccuracyCase c = base(t, acc, w);
        c.layout.seq_capacity = c.problem.seq_len + 29;
        c.layout.layers = 2;
        c.layout.layer = 1;
        cases.push_back(c);
      }
      // Poisoned caches: NaN and Inf in every slot no query attends (positions before the
      // window, other layers, tail capacity; spare pages and the last page's tail), and q_len 4
      // so that the first query's window starts after the others' span begins.
      {
        AccuracyCase c = paged_poisoned(base(t, acc, w), 7);
        AccuracyCase contiguous = c;
        contiguous.layout = base(t, acc, w).layout;
        contiguous.layout.seq_capacity = c.problem.seq_len + 29;
        contiguous.layout.layers = 2;
        contiguous.layout.layer = 1;
        cases.push_back(contiguous);
        cases.push_back(c);
      }
      // Key masks: random masking, left padding, and sequences with every key masked (their
      // rows: probabilities 0, lse -inf, out 0), at q_len 4 so that masks meet the causal
      // windows of several queries, and batch 3 so that masked and unmasked rows share blocks.
      for (int m = 0; m < 3; ++m) {
        AccuracyCase c = base(t, acc, w);
        c.problem.batch = 3;
        c.problem.q_len = 4;
        c.problem.seq_len = w + 4 + 5;
        if (m == 0) c.data.mask_fraction = 0.3;
        if (m == 1) c.data.left_padding = true;
        if (m == 2) {
          c.data.fully_masked = 1;
          c.data.mask_fraction = 0.3;
        }
        cases.push_back(c);
      }
      // Ragged batches: four sequences of lengths drawn from [16, seq_len] (the first the
      // longest), each query's window cut at its sequence's start. A full-window cache; a paged
      // and poisoned one at q_len 4 (every slot past a sequence's end holds NaN or Inf); and a
      // sliding window over a cache four windows long, bshd.
      for (int r = 0; r < 3; ++r) {
        AccuracyCase c = base(t, acc, w);
        c.problem.batch = 4;
        c.data.ragged_min_len = 16;
        if (r == 1) {
          c.problem.q_len = 4;
          c.problem.seq_len = w + 4 + 5;
          c.layout.kind = KvLayoutKind::paged;
          c.layout.page_size = 7;
          c.layout.spare_pages = 5;
          c.data.poison_outside = true;
        }
        if (r == 2) {
          c.problem.seq_len = 4 * w;
          c.layout.kind = KvLayoutKind::bshd;
        }
        cases.push_back(c);
      }
      // NaN inside the window (one V element every query of sequence 0 attends): it must reach
      // exactly the outputs the reference gives NaN (a NaN lost fails the case). On the
      // single-pass paths, the same NaN in K too (every score of its key).
      {
        AccuracyCase c = base(t, acc, w);
        c.data.nan_in_window = true;
        cases.push_back(c);
        if (t.path == Path::fused || t.path == Path::split_kv) {
          c.data.nan_in_key = true;
          cases.push_back(c);
        }
      }
      // Every logit near -6e4: with fp32 accumulation exact to the end; with fp16 accumulation
      // past binary16's range, which the gate must name.
      {
        AccuracyCase c = base(t, acc, w);
        c.data.dist = Distribution::negative_logits;
        c.expect_fp16_overflow = acc == Accum::fp16;
        cases.push_back(c);
      }
      // GQA groups as models have them: 1 (MHA), 7 (an odd group, as in 28 query heads on 4 KV
      // heads), 8 (Llama-3-70B) and 16.
      for (int group : {1, 7, 8, 16}) {
        AccuracyCase c = base(t, acc, w);
        c.problem.kv_heads = group == 1 ? 8 : 2;
        c.problem.q_heads = c.problem.kv_heads * group;
        cases.push_back(c);
      }
      for (int q_len : {4, 16}) {
        AccuracyCase c = base(t, acc, w);
        c.problem.q_len = q_len;
        c.problem.seq_len = w + q_len + 2;
        cases.push_back(c);
      }
      {
        AccuracyCase c = base(t, acc, w);
        c.problem.batch = 3;
        cases.push_back(c);
      }
      // fp8 KV caches: every format and scale granularity; then per-token scales on a paged,
      // poisoned cache at q_len 4 (NaN codes and NaN scales in every slot no query attends),
      // heavy-tailed K under one scale per head (its outlier channels set the scale), a NaN
      // inside the window (e4m3 and e4m3fnuz), and group 8. The single-pass paths read fp8 caches;
      // the unfused stages do not.
      const bool fp8_path = t.path == Path::fused || t.path == Path::split_kv;
      for (Fp8Format f : {Fp8Format::e4m3, Fp8Format::e5m2, Fp8Format::e4m3fnuz})
        for (KvScale sc : {KvScale::tensor, KvScale::head, KvScale::token}) {
          if (!fp8_path) break;
          AccuracyCase c = base(t, acc, w);
          c.problem.kv_fp8 = f;
          c.problem.kv_scale = sc;
          cases.push_back(c);
        }
      if (fp8_path) {
        AccuracyCase c = paged_poisoned(base(t, acc, w), 16);
        c.problem.kv_fp8 = Fp8Format::e4m3;
        c.problem.kv_scale = KvScale::token;
        cases.push_back(c);
        c = base(t, acc, w);
        c.problem.kv_fp8 = Fp8Format::e5m2;
        c.problem.kv_scale = KvScale::head;
        c.data.dist = Distribution::heavy_tailed;
        cases.push_back(c);
        c = base(t, acc, w);
        c.problem.kv_fp8 = Fp8Format::e4m3;
        c.problem.kv_scale = KvScale::tensor;
        c.data.nan_in_window = true;
        cases.push_back(c);
        // The same NaN in an e4m3fnuz cache: its one NaN code, 0x80, which the matrix-instruction
        // kernels' integer conversion serves only where the warp's vote finds it. Then each in K.
        c.problem.kv_fp8 = Fp8Format::e4m3fnuz;
        cases.push_back(c);
        for (Fp8Format f : {Fp8Format::e4m3, Fp8Format::e4m3fnuz}) {
          c.problem.kv_fp8 = f;
          c.data.nan_in_key = true;
          cases.push_back(c);
        }
        // Group 8 (the matrix-instruction kernel where it runs), one scale per KV head.
        c = base(t, acc, w);
        c.problem.kv_fp8 = Fp8Format::e5m2;
        c.problem.kv_scale = KvScale::head;
        c.problem.q_heads = 16;
        cases.push_back(c);
        // Group 16 (16 queries a block there), heavy-tailed K and V under per-token scales, which
        // then differ from token to token.
        c = base(t, acc, w);
        c.problem.kv_fp8 = Fp8Format::e4m3;
        c.problem.kv_scale = KvScale::token;
        c.data.dist = Distribution::heavy_tailed;
        c.problem.q_heads = 32;
        cases.push_back(c);
        // Group 16 on an e4m3fnuz cache (fp32 accumulation: the 16-query kernel's integer
        // conversion), one scale per KV head and one a token (+-240 in every row), and one for
        // the tensor with a NaN inside the window, in V and in K.
        if (acc == Accum::fp32)
          for (int i = 0; i < 4; ++i) {
            c = base(t, acc, w);
            c.problem.kv_fp8 = Fp8Format::e4m3fnuz;
            c.problem.kv_scale = i == 0 ? KvScale::head : i == 1 ? KvScale::token : KvScale::tensor;
            c.problem.q_heads = 32;
            c.data.nan_in_window = i >= 2;
            c.data.nan_in_key = i == 3;
            cases.push_back(c);
          }
      }
      // bf16 q with fp8 caches (fp32 accumulation): every format and scale granularity; group 16
      // (16 queries a block) per token; and q spread over bf16's range (q_spread), heads of one KV
      // head 2^6 apart and channels more than 2^31 below their row's largest, which the
      // matrix-instruction kernels' conversion to binary16 rounds (QBf16), at groups 4 and 16.
      if (fp8_path && acc == Accum::fp32) {
        for (Fp8Format f : {Fp8Format::e4m3, Fp8Format::e5m2, Fp8Format::e4m3fnuz})
          for (KvScale sc : {KvScale::tensor, KvScale::head, KvScale::token}) {
            AccuracyCase c = base(t, acc, w);
            c.problem.input = c.problem.output = DType::bf16;
            c.problem.kv_fp8 = f;
            c.problem.kv_scale = sc;
            cases.push_back(c);
            if (sc == KvScale::token) {
              c.problem.q_heads = 32;
              cases.push_back(c);
            }
          }
        for (int heads : {8, 32}) {
          AccuracyCase c = base(t, acc, w);
          c.problem.input = c.problem.output = DType::bf16;
          c.problem.kv_fp8 = Fp8Format::e4m3;
          c.problem.q_heads = heads;
          c.data.q_spread = true;
          cases.push_back(c);
        }
      }
      // Latent (MLA) caches, fp32 accumulation: DeepSeek-V3's decode attention (one 576-wide
      // latent row a position, V its first 512 channels, softmax scale 1/sqrt(192)) at 16 query
      // heads (a tensor-parallel shard) and 128 (the whole model); two query positions
      // (multi-token prediction) with masked keys; a ragged, paged and poisoned batch at q_len 4;
      // heavy-tailed data; a NaN inside the window (in the latent row, so in every score of its
      // key); bf16; fp8 latent caches of each format (the single-pass paths: the unfused stages
      // read no fp8 cache); split counts other than the path's own; and, unfused, the scale
      // applied in softmax.
      if (acc == Accum::fp32 &&
          (t.path == Path::fused || t.path == Path::split_kv || t.path == Path::unfused)) {
        const bool single_pass = t.path != Path::unfused;
        auto mla = [&](int heads) {
          AccuracyCase c = base(t, acc, w);
          c.problem.q_heads = heads;
          c.problem.kv_heads = 1;
          c.problem.head_dim = Problem::kMlaQkDim;
          c.problem.v_dim = Problem::kMlaVDim;
          c.problem.latent = true;
          c.problem.scale = 1.0 / std::sqrt(192.0);
          c.problem.batch = 2;
          return c;
        };
        cases.push_back(mla(16));
        {
          AccuracyCase c = mla(128);
          c.layout.kind = KvLayoutKind::paged;
          c.layout.page_size = 64;
          c.layout.spare_pages = 3;
          cases.push_back(c);
        }
        {
          AccuracyCase c = mla(16);
          c.problem.batch = 3;
          c.problem.q_len = 2;
          c.problem.seq_len = w + 2 + 5;
          c.data.mask_fraction = 0.3;
          cases.push_back(c);
        }
        {
          AccuracyCase c = mla(32);
          c.problem.batch = 4;
          c.problem.q_len = 4;
          c.problem.seq_len = w + 4 + 5;
          c.data.ragged_min_len = 16;
          c.data.poison_outside = true;
          c.layout.kind = KvLayoutKind::paged;
          c.layout.page_size = 16;
          c.layout.spare_pages = 5;
          c.layout.layers = 2;
          c.layout.layer = 1;
          cases.push_back(c);
        }
        {
          AccuracyCase c = mla(16);
          c.data.dist = Distribution::heavy_tailed;
          cases.push_back(c);
        }
        {
          AccuracyCase c = mla(16);
          c.data.nan_in_window = true;
          cases.push_back(c);
        }
        // bf16 q and cache (and output), 64 heads.
        {
          AccuracyCase c = mla(64);
          c.problem.input = c.problem.output = DType::bf16;
          cases.push_back(c);
        }
        // fp8 latent caches, one scale per tensor or KV head: every format.
        if (single_pass) {
          AccuracyCase c = mla(16);
          c.problem.kv_fp8 = Fp8Format::e4m3;
          c.problem.kv_scale = KvScale::tensor;
          cases.push_back(c);
          c = mla(128);
          c.problem.kv_fp8 = Fp8Format::e5m2;
          c.problem.kv_scale = KvScale::head;
          c.layout.kind = KvLayoutKind::paged;
          c.layout.page_size = 64;
          cases.push_back(c);
          c = mla(32);
          c.problem.kv_fp8 = Fp8Format::e4m3fnuz;
          c.problem.kv_scale = KvScale::tensor;
          c.problem.q_len = 2;
          c.problem.seq_len = w + 2 + 5;
          c.data.mask_fraction = 0.3;
          cases.push_back(c);
        }
        if (t.family == "attnscope")
          for (int s : {1, 3}) {
            AccuracyCase c = mla(16);
            c.splits = s;
            cases.push_back(c);
          }
        if (!single_pass) {
          AccuracyCase c = mla(16);
          c.scale_in_softmax = true;
          cases.push_back(c);
        }
      }
      // Split invariance: attnscope's split paths at split counts other than their own choice,
      // each held to the budget of its own order (the split count is part of the order).
      if (t.family == "attnscope" && (t.path == Path::fused || t.path == Path::split_kv))
        for (int s : {1, 3, 16}) {
          AccuracyCase c = base(t, acc, w);
          c.splits = s;
          cases.push_back(c);
        }
      if (t.path == Path::unfused) {
        AccuracyCase c = base(t, acc, w);
        c.scale_in_softmax = true;
        cases.push_back(c);
      }
    }
  }
  return cases;
}

// A case on the base layout that the implementation does not support moves to the first cache
// layout it does (an engine's kernel may address its own layout only), as an engine holds it:
// every layer in one buffer, the case reading layer 1 of 2. Where no layout serves, `why`
// becomes the first reason other than the layout itself.
bool adapt_layout(const Target& t, AccuracyCase& c, std::string& why) {
  const KvLayoutSpec base_layout;
  if (c.layout.kind != base_layout.kind || c.layout.layers != 1 || c.layout.seq_capacity != 0)
    return false;
  std::string other;
  for (KvLayoutKind k : {KvLayoutKind::bshd, KvLayoutKind::paged}) {
    AccuracyCase moved = c;
    moved.layout.kind = k;
    moved.layout.layers = 2;
    moved.layout.layer = 1;
    const std::string moved_why = why_unsupported(t, moved);
    if (moved_why.empty()) {
      c = moved;
      return true;
    }
    if (other.empty() && moved_why != why) other = moved_why;
  }
  if (!other.empty()) why = other;
  return false;
}

std::vector<Target> targets(const gpu::NameFilter& filter) {
  std::vector<Target> out;
  for (const std::string& family : gpu::unfused_families()) {
    const std::string name = gpu::unfused_name(family);
    if (!filter.matches(name)) continue;
    out.push_back({Path::unfused,
                   name,
                   family,
                   {gpu::family_stage(family, Path::qk), gpu::family_stage(family, Path::softmax),
                    gpu::family_stage(family, Path::pv)}});
  }
  for (Path path : {Path::fused, Path::split_kv})
    for (const gpu::Implementation* i : gpu::implementations(path))
      if (filter.matches(i->name)) out.push_back({path, i->name, i->family, {i}});
  return out;
}

// The tune sweep: split_kv on the default benchmark shapes at batch 1, each split count.
std::vector<AccuracyCase> tuning_cases(const Target& t) {
  std::vector<AccuracyCase> cases;
  if (t.path != Path::split_kv) return cases;
  std::vector<std::string> seen;
  for (const DecodeShape& shape : bench_shapes("default")) {
    if (shape.ragged_min > 0) continue;          // at batch 1 a ragged batch is the plain shape
    if (shape.kv_fp8 || shape.latent) continue;  // the tuning table is of fp16 K and V caches
    AccuracyCase c = base(t, shape.accum, shape.window);
    c.problem = shape.problem();
    c.problem.batch = 1;
    c.layout = shape.layout_spec();
    const std::string key = c.name();
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;  // batches differ only
    seen.push_back(key);
    std::vector<int> splits = tuning_splits(c.problem, kTuneMinSplitLen);
    splits.insert(splits.begin(), 0);
    for (int s : splits) {
      c.splits = s;
      cases.push_back(c);
    }
  }
  return cases;
}

}  // namespace

std::vector<AccuracyCase> make_cases(const CaseSelection& selection,
                                     std::vector<LeftOut>* left_out) {
  std::vector<AccuracyCase> cases;
  for (const Target& t : targets(selection.filter)) {
    std::map<std::string, int> skipped;  // reason -> cases
    std::vector<std::string> order;      // reasons in the order first seen
    for (AccuracyCase& c :
         selection.sweep == Sweep::tune ? tuning_cases(t) : variants(t, selection.sweep)) {
      std::string why = why_unsupported(t, c);
      if (!why.empty() && adapt_layout(t, c, why)) why.clear();
      if (why.empty()) {
        cases.push_back(std::move(c));
      } else if (skipped[why]++ == 0) {
        order.push_back(why);
      }
    }
    if (left_out)
      for (const std::string& why : order) left_out->push_back({t.impl, why, skipped[why]});
  }
  return cases;
}

namespace {

// One random problem for target t, drawn from rng; the caller keeps it only if t supports it.
AccuracyCase random_case(const Target& t, SplitMix64& rng) {
  auto pick = [&](std::uint64_t n) { return static_cast<std::int64_t>(rng.next() % n); };
  AccuracyCase c = base(t, Accum::fp32, 1);
  Problem& p = c.problem;
  p.batch = static_cast<int>(1 + pick(3));
  p.kv_heads = static_cast<int>(1 + pick(4));
  p.q_heads = p.kv_heads * static_cast<int>(1 + pick(8));
  p.q_len = pick(5) < 3 ? 1 : static_cast<int>(2 + pick(15));
  p.window = std::max<std::int64_t>(
      1, static_cast<std::int64_t>(std::exp(to_unit_open(rng.next()) * std::log(16384.0))));
  p.head_dim = static_cast<int>(64 << pick(3));
  const DType inputs[] = {DType::fp16, DType::bf16, DType::fp32};
  p.input = p.output = inputs[pick(3)];
  p.accum = p.input == DType::fp16 && pick(2) == 0 ? Accum::fp16 : Accum::fp32;
  // At most 2^22 scores: the binary128 / FP64 references stay quick.
  const std::int64_t rows = std::int64_t(p.batch) * p.q_heads * p.q_len;
  p.window =
      std::min<std::int64_t>(p.window, std::max<std::int64_t>(1, (std::int64_t(1) << 22) / rows));
  p.seq_len = p.window + p.q_len - 1 + pick(8);

  const KvLayoutKind kinds[] = {KvLayoutKind::bhsd, KvLayoutKind::bshd, KvLayoutKind::paged};
  c.layout.kind = kinds[pick(3)];
  c.layout.layers = static_cast<int>(1 + pick(3));
  c.layout.layer = static_cast<int>(pick(std::uint64_t(c.layout.layers)));
  if (c.layout.kind == KvLayoutKind::paged) {
    const int pages[] = {1, 7, 16, 32, 64};
    c.layout.page_size = pages[pick(5)];
    c.layout.spare_pages = static_cast<int>(pick(6));
    c.layout.page_seed = rng.next();
  } else if (pick(3) == 0) {
    c.layout.seq_capacity = p.seq_len + 1 + pick(40);
  }
  const Distribution dists[] = {Distribution::normal, Distribution::uniform,
                                Distribution::heavy_tailed, Distribution::large_logits};
  c.data.dist = dists[pick(4)];
  c.data.seed = rng.next();
  c.scale_in_softmax = t.path == Path::unfused && pick(2) == 0;
  return c;
}

}  // namespace

std::vector<AccuracyCase> random_cases(const CaseSelection& selection, int n, std::uint64_t seed) {
  const std::vector<Target> ts = targets(selection.filter);
  if (ts.empty()) throw std::invalid_argument("random_cases: no implementation matches the filter");
  SplitMix64 rng(seed);
  std::vector<AccuracyCase> cases;
  int tries = 0;
  while (static_cast<int>(cases.size()) < n) {
    if (++tries > 100 * (n + 1))
      throw std::runtime_error(
          "random_cases: the selected implementations support too few of the drawn problems");
    const Target& t = ts[rng.next() % ts.size()];
    AccuracyCase c = random_case(t, rng);
    if (!why_unsupported(t, c).empty()) continue;
    c.suffix = "_rand" + std::to_string(cases.size());
    cases.push_back(std::move(c));
  }
  return cases;
}

}  // namespace attnscope::accuracy
