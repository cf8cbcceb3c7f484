// tensor.cpp: dtype tables and shape helpers (see awq_edge/tensor.h).
#include "awq_edge/tensor.h"

#include <stdexcept>

namespace awq_edge {

namespace {
struct DTypeTraits {
  const char* name;
  size_t size;
};
// Indexed by DType code.
constexpr DTypeTraits kDTypes[kDTypeCount] = {
    {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I8", 1}, {"U8", 1}, {"I32", 4}, {"U32", 4},
};
}  // namespace

std::optional<DType> dtype_from_code(uint32_t code) {
  if (code >= kDTypeCount) return std::nullopt;
  return static_cast<DType>(code);
}

size_t dtype_size(DType dtype) { return kDTypes[static_cast<uint32_t>(dtype)].size; }

const char* dtype_name(DType dtype) { return kDTypes[static_cast<uint32_t>(dtype)].name; }

Shape::Shape(std::initializer_list<uint64_t> sizes) {
  if (sizes.size() < 1 || sizes.size() > kMaxDims) throw std::invalid_argument("Shape: 1..4 dimensions");
  for (uint64_t size : sizes) dims[ndim++] = size;
}

uint64_t Shape::numel() const {
  uint64_t count = 1;
  for (uint32_t axis = 0; axis < ndim; ++axis) count *= dims[axis];
  return count;
}

std::string Shape::to_string() const {
  std::string text = "(";
  for (uint32_t axis = 0; axis < ndim; ++axis) {
    if (axis > 0) text += ", ";
    text += std::to_string(dims[axis]);
  }
  return text + (ndim == 1 ? ",)" : ")");
}

}  // namespace awq_edge
