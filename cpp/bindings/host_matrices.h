// host_matrices.h (bindings): float32 matrices from numpy into a backend's activations and back, for
// the binding files that run backend operations (backends.cpp, backend_operations.cpp).
//
// upload_matrix and download_matrix call no Python API, so they run with the GIL released (the
// backend's work may take long); to_numpy makes the Python object and needs the GIL.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include "awq_edge/backend.h"
#include "numpy_views.h"

namespace awq_edge::bindings {

// A (rows, cols) float32 matrix in host memory, row-major.
struct HostMatrix {
  std::unique_ptr<float[]> values;
  int64_t rows = 0, cols = 0;
};

// data (rows, cols) as an activation of `backend`: uploaded as one (1, rows*cols) vector, then
// viewed as (rows, cols).
inline Activation upload_matrix(Backend& backend, const float* data, int64_t rows, int64_t cols) {
  Activation a = backend.upload_vector(flat_view(data, DType::F32, static_cast<uint64_t>(rows * cols)));
  a.rows = rows;
  a.cols = cols;
  a.row_stride = cols;
  return a;
}

// a's values on the host (read_logits: waits for the backend's queue).
inline HostMatrix download_matrix(Backend& backend, const Activation& a) {
  HostMatrix m{std::make_unique<float[]>(static_cast<size_t>(a.rows * a.cols)), a.rows, a.cols};
  backend.read_logits(a, m.values.get());
  return m;
}

// m as a numpy array that owns its memory.
inline nanobind::ndarray<nanobind::numpy, float, nanobind::ndim<2>> to_numpy(HostMatrix&& m) {
  float* values = m.values.release();
  nanobind::capsule owner(values, [](void* p) noexcept { delete[] static_cast<float*>(p); });
  return {values, {static_cast<size_t>(m.rows), static_cast<size_t>(m.cols)}, owner};
}

}  // namespace awq_edge::bindings
