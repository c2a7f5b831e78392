// The benchmarks' per-buffer traffic declarations: sizes from the problem, totals, and the
// unfused path as its three stages.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "attnscope/core/shapes.hpp"
#include "harness.hpp"

namespace attnscope::bench {
namespace {

Problem llama_decode() {
  Problem p;
  p.batch = 2;
  p.q_heads = 32;
  p.kv_heads = 8;
  p.head_dim = 128;
  p.seq_len = p.window = 4096;
  return p;  // fp16 in and out, q_len 1
}

TEST(BenchTraffic, FusedReadsQkvOnceAndWritesOutAndLse) {
  const Problem p = llama_decode();
  const Traffic t = traffic(Path::fused, p);
  const double q = 2.0 * 32 * 128 * 2, kv = 2.0 * 8 * 4096 * 128 * 2, out = q, lse = 2.0 * 32 * 4;
  EXPECT_DOUBLE_EQ(t.read_bytes(), q + 2 * kv);
  EXPECT_DOUBLE_EQ(t.written_bytes(), out + lse);
  EXPECT_DOUBLE_EQ(t.bytes(), q + 2 * kv + out + lse);
  EXPECT_EQ(t.describe(), "reads q, k, v; writes out, lse");
  const double scores = 2.0 * 32 * 4096;
  EXPECT_DOUBLE_EQ(t.flops, 2 * (2 * scores * 128) + 5 * scores);
  EXPECT_EQ(traffic(Path::split_kv, p).describe(), t.describe());
}

TEST(BenchTraffic, Fp8CachesReadABytePerElementAndTheirScales) {
  Problem p = llama_decode();
  p.kv_fp8 = Fp8Format::e4m3;
  const double q = 2.0 * 32 * 128 * 2, kv = 2.0 * 8 * 4096 * 128, out = q, lse = 2.0 * 32 * 4;
  const Traffic t = traffic(Path::fused, p);
  EXPECT_DOUBLE_EQ(t.read_bytes(), q + 2 * kv + 2 * 4.0);  // one fp32 scale each of K and V
  EXPECT_DOUBLE_EQ(t.written_bytes(), out + lse);
  EXPECT_EQ(t.describe(), "reads q, k, v, k_scale, v_scale; writes out, lse");
  p.kv_scale = KvScale::head;
  EXPECT_DOUBLE_EQ(traffic(Path::split_kv, p).read_bytes(), q + 2 * kv + 2 * 8 * 4.0);
  // Per token: a scale for each row read, of K and of V.
  p.kv_scale = KvScale::token;
  EXPECT_DOUBLE_EQ(traffic(Path::fused, p).read_bytes(), q + 2 * kv + 2 * (2.0 * 8 * 4096 * 4));
}

TEST(BenchTraffic, LatentCachesAreReadOnceAsKAndV) {
  Problem p;
  p.batch = 2;
  p.q_heads = 128;
  p.kv_heads = 1;
  p.head_dim = Problem::kMlaQkDim;
  p.v_dim = Problem::kMlaVDim;
  p.latent = true;
  p.seq_len = p.window = 4096;
  const Traffic t = traffic(Path::fused, p);
  const double q = 2.0 * 128 * 576 * 2, cache = 2.0 * 4096 * 576 * 2;
  const double out = 2.0 * 128 * 512 * 2, lse = 2.0 * 128 * 4;
  EXPECT_DOUBLE_EQ(t.read_bytes(), q + cache);
  EXPECT_DOUBLE_EQ(t.written_bytes(), out + lse);
  EXPECT_EQ(t.describe(), "reads q, latent; writes out, lse");
  // The dots over 576 channels, the weighted sums over 512.
  const double scores = 2.0 * 128 * 4096;
  EXPECT_DOUBLE_EQ(t.flops, 2 * scores * 576 + 2 * scores * 512 + 5 * scores);
  p.kv_fp8 = Fp8Format::e4m3;
  EXPECT_EQ(traffic(Path::split_kv, p).describe(), "reads q, latent, k_scale; writes out, lse");
}

TEST(BenchTraffic, UnfusedIsItsStagesInSequence) {
  const Problem p = llama_decode();
  const Traffic u = traffic(Path::unfused, p);
  double bytes = 0.0, flops = 0.0;
  std::size_t buffers = 0;
  for (Path s : {Path::qk, Path::softmax, Path::pv}) {
    bytes += traffic(s, p).bytes();
    flops += traffic(s, p).flops;
    buffers += traffic(s, p).buffers.size();
  }
  EXPECT_DOUBLE_EQ(u.bytes(), bytes);
  EXPECT_DOUBLE_EQ(u.flops, flops);
  ASSERT_EQ(u.buffers.size(), buffers);
  EXPECT_EQ(u.buffers.front().name, "qk.q");
  EXPECT_EQ(u.buffers.back().name, "pv.out");
  // The scores (fp32) are written by qk and read by softmax (once: the fewest bytes), its
  // probabilities read by pv.
  const double scores = 2.0 * 32 * 4096 * 4;
  EXPECT_DOUBLE_EQ(traffic(Path::softmax, p).read_bytes(), scores);
  EXPECT_DOUBLE_EQ(traffic(Path::softmax, p).bytes(), 2 * scores + 2.0 * 32 * 4);
  EXPECT_DOUBLE_EQ(traffic(Path::qk, p).written_bytes(), scores);
}

TEST(BenchTraffic, PrefillQueriesWidenTheKeySpan) {
  Problem p = llama_decode();
  p.q_len = 4;
  p.seq_len = p.window + 3;
  // Positions some query attends: window + q_len - 1.
  const double kv = 2.0 * 8 * (4096 + 3) * 128 * 2;
  EXPECT_DOUBLE_EQ(traffic(Path::qk, p).read_bytes(), 2.0 * 4 * 32 * 128 * 2 + kv);
}

// Each set names each of its shapes once (a shape twice would time it twice under one name).
TEST(BenchShapes, EachShapeOnceInEverySet) {
  for (const char* set : {"quick", "default", "full"}) {
    std::set<std::string> names;
    const std::vector<DecodeShape> shapes = bench_shapes(set);
    for (const DecodeShape& v : shapes) {
      BenchCase c;
      c.impl = "attnscope.fused";
      c.problem = v.problem();
      c.layout = v.layout_spec();
      c.ragged_min = v.ragged_min;
      EXPECT_TRUE(names.insert(c.name(false)).second) << set << ": " << c.name(false);
    }
    EXPECT_EQ(names.size(), shapes.size()) << set;
  }
}

}  // namespace
}  // namespace attnscope::bench
