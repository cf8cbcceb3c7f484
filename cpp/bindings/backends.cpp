// backends.cpp (bindings): the backends of this build, exposed as the submodule _awq_edge.backends
// for tests, benchmarks and the CLI (the decoder reaches them through Generator):
//
//   compiled() -> ["cuda", "cpu"]           the backends this build contains, in "auto" order
//   available(name) -> (bool, reason)       whether `name` can run on this machine, and why not
//   Linear(backend, scheme, rows, cols, tensors, kernels="auto", threads=1)
//       one weight uploaded to a backend through backend.h, then layer(x) -> y (m, N) float32 and
//       layer.time(x, repeats, copies=1) -> seconds per call (the backend's queue drained once at the
//       end); copies > 1 uploads the weight that many times and cycles through them, so that the
//       calls read it from memory rather than from a cache larger than one copy
//
// Operations and Attention (backend_operations.cpp): the other operations of backend.h.
//
// tensors are the module's numpy arrays in FORMAT.md order, as for cpu_kernels.LinearLayer.
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "awq_edge/backends.h"
#include "bindings.h"
#include "host_matrices.h"
#include "numpy_views.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace awq_edge::bindings {
namespace {

using Matrix = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

class BackendLinear {
 public:
  BackendLinear(const std::string& backend, const std::string& scheme, int64_t rows, int64_t cols,
                std::vector<InputArray> tensors, const std::string& kernels, int threads)
      : tensors_(std::move(tensors)) {
    const auto parsed = Scheme::parse(scheme);
    if (!parsed) throw std::invalid_argument("[backends.Linear] unknown scheme '" + scheme + "'");
    if (rows < 1 || cols < 1) throw std::invalid_argument("[backends.Linear] rows and cols must be >= 1");
    BackendOptions options;
    options.kernels = kernels;
    options.threads = threads;
    backend_ = create_backend(backend, options);
    for (const InputArray& array : tensors_) views_.push_back(view_of(array, "backends.Linear"));
    module_.name = "test";
    module_.scheme = *parsed;
    module_.rows = static_cast<uint64_t>(rows);
    module_.cols = static_cast<uint64_t>(cols);
    weight_ = backend_->upload_linear(module_, views_);
  }

  nb::ndarray<nb::numpy, float, nb::ndim<2>> operator()(const Matrix& x) {
    const int64_t m = check_x(x);
    HostMatrix y;
    {
      nb::gil_scoped_release release;
      Activation input = upload(x), output = backend_->allocate(m, weight_->rows());
      backend_->linear(*weight_, input, nullptr, output);
      y = download_matrix(*backend_, output);
    }
    return to_numpy(std::move(y));
  }

  double time(const Matrix& x, int repeats, int copies) {
    if (repeats < 1 || copies < 1) throw std::invalid_argument("[backends.Linear] repeats and copies must be >= 1");
    const int64_t m = check_x(x);
    std::vector<std::unique_ptr<LinearWeights>> extra;
    for (int c = 1; c < copies; ++c) extra.push_back(backend_->upload_linear(module_, views_));
    std::vector<const LinearWeights*> weights{weight_.get()};
    for (const auto& w : extra) weights.push_back(w.get());
    nb::gil_scoped_release release;
    Activation input = upload(x), output = backend_->allocate(m, weight_->rows());
    for (const LinearWeights* w : weights) backend_->linear(*w, input, nullptr, output);  // warm-up, not timed
    backend_->synchronize();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < repeats; ++i) {
      for (const LinearWeights* w : weights) backend_->linear(*w, input, nullptr, output);
    }
    backend_->synchronize();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / (repeats * copies);
  }

  std::string description() const { return backend_->description(); }

 private:
  int64_t check_x(const Matrix& x) const {
    if (x.shape(1) != static_cast<size_t>(weight_->cols()) || x.shape(0) < 1) {
      throw std::invalid_argument("[backends.Linear] x must be (m >= 1, " + std::to_string(weight_->cols()) +
                                  "), got (" + std::to_string(x.shape(0)) + ", " + std::to_string(x.shape(1)) + ")");
    }
    return static_cast<int64_t>(x.shape(0));
  }

  Activation upload(const Matrix& x) {
    return upload_matrix(*backend_, x.data(), static_cast<int64_t>(x.shape(0)), static_cast<int64_t>(x.shape(1)));
  }

  std::vector<InputArray> tensors_;
  std::vector<TensorView> views_;  // into tensors_ (numpy memory: never released by a backend)
  Module module_;
  std::shared_ptr<Backend> backend_;
  std::unique_ptr<LinearWeights> weight_;
};

}  // namespace

void bind_backends(nb::module_& parent) {
  nb::module_ m = parent.def_submodule("backends", "The compute backends of this build, for tests and benchmarks.");
  m.def("compiled", &compiled_backends, "The backends this build contains, in the order 'auto' tries them.");
  m.def(
      "available",
      [](const std::string& name) {
        std::string reason;
        const bool ok = backend_available(name, &reason);
        return std::make_pair(ok, reason);
      },
      "name"_a, "(True, '') when backend `name` can run on this machine, else (False, the reason).");
  nb::class_<BackendLinear>(m, "Linear", "Linear(backend, scheme, rows, cols, tensors, kernels='auto', threads=1)")
      .def(nb::init<const std::string&, const std::string&, int64_t, int64_t, std::vector<InputArray>,
                    const std::string&, int>(),
           "backend"_a, "scheme"_a, "rows"_a, "cols"_a, "tensors"_a, "kernels"_a = "auto", "threads"_a = 1)
      .def("__call__", &BackendLinear::operator(), "x"_a, "y (m, N) = x (m, K) W^T, float32.")
      .def("time", &BackendLinear::time, "x"_a, "repeats"_a, "copies"_a = 1,
           "Seconds per call, timed in C++; copies > 1 cycles through that many uploads of the weight.")
      .def_prop_ro("description", &BackendLinear::description);
  bind_backend_operations(m);
}

}  // namespace awq_edge::bindings
