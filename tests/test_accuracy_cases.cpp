// Host checks of the accuracy suite's plumbing: case names and the kernels' order strings.
#include <gtest/gtest.h>

#include <cctype>
#include <set>

#include "attnscope/kernels/registry.hpp"
#include "attnscope/reference/precision_model.hpp"
#include "cases.hpp"

namespace attnscope::accuracy {
namespace {

TEST(AccuracyCases, NamesAreUniqueAndValidTestNames) {
  for (bool full : {false, true}) {
    std::set<std::string> seen;
    for (const AccuracyCase& c : make_cases(full)) {
      const std::string n = c.name();
      EXPECT_TRUE(seen.insert(n).second) << "duplicate case " << n;
      for (char ch : n)
        EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_') << n;
      EXPECT_NO_THROW(c.problem.validate()) << n;
      EXPECT_NO_THROW(c.layout.validate(c.problem)) << n;
    }
  }
}

TEST(AccuracyCases, DefaultSetCoversEveryWindowPathAndAccumulation) {
  std::set<std::tuple<int, int, std::int64_t>> seen;
  for (const AccuracyCase& c : make_cases(false))
    seen.insert({int(c.path), int(c.problem.accum), c.problem.window});
  for (Path p : {Path::unfused, Path::fused, Path::split_kv})
    for (Accum a : {Accum::fp16, Accum::fp32})
      for (std::int64_t w : {1, 2, 17, 64, 256, 1000, 4096, 32768, 131072})
        EXPECT_EQ(seen.count({int(p), int(a), w}), 1u) << to_string(p) << " " << to_string(a) << " " << w;
  EXPECT_GT(make_cases(true).size(), make_cases(false).size());
}

// The budgets read each kernel's documented order; it must parse and give a sane depth.
TEST(AccuracyCases, KernelOrdersParse) {
  Problem p;
  p.q_heads = 8;
  p.kv_heads = 2;
  p.seq_len = p.window = 1000;
  for (Accum a : {Accum::fp32, Accum::fp16}) {
    p.accum = a;
    for (const char* name : {"attnscope.qk", "attnscope.softmax", "attnscope.fused"}) {
      const gpu::Implementation* impl = nullptr;
      for (const gpu::Implementation& i : gpu::registry())
        if (i.name == name) impl = &i;
      ASSERT_NE(impl, nullptr) << name;
      std::string order = impl->summation_order(p);
      for (const std::string key : {"dot=", "values="}) {
        const auto at = order.find(key);
        if (at == std::string::npos) continue;
        const std::string part = order.substr(at + key.size(), order.find(';', at) - at - key.size());
        EXPECT_GT(model::summation_depth(model::parse_order(part), p.window), 0) << part;
      }
      if (order.rfind("dot=", 0) != 0) {
        EXPECT_GT(model::summation_depth(model::parse_order(order), p.window), 0) << order;
      }
    }
  }
}

}  // namespace
}  // namespace attnscope::accuracy
