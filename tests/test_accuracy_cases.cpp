// Host checks of the registry and of the accuracy cases it generates: names, coverage, the
// kernels' declared orders, registration rules, and an engine's implementation picked up.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <set>

#include "attnscope/kernels/registry.hpp"
#include "attnscope/reference/precision_model.hpp"
#include "cases.hpp"
#include "attnscope/kernels/runtime.hpp"
#include "config.hpp"         // kernels/src: the geometry the kernels compile with
#include "stage_kernels.hpp"  // kernels/src: fold_grid

namespace attnscope::accuracy {
namespace {

// attnscope's own implementations unless told otherwise: a test below registers an engine's.
CaseSelection selection(Sweep sweep, const std::string& filter = "attnscope.*") {
  CaseSelection s;
  s.sweep = sweep;
  s.filter = gpu::NameFilter(filter);
  return s;
}

TEST(AccuracyCases, NamesAreUniqueAndValidTestNames) {
  for (Sweep sweep : {Sweep::default_set, Sweep::full}) {
    std::set<std::string> seen;
    for (const AccuracyCase& c : make_cases(selection(sweep))) {
      const std::string n = c.name();
      SCOPED_TRACE(n);
      EXPECT_TRUE(seen.insert(n).second) << "duplicate case " << n;
      for (char ch : n) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_');
      EXPECT_NO_THROW(c.problem.validate());
      EXPECT_NO_THROW(c.layout.validate(c.problem));
    }
  }
}

TEST(AccuracyCases, NamesStartWithTheImplementation) {
  for (const AccuracyCase& c : make_cases(selection(Sweep::default_set))) {
    std::string slug = c.impl;
    for (char& ch : slug)
      if (ch == '.') ch = '_';
    EXPECT_EQ(c.name().rfind(slug + "_acc_", 0), 0u) << c.name();
  }
}

TEST(AccuracyCases, DefaultSetCoversEveryWindowPathAndAccumulation) {
  std::set<std::tuple<int, int, std::int64_t>> seen;
  const auto cases = make_cases(selection(Sweep::default_set));
  for (const AccuracyCase& c : cases)
    seen.insert({int(c.path), int(c.problem.accum), c.problem.window});
  for (Path p : kEndToEndPaths)
    for (Accum a : {Accum::fp16, Accum::fp32})
      for (std::int64_t w : {1, 2, 17, 64, 256, 1000, 4096, 32768, 131072})
        EXPECT_EQ(seen.count({int(p), int(a), w}), 1u)
            << to_string(p) << " " << to_string(a) << " " << w;
  // attnscope's own implementations support every case of the set: nothing is left out, but
  // the latent (MLA) cases where the latent kernel is not built (it uses NVIDIA's matrix
  // instructions), saying so.
  std::vector<LeftOut> left_out;
  EXPECT_EQ(make_cases(selection(Sweep::default_set), &left_out).size(), cases.size());
  int latent = 0, latent_left = 0;
  for (const AccuracyCase& c : cases) {
    if (!c.problem.latent) continue;
    ++latent;
    EXPECT_TRUE(c.path == Path::fused || c.path == Path::split_kv || c.path == Path::unfused)
        << c.name();
    EXPECT_EQ(c.problem.accum, Accum::fp32) << c.name();
    if (c.path == Path::unfused) {
      EXPECT_FALSE(c.problem.kv_fp8) << c.name();
    }
    EXPECT_NE(c.name().find("_d576v512_latent_"), std::string::npos) << c.name();
  }
  for (const LeftOut& l : left_out) {
    EXPECT_NE(l.reason.find("latent (MLA) decode kernel uses NVIDIA's matrix"), std::string::npos)
        << l.reason;
    latent_left += l.cases;
  }
  // 10 a single-pass path (16 and 128 heads, q_len 2 masked, ragged paged poisoned, heavy-tailed,
  // NaN, bf16, an fp8 cache of each format) and 2 split counts; unfused, the same but the fp8
  // caches, and the scale applied in softmax.
  EXPECT_EQ(latent + latent_left, 34);
  EXPECT_EQ(latent, gpu::detail::kMmaDecodePlatform ? 34 : 0);
  // The window sweep and the shape variants (head_dim 64, 96, 192 and 256, GQA groups 1, 7, 8 and
  // 16 among them), the split
  // paths of attnscope at 1, 3 and 16 splits (window 1000, both accumulations: split invariance,
  // each count held to its own order's budget), two poisoned-cache cases, three masked cases,
  // three ragged batches (one poisoned), one NaN inside the window and one of logits near -6e4 a
  // path and accumulation (on fused and split_kv the NaN in K too); on fused and split_kv, 17
  // fp8-cache cases a path and accumulation (3 formats x 3 scale granularities, one paged and
  // poisoned, one heavy-tailed, four NaN (e4m3 and e4m3fnuz, in V and in K), one of group 8, one
  // of group 16 with per-token scales) and at fp32 four more (e4m3fnuz, group 16, one scale per
  // KV head, one a token, two for the tensor with a NaN in V and in K), and 14 of bf16 q (3
  // formats x 3 scale granularities, three at group 16 per token, two of q spread over bf16's
  // range). At fp32 accumulation, 12 latent (MLA) cases on fused and split_kv, 10 unfused (above),
  // and on fused and split_kv 6 at head_dim 96 and 192 (two paged and poisoned, two masked, two
  // ragged, one of them paged and poisoned) and 5 of one to three queries a KV head (one paged
  // and poisoned, one ragged and masked, one fp8).
  EXPECT_EQ(cases.size() + std::size_t(latent_left), 412u);
  int poisoned = 0, masked = 0, fully = 0, padded = 0, negative = 0, overflow = 0, ragged = 0;
  for (const AccuracyCase& c : cases) {
    poisoned += c.data.poison_outside ? 1 : 0;
    ragged += c.data.ragged_min_len > 0 ? 1 : 0;
    masked += c.data.masks_keys() ? 1 : 0;
    fully += c.data.fully_masked > 0 ? 1 : 0;
    padded += c.data.left_padding ? 1 : 0;
    if (c.data.dist == Distribution::negative_logits) {
      ++negative;
      // Overflow is what fp16 accumulation must report there; fp32 is held to its budget.
      EXPECT_EQ(c.expect_fp16_overflow, c.problem.accum == Accum::fp16) << c.name();
      overflow += c.expect_fp16_overflow ? 1 : 0;
    } else {
      EXPECT_FALSE(c.expect_fp16_overflow) << c.name();
    }
  }
  EXPECT_EQ(poisoned, gpu::detail::kMmaDecodePlatform ? 36 : 33);
  // Every fp8 format x scale granularity x accumulation on both single-pass paths, and no fp8
  // case elsewhere.
  std::set<std::tuple<int, int, int, int>> fp8_seen;
  int fp8_cases = 0;
  for (const AccuracyCase& c : cases)
    if (c.problem.kv_fp8) {
      ++fp8_cases;
      EXPECT_TRUE(c.path == Path::fused || c.path == Path::split_kv) << c.name();
      fp8_seen.insert(
          {int(c.path), int(c.problem.accum), int(*c.problem.kv_fp8), int(c.problem.kv_scale)});
      EXPECT_NE(c.name().find("_kv" + std::string(to_string(*c.problem.kv_fp8)) + "_" +
                              std::string(to_string(c.problem.kv_scale))),
                std::string::npos)
          << c.name();
    }
  // 17 a single-pass path and accumulation, 19 more at fp32 (e4m3fnuz at group 2 and four times
  // at 16, 14 of bf16 q), and 3 latent ones a single-pass path (fp32; where the latent kernel is
  // built).
  EXPECT_EQ(fp8_cases, gpu::detail::kMmaDecodePlatform ? 112 : 106);
  EXPECT_EQ(fp8_seen.size(), 2u * 2u * 3u * 3u);
  // bf16 q: every format x scale granularity on both single-pass paths (fp32 accumulation), q
  // spread over bf16's range at groups 4 and 16.
  std::set<std::tuple<int, int, int>> bf16_seen;
  int spread = 0;
  for (const AccuracyCase& c : cases) {
    if (c.problem.kv_fp8 && !c.problem.latent && c.problem.input == DType::bf16) {
      EXPECT_EQ(c.problem.accum, Accum::fp32) << c.name();
      bf16_seen.insert({int(c.path), int(*c.problem.kv_fp8), int(c.problem.kv_scale)});
    }
    if (c.data.q_spread) {
      ++spread;
      EXPECT_EQ(c.problem.input, DType::bf16) << c.name();
      EXPECT_NE(c.name().find("_qspread"), std::string::npos) << c.name();
    }
  }
  EXPECT_EQ(bf16_seen.size(), 2u * 3u * 3u);
  EXPECT_EQ(spread, 4);
  int past_2_31 = 0, past_65535 = 0;
  for (const AccuracyCase& c : cases) {
    const KvLayout l(c.problem, c.layout);
    past_2_31 += l.addressing().layer_offset > (std::int64_t(1) << 31) ? 1 : 0;
    past_65535 += c.problem.batch > 65535 ? 1 : 0;
  }
  EXPECT_EQ(past_2_31, 3);  // one a path
  EXPECT_EQ(past_65535, 3);
  // Where the latent kernel is built, its cases add a ragged one a path (fused, split_kv,
  // unfused) and masked ones at q_len 2: fp16 and e4m3fnuz a single-pass path, fp16 unfused.
  const int latent_paths = gpu::detail::kMmaDecodePlatform ? 3 : 0;
  EXPECT_EQ(ragged, 24 + latent_paths);
  EXPECT_EQ(masked, 24 + (gpu::detail::kMmaDecodePlatform ? 5 : 0));
  EXPECT_EQ(fully, 6);
  EXPECT_EQ(padded, 6);
  EXPECT_EQ(negative, 6);
  EXPECT_EQ(overflow, 3);
  std::set<int> split_counts;
  int split_cases = 0;
  for (const AccuracyCase& c : cases)
    if (c.splits > 0) {
      ++split_cases;
      split_counts.insert(c.splits);
      // attnscope's unfused path on a latent cache too: its pv's split count.
      EXPECT_TRUE(c.path == Path::fused || c.path == Path::split_kv ||
                  (c.path == Path::unfused && c.problem.latent))
          << c.name();
    }
  EXPECT_EQ(split_cases, 12 + 2 * latent_paths);  // and splits 1 and 3 on a latent cache
  EXPECT_EQ(split_counts, (std::set<int>{1, 3, 16}));
  EXPECT_GT(make_cases(selection(Sweep::full)).size(), cases.size());
}

TEST(AccuracyCases, FilterSelectsByImplementationName) {
  for (const AccuracyCase& c : make_cases(selection(Sweep::default_set, "attnscope.split_kv")))
    EXPECT_EQ(c.impl, "attnscope.split_kv");
  std::set<std::string> impls;
  for (const AccuracyCase& c :
       make_cases(selection(Sweep::default_set, "*.unfused,attnscope.fused")))
    impls.insert(c.impl);
  EXPECT_EQ(impls, (std::set<std::string>{"attnscope.unfused", "attnscope.fused"}));
  EXPECT_TRUE(make_cases(selection(Sweep::default_set, "nothing.*")).empty());
  EXPECT_THROW(gpu::NameFilter("a,,b"), std::invalid_argument);
  EXPECT_THROW(parse_sweep("bogus"), std::invalid_argument);
}

// Random cases: reproducible from the seed, valid, supported, and spread over every axis.
TEST(AccuracyCases, RandomCasesAreReproducibleValidAndVaried) {
  const auto a = random_cases(selection(Sweep::default_set), 400, 7);
  const auto b = random_cases(selection(Sweep::default_set), 400, 7);
  ASSERT_EQ(a.size(), 400u);
  std::set<std::string> names, impls, layouts, dists, dtypes;
  std::set<int> q_lens, groups, dims;
  bool sliced = false, fp16_acc = false, long_window = false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const AccuracyCase& c = a[i];
    SCOPED_TRACE(c.name());
    EXPECT_EQ(c.name(), b[i].name());
    EXPECT_EQ(c.data.seed, b[i].data.seed);
    EXPECT_TRUE(names.insert(c.name()).second);
    EXPECT_NO_THROW(c.problem.validate());
    EXPECT_NO_THROW(c.layout.validate(c.problem));
    EXPECT_LE(c.problem.score_elems(), std::int64_t(1) << 22);
    impls.insert(c.impl);
    layouts.insert(std::string(to_string(c.layout.kind)));
    dists.insert(std::string(to_string(c.data.dist)));
    dtypes.insert(std::string(to_string(c.problem.input)));
    q_lens.insert(c.problem.q_len);
    groups.insert(c.problem.group());
    dims.insert(c.problem.head_dim);
    sliced = sliced || c.layout.layer > 0;
    fp16_acc = fp16_acc || c.problem.accum == Accum::fp16;
    long_window = long_window || c.problem.window >= 4096;
  }
  EXPECT_EQ(impls.size(), 3u);
  EXPECT_EQ(layouts.size(), 3u);
  EXPECT_EQ(dists.size(), 4u);
  EXPECT_EQ(dtypes.size(), 3u);
  EXPECT_EQ(dims.size(), 3u);
  EXPECT_GE(q_lens.size(), 10u);
  EXPECT_EQ(groups.size(), 8u);
  EXPECT_TRUE(sliced && fp16_acc && long_window);
  EXPECT_NE(random_cases(selection(Sweep::default_set), 5, 8)[0].name(), a[0].name());
}

// The tune sweep: split_kv at the benchmark tune set's split counts, once per shape at batch 1.
TEST(AccuracyCases, TuneSweepCoversTheBenchmarkSplitCounts) {
  const auto cases = make_cases(selection(Sweep::tune));
  ASSERT_FALSE(cases.empty());
  std::set<std::string> names;
  std::set<std::pair<std::int64_t, int>> seen;  // (window, splits)
  for (const AccuracyCase& c : cases) {
    EXPECT_EQ(c.path, Path::split_kv);
    EXPECT_EQ(c.problem.batch, 1);
    EXPECT_TRUE(names.insert(c.name()).second) << c.name();
    if (c.splits > 0) {
      EXPECT_EQ(c.splits & (c.splits - 1), 0) << c.splits;
      EXPECT_NE(c.name().find("_splits" + std::to_string(c.splits)), std::string::npos);
    }
    if (c.problem.kv_heads == 8) seen.insert({c.problem.window, c.splits});
  }
  for (std::int64_t w : {1024, 4096, 32768, 131072}) {
    EXPECT_EQ(seen.count({w, 0}), 1u) << w;  // the kernel's own choice
    EXPECT_EQ(seen.count({w, 1}), 1u) << w;
    EXPECT_EQ(seen.count({w, int(w / 256 >= 1024 ? 1024 : w / 256)}), 1u) << w;
  }
  EXPECT_EQ(parse_sweep("tune"), Sweep::tune);
}

// The budgets read each kernel's declared order: every part a path uses is present, valid, and
// derived from the same geometry the kernels compile with: the lane kernels (fused and split_kv
// on the matrix-instruction kernel, where it runs, are MatrixInstructionDecodeWhereItRuns's).
TEST(KernelOrders, DeclaredOrdersFollowTheKernelGeometry) {
  Problem p;
  p.q_heads = 4;
  p.kv_heads = 2;
  p.seq_len = p.window = 1000;
  gpu::LaunchContext ctx;
  ctx.multiprocessors = 132;
  for (DType in : {DType::fp16, DType::bf16, DType::fp32}) {
    for (int d : {64, 128, 256}) {
      for (Accum a : {Accum::fp32, Accum::fp16}) {
        if (a == Accum::fp16 && in != DType::fp16) continue;
        p.input = p.output = in;
        p.head_dim = d;
        p.accum = a;
        SCOPED_TRACE(p.tag());
        const int bytes = static_cast<int>(size_of(in));
        const int lanes = gpu::detail::row_lanes(d, bytes);
        for (const gpu::Implementation* impl : gpu::implementations()) {
          if (impl->family != "attnscope") continue;
          if (is_single_pass(impl->path) && gpu::detail::decode_uses_mma(p)) continue;
          SCOPED_TRACE(impl->name);
          ASSERT_TRUE(impl->declares_order());
          const KernelOrder o = impl->order(p, ctx);
          EXPECT_EQ(o.dot.has_value(), impl->path == Path::qk || is_single_pass(impl->path));
          EXPECT_EQ(o.values.has_value(), impl->path != Path::qk);
          if (o.dot) {
            EXPECT_EQ(o.dot->lanes, lanes);
            EXPECT_EQ(o.dot->vec, 16 / bytes);
            EXPECT_EQ(o.dot->pack, a == Accum::fp16 ? 2 : 1);
            EXPECT_EQ(o.dot->lanes * o.dot->vec * (d / (lanes * o.dot->vec)), d);
          }
          if (o.values) {
            EXPECT_NO_THROW(check_order(*o.values));
            EXPECT_GT(summation_depth(*o.values, p.window), 0);
            EXPECT_EQ(parse_order(o.values->name()), *o.values);
          }
          if (impl->path == Path::fused || impl->path == Path::split_kv) {
            EXPECT_EQ(o.values->lanes, gpu::detail::kDecThreads / lanes);
            EXPECT_EQ(o.splits, gpu::detail::decode_auto_splits(p, 132));
            EXPECT_EQ(o.values->chunk, (p.window + o.splits - 1) / o.splits);
            EXPECT_TRUE(o.device_dependent);
          }
        }
      }
    }
  }
}

// Where q and cache are fp16 (or the cache fp8) with fp32 accumulation at head_dim 64, 96, 128 or
// 192 (an fp8 cache: 128 only), a CUDA build runs (and declares) the matrix-instruction kernel at
// every count of queries a KV head; elsewhere the lane kernel.
TEST(KernelOrders, MatrixInstructionDecodeWhereItRuns) {
  Problem p;
  p.q_heads = 64;
  p.kv_heads = 8;
  p.seq_len = p.window = 4096;
  const bool platform = gpu::detail::kMmaDecodePlatform;
  EXPECT_EQ(gpu::detail::decode_uses_mma(p), platform);
  const KernelOrder o = gpu::detail::decode_order(p, 2);
  if (platform) {
    // Up to 8 queries a KV head, 8 a block (the instructions' columns); more, 16 a block.
    EXPECT_EQ(gpu::detail::decode_query_tile(p), 8);
    EXPECT_EQ(gpu::detail::decode_query_tiles(p), 1);
    Problem wide = p;
    wide.kv_heads = 4;
    EXPECT_EQ(gpu::detail::decode_query_tile(wide), 16);
    wide.kv_heads = 2;
    EXPECT_EQ(gpu::detail::decode_query_tiles(wide), 2);
    // The 8-query kernel's dot takes two accumulators (even and odd steps), the 16-query one's
    // one.
    EXPECT_EQ(o.dot, SummationOrder::mma_of(2, 16));
    EXPECT_EQ(gpu::detail::decode_order(wide, 2).dot, SummationOrder::mma_of(1, 16));
    EXPECT_EQ(o.values, SummationOrder::mma_of(4, 8, 2048));
    EXPECT_TRUE(o.truncating);
    EXPECT_EQ(o.extra_roundings, 12);
  } else {
    EXPECT_EQ(o.dot->kind, OrderKind::warp_tree);
    EXPECT_FALSE(o.truncating);
  }
  // fp16 caches at head_dim 64, 96 and 192 too.
  for (int d : {64, 96, 192}) {
    Problem q = p;
    q.head_dim = d;
    EXPECT_EQ(gpu::detail::decode_uses_mma(q), platform) << d;
  }
  // Not for bf16, fp16 accumulation, head_dim 256, or an fp8 cache at head_dim 64, 96 or 192.
  Problem q = p;
  q.kv_fp8 = Fp8Format::e5m2;
  EXPECT_EQ(gpu::detail::decode_uses_mma(q), platform);
  if (platform) {
    EXPECT_EQ(gpu::detail::decode_order(q, 2).fp8_roundings, 1);
  }
  q.kv_scale = KvScale::token;  // every scale granularity
  EXPECT_EQ(gpu::detail::decode_uses_mma(q), platform);
  if (platform) {
    EXPECT_EQ(gpu::detail::decode_order(q, 2).fp8_roundings, 1);
    EXPECT_FALSE(gpu::detail::decode_order(q, 2).q_binary16_scaled);
  }
  // bf16 q with an fp8 cache of every format: q enters as binary16 under a power of two a query,
  // which the order declares (the bf16 cache itself stays on the lane kernel, below).
  for (Fp8Format f : {Fp8Format::e4m3, Fp8Format::e5m2, Fp8Format::e4m3fnuz}) {
    Problem b = q;
    b.kv_fp8 = f;
    b.input = b.output = DType::bf16;
    EXPECT_EQ(gpu::detail::decode_uses_mma(b), platform) << to_string(f);
    if (platform) {
      const KernelOrder ob = gpu::detail::decode_order(b, 2);
      EXPECT_TRUE(ob.q_binary16_scaled);
      EXPECT_EQ(ob.describe(),
                "dot=" + ob.dot->name() + ";values=" + ob.values->name() +
                    ";fp8_roundings=1;extra_roundings=12;truncating;q_binary16_scaled");
    }
  }
  q.kv_scale = KvScale::tensor;
  // Every group down to one query a KV head (MHA), fp8 and fp16 caches alike, 8 queries a block.
  for (int heads : {8, 16, 24, 32}) {
    for (bool fp8 : {true, false}) {
      Problem g = q;
      g.q_heads = heads;
      if (!fp8) g.kv_fp8.reset();
      EXPECT_EQ(gpu::detail::decode_uses_mma(g), platform) << heads << " " << fp8;
      if (platform) {
        EXPECT_EQ(gpu::detail::decode_query_tile(g), 8);
        EXPECT_EQ(gpu::detail::decode_query_tiles(g), 1);
        // The 8-query kernel's order, as at group 8 above, whatever the columns used.
        const KernelOrder og = gpu::detail::decode_order(g, 2);
        EXPECT_EQ(og.dot, SummationOrder::mma_of(2, 16));
        EXPECT_EQ(og.values, SummationOrder::mma_of(4, 8, 2048));
        EXPECT_TRUE(og.truncating);
        EXPECT_EQ(og.extra_roundings, 12);
        EXPECT_EQ(og.fp8_roundings, fp8 ? 1 : 0);
      }
    }
  }
  q.kv_fp8.reset();
  q.q_heads = 8;
  q.q_len = 2;  // 1 head x 2 positions
  q.seq_len = q.window + 1;
  EXPECT_EQ(gpu::detail::decode_uses_mma(q), platform);
  for (int k = 0; k < 6; ++k) {
    q = p;
    if (k == 0) q.input = q.output = DType::bf16;
    if (k == 1) q.accum = Accum::fp16;
    if (k == 2) q.head_dim = 256;
    if (k >= 3) {
      q.kv_fp8 = Fp8Format::e4m3;
      q.head_dim = k == 3 ? 64 : k == 4 ? 96 : 192;
    }
    EXPECT_FALSE(gpu::detail::decode_uses_mma(q)) << k;
  }
}

// Orders that depend on the split count say so, and follow the requested count exactly.
TEST(KernelOrders, SplitCountsComeFromTheContext) {
  Problem p;
  p.q_heads = 32;
  p.kv_heads = 8;
  p.seq_len = p.window = 32768;
  const gpu::Implementation& split = gpu::implementation("attnscope.split_kv");
  const gpu::Implementation& pv = gpu::implementation("attnscope.pv");
  gpu::LaunchContext none;
  EXPECT_THROW(split.order(p, none), std::invalid_argument);  // auto splits need a device
  gpu::LaunchContext h200;
  h200.multiprocessors = 132;
  const KernelOrder auto_o = split.order(p, h200);
  EXPECT_TRUE(auto_o.device_dependent);
  EXPECT_EQ(auto_o.splits, gpu::detail::decode_auto_splits(p, 132));
  EXPECT_EQ(auto_o.values->chunk, (p.window + auto_o.splits - 1) / auto_o.splits);
  gpu::LaunchContext fixed;
  fixed.splits = 7;
  const KernelOrder fixed_o = split.order(p, fixed);
  EXPECT_FALSE(fixed_o.device_dependent);
  EXPECT_EQ(fixed_o.splits, 7);
  EXPECT_EQ(fixed_o.values->chunk, (p.window + 6) / 7);
  EXPECT_TRUE(pv.order(p, h200).device_dependent);
  EXPECT_EQ(split.workspace(p, fixed), std::size_t(32) * 7 * (128 + 1) * sizeof(float));
  // fused splits the same way and merges in the launch: partials plus one ticket per block row.
  const gpu::Implementation& fused = gpu::implementation("attnscope.fused");
  EXPECT_TRUE(fused.order(p, h200).device_dependent);
  EXPECT_EQ(fused.order(p, h200).splits, auto_o.splits);
  EXPECT_EQ(fused.order(p, fixed).splits, 7);
  EXPECT_EQ(fused.workspace(p, fixed),
            std::size_t(32) * 7 * (128 + 1) * sizeof(float) + 8 * sizeof(unsigned));
  gpu::LaunchContext one;
  one.splits = 1;
  EXPECT_EQ(fused.workspace(p, one), 0u);
}

// The decode split count: one wave of resident blocks where the window allows, no split where
// the grid already fills the device, never below the minimum split length, and no more splits
// than pay for their merge.
TEST(KernelOrders, DecodeSplitHeuristic) {
  Problem p;
  p.q_heads = 32;
  p.kv_heads = 8;
  p.seq_len = p.window = 4096;
  // bf16: the lane kernel (an fp16 cache takes the matrix-instruction one where it is built).
  p.input = p.output = DType::bf16;
  // 8 blocks (one per KV head, all four query heads in each), tiles of 32 positions: 64 splits
  // of two tiles each fit a wave, but 32 splits of four tiles cost less once the merge of every
  // split is counted: (128 + 32) + 4 x 32 = 288 positions against (64 + 32) + 4 x 64 = 352.
  EXPECT_EQ(gpu::detail::decode_query_tile(p), 4);
  EXPECT_EQ(gpu::detail::decode_tile_positions(4, 128, 2), 32);
  EXPECT_EQ(gpu::detail::decode_auto_splits(p, 132), 32);
  // A 1024-position window: 16 splits of 64 positions (the minimum), (64 + 32) + 4 x 16 = 160,
  // beat 8 of 128, (128 + 32) + 4 x 8 = 192.
  p.seq_len = p.window = 1024;
  EXPECT_EQ(gpu::detail::decode_auto_splits(p, 132), 16);
  p.seq_len = p.window = 131072;
  // 132 SMs x 4 blocks = 528 slots: 66 splits of 8 blocks fill exactly one wave.
  EXPECT_EQ(gpu::detail::decode_auto_splits(p, 132), 66);
  p.batch = 64;  // 512 blocks already fill the device
  EXPECT_EQ(gpu::detail::decode_auto_splits(p, 132), 1);
  p.batch = 1;
  p.seq_len = p.window = 100;  // shorter than one split
  EXPECT_EQ(gpu::detail::decode_auto_splits(p, 132), 1);
  // MHA: one query a block.
  p.q_heads = p.kv_heads = 32;
  p.seq_len = p.window = 8192;
  p.batch = 8;
  EXPECT_EQ(gpu::detail::decode_query_tile(p), 1);
  EXPECT_EQ(gpu::detail::decode_auto_splits(p, 132), 2);
}

// An e4m3 cache on the matrix-instruction kernel (NVIDIA builds): splits chosen as if two blocks
// fit a multiprocessor (264 slots on 132), not the three that do; e4m3fnuz fills the three where
// its splits stay long.
TEST(KernelOrders, DecodeSplitHeuristicFp8MatrixKernel) {
  Problem p;
  p.q_heads = 32;
  p.kv_heads = 8;
  p.seq_len = p.window = 32768;
  p.kv_fp8 = Fp8Format::e4m3;
  if (!gpu::detail::decode_uses_mma(p)) GTEST_SKIP() << "no matrix-instruction decode kernel here";
  EXPECT_EQ(gpu::detail::mma_blocks_per_sm(true), 3);  // resident; the model counts 2
  // 128 blocks: 2 splits fill 256 of 264 slots; 3 would take a second wave.
  p.batch = 16;
  EXPECT_EQ(gpu::detail::decode_auto_splits(p, 132), 2);
  // 8 blocks: 32 splits of 1024 positions, (1024 + 32) + 4 x 32 = 1184, beat 33 of 993 rounded
  // to 1024, 1188; 34 take a second wave.
  p.batch = 1;
  EXPECT_EQ(gpu::detail::decode_auto_splits(p, 132), 32);
  // e4m3fnuz fills the three where the splits stay long: 128 blocks, 3 splits of 10923
  // positions fill 384 of 396 slots; 8 blocks keep 32 (49 would hold 669 positions).
  p.kv_fp8 = Fp8Format::e4m3fnuz;
  EXPECT_EQ(gpu::detail::decode_auto_splits(p, 132), 32);
  p.batch = 16;
  EXPECT_EQ(gpu::detail::decode_auto_splits(p, 132), 3);
  // 4 KV heads at b16: 64 blocks, 4 splits (two blocks a multiprocessor) of 8192 positions;
  // filling the three (6 splits) would leave 5462.
  p.kv_heads = 4;
  EXPECT_EQ(gpu::detail::decode_auto_splits(p, 132), 4);
  p.kv_heads = 8;
  // fp16 keeps the two blocks that fit: 128 blocks, 2 splits.
  p.kv_fp8.reset();
  p.batch = 16;
  EXPECT_EQ(gpu::detail::decode_auto_splits(p, 132), 2);
}

// The unfused stages on a latent (MLA) cache: qk and pv declare the latent kernel's orders (the
// dot of its attention; the weighted sum in instructions of 8 positions, each probability as two
// halves of the operands' format, split as split_kv splits), softmax takes the problem as it is,
// and qk and pv say why they refuse where the latent kernel is not built, or the cache is fp8.
TEST(KernelOrders, LatentStagesDeclareTheLatentKernelsOrders) {
  Problem p;
  p.batch = 64;
  p.q_heads = 128;
  p.kv_heads = 1;
  p.head_dim = Problem::kMlaQkDim;
  p.v_dim = Problem::kMlaVDim;
  p.latent = true;
  p.scale = 1.0 / std::sqrt(192.0);
  p.seq_len = p.window = 4096;
  ASSERT_NO_THROW(p.validate());
  const KernelOrder qk = gpu::detail::qk_order(p);
  EXPECT_EQ(qk.dot, SummationOrder::mma_of(2, 16));
  EXPECT_EQ(qk.dot, gpu::detail::decode_order(p, 1).dot);
  EXPECT_TRUE(qk.truncating);
  EXPECT_EQ(qk.extra_roundings, 0);
  gpu::LaunchContext c;
  c.multiprocessors = 132;
  const KernelOrder pv = gpu::detail::pv_order(p, c);
  EXPECT_EQ(pv.splits, gpu::detail::decode_auto_splits(p, 132));
  EXPECT_EQ(pv.values, SummationOrder::mma_of(1, 8, (p.window + pv.splits - 1) / pv.splits));
  EXPECT_EQ(pv.values, gpu::detail::decode_order(p, pv.splits).values);
  EXPECT_EQ(pv.extra_roundings, 12);
  EXPECT_TRUE(pv.truncating);
  EXPECT_TRUE(pv.device_dependent);
  Problem b = p;
  b.input = b.output = DType::bf16;
  EXPECT_EQ(gpu::detail::pv_order(b, c).extra_roundings, 8 + 256);
  // Three splits: partials of the 512 output columns a row.
  c.splits = 3;
  EXPECT_EQ(gpu::detail::pv_order(p, c).values->chunk, (4096 + 2) / 3);
  EXPECT_EQ(gpu::detail::pv_workspace_bytes(p, c), std::size_t(64) * 128 * 3 * 512 * sizeof(float));
  for (Path stage : {Path::qk, Path::softmax, Path::pv}) {
    const gpu::Implementation& i = *gpu::family_stage("attnscope", stage);
    EXPECT_TRUE(i.takes_latent_cache) << i.name;
    const std::string why = i.why_unsupported(p, KvLayoutSpec{});
    if (stage == Path::softmax || gpu::detail::kMmaDecodePlatform)
      EXPECT_EQ(why, "") << i.name;
    else
      EXPECT_NE(why.find("latent (MLA) decode kernel uses NVIDIA's matrix"), std::string::npos)
          << why;
  }
  Problem f = p;
  f.kv_fp8 = Fp8Format::e4m3;
  EXPECT_NE(gpu::family_stage("attnscope", Path::qk)
                ->why_unsupported(f, KvLayoutSpec{})
                .find("does not read fp8 KV caches"),
            std::string::npos);
}

// head_dim 96 and 192: a row's 16-byte words split evenly over a power of two of lanes (4 and 8
// in fp16, 8 and 16 in fp32), query tiles within the lanes and 64 floats a lane, and the dot's
// declared tree over those lanes.
TEST(KernelOrders, HeadDims96And192SplitOverWholeLanes) {
  using gpu::detail::lane_query_cap;
  using gpu::detail::row_lanes;
  EXPECT_EQ(row_lanes(96, 2), 4);
  EXPECT_EQ(row_lanes(192, 2), 8);
  EXPECT_EQ(row_lanes(96, 4), 8);
  EXPECT_EQ(row_lanes(192, 4), 16);
  EXPECT_EQ(row_lanes(64, 2), 8);  // unchanged: 8 words, 8 lanes
  EXPECT_EQ(row_lanes(128, 2), 16);
  EXPECT_EQ(row_lanes(256, 2), 16);
  EXPECT_EQ(lane_query_cap(96, 2), 2);
  EXPECT_EQ(lane_query_cap(192, 2), 2);
  EXPECT_EQ(lane_query_cap(96, 4), 4);
  EXPECT_EQ(lane_query_cap(128, 2), 8);
  EXPECT_EQ(lane_query_cap(256, 2), 4);
  Problem p;
  p.q_heads = 32;
  p.kv_heads = 4;
  p.seq_len = p.window = 1000;
  p.head_dim = 96;
  EXPECT_NO_THROW(p.validate());
  EXPECT_EQ(gpu::detail::query_tile(p), 2);
  // The decode kernel: where the matrix-instruction kernels are built, they take fp16 at fp32
  // accumulation (8 queries a block at group 8); the lane kernel, 2 queries a tile.
  EXPECT_EQ(gpu::detail::decode_query_tile(p), gpu::detail::kMmaDecodePlatform ? 8 : 2);
  Problem lane = p;
  lane.accum = Accum::fp16;
  EXPECT_FALSE(gpu::detail::decode_uses_mma(lane));
  EXPECT_EQ(gpu::detail::decode_query_tile(lane), 2);
  const KernelOrder o = gpu::detail::qk_order(p);
  ASSERT_TRUE(o.dot.has_value());
  EXPECT_EQ(o.dot->lanes, 4);
  EXPECT_EQ(summation_depth(*o.dot, 96), 24 + 2);  // 24 elements a lane, then 2 tree levels
  p.input = p.output = DType::fp32;
  EXPECT_EQ(gpu::detail::query_tile(p), 4);
}

// Grid limits are checked before any launch: more KV heads than y's 65535 is unsupported, with
// the reason; batches whose blocks pass z's 65535 are carried on x (fold_grid) and supported.
TEST(KernelOrders, GridLimitsAreSupportReasons) {
  Problem p;
  p.q_heads = 32;
  p.kv_heads = 8;  // group 4: one query tile a KV head for qk, pv and the decode kernel
  p.seq_len = p.window = 64;
  for (int batch : {65535, 70000, 1 << 20}) {
    p.batch = batch;
    for (const char* name : {"attnscope.qk", "attnscope.softmax", "attnscope.pv", "attnscope.fused",
                             "attnscope.split_kv"}) {
      // softmax: a block a row, under 2^32 threads in x (HIP on ROCm counts threads).
      const bool past = std::string(name) == "attnscope.softmax" && batch == (1 << 20);
      const std::string why = gpu::implementation(name).why_unsupported(p, KvLayoutSpec{});
      if (past)
        EXPECT_NE(why.find("rows of scores exceed the grid's 2^32 threads"), std::string::npos)
            << why;
      else
        EXPECT_EQ(why, "") << name;
    }
  }
  p.batch = 1;
  p.q_heads = p.kv_heads = 70000;
  for (const char* name :
       {"attnscope.qk", "attnscope.pv", "attnscope.fused", "attnscope.split_kv"}) {
    const std::string why = gpu::implementation(name).why_unsupported(p, KvLayoutSpec{});
    EXPECT_NE(why.find("70000 KV heads exceed the grid's 65535 blocks in y"), std::string::npos)
        << name << ": " << why;
  }
  // The fold: z past 65535 goes to x, rounded up; past x's limit it is refused at launch.
  const gpu::detail::Grid3 g = gpu::detail::fold_grid(3, 8, 70000, "test");
  EXPECT_EQ(g.x, 6u);
  EXPECT_EQ(g.y, 8u);
  EXPECT_EQ(g.z, 65535u);
  const gpu::detail::Grid3 h = gpu::detail::fold_grid(5, 2, 100, "test");
  EXPECT_EQ(h.x, 5u);
  EXPECT_EQ(h.z, 100u);
  EXPECT_THROW(gpu::detail::fold_grid(std::int64_t(1) << 30, 1, 65535 * 3, "test"), gpu::GpuError);
  EXPECT_THROW(gpu::detail::fold_grid(std::int64_t(1) << 24, 1, 1, "test", 512), gpu::GpuError);
  // A workspace smaller than the launch needs is refused before the launch writes past it.
  gpu::StageArgs a;
  a.workspace_bytes = 100;
  EXPECT_THROW(gpu::detail::check_workspace(a, 101, "test"), gpu::GpuError);
  EXPECT_NO_THROW(gpu::detail::check_workspace(a, 100, "test"));
  a.workspace_bytes = 0;  // unknown: not checked
  EXPECT_NO_THROW(gpu::detail::check_workspace(a, 1 << 20, "test"));
}

// The kernels address a page of a paged cache in 32 bits: a page of 2^31 bytes or more is
// unsupported before any launch, and refused at launch where a caller's addressing has one.
TEST(KernelOrders, PagesPast2GiBAreSupportReasons) {
  Problem p;
  p.q_heads = p.kv_heads = 4096;
  p.head_dim = 128;
  p.seq_len = p.window = 4096;
  KvLayoutSpec paged;
  paged.kind = KvLayoutKind::paged;
  paged.page_size = 2048;  // 2048 x 4096 heads x 128 x 2 bytes = 2^31
  for (const char* name :
       {"attnscope.qk", "attnscope.pv", "attnscope.fused", "attnscope.split_kv"}) {
    const std::string why = gpu::implementation(name).why_unsupported(p, paged);
    EXPECT_NE(why.find("a page of 2147483648 bytes"), std::string::npos) << name << ": " << why;
    paged.page_size = 1024;
    EXPECT_EQ(gpu::implementation(name).why_unsupported(p, paged), "") << name;
    paged.page_size = 2048;
  }
  KvAddressing kv;
  std::int32_t table[1] = {0};
  kv.block_table = table;
  kv.page_size = 2048;
  kv.stride_seq = 4096 * 128;
  kv.stride_page = kv.stride_seq * kv.page_size;
  EXPECT_THROW(gpu::detail::check_page_bytes(kv, DType::fp16, "test"), gpu::GpuError);
  // An fp8 cache's page of the same rows is half the bytes.
  EXPECT_NO_THROW(gpu::detail::check_page_bytes(kv, DType::fp8_e4m3, "test"));
  kv.page_size = 1024;
  kv.stride_page = kv.stride_seq * kv.page_size;
  EXPECT_NO_THROW(gpu::detail::check_page_bytes(kv, DType::fp16, "test"));
  kv.block_table = nullptr;  // contiguous layouts: offsets in 64 bits throughout
  kv.stride_page = std::int64_t(1) << 40;
  EXPECT_NO_THROW(gpu::detail::check_page_bytes(kv, DType::fp32, "test"));
}

TEST(Registry, Fp8CachesAddTheirScalesRoundingsToTheDecodeOrder) {
  Problem p;
  p.q_heads = 4;
  p.kv_heads = 2;
  // bf16 q at head_dim 64: the lane kernel for either cache on every platform (with an fp8 cache
  // at 128 the matrix-instruction kernels take bf16 q where they are built).
  p.input = p.output = DType::bf16;
  p.head_dim = 64;
  p.seq_len = p.window = 1000;
  const KernelOrder plain = gpu::detail::decode_order(p, 4);
  EXPECT_EQ(plain.fp8_roundings, 0);
  p.kv_fp8 = Fp8Format::e5m2;
  const KernelOrder fp32 = gpu::detail::decode_order(p, 4);
  EXPECT_EQ(fp32.fp8_roundings, 1);
  EXPECT_EQ(fp32.describe(), plain.describe() + ";fp8_roundings=1");
  // The arithmetic keeps the input format's geometry: the same orders.
  EXPECT_EQ(fp32.dot, plain.dot);
  EXPECT_EQ(fp32.values, plain.values);
  p.accum = Accum::fp16;
  EXPECT_EQ(gpu::detail::decode_order(p, 4).fp8_roundings, 2);
  // fused and split_kv read fp8 caches; the unfused stages say they do not.
  EXPECT_TRUE(gpu::implementation("attnscope.fused").takes_fp8_cache);
  EXPECT_TRUE(gpu::implementation("attnscope.split_kv").takes_fp8_cache);
  EXPECT_NE(gpu::implementation("attnscope.qk").why_unsupported(p, KvLayoutSpec{}).find("fp8"),
            std::string::npos);
}

TEST(Registry, LooksUpFamiliesAndRejectsBadRegistrations) {
  EXPECT_EQ(gpu::implementation("attnscope.qk").path, Path::qk);
  EXPECT_THROW(gpu::implementation("no.such"), std::invalid_argument);
  EXPECT_EQ(gpu::family_stage("attnscope", Path::pv)->name, "attnscope.pv");
  EXPECT_EQ(gpu::unfused_name("attnscope"), "attnscope.unfused");
  const auto families = gpu::unfused_families();
  EXPECT_NE(std::find(families.begin(), families.end(), "attnscope"), families.end());

  auto launch = [](const gpu::StageArgs&) {};
  gpu::Implementation taken{"attnscope.qk", "x", Path::qk, {}, {}, {}, launch};
  EXPECT_THROW(gpu::register_implementation(taken), std::invalid_argument);
  gpu::Implementation unfused{"x.y", "x", Path::unfused, {}, {}, {}, launch};
  EXPECT_THROW(gpu::register_implementation(unfused), std::invalid_argument);
  gpu::Implementation no_launch{"x.z", "x", Path::fused, {}, {}, {}, {}};
  EXPECT_THROW(gpu::register_implementation(no_launch), std::invalid_argument);
  gpu::Implementation reserved{"x.unfused", "x", Path::fused, {}, {}, {}, launch};
  EXPECT_THROW(gpu::register_implementation(reserved), std::invalid_argument);
}

// An engine's kernel registered at run time gets cases of its own: on the cache layout it
// supports, without what it cannot run (reported once per reason), with the sequential default
// order when it declares none.
TEST(Registry, EngineImplementationGetsCasesOnItsOwnLayout) {
  gpu::Implementation engine;
  engine.name = "testengine.decode";
  engine.family = "testengine";
  engine.path = Path::fused;
  engine.unsupported_reason = [](const Problem& p, const KvLayoutSpec& l) -> std::string {
    if (l.kind != KvLayoutKind::bshd) return "bshd caches only";
    if (p.accum != Accum::fp32) return "fp32 accumulation only";
    return {};
  };
  engine.launch = [](const gpu::StageArgs&) {};
  gpu::register_implementation(engine);

  std::vector<LeftOut> left_out;
  const auto cases = make_cases(selection(Sweep::default_set, "testengine.*"), &left_out);
  ASSERT_FALSE(cases.empty());
  bool layer_slice = false;
  for (const AccuracyCase& c : cases) {
    EXPECT_EQ(c.impl, "testengine.decode");
    EXPECT_EQ(c.path, Path::fused);
    EXPECT_EQ(c.layout.kind, KvLayoutKind::bshd) << c.name();
    EXPECT_EQ(c.problem.accum, Accum::fp32) << c.name();
    layer_slice = layer_slice || (c.layout.layers > 1 && c.layout.layer != 0);
  }
  EXPECT_TRUE(layer_slice) << "a multi-layer cache case reads a layer other than 0";
  std::set<std::string> reasons;
  int left = 0;
  for (const LeftOut& l : left_out) {
    EXPECT_EQ(l.impl, "testengine.decode");
    reasons.insert(l.reason);
    left += l.cases;
  }
  // An implementation that does not declare takes_key_mask gets no masked case.
  EXPECT_EQ(reasons, (std::set<std::string>{
                         "bshd caches only", "fp32 accumulation only", "takes no key mask",
                         "takes no sequence lengths (ragged batches)",
                         "testengine.decode does not read fp8 KV caches (takes_fp8_cache is "
                         "not set)",
                         "testengine.decode does not read latent (MLA) caches "
                         "(takes_latent_cache is not set)"}));
  for (const AccuracyCase& c : cases) {
    EXPECT_FALSE(c.data.masks_keys()) << c.name();
    EXPECT_EQ(c.data.ragged_min_len, 0) << c.name();
  }
  // The fused path's cases of the default set (the split-count cases are attnscope's own).
  EXPECT_EQ(std::size_t(left) + cases.size(), 153u);

  const gpu::Implementation& reg = gpu::implementation("testengine.decode");
  EXPECT_FALSE(reg.declares_order());
  const KernelOrder o = reg.order(cases.front().problem, {});
  ASSERT_TRUE(o.dot && o.values);
  EXPECT_EQ(o.dot->kind, OrderKind::sequential);
  EXPECT_EQ(summation_depth(*o.values, 1000), 1000);
}

}  // namespace
}  // namespace attnscope::accuracy
