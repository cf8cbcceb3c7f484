// model.h: the LLaMA-family decoder (Llama, Mistral, Qwen2), written once against backend.h.
//
//   tokens -> embed -> [ attn_norm -> q,k,v (+bias) -> rope -> KV cache -> GQA attention -> o
//                        (+ residual) -> mlp_norm -> silu(gate) * up -> down (+ residual) ] x L
//          -> norm -> lm_head (or the tied embedding) -> logits
//
// forward() runs a run of tokens at consecutive positions: a prompt is fed in chunks of up to
// prefill_chunk tokens through matrix-matrix products, a decode step is one token through
// matrix-vector products. Keys and values go into the model's KV cache, so a later call
// continues where the last one stopped.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "awq_edge/backend.h"
#include "awq_edge/json.h"
#include "awq_edge/model_file.h"

namespace awq_edge {

// "[Model] <problem>": bad arguments to the decoder (token ids, positions, context);
// ValueError in Python.
class ModelError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// The decoder's view of metadata["config"] (docs/FORMAT.md section 3).
struct ModelConfig {
  std::string architecture;  // "llama" | "mistral" | "qwen2"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  std::optional<int64_t> sliding_window;  // Mistral; attention is full within max_context
  float rms_norm_eps = 1e-5f;
  std::vector<float> rope_inv_freq;       // (D/2,), scaled as the rope type says
  bool tie_word_embeddings = false;
  bool attention_bias = false;            // q, k, v
  bool attention_out_bias = false;        // o
  bool mlp_bias = false;                  // gate, up, down
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;

  // Throws ModelFileError-style std::invalid_argument naming the field for an unsupported
  // architecture, activation or rope type.
  static ModelConfig from_metadata(const json::Value& metadata);
};

// Inverse rotary frequencies for rope types default, linear and llama3, computed in float32
// exactly as Hugging Face transformers does.
std::vector<float> rope_inverse_frequencies(const json::Value& rope, int64_t head_dim);

struct ModelOptions {
  int64_t max_context = 0;     // KV cache positions; 0 = min(max_position_embeddings, 4096)
  int64_t prefill_chunk = 128; // tokens per prefill step
};

class Model {
 public:
  // Uploads every weight of `file` to `backend` and allocates the KV cache and scratch space.
  // The file and the backend must outlive the model.
  Model(std::shared_ptr<const ModelFile> file, std::shared_ptr<Backend> backend,
        const ModelOptions& options = {});
  ~Model();

  const ModelConfig& config() const { return config_; }
  Backend& backend() const { return *backend_; }
  int64_t max_context() const { return max_context_; }
  int64_t prefill_chunk() const { return prefill_chunk_; }
  // Positions of the KV cache in use: the next forward() starts here.
  int64_t position() const { return position_; }
  // Forgets cache positions from `position` on (0: everything). position <= position().
  void truncate(int64_t position);

  // Runs tokens[0..n) at positions position() + [0, n) and advances position() by n.
  // logits: n * V floats (all_logits) or V floats (the last token's) in host memory, or null
  // when no logits are needed (a prompt chunk before the last: the LM head is skipped).
  // Throws ModelError for an id outside [0, V), n < 1, or positions past max_context.
  void forward(const int32_t* tokens, int64_t n, float* logits, bool all_logits = false);

 private:
  struct Layer;
  void forward_chunk(const int32_t* tokens, int64_t n, float* logits, bool all_logits);

  std::shared_ptr<const ModelFile> file_;
  std::shared_ptr<Backend> backend_;
  ModelConfig config_;
  int64_t max_context_ = 0;
  int64_t prefill_chunk_ = 0;
  int64_t position_ = 0;

  std::unique_ptr<LinearWeights> embed_;    // (V, H)
  std::vector<Layer> layers_;
  Activation final_norm_;                   // (1, H)
  std::unique_ptr<LinearWeights> lm_head_;  // (V, H); null when tied to embed_
  std::unique_ptr<KVCache> kv_cache_;
  std::unique_ptr<RopeTable> rope_;
  AttentionShape attention_shape_;

  struct Scratch;                           // activations for one chunk
  std::unique_ptr<Scratch> scratch_;
};

}  // namespace awq_edge
