// cuda_backend.cu: the CUDA implementation of backend.h.
//
// Memory (all on the GPU, nothing read back except logits):
//   activations  fp32 (rows, cols), row stride = cols; views share the allocation
//   weights      q4/q3 grouped: repacked at upload into the fragment layout (q4_layout.h);
//                f16 / q8_row: copied as stored (row-major). The file's host pages of a weight are
//                released after its upload (MappedFile::release), so that on Jetson, where
//                CPU and GPU share DRAM, the weights are not held twice.
//   KV cache     fp16, per layer K and V of (capacity, nkv*D)
//   rope tables  fp32 cos and sin (capacity, D/2), computed on the host as the CPU backend does
//   scratch      prepared fp16 activations, group multipliers, token ids, attention partials;
//                grown on demand (cudaFree waits for the GPU, so growth is safe mid-stream)
//
// Execution: every operation is enqueued on one stream and returns at once; read_logits and
// synchronize wait. Launch configurations come from tuning.h.
#include "cuda_backend.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "awq_edge/fp16.h"
#include "awq_edge/mapped_file.h"
#include "kernels.h"
#include "tuning.h"
#include "weight_packing.h"

namespace awq_edge::cuda {
namespace {

void check(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess) {
    throw std::runtime_error("[cuda] " + what + " failed: " + cudaGetErrorName(status) + ": " +
                             cudaGetErrorString(status));
  }
}

std::string mib(size_t bytes) { return std::to_string((bytes + (1u << 19)) >> 20) + " MiB"; }

// Device memory, zero-filled; an out-of-memory error says how much was asked for, for what, and
// how much the GPU has left.
std::shared_ptr<void> device_zeros(size_t bytes, const std::string& what) {
  void* pointer = nullptr;
  const cudaError_t status = cudaMalloc(&pointer, std::max<size_t>(bytes, 256));
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    throw std::runtime_error("[cuda] out of GPU memory: " + what + " needs " + mib(bytes) + ", " + mib(free_bytes) +
                             " of " + mib(total_bytes) +
                             " are free (use a smaller max_context, a smaller model, or free the GPU)");
  }
  check(status, "cudaMalloc for " + what);
  check(cudaMemset(pointer, 0, bytes), "clearing " + what);
  return std::shared_ptr<void>(pointer, [](void* p) { cudaFree(p); });
}

std::shared_ptr<void> device_copy(const void* host, size_t bytes, const std::string& what) {
  std::shared_ptr<void> memory = device_zeros(bytes, what);
  check(cudaMemcpy(memory.get(), host, bytes, cudaMemcpyHostToDevice), "copying " + what + " to the GPU");
  return memory;
}

Matrix matrix(const Activation& a) { return Matrix{static_cast<float*>(a.data), a.rows, a.cols, a.row_stride}; }

std::string shape(int64_t rows, int64_t cols) { return "(" + std::to_string(rows) + ", " + std::to_string(cols) + ")"; }

class CudaLinear final : public LinearWeights {
 public:
  int64_t rows() const override { return rows_; }
  int64_t cols() const override { return cols_; }

  int64_t rows_ = 0, cols_ = 0;
  bool grouped = false;
  GroupedWeight grouped_weight;
  DenseWeight dense_weight;
  std::vector<std::shared_ptr<void>> memory;
};

class CudaKVCache final : public KVCache {
 public:
  CudaKVCache(int64_t layers, int64_t capacity, int64_t kv_dim)
      : capacity_(capacity), kv_dim_(kv_dim),
        keys_(device_zeros(static_cast<size_t>(layers * capacity * kv_dim) * 2, "the KV cache (keys)")),
        values_(device_zeros(static_cast<size_t>(layers * capacity * kv_dim) * 2, "the KV cache (values)")) {}
  int64_t capacity() const override { return capacity_; }
  uint16_t* keys(int64_t layer) const { return static_cast<uint16_t*>(keys_.get()) + layer * capacity_ * kv_dim_; }
  uint16_t* values(int64_t layer) const { return static_cast<uint16_t*>(values_.get()) + layer * capacity_ * kv_dim_; }

 private:
  int64_t capacity_, kv_dim_;
  std::shared_ptr<void> keys_, values_;
};

class CudaRopeTable final : public RopeTable {
 public:
  CudaRopeTable(const std::vector<float>& inv_freq, int64_t positions) : positions_(positions) {
    const size_t half = inv_freq.size();
    std::vector<float> cos_table(static_cast<size_t>(positions) * half), sin_table(cos_table.size());
    for (int64_t p = 0; p < positions; ++p) {
      for (size_t i = 0; i < half; ++i) {
        const float angle = static_cast<float>(p) * inv_freq[i];
        cos_table[static_cast<size_t>(p) * half + i] = std::cos(angle);
        sin_table[static_cast<size_t>(p) * half + i] = std::sin(angle);
      }
    }
    cos_ = device_copy(cos_table.data(), cos_table.size() * 4, "the rope cos table");
    sin_ = device_copy(sin_table.data(), sin_table.size() * 4, "the rope sin table");
  }
  int64_t positions() const { return positions_; }
  const float* cos() const { return static_cast<const float*>(cos_.get()); }
  const float* sin() const { return static_cast<const float*>(sin_.get()); }

 private:
  int64_t positions_;
  std::shared_ptr<void> cos_, sin_;
};

// A grow-only device buffer.
class Scratch {
 public:
  explicit Scratch(std::string what) : what_(std::move(what)) {}
  void* at_least(size_t bytes) {
    if (bytes > bytes_) {
      memory_.reset();  // cudaFree waits until the GPU no longer uses it
      memory_ = device_zeros(bytes, what_);
      bytes_ = bytes;
    }
    return memory_.get();
  }

 private:
  std::string what_;
  std::shared_ptr<void> memory_;
  size_t bytes_ = 0;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend() {
    check(cudaSetDevice(0), "selecting GPU 0");
    check(cudaGetDeviceProperties(&prop_, 0), "querying GPU 0");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating a CUDA stream");
    config_ = tuned_config(prop_.major, prop_.minor, prop_.multiProcessorCount, &tuning_source_);
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda"; }
  std::string description() const override {
    return std::string("cuda (") + prop_.name + ", sm_" + std::to_string(prop_.major) + std::to_string(prop_.minor) +
           ", " + std::to_string(prop_.multiProcessorCount) + " SMs, " + mib(prop_.totalGlobalMem) + "; tuning: " +
           tuning_source_ + ")";
  }

  Activation allocate(int64_t rows, int64_t cols) override {
    Activation a;
    a.storage = device_zeros(static_cast<size_t>(rows * cols) * 4, "an activation " + shape(rows, cols));
    a.data = a.storage.get();
    a.rows = rows;
    a.cols = cols;
    a.row_stride = cols;
    a.element_size = 4;
    return a;
  }

  std::unique_ptr<LinearWeights> upload_linear(const Module& module, const std::vector<TensorView>& tensors) override {
    auto linear = std::make_unique<CudaLinear>();
    linear->rows_ = static_cast<int64_t>(module.rows);
    linear->cols_ = static_cast<int64_t>(module.cols);
    const std::string what = "weight '" + module.name + "' (" + module.scheme.name() + ")";
    if (module.scheme.kind == Scheme::Kind::Grouped) {
      const cuda_layout::PackedGroupedWeight packed =
          cuda_layout::pack_grouped_weight(module.scheme, linear->rows_, linear->cols_, tensors);
      auto words = device_copy(packed.words.data(), packed.words.size() * 4, what);
      auto scales = device_copy(packed.scales.data(), packed.scales.size() * 2, what + " scales");
      auto zeros = device_copy(packed.zeros.data(), packed.zeros.size(), what + " zero points");
      GroupedWeight& w = linear->grouped_weight;
      w.words = static_cast<const uint4*>(words.get());
      w.scales = static_cast<const uint16_t*>(scales.get());
      w.zeros = static_cast<const uint8_t*>(zeros.get());
      w.rows = packed.rows;
      w.cols = packed.cols;
      w.group_size = packed.group_size;
      w.strips = packed.strips;
      w.blocks = packed.blocks;
      w.groups = packed.groups;
      w.group_shift = packed.group_size == 32 ? 0 : packed.group_size == 64 ? 1 : 2;
      linear->grouped = true;
      linear->memory = {words, scales, zeros};
    } else {
      const bool int8 = module.scheme.kind == Scheme::Kind::Q8Row;
      const size_t expected = static_cast<size_t>(linear->rows_ * linear->cols_) * (int8 ? 1 : 2);
      if (tensors.empty() || tensors[0].size != expected || (int8 && (tensors.size() != 2 || tensors[1].size != module.rows * 2))) {
        throw std::invalid_argument("[cuda] " + what + ": tensor sizes do not match " + shape(linear->rows_, linear->cols_));
      }
      auto values = device_copy(tensors[0].data, tensors[0].size, what);
      linear->memory = {values};
      DenseWeight& w = linear->dense_weight;
      w.values = values.get();
      w.int8 = int8;
      w.rows = linear->rows_;
      w.cols = linear->cols_;
      if (int8) {
        auto scales = device_copy(tensors[1].data, tensors[1].size, what + " scales");
        w.row_scales = static_cast<const uint16_t*>(scales.get());
        linear->memory.push_back(scales);
      }
    }
    // the file's pages of this module are not needed again (on Jetson: not held twice in the shared DRAM)
    for (const TensorView& tensor : tensors) {
      if (tensor.mapping != nullptr) tensor.mapping->release(tensor.data, tensor.size);
    }
    return linear;
  }

  Activation upload_vector(const TensorView& tensor) override {
    const int64_t n = static_cast<int64_t>(tensor.shape.numel());
    std::vector<float> values(static_cast<size_t>(n));
    if (tensor.dtype == DType::F16) {
      for (int64_t i = 0; i < n; ++i) values[static_cast<size_t>(i)] = fp16_to_float(tensor.as<uint16_t>()[i]);
    } else if (tensor.dtype == DType::F32) {
      std::memcpy(values.data(), tensor.data, static_cast<size_t>(n) * 4);
    } else {
      throw std::invalid_argument(std::string("[cuda] upload_vector: expected an F16 or F32 tensor, found ") +
                                  dtype_name(tensor.dtype));
    }
    Activation a = allocate(1, n);
    check(cudaMemcpy(a.data, values.data(), values.size() * 4, cudaMemcpyHostToDevice), "copying a vector to the GPU");
    return a;
  }

  std::unique_ptr<KVCache> allocate_kv_cache(int64_t n_layers, int64_t capacity, int64_t n_kv_heads,
                                             int64_t head_dim) override {
    return std::make_unique<CudaKVCache>(n_layers, capacity, n_kv_heads * head_dim);
  }

  std::unique_ptr<RopeTable> prepare_rope(const std::vector<float>& inv_freq, int64_t max_positions) override {
    return std::make_unique<CudaRopeTable>(inv_freq, max_positions);
  }

  void embed(const LinearWeights& table, const int32_t* tokens, int64_t n, Activation& out) override {
    auto* device_tokens = static_cast<int32_t*>(tokens_.at_least(static_cast<size_t>(n) * 4));
    // from pageable memory: returns once the ids are staged, so `tokens` may go away after it
    check(cudaMemcpyAsync(device_tokens, tokens, static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice, stream_),
          "copying token ids to the GPU");
    const auto& t = static_cast<const CudaLinear&>(table);
    const Matrix o = matrix(out.rows_view(0, n));
    if (t.grouped) embed_grouped(t.grouped_weight, device_tokens, o, stream_);
    else embed_dense(t.dense_weight, device_tokens, o, stream_);
  }

  void rms_norm(const Activation& x, const Activation& weight, float eps, Activation& out) override {
    same_shape(x, out, "rms_norm");
    cuda::rms_norm(matrix(x), nullptr, static_cast<const float*>(weight.data), eps, matrix(out), stream_);
  }

  void add_rms_norm(Activation& x, const Activation& delta, const Activation& weight, float eps,
                    Activation& out) override {
    same_shape(x, delta, "add_rms_norm");
    same_shape(x, out, "add_rms_norm");
    const Matrix d = matrix(delta);
    cuda::rms_norm(matrix(x), &d, static_cast<const float*>(weight.data), eps, matrix(out), stream_);
  }

  void linear(const LinearWeights& weights, const Activation& x, const Activation* bias, Activation& out) override {
    const auto& w = static_cast<const CudaLinear&>(weights);
    if (x.cols != w.cols() || out.cols != w.rows() || x.rows != out.rows) {
      throw std::invalid_argument("[cuda] linear: W " + shape(w.rows(), w.cols()) + ", x " + shape(x.rows, x.cols) +
                                  ", out " + shape(out.rows, out.cols) + " do not fit");
    }
    const float* b = bias != nullptr ? static_cast<const float*>(bias->data) : nullptr;
    if (!w.grouped) return dense_linear(w.dense_weight, matrix(x), b, matrix(out), stream_);
    const GroupedWeight& g = w.grouped_weight;
    auto* prepared = static_cast<uint16_t*>(prepared_.at_least(static_cast<size_t>(x.rows * x.cols) * 2));
    if (x.rows <= 8) {
      auto* multipliers = static_cast<float*>(multipliers_.at_least(static_cast<size_t>(x.rows * g.groups) * 4));
      prepare_activations(matrix(x), static_cast<int>(g.group_size), true, prepared, multipliers, stream_);
      gemv_q4(g, prepared, multipliers, x.rows, b, matrix(out), gemv_warps(config_, g.strips, prop_.multiProcessorCount),
              stream_);
    } else {
      prepare_activations(matrix(x), 32, false, prepared, nullptr, stream_);
      gemm_q4(g, prepared, x.rows, b, matrix(out), config_.gemm_warps, stream_);
    }
  }

  void rope(const RopeTable& table, const AttentionShape& s, int64_t first_position, Activation& q,
            Activation& k) override {
    const auto& r = static_cast<const CudaRopeTable&>(table);
    if (first_position + q.rows > r.positions()) {
      throw std::out_of_range("[cuda] rope: positions up to " + std::to_string(first_position + q.rows) +
                              " exceed the table's " + std::to_string(r.positions()));
    }
    cuda::rope(matrix(q), matrix(k), r.cos(), r.sin(), first_position, static_cast<int>(s.n_heads),
               static_cast<int>(s.n_kv_heads), static_cast<int>(s.head_dim), stream_);
  }

  void store_kv(KVCache& cache, int64_t layer, int64_t first_position, const Activation& k,
                const Activation& v) override {
    auto& c = static_cast<CudaKVCache&>(cache);
    if (first_position + k.rows > c.capacity()) {
      throw std::out_of_range("[cuda] store_kv: positions up to " + std::to_string(first_position + k.rows) +
                              " exceed the cache's " + std::to_string(c.capacity()));
    }
    cuda::store_kv(matrix(k), matrix(v), c.keys(layer), c.values(layer), first_position, stream_);
  }

  void attention(const KVCache& cache, int64_t layer, const AttentionShape& s, int64_t first_position,
                 const Activation& q, Activation& out) override {
    const auto& c = static_cast<const CudaKVCache&>(cache);
    AttentionArguments a;
    a.cache_k = c.keys(layer);
    a.cache_v = c.values(layer);
    a.q = matrix(q);
    a.out = matrix(out);
    a.first_position = first_position;
    a.n_heads = static_cast<int>(s.n_heads);
    a.n_kv_heads = static_cast<int>(s.n_kv_heads);
    a.head_dim = static_cast<int>(s.head_dim);
    a.scale = s.scale;
    a.splits = attention_splits(config_, q.rows * s.n_kv_heads, first_position + q.rows, prop_.multiProcessorCount);
    a.partial = static_cast<float*>(
        partial_.at_least(static_cast<size_t>(q.rows * s.n_heads * a.splits * (s.head_dim + 2)) * 4));
    cuda::attention(a, stream_);
  }

  void silu_mul(const Activation& gate, const Activation& up, Activation& out) override {
    same_shape(gate, up, "silu_mul");
    cuda::silu_mul(matrix(gate), matrix(up), matrix(out), stream_);
  }

  void add(Activation& x, const Activation& y) override {
    same_shape(x, y, "add");
    cuda::add(matrix(x), matrix(y), stream_);
  }

  void read_logits(const Activation& x, float* host) override {
    check(cudaMemcpy2DAsync(host, static_cast<size_t>(x.cols) * 4, x.data, static_cast<size_t>(x.row_stride) * 4,
                            static_cast<size_t>(x.cols) * 4, static_cast<size_t>(x.rows), cudaMemcpyDeviceToHost, stream_),
          "copying logits from the GPU");
    synchronize();
  }

  void synchronize() override { check(cudaStreamSynchronize(stream_), "running the GPU kernels"); }

 private:
  static void same_shape(const Activation& a, const Activation& b, const char* op) {
    if (a.rows != b.rows || a.cols != b.cols) {
      throw std::invalid_argument(std::string("[cuda] ") + op + ": shapes " + shape(a.rows, a.cols) + " and " +
                                  shape(b.rows, b.cols) + " differ");
    }
  }

  cudaDeviceProp prop_{};
  cudaStream_t stream_ = nullptr;
  KernelConfig config_;
  std::string tuning_source_;
  Scratch prepared_{"prepared activations"}, multipliers_{"activation multipliers"}, tokens_{"token ids"},
      partial_{"attention partial sums"};
};

}  // namespace

std::shared_ptr<Backend> create_cuda_backend(const BackendOptions& options) {
  if (options.kernels != "auto") {
    throw std::invalid_argument("[Backend] the CUDA backend has no kernel variants to choose: kernels must be 'auto', got '" +
                                options.kernels + "'");
  }
  std::string reason;
  if (!device_available(&reason)) throw std::runtime_error("[Backend] backend 'cuda' cannot run here: " + reason);
  return std::make_shared<CudaBackend>();
}

}  // namespace awq_edge::cuda
