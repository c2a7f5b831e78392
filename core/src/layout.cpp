#include "attnscope/core/layout.hpp"

#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>

#include "attnscope/core/random.hpp"

namespace attnscope {

std::string_view to_string(KvLayoutKind k) {
  switch (k) {
    case KvLayoutKind::bhsd:
      return "bhsd";
    case KvLayoutKind::bshd:
      return "bshd";
    case KvLayoutKind::paged:
      return "paged";
  }
  return "?";
}

KvLayoutKind parse_layout(std::string_view s) {
  if (s == "bhsd") return KvLayoutKind::bhsd;
  if (s == "bshd") return KvLayoutKind::bshd;
  if (s == "paged") return KvLayoutKind::paged;
  throw std::invalid_argument("unknown KV layout '" + std::string(s) +
                              "' (expected bhsd, bshd or paged)");
}

void KvLayoutSpec::validate(const Problem& p) const {
  auto fail = [](const std::string& w) { throw std::invalid_argument("invalid KV layout: " + w); };
  if (layers < 1) fail("layers must be >= 1 (got " + std::to_string(layers) + ")");
  if (layer < 0 || layer >= layers)
    fail("layer " + std::to_string(layer) + " out of range [0, " + std::to_string(layers) + ")");
  if (seq_capacity != 0 && seq_capacity < p.seq_len)
    fail("seq_capacity (" + std::to_string(seq_capacity) + ") is smaller than seq_len (" +
         std::to_string(p.seq_len) + ")");
  if (seq_capacity > Problem::kMaxSeqLen)
    fail("seq_capacity (" + std::to_string(seq_capacity) + ") is larger than 2^40 positions");
  const std::int64_t cap = seq_capacity != 0 ? seq_capacity : p.seq_len;
  std::int64_t layer_elems = 0;
  if (kind == KvLayoutKind::paged) {
    if (page_size < 1) fail("page_size must be >= 1 (got " + std::to_string(page_size) + ")");
    if (spare_pages < 0 || spare_pages > kMaxSparePages)
      fail("spare_pages must be in [0, " + std::to_string(kMaxSparePages) + "] (got " +
           std::to_string(spare_pages) + ")");
    if (seq_capacity != 0 && seq_capacity != p.seq_len)
      fail("seq_capacity does not apply to the paged layout");
    // Block-table entries are 32-bit page ids.
    const std::int64_t per_seq = (p.seq_len + page_size - 1) / page_size;
    const std::int64_t pages = checked_elems({p.batch, per_seq}, "the block table") + spare_pages;
    if (pages > std::numeric_limits<std::int32_t>::max())
      fail(std::to_string(pages) + " pages do not fit 32-bit page ids");
    layer_elems =
        checked_elems({pages, page_size, p.kv_heads, p.head_dim}, "a layer of the paged cache");
  } else {
    layer_elems = checked_elems({p.batch, p.kv_heads, cap, p.head_dim}, "a layer of the cache");
  }
  checked_elems({layers, layer_elems}, "the cache with all its layers");
}

std::string KvLayoutSpec::tag() const {
  std::ostringstream s;
  s << to_string(kind);
  if (kind == KvLayoutKind::paged) s << "-p" << page_size << (shuffle_pages ? "" : "-seq");
  if (seq_capacity != 0) s << "-cap" << seq_capacity;
  if (layers > 1) s << "-L" << layers << "l" << layer;
  return s.str();
}

KvLayout::KvLayout(const Problem& p, const KvLayoutSpec& spec) : spec_(spec) {
  p.validate();
  spec.validate(p);
  const std::int64_t H = p.kv_heads, D = p.head_dim;
  const std::int64_t cap = spec.seq_capacity != 0 ? spec.seq_capacity : p.seq_len;
  switch (spec.kind) {
    case KvLayoutKind::bhsd:
      addr_.stride_seq = D;
      addr_.stride_head = cap * D;
      addr_.stride_batch = H * cap * D;
      layer_elems_ = p.batch * addr_.stride_batch;
      break;
    case KvLayoutKind::bshd:
      addr_.stride_head = D;
      addr_.stride_seq = H * D;
      addr_.stride_batch = cap * H * D;
      layer_elems_ = p.batch * addr_.stride_batch;
      break;
    case KvLayoutKind::paged: {
      const std::int64_t per_seq = (p.seq_len + spec.page_size - 1) / spec.page_size;
      const std::int64_t pages = p.batch * per_seq + spec.spare_pages;
      addr_.stride_head = D;
      addr_.stride_seq = H * D;
      addr_.stride_page = spec.page_size * H * D;
      addr_.page_size = spec.page_size;
      addr_.pages_per_seq = static_cast<std::int32_t>(per_seq);
      layer_elems_ = pages * addr_.stride_page;
      // A shuffled page order, so that a kernel ignoring the table reads the wrong data.
      std::vector<std::int32_t> order(static_cast<std::size_t>(pages));
      std::iota(order.begin(), order.end(), 0);
      SplitMix64 rng(spec.page_seed);
      for (std::size_t i = spec.shuffle_pages ? order.size() : 0; i > 1; --i) {
        const std::size_t j = static_cast<std::size_t>(rng.next() % i);
        std::swap(order[i - 1], order[j]);
      }
      order.resize(static_cast<std::size_t>(p.batch * per_seq));
      block_table_ = std::move(order);
      break;
    }
  }
  addr_.layer_offset = spec.layer * layer_elems_;
  storage_elems_ = spec.layers * layer_elems_;
}

KvLayout::KvLayout(const Problem& p, const KvLayoutSpec& spec,
                   std::vector<std::int32_t> block_table, std::int32_t pages_per_seq,
                   std::int64_t num_pages)
    : spec_(spec) {
  auto fail = [](const std::string& w) {
    throw std::invalid_argument("invalid block table: " + w);
  };
  p.validate();
  if (spec.kind != KvLayoutKind::paged) fail("the layout is not paged");
  spec.validate(p);
  if (pages_per_seq < 1) fail("pages_per_seq must be >= 1");
  if (num_pages < 1) fail("the cache holds no page");
  if (num_pages > std::numeric_limits<std::int32_t>::max())
    fail(std::to_string(num_pages) + " pages do not fit 32-bit page ids");
  if (std::int64_t(pages_per_seq) * spec.page_size < p.seq_len)
    fail(std::to_string(pages_per_seq) + " pages of " + std::to_string(spec.page_size) +
         " positions do not hold seq_len " + std::to_string(p.seq_len));
  if (block_table.size() != std::size_t(p.batch) * std::size_t(pages_per_seq))
    fail("expected " + std::to_string(std::int64_t(p.batch) * pages_per_seq) + " entries, got " +
         std::to_string(block_table.size()));
  // Only the pages that hold positions < seq_len are read; they must exist.
  const std::int64_t used = (p.seq_len + spec.page_size - 1) / spec.page_size;
  for (int b = 0; b < p.batch; ++b)
    for (std::int64_t i = 0; i < used; ++i) {
      const std::int32_t page = block_table[std::size_t(b * std::int64_t(pages_per_seq) + i)];
      if (page < 0 || page >= num_pages)
        fail("sequence " + std::to_string(b) + ", page " + std::to_string(i) + " names page " +
             std::to_string(page) + ", outside [0, " + std::to_string(num_pages) + ")");
    }
  const std::int64_t H = p.kv_heads, D = p.head_dim;
  addr_.stride_head = D;
  addr_.stride_seq = H * D;
  addr_.stride_page = spec.page_size * H * D;
  addr_.page_size = spec.page_size;
  addr_.pages_per_seq = pages_per_seq;
  layer_elems_ = checked_elems({num_pages, spec.page_size, H, D}, "a layer of the paged cache");
  checked_elems({spec.layers, layer_elems_}, "the cache with all its layers");
  block_table_ = std::move(block_table);
  addr_.layer_offset = spec.layer * layer_elems_;
  storage_elems_ = spec.layers * layer_elems_;
}

KvAddressing KvLayout::addressing() const {
  return addressing(block_table_.empty() ? nullptr : block_table_.data());
}

KvAddressing KvLayout::addressing(const std::int32_t* block_table_at) const {
  KvAddressing a = addr_;
  a.block_table = spec_.kind == KvLayoutKind::paged ? block_table_at : nullptr;
  return a;
}

}  // namespace attnscope
