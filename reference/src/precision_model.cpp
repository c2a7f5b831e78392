#include "attnscope/reference/precision_model.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "attnscope/core/parallel.hpp"

namespace attnscope::model {

namespace {

using std::int64_t;

// binary32 arithmetic: float operations on x86-64 (SSE, FLT_EVAL_METHOD 0) round once, and fmaf
// is a correctly rounded fused multiply-add.
struct Fp32Arith {
  using T = float;
  static T from(double x) { return static_cast<float>(x); }
  static T add(T a, T b) { return a + b; }
  static T mul(T a, T b) { return a * b; }
  static T fma(T a, T b, T c) { return std::fmaf(a, b, c); }
};

// binary16 arithmetic. Each operation is carried out exactly in double and rounded once by the
// double -> _Float16 conversion:
//  - a sum or a product of two binary16 values (magnitudes 2^-24 .. 2^16) spans at most 41 or
//    22 significant bits, so it is exact in double;
//  - a * b + c (a b: 22 bits, c: 11 bits) is exact in double unless its bits span more than 53
//    places. That needs either |a b| > 2^42 |c|, which with |c| >= 2^-24 puts |a b| above 2^18,
//    beyond binary16's range, so the result is infinite however it is rounded; or
//    |a b| < 2^-30 |c|, where the exact result lies within 2^-30 |c| of the binary16 value c,
//    far inside c's rounding interval (half an ulp is at least 2^-12 |c|, or 2^-25 near zero),
//    and so does its double approximation. The double rounding that an fma in double followed by
//    a conversion can cause in general therefore never changes a binary16 result. The caveat
//    holds for operands that are not binary16: callers convert them first, as a kernel must.
struct Fp16Arith {
  using T = _Float16;
  static T from(double x) { return static_cast<_Float16>(x); }
  static T add(T a, T b) { return from(static_cast<double>(a) + static_cast<double>(b)); }
  static T mul(T a, T b) { return from(static_cast<double>(a) * static_cast<double>(b)); }
  static T fma(T a, T b, T c) {
    return from(std::fma(static_cast<double>(a), static_cast<double>(b), static_cast<double>(c)));
  }
};

// Recursive halving of [lo, lo + len): the left half takes floor(len / 2) elements.
template <class A, class Step>
typename A::T pairwise(int64_t lo, int64_t len, Step& step) {
  if (len == 1) return step(A::from(0.0), lo);
  const int64_t h = len / 2;
  return A::add(pairwise<A>(lo, h, step), pairwise<A>(lo + h, len - h, step));
}

// Folds elements [lo, lo + n) into one value of format A::T in the given order (chunks aside).
// step(acc, i) folds element i into acc with one rounding; partial results join with A::add.
template <class A, class Step>
typename A::T reduce_run(const SummationOrder& order, int64_t lo, int64_t n, Step& step) {
  using T = typename A::T;
  const T zero = A::from(0.0);
  switch (order.kind) {
    case OrderKind::sequential: {
      T acc = zero;
      for (int64_t i = 0; i < n; ++i) acc = step(acc, lo + i);
      return acc;
    }
    case OrderKind::pairwise: {
      if (n <= 0) return zero;
      auto shifted = [&](T acc, int64_t i) { return step(acc, lo + i); };
      return pairwise<A>(0, n, shifted);
    }
    case OrderKind::warp_tree: {
      const int lanes = order.lanes;
      const int64_t vec = order.vec;
      const std::size_t pack = static_cast<std::size_t>(order.pack);
      std::vector<T> acc(static_cast<std::size_t>(lanes), zero);
      std::vector<T> part(pack, zero);
      for (int l = 0; l < lanes; ++l) {
        std::fill(part.begin(), part.end(), zero);
        std::size_t k = 0;  // elements this lane has visited
        for (int64_t c = l; c * vec < n; c += lanes) {
          const int64_t end = std::min(n, c * vec + vec);
          for (int64_t i = c * vec; i < end; ++i, ++k)
            part[k % pack] = step(part[k % pack], lo + i);
        }
        T a = part[0];
        for (std::size_t q = 1; q < pack; ++q) a = A::add(a, part[q]);
        acc[static_cast<std::size_t>(l)] = a;
      }
      // Butterfly (xor shuffle) with ascending distance: all lanes update in lockstep from the
      // previous step's values.
      std::vector<T> next(acc.size(), zero);
      for (int m = 1; m < lanes; m *= 2) {
        for (int l = 0; l < lanes; ++l)
          next[static_cast<std::size_t>(l)] =
              A::add(acc[static_cast<std::size_t>(l)], acc[static_cast<std::size_t>(l ^ m)]);
        acc.swap(next);
      }
      return acc[0];
    }
    case OrderKind::mma:
      // The hardware does not specify the order (or the rounding) of a matrix instruction's sum.
      throw std::invalid_argument(
          "the precision model follows sequential, pairwise and warp_tree orders, not " +
          order.name());
  }
  return zero;
}

// Folds elements [0, n): runs of order.chunk elements (all of them when chunk is 0), each
// reduced by reduce_run, their results added in run order.
template <class A, class Step>
typename A::T reduce(const SummationOrder& order, int64_t n, Step&& step) {
  const int64_t run = order.chunk > 0 ? order.chunk : std::max<int64_t>(n, 1);
  typename A::T total = A::from(0.0);
  for (int64_t lo = 0; lo < n; lo += run) {
    const typename A::T r = reduce_run<A>(order, lo, std::min(run, n - lo), step);
    total = lo == 0 ? r : A::add(total, r);
  }
  return total;
}

template <class A>
double dot_impl(const SummationOrder& order, const double* x, const double* y, int64_t n) {
  using T = typename A::T;
  std::vector<T> xs(static_cast<std::size_t>(n)), ys(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    xs[static_cast<std::size_t>(i)] = A::from(x[i]);
    ys[static_cast<std::size_t>(i)] = A::from(y[i]);
  }
  const T r = reduce<A>(order, n, [&](T acc, int64_t i) {
    return A::fma(xs[static_cast<std::size_t>(i)], ys[static_cast<std::size_t>(i)], acc);
  });
  return static_cast<double>(r);
}

template <class A>
double sum_impl(const SummationOrder& order, const double* x, int64_t n) {
  using T = typename A::T;
  std::vector<T> xs(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) xs[static_cast<std::size_t>(i)] = A::from(x[i]);
  const T r = reduce<A>(
      order, n, [&](T acc, int64_t i) { return A::add(acc, xs[static_cast<std::size_t>(i)]); });
  return static_cast<double>(r);
}

template <class A>
std::vector<double> qk_impl(const AttentionInputs& in, const SummationOrder& order,
                            bool apply_scale) {
  using T = typename A::T;
  const Problem& p = in.problem;
  const int D = p.head_dim, group = p.group();
  const int64_t W = p.window;
  const KvAddressing addr = in.layout.addressing();
  // The kernel holds the scale in the accumulation format and multiplies after the dot.
  const T scale = A::from(p.effective_scale());

  // q in the accumulation format: [batch, q_len, q_heads, head_dim]
  std::vector<T> q(static_cast<std::size_t>(p.q_elems()));
  for (int64_t i = 0; i < p.q_elems(); ++i) q[static_cast<std::size_t>(i)] = A::from(in.q.get(i));

  // [batch, q_heads, q_len, window]; masked keys -inf, as the reference writes them.
  std::vector<double> scores(static_cast<std::size_t>(p.score_elems()),
                             -std::numeric_limits<double>::infinity());
  parallel_for(
      p.score_elems(),
      [&](int64_t e0, int64_t e1) {
        std::vector<T> k(static_cast<std::size_t>(D));  // [head_dim]
        for (int64_t e = e0; e < e1; ++e) {
          const int64_t j = e % W;
          const auto [b, h, t] = p.score_row(e / W);
          const int64_t pos = p.window_start(t) + j;
          if (!in.attends(b, pos)) continue;
          const int64_t base = in.kv_offset(addr, b, h / group, pos);
          for (int d = 0; d < D; ++d) k[static_cast<std::size_t>(d)] = A::from(in.k.get(base + d));
          const T* qr = q.data() + in.q_offset(b, t, h);
          T s = reduce<A>(order, D, [&](T acc, int64_t d) {
            return A::fma(qr[d], k[static_cast<std::size_t>(d)], acc);
          });
          if (apply_scale) s = A::mul(s, scale);
          scores[static_cast<std::size_t>(e)] = static_cast<double>(s);
        }
      },
      std::max<int64_t>(1, 16384 / D));
  return scores;
}

template <class A>
std::vector<double> pv_impl(const AttentionInputs& in, const std::vector<double>& probs,
                            const SummationOrder& order) {
  using T = typename A::T;
  const Problem& p = in.problem;
  const int D = p.value_dim(), group = p.group();
  const int64_t W = p.window;
  const KvAddressing addr = in.layout.addressing();
  if (probs.size() != static_cast<std::size_t>(p.score_elems()))
    throw std::invalid_argument("model_pv: probs has " + std::to_string(probs.size()) +
                                " elements, expected " + std::to_string(p.score_elems()));

  // Probabilities enter the kernel's multiply in the accumulation format.
  std::vector<T> pt(probs.size());  // [batch, q_heads, q_len, window]
  parallel_for(
      p.score_elems(),
      [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i)
          pt[static_cast<std::size_t>(i)] = A::from(probs[static_cast<std::size_t>(i)]);
      },
      1 << 14);

  // [batch, q_len, q_heads, v_dim]: one work item per output element.
  std::vector<double> out(static_cast<std::size_t>(p.out_elems()), 0.0);
  parallel_for(
      p.out_elems(),
      [&](int64_t e0, int64_t e1) {
        std::vector<T> v(static_cast<std::size_t>(W));        // [window], one column of V
        std::vector<char> live(static_cast<std::size_t>(W));  // [window], key attended
        for (int64_t e = e0; e < e1; ++e) {
          const int d = static_cast<int>(e % D);
          const int h = static_cast<int>((e / D) % p.q_heads);
          const int t = static_cast<int>((e / (int64_t(D) * p.q_heads)) % p.q_len);
          const int b = static_cast<int>(e / (int64_t(D) * p.q_heads * p.q_len));
          const int64_t start = p.window_start(t);
          for (int64_t j = 0; j < W; ++j) {
            const bool a = in.attends(b, start + j);
            live[static_cast<std::size_t>(j)] = a ? 1 : 0;
            v[static_cast<std::size_t>(j)] =
                a ? A::from(in.v.get(in.kv_offset(addr, b, h / group, start + j) + d))
                  : A::from(0.0);
          }
          const T* pr = pt.data() + ((int64_t(b) * p.q_heads + h) * p.q_len + t) * W;
          // A masked key contributes nothing (probability 0), whatever its V slot holds.
          const T r = reduce<A>(order, W, [&](T acc, int64_t j) {
            return live[static_cast<std::size_t>(j)]
                       ? A::fma(pr[j], v[static_cast<std::size_t>(j)], acc)
                       : acc;
          });
          out[static_cast<std::size_t>(e)] = static_cast<double>(r);
        }
      },
      std::max<int64_t>(1, 16384 / W));
  return out;
}

// One query's run of the decode kernels: the state of one row-group or of a merged tree node.
template <class A>
struct DecodeState {
  float m = -std::numeric_limits<float>::infinity();
  typename A::T l = A::from(0.0);
  std::vector<typename A::T> acc;  // [v_dim]
};

template <class A>
void decode_impl(const AttentionInputs& in, const SummationOrder& dot, int rows,
                 std::int64_t split_len, int tile, std::vector<double>& out,
                 std::vector<double>& lse) {
  using T = typename A::T;
  const Problem& p = in.problem;
  const int D = p.head_dim, DV = p.value_dim(), group = p.group();
  const KvAddressing addr = in.layout.addressing();
  const int64_t span = p.window + p.q_len - 1, span_start = p.window_start(0);
  const int64_t splits = (span + split_len - 1) / split_len;
  const float scale = static_cast<float>(p.effective_scale());
  const float neg_inf = -std::numeric_limits<float>::infinity();
  out.assign(static_cast<std::size_t>(p.out_elems()), 0.0);
  lse.assign(static_cast<std::size_t>(p.lse_elems()), 0.0);

  parallel_for(p.lse_elems(), [&](int64_t r0, int64_t r1) {
    std::vector<double> q(static_cast<std::size_t>(D)), k(static_cast<std::size_t>(D));
    std::vector<DecodeState<A>> st(static_cast<std::size_t>(rows));
    std::vector<float> o_run(static_cast<std::size_t>(splits * DV)),
        lse_run(static_cast<std::size_t>(splits));
    for (int64_t row = r0; row < r1; ++row) {
      const auto [b, h, t] = p.score_row(row);
      const int64_t qoff = in.q_offset(b, t, h), start = p.window_start(t);
      for (int d = 0; d < D; ++d) q[std::size_t(d)] = in.q.get(qoff + d);
      for (int64_t s = 0; s < splits; ++s) {
        for (auto& x : st) {
          x.m = neg_inf;
          x.l = A::from(0.0);
          x.acc.assign(static_cast<std::size_t>(DV), A::from(0.0));
        }
        const int64_t c0 = span_start + s * split_len,
                      c1 = std::min(c0 + split_len, span_start + span);
        // Row-group g takes tiles g, g + rows, ... of `tile` consecutive positions; per tile, one
        // max update (a rescale when the tile's max exceeds the running one), then each key's
        // weight exp(s - max) in order. With tile 1 this is the per-key update.
        std::vector<float> sc(static_cast<std::size_t>(tile));
        std::vector<int64_t> kbs(static_cast<std::size_t>(tile));
        std::vector<char> live(static_cast<std::size_t>(tile));
        for (int64_t t0 = c0; t0 < c1; t0 += tile) {
          DecodeState<A>& x = st[static_cast<std::size_t>(((t0 - c0) / tile) % rows)];
          float tile_max = neg_inf;
          for (int i = 0; i < tile; ++i) {
            const int64_t pos = t0 + i, j = pos - start;
            live[std::size_t(i)] = pos < c1 && j >= 0 && j < p.window && in.attends(b, pos);
            if (!live[std::size_t(i)]) continue;
            const int64_t kb = in.kv_offset(addr, b, h / group, pos);
            kbs[std::size_t(i)] = kb;
            for (int d = 0; d < D; ++d) k[std::size_t(d)] = in.k.get(kb + d);
            sc[std::size_t(i)] = static_cast<float>(model_dot(
                                     std::is_same<T, float>::value ? Accum::fp32 : Accum::fp16, dot,
                                     q.data(), k.data(), D)) *
                                 scale;
            tile_max = std::max(tile_max, sc[std::size_t(i)]);
          }
          if (tile_max == neg_inf) continue;  // no attended key in the tile
          if (tile_max > x.m) {
            const T alpha = A::from(std::exp(x.m - tile_max));
            x.l = A::mul(x.l, alpha);
            for (T& a : x.acc) a = A::mul(alpha, a);
            x.m = tile_max;
          }
          for (int i = 0; i < tile; ++i) {
            if (!live[std::size_t(i)]) continue;
            const float pr = sc[std::size_t(i)] == x.m ? 1.0f : std::exp(sc[std::size_t(i)] - x.m);
            const T ps = A::from(pr);
            x.l = A::add(x.l, ps);
            const int64_t kb = kbs[std::size_t(i)];
            for (int d = 0; d < DV; ++d)
              x.acc[std::size_t(d)] = A::fma(ps, A::from(in.v.get(kb + d)), x.acc[std::size_t(d)]);
          }
        }
        // Ascending tree over the row-groups, as the kernels merge them.
        for (int w = 1; w < rows; w *= 2)
          for (int g = 0; g + w < rows; g += 2 * w) {
            DecodeState<A>& x = st[std::size_t(g)];
            const DecodeState<A>& y = st[std::size_t(g + w)];
            const float mm = std::max(x.m, y.m);
            const T f1 = A::from(x.m == neg_inf ? 0.0f : std::exp(x.m - mm));
            const T f2 = A::from(y.m == neg_inf ? 0.0f : std::exp(y.m - mm));
            for (int d = 0; d < DV; ++d)
              x.acc[std::size_t(d)] =
                  A::add(A::mul(x.acc[std::size_t(d)], f1), A::mul(y.acc[std::size_t(d)], f2));
            x.l = A::add(A::mul(x.l, f1), A::mul(y.l, f2));
            x.m = mm;
          }
        const DecodeState<A>& top = st[0];
        const double lt = static_cast<double>(top.l);
        for (int d = 0; d < DV; ++d)
          o_run[std::size_t(s * DV + d)] =
              lt == 0.0
                  ? 0.0f
                  : static_cast<float>(A::from(static_cast<double>(top.acc[std::size_t(d)]) / lt));
        lse_run[std::size_t(s)] = lt > 0.0 ? top.m + std::log(static_cast<float>(lt)) : neg_inf;
      }
      const int64_t orow = (int64_t(b) * p.q_len + t) * p.q_heads + h;
      if (splits == 1) {
        for (int d = 0; d < DV; ++d) out[std::size_t(orow * DV + d)] = o_run[std::size_t(d)];
        lse[std::size_t(row)] = lse_run[0];
        continue;
      }
      // The split combine runs in fp32 whatever the accumulation format.
      float mx = neg_inf;
      for (int64_t s = 0; s < splits; ++s) mx = std::max(mx, lse_run[std::size_t(s)]);
      float wsum = 0.0f;
      for (int64_t s = 0; s < splits; ++s)
        if (lse_run[std::size_t(s)] != neg_inf) wsum += std::exp(lse_run[std::size_t(s)] - mx);
      for (int d = 0; d < DV; ++d) {
        float o = 0.0f;
        for (int64_t s = 0; s < splits; ++s)
          if (lse_run[std::size_t(s)] != neg_inf)
            o = std::fmaf(std::exp(lse_run[std::size_t(s)] - mx), o_run[std::size_t(s * DV + d)],
                          o);
        // No split attended a key (a fully masked row): out 0, as the kernels give.
        out[std::size_t(orow * DV + d)] = wsum == 0.0f ? 0.0f : o / wsum;
      }
      lse[std::size_t(row)] = wsum == 0.0f ? neg_inf : mx + std::log(wsum);
    }
  });
}

}  // namespace

double model_dot(Accum acc, const SummationOrder& order, const double* x, const double* y,
                 std::int64_t n) {
  check_order(order);
  return acc == Accum::fp16 ? dot_impl<Fp16Arith>(order, x, y, n)
                            : dot_impl<Fp32Arith>(order, x, y, n);
}

double model_sum(Accum acc, const SummationOrder& order, const double* x, std::int64_t n) {
  check_order(order);
  return acc == Accum::fp16 ? sum_impl<Fp16Arith>(order, x, n) : sum_impl<Fp32Arith>(order, x, n);
}

std::vector<double> model_qk(const AttentionInputs& in, Accum acc, const SummationOrder& order,
                             bool apply_scale) {
  check_order(order);
  return acc == Accum::fp16 ? qk_impl<Fp16Arith>(in, order, apply_scale)
                            : qk_impl<Fp32Arith>(in, order, apply_scale);
}

std::vector<double> model_pv(const AttentionInputs& in, const std::vector<double>& probs, Accum acc,
                             const SummationOrder& order) {
  check_order(order);
  return acc == Accum::fp16 ? pv_impl<Fp16Arith>(in, probs, order)
                            : pv_impl<Fp32Arith>(in, probs, order);
}

void model_decode(const AttentionInputs& in, Accum acc, const SummationOrder& dot, int rows,
                  std::int64_t split_len, std::vector<double>& out, std::vector<double>& lse,
                  int tile) {
  check_order(dot);
  if (rows < 1 || (rows & (rows - 1)) != 0)
    throw std::invalid_argument("model_decode: rows must be a power of two (got " +
                                std::to_string(rows) + ")");
  if (split_len < 1) throw std::invalid_argument("model_decode: split_len must be >= 1");
  if (tile < 1) throw std::invalid_argument("model_decode: tile must be >= 1");
  if (acc == Accum::fp16)
    decode_impl<Fp16Arith>(in, dot, rows, split_len, tile, out, lse);
  else
    decode_impl<Fp32Arith>(in, dot, rows, split_len, tile, out, lse);
}

}  // namespace attnscope::model
