// KV-cache layouts described by explicit strides, so kernels and references address memory the
// same way. Every layout may be one layer of a multi-layer cache [layers, ...].
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "attnscope/core/problem.hpp"

namespace attnscope {

enum class KvLayoutKind {
  bhsd,   // [layers, batch, kv_heads, seq_capacity, head_dim]
  bshd,   // [layers, batch, seq_capacity, kv_heads, head_dim]
  paged,  // [layers, num_pages, page_size, kv_heads, head_dim] + block table [batch, pages_per_seq]
};

std::string_view to_string(KvLayoutKind k);
KvLayoutKind parse_layout(std::string_view s);

// Plain addressing data, copyable to a GPU kernel by value. head_dim is always contiguous.
// offset() is constexpr so device code calls the same formula (nvcc: --expt-relaxed-constexpr).
struct KvAddressing {
  std::int64_t layer_offset = 0;  // elements to the selected layer
  std::int64_t stride_batch = 0;  // contiguous layouts only
  std::int64_t stride_head = 0;
  std::int64_t stride_seq = 0;   // between consecutive positions (within a page if paged)
  std::int64_t stride_page = 0;  // paged only
  const std::int32_t* block_table = nullptr;  // paged only: [batch, pages_per_seq]
  std::int32_t page_size = 0;
  std::int32_t pages_per_seq = 0;

  // Element offset of (batch b, kv head h, position pos, dim 0).
  constexpr std::int64_t offset(int b, int h, std::int64_t pos) const {
    if (block_table != nullptr) {
      const std::int64_t page = block_table[std::int64_t(b) * pages_per_seq + pos / page_size];
      return layer_offset + page * stride_page + (pos % page_size) * stride_seq +
             std::int64_t(h) * stride_head;
    }
    return layer_offset + std::int64_t(b) * stride_batch + std::int64_t(h) * stride_head +
           pos * stride_seq;
  }
};

struct KvLayoutSpec {
  KvLayoutKind kind = KvLayoutKind::bhsd;
  int layers = 1;
  int layer = 0;                  // the layer the attention step reads
  std::int64_t seq_capacity = 0;  // 0: seq_len; larger leaves unused tail slots (contiguous)
  int page_size = 16;             // paged only
  int spare_pages = 0;            // paged only: pages no sequence owns, at most kMaxSparePages
  static constexpr int kMaxSparePages = 1 << 20;
  std::uint64_t page_seed = 1;  // paged only: shuffles the block table
  // paged only: false gives each sequence consecutive pages (a freshly filled cache) instead of
  // pages scattered over the whole cache (one after much allocation and freeing)
  bool shuffle_pages = true;

  void validate(const Problem& p) const;  // throws std::invalid_argument
  std::string tag() const;                // e.g. "paged-p16-L3l2"
};

// A concrete layout for one problem: strides, storage size, and (paged) the block table.
class KvLayout {
 public:
  KvLayout(const Problem& p, const KvLayoutSpec& spec);
  // A paged layout with a given block table ([batch, pages_per_seq], entries in
  // [0, num_pages)), as an engine recorded it; spec's spare_pages and page_seed do not apply.
  // Throws std::invalid_argument when the table does not cover seq_len or names a page outside
  // the cache.
  KvLayout(const Problem& p, const KvLayoutSpec& spec, std::vector<std::int32_t> block_table,
           std::int32_t pages_per_seq, std::int64_t num_pages);

  const KvLayoutSpec& spec() const { return spec_; }
  KvLayoutKind kind() const { return spec_.kind; }
  // Elements of the whole multi-layer cache buffer (one of K or V).
  std::int64_t storage_elems() const { return storage_elems_; }
  std::int64_t layer_elems() const { return layer_elems_; }
  const std::vector<std::int32_t>& block_table() const { return block_table_; }
  // Host addressing (block_table points into this object).
  KvAddressing addressing() const;
  // Same strides with the block table at a caller-provided (e.g. device) address.
  KvAddressing addressing(const std::int32_t* block_table_at) const;
  std::int64_t offset(int b, int h, std::int64_t pos, int d) const {
    return addressing().offset(b, h, pos) + d;
  }

 private:
  KvLayoutSpec spec_;
  KvAddressing addr_;
  std::int64_t storage_elems_ = 0;
  std::int64_t layer_elems_ = 0;
  std::vector<std::int32_t> block_table_;
};

}  // namespace attnscope
