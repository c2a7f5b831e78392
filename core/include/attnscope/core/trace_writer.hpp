// Writes an attention trace point in attnscope's trace format (docs/trace_format.md), as a
// safetensors file or as a directory of .npy files with meta.json. Header-only and standard
// library only, so an engine can copy this one file into its tree. Host buffers only: copy
// device tensors to the host first.
//
//   attnscope_trace::TraceWriter w;
//   w.metadata("layout", "bshd").metadata("layer", "3").metadata("seq_len", "4099")
//    .metadata("window", "4096").metadata("accumulation", "fp32");
//   w.tensor("q", attnscope_trace::DType::F16, {1, 1, 32, 128}, q_host);
//   w.tensor("k_cache", attnscope_trace::DType::F16, {32, 1, 8192, 8, 128}, k_host);
//   ...
//   w.write_safetensors("step0_layer3.safetensors");
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace attnscope_trace {

// BF16 is written to .npy as uint16 (numpy has no bfloat16); attnscope reads '<u2' as bfloat16.
// An fp8 cache's codes are F8_E4M3 or F8_E5M2 (OCP) or U8 (any format; metadata kv_format names
// it); numpy has no fp8, so .npy holds all three as uint8 ('|u1') and kv_format is required.
enum class DType { F16, BF16, F32, F64, I32, I64, F8_E4M3, F8_E5M2, U8 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::F32:
      return "F32";
    case DType::F64:
      return "F64";
    case DType::I32:
      return "I32";
    case DType::I64:
      return "I64";
    case DType::F8_E4M3:
      return "F8_E4M3";
    case DType::F8_E5M2:
      return "F8_E5M2";
    case DType::U8:
      return "U8";
  }
  return "?";
}
inline const char* npy_descr(DType t) {
  switch (t) {
    case DType::F16:
      return "<f2";
    case DType::BF16:
      return "<u2";
    case DType::F32:
      return "<f4";
    case DType::F64:
      return "<f8";
    case DType::I32:
      return "<i4";
    case DType::I64:
      return "<i8";
    case DType::F8_E4M3:
    case DType::F8_E5M2:
    case DType::U8:
      return "|u1";
  }
  return "?";
}
inline std::size_t dtype_size(DType t) {
  if (t == DType::F8_E4M3 || t == DType::F8_E5M2 || t == DType::U8) return 1;
  return t == DType::F16 || t == DType::BF16 ? 2 : t == DType::F32 || t == DType::I32 ? 4 : 8;
}

class TraceWriter {
 public:
  TraceWriter& metadata(const std::string& key, const std::string& value) {
    meta_[key] = value;
    return *this;
  }
  // Records a tensor; `data` (C order, little-endian) must stay valid until written.
  TraceWriter& tensor(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
                      const void* data) {
    if (name.empty() || name == "__metadata__" || name[0] == '.' ||
        name.find_first_of("/\\") != std::string::npos)
      throw std::invalid_argument("bad tensor name '" + name +
                                  "' (it names a file in the .npy form)");
    for (const Entry& e : tensors_)
      if (e.name == name) throw std::invalid_argument("tensor '" + name + "' given twice");
    std::size_t n = dtype_size(dtype);
    for (std::int64_t d : shape) {
      if (d < 0) throw std::invalid_argument("tensor '" + name + "': negative dimension");
      n *= static_cast<std::size_t>(d);
    }
    tensors_.push_back({name, dtype, std::move(shape), static_cast<const unsigned char*>(data), n});
    return *this;
  }

  void write_safetensors(const std::string& path) const {
    std::string h = "{";
    bool first = true;
    if (!meta_.empty()) {
      h += "\"__metadata__\":{";
      for (const auto& kv : meta_) {
        h += (first ? "" : ",") + quote(kv.first) + ":" + quote(kv.second);
        first = false;
      }
      h += "}";
    }
    std::size_t offset = 0;
    for (const Entry& e : tensors_) {
      h += std::string(meta_.empty() && &e == &tensors_.front() ? "" : ",") + quote(e.name) +
           ":{\"dtype\":\"" + dtype_name(e.dtype) + "\",\"shape\":" + shape_json(e.shape) +
           ",\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + e.bytes) +
           "]}";
      offset += e.bytes;
    }
    h += "}";
    while ((8 + h.size()) % 8 != 0) h += ' ';  // the data starts 8-byte aligned
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error("cannot open '" + path + "' for writing");
    unsigned char len[8];
    std::uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
    f.write(reinterpret_cast<const char*>(len), 8);
    f.write(h.data(), static_cast<std::streamsize>(h.size()));
    for (const Entry& e : tensors_)
      f.write(reinterpret_cast<const char*>(e.data), static_cast<std::streamsize>(e.bytes));
    f.flush();
    if (!f) throw std::runtime_error("write to '" + path + "' failed");
  }

  // dir/meta.json and dir/<name>.npy. The directory is created; an existing one is refused, so
  // no file of an earlier trace is left beside this one's.
  void write_npy_dir(const std::string& dir) const {
    if (::mkdir(dir.c_str(), 0777) != 0)
      throw std::runtime_error("cannot create directory '" + dir + "' (it must not exist yet)");
    std::string m = "{";
    bool first = true;
    for (const auto& kv : meta_) {
      m += std::string(first ? "" : ", ") + quote(kv.first) + ": " + quote(kv.second);
      first = false;
    }
    m += "}\n";
    write_file(dir + "/meta.json", m, nullptr, 0);
    for (const Entry& e : tensors_) {
      std::string shape = "(";
      for (std::size_t i = 0; i < e.shape.size(); ++i) shape += std::to_string(e.shape[i]) + ",";
      if (e.shape.size() > 1) shape.pop_back();
      shape += ")";
      std::string header = std::string("{'descr': '") + npy_descr(e.dtype) +
                           "', 'fortran_order': False, 'shape': " + shape + ", }";
      while ((10 + header.size() + 1) % 64 != 0) header += ' ';
      header += '\n';
      if (header.size() > 65535)
        throw std::runtime_error("tensor '" + e.name + "': .npy header too long");
      std::string pre = "\x93NUMPY";
      pre += '\x01';
      pre += '\x00';
      pre += static_cast<char>(header.size() & 0xff);
      pre += static_cast<char>((header.size() >> 8) & 0xff);
      write_file(dir + "/" + e.name + ".npy", pre + header, e.data, e.bytes);
    }
  }

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
    const unsigned char* data;
    std::size_t bytes;
  };

  static std::string quote(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
      const unsigned char u = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') {
        out += '\\';
        out += c;
      } else if (u < 0x20) {
        const char* hex = "0123456789abcdef";
        out += "\\u00";
        out += hex[u >> 4];
        out += hex[u & 15];
      } else {
        out += c;
      }
    }
    return out + "\"";
  }
  static std::string shape_json(const std::vector<std::int64_t>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
    return s + "]";
  }
  static void write_file(const std::string& path, const std::string& head,
                         const unsigned char* data, std::size_t bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error("cannot open '" + path + "' for writing");
    f.write(head.data(), static_cast<std::streamsize>(head.size()));
    if (bytes) f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(bytes));
    f.flush();
    if (!f) throw std::runtime_error("write to '" + path + "' failed");
  }

  std::map<std::string, std::string> meta_;
  std::vector<Entry> tensors_;
};

}  // namespace attnscope_trace
