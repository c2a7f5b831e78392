// Summation orders: how a kernel adds the terms of a dot product or a sum. A kernel declares its
// order as a value; the error bounds read its depth and the precision model follows it, so the
// budget of a case is derived from the order the kernel really uses.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace attnscope {

enum class OrderKind {
  sequential,  // s = ((x0 + x1) + x2) + ...
  pairwise,    // recursive halving, as a balanced tree
  warp_tree,   // lane l accumulates chunks l, l + lanes, ... of `vec` consecutive elements
               // sequentially (element by element), then a butterfly over the lanes with
               // ascending distance (xor 1, 2, 4, ...), as the kernels' shuffles and trees do
  mma,         // matrix instructions: accumulator l (of `lanes`, joined by an ascending tree at
               // the end) takes chunks l, l + lanes, ... of `vec` elements, each chunk's sum
               // formed inside one instruction (in an order the hardware does not specify) and
               // added to the accumulator: a chain of at most vec roundings a chunk
};

struct SummationOrder {
  OrderKind kind = OrderKind::sequential;
  int lanes = 32;  // warp_tree, mma: lanes (accumulators) taking part (a power of two)
  int vec = 1;     // warp_tree, mma: consecutive elements one lane takes per step
  // warp_tree: interleaved accumulators per lane (2 for packed half2 arithmetic): the k-th
  // element a lane visits goes to accumulator k % pack; they are added in order at the end.
  int pack = 1;
  // Any kind: when > 0, the sequence is cut into runs of `chunk` consecutive elements, each
  // reduced in this order, and the run results are added sequentially (split windows).
  std::int64_t chunk = 0;
  // "sequential", "pairwise", "warp_tree(lanes=32,vec=8)" (+ ",pack=2", ",chunk=4096")
  std::string name() const;

  static SummationOrder warp_tree_of(int lanes, int vec, int pack = 1, std::int64_t chunk = 0) {
    return {OrderKind::warp_tree, lanes, vec, pack, chunk};
  }
  static SummationOrder mma_of(int lanes, int vec, std::int64_t chunk = 0) {
    return {OrderKind::mma, lanes, vec, 1, chunk};
  }
  friend bool operator==(const SummationOrder& a, const SummationOrder& b) {
    return a.kind == b.kind && a.lanes == b.lanes && a.vec == b.vec && a.pack == b.pack &&
           a.chunk == b.chunk;
  }
};

// Throws std::invalid_argument when the order's settings are out of range.
void check_order(const SummationOrder& order);

// Reads the form name() writes (and the short "warp_tree(32x8)"); throws
// std::invalid_argument on anything else.
SummationOrder parse_order(const std::string& text);

// The longest chain of roundings an element's contribution passes through: the n of gamma_n.
std::int64_t summation_depth(const SummationOrder& order, std::int64_t n);

// The orders one kernel uses on one problem, as its implementation declares them.
struct KernelOrder {
  std::optional<SummationOrder> dot;  // q . k over head_dim: qk, fused, split_kv
  // softmax: the sum over the window; pv: P . V over positions (chunk = positions per split);
  // fused / split_kv: the online softmax's running sum and output, lanes = row-groups that
  // each take every lanes-th position, chunk = positions per split.
  std::optional<SummationOrder> values;
  int splits = 1;  // window splits (pv chunks, split_kv splits)
  // The split count, and so the order, was chosen from the device's multiprocessor count: the
  // budget of this case holds for that count only.
  bool device_dependent = false;
  // fp8 caches: the roundings that reading a code and its scale adds to the chain of each product
  // of the dot and of the weighted sum (dequantization into a working format, the multiplies by
  // the scales), over those of a cache stored in the input format. The budgets add them to the
  // depths.
  int fp8_roundings = 0;
  // Other roundings each product's chain passes through beyond its orders (a weight carried as
  // the sum of two binary16 values into a matrix instruction). The budgets add them too.
  int extra_roundings = 0;
  // The accumulation may round toward zero (matrix instructions whose rounding the hardware does
  // not specify as to nearest): the budgets take the unit roundoff twice over.
  bool truncating = false;
  // q enters the dot as binary16 under a power of two of its own query (bf16 q on the matrix-
  // instruction kernels): elements more than about 2^31 below their row's largest round to
  // nearest, and the dot is taken at that scale (bounds::StageFormats::q_binary16_scaled).
  bool q_binary16_scaled = false;
  // "dot=...;values=..." (the parts present; ";fp8_roundings=2", ";extra_roundings=8",
  // ";truncating", ";q_binary16_scaled")
  std::string describe() const;
};

}  // namespace attnscope
