// tensor.h: the element types of the .awqe format (docs/FORMAT.md section 4), tensor shapes,
// and TensorView, a typed read-only window onto tensor bytes that someone else owns.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>

namespace awq_edge {

class MappedFile;  // mapped_file.h

// The directory's dtype codes; values are part of the file format.
enum class DType : uint32_t {
  F32 = 0,   // IEEE binary32
  F16 = 1,   // IEEE binary16
  BF16 = 2,  // bfloat16
  I8 = 3,    // int8, two's complement
  U8 = 4,    // uint8
  I32 = 5,   // int32
  U32 = 6,   // uint32: packed quantized values (FORMAT.md section 5)
};

constexpr uint32_t kDTypeCount = 7;

// The DType of a directory code, or nothing for a code this reader does not know.
std::optional<DType> dtype_from_code(uint32_t code);
size_t dtype_size(DType dtype);       // bytes per element: 4, 2, 2, 1, 1, 4, 4
const char* dtype_name(DType dtype);  // "F32", "F16", ... as in FORMAT.md

constexpr uint32_t kMaxDims = 4;

// A row-major shape of 1..4 dimensions (the last varies fastest).
struct Shape {
  uint32_t ndim = 0;
  std::array<uint64_t, kMaxDims> dims{};  // dims[0..ndim) >= 1, the rest 0

  Shape() = default;
  Shape(std::initializer_list<uint64_t> sizes);

  uint64_t operator[](size_t axis) const { return dims[axis]; }
  uint64_t numel() const;            // product of dims[0..ndim); the reader checked it fits
  std::string to_string() const;     // Python style: "(1536, 72)", "(64,)"
  bool operator==(const Shape& other) const { return ndim == other.ndim && dims == other.dims; }
  bool operator!=(const Shape& other) const { return !(*this == other); }
};

// Tensor bytes in place (e.g. inside a memory-mapped file), valid as long as their owner.
struct TensorView {
  const void* data = nullptr;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t size = 0;  // bytes = shape.numel() * dtype_size(dtype)
  // The file mapping the bytes lie in (ModelFile's views), nullptr for other memory: an owner
  // that copies them out may release the pages (MappedFile::release).
  const MappedFile* mapping = nullptr;

  template <typename T>
  const T* as() const { return static_cast<const T*>(data); }
};

}  // namespace awq_edge
