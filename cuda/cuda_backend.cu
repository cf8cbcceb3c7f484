// cuda_backend.cu: the CUDA implementation of backend.h.
//
// Memory (all on the GPU, nothing read back except logits):
//   activations  fp32 (rows, cols), row stride = cols; views share the allocation
//   weights      q4/q3 grouped: repacked at upload into the fragment layout (q4_layout.h);
//                f16 / q8_row: copied as stored (row-major). The file's host pages of a weight are
//                released after its upload (MappedFile::release), and on an integrated GPU
//                (Jetson), where CPU and GPU share DRAM, dropped from the page cache as well, so
//                that the weights are not held twice. AWQ_EDGE_CUDA_WEIGHTS=host puts them in
//                pinned host memory mapped into the GPU's address space instead (cudaHostAlloc):
//                how fast the kernels read the CPU's memory, which is what reading the file's
//                mapping in place would get (on a Jetson the same DRAM, perhaps as fast).
//   embedding    of an untied model, f16 or q8_row: not on the GPU but left in the file's mapping
//                (host_embedding.h); a step's rows are copied as stored into the step state, sent
//                to the GPU with its token ids. AWQ_EDGE_CUDA_EMBEDDING=gpu uploads it like a weight.
//   KV cache     fp16, per layer K and V of (capacity, nkv*D)
//   rope tables  fp32 cos and sin (capacity, D/2), computed on the host as the CPU backend does
//   scratch      prepared fp16 activations and group multipliers (two slots, see "the q4 kernels'
//                activation operand" below), token ids, attention partials, the counters of the
//                kernels whose last block finishes the work (attention splits, gate/up groups);
//                grown on demand (cudaFree waits for the GPU, so growth is safe mid-stream)
//
// Execution: every operation is enqueued on one stream and returns at once; read_logits and
// synchronize wait. Launch configurations come from tuning.h.
//
// Decode steps as CUDA graphs (Backend::begin_step / end_step): the position-dependent kernels
// read the position, and the embedding the token ids (or the rows, staged on the host), from a
// small device buffer written at the start of each step, so a step's launches do not depend on
// them. A single-token step of a given shape (key: tokens, logit rows, attention splits) runs
// eagerly the first time, is recorded (stream capture) the second time, and is replayed with one
// cudaGraphLaunch from then on. Any scratch buffer that moves invalidates the recordings.
// AWQ_EDGE_CUDA_GRAPHS=0 turns them off.
#include "cuda_backend.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <cuda_runtime.h>

#include "awq_edge/fp16.h"
#include "awq_edge/mapped_file.h"
#include "host_embedding.h"
#include "kernels.h"
#include "launch.h"
#include "q4_layout.h"
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

// "640 KiB", "12.5 MiB", "3.71 GiB": sizes in errors, where a small allocation must not read "0 MiB".
std::string size_text(size_t bytes) {
  char text[32];
  if (bytes < (size_t{1} << 20)) std::snprintf(text, sizeof text, "%zu KiB", (bytes + 1023) >> 10);
  else if (bytes < (size_t{1} << 30)) std::snprintf(text, sizeof text, "%.1f MiB", bytes / 1048576.0);
  else std::snprintf(text, sizeof text, "%.2f GiB", bytes / 1073741824.0);
  return text;
}

// Device memory, zero-filled; an out-of-memory error says how much was asked for, for what, and
// how much the GPU has left.
std::shared_ptr<void> device_zeros(size_t bytes, const std::string& what) {
  void* pointer = nullptr;
  const cudaError_t status = cudaMalloc(&pointer, std::max<size_t>(bytes, 256));
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    throw std::runtime_error("[cuda] out of GPU memory: " + what + " needs " + size_text(bytes) + ", " +
                             size_text(free_bytes) + " of " + size_text(total_bytes) +
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

// Where something the kernels read lives: GPU memory, or host memory that the GPU reads through the
// bus (a discrete GPU) or from the shared DRAM (Jetson).
enum class Memory { Gpu, Host };

// The memory environment variable `name` asks for: "gpu" or "host", `unset` when it is not set or
// empty; anything else is an error that says what each value means (`on_gpu`, `on_host`).
Memory memory_from_environment(const std::string& name, Memory unset, const std::string& on_gpu,
                               const std::string& on_host) {
  const char* text = std::getenv(name.c_str());
  const std::string value = text == nullptr ? "" : text;
  if (value.empty()) return unset;
  if (value == "gpu") return Memory::Gpu;
  if (value == "host") return Memory::Host;
  const std::string gpu = "'gpu' (" + on_gpu + ")", host = "'host' (" + on_host + ")";
  throw std::invalid_argument("[cuda] " + name + "='" + value + "': expected " +
                              (unset == Memory::Gpu ? gpu + " or " + host : host + " or " + gpu));
}

// Where the linear layers' weights live: AWQ_EDGE_CUDA_WEIGHTS, GPU memory by default.
Memory weight_memory() {
  return memory_from_environment("AWQ_EDGE_CUDA_WEIGHTS", Memory::Gpu, "the weights in GPU memory",
                                 "in pinned host memory");
}

// A copy of `bytes` host bytes where `where` says; the pointer is the one kernels read through.
std::shared_ptr<void> weight_copy(const void* host, size_t bytes, const std::string& what, Memory where) {
  if (where == Memory::Gpu) return device_copy(host, bytes, what);
  void* pinned = nullptr;
  const cudaError_t status = cudaHostAlloc(&pinned, std::max<size_t>(bytes, 256), cudaHostAllocMapped);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw std::runtime_error("[cuda] out of pinned host memory: " + what + " needs " + size_text(bytes) +
                             " (AWQ_EDGE_CUDA_WEIGHTS=host; unset it to keep the weights in GPU memory)");
  }
  check(status, "cudaHostAlloc for " + what);
  std::shared_ptr<void> owner(pinned, [](void* p) { cudaFreeHost(p); });
  std::memcpy(pinned, host, bytes);
  void* device = nullptr;
  check(cudaHostGetDevicePointer(&device, pinned, 0), "mapping " + what + " into the GPU's address space");
  return std::shared_ptr<void>(owner, device);  // frees `pinned`, hands out `device`
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
        keys_(device_zeros(static_cast<size_t>(layers * capacity * kv_dim) * 2, cache_part("keys", layers, capacity))),
        values_(device_zeros(static_cast<size_t>(layers * capacity * kv_dim) * 2, cache_part("values", layers, capacity))) {}
  int64_t capacity() const override { return capacity_; }
  static std::string cache_part(const char* part, int64_t layers, int64_t capacity) {
    return "the KV cache's " + std::string(part) + " (" + std::to_string(capacity) + " positions (max_context) x " +
           std::to_string(layers) + " layers)";
  }
  uint16_t* keys(int64_t layer) const { return static_cast<uint16_t*>(keys_.get()) + layer * capacity_ * kv_dim_; }
  uint16_t* values(int64_t layer) const { return static_cast<uint16_t*>(values_.get()) + layer * capacity_ * kv_dim_; }

 private:
  int64_t capacity_, kv_dim_;
  std::shared_ptr<void> keys_, values_;
};

class CudaRopeTable final : public RopeTable {
 public:
  CudaRopeTable(const std::vector<float>& inv_freq, int64_t positions) : positions_(positions) {
    std::vector<float> cos_table, sin_table;
    rope_cos_sin(inv_freq, positions, cos_table, sin_table);
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

// A grow-only device buffer. Growing frees the old memory (cudaFree waits until the GPU no longer
// uses it) and bumps the generation, which tells the backend that recorded steps point at freed
// memory. It must not happen while a step is being recorded (capture_active).
class Scratch {
 public:
  Scratch(std::string what, const bool* capture_active) : what_(std::move(what)), capture_active_(capture_active) {}
  void* at_least(size_t bytes) {
    if (bytes > bytes_) {
      if (*capture_active_) {
        throw std::logic_error("[cuda] " + what_ + " would grow while a step is being recorded");
      }
      memory_.reset();
      memory_ = device_zeros(bytes, what_);
      bytes_ = bytes;
      ++generation_;
    }
    return memory_.get();
  }
  uint64_t generation() const { return generation_; }

 private:
  std::string what_;
  const bool* capture_active_;
  std::shared_ptr<void> memory_;
  size_t bytes_ = 0;
  uint64_t generation_ = 0;
};

// What identifies a recorded step: the same shape issues the same launches.
struct StepKey {
  int64_t tokens, logit_rows;
  int attention_splits;
  bool operator<(const StepKey& o) const {
    return std::tie(tokens, logit_rows, attention_splits) < std::tie(o.tokens, o.logit_rows, o.attention_splits);
  }
};

// Where an untied embedding table lives: AWQ_EDGE_CUDA_EMBEDDING, the file's mapping by default.
bool embedding_on_host() {
  return memory_from_environment("AWQ_EDGE_CUDA_EMBEDDING", Memory::Host, "uploaded like a weight",
                                 "the table stays in the file's mapping") == Memory::Host;
}

class HostEmbedding final : public LinearWeights {
 public:
  explicit HostEmbedding(std::shared_ptr<const cuda_layout::HostEmbeddingTable> rows) : table(std::move(rows)) {}
  int64_t rows() const override { return table->rows(); }
  int64_t cols() const override { return table->cols(); }
  std::shared_ptr<const cuda_layout::HostEmbeddingTable> table;
};

bool graphs_wanted() {
  const char* text = std::getenv("AWQ_EDGE_CUDA_GRAPHS");
  return text == nullptr || std::string(text) != "0";
}

class CudaBackend final : public Backend {
 public:
  CudaBackend() : weight_memory_(weight_memory()) {
    check(cudaSetDevice(0), "selecting GPU 0");
    check(cudaGetDeviceProperties(&prop_, 0), "querying GPU 0");
    // A blocking stream: it is ordered with the legacy default stream, on which the uploads'
    // cudaMemcpy and the allocations' cudaMemset run (both may return before they finish).
    check(cudaStreamCreate(&stream_), "creating a CUDA stream");
    config_ = tuned_config(prop_.major, prop_.minor, prop_.multiProcessorCount, &tuning_source_);
    programmatic_launch_ = config_.programmatic_launch && prop_.major >= 9;
    set_programmatic_launch(stream_, programmatic_launch_);
  }
  ~CudaBackend() override {
    abandon_capture();
    cudaStreamSynchronize(stream_);
    clear_graphs();
    set_programmatic_launch(stream_, false);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda"; }
  std::string description() const override {
    return std::string("cuda (") + prop_.name + ", sm_" + std::to_string(prop_.major) + std::to_string(prop_.minor) +
           ", " + std::to_string(prop_.multiProcessorCount) + " SMs, " + mib(prop_.totalGlobalMem) +
           (prop_.integrated ? " shared with the CPU" : "") +
           (weight_memory_ == Memory::Host ? ", weights in pinned host memory (AWQ_EDGE_CUDA_WEIGHTS=host)" : "") +
           (graphs_enabled_ ? ", decode steps replayed as CUDA graphs" : ", CUDA graphs off") +
           (programmatic_launch_ ? ", programmatic dependent launches"
            : config_.programmatic_launch ? ", programmatic_launch ignored (needs compute capability 9.0+)" : "") +
           "; tuning: " + tuning_source_ + ")";
  }

  Activation allocate(int64_t rows, int64_t cols) override {
    forget_prepared();  // the new memory may be where a recorded activation was
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
      cuda_layout::PackedGroupedWeight& packed = packing_;  // reused module after module
      cuda_layout::pack_grouped_weight(module.scheme, linear->rows_, linear->cols_, tensors, packed);
      auto words = weight_copy(packed.words.data(), packed.words.size() * 4, what, weight_memory_);
      auto scales = weight_copy(packed.scales.data(), packed.scales.size() * 2, what + " scales", weight_memory_);
      auto zeros = weight_copy(packed.zeros.data(), packed.zeros.size(), what + " zero points", weight_memory_);
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
      w.fp16_accumulation_safe = cuda_layout::fp16_accumulation_safe(packed.largest_scale, packed.group_size);
      const int group_size = static_cast<int>(packed.group_size);
      q4_group_size_ = q4_group_size_ < 0 || q4_group_size_ == group_size ? group_size : 0;
      linear->grouped = true;
      linear->memory = {words, scales, zeros};
    } else {
      const bool int8 = module.scheme.kind == Scheme::Kind::Q8Row;
      const size_t expected = static_cast<size_t>(linear->rows_ * linear->cols_) * (int8 ? 1 : 2);
      if (tensors.empty() || tensors[0].size != expected || (int8 && (tensors.size() != 2 || tensors[1].size != module.rows * 2))) {
        throw std::invalid_argument("[cuda] " + what + ": tensor sizes do not match " + shape(linear->rows_, linear->cols_));
      }
      auto values = weight_copy(tensors[0].data, tensors[0].size, what, weight_memory_);
      linear->memory = {values};
      DenseWeight& w = linear->dense_weight;
      w.values = values.get();
      w.int8 = int8;
      w.rows = linear->rows_;
      w.cols = linear->cols_;
      if (int8) {
        auto scales = weight_copy(tensors[1].data, tensors[1].size, what + " scales", weight_memory_);
        w.row_scales = static_cast<const uint16_t*>(scales.get());
        linear->memory.push_back(scales);
      }
    }
    // the file's pages of this module are not needed again (on Jetson: not held twice in the shared DRAM)
    const auto cache = prop_.integrated ? MappedFile::PageCache::Drop : MappedFile::PageCache::Keep;
    for (const TensorView& tensor : tensors) {
      if (tensor.mapping != nullptr) tensor.mapping->release(tensor.data, tensor.size, cache);
    }
    return linear;
  }

  // An f16 or q8_row table stays in the mapping (nothing uploaded, nothing released): embed() reads
  // a step's rows from there. A q4/q3 table (not what the exporter writes) is uploaded.
  std::unique_ptr<LinearWeights> upload_embedding(const Module& module, const std::vector<TensorView>& tensors) override {
    if (!embedding_on_host() || !cuda_layout::HostEmbeddingTable::supports(module.scheme)) {
      return upload_linear(module, tensors);
    }
    return std::make_unique<HostEmbedding>(std::make_shared<const cuda_layout::HostEmbeddingTable>(
        module.scheme, static_cast<int64_t>(module.rows), static_cast<int64_t>(module.cols), tensors));
  }

  // On an integrated GPU the whole file leaves the page cache once everything is on the GPU: the
  // per-tensor releases in upload_linear cannot drop a cached folio (Linux may cache a file in
  // folios larger than a page) that a tensor covers only partly or that a norm's upload touched.
  // The packing buffer is freed too.
  void uploads_finished(const MappedFile& mapping) override {
    packing_ = cuda_layout::PackedGroupedWeight();
    if (prop_.integrated) mapping.release(mapping.data(), mapping.size(), MappedFile::PageCache::Drop);
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
    if (const auto* host = dynamic_cast<const HostEmbedding*>(&table)) return embed_from_host(*host, tokens, n, out);
    const int32_t* device_tokens = step_tokens_;  // written by begin_step
    if (!in_step_ || n != step_tokens_count_) {
      auto* copy = static_cast<int32_t*>(tokens_.at_least(static_cast<size_t>(n) * 4));
      // from pageable memory: returns once the ids are staged, so `tokens` may go away after it
      check(cudaMemcpyAsync(copy, tokens, static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice, stream_),
            "copying token ids to the GPU");
      device_tokens = copy;
    }
    const auto& t = static_cast<const CudaLinear&>(table);
    wrote(out);
    const Matrix o = matrix(out.rows_view(0, n));
    if (t.grouped) embed_grouped(t.grouped_weight, device_tokens, o, stream_);
    else embed_dense(t.dense_weight, device_tokens, o, stream_);
  }

  void rms_norm(const Activation& x, const Activation& weight, float eps, Activation& out) override {
    same_shape(x, out, "rms_norm");
    wrote(out);
    const PreparedOutput prepared = prepares(out, slot_);
    cuda::rms_norm(matrix(x), nullptr, static_cast<const float*>(weight.data), eps, matrix(out), stream_,
                   prepared.data != nullptr ? &prepared : nullptr);
  }

  void add_rms_norm(Activation& x, const Activation& delta, const Activation& weight, float eps,
                    Activation& out) override {
    same_shape(x, delta, "add_rms_norm");
    same_shape(x, out, "add_rms_norm");
    const Matrix d = matrix(delta);
    wrote(x);
    wrote(out);
    const PreparedOutput prepared = prepares(out, slot_);
    cuda::rms_norm(matrix(x), &d, static_cast<const float*>(weight.data), eps, matrix(out), stream_,
                   prepared.data != nullptr ? &prepared : nullptr);
  }

  void linear(const LinearWeights& weights, const Activation& x, const Activation* bias, Activation& out) override {
    const auto& w = static_cast<const CudaLinear&>(weights);
    if (x.cols != w.cols() || out.cols != w.rows() || x.rows != out.rows) {
      throw std::invalid_argument("[cuda] linear: W " + shape(w.rows(), w.cols()) + ", x " + shape(x.rows, x.cols) +
                                  ", out " + shape(out.rows, out.cols) + " do not fit");
    }
    const float* b = bias != nullptr ? static_cast<const float*>(bias->data) : nullptr;
    wrote(out);
    if (!w.grouped) return dense_linear(w.dense_weight, matrix(x), b, matrix(out), stream_);
    const GroupedWeight& g = w.grouped_weight;
    if (x.rows <= 8) {
      const PreparedOperand operand = decode_operand(x, static_cast<int>(g.group_size));
      gemv_q4(g, operand.prepared, operand.multipliers, x.rows, b, matrix(out),
              gemv_warps(config_, g.strips, prop_.multiProcessorCount), stream_);
    } else {
      gemm_prepared(g, prefill_operand(x, fp16_accumulation_group({&g})), x.rows, b, out);
    }
  }

  // One preparation of x for the three products, and for decode one launch (gemv_q4_outputs); q4
  // weights of one group size only, anything else takes the unfused default.
  void attention_projections(const LinearWeights& q_w, const LinearWeights& k_w, const LinearWeights& v_w,
                             const Activation* q_bias, const Activation* k_bias, const Activation* v_bias,
                             const Activation& x, Activation& q, Activation& k, Activation& v) override {
    const CudaLinear* weights[3] = {&static_cast<const CudaLinear&>(q_w), &static_cast<const CudaLinear&>(k_w),
                                    &static_cast<const CudaLinear&>(v_w)};
    const Activation* biases[3] = {q_bias, k_bias, v_bias};
    Activation* outs[3] = {&q, &k, &v};
    bool fusable = true;
    for (int i = 0; i < 3; ++i) {
      const CudaLinear& w = *weights[i];
      fusable = fusable && w.grouped && w.grouped_weight.group_size == weights[0]->grouped_weight.group_size &&
                x.cols == w.cols() && outs[i]->cols == w.rows() && outs[i]->rows == x.rows;
    }
    if (!fusable) return Backend::attention_projections(q_w, k_w, v_w, q_bias, k_bias, v_bias, x, q, k, v);
    const auto bias_data = [](const Activation* bias) {
      return bias != nullptr ? static_cast<const float*>(bias->data) : nullptr;
    };
    for (int i = 0; i < 3; ++i) wrote(*outs[i]);
    if (x.rows > 8) {
      const PreparedOperand operand = prefill_operand(x, fp16_accumulation_group({&weights[0]->grouped_weight,
          &weights[1]->grouped_weight, &weights[2]->grouped_weight}));
      for (int i = 0; i < 3; ++i) gemm_prepared(weights[i]->grouped_weight, operand, x.rows, bias_data(biases[i]), *outs[i]);
      return;
    }
    const PreparedOperand operand = decode_operand(x, static_cast<int>(weights[0]->grouped_weight.group_size));
    GemvOutputs outputs;
    int64_t strips = 0;
    for (int i = 0; i < 3; ++i) {
      outputs.output[i] = GemvOutput{weights[i]->grouped_weight, bias_data(biases[i]), static_cast<float*>(outs[i]->data),
                                     outs[i]->row_stride};
      strips += weights[i]->grouped_weight.strips;
    }
    outputs.count = 3;
    gemv_q4_outputs(outputs, operand.prepared, operand.multipliers, x.rows,
                    gemv_warps(config_, strips, prop_.multiProcessorCount), stream_);
  }

  void rope(const RopeTable& table, const AttentionShape& s, int64_t first_position, Activation& q,
            Activation& k) override {
    const auto& r = static_cast<const CudaRopeTable&>(table);
    if (first_position + q.rows > r.positions()) {
      throw std::out_of_range("[cuda] rope: positions up to " + std::to_string(first_position + q.rows) +
                              " exceed the table's " + std::to_string(r.positions()));
    }
    wrote(q);
    wrote(k);
    cuda::rope(matrix(q), matrix(k), r.cos(), r.sin(), position_on_device(first_position), static_cast<int>(s.n_heads),
               static_cast<int>(s.n_kv_heads), static_cast<int>(s.head_dim), stream_);
  }

  void store_kv(KVCache& cache, int64_t layer, int64_t first_position, const Activation& k,
                const Activation& v) override {
    auto& c = static_cast<CudaKVCache&>(cache);
    if (first_position + k.rows > c.capacity()) {
      throw std::out_of_range("[cuda] store_kv: positions up to " + std::to_string(first_position + k.rows) +
                              " exceed the cache's " + std::to_string(c.capacity()));
    }
    cuda::store_kv(matrix(k), matrix(v), c.keys(layer), c.values(layer), position_on_device(first_position), stream_);
  }

  void attention(const KVCache& cache, int64_t layer, const AttentionShape& s, int64_t first_position,
                 const Activation& q, Activation& out) override {
    wrote(out);
    run_attention(static_cast<const CudaKVCache&>(cache), layer, s, first_position, q, out, nullptr, nullptr, nullptr);
  }

  // rope fused: k is rotated on its way into the cache and q as attention reads it (no in-place
  // rotation pass, one launch fewer).
  void rotary_attention(const RopeTable& table, KVCache& cache, int64_t layer, const AttentionShape& s,
                        int64_t first_position, Activation& q, Activation& k, const Activation& v,
                        Activation& out) override {
    const auto& r = static_cast<const CudaRopeTable&>(table);
    auto& c = static_cast<CudaKVCache&>(cache);
    if (first_position + q.rows > std::min(r.positions(), c.capacity())) {
      throw std::out_of_range("[cuda] rotary_attention: positions up to " + std::to_string(first_position + q.rows) +
                              " exceed the rope table's " + std::to_string(r.positions()) + " or the cache's " +
                              std::to_string(c.capacity()));
    }
    wrote(out);
    const Matrix new_k = matrix(k), new_v = matrix(v);  // stored into the cache by the attention kernel
    run_attention(c, layer, s, first_position, q, out, &r, &new_k, &new_v);
  }

  // out (n, I) = silu(gate) * up in one launch for decode (<= 8 tokens) of grouped weights of one
  // shape; anything else takes the composite of the base class.
  void gated_mlp(const LinearWeights& gate_w, const LinearWeights& up_w, const Activation* gate_bias,
                 const Activation* up_bias, const Activation& x, Activation& gate, Activation& up,
                 Activation& out) override {
    const auto& g = static_cast<const CudaLinear&>(gate_w);
    const auto& u = static_cast<const CudaLinear&>(up_w);
    const bool fusable = g.grouped && u.grouped && x.rows <= 8 && g.rows() == u.rows() && g.cols() == u.cols() &&
                         g.grouped_weight.group_size == u.grouped_weight.group_size && x.cols == g.cols() &&
                         out.rows == x.rows && out.cols == g.rows();
    if (!fusable) return Backend::gated_mlp(gate_w, up_w, gate_bias, up_bias, x, gate, up, out);
    const GroupedWeight& gw = g.grouped_weight;
    wrote(out);
    const PreparedOperand operand = decode_operand(x, static_cast<int>(gw.group_size));
    // the down projection's operand too, into the other slot: this launch reads x's from the current
    const PreparedOutput prepared_y = prepares(out, 1 - slot_);
    unsigned* counters = prepared_y.data == nullptr ? nullptr
        : static_cast<unsigned*>(group_counters_.at_least(static_cast<size_t>(out.cols / prepared_y.group_size) * 4));
    gemv_q4_gated(gw, u.grouped_weight, operand.prepared, operand.multipliers, x.rows,
                  gate_bias != nullptr ? static_cast<const float*>(gate_bias->data) : nullptr,
                  up_bias != nullptr ? static_cast<const float*>(up_bias->data) : nullptr, matrix(out),
                  gemv_warps(config_, gw.strips, prop_.multiProcessorCount), stream_,
                  prepared_y.data != nullptr ? &prepared_y : nullptr, counters);
  }

  void silu_mul(const Activation& gate, const Activation& up, Activation& out) override {
    same_shape(gate, up, "silu_mul");
    wrote(out);
    cuda::silu_mul(matrix(gate), matrix(up), matrix(out), stream_);
  }

  void add(Activation& x, const Activation& y) override {
    same_shape(x, y, "add");
    wrote(x);
    cuda::add(matrix(x), matrix(y), stream_);
  }

  bool begin_step(const int32_t* tokens, int64_t n, int64_t first_position, int64_t logit_rows) override {
    abandon_capture();  // a previous step that failed half way
    forget_prepared();  // a step's choices must not depend on the one before: a recording replays them
    slot_ = 0;
    write_step_state(tokens, n, first_position);
    in_step_ = true;
    if (!graphs_enabled_ || n != 1 || kv_heads_ == 0) return false;  // kv_heads_: known after one eager step
    if (scratch_generation() != graphs_generation_) {  // scratch moved: recordings point at freed memory
      clear_graphs();
      graphs_generation_ = scratch_generation();
    }
    const StepKey key{n, logit_rows, attention_splits(config_, n * kv_heads_, first_position + n, prop_.multiProcessorCount)};
    if (const auto found = graphs_.find(key); found != graphs_.end()) {
      replay_ = found->second;
      return true;
    }
    if (seen_.count(key) == 0) {  // first time: run it eagerly, so that every scratch buffer reaches its size
      seen_.insert(key);
      return false;
    }
    check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "starting to record a decode step");
    capturing_ = true;
    capture_key_ = key;
    return false;
  }

  void end_step() override {
    in_step_ = false;
    if (replay_ != nullptr) {
      const cudaGraphExec_t graph = replay_;
      replay_ = nullptr;
      check(cudaGraphLaunch(graph, stream_), "replaying a recorded decode step");
      return;
    }
    if (!capturing_) return;
    capturing_ = false;
    cudaGraph_t graph = nullptr;
    check(cudaStreamEndCapture(stream_, &graph), "recording a decode step");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check(status, "instantiating a recorded decode step");
    graphs_[capture_key_] = exec;
    check(cudaGraphLaunch(exec, stream_), "running a recorded decode step");  // recording did not run it
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

  // ------------------------------------------------------------ the q4 kernels' activation operand
  // Two scratch slots (prepared fp16 and multipliers each) hold prepared (scaled) activations; the
  // current slot holds the prepared form of at most one activation, recorded in prepared_source_.
  // It is written by a linear layer that prepared its input, or by the kernel that produced the
  // activation, for the group size of every q4 weight when they share one (q4_group_size_): the
  // RMSNorm (rms_norm, add_rms_norm), the attention (run_attention) and the MLP's gate/up kernel
  // (gated_mlp), which reads its own input's prepared form from the current slot and so writes
  // its output's to the other one, which then becomes current. A linear layer whose input is the
  // recorded activation uses it as it is: q, k, v and gate, up read what the norm before them
  // prepared, o what the attention prepared, down what gate/up prepared, with no preparation
  // kernel of their own. Every operation forgets the record when it writes memory that overlaps
  // the recorded activation (wrote), and every step starts without one in slot 0, so that a
  // recorded step (CUDA graph) makes the same choices as an eager one.
  struct PreparedSource {
    const void* data = nullptr;
    int64_t rows = 0, cols = 0, row_stride = 0;
    int group_size = 0;
  };
  struct PreparedOperand {
    uint16_t* prepared;
    float* multipliers;
  };

  void forget_prepared() { prepared_source_ = PreparedSource{}; }

  static const char* end_of(const Activation& a) {
    return static_cast<const char*>(a.data) + ((a.rows - 1) * a.row_stride + a.cols) * 4;
  }

  void wrote(const Activation& a) {
    if (prepared_source_.data == nullptr || a.rows < 1) return;
    const char* begin = static_cast<const char*>(prepared_source_.data);
    const char* end = begin + ((prepared_source_.rows - 1) * prepared_source_.row_stride + prepared_source_.cols) * 4;
    if (static_cast<const char*>(a.data) < end && begin < end_of(a)) forget_prepared();
  }

  void record_prepared(const Activation& x, int group_size) {
    prepared_source_ = PreparedSource{x.data, x.rows, x.cols, x.row_stride, group_size};
  }

  // Slot `slot`'s buffers, large enough for (rows, cols) with group_size.
  PreparedOperand slot_operand(int slot, int64_t rows, int64_t cols, int group_size) {
    return PreparedOperand{
        static_cast<uint16_t*>(prepared_[slot].at_least(static_cast<size_t>(rows * cols) * 2)),
        static_cast<float*>(multipliers_[slot].at_least(static_cast<size_t>(rows * (cols / group_size)) * 4))};
  }

  // x (<= 8 rows) prepared for the decode kernels with group_size: as recorded, or prepared now.
  PreparedOperand decode_operand(const Activation& x, int group_size) {
    const PreparedSource& p = prepared_source_;
    const PreparedOperand operand = slot_operand(slot_, x.rows, x.cols, group_size);
    if (p.data == x.data && p.rows == x.rows && p.cols == x.cols && p.row_stride == x.row_stride &&
        p.group_size == group_size) {
      return operand;
    }
    prepare_activations(matrix(x), group_size, true, operand.prepared, operand.multipliers, stream_);
    record_prepared(x, group_size);
    return operand;
  }

  // The group size for which the prefill kernels read x scaled and sum in fp16 (the tuning asks for
  // fp16 accumulation and every weight's scales allow it; the weights share a group size), else 0.
  int fp16_accumulation_group(std::initializer_list<const GroupedWeight*> weights) const {
    if (!config_.gemm_fp16_accumulate) return 0;
    for (const GroupedWeight* w : weights) {
      if (!w->fp16_accumulation_safe) return 0;
    }
    return static_cast<int>((*weights.begin())->group_size);
  }

  // x (> 8 rows) prepared for the prefill kernels (overwrites whatever was recorded): scaled for
  // group_size with multipliers (fp16 accumulation), or unscaled without (group_size 0).
  PreparedOperand prefill_operand(const Activation& x, int group_size) {
    forget_prepared();
    if (group_size > 0) {
      const PreparedOperand operand = slot_operand(slot_, x.rows, x.cols, group_size);
      prepare_activations(matrix(x), group_size, true, operand.prepared, operand.multipliers, stream_);
      return operand;
    }
    auto* prepared = static_cast<uint16_t*>(prepared_[slot_].at_least(static_cast<size_t>(x.rows * x.cols) * 2));
    prepare_activations(matrix(x), 32, false, prepared, nullptr, stream_);
    return PreparedOperand{prepared, nullptr};
  }

  // Where a kernel writing `out` (<= 8 rows) also writes out's prepared form, in slot `slot`
  // (recorded as if launched, and that slot made current), or nothing: prefill, no q4 weights, q4
  // weights of several group sizes, or `divides` (the kernel's own condition on the group size)
  // false.
  PreparedOutput prepares(const Activation& out, int slot, bool divides = true) {
    const int g = q4_group_size_;
    if (g <= 0 || out.rows > 8 || out.cols % g != 0 || !divides) return PreparedOutput{};
    const PreparedOperand operand = slot_operand(slot, out.rows, out.cols, g);
    slot_ = slot;
    record_prepared(out, g);
    return PreparedOutput{operand.prepared, operand.multipliers, g};
  }

  // out = x W^T + bias for m > 8 tokens of x as prefill_operand prepared it: the x-staged or the
  // split-K kernel.
  void gemm_prepared(const GroupedWeight& g, const PreparedOperand& x, int64_t m, const float* bias, Activation& out) {
    const int strips = gemm_strips_per_block(config_, g.strips, m, prop_.multiProcessorCount);
    if (strips > 1) gemm_q4_staged(g, x.prepared, x.multipliers, m, bias, matrix(out), strips, stream_);
    else gemm_q4(g, x.prepared, x.multipliers, m, bias, matrix(out), config_.gemm_warps, stream_);
  }

  // With rope: q rotated as the kernel reads it. With new_k, new_v: the kernel stores them into the
  // cache at first_position (k rotated) and reads this call's positions from them.
  void run_attention(const CudaKVCache& c, int64_t layer, const AttentionShape& s, int64_t first_position,
                     const Activation& q, Activation& out, const CudaRopeTable* rope, const Matrix* new_k,
                     const Matrix* new_v) {
    AttentionArguments a;
    a.cache_k = c.keys(layer);
    a.cache_v = c.values(layer);
    a.q = matrix(q);
    a.out = matrix(out);
    a.first_position = position_on_device(first_position);
    a.n_heads = static_cast<int>(s.n_heads);
    a.n_kv_heads = static_cast<int>(s.n_kv_heads);
    a.head_dim = static_cast<int>(s.head_dim);
    a.scale = s.scale;
    kv_heads_ = s.n_kv_heads;
    a.splits = attention_splits(config_, q.rows * s.n_kv_heads, first_position + q.rows, prop_.multiProcessorCount);
    if (a.splits > 1) {
      a.partial = static_cast<float*>(
          partial_.at_least(static_cast<size_t>(q.rows * s.n_heads * a.splits * (s.head_dim + 2)) * 4));
      const int64_t counters = attention_split_counters(q.rows, a.n_heads, a.n_kv_heads);
      a.split_counters = static_cast<unsigned*>(split_counters_.at_least(static_cast<size_t>(counters) * 4));
    }
    if (new_k != nullptr) {
      a.new_k = *new_k;
      a.new_v = *new_v;
    }
    // the o projection's operand too, when the group size divides the head (see prepare_output_rows)
    a.prepared_out = prepares(out, slot_, s.head_dim % 32 == 0 && q4_group_size_ > 0 && s.head_dim % q4_group_size_ == 0);
    if (rope != nullptr) {
      a.rope_cos = rope->cos();
      a.rope_sin = rope->sin();
    }
    cuda::attention(a, stream_);
  }

  // The rows of a table left on the host, from the step state when begin_step staged them (what a
  // recorded step replays reads them there), else staged now; then the ordinary embedding kernel
  // with the staged rows as its table and row i for token i.
  void embed_from_host(const HostEmbedding& table, const int32_t* tokens, int64_t n, Activation& out) {
    const cuda_layout::HostEmbeddingTable& host = *table.table;
    if (out.rows < n || out.cols != host.cols()) {
      throw std::invalid_argument("[cuda] embed: " + std::to_string(n) + " rows of a table " +
                                  shape(host.rows(), host.cols()) + " do not fit out " + shape(out.rows, out.cols));
    }
    step_embedding_ = table.table;  // the next steps stage their rows of it in begin_step
    const auto* state = reinterpret_cast<const uint8_t*>(device_position_);  // the step state begins with it
    if (!in_step_ || n != step_tokens_count_ || step_rows_table_ != &host) {
      if (capturing_) {  // a copy from host memory cannot be recorded; the decoder never gets here
        throw std::logic_error("[cuda] embed: a step being recorded reads a table whose rows begin_step did not stage");
      }
      const std::vector<uint8_t> staged = step_state(tokens, n, 0, &host);
      auto* device = static_cast<uint8_t*>(tokens_.at_least(staged.size()));
      check(cudaMemcpyAsync(device, staged.data(), staged.size(), cudaMemcpyHostToDevice, stream_),
            "copying embedding rows to the GPU");
      state = device;
    }
    const uint8_t* rows = state + staged_rows_offset(n);
    DenseWeight staged_table;
    staged_table.values = rows;
    staged_table.int8 = host.int8();
    staged_table.row_scales = host.int8() ? reinterpret_cast<const uint16_t*>(rows + host.scales_offset(n)) : nullptr;
    staged_table.rows = n;
    staged_table.cols = host.cols();
    wrote(out);
    embed_dense(staged_table, reinterpret_cast<const int32_t*>(state + row_indices_offset(n)), matrix(out.rows_view(0, n)),
                stream_);
  }

  // The step state: the first position (int64), the step's token ids (int32) and, when the last
  // embed() read a table on the host, the row indices 0..n-1 (int32) and the tokens' rows of the
  // table as host_embedding.h stages them, from staged_rows_offset(n).
  static size_t row_indices_offset(int64_t n) { return 8 + static_cast<size_t>(n) * 4; }
  static size_t staged_rows_offset(int64_t n) { return (row_indices_offset(n) + static_cast<size_t>(n) * 4 + 15) / 16 * 16; }
  static std::vector<uint8_t> step_state(const int32_t* tokens, int64_t n, int64_t first_position,
                                         const cuda_layout::HostEmbeddingTable* table) {
    std::vector<uint8_t> host(table != nullptr ? staged_rows_offset(n) + table->staged_bytes(n) : row_indices_offset(n));
    std::memcpy(host.data(), &first_position, 8);
    if (n > 0) std::memcpy(host.data() + 8, tokens, static_cast<size_t>(n) * 4);
    if (table != nullptr) {
      auto* row_indices = reinterpret_cast<int32_t*>(host.data() + row_indices_offset(n));
      for (int64_t i = 0; i < n; ++i) row_indices[i] = static_cast<int32_t>(i);
      table->gather(tokens, n, host.data() + staged_rows_offset(n));
    }
    return host;
  }

  // Writes the step state to the GPU, copied from pageable memory (staged by the driver before the
  // call returns, so nothing to keep alive).
  void write_step_state(const int32_t* tokens, int64_t n, int64_t first_position) {
    const auto table = n > 0 && tokens != nullptr ? step_embedding_.lock() : nullptr;
    const std::vector<uint8_t> host = step_state(tokens, n, first_position, table.get());
    auto* device = static_cast<uint8_t*>(step_.at_least(std::max<size_t>(host.size(), 8 + 128 * 4)));
    check(cudaMemcpyAsync(device, host.data(), host.size(), cudaMemcpyHostToDevice, stream_),
          table ? "copying the step's position, token ids and embedding rows to the GPU"
                : "copying the step's position and token ids to the GPU");
    step_position_ = first_position;
    step_tokens_count_ = n;
    step_tokens_ = reinterpret_cast<const int32_t*>(device + 8);
    device_position_ = reinterpret_cast<const int64_t*>(device);
    step_rows_table_ = table.get();
  }

  // The position as the kernels read it: the step's (recorded steps replay at any position), or
  // written now for an operation called outside begin_step / end_step.
  const int64_t* position_on_device(int64_t first_position) {
    if (!in_step_) write_step_state(nullptr, 0, first_position);
    else if (first_position != step_position_) {
      throw std::logic_error("[cuda] an operation at position " + std::to_string(first_position) +
                             " inside a step that began at " + std::to_string(step_position_));
    }
    return device_position_;
  }

  uint64_t scratch_generation() const {
    return prepared_[0].generation() + multipliers_[0].generation() + prepared_[1].generation() +
           multipliers_[1].generation() + tokens_.generation() + partial_.generation() + split_counters_.generation() +
           group_counters_.generation() + step_.generation();
  }

  void clear_graphs() {
    for (auto& entry : graphs_) cudaGraphExecDestroy(entry.second);
    graphs_.clear();
    seen_.clear();
  }

  // Ends a recording that a failed step left open, throwing the recording away.
  void abandon_capture() {
    if (!capturing_) return;
    capturing_ = false;
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(stream_, &graph);
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
  }

  cudaDeviceProp prop_{};
  cudaStream_t stream_ = nullptr;
  KernelConfig config_;
  bool programmatic_launch_ = false;  // config_.programmatic_launch on a GPU that has it
  std::string tuning_source_;
  bool capturing_ = false;  // a step is being recorded (before the scratch buffers, which watch it)
  Scratch prepared_[2] = {{"prepared activations", &capturing_}, {"prepared activations", &capturing_}};
  Scratch multipliers_[2] = {{"activation multipliers", &capturing_}, {"activation multipliers", &capturing_}};
  Scratch tokens_{"token ids", &capturing_}, partial_{"attention partial sums", &capturing_},
      split_counters_{"attention split counters", &capturing_},
      group_counters_{"gate/up group counters", &capturing_}, step_{"step state", &capturing_};
  // the current step
  bool in_step_ = false;
  int64_t step_position_ = 0, step_tokens_count_ = 0;
  const int32_t* step_tokens_ = nullptr;
  const int64_t* device_position_ = nullptr;
  std::weak_ptr<const cuda_layout::HostEmbeddingTable> step_embedding_;  // the table the last embed() read on the host
  const cuda_layout::HostEmbeddingTable* step_rows_table_ = nullptr;     // whose rows the step state holds
  int64_t kv_heads_ = 0;  // from the first attention call; decides the attention splits of a step
  PreparedSource prepared_source_;  // whose prepared form slot slot_ holds
  int slot_ = 0;
  int q4_group_size_ = -1;        // the q4 weights' group size (-1: none yet, 0: several differ)
  const Memory weight_memory_;                // AWQ_EDGE_CUDA_WEIGHTS, read once
  cuda_layout::PackedGroupedWeight packing_;  // host buffer of upload_linear's repacking, freed in uploads_finished
  // recorded decode steps (CUDA graphs)
  bool graphs_enabled_ = graphs_wanted();
  std::map<StepKey, cudaGraphExec_t> graphs_;
  std::set<StepKey> seen_;
  StepKey capture_key_{};
  cudaGraphExec_t replay_ = nullptr;
  uint64_t graphs_generation_ = 0;
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
