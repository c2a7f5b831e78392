#include "attnscope/core/inputs.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "attnscope/core/parallel.hpp"
#include "attnscope/core/random.hpp"

namespace attnscope {

std::string_view to_string(Distribution d) {
  switch (d) {
    case Distribution::normal:
      return "normal";
    case Distribution::uniform:
      return "uniform";
    case Distribution::heavy_tailed:
      return "heavy_tailed";
    case Distribution::large_logits:
      return "large_logits";
    case Distribution::negative_logits:
      return "negative_logits";
  }
  return "?";
}

Distribution parse_distribution(std::string_view s) {
  if (s == "normal") return Distribution::normal;
  if (s == "uniform") return Distribution::uniform;
  if (s == "heavy_tailed") return Distribution::heavy_tailed;
  if (s == "large_logits") return Distribution::large_logits;
  if (s == "negative_logits") return Distribution::negative_logits;
  throw std::invalid_argument(
      "unknown distribution '" + std::string(s) +
      "' (expected normal, uniform, heavy_tailed, large_logits or negative_logits)");
}

namespace {

constexpr std::uint64_t kStreamQ = 1, kStreamK = 2, kStreamV = 3, kStreamFill = 4, kStreamMask = 5,
                        kStreamT = 6, kStreamPad = 7, kStreamLen = 8;

// Student-t with 3 degrees of freedom, scaled to unit variance: z / sqrt(chi2_3 / 3) / sqrt(3).
double student_t3(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  const double z = counter_normal(seed, stream, 4 * i);
  double chi2 = 0.0;
  for (std::uint64_t k = 1; k <= 3; ++k) {
    const double g = counter_normal(seed, stream + 100, 4 * i + k);
    chi2 += g * g;
  }
  return z / std::sqrt(chi2 / 3.0) / std::sqrt(3.0);
}

}  // namespace

double generated_value(const Problem& p, const DataSpec& data, int which, int b, int h,
                       std::int64_t pos, int d) {
  // A logical index independent of the layout.
  const std::int64_t heads = which == 0 ? p.q_heads : p.kv_heads;
  const std::uint64_t idx = static_cast<std::uint64_t>(
      ((std::int64_t(b) * heads + h) * (which == 0 ? p.q_len : p.seq_len) + pos) * p.head_dim + d);
  const std::uint64_t stream = which == 0 ? kStreamQ : which == 1 ? kStreamK : kStreamV;
  switch (data.dist) {
    case Distribution::normal:
      return counter_normal(data.seed, stream, idx);
    case Distribution::uniform:
      return 2.0 * to_unit_open(counter_hash(data.seed, stream, idx)) - 1.0;
    case Distribution::heavy_tailed: {
      double x = student_t3(data.seed, stream + kStreamT * 16, idx);
      // Outlier channels: every 32nd channel of K (and of q, which meets them) is 8x larger.
      if (which != 2 && d % 32 == 5) x *= 8.0;
      return x;
    }
    case Distribution::large_logits:
      // std(q.k * scale) = 3.5^2 = 12.25: logits spread over tens, as peaky attention does.
      return (which == 2 ? 1.0 : 3.5) * counter_normal(data.seed, stream, idx);
    case Distribution::negative_logits: {
      if (which == 2) return counter_normal(data.seed, stream, idx);
      // An integer c with c^2 sqrt(head_dim) near 6e4: 73 at head_dim 128. K = c + k/16, k in
      // {-2..2}, is exact in binary16, and every partial sum of q.k is a multiple of 1/16 below
      // 2^20: exact in binary32 as well.
      const double c = std::round(std::sqrt(6e4 / std::sqrt(static_cast<double>(p.head_dim))));
      if (which == 0) return -c;
      return c + static_cast<double>(counter_hash(data.seed, stream, idx) % 5) / 16.0 - 0.125;
    }
  }
  return 0.0;
}

std::vector<std::int64_t> ragged_lengths(const Problem& p, std::int64_t min_len,
                                         std::uint64_t seed) {
  const double lo = static_cast<double>(std::max<std::int64_t>(min_len, p.q_len));
  const double hi = static_cast<double>(p.seq_len);
  std::vector<std::int64_t> lens(static_cast<std::size_t>(p.batch), p.seq_len);
  for (int b = 1; b < p.batch; ++b) {
    const double u = to_unit_open(counter_hash(seed, kStreamLen, std::uint64_t(b)));
    const auto len = static_cast<std::int64_t>(std::floor(lo * std::exp(u * std::log(hi / lo))));
    lens[std::size_t(b)] = std::clamp<std::int64_t>(len, std::int64_t(lo), p.seq_len);
  }
  return lens;
}

std::int64_t kv_scale_index(const Problem& p, int h, std::int64_t offset) {
  switch (p.kv_scale) {
    case KvScale::tensor:
      return 0;
    case KvScale::head:
      return h;
    case KvScale::token:
      return offset / p.head_dim;
  }
  return 0;
}

std::int64_t fp8_scale_count(const Problem& p, std::int64_t storage) {
  return p.kv_scale == KvScale::tensor ? 1
         : p.kv_scale == KvScale::head ? p.kv_heads
                                       : storage / p.head_dim;
}

namespace {

// Quantizes the cache of `in` (problem.kv_fp8), as an engine does: each scale is the largest
// magnitude of its finite elements over the format's largest value (1 where that is 0), rounded
// to fp32; an element x is stored as the code of x / scale rounded once, saturating. Slots that
// hold no token of a sequence keep their fill: non-finite values as NaN codes (or, in e5m2,
// infinities), and, per token, a NaN scale where the row's values are not finite.
void quantize_cache(AttentionInputs& in) {
  const Problem& p = in.problem;
  const Fp8Format f = *p.kv_fp8;
  const DType code_t = fp8_dtype(f);
  const KvAddressing a = in.layout.addressing();
  const std::int64_t storage = in.layout.storage_elems();
  const int D = p.head_dim;
  in.k_orig = std::move(in.k);
  in.v_orig = std::move(in.v);
  const std::int64_t scales = fp8_scale_count(p, storage);
  for (HostTensor* t : {&in.k_scale, &in.v_scale}) *t = HostTensor(DType::fp32, {scales});
  // The largest finite magnitude under each scale, over every token of every sequence.
  std::vector<double> amax_k(std::size_t(scales), 0.0), amax_v(std::size_t(scales), 0.0);
  std::vector<char> owned(std::size_t(storage / D), 0);
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.kv_heads; ++h)
      for (std::int64_t pos = 0; pos < in.seq_len_of(b); ++pos) {
        const std::int64_t base = a.offset(b, h, pos);
        owned[std::size_t(base / D)] = 1;
        const std::size_t s = std::size_t(kv_scale_index(p, h, base));
        for (int d = 0; d < D; ++d) {
          const double k = std::fabs(in.k_orig.get(base + d)),
                       v = std::fabs(in.v_orig.get(base + d));
          if (std::isfinite(k)) amax_k[s] = std::max(amax_k[s], k);
          if (std::isfinite(v)) amax_v[s] = std::max(amax_v[s], v);
        }
      }
  // A scale from the largest magnitude under it (1 where that is 0).
  auto scale_of = [&](double amax) { return amax > 0.0 ? amax / fp8_max(f) : 1.0; };
  auto set_scales = [&](HostTensor& t, const std::vector<double>& amax) {
    for (std::int64_t s = 0; s < scales; ++s) t.set(s, scale_of(amax[std::size_t(s)]));
  };
  set_scales(in.k_scale, amax_k);
  set_scales(in.v_scale, amax_v);
  in.k_cache = HostTensor(code_t, {storage});
  in.v_cache = HostTensor(code_t, {storage});
  in.k = HostTensor(DType::fp64, {storage});
  in.v = HostTensor(DType::fp64, {storage});
  const std::uint8_t nan_code = fp8_nan(f);
  auto quantize = [&](const HostTensor& orig, HostTensor& codes, HostTensor& scale, HostTensor& deq,
                      std::int64_t i, std::int64_t s) {
    const double x = orig.get(i), sc = scale.get(s);
    std::uint8_t c;
    if (std::isnan(x) || std::isnan(sc))
      c = nan_code;
    else if (std::isinf(x))
      c = f == Fp8Format::e5m2 ? std::uint8_t(x > 0 ? 0x7c : 0xfc) : nan_code;
    else
      c = double_to_fp8(x / sc, code_t);
    static_cast<std::uint8_t*>(codes.data())[i] = c;
    deq.set(i, double(fp8_to_float(c, f)) * sc);  // exact: 4 by 24 significand bits
  };
  parallel_for(
      storage / D,
      [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r) {
          const std::int64_t base = r * D;
          // A row no sequence owns has a scale only per token: NaN where its values are
          // poison, its own largest magnitude otherwise.
          if (p.kv_scale == KvScale::token && !owned[std::size_t(r)]) {
            double mk = 0.0, mv = 0.0;
            bool finite = true;
            for (int d = 0; d < D; ++d) {
              const double k = in.k_orig.get(base + d), v = in.v_orig.get(base + d);
              finite = finite && std::isfinite(k) && std::isfinite(v);
              mk = std::max(mk, std::fabs(k));
              mv = std::max(mv, std::fabs(v));
            }
            const double nan = std::numeric_limits<double>::quiet_NaN();
            in.k_scale.set(r, finite ? scale_of(mk) : nan);
            in.v_scale.set(r, finite ? scale_of(mv) : nan);
          }
          // The KV head of the row: its offset within a position's heads (head scales only
          // index by it; contiguous and paged layouts alike hold heads at stride_head).
          // Every layer's size is a multiple of stride_head x kv_heads.
          const int h =
              p.kv_scale == KvScale::head ? static_cast<int>(base / a.stride_head % p.kv_heads) : 0;
          const std::int64_t s = kv_scale_index(p, h, base);
          for (int d = 0; d < D; ++d) {
            quantize(in.k_orig, in.k_cache, in.k_scale, in.k, base + d, s);
            quantize(in.v_orig, in.v_cache, in.v_scale, in.v, base + d, s);
          }
        }
      },
      1024);
}

}  // namespace

AttentionInputs make_inputs(const Problem& p, const KvLayoutSpec& layout_spec,
                            const DataSpec& data) {
  p.validate();
  if (!(data.mask_fraction >= 0.0 && data.mask_fraction < 1.0))
    throw std::invalid_argument("mask_fraction must be in [0, 1)");
  if (data.ragged_min_len < 0 || data.ragged_min_len > p.seq_len)
    throw std::invalid_argument(
        "ragged_min_len must be in [0, seq_len = " + std::to_string(p.seq_len) + "] (got " +
        std::to_string(data.ragged_min_len) + ")");
  if (data.fully_masked < 0 || data.fully_masked > p.batch)
    throw std::invalid_argument("fully_masked must be in [0, batch = " + std::to_string(p.batch) +
                                "] (got " + std::to_string(data.fully_masked) + ")");
  AttentionInputs in{p,
                     KvLayout(p, layout_spec),
                     data,
                     HostTensor(p.input, {p.batch, p.q_len, p.q_heads, p.head_dim}),
                     HostTensor(),
                     HostTensor(),
                     {},
                     {},
                     {},
                     {},
                     {},
                     {},
                     {},
                     {}};
  if (data.ragged_min_len > 0) in.seq_lens = ragged_lengths(p, data.ragged_min_len, data.seed);
  const std::int64_t storage = in.layout.storage_elems();
  in.k = HostTensor(p.input, {storage});
  in.v = HostTensor(p.input, {storage});

  // Storage outside the selected layer: distinct values, so a wrong offset is visible, or
  // (poison_outside) NaN, +Inf and -Inf in turn.
  const double poison[3] = {std::numeric_limits<double>::quiet_NaN(),
                            std::numeric_limits<double>::infinity(),
                            -std::numeric_limits<double>::infinity()};
  parallel_for(
      storage,
      [&](std::int64_t b0, std::int64_t e0) {
        for (std::int64_t i = b0; i < e0; ++i) {
          if (data.poison_outside) {
            in.k.set(i, poison[i % 3]);
            in.v.set(i, poison[(i + 1) % 3]);
            continue;
          }
          in.k.set(
              i,
              4.0 * to_unit_open(counter_hash(data.seed, kStreamFill, 2 * std::uint64_t(i))) - 2.0);
          in.v.set(i, 4.0 * to_unit_open(
                                counter_hash(data.seed, kStreamFill, 2 * std::uint64_t(i) + 1)) -
                          2.0);
        }
      },
      1 << 16);

  if (data.q_spread && p.input != DType::bf16 && p.input != DType::fp32)
    throw std::invalid_argument("q_spread needs bf16 or fp32 inputs (got " +
                                std::string(to_string(p.input)) + ")");
  for (int b = 0; b < p.batch; ++b)
    for (int t = 0; t < p.q_len; ++t)
      for (int h = 0; h < p.q_heads; ++h)
        for (int d = 0; d < p.head_dim; ++d) {
          double x = generated_value(p, data, 0, b, h, t, d);
          if (data.q_spread) x = std::ldexp(x, 6 * (h % 5 - 2) - (d % 5 == 4 ? 40 : 0));
          in.q.set(in.q_offset(b, t, h) + d, x);
        }

  const KvAddressing a = in.layout.addressing();
  const std::int64_t rows = std::int64_t(p.batch) * p.kv_heads * p.seq_len;
  parallel_for(
      rows,
      [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r) {
          const std::int64_t pos = r % p.seq_len;
          const int h = static_cast<int>((r / p.seq_len) % p.kv_heads);
          const int b = static_cast<int>(r / (std::int64_t(p.seq_len) * p.kv_heads));
          const std::int64_t base = a.offset(b, h, pos);
          // Positions before the first query's window, and past a ragged sequence's end, are
          // attended by no query.
          if (data.poison_outside &&
              (pos < p.window_start(0) + in.shift(b) || pos >= in.seq_len_of(b)))
            continue;
          for (int d = 0; d < p.head_dim; ++d) {
            in.k.set(base + d, generated_value(p, data, 1, b, h, pos, d));
            in.v.set(base + d, generated_value(p, data, 2, b, h, pos, d));
          }
        }
      },
      256);

  if (data.nan_in_key && !data.nan_in_window)
    throw std::invalid_argument("nan_in_key places the NaN of nan_in_window, which is not set");
  if (data.nan_in_window) {
    if (data.fully_masked > 0)
      throw std::invalid_argument("nan_in_window: sequence 0 is fully masked, nothing reads it");
    const std::int64_t own = in.seq_len_of(0) - p.q_len;
    (p.latent || data.nan_in_key ? in.k : in.v)
        .set(a.offset(0, 0, own), std::numeric_limits<double>::quiet_NaN());
  }
  // A latent cache is one tensor: V is K's memory (its first v_dim channels of each row).
  if (p.latent) in.v = in.k;
  if (data.masks_keys()) {
    in.key_mask.assign(std::size_t(std::int64_t(p.batch) * p.seq_len), 1);
    for (int b = 0; b < p.batch; ++b) {
      std::uint8_t* m = in.key_mask.data() + std::int64_t(b) * p.seq_len;
      if (b < data.fully_masked) {
        std::fill(m, m + p.seq_len, std::uint8_t{0});
        continue;
      }
      // Only positions before the queries' own are masked.
      const std::int64_t keys = in.seq_len_of(b) - p.q_len;
      std::int64_t pad = 0;
      if (data.left_padding)
        pad = static_cast<std::int64_t>(counter_hash(data.seed, kStreamPad, std::uint64_t(b)) %
                                        std::uint64_t(keys + 1));
      for (std::int64_t pos = 0; pos < keys; ++pos) {
        bool masked = pos < pad;
        if (data.mask_fraction > 0.0)
          masked = masked || to_unit_open(counter_hash(data.seed, kStreamMask,
                                                       std::uint64_t(b * p.seq_len + pos))) <
                                 data.mask_fraction;
        if (masked) m[pos] = 0;
      }
    }
  }
  if (p.kv_fp8) quantize_cache(in);
  return in;
}

}  // namespace attnscope
