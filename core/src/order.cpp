#include "attnscope/core/order.hpp"

#include <algorithm>
#include <stdexcept>

namespace attnscope {

namespace {

int log2_exact(int v) {
  int l = 0;
  while ((1 << l) < v) ++l;
  return l;
}

}  // namespace

void check_order(const SummationOrder& order) {
  if (order.chunk < 0) throw std::invalid_argument("chunk must be >= 0");
  if (order.kind == OrderKind::mma) {
    if (order.lanes < 1 || (order.lanes & (order.lanes - 1)) != 0)
      throw std::invalid_argument("mma lanes must be a power of two (got " +
                                  std::to_string(order.lanes) + ")");
    if (order.vec < 1)
      throw std::invalid_argument("mma vec must be >= 1 (got " + std::to_string(order.vec) + ")");
    if (order.pack != 1) throw std::invalid_argument("mma takes no pack");
    return;
  }
  if (order.kind != OrderKind::warp_tree) return;
  if (order.lanes < 1 || (order.lanes & (order.lanes - 1)) != 0)
    throw std::invalid_argument("warp_tree lanes must be a power of two (got " +
                                std::to_string(order.lanes) + ")");
  if (order.vec < 1)
    throw std::invalid_argument("warp_tree vec must be >= 1 (got " + std::to_string(order.vec) +
                                ")");
  if (order.pack < 1)
    throw std::invalid_argument("warp_tree pack must be >= 1 (got " + std::to_string(order.pack) +
                                ")");
}

std::string SummationOrder::name() const {
  std::string s;
  switch (kind) {
    case OrderKind::sequential:
      s = "sequential";
      break;
    case OrderKind::pairwise:
      s = "pairwise";
      break;
    case OrderKind::warp_tree:
      s = "warp_tree(lanes=" + std::to_string(lanes) + ",vec=" + std::to_string(vec);
      if (pack != 1) s += ",pack=" + std::to_string(pack);
      break;
    case OrderKind::mma:
      s = "mma(lanes=" + std::to_string(lanes) + ",vec=" + std::to_string(vec);
      break;
  }
  const bool args = kind == OrderKind::warp_tree || kind == OrderKind::mma;
  if (chunk > 0) s += (args ? ",chunk=" : "(chunk=") + std::to_string(chunk);
  if (args || chunk > 0) s += ")";
  return s;
}

SummationOrder parse_order(const std::string& text) {
  auto fail = [&](const std::string& why) -> SummationOrder {
    throw std::invalid_argument("bad summation order '" + text + "': " + why);
  };
  SummationOrder o;
  const auto paren = text.find('(');
  const std::string kind = text.substr(0, paren);
  if (kind == "sequential")
    o.kind = OrderKind::sequential;
  else if (kind == "pairwise")
    o.kind = OrderKind::pairwise;
  else if (kind == "warp_tree")
    o.kind = OrderKind::warp_tree;
  else if (kind == "mma")
    o.kind = OrderKind::mma;
  else
    return fail("unknown kind '" + kind + "'");
  if (paren == std::string::npos) {
    if (o.kind == OrderKind::warp_tree) return fail("warp_tree needs (lanes=..,vec=..)");
    if (o.kind == OrderKind::mma) return fail("mma needs (lanes=..,vec=..)");
    return o;
  }
  if (text.back() != ')') return fail("missing ')'");
  const std::string args = text.substr(paren + 1, text.size() - paren - 2);
  const auto x = args.find('x');
  if (x != std::string::npos && args.find('=') == std::string::npos) {  // "32x8"
    try {
      o.lanes = std::stoi(args.substr(0, x));
      o.vec = std::stoi(args.substr(x + 1));
    } catch (const std::exception&) {
      return fail("expected LANESxVEC");
    }
  } else {
    std::size_t at = 0;
    while (at < args.size()) {
      const auto comma = std::min(args.find(',', at), args.size());
      const std::string kv = args.substr(at, comma - at);
      const auto eq = kv.find('=');
      if (eq == std::string::npos) return fail("expected key=value, got '" + kv + "'");
      const std::string key = kv.substr(0, eq);
      long long v = 0;
      try {
        std::size_t used = 0;
        v = std::stoll(kv.substr(eq + 1), &used);
        if (used != kv.size() - eq - 1) throw std::invalid_argument(kv);
      } catch (const std::exception&) {
        return fail("'" + kv + "' is not an integer setting");
      }
      if (key == "lanes")
        o.lanes = static_cast<int>(v);
      else if (key == "vec")
        o.vec = static_cast<int>(v);
      else if (key == "pack")
        o.pack = static_cast<int>(v);
      else if (key == "chunk")
        o.chunk = v;
      else
        return fail("unknown setting '" + key + "'");
      at = comma + 1;
    }
  }
  check_order(o);
  return o;
}

std::int64_t summation_depth(const SummationOrder& order, std::int64_t n) {
  check_order(order);
  if (n <= 0) return 0;
  const std::int64_t run = order.chunk > 0 ? std::min(order.chunk, n) : n;
  const std::int64_t runs = (n + run - 1) / run;
  std::int64_t inner = run;
  switch (order.kind) {
    case OrderKind::sequential:
      inner = run;
      break;
    case OrderKind::pairwise: {
      // ceil(log2 n) levels of additions above a leaf that may itself round (a product).
      std::int64_t levels = 0;
      while ((std::int64_t{1} << levels) < run) ++levels;
      inner = levels + 1;
      break;
    }
    case OrderKind::warp_tree: {
      const std::int64_t per_step = std::int64_t(order.lanes) * order.vec;
      const std::int64_t per_lane = (run + per_step - 1) / per_step * order.vec;
      // Each of the pack accumulators sees every pack-th element, then pack - 1 joins.
      inner = (per_lane + order.pack - 1) / order.pack + (order.pack - 1) + log2_exact(order.lanes);
      break;
    }
    case OrderKind::mma: {
      // An accumulator's chunks, one rounding each into it, and within a chunk at most vec - 1
      // roundings before (any order of its sum), then the tree of the accumulators.
      const std::int64_t per_step = std::int64_t(order.lanes) * order.vec;
      const std::int64_t steps = (run + per_step - 1) / per_step;
      inner = steps + (order.vec - 1) + log2_exact(order.lanes);
      break;
    }
  }
  return inner + (runs - 1);
}

std::string KernelOrder::describe() const {
  std::string s;
  if (dot) s = "dot=" + dot->name();
  if (values) s += (s.empty() ? "values=" : ";values=") + values->name();
  if (fp8_roundings > 0) s += ";fp8_roundings=" + std::to_string(fp8_roundings);
  if (extra_roundings > 0) s += ";extra_roundings=" + std::to_string(extra_roundings);
  if (truncating) s += ";truncating";
  if (q_binary16_scaled) s += ";q_binary16_scaled";
  return s;
}

}  // namespace attnscope
