// backend.h: the operations the decoder (model.h) needs from a compute backend, and nothing else.
//
// The decoder is written once against this interface; a backend (cpp/backends/cpu, cuda/,
// neon/, metal/) implements it for its hardware:
//   - memory: activations, the KV cache and weights live in the backend's memory (host RAM,
//     device memory); the decoder holds them as opaque handles and never reads their bytes.
//   - weights: upload_linear() turns a module's file tensors into the backend's own layout
//     (repacked, or used in place from the memory mapping when the kernels can read it);
//     upload_embedding() does the same for an embedding table that only embed() reads.
//   - execution may be asynchronous: operations are issued in order and only read_logits()
//     (and synchronize()) wait for them.
//   - fusion: the composite operations near the end (add_rms_norm, gated_mlp, ...) have default
//     implementations built from the primitives; a backend overrides them when it has a fused
//     kernel that saves memory traffic.
//
// Shapes: n tokens per call (1 when decoding, up to the prefill chunk size), H hidden size,
// D head dimension, nh / nkv query / key-value heads, I intermediate size, V vocabulary.
// An activation is a row-major (rows, cols) matrix, one row per token.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "awq_edge/schemes.h"
#include "awq_edge/tensor.h"

namespace awq_edge {

// A (rows, cols) matrix in a backend's memory and element type (fp32 on the CPU backend).
// Copies share the storage; row views (rows_view) too.
struct Activation {
  std::shared_ptr<void> storage;  // owns the memory; the backend's deleter frees it
  void* data = nullptr;           // first element of row 0
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;         // elements from one row to the next (>= cols)
  int64_t element_size = 0;       // bytes per element (4 for fp32, 2 for fp16)

  // Rows [first, first + count) of this matrix, sharing its storage.
  Activation rows_view(int64_t first, int64_t count) const;
};

// A weight matrix W (N, K) in a backend's layout; y = x W^T.
class LinearWeights {
 public:
  virtual ~LinearWeights() = default;
  virtual int64_t rows() const = 0;  // N, output features
  virtual int64_t cols() const = 0;  // K, input features
};

// The keys and values of every layer for positions [0, capacity), in a backend's layout.
class KVCache {
 public:
  virtual ~KVCache() = default;
  virtual int64_t capacity() const = 0;  // positions
};

// Rotary embedding tables, prepared once by the backend from the inverse frequencies.
class RopeTable {
 public:
  virtual ~RopeTable() = default;
};

struct AttentionShape {
  int64_t n_heads = 0;     // nh
  int64_t n_kv_heads = 0;  // nkv; nh % nkv == 0 (grouped-query attention)
  int64_t head_dim = 0;    // D, even
  float scale = 1.0f;      // applied to q.k, 1 / sqrt(D)
};

// cos and sin of p * inv_freq[i] for positions p in [0, positions), each (positions, D/2) row-major, in
// float32 as transformers computes them: the tables prepare_rope implementations keep.
void rope_cos_sin(const std::vector<float>& inv_freq, int64_t positions, std::vector<float>& cos,
                  std::vector<float>& sin);

class Backend {
 public:
  virtual ~Backend() = default;

  // "cpu", "cuda", ...
  virtual std::string name() const = 0;
  // Human-readable details for logs and benchmarks: "cpu (avx2, 2 threads)".
  virtual std::string description() const = 0;

  // ---------------------------------------------------------------------------- memory, weights
  // A zero-filled (rows, cols) activation.
  virtual Activation allocate(int64_t rows, int64_t cols) = 0;
  // A weight matrix. tensors: the module's file tensors in FORMAT.md order ({weight} for f16,
  // {qweight, scales} for q8_row, {qweight, scales, zeros} for grouped schemes), views into the
  // memory mapping, which outlives the returned object (the backend may keep the views).
  virtual std::unique_ptr<LinearWeights> upload_linear(const Module& module,
                                                       const std::vector<TensorView>& tensors) = 0;
  // The embedding table of a model whose LM head has its own weight, so that embed() is its only
  // use: one row per token. The default is upload_linear. A GPU backend may leave the table in the
  // memory mapping and copy only the rows a step needs (the CUDA backend does: LLaMA-3-8B's fp16
  // table would take 1 GiB of GPU memory for 8 KiB read per token).
  virtual std::unique_ptr<LinearWeights> upload_embedding(const Module& module,
                                                          const std::vector<TensorView>& tensors);
  // A vector (norm weights, biases) from an F16 or F32 tensor, as a (1, n) activation.
  virtual Activation upload_vector(const TensorView& tensor) = 0;
  // Called once after the model's last upload, with the mapping the tensors came from. A backend
  // that holds its own copy of every tensor where that copy shares DRAM with the file's cached
  // pages (CUDA on Jetson) may release the whole mapping here (MappedFile::release with
  // PageCache::Drop); nothing breaks if the file is read again later. The default does nothing.
  virtual void uploads_finished(const MappedFile& mapping);
  virtual std::unique_ptr<KVCache> allocate_kv_cache(int64_t n_layers, int64_t capacity,
                                                     int64_t n_kv_heads, int64_t head_dim) = 0;
  // inv_freq: D/2 inverse frequencies (already scaled as the model's rope type says).
  virtual std::unique_ptr<RopeTable> prepare_rope(const std::vector<float>& inv_freq,
                                                  int64_t max_positions) = 0;

  // -------------------------------------------------------------------------------- primitives
  // out (n, K) = rows tokens[0..n) of the embedding table W (V, K).
  virtual void embed(const LinearWeights& table, const int32_t* tokens, int64_t n,
                     Activation& out) = 0;
  // out (n, H) = x / rms(x) * weight (1, H).
  virtual void rms_norm(const Activation& x, const Activation& weight, float eps,
                        Activation& out) = 0;
  // out (n, N) = x (n, K) W^T (+ bias (1, N) when given).
  virtual void linear(const LinearWeights& w, const Activation& x, const Activation* bias,
                      Activation& out) = 0;
  // Rotates q (n, nh*D) and k (n, nkv*D) in place for positions first_position + [0, n)
  // (pairs (i, i + D/2) of each head, Hugging Face's "rotate_half" convention).
  virtual void rope(const RopeTable& table, const AttentionShape& shape, int64_t first_position,
                    Activation& q, Activation& k) = 0;
  // Writes k, v (n, nkv*D) into layer `layer` of the cache at positions first_position + [0, n).
  virtual void store_kv(KVCache& cache, int64_t layer, int64_t first_position,
                        const Activation& k, const Activation& v) = 0;
  // out (n, nh*D): causal attention of q (n, nh*D) at positions first_position + [0, n) over the
  // cache's positions [0, first_position + i] for token i.
  virtual void attention(const KVCache& cache, int64_t layer, const AttentionShape& shape,
                         int64_t first_position, const Activation& q, Activation& out) = 0;
  // out = silu(gate) * up, elementwise.
  virtual void silu_mul(const Activation& gate, const Activation& up, Activation& out) = 0;
  // x += y, elementwise.
  virtual void add(Activation& x, const Activation& y) = 0;
  // Copies x (n, V) to host memory (n * V floats) and waits for all issued work.
  virtual void read_logits(const Activation& x, float* host) = 0;
  // Waits for all issued work.
  virtual void synchronize() = 0;

  // ------------------------------------------------------------------- recording a step
  // The decoder brackets the operations of one forward pass (n tokens at first_position, the LM
  // head applied to the last logit_rows of them, 0 = none) with begin_step and end_step; the
  // logits are read after end_step. Decode steps of one shape issue identical operations with
  // only the token ids and the position changing, so a backend may record them once and replay
  // the recording (CUDA graphs): begin_step returns true when the backend will replay this step
  // by itself at end_step, and the decoder then issues nothing in between. The default records
  // nothing and returns false.
  virtual bool begin_step(const int32_t* tokens, int64_t n, int64_t first_position, int64_t logit_rows);
  virtual void end_step();

  // ------------------------------------------------ composite operations (override to fuse)
  // x += delta; out = rms_norm(x, weight). The residual add fused with the next norm.
  virtual void add_rms_norm(Activation& x, const Activation& delta, const Activation& weight,
                            float eps, Activation& out);
  // q, k, v (n, N) = x W^T (+ bias) for the attention's three projections, which read the same x.
  // A fused version prepares x once and computes the three products in one pass.
  virtual void attention_projections(const LinearWeights& q_w, const LinearWeights& k_w, const LinearWeights& v_w,
                                     const Activation* q_bias, const Activation* k_bias, const Activation* v_bias,
                                     const Activation& x, Activation& q, Activation& k, Activation& v);
  // rope(q, k); store_kv(k, v); attention(q) -> out: the attention block from the projections
  // on. A fused version may rotate q and k as it reads them instead of in place, so afterwards q
  // and k hold either the rotated or the unrotated values.
  virtual void rotary_attention(const RopeTable& table, KVCache& cache, int64_t layer, const AttentionShape& shape,
                                int64_t first_position, Activation& q, Activation& k, const Activation& v,
                                Activation& out);
  // out (n, I) = silu(x gate^T + gate_bias) * (x up^T + up_bias); gate, up: (n, I) scratch.
  virtual void gated_mlp(const LinearWeights& gate_w, const LinearWeights& up_w,
                         const Activation* gate_bias, const Activation* up_bias,
                         const Activation& x, Activation& gate, Activation& up, Activation& out);
};

}  // namespace awq_edge
