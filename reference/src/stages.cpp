#include "attnscope/reference/stages.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "attnscope/core/parallel.hpp"

namespace attnscope::ref {

namespace {

using std::int64_t;

// binary16 -> float for every bit pattern. half_to_float branches per element; a 256 KiB table
// read keeps the K/V conversion of a 131072-key window off the critical path.
const float* half_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(1u << 16);
    for (std::uint32_t i = 0; i < (1u << 16); ++i) t[i] = half_to_float(std::uint16_t(i));
    return t;
  }();
  return table.data();
}

// Converts rows of a HostTensor's raw storage to Real. Each worker owns one (scratch buffer).
class RowLoader {
 public:
  RowLoader(const HostTensor& t, int row_elems)
      : bytes_(static_cast<const unsigned char*>(t.data())),
        dtype_(t.dtype()),
        half_(t.dtype() == DType::fp16 ? half_table() : nullptr),
        bits16_(t.dtype() == DType::fp32 ? 0 : std::size_t(row_elems)),
        bits32_(t.dtype() == DType::fp32 ? std::size_t(row_elems) : 0) {}

  // dst[0, n) = elements [offset, offset + n) of the tensor.
  template <class Real>
  void load(int64_t offset, int n, Real* dst) {
    // memcpy into typed scratch: the storage is a byte array, so no aliasing assumptions.
    switch (dtype_) {
      case DType::fp16:
        std::memcpy(bits16_.data(), bytes_ + 2 * offset, 2 * std::size_t(n));
        for (int i = 0; i < n; ++i) dst[i] = Real(half_[bits16_[std::size_t(i)]]);
        return;
      case DType::bf16:
        std::memcpy(bits16_.data(), bytes_ + 2 * offset, 2 * std::size_t(n));
        for (int i = 0; i < n; ++i) dst[i] = Real(bf16_to_float(bits16_[std::size_t(i)]));
        return;
      case DType::fp32:
        std::memcpy(bits32_.data(), bytes_ + 4 * offset, 4 * std::size_t(n));
        for (int i = 0; i < n; ++i) dst[i] = Real(bits32_[std::size_t(i)]);
        return;
      case DType::fp64:  // a quantized cache's dequantized values
        for (int i = 0; i < n; ++i) {
          double d;
          std::memcpy(&d, bytes_ + 8 * (offset + i), 8);
          dst[i] = Real(d);
        }
        return;
      case DType::fp8_e4m3:
      case DType::fp8_e5m2:
      case DType::fp8_e4m3fnuz:
        for (int i = 0; i < n; ++i)
          dst[i] = Real(fp8_to_float(bytes_[offset + i], fp8_format_of(dtype_)));
        return;
    }
  }

 private:
  const unsigned char* bytes_;
  DType dtype_;
  const float* half_;
  std::vector<std::uint16_t> bits16_;  // [row_elems], fp16/bf16 only
  std::vector<float> bits32_;          // [row_elems], fp32 only
};

// Dot product with eight interleaved partial sums joined by a 3-level tree. The independent
// chains let g++ vectorize the double case without reassociation flags, and each term passes
// through at most n/8 + 2 additions, so |error| <= gamma_{n/8+2} * sum |a_i b_i|. Products of
// fp16/bf16/fp32 values are exact in double (at most 48 significand bits).
template <class Real>
Real dot(const Real* a, const Real* b, int n) {
  constexpr int kLanes = 8;
  Real acc[kLanes] = {};
  int d = 0;
  for (; d + kLanes <= n; d += kLanes)
    for (int i = 0; i < kLanes; ++i) acc[i] += a[d + i] * b[d + i];
  for (; d < n; ++d) acc[d % kLanes] += a[d] * b[d];
  for (int width = kLanes / 2; width >= 1; width /= 2)
    for (int i = 0; i < width; ++i) acc[i] += acc[i + width];
  return acc[0];
}

// out[0, n) += p * v[0, n): independent lanes, vectorized for double.
template <class Real>
void axpy(Real p, const Real* v, Real* out, int n) {
  for (int d = 0; d < n; ++d) out[d] += p * v[d];
}

template <class Real>
Real neg_inf() {
  return -std::numeric_limits<Real>::infinity();
}

// Problem shape and blocking (see Blocking), with the unit indexing. One unit per (batch, kv
// head, split): every query row of a GQA group shares the unit, so each K/V row is converted once
// and used by all group * q_len rows.
struct Plan {
  int batch = 0, q_heads = 0, kv_heads = 0, group = 0, q_len = 0, head_dim = 0;
  int v_dim = 0;  // V and output row width (a latent cache's V is the first v_dim of K's row)
  int64_t window = 0;
  int64_t span_begin = 0;  // first position any query attends: window_start(0)
  int64_t span_len = 0;    // positions attended by some query: window + q_len - 1
  int rows = 0;            // query rows per unit: group * q_len, row r = head_in_group * q_len + t
  int splits = 1;
  int64_t chunk = 0;

  explicit Plan(const Problem& p)
      : batch(p.batch),
        q_heads(p.q_heads),
        kv_heads(p.kv_heads),
        group(p.group()),
        q_len(p.q_len),
        head_dim(p.head_dim),
        v_dim(p.value_dim()),
        window(p.window),
        span_begin(p.window_start(0)),
        span_len(p.window + p.q_len - 1),
        rows(p.group() * p.q_len) {
    const Blocking cut = blocking(p);
    splits = cut.splits;
    chunk = cut.chunk;
  }

  int64_t units() const { return int64_t(batch) * kv_heads * splits; }
  int unit_batch(int64_t u) const { return static_cast<int>(u / (int64_t(kv_heads) * splits)); }
  int unit_kv_head(int64_t u) const { return static_cast<int>((u / splits) % kv_heads); }
  int unit_split(int64_t u) const { return static_cast<int>(u % splits); }
  int64_t split_begin(int s) const { return span_begin + span_len * s / splits; }
  int64_t split_end(int s) const { return span_begin + span_len * (s + 1) / splits; }
  int64_t window_start(int t) const { return span_begin + t; }
  // Query t attends pos (before the key mask).
  bool in_window(int t, int64_t pos) const {
    return pos >= window_start(t) && pos < window_start(t) + window;
  }
  // Score/prob row of (b, q head h, t) in the [batch, q_heads, q_len, window] tensors.
  int64_t score_row(int b, int h, int t) const { return (int64_t(b) * q_heads + h) * q_len + t; }
};

// q as Real, regrouped per unit: [batch, kv_heads, group, q_len, head_dim].
template <class Real>
std::vector<Real> grouped_queries(const AttentionInputs& in, const Plan& plan) {
  const int D = plan.head_dim;
  std::vector<Real> q(std::size_t(plan.batch) * plan.q_heads * plan.q_len * D);
  RowLoader loader(in.q, D);
  for (int b = 0; b < plan.batch; ++b)
    for (int h = 0; h < plan.q_heads; ++h)
      for (int t = 0; t < plan.q_len; ++t) {
        const int64_t row = (int64_t(b) * plan.q_heads + h) * plan.q_len + t;
        loader.load(in.q_offset(b, t, h), D, q.data() + row * D);
      }
  return q;
}

void check_size(std::size_t got, std::int64_t want, const char* what) {
  if (got != std::size_t(want))
    throw std::invalid_argument(std::string(what) + " has " + std::to_string(got) +
                                " elements, expected " + std::to_string(want));
}

// Partial softmax-weighted sums of one unit's query rows over a set of keys:
// out_r = sum_j exp(s_j - max_r) v_j, sum_r = sum_j exp(s_j - max_r).
template <class Real>
struct Partial {
  std::vector<Real> max;  // [rows]; -inf when no key of the set is attended
  std::vector<Real> sum;  // [rows]
  std::vector<Real> out;  // [rows, v_dim]

  Partial(int rows, int v_dim)
      : max(std::size_t(rows), neg_inf<Real>()),
        sum(std::size_t(rows), Real(0)),
        out(std::size_t(rows) * v_dim, Real(0)) {}

  // Merges another partial into this one, the log-sum-exp combine: both are rescaled to the
  // larger max, whose factor exp(0) = 1 is exact.
  void merge(const Partial& o, int v_dim) {
    using std::exp;
    for (std::size_t r = 0; r < max.size(); ++r) {
      if (o.max[r] == neg_inf<Real>()) continue;
      Real* dst = out.data() + r * v_dim;
      const Real* src = o.out.data() + r * v_dim;
      if (max[r] == neg_inf<Real>()) {
        max[r] = o.max[r];
        sum[r] = o.sum[r];
        for (int d = 0; d < v_dim; ++d) dst[d] = src[d];
        continue;
      }
      const Real m = max[r] > o.max[r] ? max[r] : o.max[r];
      const Real a = exp(Real(max[r] - m)), c = exp(Real(o.max[r] - m));
      max[r] = m;
      sum[r] = sum[r] * a + o.sum[r] * c;
      for (int d = 0; d < v_dim; ++d) dst[d] = dst[d] * a + src[d] * c;
    }
  }
};

// One unit of attention_output: keys [split_begin, split_end) of (b, kv head), chunk by chunk.
// Within a chunk the softmax is two-pass (scores, exact max, then exp/sum/PV); chunks and splits
// are joined with Partial::merge.
template <class Real>
void attention_unit(const AttentionInputs& in, const Plan& plan, const std::vector<Real>& queries,
                    int64_t unit, Partial<Real>& acc) {
  using std::exp;
  const int D = plan.head_dim, DV = plan.v_dim, R = plan.rows;
  const int b = plan.unit_batch(unit), kvh = plan.unit_kv_head(unit), split = plan.unit_split(unit);
  const Real scale(in.problem.effective_scale());
  const KvAddressing addr = in.layout.addressing();
  const Real* q = queries.data() + (int64_t(b) * plan.kv_heads + kvh) * R * D;  // [rows, D]

  RowLoader k_loader(in.k, D), v_loader(in.v, DV);
  std::vector<Real> row(std::size_t(D), Real(0));         // [head_dim], one K (or V) row
  std::vector<Real> scores(std::size_t(R) * plan.chunk);  // [rows, chunk]
  Partial<Real> part(R, DV);

  const int64_t end = plan.split_end(split);
  for (int64_t c0 = plan.split_begin(split); c0 < end; c0 += plan.chunk) {
    const int64_t c1 = std::min(end, c0 + plan.chunk), n = c1 - c0;
    for (int r = 0; r < R; ++r) part.max[std::size_t(r)] = neg_inf<Real>();

    for (int64_t pos = c0; pos < c1; ++pos) {
      const bool attended = in.attends(b, pos);
      if (attended) k_loader.load(in.kv_offset(addr, b, kvh, pos), D, row.data());
      for (int r = 0; r < R; ++r) {
        const int t = r % plan.q_len;
        Real s = neg_inf<Real>();
        if (attended && plan.in_window(t, pos)) {
          s = scale * dot(q + int64_t(r) * D, row.data(), D);
          if (s > part.max[std::size_t(r)]) part.max[std::size_t(r)] = s;
        }
        scores[std::size_t(int64_t(r) * plan.chunk + (pos - c0))] = s;
      }
    }

    for (int r = 0; r < R; ++r) {
      part.sum[std::size_t(r)] = Real(0);
      for (int d = 0; d < DV; ++d) part.out[std::size_t(r) * DV + d] = Real(0);
    }
    for (int64_t j = 0; j < n; ++j) {
      if (!in.attends(b, c0 + j)) continue;
      v_loader.load(in.kv_offset(addr, b, kvh, c0 + j), DV, row.data());
      for (int r = 0; r < R; ++r) {
        const Real s = scores[std::size_t(int64_t(r) * plan.chunk + j)];
        if (s == neg_inf<Real>()) continue;
        const Real p = exp(Real(s - part.max[std::size_t(r)]));
        part.sum[std::size_t(r)] += p;
        axpy(p, row.data(), part.out.data() + std::size_t(r) * DV, DV);
      }
    }
    acc.merge(part, DV);
  }
}

}  // namespace

Blocking blocking(const Problem& p) {
  // Enough units to spread over usual host core counts; a split shorter than kMinSplit keys is not
  // worth its merge. Scores held per chunk (rows * chunk) stay near kScoreBudget: 256 KiB of
  // doubles, resident in L2 between the two passes.
  constexpr std::int64_t kTargetUnits = 16, kMinSplit = 2048;
  constexpr std::int64_t kScoreBudget = std::int64_t{1} << 15, kMinChunk = 64;
  const std::int64_t pairs = std::int64_t(p.batch) * p.kv_heads;
  const std::int64_t span = p.window + p.q_len - 1;
  const std::int64_t rows = std::int64_t(p.group()) * p.q_len;
  Blocking b;
  b.splits = static_cast<int>(
      std::min((kTargetUnits + pairs - 1) / pairs, std::max<std::int64_t>(1, span / kMinSplit)));
  b.chunk = std::max(kMinChunk, kScoreBudget / std::max<std::int64_t>(1, rows));
  return b;
}

std::int64_t Blocking::max_merges(const Problem& p) const {
  const std::int64_t span = p.window + p.q_len - 1;
  const std::int64_t longest_split = (span + splits - 1) / splits;
  // The first piece is copied into the empty accumulator; every later one rounds.
  return std::int64_t(splits) * ((longest_split + chunk - 1) / chunk) - 1;
}

template <class Real>
std::vector<Real> qk(const AttentionInputs& in, bool apply_scale) {
  const Plan plan(in.problem);
  const int D = plan.head_dim, R = plan.rows;
  const std::vector<Real> queries = grouped_queries<Real>(in, plan);
  const Real scale(apply_scale ? in.problem.effective_scale() : 1.0);
  const KvAddressing addr = in.layout.addressing();
  // [batch, q_heads, q_len, window]
  std::vector<Real> scores(std::size_t(in.problem.score_elems()), neg_inf<Real>());

  parallel_for(plan.units(), [&](int64_t u0, int64_t u1) {
    RowLoader loader(in.k, D);
    std::vector<Real> row(std::size_t(D), Real(0));  // [head_dim]
    for (int64_t u = u0; u < u1; ++u) {
      const int b = plan.unit_batch(u), kvh = plan.unit_kv_head(u), split = plan.unit_split(u);
      const Real* q = queries.data() + (int64_t(b) * plan.kv_heads + kvh) * R * D;
      for (int64_t pos = plan.split_begin(split); pos < plan.split_end(split); ++pos) {
        if (!in.attends(b, pos)) continue;  // stays -inf
        loader.load(in.kv_offset(addr, b, kvh, pos), D, row.data());
        for (int r = 0; r < R; ++r) {
          const int t = r % plan.q_len, h = kvh * plan.group + r / plan.q_len;
          if (!plan.in_window(t, pos)) continue;
          const int64_t at = plan.score_row(b, h, t) * plan.window + (pos - plan.window_start(t));
          scores[std::size_t(at)] = scale * dot(q + int64_t(r) * D, row.data(), D);
        }
      }
    }
  });
  return scores;
}

template <class Real>
std::vector<Real> softmax(const AttentionInputs& in, const std::vector<Real>& logits,
                          double logit_scale, std::vector<Real>* lse) {
  const Plan plan(in.problem);
  const int64_t W = plan.window;
  const int64_t rows = in.problem.lse_elems();  // [batch, q_heads, q_len]
  check_size(logits.size(), in.problem.score_elems(), "softmax logits");
  std::vector<Real> probs(logits.size(), Real(0));  // [batch, q_heads, q_len, window]
  if (lse != nullptr) lse->assign(std::size_t(rows), neg_inf<Real>());
  const Real factor(logit_scale);

  parallel_for(rows, [&](int64_t r0, int64_t r1) {
    using std::exp;
    using std::log;
    for (int64_t row = r0; row < r1; ++row) {
      const int t = static_cast<int>(row % plan.q_len);
      const int b = static_cast<int>(row / (int64_t(plan.q_heads) * plan.q_len));
      const int64_t start = plan.window_start(t);
      const Real* x = logits.data() + row * W;
      Real* p = probs.data() + row * W;
      Real m = neg_inf<Real>();
      for (int64_t j = 0; j < W; ++j) {
        if (!in.attends(b, start + j)) continue;
        const Real v = factor * x[j];
        if (v > m) m = v;
      }
      if (m == neg_inf<Real>()) continue;  // nothing attended: probs 0, lse -inf
      Real sum(0);
      for (int64_t j = 0; j < W; ++j) {
        if (!in.attends(b, start + j)) continue;
        p[j] = exp(Real(factor * x[j] - m));
        sum += p[j];
      }
      for (int64_t j = 0; j < W; ++j) p[j] /= sum;
      if (lse != nullptr) (*lse)[std::size_t(row)] = m + log(sum);
    }
  });
  return probs;
}

template <class Real>
std::vector<Real> pv(const AttentionInputs& in, const std::vector<Real>& probs) {
  const Plan plan(in.problem);
  const int D = plan.v_dim, R = plan.rows;
  check_size(probs.size(), in.problem.score_elems(), "pv probs");
  const KvAddressing addr = in.layout.addressing();
  // Per-unit partial outputs [units, rows, v_dim], summed in split order afterwards so the
  // result does not depend on the thread count.
  std::vector<Real> partial(std::size_t(plan.units()) * R * D, Real(0));

  parallel_for(plan.units(), [&](int64_t u0, int64_t u1) {
    RowLoader loader(in.v, D);
    std::vector<Real> row(std::size_t(D), Real(0));  // [v_dim]
    for (int64_t u = u0; u < u1; ++u) {
      const int b = plan.unit_batch(u), kvh = plan.unit_kv_head(u), split = plan.unit_split(u);
      Real* acc = partial.data() + u * R * D;
      for (int64_t pos = plan.split_begin(split); pos < plan.split_end(split); ++pos) {
        if (!in.attends(b, pos)) continue;  // excluded even if its V holds NaN
        loader.load(in.kv_offset(addr, b, kvh, pos), D, row.data());
        for (int r = 0; r < R; ++r) {
          const int t = r % plan.q_len, h = kvh * plan.group + r / plan.q_len;
          if (!plan.in_window(t, pos)) continue;
          const int64_t at = plan.score_row(b, h, t) * plan.window + (pos - plan.window_start(t));
          axpy(probs[std::size_t(at)], row.data(), acc + int64_t(r) * D, D);
        }
      }
    }
  });

  std::vector<Real> out(std::size_t(in.problem.out_elems()),
                        Real(0));  // [batch, q_len, q_heads, v_dim]
  for (int64_t u = 0; u < plan.units(); ++u) {
    const int b = plan.unit_batch(u), kvh = plan.unit_kv_head(u);
    const Real* acc = partial.data() + u * R * D;
    for (int r = 0; r < R; ++r) {
      const int t = r % plan.q_len, h = kvh * plan.group + r / plan.q_len;
      Real* dst = out.data() + in.out_offset(b, t, h);
      for (int d = 0; d < D; ++d) dst[d] += acc[int64_t(r) * D + d];
    }
  }
  return out;
}

template <class Real>
Trace<Real> attention(const AttentionInputs& in) {
  Trace<Real> trace;
  trace.scores = qk<Real>(in, true);
  trace.probs = softmax<Real>(in, trace.scores, 1.0, &trace.lse);
  trace.out = pv<Real>(in, trace.probs);
  return trace;
}

template <class Real>
void attention_output(const AttentionInputs& in, std::vector<Real>& out, std::vector<Real>& lse) {
  using std::log;
  const Plan plan(in.problem);
  const int DV = plan.v_dim, R = plan.rows;
  const std::vector<Real> queries = grouped_queries<Real>(in, plan);
  std::vector<Partial<Real>> partials(std::size_t(plan.units()), Partial<Real>(R, DV));

  parallel_for(plan.units(), [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u)
      attention_unit(in, plan, queries, u, partials[std::size_t(u)]);
  });

  out.assign(std::size_t(in.problem.out_elems()), Real(0));  // [batch, q_len, q_heads, v_dim]
  lse.assign(std::size_t(in.problem.lse_elems()), neg_inf<Real>());  // [batch, q_heads, q_len]
  const int64_t pairs = int64_t(plan.batch) * plan.kv_heads;
  for (int64_t pair = 0; pair < pairs; ++pair) {
    // Splits of one pair are consecutive units; join them in order.
    Partial<Real>& total = partials[std::size_t(pair * plan.splits)];
    for (int s = 1; s < plan.splits; ++s)
      total.merge(partials[std::size_t(pair * plan.splits + s)], DV);
    const int b = static_cast<int>(pair / plan.kv_heads),
              kvh = static_cast<int>(pair % plan.kv_heads);
    for (int r = 0; r < R; ++r) {
      if (total.max[std::size_t(r)] == neg_inf<Real>()) continue;  // nothing attended
      const int t = r % plan.q_len, h = kvh * plan.group + r / plan.q_len;
      const Real sum = total.sum[std::size_t(r)];
      Real* dst = out.data() + in.out_offset(b, t, h);
      for (int d = 0; d < DV; ++d) dst[d] = total.out[std::size_t(r) * DV + d] / sum;
      lse[std::size_t(plan.score_row(b, h, t))] = total.max[std::size_t(r)] + log(sum);
    }
  }
}

template <class Real>
std::vector<double> to_double(const std::vector<Real>& v) {
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = static_cast<double>(v[i]);
  return r;
}

#define ATTNSCOPE_INSTANTIATE_STAGES(Real)                                                   \
  template std::vector<Real> qk<Real>(const AttentionInputs&, bool);                         \
  template std::vector<Real> softmax<Real>(const AttentionInputs&, const std::vector<Real>&, \
                                           double, std::vector<Real>*);                      \
  template std::vector<Real> pv<Real>(const AttentionInputs&, const std::vector<Real>&);     \
  template Trace<Real> attention<Real>(const AttentionInputs&);                              \
  template void attention_output<Real>(const AttentionInputs&, std::vector<Real>&,           \
                                       std::vector<Real>&);                                  \
  template std::vector<double> to_double<Real>(const std::vector<Real>&);

ATTNSCOPE_INSTANTIATE_STAGES(double)
ATTNSCOPE_INSTANTIATE_STAGES(Quad)

#undef ATTNSCOPE_INSTANTIATE_STAGES

}  // namespace attnscope::ref
