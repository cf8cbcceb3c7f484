// numpy_views.h (bindings): numpy arrays as the engine's TensorView, for the binding files that take
// a module's weights from numpy (cpu_kernels.cpp, backends.cpp). `who` prefixes the errors.
#pragma once

#include <stdexcept>
#include <string>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include "awq_edge/tensor.h"

namespace awq_edge::bindings {

using InputArray = nanobind::ndarray<nanobind::numpy, nanobind::c_contig, nanobind::device::cpu>;

inline DType dtype_of(const InputArray& array, const std::string& who) {
  namespace dl = nanobind::dlpack;
  const dl::dtype d = array.dtype();
  const auto code = static_cast<dl::dtype_code>(d.code);
  if (code == dl::dtype_code::Float && d.bits == 16) return DType::F16;
  if (code == dl::dtype_code::Float && d.bits == 32) return DType::F32;
  if (code == dl::dtype_code::Int && d.bits == 8) return DType::I8;
  if (code == dl::dtype_code::UInt && d.bits == 8) return DType::U8;
  if (code == dl::dtype_code::Int && d.bits == 32) return DType::I32;
  if (code == dl::dtype_code::UInt && d.bits == 32) return DType::U32;
  throw std::invalid_argument("[" + who + "] unsupported numpy dtype (code " + std::to_string(d.code) + ", " +
                              std::to_string(d.bits) + " bits)");
}

// A view of `count` elements of `dtype` at `data`, as a 1-dimensional tensor.
inline TensorView flat_view(const void* data, DType dtype, uint64_t count) {
  TensorView view;
  view.data = data;
  view.dtype = dtype;
  view.shape.ndim = 1;
  view.shape.dims[0] = count;
  view.size = count * dtype_size(dtype);
  return view;
}

inline TensorView view_of(const InputArray& array, const std::string& who) {
  if (array.ndim() < 1 || array.ndim() > kMaxDims) {
    throw std::invalid_argument("[" + who + "] tensors must have 1.." + std::to_string(kMaxDims) +
                                " dimensions, found " + std::to_string(array.ndim()));
  }
  TensorView view;
  view.data = array.data();
  view.dtype = dtype_of(array, who);
  view.shape.ndim = static_cast<uint32_t>(array.ndim());
  for (size_t axis = 0; axis < array.ndim(); ++axis) view.shape.dims[axis] = array.shape(axis);
  view.size = view.shape.numel() * dtype_size(view.dtype);
  return view;
}

}  // namespace awq_edge::bindings
