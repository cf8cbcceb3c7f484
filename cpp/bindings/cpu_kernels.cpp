// cpu_kernels.cpp (bindings): the CPU backend's linear-layer kernels and thread pool, exposed as
// the submodule _awq_edge.cpu_kernels for tests and benchmarks (not for the decoder, which calls
// them from C++).
//
//   linear(scheme, rows, cols, tensors, x, level="best", threads=1) -> y (m, N) float32
//   dequantize_row(scheme, rows, cols, tensors, row, level="best") -> (K,) float32
//   LinearLayer(scheme, rows, cols, tensors, level="best", threads=1): packed once, then
//       layer(x) -> y; for benchmarks, where packing and pool start-up must not be timed:
//       layer.time(x, repeats, copies=1) -> seconds per call.
//
// tensors are the module's numpy arrays in FORMAT.md order ({weight}, {qweight, scales} or
// {qweight, scales, zeros}); fp16 tensors are numpy float16. Bad tensors raise ValueError.
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "../backends/cpu/linear.h"
#include "../backends/cpu/thread_pool.h"
#include "bindings.h"
#include "numpy_views.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace awq_edge::bindings {

namespace {

using cpu::KernelLevel;
using Matrix = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

Scheme parse_scheme(const std::string& text) {
  const auto scheme = Scheme::parse(text);
  if (!scheme) throw std::invalid_argument("[cpu linear] unknown scheme '" + text + "': expected f16, q8_row or q{3,4}_g{32,64,128}");
  return *scheme;
}

KernelLevel parse_level(const std::string& text) {
  if (text == "best") return cpu::best_kernel_level();
  for (KernelLevel level : {KernelLevel::Reference, KernelLevel::AVX2, KernelLevel::AVX512, KernelLevel::NeonFp32,
                            KernelLevel::NeonFp16, KernelLevel::NeonDot, KernelLevel::NeonI8mm}) {
    if (text == cpu::kernel_level_name(level)) return level;
  }
  throw std::invalid_argument("[cpu linear] unknown kernel level '" + text +
                              "': expected best, reference, avx2, avx512, neon-fp32, neon-fp16, neon-dot or neon-i8mm");
}

// A packed weight with the arrays it points into and its own pool.
class LinearLayer {
 public:
  LinearLayer(const std::string& scheme, int64_t rows, int64_t cols, std::vector<InputArray> tensors,
              const std::string& level, int threads)
      : tensors_(std::move(tensors)), pool_(std::make_unique<cpu::ThreadPool>(threads)) {
    if (threads < 1) throw std::invalid_argument("[cpu linear] threads must be >= 1, found " + std::to_string(threads));
    std::vector<TensorView> views;
    for (const InputArray& array : tensors_) views.push_back(view_of(array, "cpu linear"));
    weight_ = cpu::pack_linear(parse_scheme(scheme), rows, cols, views, parse_level(level));
  }

  nb::ndarray<nb::numpy, float, nb::ndim<2>> operator()(const Matrix& x) {
    if (x.shape(1) != static_cast<size_t>(weight_.cols)) {
      throw std::invalid_argument("[cpu linear] x has " + std::to_string(x.shape(1)) + " columns, the weight " +
                                  std::to_string(weight_.cols));
    }
    const int64_t m = static_cast<int64_t>(x.shape(0));
    float* y = new float[static_cast<size_t>(m * weight_.rows)];
    nb::capsule owner(y, [](void* p) noexcept { delete[] static_cast<float*>(p); });
    {
      nb::gil_scoped_release release;
      cpu::linear(weight_, x.data(), m, y, *pool_);
    }
    return {y, {static_cast<size_t>(m), static_cast<size_t>(weight_.rows)}, owner};
  }

  // Times `repeats` calls in C++ (no Python between them); returns seconds per call. copies > 1:
  // the calls cycle through that many copies of the weight in distinct memory, so that each finds
  // its weights in memory rather than in cache once copies x the weight's bytes exceed the caches.
  double time(const Matrix& x, int repeats, int copies) {
    if (repeats < 1 || copies < 1) throw std::invalid_argument("[cpu linear] repeats and copies must be >= 1");
    const int64_t m = static_cast<int64_t>(x.shape(0));
    std::vector<std::vector<uint8_t>> buffers;
    std::vector<cpu::LinearWeight> weights{weight_};
    for (int c = 1; c < copies; ++c) {
      std::vector<TensorView> views;
      for (const InputArray& array : tensors_) {
        TensorView view = view_of(array, "cpu linear");
        const auto* bytes = static_cast<const uint8_t*>(view.data);
        buffers.emplace_back(bytes, bytes + view.size);
        view.data = buffers.back().data();
        views.push_back(view);
      }
      weights.push_back(cpu::pack_linear(weight_.scheme, weight_.rows, weight_.cols, views, weight_.level));
    }
    std::vector<float> y(static_cast<size_t>(m * weight_.rows));
    nb::gil_scoped_release release;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < repeats; ++i) {
      for (const cpu::LinearWeight& weight : weights) cpu::linear(weight, x.data(), m, y.data(), *pool_);
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / (repeats * copies);
  }

  nb::ndarray<nb::numpy, float, nb::ndim<1>> dequantize_row(int64_t row) const {
    if (row < 0 || row >= weight_.rows) {
      throw std::invalid_argument("[cpu linear] row " + std::to_string(row) + " out of range 0.." +
                                  std::to_string(weight_.rows - 1));
    }
    float* out = new float[static_cast<size_t>(weight_.cols)];
    nb::capsule owner(out, [](void* p) noexcept { delete[] static_cast<float*>(p); });
    cpu::dequantize_row(weight_, row, out);
    return {out, {static_cast<size_t>(weight_.cols)}, owner};
  }

  const char* level() const { return cpu::kernel_level_name(weight_.level); }

 private:
  std::vector<InputArray> tensors_;  // keep the viewed memory alive
  std::unique_ptr<cpu::ThreadPool> pool_;
  cpu::LinearWeight weight_;
};

}  // namespace

void bind_cpu_kernels(nb::module_& parent) {
  nb::module_ m = parent.def_submodule("cpu_kernels", "The CPU backend's linear-layer kernels, for tests and benchmarks.");

  m.def("best_kernel_level", [] { return cpu::kernel_level_name(cpu::best_kernel_level()); },
        "The fastest faithful kernel level this CPU runs: 'avx512', 'avx2', 'neon-fp16', 'neon-fp32' or 'reference'.");
  m.def("physical_core_count", &cpu::physical_core_count, "Physical cores of this machine (hyper-threads not counted).");

  nb::class_<LinearLayer>(m, "LinearLayer",
                          "LinearLayer(scheme, rows, cols, tensors, level='best', threads=1): a packed weight.")
      .def(nb::init<const std::string&, int64_t, int64_t, std::vector<InputArray>, const std::string&, int>(),
           "scheme"_a, "rows"_a, "cols"_a, "tensors"_a, "level"_a = "best", "threads"_a = 1)
      .def("__call__", &LinearLayer::operator(), "x"_a, "y (m, N) = x (m, K) W^T, float32.")
      .def("time", &LinearLayer::time, "x"_a, "repeats"_a, "copies"_a = 1,
           "Seconds per call, timed in C++; copies > 1 cycles through copies of the weight (cold caches).")
      .def("dequantize_row", &LinearLayer::dequantize_row, "row"_a, "Row `row` of W as float32 (K,).")
      .def_prop_ro("level", &LinearLayer::level);

  m.def(
      "linear",
      [](const std::string& scheme, int64_t rows, int64_t cols, std::vector<InputArray> tensors, const Matrix& x,
         const std::string& level, int threads) {
        return LinearLayer(scheme, rows, cols, std::move(tensors), level, threads)(x);
      },
      "scheme"_a, "rows"_a, "cols"_a, "tensors"_a, "x"_a, "level"_a = "best", "threads"_a = 1,
      "y (m, N) = x (m, K) W^T with the given kernel level and thread count.");
  m.def(
      "dequantize_row",
      [](const std::string& scheme, int64_t rows, int64_t cols, std::vector<InputArray> tensors, int64_t row,
         const std::string& level) {
        return LinearLayer(scheme, rows, cols, std::move(tensors), level, 1).dequantize_row(row);
      },
      "scheme"_a, "rows"_a, "cols"_a, "tensors"_a, "row"_a, "level"_a = "best", "Row `row` of W as float32 (K,).");
}

}  // namespace awq_edge::bindings
