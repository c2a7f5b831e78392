#include "attnscope/core/tensor.hpp"

#include <sstream>
#include <stdexcept>

namespace attnscope {

HostTensor::HostTensor(DType dtype, std::vector<std::int64_t> shape)
    : dtype_(dtype), shape_(std::move(shape)), numel_(1) {
  for (std::int64_t s : shape_) {
    if (s < 0)
      throw std::invalid_argument("tensor shape " + shape_string() + " has a negative extent");
    numel_ *= s;
  }
  bytes_.assign(static_cast<std::size_t>(numel_) * size_of(dtype_), 0);
}

HostTensor::HostTensor(DType dtype, std::vector<std::int64_t> shape,
                       std::vector<unsigned char> bytes)
    : HostTensor(dtype, std::vector<std::int64_t>{}) {
  dtype_ = dtype;
  shape_ = std::move(shape);
  numel_ = 1;
  for (std::int64_t s : shape_) {
    if (s < 0)
      throw std::invalid_argument("tensor shape " + shape_string() + " has a negative extent");
    numel_ *= s;
  }
  if (bytes.size() != static_cast<std::size_t>(numel_) * size_of(dtype_))
    throw std::invalid_argument("tensor " + shape_string() + " of " +
                                std::string(to_string(dtype_)) + " needs " +
                                std::to_string(numel_ * std::int64_t(size_of(dtype_))) +
                                " bytes, got " + std::to_string(bytes.size()));
  bytes_ = std::move(bytes);
}

std::string HostTensor::shape_string() const {
  std::ostringstream s;
  s << "[";
  for (std::size_t i = 0; i < shape_.size(); ++i) s << (i ? ", " : "") << shape_[i];
  s << "]";
  return s.str();
}

void HostTensor::set(std::int64_t i, double v) {
  unsigned char* p = bytes_.data();
  switch (dtype_) {
    case DType::fp16: {
      const std::uint16_t h = double_to_half(v);
      std::memcpy(p + 2 * i, &h, 2);
      break;
    }
    case DType::bf16: {
      const std::uint16_t b = double_to_bf16(v);
      std::memcpy(p + 2 * i, &b, 2);
      break;
    }
    case DType::fp32: {
      const float f = static_cast<float>(v);
      std::memcpy(p + 4 * i, &f, 4);
      break;
    }
    case DType::fp64:
      std::memcpy(p + 8 * i, &v, 8);
      break;
    case DType::fp8_e4m3:
    case DType::fp8_e5m2:
    case DType::fp8_e4m3fnuz:
      p[i] = double_to_fp8(v, dtype_);
      break;
  }
}

void HostTensor::poison() {
  // 0xFF bytes: 0xFFFF is a NaN in fp16 and bf16, 0xFFFFFFFF in fp32, all ones in fp64, 0xFF in
  // fp8 e4m3 and e5m2; e4m3fnuz's one NaN is 0x80.
  std::fill(bytes_.begin(), bytes_.end(),
            dtype_ == DType::fp8_e4m3fnuz ? fp8_nan(Fp8Format::e4m3fnuz)
                                          : static_cast<unsigned char>(0xFF));
}

std::vector<double> HostTensor::to_double() const {
  std::vector<double> out(static_cast<std::size_t>(numel_));
  for (std::int64_t i = 0; i < numel_; ++i) out[static_cast<std::size_t>(i)] = get(i);
  return out;
}

}  // namespace attnscope
