// Engine traces: the tensors an engine recorded at one attention step (a layer at a decode step),
// read from a safetensors file or from a directory of .npy files with meta.json. Reading checks
// every length, offset, dtype and shape against the file; anything wrong is a TraceError naming
// the file, the tensor and what is wrong. The format is described in docs/trace_format.md.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "attnscope/core/inputs.hpp"

namespace attnscope::trace {

// Input that cannot be read or is inconsistent.
class TraceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Element types a trace may hold. In the .npy form numpy has no bfloat16: uint16 arrays ('<u2')
// are read as bfloat16 bits. fp8 caches' codes: F8_E4M3, F8_E5M2 (OCP), or U8 (uint8, '|u1' in
// .npy) with the format in the metadata (kv_format).
enum class ElemType { f16, bf16, f32, f64, i32, i64, f8_e4m3, f8_e5m2, u8 };
const char* safetensors_name(ElemType t);  // "F16", "BF16", ...
int elem_size(ElemType t);

struct Tensor {
  std::string name;
  ElemType type = ElemType::f32;
  std::vector<std::int64_t> shape;
  std::vector<unsigned char> bytes;  // little-endian, C order

  std::int64_t numel() const;
  // Element i as a double (exact for every type but i64 beyond 2^53).
  double get(std::int64_t i) const;
  std::string shape_string() const;  // "[2, 8, 128]"
  bool is_float() const {
    return type != ElemType::i32 && type != ElemType::i64 && type != ElemType::u8;
  }
  // fp8 codes: F8_E4M3, F8_E5M2, or U8 (an fp8 cache's codes of the format kv_format names).
  bool is_code() const {
    return type == ElemType::f8_e4m3 || type == ElemType::f8_e5m2 || type == ElemType::u8;
  }
};

struct TraceFile {
  std::string path;
  std::map<std::string, std::string> metadata;
  std::map<std::string, Tensor> tensors;

  const Tensor* find(const std::string& name) const;
  // The tensor, or a TraceError naming the file and the missing tensor.
  const Tensor& require(const std::string& name) const;
  Tensor& require(const std::string& name);
  // The metadata value, or a TraceError naming the missing key.
  const std::string& meta(const std::string& key) const;
};

// Outputs to record beside the inputs (null: not recorded). scores and probs are written as F32,
// lse as F32, out in `out_format`.
struct RecordedOutputs {
  const std::vector<double>* scores = nullptr;  // [batch, q_heads, q_len, window]
  const std::vector<double>* probs = nullptr;   // [batch, q_heads, q_len, window]
  const std::vector<double>* out = nullptr;     // [batch, q_len, q_heads, head_dim]
  const std::vector<double>* lse = nullptr;     // [batch, q_heads, q_len]
  std::string out_format = "fp16";              // fp16, bf16 or fp32
};

// Writes a trace point of `in` (its q and whole K/V cache, block table if paged) with the given
// outputs: a safetensors file, or with npy a directory. layout, layer, seq_len, window,
// accumulation and (when set) scale are filled in from `in`; `metadata` adds to them.
void write_trace_point(const std::string& path, const AttentionInputs& in,
                       const RecordedOutputs& outputs,
                       const std::map<std::string, std::string>& metadata, bool npy = false);

// Largest header (safetensors JSON, .npy dict, meta.json) read: 64 MiB.
inline constexpr std::int64_t kMaxHeaderBytes = std::int64_t(64) << 20;

TraceFile read_safetensors(const std::string& path);
TraceFile parse_safetensors(const std::string& name, const std::vector<unsigned char>& file);
// A directory with meta.json and one <tensor>.npy per tensor.
TraceFile read_npy_dir(const std::string& dir);
Tensor parse_npy(const std::string& name, const std::string& tensor,
                 const std::vector<unsigned char>& file);
// A .safetensors file, or a directory holding meta.json.
TraceFile read_trace(const std::string& path);

// The trace points under each path: a .safetensors file, a directory with meta.json, or a
// directory holding such files and directories (one level, sorted by name). Throws TraceError
// for a path that does not exist or holds no trace.
std::vector<std::string> find_traces(const std::vector<std::string>& paths);

}  // namespace attnscope::trace
