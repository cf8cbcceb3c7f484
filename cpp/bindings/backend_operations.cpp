// backend_operations.cpp (bindings): the non-linear operations of backend.h, one call at a time on
// numpy float32 matrices, for the tests that hold every backend's kernels against numpy
// (tests/cpp/test_backend_operations.py). Part of the submodule _awq_edge.backends:
//
//   Operations(backend, kernels="auto", threads=1)
//       rms_norm(x, weight, eps) -> out                    x (n, H), weight (H,)
//       add_rms_norm(x, delta, weight, eps) -> (x + delta, out)
//       silu_mul(gate, up) -> out
//       add(x, y) -> x + y
//       rope(inv_freq, n_heads, n_kv_heads, head_dim, first_position, q, k) -> (q, k) rotated
//   Attention(backend, n_heads, n_kv_heads, head_dim, inv_freq, capacity, layers=1, kernels="auto",
//             threads=1): one KV cache of `layers` layers and a rope table, kept between calls
//       __call__(layer, first_position, q, k, v, fused=True) -> out (n, nh*D)
//           q, k: (n, nh*D), (n, nkv*D) before the rotary embedding; v (n, nkv*D). fused=True runs the
//           backend's rotary_attention (its fused kernels where it has them); fused=False runs
//           Backend's default, the primitives rope, store_kv and attention one after another.
//
// Every call uploads its inputs, runs the operation and reads the result back (read_logits), so
// the backend's asynchronous queue is drained before it returns; the GIL is released meanwhile
// and the numpy results are made after.
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
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
using Vector = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Result = nb::ndarray<nb::numpy, float, nb::ndim<2>>;

// work() with the GIL released: the backend's calls make none into Python, and may take long.
template <typename Work>
auto without_gil(Work&& work) {
  nb::gil_scoped_release release;
  return work();
}

std::shared_ptr<Backend> backend_named(const std::string& name, const std::string& kernels, int threads) {
  BackendOptions options;
  options.kernels = kernels;
  options.threads = threads;
  return create_backend(name, options);
}

// The shared work of both classes: numpy in, backend activations, numpy out.
class Transfers {
 public:
  Transfers(std::shared_ptr<Backend> backend, std::string who) : backend_(std::move(backend)), who_(std::move(who)) {}

  // x as a backend activation, (rows, cols) checked against `cols` when given.
  Activation upload(const Matrix& x, const char* name, int64_t cols = -1) const {
    if (x.shape(0) < 1 || x.shape(1) < 1 || (cols >= 0 && x.shape(1) != static_cast<size_t>(cols))) {
      throw std::invalid_argument("[" + who_ + "] " + name + " must be (n >= 1, " +
                                  (cols >= 0 ? std::to_string(cols) : std::string("cols >= 1")) + "), got (" +
                                  std::to_string(x.shape(0)) + ", " + std::to_string(x.shape(1)) + ")");
    }
    return upload_matrix(*backend_, x.data(), static_cast<int64_t>(x.shape(0)), static_cast<int64_t>(x.shape(1)));
  }

  Activation upload(const Vector& v) const {
    return backend_->upload_vector(flat_view(v.data(), DType::F32, v.shape(0)));
  }

  HostMatrix download(const Activation& a) const { return download_matrix(*backend_, a); }

  void same_shape(const Matrix& a, const Matrix& b, const char* names) const {
    if (a.shape(0) != b.shape(0) || a.shape(1) != b.shape(1)) {
      throw std::invalid_argument("[" + who_ + "] " + names + " must have one shape, got (" +
                                  std::to_string(a.shape(0)) + ", " + std::to_string(a.shape(1)) + ") and (" +
                                  std::to_string(b.shape(0)) + ", " + std::to_string(b.shape(1)) + ")");
    }
  }

  AttentionShape attention_shape(int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, size_t inv_freq) const {
    if (n_heads < 1 || n_kv_heads < 1 || n_heads % n_kv_heads != 0 || head_dim < 2 || head_dim % 2 != 0 ||
        inv_freq != static_cast<size_t>(head_dim / 2)) {
      throw std::invalid_argument("[" + who_ + "] n_heads (" + std::to_string(n_heads) +
                                  ") must be a multiple of n_kv_heads (" + std::to_string(n_kv_heads) +
                                  "), head_dim (" + std::to_string(head_dim) + ") even, and inv_freq of head_dim / 2 "
                                  "values, got " + std::to_string(inv_freq));
    }
    AttentionShape shape;
    shape.n_heads = n_heads;
    shape.n_kv_heads = n_kv_heads;
    shape.head_dim = head_dim;
    shape.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    return shape;
  }

  Backend& backend() const { return *backend_; }

 private:
  std::shared_ptr<Backend> backend_;
  std::string who_;
};

class Operations {
 public:
  Operations(const std::string& backend, const std::string& kernels, int threads)
      : io_(backend_named(backend, kernels, threads), "backends.Operations") {}

  Result rms_norm(const Matrix& x, const Vector& weight, float eps) {
    check_weight(x, weight);
    return to_numpy(without_gil([&] {
      const Activation input = io_.upload(x, "x"), w = io_.upload(weight);
      Activation out = io_.backend().allocate(input.rows, input.cols);
      io_.backend().rms_norm(input, w, eps, out);
      return io_.download(out);
    }));
  }

  std::tuple<Result, Result> add_rms_norm(const Matrix& x, const Matrix& delta, const Vector& weight, float eps) {
    io_.same_shape(x, delta, "x and delta");
    check_weight(x, weight);
    auto [sum, out] = without_gil([&] {
      Activation total = io_.upload(x, "x");
      const Activation d = io_.upload(delta, "delta"), w = io_.upload(weight);
      Activation normed = io_.backend().allocate(total.rows, total.cols);
      io_.backend().add_rms_norm(total, d, w, eps, normed);
      return std::make_pair(io_.download(total), io_.download(normed));
    });
    return {to_numpy(std::move(sum)), to_numpy(std::move(out))};
  }

  Result silu_mul(const Matrix& gate, const Matrix& up) {
    io_.same_shape(gate, up, "gate and up");
    return to_numpy(without_gil([&] {
      const Activation g = io_.upload(gate, "gate"), u = io_.upload(up, "up");
      Activation out = io_.backend().allocate(g.rows, g.cols);
      io_.backend().silu_mul(g, u, out);
      return io_.download(out);
    }));
  }

  Result add(const Matrix& x, const Matrix& y) {
    io_.same_shape(x, y, "x and y");
    return to_numpy(without_gil([&] {
      Activation sum = io_.upload(x, "x");
      io_.backend().add(sum, io_.upload(y, "y"));
      return io_.download(sum);
    }));
  }

  std::tuple<Result, Result> rope(const Vector& inv_freq, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                  int64_t first_position, const Matrix& q, const Matrix& k) {
    const AttentionShape shape = io_.attention_shape(n_heads, n_kv_heads, head_dim, inv_freq.shape(0));
    if (first_position < 0 || q.shape(0) != k.shape(0)) {
      throw std::invalid_argument("[backends.Operations] rope: first_position must be >= 0 and q, k have one row "
                                  "per token");
    }
    const std::vector<float> frequencies(inv_freq.data(), inv_freq.data() + inv_freq.shape(0));
    auto [rotated_q, rotated_k] = without_gil([&] {
      Activation query = io_.upload(q, "q", n_heads * head_dim);
      Activation key = io_.upload(k, "k", n_kv_heads * head_dim);
      const auto table = io_.backend().prepare_rope(frequencies, first_position + query.rows);
      io_.backend().rope(*table, shape, first_position, query, key);
      return std::make_pair(io_.download(query), io_.download(key));
    });
    return {to_numpy(std::move(rotated_q)), to_numpy(std::move(rotated_k))};
  }

  std::string description() const { return io_.backend().description(); }

 private:
  void check_weight(const Matrix& x, const Vector& weight) const {
    if (weight.shape(0) != x.shape(1)) {
      throw std::invalid_argument("[backends.Operations] weight has " + std::to_string(weight.shape(0)) +
                                  " values, x " + std::to_string(x.shape(1)) + " columns");
    }
  }

  Transfers io_;
};

class Attention {
 public:
  Attention(const std::string& backend, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, const Vector& inv_freq,
            int64_t capacity, int64_t layers, const std::string& kernels, int threads)
      : io_(backend_named(backend, kernels, threads), "backends.Attention"),
        shape_(io_.attention_shape(n_heads, n_kv_heads, head_dim, inv_freq.shape(0))), layers_(layers) {
    if (capacity < 1 || layers < 1) {
      throw std::invalid_argument("[backends.Attention] capacity and layers must be >= 1");
    }
    cache_ = io_.backend().allocate_kv_cache(layers, capacity, n_kv_heads, head_dim);
    rope_ = io_.backend().prepare_rope(std::vector<float>(inv_freq.data(), inv_freq.data() + inv_freq.shape(0)),
                                       capacity);
  }

  Result operator()(int64_t layer, int64_t first_position, const Matrix& q, const Matrix& k, const Matrix& v,
                    bool fused) {
    if (layer < 0 || layer >= layers_ || first_position < 0 ||
        first_position + static_cast<int64_t>(q.shape(0)) > cache_->capacity()) {
      throw std::invalid_argument("[backends.Attention] layer " + std::to_string(layer) + " of " +
                                  std::to_string(layers_) + ", positions [" + std::to_string(first_position) + ", " +
                                  std::to_string(first_position + static_cast<int64_t>(q.shape(0))) +
                                  ") must fit the cache's " + std::to_string(cache_->capacity()));
    }
    io_.same_shape(k, v, "k and v");
    if (k.shape(0) != q.shape(0)) throw std::invalid_argument("[backends.Attention] q, k and v need one row per token");
    return to_numpy(without_gil([&] {
      Activation query = io_.upload(q, "q", shape_.n_heads * shape_.head_dim);
      Activation key = io_.upload(k, "k", shape_.n_kv_heads * shape_.head_dim);
      const Activation value = io_.upload(v, "v", shape_.n_kv_heads * shape_.head_dim);
      Activation out = io_.backend().allocate(query.rows, query.cols);
      Backend& b = io_.backend();
      if (fused) b.rotary_attention(*rope_, *cache_, layer, shape_, first_position, query, key, value, out);
      else b.Backend::rotary_attention(*rope_, *cache_, layer, shape_, first_position, query, key, value, out);
      return io_.download(out);
    }));
  }

  std::string description() const { return io_.backend().description(); }

 private:
  Transfers io_;
  AttentionShape shape_;
  int64_t layers_;
  std::unique_ptr<KVCache> cache_;
  std::unique_ptr<RopeTable> rope_;
};

}  // namespace

void bind_backend_operations(nb::module_& backends) {
  nb::class_<Operations>(backends, "Operations",
                         "Operations(backend, kernels='auto', threads=1): backend.h's elementwise operations, "
                         "norms and rope on float32 numpy matrices, one call at a time.")
      .def(nb::init<const std::string&, const std::string&, int>(), "backend"_a, "kernels"_a = "auto", "threads"_a = 1)
      .def("rms_norm", &Operations::rms_norm, "x"_a, "weight"_a, "eps"_a, "x / rms(x) * weight")
      .def("add_rms_norm", &Operations::add_rms_norm, "x"_a, "delta"_a, "weight"_a, "eps"_a,
           "(x + delta, rms_norm(x + delta, weight)), the fused residual add")
      .def("silu_mul", &Operations::silu_mul, "gate"_a, "up"_a, "silu(gate) * up")
      .def("add", &Operations::add, "x"_a, "y"_a, "x + y")
      .def("rope", &Operations::rope, "inv_freq"_a, "n_heads"_a, "n_kv_heads"_a, "head_dim"_a, "first_position"_a,
           "q"_a, "k"_a, "(q, k) rotated for positions first_position + [0, n) (rotate_half convention)")
      .def_prop_ro("description", &Operations::description);
  nb::class_<Attention>(backends, "Attention",
                        "Attention(backend, n_heads, n_kv_heads, head_dim, inv_freq, capacity, layers=1, "
                        "kernels='auto', threads=1): a KV cache and rope table for calls of the attention block.")
      .def(nb::init<const std::string&, int64_t, int64_t, int64_t, const Vector&, int64_t, int64_t,
                    const std::string&, int>(),
           "backend"_a, "n_heads"_a, "n_kv_heads"_a, "head_dim"_a, "inv_freq"_a, "capacity"_a, "layers"_a = 1,
           "kernels"_a = "auto", "threads"_a = 1)
      .def("__call__", &Attention::operator(), "layer"_a, "first_position"_a, "q"_a, "k"_a, "v"_a, "fused"_a = true,
           "out (n, nh*D): the attention block for positions first_position + [0, n) of `layer`, storing k (rotated) "
           "and v in the cache; fused=False runs the primitives rope, store_kv, attention one after another.")
      .def_prop_ro("description", &Attention::description);
}

}  // namespace awq_edge::bindings
