// Engine traces: the writers and readers round trip, every reader error class is a TraceError
// naming what is wrong, a correct engine passes, and each planted bug is named by the diagnosis.
// The "engine" here is a naive attention loop written for these tests, independent of the
// references and of the diagnosis.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>

#include "attnscope/core/inputs.hpp"
#include "attnscope/core/random.hpp"
#include "attnscope/core/trace.hpp"
#include "attnscope/core/trace_writer.hpp"
#include "attnscope/reference/stages.hpp"
#include "attnscope/reference/trace_check.hpp"
#include <nlohmann/json.hpp>

namespace attnscope::trace {
namespace {

namespace fs = std::filesystem;

std::string scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / "attnscope_test_trace";
  fs::create_directories(dir);
  return (dir / name).string();
}

// What a planted engine does differently from the declared semantics.
struct Engine {
  std::function<int(int h)> kv_head;                 // default: h / group
  std::int64_t shift = 0;                            // window moved by this many positions
  std::int64_t extra = 0;                            // keys past the window's end attended too
  double scale = 0.0;                                // 0: the declared scale
  bool no_max_shift = false;                         // exp(s) in the accumulation format, no shift
  const std::vector<std::int32_t>* table = nullptr;  // paged: the block table it reads
  int layer = -1;                                    // -1: the declared layer
};

struct Outputs {
  std::vector<double> scores, probs, out, lse;
};

// Naive attention in double as the planted engine computes it.
Outputs engine_outputs(const AttentionInputs& in, const Engine& e) {
  const Problem& p = in.problem;
  KvAddressing a = in.layout.addressing();
  if (e.layer >= 0) a.layer_offset = e.layer * in.layout.layer_elems();
  if (e.table) a.block_table = e.table->data();
  const double scale = e.scale > 0.0 ? e.scale : p.effective_scale();
  const std::int64_t W = p.window + e.extra;
  Outputs o;
  o.scores.assign(std::size_t(p.score_elems()), 0.0);
  o.probs.assign(std::size_t(p.score_elems()), 0.0);
  o.out.assign(std::size_t(p.out_elems()), 0.0);
  o.lse.assign(std::size_t(p.lse_elems()), 0.0);
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.q_heads; ++h)
      for (int t = 0; t < p.q_len; ++t) {
        const int kvh = e.kv_head ? e.kv_head(h) : h / p.group();
        const std::int64_t start = p.window_start(t) + e.shift;
        std::vector<double> s(static_cast<std::size_t>(W));
        double m = -INFINITY;
        for (std::int64_t j = 0; j < W; ++j) {
          double dot = 0.0;
          for (int d = 0; d < p.head_dim; ++d)
            dot += in.q.get(in.q_offset(b, t, h) + d) * in.k.get(a.offset(b, kvh, start + j) + d);
          s[std::size_t(j)] = dot * scale;
          m = std::max(m, s[std::size_t(j)]);
        }
        const DType acc = accum_dtype(p.accum);
        double l = 0.0;
        std::vector<double> w(static_cast<std::size_t>(W));
        for (std::int64_t j = 0; j < W; ++j) {
          w[std::size_t(j)] = e.no_max_shift ? round_to(acc, std::exp(s[std::size_t(j)]))
                                             : std::exp(s[std::size_t(j)] - m);
          l = e.no_max_shift ? round_to(acc, l + w[std::size_t(j)]) : l + w[std::size_t(j)];
        }
        const std::int64_t row = (std::int64_t(b) * p.q_heads + h) * p.q_len + t;
        for (std::int64_t j = 0; j < std::min(W, p.window); ++j) {
          o.scores[std::size_t(row * p.window + j)] = s[std::size_t(j)];
          o.probs[std::size_t(row * p.window + j)] = w[std::size_t(j)] / l;
        }
        o.lse[std::size_t(row)] = e.no_max_shift ? std::log(l) : m + std::log(l);
        for (int d = 0; d < p.head_dim; ++d) {
          double acc_d = 0.0;
          for (std::int64_t j = 0; j < W; ++j)
            acc_d += w[std::size_t(j)] / l * in.v.get(a.offset(b, kvh, start + j) + d);
          o.out[std::size_t(in.q_offset(b, t, h) + d)] = acc_d;
        }
      }
  return o;
}

// Writes a trace point declaring `in`'s problem and layout, recording `o` (which of its parts:
// "scores", "probs", "out", "lse"), through the header-only writer.
std::string write_point(const std::string& name, const AttentionInputs& in, const Outputs& o,
                        const std::vector<std::string>& parts, bool npy = false) {
  RecordedOutputs r;
  auto has = [&parts](const char* x) {
    return std::find(parts.begin(), parts.end(), x) != parts.end();
  };
  if (has("scores")) r.scores = &o.scores;
  if (has("probs")) r.probs = &o.probs;
  if (has("out")) r.out = &o.out;
  if (has("lse")) r.lse = &o.lse;
  r.out_format = std::string(to_string(in.problem.output));
  const std::string path = scratch(name + (npy ? "" : ".safetensors"));
  if (npy) fs::remove_all(path);
  write_trace_point(path, in, r, {{"engine", "test"}, {"step", "0"}}, npy);
  return path;
}

AttentionInputs inputs(KvLayoutKind kind, Accum acc = Accum::fp32,
                       Distribution dist = Distribution::normal,
                       std::optional<Fp8Format> fp8 = std::nullopt,
                       KvScale fp8_scale = KvScale::tensor) {
  Problem p;
  p.kv_fp8 = fp8;
  p.kv_scale = fp8_scale;
  p.batch = 2;
  p.q_heads = 8;
  p.kv_heads = 2;
  p.q_len = 2;
  p.window = 40;
  p.seq_len = 52;
  p.head_dim = 64;
  p.accum = acc;
  KvLayoutSpec l;
  l.kind = kind;
  l.layers = 3;
  l.layer = 2;
  if (kind == KvLayoutKind::paged) {
    l.page_size = 8;
    l.spare_pages = 3;
  } else {
    l.seq_capacity = p.seq_len + 12;  // tail slots beyond seq_len hold other data
  }
  DataSpec d;
  d.dist = dist;
  return make_inputs(p, l, d);
}

const std::vector<std::string> kAll = {"scores", "probs", "out", "lse"};

bool named(const PointReport& r, const std::string& h) {
  return std::find(r.diagnosis.begin(), r.diagnosis.end(), h) != r.diagnosis.end();
}

std::string diagnosis_of(const PointReport& r) {
  std::string s;
  for (const std::string& d : r.diagnosis) s += d + "; ";
  return s;
}

TEST(TraceFormat, WriterAndReaderRoundTripBothForms) {
  const AttentionInputs in = inputs(KvLayoutKind::paged);
  const Outputs o = engine_outputs(in, {});
  for (bool npy : {false, true}) {
    SCOPED_TRACE(npy ? "npy" : "safetensors");
    const TraceFile t = read_trace(write_point("roundtrip", in, o, kAll, npy));
    EXPECT_EQ(t.meta("layout"), "paged");
    EXPECT_EQ(t.meta("seq_len"), "52");
    EXPECT_EQ(t.require("q").type, ElemType::f16);
    EXPECT_EQ(t.require("q").bytes.size(), in.q.bytes());
    EXPECT_EQ(0, std::memcmp(t.require("q").bytes.data(), in.q.data(), in.q.bytes()));
    EXPECT_EQ(0, std::memcmp(t.require("k_cache").bytes.data(), in.k.data(), in.k.bytes()));
    EXPECT_EQ(t.require("block_table").type, ElemType::i32);
    ASSERT_EQ(t.require("block_table").numel(), std::int64_t(in.layout.block_table().size()));
    for (std::int64_t i = 0; i < t.require("block_table").numel(); ++i)
      EXPECT_EQ(t.require("block_table").get(i), in.layout.block_table()[std::size_t(i)]);
    EXPECT_EQ(t.require("scores").get(5), float(o.scores[5]));
  }
}

TEST(TraceCheck, CorrectEngineIsWithinBudgetOnEveryLayout) {
  for (KvLayoutKind kind : {KvLayoutKind::bhsd, KvLayoutKind::bshd, KvLayoutKind::paged}) {
    for (Accum acc : {Accum::fp32, Accum::fp16}) {
      SCOPED_TRACE(std::string(to_string(kind)) + " " + std::string(to_string(acc)));
      const AttentionInputs in = inputs(kind, acc);
      const PointReport r =
          check_trace(read_trace(write_point("correct", in, engine_outputs(in, {}), kAll)));
      EXPECT_TRUE(r.pass) << format_point(r);
      EXPECT_EQ(r.checks.size(), 5u);
      EXPECT_TRUE(r.first_failing_stage.empty());
      EXPECT_EQ(r.record["qk_max_diff"].is_number(), true);
      EXPECT_TRUE(r.record.contains("attn_out_mae"));
    }
  }
  const AttentionInputs in = inputs(KvLayoutKind::bshd);
  CheckOptions quad;
  quad.quad = true;
  EXPECT_TRUE(
      check_trace(read_trace(write_point("correct_npy", in, engine_outputs(in, {}), {"out"}, true)),
                  quad)
          .pass);
}

// A key mask and a ragged batch travel with the trace point: the reference's own outputs of such
// inputs are within budget, and the same outputs declared without the mask and the lengths are
// not (the checker reads them, it does not ignore them). Bad values are refused by name.
TEST(TraceCheck, KeyMaskAndRaggedLengthsRoundTrip) {
  Problem p;
  p.batch = 3;
  p.q_heads = 4;
  p.kv_heads = 2;
  p.q_len = 2;
  p.window = 40;
  p.seq_len = 60;
  p.head_dim = 64;
  KvLayoutSpec l;
  l.kind = KvLayoutKind::paged;
  l.page_size = 8;
  DataSpec d;
  d.mask_fraction = 0.3;
  d.ragged_min_len = 10;
  const AttentionInputs in = make_inputs(p, l, d);
  ASSERT_FALSE(in.key_mask.empty());
  ASSERT_FALSE(in.seq_lens.empty());
  const ref::Trace<double> tr = ref::attention<double>(in);
  Outputs o;
  o.scores = tr.scores;
  o.probs = tr.probs;
  o.out = tr.out;
  o.lse = tr.lse;
  const std::string path = write_point("masked_ragged", in, o, kAll);
  const TraceFile t = read_trace(path);
  ASSERT_TRUE(t.find("key_mask") && t.find("seq_lens"));
  EXPECT_EQ(t.require("seq_lens").get(1), double(in.seq_lens[1]));
  const PointReport r = check_trace(t);
  EXPECT_TRUE(r.pass) << format_point(r);

  AttentionInputs plain = in;
  plain.key_mask.clear();
  plain.seq_lens.clear();
  EXPECT_FALSE(check_trace(read_trace(write_point("unmasked", plain, o, kAll))).pass);

  // A mask value other than 0 and 1, and a length past seq_len, are errors that name them.
  AttentionInputs bad = in;
  bad.key_mask[5] = 2;
  try {
    check_trace(read_trace(write_point("bad_mask", bad, o, kAll)));
    ADD_FAILURE() << "a key_mask value of 2 was accepted";
  } catch (const TraceError& e) {
    EXPECT_NE(std::string(e.what()).find("key_mask' holds 2"), std::string::npos) << e.what();
  }
  bad = in;
  bad.seq_lens[2] = p.seq_len + 1;
  try {
    check_trace(read_trace(write_point("bad_lens", bad, o, kAll)));
    ADD_FAILURE() << "a length past seq_len was accepted";
  } catch (const TraceError& e) {
    EXPECT_NE(std::string(e.what()).find("seq_lens' gives sequence 2"), std::string::npos)
        << e.what();
  }
}

struct Planting {
  const char* name;
  KvLayoutKind kind;
  Accum acc;
  Distribution dist;
  std::function<Engine(const AttentionInputs&)> engine;
  std::vector<std::string> parts;
  std::string expected;  // a hypothesis diagnosis must name
  std::string stage;     // the first failing stage
};

TEST(TraceCheck, EveryPlantedBugIsNamed) {
  std::vector<std::int32_t> identity;
  const std::vector<Planting> plantings = {
      {"layer0", KvLayoutKind::bshd, Accum::fp32, Distribution::normal,
       [](const AttentionInputs&) {
         Engine e;
         e.layer = 0;
         return e;
       },
       kAll, "kv_layer:0", "qk"},
      {"layer1_out_only",
       KvLayoutKind::bhsd,
       Accum::fp32,
       Distribution::normal,
       [](const AttentionInputs&) {
         Engine e;
         e.layer = 1;
         return e;
       },
       {"out"},
       "kv_layer:1",
       "attn_out"},
      {"gqa",
       KvLayoutKind::bhsd,
       Accum::fp32,
       Distribution::normal,
       [](const AttentionInputs& in) {
         Engine e;
         e.kv_head = [kv = in.problem.kv_heads](int h) { return h % kv; };
         return e;
       },
       {"out", "lse"},
       "gqa_interleaved",
       "attn_out"},
      {"shift", KvLayoutKind::bshd, Accum::fp32, Distribution::normal,
       [](const AttentionInputs&) {
         Engine e;
         e.shift = -2;
         return e;
       },
       kAll, "window_shift:-2", "qk"},
      {"scale_missing",
       KvLayoutKind::bhsd,
       Accum::fp32,
       Distribution::normal,
       [](const AttentionInputs&) {
         Engine e;
         e.scale = 1.0;
         return e;
       },
       {"out"},
       "scale:1",
       "attn_out"},
      {"scale_squared",
       KvLayoutKind::bhsd,
       Accum::fp32,
       Distribution::normal,
       [](const AttentionInputs& in) {
         Engine e;
         e.scale = in.problem.effective_scale() * in.problem.effective_scale();
         return e;
       },
       {"scores", "out"},
       "scale:0.015625",
       "qk"},
      {"stale",
       KvLayoutKind::bhsd,
       Accum::fp32,
       Distribution::normal,
       [](const AttentionInputs&) {
         Engine e;
         e.extra = 3;
         return e;
       },
       {"out"},
       "stale_positions",
       "attn_out"},
      {"no_max_shift",
       KvLayoutKind::bshd,
       Accum::fp16,
       Distribution::large_logits,
       [](const AttentionInputs&) {
         Engine e;
         e.no_max_shift = true;
         return e;
       },
       {"out"},
       "no_max_shift",
       "attn_out"},
  };
  for (const Planting& pl : plantings) {
    SCOPED_TRACE(pl.name);
    const AttentionInputs in = inputs(pl.kind, pl.acc, pl.dist);
    const PointReport r = check_trace(
        read_trace(write_point(pl.name, in, engine_outputs(in, pl.engine(in)), pl.parts)));
    EXPECT_FALSE(r.pass);
    EXPECT_EQ(r.first_failing_stage, pl.stage) << format_point(r);
    EXPECT_TRUE(named(r, pl.expected)) << diagnosis_of(r) << "\n" << format_point(r);
    EXPECT_EQ(r.record["first_failing_stage"], pl.stage);
  }
  // A paged cache read as if its pages were in order.
  const AttentionInputs in = inputs(KvLayoutKind::paged);
  std::vector<std::int32_t> table(in.layout.block_table().size());
  for (std::size_t i = 0; i < table.size(); ++i) table[i] = static_cast<std::int32_t>(i);
  Engine e;
  e.table = &table;
  const PointReport r =
      check_trace(read_trace(write_point("table", in, engine_outputs(in, e), {"out"})));
  EXPECT_TRUE(named(r, "block_table_ignored")) << diagnosis_of(r) << "\n" << format_point(r);
  // Only probabilities recorded: the layer bug shows first at softmax (against the reference's
  // scores) and is still named.
  {
    const AttentionInputs in2 = inputs(KvLayoutKind::bshd);
    Engine e2;
    e2.layer = 0;
    const PointReport r2 =
        check_trace(read_trace(write_point("probs_only", in2, engine_outputs(in2, e2), {"probs"})));
    EXPECT_EQ(r2.first_failing_stage, "softmax");
    EXPECT_TRUE(named(r2, "kv_layer:0")) << diagnosis_of(r2) << "\n" << format_point(r2);
  }
  // A bug none of the hypotheses describes: a wrong output sign.
  Outputs o = engine_outputs(in, {});
  for (double& x : o.out) x = -x;
  const PointReport none = check_trace(read_trace(write_point("none", in, o, {"out"})));
  ASSERT_EQ(none.diagnosis.size(), 1u);
  EXPECT_EQ(none.diagnosis[0], kNoHypothesis);
}

// At a window of 2 with the kernel's orders declared, the budgets are tight and differ between
// the layers' data: the layer-0 read is still named.
TEST(TraceCheck, LayerBugIsNamedAtTinyWindowsWithDeclaredOrders) {
  Problem p;
  p.q_heads = 8;
  p.kv_heads = 2;
  p.window = 2;
  p.seq_len = 5;
  p.head_dim = 128;
  KvLayoutSpec l;
  l.kind = KvLayoutKind::bshd;
  l.layers = 2;
  l.layer = 1;
  const AttentionInputs in = make_inputs(p, l, DataSpec{});
  Engine e;
  e.layer = 0;
  const Outputs o = engine_outputs(in, e);
  RecordedOutputs r;
  r.out = &o.out;
  r.lse = &o.lse;
  const std::string path = scratch("tiny_window.safetensors");
  write_trace_point(path, in, r,
                    {{"dot_order", "warp_tree(lanes=32,vec=4)"},
                     {"values_order", "warp_tree(lanes=4,vec=1,chunk=2)"}});
  const PointReport rep = check_trace(read_trace(path));
  EXPECT_FALSE(rep.pass);
  EXPECT_TRUE(named(rep, "kv_layer:0")) << diagnosis_of(rep) << "\n" << format_point(rep);
}

TEST(TraceCheck, NanInTheOutputIsAFailureNotAnError) {
  const AttentionInputs in = inputs(KvLayoutKind::bhsd);
  Outputs o = engine_outputs(in, {});
  o.out[17] = std::nan("");
  const PointReport r = check_trace(read_trace(write_point("nan", in, o, {"out"})));
  EXPECT_FALSE(r.pass);
  EXPECT_EQ(r.checks.back().metrics.nan_count, 1);
  EXPECT_NE(format_point(r).find("1 NaN"), std::string::npos);
}

// fp8 caches: the codes (F8_E4M3, F8_E5M2, or U8 with kv_format) and the scales, per tensor, KV
// head or token, round trip through both forms; a correct engine on the dequantized cache passes,
// and an engine that forgot the scales is caught.
AttentionInputs fp8_inputs(KvLayoutKind kind, Fp8Format f, KvScale sc) {
  return inputs(kind, Accum::fp32, Distribution::normal, f, sc);
}

TEST(TraceFp8, CodesAndScalesRoundTripAndACorrectEnginePasses) {
  struct Form {
    KvLayoutKind kind;
    Fp8Format f;
    KvScale sc;
    bool npy;
  };
  for (const Form& form : {Form{KvLayoutKind::bhsd, Fp8Format::e4m3, KvScale::tensor, false},
                           Form{KvLayoutKind::bshd, Fp8Format::e5m2, KvScale::head, false},
                           Form{KvLayoutKind::paged, Fp8Format::e4m3fnuz, KvScale::token, false},
                           Form{KvLayoutKind::paged, Fp8Format::e4m3, KvScale::token, true}}) {
    const AttentionInputs in = fp8_inputs(form.kind, form.f, form.sc);
    SCOPED_TRACE(std::string(to_string(form.f)) + " " + std::string(to_string(form.sc)) +
                 (form.npy ? " npy" : " safetensors"));
    TraceFile t = read_trace(
        write_point(std::string("fp8_") + std::string(to_string(form.f)) + (form.npy ? "_npy" : ""),
                    in, engine_outputs(in, {}), kAll, form.npy));
    // The codes' type: F8_E4M3 or F8_E5M2 where safetensors names the format, else U8.
    const ElemType want = form.npy || form.f == Fp8Format::e4m3fnuz ? ElemType::u8
                          : form.f == Fp8Format::e4m3               ? ElemType::f8_e4m3
                                                                    : ElemType::f8_e5m2;
    EXPECT_EQ(t.require("k_cache").type, want);
    TraceFile copy = t;
    const AttentionInputs back = inputs_of(copy);
    ASSERT_TRUE(back.problem.kv_fp8.has_value());
    EXPECT_EQ(*back.problem.kv_fp8, form.f);
    EXPECT_EQ(back.problem.kv_scale, form.sc);
    ASSERT_EQ(back.k.numel(), in.k.numel());
    for (std::int64_t i = 0; i < in.k.numel(); ++i) {
      const double a = in.k.get(i), b = back.k.get(i);
      ASSERT_TRUE(a == b || (std::isnan(a) && std::isnan(b))) << i;
      const double c = in.v.get(i), d = back.v.get(i);
      ASSERT_TRUE(c == d || (std::isnan(c) && std::isnan(d))) << i;
    }
    const PointReport r = check_trace(std::move(t));
    EXPECT_TRUE(r.pass) << format_point(r);
    EXPECT_NE(format_point(r).find(" in " + std::string(to_string(form.f))), std::string::npos);
  }
}

TEST(TraceFp8, AnEngineThatForgotTheScalesIsCaught) {
  const AttentionInputs in = fp8_inputs(KvLayoutKind::bhsd, Fp8Format::e4m3, KvScale::head);
  AttentionInputs unscaled = in;  // the codes' values, without their scales
  for (std::int64_t i = 0; i < in.k.numel(); ++i) {
    unscaled.k.set(i, in.k_cache.get(i));
    unscaled.v.set(i, in.v_cache.get(i));
  }
  const PointReport r =
      check_trace(read_trace(write_point("fp8_unscaled", in, engine_outputs(unscaled, {}), kAll)));
  EXPECT_FALSE(r.pass);
}

TEST(TraceFp8, InconsistentFp8TracesAreNamed) {
  const AttentionInputs in = fp8_inputs(KvLayoutKind::bhsd, Fp8Format::e4m3, KvScale::token);
  const TraceFile good = read_trace(write_point("fp8_errors", in, engine_outputs(in, {}), {"out"}));
  auto error_with = [&](const std::function<void(TraceFile&)>& change) {
    TraceFile t = good;
    change(t);
    try {
      (void)inputs_of(t);
    } catch (const TraceError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  // U8 codes with no format named.
  EXPECT_NE(error_with([](TraceFile& t) {
              t.tensors["k_cache"].type = ElemType::u8;
              t.tensors["v_cache"].type = ElemType::u8;
              t.metadata.erase("kv_format");
            }).find("names no kv_format"),
            std::string::npos);
  // A format the dtype contradicts.
  EXPECT_NE(error_with([](TraceFile& t) {
              t.metadata["kv_format"] = "e5m2";
            }).find("but metadata 'kv_format' is 'e5m2'"),
            std::string::npos);
  // Scales of no granularity's shape, and of two shapes.
  EXPECT_NE(error_with([](TraceFile& t) {
              t.tensors["k_scale"].shape = {3};
              t.tensors["v_scale"].shape = {3};
            }).find("k_scale has shape [3]"),
            std::string::npos);
  EXPECT_NE(
      error_with([](TraceFile& t) { t.tensors["v_scale"].shape = {1}; }).find("differ in shape"),
      std::string::npos);
  // A granularity the metadata contradicts.
  EXPECT_NE(error_with([](TraceFile& t) {
              t.metadata["kv_scale"] = "head";
            }).find("but metadata 'kv_scale' is 'head'"),
            std::string::npos);
  // Codes in one cache, values in the other; scales without codes; no scales.
  EXPECT_NE(error_with([](TraceFile& t) {
              t.tensors["v_cache"].type = ElemType::f8_e5m2;
            }).find("(one cache format)"),
            std::string::npos);
  EXPECT_NE(error_with([](TraceFile& t) { t.tensors.erase("v_scale"); }).find("'v_scale'"),
            std::string::npos);
}

// Each class of bad input is a TraceError whose message names the file, the tensor and the fault.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const TraceError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("not a TraceError: ") + e.what();
  }
  return "no error";
}

std::vector<unsigned char> bytes_of(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(f), {});
}

void put(const std::string& path, const std::vector<unsigned char>& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// The file with its JSON header replaced by `header` (the data kept).
std::vector<unsigned char> with_header(const std::vector<unsigned char>& file, std::string header) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file[std::size_t(i)];
  std::vector<unsigned char> out;
  out.reserve(8 + header.size() + file.size());
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<unsigned char>(header.size() >> (8 * i)));
  for (char ch : header) out.push_back(static_cast<unsigned char>(ch));
  for (std::size_t i = 8 + std::size_t(n); i < file.size(); ++i) out.push_back(file[i]);
  return out;
}

std::string header_of(const std::vector<unsigned char>& file) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file[std::size_t(i)];
  return std::string(file.begin() + 8, file.begin() + 8 + std::ptrdiff_t(n));
}

std::string replaced(std::string s, const std::string& from, const std::string& to) {
  const auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

TEST(TraceErrors, EveryBadInputIsNamed) {
  const AttentionInputs in = inputs(KvLayoutKind::bhsd);
  const Outputs o = engine_outputs(in, {});
  const std::string good = write_point("good", in, o, {"out"});
  const std::vector<unsigned char> file = bytes_of(good);
  const std::string header = header_of(file);
  auto parse = [&](const std::vector<unsigned char>& b) {
    return error_of([&] { (void)check_trace(parse_safetensors("x.safetensors", b)); });
  };
  auto contains = [](const std::string& msg, const std::string& what) {
    return msg.find(what) != std::string::npos && msg.find("x.safetensors") != std::string::npos;
  };
  // Truncated, and lengths or offsets outside the file.
  EXPECT_TRUE(contains(parse({1, 2, 3}), "truncated")) << parse({1, 2, 3});
  EXPECT_TRUE(
      contains(parse(std::vector<unsigned char>(file.begin(), file.begin() + 100)), "truncated"));
  EXPECT_TRUE(contains(parse(std::vector<unsigned char>(file.begin(), file.end() - 10)),
                       "outside the data"));
  std::vector<unsigned char> long_header = file;
  long_header[6] = 0x7f;
  EXPECT_TRUE(contains(parse(long_header), "header length"));
  EXPECT_TRUE(contains(parse(with_header(file, "{not json")), "not valid JSON"));
  EXPECT_TRUE(contains(parse(with_header(file, "[1, 2]")), "not a JSON object"));
  // Unknown dtype, a shape that contradicts the offsets, negative dimensions.
  EXPECT_TRUE(
      contains(parse(with_header(file, replaced(header, "\"dtype\":\"F16\"", "\"dtype\":\"Q7\""))),
               "dtype 'Q7'"));
  const std::string q_shape =
      "[" + std::to_string(in.problem.batch) + "," + std::to_string(in.problem.q_len) + ",";
  EXPECT_TRUE(contains(
      parse(with_header(file, replaced(header, "\"shape\":" + q_shape,
                                       "\"shape\":[3," + std::to_string(in.problem.q_len) + ","))),
      "needs"));
  EXPECT_TRUE(
      contains(parse(with_header(file, replaced(header, "\"shape\":" + q_shape, "\"shape\":[-2,"))),
               "negative"));
  // Shapes that contradict each other or the metadata; missing tensors and metadata.
  auto rewrite = [&](const std::string& from, const std::string& to) {
    return parse(with_header(file, replaced(header, from, to)));
  };
  EXPECT_TRUE(contains(rewrite("\"window\":\"40\"", "\"window\":\"400\""), "window"));
  EXPECT_TRUE(contains(rewrite("\"layer\":\"2\"", "\"layer\":\"5\""), "layer"));
  EXPECT_TRUE(
      contains(rewrite("\"layout\":\"bhsd\"", "\"layout\":\"bsdh\""), "bhsd, bshd or paged"));
  EXPECT_TRUE(
      contains(rewrite("\"accumulation\":\"fp32\"", "\"accumulation\":\"fp8\""), "accumulation"));
  EXPECT_TRUE(contains(rewrite("\"seq_len\":\"52\"", "\"seq_len\":\"5x2\""), "not an integer"));
  EXPECT_TRUE(contains(rewrite("\"seq_len\":\"52\"", "\"seq_len\":\"500\""), "seq_capacity"));
  EXPECT_TRUE(contains(rewrite("\"seq_len\":\"52\",", ""), "'seq_len' is missing"));
  EXPECT_TRUE(contains(rewrite("\"q\":", "\"query\":"), "unknown tensor 'query'"));
  EXPECT_TRUE(contains(rewrite("\"v_cache\":", "\"v_cash\":"), "unknown tensor"));
  EXPECT_TRUE(contains(rewrite("\"k_cache\":{\"dtype\":\"F16\"", "\"k_cache\":{\"dtype\":\"BF16\""),
                       "one input format"));
  // Tensors whose bytes overlap, or leave a hole.
  {
    nlohmann::json h = nlohmann::json::parse(header);
    h["v_cache"]["data_offsets"] = h["k_cache"]["data_offsets"];
    EXPECT_TRUE(contains(parse(with_header(file, h.dump())), "overlaps another tensor"))
        << parse(with_header(file, h.dump()));
  }
  // A directory that is no trace, a path that does not exist.
  EXPECT_NE(error_of([&] { (void)find_traces({scratch("no_such_dir")}); }).find("no such file"),
            std::string::npos);
  fs::create_directories(scratch("empty_dir"));
  EXPECT_NE(error_of([&] { (void)find_traces({scratch("empty_dir")}); }).find("holds no trace"),
            std::string::npos);
  // .npy: bad magic, Fortran order, data size.
  const std::string dir = write_point("npy_bad", in, o, {"out"}, true);
  std::vector<unsigned char> npy = bytes_of(dir + "/out.npy");
  std::vector<unsigned char> bad = npy;
  bad[1] = 'X';
  EXPECT_NE(error_of([&] { (void)parse_npy("d", "out", bad); }).find("not a .npy file"),
            std::string::npos);
  bad = npy;
  const std::string h(npy.begin() + 10, npy.begin() + 60);
  const auto at = h.find("False");
  ASSERT_NE(at, std::string::npos);
  std::memcpy(bad.data() + 10 + at, "True ", 5);
  EXPECT_NE(error_of([&] { (void)parse_npy("d", "out", bad); }).find("Fortran"), std::string::npos);
  bad = std::vector<unsigned char>(npy.begin(), npy.end() - 2);
  EXPECT_NE(error_of([&] { (void)parse_npy("d", "out", bad); }).find("needs"), std::string::npos);
  // The writer refuses to write over an earlier trace's directory.
  EXPECT_THROW(write_trace_point(dir, in, {}, {}, true), std::runtime_error);
  put(dir + "/meta.json", {'{', '1'});
  EXPECT_NE(error_of([&] { (void)read_trace(dir); }).find("meta.json: not valid JSON"),
            std::string::npos);
}

// Seeded mutations of valid files (bytes flipped, runs deleted or duplicated, header digits
// changed, truncation): every one is read or refused with a TraceError, never a crash or another
// exception. Run under AddressSanitizer and UndefinedBehaviorSanitizer by CI's sanitizer build.
TEST(TraceFuzz, MutatedFilesAreReadOrRefusedCleanly) {
  const AttentionInputs in = inputs(KvLayoutKind::paged);
  const Outputs o = engine_outputs(in, {});
  const std::vector<unsigned char> file = bytes_of(write_point("fuzz", in, o, kAll));
  const std::string dir = write_point("fuzz_npy", in, o, {"out", "lse"}, true);
  const std::vector<unsigned char> npy = bytes_of(dir + "/out.npy");
  SplitMix64 rng(20261130);
  int refused = 0, read = 0, other = 0;
  std::string other_what;
  auto mutate = [&](std::vector<unsigned char> b, std::size_t header_end) {
    const int kind = int(rng.next() % 5);
    const std::size_t n = b.size();
    auto pos = [&](std::size_t limit) {
      return std::size_t(rng.next() % std::max<std::size_t>(1, limit));
    };
    switch (kind) {
      case 0:  // flip bits, mostly in the header
        for (int i = 0; i < 1 + int(rng.next() % 4); ++i)
          b[pos(rng.next() % 4 ? header_end : n)] ^=
              static_cast<unsigned char>(1u << (rng.next() % 8));
        break;
      case 1:  // truncate
        b.resize(pos(n));
        break;
      case 2: {  // delete a run
        const std::size_t at = pos(header_end), len = 1 + pos(16);
        b.erase(b.begin() + std::ptrdiff_t(at), b.begin() + std::ptrdiff_t(std::min(n, at + len)));
        break;
      }
      case 3: {  // duplicate a run
        const std::size_t at = pos(header_end), len = 1 + pos(16);
        std::vector<unsigned char> run(b.begin() + std::ptrdiff_t(at),
                                       b.begin() + std::ptrdiff_t(std::min(n, at + len)));
        b.insert(b.begin() + std::ptrdiff_t(at), run.begin(), run.end());
        break;
      }
      default:  // replace a digit of the header with another
        for (int tries = 0; tries < 64; ++tries) {
          const std::size_t at = pos(header_end);
          if (at < b.size() && b[at] >= '0' && b[at] <= '9') {
            b[at] = static_cast<unsigned char>('0' + rng.next() % 10);
            break;
          }
        }
    }
    return b;
  };
  std::uint64_t hl = 0;
  for (int i = 7; i >= 0; --i) hl = (hl << 8) | file[std::size_t(i)];
  for (int i = 0; i < 3000; ++i) {
    const bool use_npy = i % 4 == 3;
    const std::vector<unsigned char> b =
        use_npy ? mutate(npy, 128) : mutate(file, std::size_t(8 + hl));
    try {
      if (use_npy) {
        (void)parse_npy("fuzz.npy", "out", b);
      } else {
        (void)check_trace(parse_safetensors("fuzz.safetensors", b), CheckOptions{false, false});
      }
      ++read;
    } catch (const TraceError&) {
      ++refused;
    } catch (const std::exception& e) {
      ++other;
      other_what = e.what();
    }
  }
  EXPECT_EQ(other, 0) << "last: " << other_what;
  EXPECT_GT(refused, 1000);
  EXPECT_GT(read, 10);
  std::cout << "fuzz: 3000 mutated inputs, " << refused << " refused with a TraceError, " << read
            << " read\n";
}

}  // namespace
}  // namespace attnscope::trace
