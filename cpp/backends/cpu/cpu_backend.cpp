// cpu_backend.cpp: the CPU implementation of backend.h.
//
// Activations: fp32, row-major, rows of `cols` floats (row_stride == cols).
// KV cache:    fp32, per layer K and V of (capacity, nkv*D): position p of kv head h is
//              k[layer][p][h*D .. h*D+D). fp32 rather than fp16 because the portable build
//              converts fp16 in software, which would sit in attention's innermost loop; the
//              cost is memory: 2 * layers * capacity * nkv*D * 4 bytes (SmolLM2-135M at 4096
//              positions: 189 MB, touched only as positions fill).
// Rope table:  cos and sin of position * inv_freq, (capacity, D/2) each, in fp32 as transformers.
//
// The linear layers (linear.h) take the time; the rest runs on the calling thread except
// attention, which is spread over (token, head) pairs. Their inner loops (a row, a head, a head's
// positions) come from a vector_ops.h table picked by the kernel level: portable C++, or NEON
// on the Neon* levels.
#include "cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "awq_edge/fp16.h"
#include "thread_pool.h"
#include "vector_ops.h"

namespace awq_edge::cpu {
namespace {

std::shared_ptr<void> zeroed_floats(int64_t count) {
  // calloc: large blocks come from fresh pages, so untouched cache positions cost no memory.
  void* memory = std::calloc(static_cast<size_t>(std::max<int64_t>(count, 1)), sizeof(float));
  if (memory == nullptr) {
    throw std::bad_alloc();
  }
  return std::shared_ptr<void>(memory, std::free);
}

float* row(const Activation& a, int64_t r) { return static_cast<float*>(a.data) + r * a.row_stride; }

class CpuLinear final : public LinearWeights {
 public:
  explicit CpuLinear(LinearWeight weight) : weight_(std::move(weight)) {}
  int64_t rows() const override { return weight_.rows; }
  int64_t cols() const override { return weight_.cols; }
  const LinearWeight& weight() const { return weight_; }

 private:
  LinearWeight weight_;
};

class CpuKVCache final : public KVCache {
 public:
  CpuKVCache(int64_t n_layers, int64_t capacity, int64_t kv_dim)
      : capacity_(capacity), kv_dim_(kv_dim),
        keys_(zeroed_floats(n_layers * capacity * kv_dim)),
        values_(zeroed_floats(n_layers * capacity * kv_dim)) {}
  int64_t capacity() const override { return capacity_; }
  int64_t kv_dim() const { return kv_dim_; }
  // (capacity, nkv*D) of one layer
  float* keys(int64_t layer) const { return static_cast<float*>(keys_.get()) + layer * capacity_ * kv_dim_; }
  float* values(int64_t layer) const { return static_cast<float*>(values_.get()) + layer * capacity_ * kv_dim_; }

 private:
  int64_t capacity_, kv_dim_;
  std::shared_ptr<void> keys_, values_;
};

class CpuRopeTable final : public RopeTable {
 public:
  CpuRopeTable(const std::vector<float>& inv_freq, int64_t max_positions)
      : half_dim_(static_cast<int64_t>(inv_freq.size())) {
    rope_cos_sin(inv_freq, max_positions, cos_, sin_);
  }
  int64_t positions() const { return static_cast<int64_t>(cos_.size()) / half_dim_; }
  const float* cos(int64_t position) const { return cos_.data() + position * half_dim_; }
  const float* sin(int64_t position) const { return sin_.data() + position * half_dim_; }

 private:
  int64_t half_dim_;
  std::vector<float> cos_, sin_;  // (max_positions, D/2)
};

void check_same_shape(const Activation& a, const Activation& b, const char* op) {
  if (a.rows != b.rows || a.cols != b.cols) {
    throw std::invalid_argument(std::string("[cpu] ") + op + ": shapes (" +
                                std::to_string(a.rows) + ", " + std::to_string(a.cols) + ") and (" +
                                std::to_string(b.rows) + ", " + std::to_string(b.cols) + ") differ");
  }
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(std::string name, int threads, KernelLevel level)
      : name_(std::move(name)), pool_(threads), level_(level), ops_(vector_ops(level)) {}

  std::string name() const override { return name_; }
  std::string description() const override {
    return name_ + " (" + kernel_level_name(level_) + " kernels, " +
           std::to_string(pool_.size()) + (pool_.size() == 1 ? " thread)" : " threads)");
  }

  Activation allocate(int64_t rows, int64_t cols) override {
    Activation a;
    a.storage = zeroed_floats(rows * cols);
    a.data = a.storage.get();
    a.rows = rows;
    a.cols = cols;
    a.row_stride = cols;
    a.element_size = sizeof(float);
    return a;
  }

  std::unique_ptr<LinearWeights> upload_linear(const Module& module,
                                               const std::vector<TensorView>& tensors) override {
    return std::make_unique<CpuLinear>(pack_linear(module.scheme, static_cast<int64_t>(module.rows),
                                                   static_cast<int64_t>(module.cols), tensors, level_));
  }

  Activation upload_vector(const TensorView& tensor) override {
    const int64_t n = static_cast<int64_t>(tensor.shape.numel());
    Activation a = allocate(1, n);
    float* out = row(a, 0);
    if (tensor.dtype == DType::F16) {
      for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_float(tensor.as<uint16_t>()[i]);
    } else if (tensor.dtype == DType::F32) {
      std::memcpy(out, tensor.data, static_cast<size_t>(n) * sizeof(float));
    } else {
      throw std::invalid_argument(std::string("[cpu] upload_vector: expected an F16 or F32 tensor, found ") +
                                  dtype_name(tensor.dtype));
    }
    return a;
  }

  std::unique_ptr<KVCache> allocate_kv_cache(int64_t n_layers, int64_t capacity, int64_t n_kv_heads,
                                             int64_t head_dim) override {
    return std::make_unique<CpuKVCache>(n_layers, capacity, n_kv_heads * head_dim);
  }

  std::unique_ptr<RopeTable> prepare_rope(const std::vector<float>& inv_freq,
                                          int64_t max_positions) override {
    return std::make_unique<CpuRopeTable>(inv_freq, max_positions);
  }

  void embed(const LinearWeights& table, const int32_t* tokens, int64_t n, Activation& out) override {
    const LinearWeight& w = static_cast<const CpuLinear&>(table).weight();
    for (int64_t i = 0; i < n; ++i) dequantize_row(w, tokens[i], row(out, i));
  }

  void rms_norm(const Activation& x, const Activation& weight, float eps, Activation& out) override {
    check_same_shape(x, out, "rms_norm");
    for (int64_t r = 0; r < x.rows; ++r) {
      normalize(row(x, r), x.cols, ops_.sum_squares(row(x, r), x.cols), weight, eps, row(out, r));
    }
  }

  // One pass over the residual for the add and the sum of squares, one for the scaling.
  void add_rms_norm(Activation& x, const Activation& delta, const Activation& weight, float eps,
                    Activation& out) override {
    check_same_shape(x, delta, "add_rms_norm");
    check_same_shape(x, out, "add_rms_norm");
    for (int64_t r = 0; r < x.rows; ++r) {
      const float sum_squares = ops_.add_sum_squares(row(x, r), row(delta, r), x.cols);
      normalize(row(x, r), x.cols, sum_squares, weight, eps, row(out, r));
    }
  }

  void linear(const LinearWeights& weights, const Activation& x, const Activation* bias,
              Activation& out) override {
    const LinearWeight& w = static_cast<const CpuLinear&>(weights).weight();
    if (x.cols != w.cols || out.cols != w.rows || x.rows != out.rows) {
      throw std::invalid_argument("[cpu] linear: W (" + std::to_string(w.rows) + ", " +
                                  std::to_string(w.cols) + "), x (" + std::to_string(x.rows) + ", " +
                                  std::to_string(x.cols) + "), out (" + std::to_string(out.rows) +
                                  ", " + std::to_string(out.cols) + ") do not fit");
    }
    cpu::linear(w, row(x, 0), x.rows, row(out, 0), pool_);
    if (bias != nullptr) {
      for (int64_t r = 0; r < out.rows; ++r) ops_.add(row(out, r), row(*bias, 0), out.cols);
    }
  }

  void rope(const RopeTable& table, const AttentionShape& shape, int64_t first_position,
            Activation& q, Activation& k) override {
    const auto& rope = static_cast<const CpuRopeTable&>(table);
    if (first_position + q.rows > rope.positions()) {
      throw std::out_of_range("[cpu] rope: positions up to " + std::to_string(first_position + q.rows) +
                              " exceed the table's " + std::to_string(rope.positions()));
    }
    const int64_t D = shape.head_dim;
    for (int64_t t = 0; t < q.rows; ++t) {
      const float* cos = rope.cos(first_position + t);
      const float* sin = rope.sin(first_position + t);
      for (int64_t h = 0; h < shape.n_heads; ++h) ops_.rotate_half(row(q, t) + h * D, cos, sin, D / 2);
      for (int64_t h = 0; h < shape.n_kv_heads; ++h) ops_.rotate_half(row(k, t) + h * D, cos, sin, D / 2);
    }
  }

  void store_kv(KVCache& cache, int64_t layer, int64_t first_position, const Activation& k,
                const Activation& v) override {
    auto& c = static_cast<CpuKVCache&>(cache);
    if (first_position + k.rows > c.capacity()) {
      throw std::out_of_range("[cpu] store_kv: positions up to " + std::to_string(first_position + k.rows) +
                              " exceed the cache's " + std::to_string(c.capacity()));
    }
    const size_t bytes = static_cast<size_t>(c.kv_dim()) * sizeof(float);
    for (int64_t t = 0; t < k.rows; ++t) {
      std::memcpy(c.keys(layer) + (first_position + t) * c.kv_dim(), row(k, t), bytes);
      std::memcpy(c.values(layer) + (first_position + t) * c.kv_dim(), row(v, t), bytes);
    }
  }

  void attention(const KVCache& cache, int64_t layer, const AttentionShape& shape,
                 int64_t first_position, const Activation& q, Activation& out) override {
    const auto& c = static_cast<const CpuKVCache&>(cache);
    const int64_t D = shape.head_dim, group = shape.n_heads / shape.n_kv_heads;
    const float* keys = c.keys(layer);
    const float* values = c.values(layer);
    const int64_t kv_dim = c.kv_dim();
    pool_.run(q.rows * shape.n_heads, [&](int64_t begin, int64_t end) {
      std::vector<float> scores(static_cast<size_t>(first_position + q.rows));
      for (int64_t task = begin; task < end; ++task) {
        const int64_t t = task / shape.n_heads, h = task % shape.n_heads;
        const int64_t kv_offset = (h / group) * D;
        const int64_t length = first_position + t + 1;  // causal: positions [0, first + t]
        ops_.dot_rows(row(q, t) + h * D, keys + kv_offset, kv_dim, length, D, shape.scale, scores.data());
        ops_.softmax(scores.data(), length);
        ops_.axpy_rows(scores.data(), values + kv_offset, kv_dim, length, D, row(out, t) + h * D);
      }
    });
  }

  void silu_mul(const Activation& gate, const Activation& up, Activation& out) override {
    check_same_shape(gate, up, "silu_mul");
    check_same_shape(gate, out, "silu_mul");
    for (int64_t r = 0; r < gate.rows; ++r) ops_.silu_mul(row(gate, r), row(up, r), row(out, r), gate.cols);
  }

  void add(Activation& x, const Activation& y) override {
    check_same_shape(x, y, "add");
    for (int64_t r = 0; r < x.rows; ++r) ops_.add(row(x, r), row(y, r), x.cols);
  }

  void read_logits(const Activation& x, float* host) override {
    for (int64_t r = 0; r < x.rows; ++r) {
      std::memcpy(host + r * x.cols, row(x, r), static_cast<size_t>(x.cols) * sizeof(float));
    }
  }

  void synchronize() override {}  // every operation has finished when it returns

 private:
  // out (n) = x / rms(x) * weight, given x's sum of squares.
  void normalize(const float* x, int64_t n, float sum_squares, const Activation& weight, float eps, float* out) const {
    const float inverse_rms = 1.0f / std::sqrt(sum_squares / static_cast<float>(n) + eps);
    ops_.scale_mul(x, inverse_rms, row(weight, 0), out, n);
  }

  std::string name_;
  ThreadPool pool_;
  KernelLevel level_;
  const VectorOps& ops_;  // the inner loops of everything but the linear layers
};

}  // namespace

std::shared_ptr<Backend> create_cpu_backend(const std::string& name, int threads, KernelLevel level) {
  return std::make_shared<CpuBackend>(name, threads, level);
}

}  // namespace awq_edge::cpu
