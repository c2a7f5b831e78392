// Host tensors holding raw storage of any DType; values are read and written as double.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "attnscope/core/dtype.hpp"

namespace attnscope {

class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(DType dtype, std::vector<std::int64_t> shape);
  // Takes `bytes` as the storage (little-endian, C order); throws std::invalid_argument unless
  // it holds exactly the shape's elements.
  HostTensor(DType dtype, std::vector<std::int64_t> shape, std::vector<unsigned char> bytes);

  DType dtype() const { return dtype_; }
  const std::vector<std::int64_t>& shape() const { return shape_; }
  std::int64_t numel() const { return numel_; }
  std::size_t bytes() const { return bytes_.size(); }
  void* data() { return bytes_.data(); }
  const void* data() const { return bytes_.data(); }
  std::string shape_string() const;

  // Element i as a double (exact: every stored format converts exactly).
  double get(std::int64_t i) const {
    const unsigned char* p = bytes_.data();
    switch (dtype_) {
      case DType::fp16:
        return half_to_float(load16(p + 2 * i));
      case DType::bf16:
        return bf16_to_float(load16(p + 2 * i));
      case DType::fp32: {
        float f;
        std::memcpy(&f, p + 4 * i, 4);
        return f;
      }
      case DType::fp64: {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        return d;
      }
      case DType::fp8_e4m3:
      case DType::fp8_e5m2:
      case DType::fp8_e4m3fnuz:
        return fp8_to_float(p[i], fp8_format_of(dtype_));
    }
    return 0.0;
  }
  // Stores v rounded to nearest even in the tensor's format (fp8: saturating).
  void set(std::int64_t i, double v);
  // Fills every byte with a pattern that decodes as NaN in each format (output poisoning).
  void poison();
  std::vector<double> to_double() const;

 private:
  static std::uint16_t load16(const unsigned char* p) {
    std::uint16_t u;
    std::memcpy(&u, p, 2);
    return u;
  }
  DType dtype_ = DType::fp32;
  std::vector<std::int64_t> shape_;
  std::int64_t numel_ = 0;
  std::vector<unsigned char> bytes_;
};

}  // namespace attnscope
