#include "attnscope/core/trace.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "attnscope/core/dtype.hpp"
#include "attnscope/core/inputs.hpp"
#include "attnscope/core/trace_writer.hpp"

namespace attnscope::trace {

namespace fs = std::filesystem;

const char* safetensors_name(ElemType t) {
  switch (t) {
    case ElemType::f16:
      return "F16";
    case ElemType::bf16:
      return "BF16";
    case ElemType::f32:
      return "F32";
    case ElemType::f64:
      return "F64";
    case ElemType::i32:
      return "I32";
    case ElemType::i64:
      return "I64";
    case ElemType::f8_e4m3:
      return "F8_E4M3";
    case ElemType::f8_e5m2:
      return "F8_E5M2";
    case ElemType::u8:
      return "U8";
  }
  return "?";
}

int elem_size(ElemType t) {
  switch (t) {
    case ElemType::f16:
    case ElemType::bf16:
      return 2;
    case ElemType::f32:
    case ElemType::i32:
      return 4;
    case ElemType::f64:
    case ElemType::i64:
      return 8;
    case ElemType::f8_e4m3:
    case ElemType::f8_e5m2:
    case ElemType::u8:
      return 1;
  }
  return 1;
}

std::int64_t Tensor::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

double Tensor::get(std::int64_t i) const {
  const unsigned char* p = bytes.data() + i * elem_size(type);
  switch (type) {
    case ElemType::f16: {
      std::uint16_t u;
      std::memcpy(&u, p, 2);
      return half_to_float(u);
    }
    case ElemType::bf16: {
      std::uint16_t u;
      std::memcpy(&u, p, 2);
      return bf16_to_float(u);
    }
    case ElemType::f32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case ElemType::f64: {
      double d;
      std::memcpy(&d, p, 8);
      return d;
    }
    case ElemType::i32: {
      std::int32_t v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case ElemType::i64: {
      std::int64_t v;
      std::memcpy(&v, p, 8);
      return static_cast<double>(v);
    }
    case ElemType::f8_e4m3:
      return fp8_to_float(*p, Fp8Format::e4m3);
    case ElemType::f8_e5m2:
      return fp8_to_float(*p, Fp8Format::e5m2);
    case ElemType::u8:
      return *p;
  }
  return 0.0;
}

std::string Tensor::shape_string() const {
  std::ostringstream s;
  s << "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << "]";
  return s.str();
}

const Tensor* TraceFile::find(const std::string& name) const {
  const auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

const Tensor& TraceFile::require(const std::string& name) const {
  if (const Tensor* t = find(name)) return *t;
  throw TraceError(path + ": tensor '" + name + "' is missing");
}

Tensor& TraceFile::require(const std::string& name) {
  return const_cast<Tensor&>(static_cast<const TraceFile&>(*this).require(name));
}

const std::string& TraceFile::meta(const std::string& key) const {
  const auto it = metadata.find(key);
  if (it == metadata.end()) throw TraceError(path + ": metadata '" + key + "' is missing");
  return it->second;
}

namespace {

// Bytes of a tensor of `shape` and element size `size`; TraceError when a dimension is negative
// or the product overflows (no tensor of a real trace comes near 2^62 bytes).
std::int64_t checked_bytes(const std::string& where, const std::vector<std::int64_t>& shape,
                           int size) {
  constexpr std::int64_t kMax = std::int64_t(1) << 62;
  std::int64_t n = size;
  for (std::int64_t d : shape) {
    if (d < 0) throw TraceError(where + ": negative dimension in the shape");
    if (d != 0 && n > kMax / d) throw TraceError(where + ": the shape's size overflows");
    n *= d;
  }
  return n;
}

// Opens a regular file for reading, positioned at its start; *size receives its length.
std::ifstream open_sized(const std::string& path, std::streamoff* size) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw TraceError(path + ": not a regular file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw TraceError(path + ": cannot open for reading");
  f.seekg(0, std::ios::end);
  *size = f.tellg();
  if (*size < 0) throw TraceError(path + ": cannot read its size");
  f.seekg(0);
  return f;
}

std::vector<unsigned char> read_file(const std::string& path) {
  std::streamoff size = 0;
  std::ifstream f = open_sized(path, &size);
  std::vector<unsigned char> data(static_cast<std::size_t>(size));
  if (size > 0 && !f.read(reinterpret_cast<char*>(data.data()), size))
    throw TraceError(path + ": read failed");
  return data;
}

ElemType parse_safetensors_dtype(const std::string& where, const std::string& s) {
  for (ElemType t : {ElemType::f16, ElemType::bf16, ElemType::f32, ElemType::f64, ElemType::i32,
                     ElemType::i64, ElemType::f8_e4m3, ElemType::f8_e5m2, ElemType::u8})
    if (s == safetensors_name(t)) return t;
  throw TraceError(where + ": dtype '" + s +
                   "' is not supported (F16, BF16, F32, F64, I32, I64, F8_E4M3, F8_E5M2, U8)");
}

std::int64_t json_int(const std::string& where, const nlohmann::json& v, const char* what) {
  if (!v.is_number_integer()) throw TraceError(where + ": " + what + " must be an integer");
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > std::uint64_t(std::numeric_limits<std::int64_t>::max()))
      throw TraceError(where + ": " + what + " is out of range");
    return static_cast<std::int64_t>(u);
  }
  return v.get<std::int64_t>();
}

}  // namespace

namespace {

// The header of a safetensors file: metadata, and each tensor's type, shape and byte range in
// the data that follows the header (data_len bytes), every range checked against it.
struct Layout {
  TraceFile file;  // metadata and tensors without their bytes
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> ranges;  // [begin, end) in the data
};

std::uint64_t header_length(const std::string& name, const unsigned char* first8,
                            std::uint64_t file_size) {
  if (file_size < 8) throw TraceError(name + ": truncated: shorter than the 8-byte header length");
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | first8[i];
  const std::uint64_t rest = file_size - 8;
  if (header_len > rest)
    throw TraceError(name + ": truncated: the header length (" + std::to_string(header_len) +
                     " bytes) exceeds the file (" + std::to_string(rest) + " bytes after it)");
  if (header_len > std::uint64_t(kMaxHeaderBytes))
    throw TraceError(name + ": the header length (" + std::to_string(header_len) +
                     " bytes) exceeds " + std::to_string(kMaxHeaderBytes) + " bytes");
  return header_len;
}

Layout parse_header(const std::string& name, const unsigned char* header_begin,
                    std::size_t header_len, std::int64_t data_len) {
  Layout out;
  TraceFile& t = out.file;
  t.path = name;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw TraceError(name + ": the header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) throw TraceError(name + ": the header is not a JSON object");
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    if (key == "__metadata__") {
      if (!it->is_object()) throw TraceError(name + ": __metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string())
          throw TraceError(name + ": metadata '" + m.key() +
                           "' is not a string (safetensors metadata holds strings)");
        t.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const std::string where = name + ": tensor '" + key + "'";
    const nlohmann::json& e = *it;
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") ||
        !e.contains("data_offsets"))
      throw TraceError(where + ": expected an object with dtype, shape and data_offsets");
    if (!e["dtype"].is_string()) throw TraceError(where + ": dtype must be a string");
    Tensor tensor;
    tensor.name = key;
    tensor.type = parse_safetensors_dtype(where, e["dtype"].get<std::string>());
    if (!e["shape"].is_array()) throw TraceError(where + ": shape must be an array");
    for (const auto& d : e["shape"]) tensor.shape.push_back(json_int(where, d, "a dimension"));
    const std::int64_t bytes = checked_bytes(where, tensor.shape, elem_size(tensor.type));
    const auto& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2)
      throw TraceError(where + ": data_offsets must be [begin, end]");
    const std::int64_t b = json_int(where, off[0], "data_offsets[0]");
    const std::int64_t en = json_int(where, off[1], "data_offsets[1]");
    if (b < 0 || en < b || en > data_len)
      throw TraceError(where + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(en) +
                       "] point outside the data (" + std::to_string(data_len) + " bytes)");
    if (en - b != bytes)
      throw TraceError(where + ": data_offsets span " + std::to_string(en - b) + " bytes, but " +
                       safetensors_name(tensor.type) + " " + tensor.shape_string() + " needs " +
                       std::to_string(bytes));
    out.ranges[key] = {b, en};
    t.tensors[key] = std::move(tensor);
  }
  return out;
}

// The tensors' byte ranges must tile the data exactly, as safetensors requires: no overlap (two
// tensors sharing bytes), no hole, nothing past the last tensor.
void check_cover(const std::string& name, const Layout& l, std::int64_t data_len) {
  std::vector<std::pair<std::pair<std::int64_t, std::int64_t>, std::string>> r;
  for (const auto& [key, range] : l.ranges) r.push_back({range, key});
  std::sort(r.begin(), r.end());
  std::int64_t at = 0;
  for (const auto& [range, key] : r) {
    if (range.first != at)
      throw TraceError(
          name + ": tensor '" + key + "' starts at byte " + std::to_string(range.first) +
          " of the data, expected " + std::to_string(at) +
          (range.first < at ? " (it overlaps another tensor)" : " (a hole before it)"));
    at = range.second;
  }
  if (at != data_len)
    throw TraceError(name + ": the tensors cover " + std::to_string(at) + " of the " +
                     std::to_string(data_len) + " data bytes");
}

}  // namespace

TraceFile parse_safetensors(const std::string& name, const std::vector<unsigned char>& file) {
  const std::uint64_t header_len = header_length(name, file.data(), file.size());
  const std::size_t data_begin = 8 + std::size_t(header_len);
  Layout l = parse_header(name, file.data() + 8, std::size_t(header_len),
                          std::int64_t(file.size() - data_begin));
  check_cover(name, l, std::int64_t(file.size() - data_begin));
  for (auto& [key, tensor] : l.file.tensors) {
    const auto [b, e] = l.ranges.at(key);
    tensor.bytes.assign(file.begin() + std::ptrdiff_t(data_begin) + b,
                        file.begin() + std::ptrdiff_t(data_begin) + e);
  }
  return std::move(l.file);
}

// Reads the header, then each tensor straight into its own buffer: a trace of gigabytes is
// read once, not copied.
TraceFile read_safetensors(const std::string& path) {
  std::streamoff size = 0;
  std::ifstream f = open_sized(path, &size);
  unsigned char first8[8] = {};
  if (size >= 8 && !f.read(reinterpret_cast<char*>(first8), 8))
    throw TraceError(path + ": read failed");
  const std::uint64_t header_len = header_length(path, first8, std::uint64_t(size));
  std::vector<unsigned char> header(static_cast<std::size_t>(header_len));
  if (header_len && !f.read(reinterpret_cast<char*>(header.data()), std::streamsize(header_len)))
    throw TraceError(path + ": read failed");
  const std::int64_t data_begin = 8 + std::int64_t(header_len);
  Layout l = parse_header(path, header.data(), header.size(), std::int64_t(size) - data_begin);
  check_cover(path, l, std::int64_t(size) - data_begin);
  for (auto& [key, tensor] : l.file.tensors) {
    const auto [b, e] = l.ranges.at(key);
    tensor.bytes.resize(static_cast<std::size_t>(e - b));
    f.seekg(data_begin + b);
    if (e > b && !f.read(reinterpret_cast<char*>(tensor.bytes.data()), std::streamsize(e - b)))
      throw TraceError(path + ": tensor '" + key + "': read failed");
  }
  return std::move(l.file);
}

namespace {

// The value of 'key': ... in a .npy header dict, up to the next top-level comma or brace.
std::string npy_field(const std::string& where, const std::string& header, const std::string& key) {
  const std::string quoted[] = {"'" + key + "'", "\"" + key + "\""};
  std::size_t at = std::string::npos;
  for (const std::string& q : quoted)
    if ((at = header.find(q)) != std::string::npos) {
      at += q.size();
      break;
    }
  if (at == std::string::npos) throw TraceError(where + ": the .npy header has no '" + key + "'");
  at = header.find(':', at);
  if (at == std::string::npos)
    throw TraceError(where + ": the .npy header is malformed at '" + key + "'");
  ++at;
  while (at < header.size() && header[at] == ' ') ++at;
  std::size_t end = at;
  if (at < header.size() && header[at] == '(') {
    end = header.find(')', at);
    if (end == std::string::npos) throw TraceError(where + ": the .npy shape is not closed");
    return header.substr(at, end - at + 1);
  }
  while (end < header.size() && header[end] != ',' && header[end] != '}') ++end;
  std::string v = header.substr(at, end - at);
  while (!v.empty() && v.back() == ' ') v.pop_back();
  return v;
}

ElemType parse_npy_descr(const std::string& where, std::string d) {
  if (d.size() >= 2 && (d.front() == '\'' || d.front() == '"')) d = d.substr(1, d.size() - 2);
  if (d == "<f2") return ElemType::f16;
  if (d == "<u2") return ElemType::bf16;  // numpy has no bfloat16: its bits as uint16
  if (d == "<f4") return ElemType::f32;
  if (d == "<f8") return ElemType::f64;
  if (d == "<i4") return ElemType::i32;
  if (d == "<i8") return ElemType::i64;
  if (d == "|u1" || d == "<u1") return ElemType::u8;  // fp8 codes (kv_format names the format)
  throw TraceError(where + ": .npy dtype '" + d +
                   "' is not supported (little-endian <f2, <u2 as bfloat16 bits, <f4, <f8, <i4, "
                   "<i8, |u1 as fp8 codes)");
}

}  // namespace

Tensor parse_npy(const std::string& name, const std::string& tensor,
                 const std::vector<unsigned char>& file) {
  const std::string where = name + ": tensor '" + tensor + "'";
  static const unsigned char magic[] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (file.size() < 10 || !std::equal(magic, magic + 6, file.begin()))
    throw TraceError(where + ": not a .npy file (no \\x93NUMPY magic, or truncated)");
  const int major = file[6];
  std::size_t header_len = 0, header_at = 0;
  if (major == 1) {
    header_len = std::size_t(file[8]) | std::size_t(file[9]) << 8;
    header_at = 10;
  } else if (major == 2 || major == 3) {
    if (file.size() < 12) throw TraceError(where + ": truncated .npy header");
    header_len = std::size_t(file[8]) | std::size_t(file[9]) << 8 | std::size_t(file[10]) << 16 |
                 std::size_t(file[11]) << 24;
    header_at = 12;
  } else {
    throw TraceError(where + ": .npy format version " + std::to_string(major) +
                     " is not supported");
  }
  if (header_len > file.size() - header_at)
    throw TraceError(where + ": truncated: the .npy header length exceeds the file");
  const std::string header(file.begin() + std::ptrdiff_t(header_at),
                           file.begin() + std::ptrdiff_t(header_at + header_len));
  Tensor t;
  t.name = tensor;
  t.type = parse_npy_descr(where, npy_field(where, header, "descr"));
  const std::string fortran = npy_field(where, header, "fortran_order");
  if (fortran == "True")
    throw TraceError(where + ": Fortran-ordered arrays are not supported (save C-contiguous)");
  if (fortran != "False") throw TraceError(where + ": fortran_order must be True or False");
  const std::string shape = npy_field(where, header, "shape");
  if (shape.size() < 2 || shape.front() != '(' || shape.back() != ')')
    throw TraceError(where + ": the .npy shape is not a tuple");
  std::stringstream dims(shape.substr(1, shape.size() - 2));
  std::string item;
  while (std::getline(dims, item, ',')) {
    const auto first = item.find_first_not_of(' '), last = item.find_last_not_of(' ');
    item = first == std::string::npos ? std::string() : item.substr(first, last - first + 1);
    if (item.empty()) continue;
    if (item.find_first_not_of("0123456789") != std::string::npos || item.size() > 18)
      throw TraceError(where + ": the .npy shape has a bad dimension '" + item + "'");
    t.shape.push_back(std::stoll(item));
  }
  const std::int64_t bytes = checked_bytes(where, t.shape, elem_size(t.type));
  const std::size_t data_at = header_at + header_len;
  const std::uint64_t have = file.size() - data_at;
  if (have != std::uint64_t(bytes))
    throw TraceError(where + ": the .npy data holds " + std::to_string(have) + " bytes, but " +
                     safetensors_name(t.type) + " " + t.shape_string() + " needs " +
                     std::to_string(bytes));
  t.bytes.assign(file.begin() + std::ptrdiff_t(data_at), file.end());
  return t;
}

TraceFile read_npy_dir(const std::string& dir) {
  TraceFile t;
  t.path = dir;
  const fs::path meta = fs::path(dir) / "meta.json";
  const std::vector<unsigned char> meta_bytes = read_file(meta.string());
  if (std::int64_t(meta_bytes.size()) > kMaxHeaderBytes)
    throw TraceError(meta.string() + ": too large");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(meta_bytes.begin(), meta_bytes.end());
  } catch (const nlohmann::json::exception& e) {
    throw TraceError(meta.string() + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw TraceError(meta.string() + ": not a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it->is_string())
      t.metadata[it.key()] = it->get<std::string>();
    else if (it->is_number_integer())
      t.metadata[it.key()] = std::to_string(it->get<std::int64_t>());
    else if (it->is_number())
      t.metadata[it.key()] = it->dump();
    else
      throw TraceError(meta.string() + ": '" + it.key() + "' must be a string or a number");
  }
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".npy") {
      if (!e.is_regular_file(ec)) throw TraceError(e.path().string() + ": not a regular file");
      files.push_back(e.path());
    }
  if (ec) throw TraceError(dir + ": cannot list: " + ec.message());
  std::sort(files.begin(), files.end());
  for (const fs::path& f : files) {
    const std::string tensor = f.stem().string();
    t.tensors[tensor] = parse_npy(f.string(), tensor, read_file(f.string()));
  }
  return t;
}

TraceFile read_trace(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return read_npy_dir(path);
  if (!fs::exists(path, ec)) throw TraceError(path + ": no such file or directory");
  return read_safetensors(path);
}

std::vector<std::string> find_traces(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (!fs::exists(p, ec)) throw TraceError(p + ": no such file or directory");
    if (!fs::is_directory(p, ec) || fs::exists(fs::path(p) / "meta.json", ec)) {
      out.push_back(p);
      continue;
    }
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(p, ec)) {
      std::error_code e2;
      if ((e.path().extension() == ".safetensors" && e.is_regular_file(e2)) ||
          (e.is_directory(e2) && fs::exists(e.path() / "meta.json", e2)))
        found.push_back(e.path().string());
    }
    if (ec) throw TraceError(p + ": cannot list: " + ec.message());
    if (found.empty())
      throw TraceError(p + ": holds no trace (.safetensors files or directories with meta.json)");
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

namespace {

attnscope_trace::DType writer_type(DType t) {
  return t == DType::fp16   ? attnscope_trace::DType::F16
         : t == DType::bf16 ? attnscope_trace::DType::BF16
                            : attnscope_trace::DType::F32;
}

std::vector<unsigned char> encoded(DType t, const std::vector<double>& v) {
  HostTensor h(t, {std::int64_t(v.size())});
  for (std::size_t i = 0; i < v.size(); ++i) h.set(std::int64_t(i), v[i]);
  const auto* p = static_cast<const unsigned char*>(h.data());
  return std::vector<unsigned char>(p, p + h.bytes());
}

}  // namespace

void write_trace_point(const std::string& path, const AttentionInputs& in, const RecordedOutputs& o,
                       const std::map<std::string, std::string>& metadata, bool npy) {
  const Problem& p = in.problem;
  // A latent (MLA) cache is one tensor of wider rows than the output's: the trace format holds
  // K and V caches of q's width.
  if (p.latent)
    throw std::invalid_argument("trace: latent (MLA) caches cannot be written to a trace yet");
  const KvLayoutSpec& l = in.layout.spec();
  attnscope_trace::TraceWriter w;
  w.metadata("layout", std::string(to_string(l.kind)))
      .metadata("layer", std::to_string(l.layer))
      .metadata("seq_len", std::to_string(p.seq_len))
      .metadata("window", std::to_string(p.window))
      .metadata("accumulation", std::string(to_string(p.accum)));
  if (p.scale != 0.0) {
    std::ostringstream s;
    s.precision(17);
    s << p.scale;
    w.metadata("scale", s.str());
  }
  for (const auto& kv : metadata) w.metadata(kv.first, kv.second);
  const attnscope_trace::DType in_t = writer_type(p.input);
  w.tensor("q", in_t, {p.batch, p.q_len, p.q_heads, p.head_dim}, in.q.data());
  const std::int64_t L = l.layers, B = p.batch, H = p.kv_heads, D = p.head_dim;
  const std::int64_t cap = l.seq_capacity ? l.seq_capacity : p.seq_len;
  std::vector<std::int64_t> cache;
  switch (l.kind) {
    case KvLayoutKind::bhsd:
      cache = {L, B, H, cap, D};
      break;
    case KvLayoutKind::bshd:
      cache = {L, B, cap, H, D};
      break;
    case KvLayoutKind::paged:
      cache = {L, in.layout.layer_elems() / (std::int64_t(l.page_size) * H * D), l.page_size, H, D};
      break;
  }
  if (p.kv_fp8) {
    // An fp8 cache: its codes (F8_E4M3 or F8_E5M2 where safetensors names the format, else U8)
    // and its fp32 scales, [1] a tensor, [kv_heads] a KV head, or one a cache row (the cache's
    // shape without head_dim); kv_format and kv_scale name them.
    const Fp8Format f = *p.kv_fp8;
    const attnscope_trace::DType code_t = f == Fp8Format::e4m3   ? attnscope_trace::DType::F8_E4M3
                                          : f == Fp8Format::e5m2 ? attnscope_trace::DType::F8_E5M2
                                                                 : attnscope_trace::DType::U8;
    w.metadata("kv_format", std::string(to_string(f)))
        .metadata("kv_scale", std::string(to_string(p.kv_scale)));
    w.tensor("k_cache", code_t, cache, in.k_cache.data());
    w.tensor("v_cache", code_t, cache, in.v_cache.data());
    const std::vector<std::int64_t> scales =
        p.kv_scale == KvScale::tensor ? std::vector<std::int64_t>{1}
        : p.kv_scale == KvScale::head ? std::vector<std::int64_t>{H}
                                      : std::vector<std::int64_t>(cache.begin(), cache.end() - 1);
    w.tensor("k_scale", attnscope_trace::DType::F32, scales, in.k_scale.data());
    w.tensor("v_scale", attnscope_trace::DType::F32, scales, in.v_scale.data());
  } else {
    w.tensor("k_cache", in_t, cache, in.k.data());
    w.tensor("v_cache", in_t, cache, in.v.data());
  }
  if (l.kind == KvLayoutKind::paged)
    w.tensor("block_table", attnscope_trace::DType::I32, {B, in.layout.addressing().pages_per_seq},
             in.layout.block_table().data());
  // A key mask as I32 [batch, seq_len] (1 = attend), a ragged batch's lengths as I64 [batch].
  std::vector<std::int32_t> mask(in.key_mask.begin(), in.key_mask.end());
  if (!mask.empty()) w.tensor("key_mask", attnscope_trace::DType::I32, {B, p.seq_len}, mask.data());
  if (!in.seq_lens.empty())
    w.tensor("seq_lens", attnscope_trace::DType::I64, {B}, in.seq_lens.data());
  std::vector<std::vector<unsigned char>> keep;
  keep.reserve(4);
  auto add = [&](const char* name, const std::vector<double>* v, DType t,
                 std::vector<std::int64_t> shape) {
    if (!v) return;
    std::int64_t n = 1;
    for (std::int64_t d : shape) n *= d;
    if (std::int64_t(v->size()) != n)
      throw std::invalid_argument(std::string("write_trace_point: '") + name + "' has " +
                                  std::to_string(v->size()) + " values, its shape needs " +
                                  std::to_string(n));
    keep.push_back(encoded(t, *v));
    w.tensor(name, writer_type(t), std::move(shape), keep.back().data());
  };
  add("scores", o.scores, DType::fp32, {B, p.q_heads, p.q_len, p.window});
  add("probs", o.probs, DType::fp32, {B, p.q_heads, p.q_len, p.window});
  add("out", o.out, parse_dtype(o.out_format), {B, p.q_len, p.q_heads, D});
  add("lse", o.lse, DType::fp32, {B, p.q_heads, p.q_len});
  if (npy)
    w.write_npy_dir(path);
  else
    w.write_safetensors(path);
}

}  // namespace attnscope::trace
