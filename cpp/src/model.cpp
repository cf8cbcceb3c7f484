// model.cpp: the one decoder. Everything here is bookkeeping around backend calls; the time goes
// into the backend's linear layers (and attention at long contexts).
#include "awq_edge/model.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "awq_edge/schemes.h"

namespace awq_edge {

struct Model::Layer {
  Activation attn_norm;                                 // (1, H)
  std::unique_ptr<LinearWeights> q, k, v, o;            // (nh*D, H), (nkv*D, H) x2, (H, nh*D)
  std::optional<Activation> q_bias, k_bias, v_bias;     // attention_bias
  std::optional<Activation> o_bias;                     // attention_out_bias
  Activation mlp_norm;                                  // (1, H)
  std::unique_ptr<LinearWeights> gate, up, down;        // (I, H) x2, (H, I)
  std::optional<Activation> gate_bias, up_bias, down_bias;  // mlp_bias
};

// Activations of one chunk of up to prefill_chunk tokens.
struct Model::Scratch {
  Activation residual;  // (C, H) the residual stream
  Activation normed;    // (C, H) its RMS-normed copy, input of the projections
  Activation q;         // (C, nh*D)
  Activation k, v;      // (C, nkv*D)
  Activation attended;  // (C, nh*D) attention output before o
  Activation delta;     // (C, H) o or down projection, added to the residual
  Activation gate, up;  // (C, I)
  Activation gated;     // (C, I) silu(gate) * up
  Activation logits;    // (C, V)
};

namespace {

const Activation* optional_ptr(const std::optional<Activation>& a) { return a ? &*a : nullptr; }

}  // namespace

Model::Model(std::shared_ptr<const ModelFile> file, std::shared_ptr<Backend> backend,
             const ModelOptions& options)
    : file_(std::move(file)), backend_(std::move(backend)) {
  const json::Value& metadata = file_->metadata();
  config_ = ModelConfig::from_metadata(metadata);
  const ModelConfig& c = config_;

  int64_t limit = c.max_position_embeddings;
  std::string limit_reason = "max_position_embeddings";
  if (c.sliding_window && *c.sliding_window < limit) {
    limit = *c.sliding_window;  // full attention equals sliding-window attention up to here
    limit_reason = "sliding_window (this engine attends to the whole context)";
  }
  if (options.max_context < 0 || options.max_context > limit) {
    throw ModelError("[Model] max_context " + std::to_string(options.max_context) +
                     " is out of range: the model's " + limit_reason + " is " +
                     std::to_string(limit));
  }
  max_context_ = options.max_context > 0 ? options.max_context : std::min<int64_t>(limit, 4096);
  if (options.prefill_chunk < 1) {
    throw ModelError("[Model] prefill_chunk must be >= 1, got " +
                     std::to_string(options.prefill_chunk));
  }
  prefill_chunk_ = std::min(options.prefill_chunk, max_context_);

  // Weights, in the backend's layout.
  std::unordered_map<std::string, Module> modules;
  for (Module& m : model_modules(metadata)) modules.emplace(m.name, m);
  auto views = [&](const Module& module) {
    std::vector<TensorView> tensors;
    for (const TensorSpec& spec : module_tensors(module)) tensors.push_back(file_->tensor(spec.name));
    return tensors;
  };
  auto linear = [&](const std::string& name) {
    const Module& module = modules.at(name);
    return backend_->upload_linear(module, views(module));
  };
  auto vector = [&](const std::string& name) { return backend_->upload_vector(file_->tensor(name)); };
  auto bias = [&](bool present, const std::string& module) -> std::optional<Activation> {
    if (!present) return std::nullopt;
    return vector(module + ".bias");
  };

  // Starts reading layer i's weights from the disk (each tensor separately: the file may order them
  // any way), so that the disk works while the backend repacks and uploads the layer before.
  auto prefetch_layer = [&](int64_t i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    for (const auto& [name, module] : modules) {
      if (name.compare(0, p.size(), p) != 0) continue;
      for (const TensorView& t : views(module)) file_->mapping()->prefetch(t.data, t.size);
    }
  };
  if (c.n_layers > 0) prefetch_layer(0);
  // a tied table is also the LM head; otherwise only embed() reads it, a row per token
  const Module& embedding = modules.at("embed");
  embed_ = c.tie_word_embeddings ? linear("embed") : backend_->upload_embedding(embedding, views(embedding));
  layers_.resize(static_cast<size_t>(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    Layer& layer = layers_[static_cast<size_t>(i)];
    const std::string p = "layers." + std::to_string(i) + ".";
    if (i + 1 < c.n_layers) prefetch_layer(i + 1);  // read from the disk while this layer uploads
    layer.attn_norm = vector(p + "attn_norm.weight");
    layer.q = linear(p + "attn.q");
    layer.k = linear(p + "attn.k");
    layer.v = linear(p + "attn.v");
    layer.o = linear(p + "attn.o");
    layer.q_bias = bias(c.attention_bias, p + "attn.q");
    layer.k_bias = bias(c.attention_bias, p + "attn.k");
    layer.v_bias = bias(c.attention_bias, p + "attn.v");
    layer.o_bias = bias(c.attention_out_bias, p + "attn.o");
    layer.mlp_norm = vector(p + "mlp_norm.weight");
    layer.gate = linear(p + "mlp.gate");
    layer.up = linear(p + "mlp.up");
    layer.down = linear(p + "mlp.down");
    layer.gate_bias = bias(c.mlp_bias, p + "mlp.gate");
    layer.up_bias = bias(c.mlp_bias, p + "mlp.up");
    layer.down_bias = bias(c.mlp_bias, p + "mlp.down");
  }
  final_norm_ = vector("norm.weight");
  if (!c.tie_word_embeddings) lm_head_ = linear("lm_head");
  backend_->uploads_finished(*file_->mapping());

  attention_shape_.n_heads = c.n_heads;
  attention_shape_.n_kv_heads = c.n_kv_heads;
  attention_shape_.head_dim = c.head_dim;
  attention_shape_.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  kv_cache_ = backend_->allocate_kv_cache(c.n_layers, max_context_, c.n_kv_heads, c.head_dim);
  rope_ = backend_->prepare_rope(c.rope_inv_freq, max_context_);

  const int64_t rows = prefill_chunk_;
  scratch_ = std::make_unique<Scratch>();
  Scratch& s = *scratch_;
  s.residual = backend_->allocate(rows, c.hidden_size);
  s.normed = backend_->allocate(rows, c.hidden_size);
  s.q = backend_->allocate(rows, c.n_heads * c.head_dim);
  s.k = backend_->allocate(rows, c.n_kv_heads * c.head_dim);
  s.v = backend_->allocate(rows, c.n_kv_heads * c.head_dim);
  s.attended = backend_->allocate(rows, c.n_heads * c.head_dim);
  s.delta = backend_->allocate(rows, c.hidden_size);
  s.gate = backend_->allocate(rows, c.intermediate_size);
  s.up = backend_->allocate(rows, c.intermediate_size);
  s.gated = backend_->allocate(rows, c.intermediate_size);
  s.logits = backend_->allocate(rows, c.vocab_size);
}

Model::~Model() = default;

void Model::truncate(int64_t position) {
  if (position < 0 || position > position_) {
    throw ModelError("[Model] truncate(" + std::to_string(position) +
                     "): the cache holds positions [0, " + std::to_string(position_) + ")");
  }
  position_ = position;  // later positions are overwritten before they are read
}

void Model::forward(const int32_t* tokens, int64_t n, float* logits, bool all_logits) {
  if (n < 1) throw ModelError("[Model] forward() needs at least one token, got " + std::to_string(n));
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      throw ModelError("[Model] token id " + std::to_string(tokens[i]) + " at index " +
                       std::to_string(i) + " is out of range: the vocabulary has " +
                       std::to_string(config_.vocab_size) + " tokens (ids 0.." +
                       std::to_string(config_.vocab_size - 1) + ")");
    }
  }
  if (position_ + n > max_context_) {
    throw ModelError("[Model] " + std::to_string(n) + " more tokens after " +
                     std::to_string(position_) + " exceed the context of " +
                     std::to_string(max_context_) +
                     " positions; shorten the input or raise max_context (the model allows " +
                     std::to_string(config_.max_position_embeddings) + ")");
  }
  for (int64_t done = 0; done < n;) {
    const int64_t count = std::min(prefill_chunk_, n - done);
    const bool last = done + count == n;
    float* chunk_logits = nullptr;
    if (logits != nullptr && all_logits) chunk_logits = logits + done * config_.vocab_size;
    else if (logits != nullptr && last) chunk_logits = logits;
    forward_chunk(tokens + done, count, chunk_logits, all_logits);
    done += count;
  }
}

// Runs n <= prefill_chunk tokens; logits (when not null) receives all n rows (all_logits) or the
// last row.
void Model::forward_chunk(const int32_t* tokens, int64_t n, float* logits, bool all_logits) {
  Backend& b = *backend_;
  const Scratch& full = *scratch_;
  Activation residual = full.residual.rows_view(0, n), normed = full.normed.rows_view(0, n);
  Activation q = full.q.rows_view(0, n), k = full.k.rows_view(0, n), v = full.v.rows_view(0, n);
  Activation attended = full.attended.rows_view(0, n), delta = full.delta.rows_view(0, n);
  Activation gate = full.gate.rows_view(0, n), up = full.up.rows_view(0, n);
  Activation gated = full.gated.rows_view(0, n);
  const float eps = config_.rms_norm_eps;

  const LinearWeights& head = lm_head_ ? *lm_head_ : *embed_;
  const int64_t rows = logits == nullptr ? 0 : all_logits ? n : 1;  // rows of logits wanted
  const int64_t head_rows = std::max<int64_t>(rows, 1);                // the views need one row
  Activation head_input = normed.rows_view(n - head_rows, head_rows);
  Activation head_output = full.logits.rows_view(0, head_rows);
  // a backend that recorded this step's shape before replays it (Backend::begin_step)
  if (!b.begin_step(tokens, n, position_, rows)) {
    b.embed(*embed_, tokens, n, residual);
    for (size_t i = 0; i < layers_.size(); ++i) {
      const Layer& layer = layers_[i];
      const int64_t index = static_cast<int64_t>(i);
      if (i == 0) b.rms_norm(residual, layer.attn_norm, eps, normed);
      else b.add_rms_norm(residual, delta, layer.attn_norm, eps, normed);  // previous MLP's output

      b.attention_projections(*layer.q, *layer.k, *layer.v, optional_ptr(layer.q_bias), optional_ptr(layer.k_bias),
                              optional_ptr(layer.v_bias), normed, q, k, v);
      b.rotary_attention(*rope_, *kv_cache_, index, attention_shape_, position_, q, k, v, attended);
      b.linear(*layer.o, attended, optional_ptr(layer.o_bias), delta);

      b.add_rms_norm(residual, delta, layer.mlp_norm, eps, normed);
      b.gated_mlp(*layer.gate, *layer.up, optional_ptr(layer.gate_bias), optional_ptr(layer.up_bias),
                  normed, gate, up, gated);
      b.linear(*layer.down, gated, optional_ptr(layer.down_bias), delta);
    }
    b.add_rms_norm(residual, delta, final_norm_, eps, normed);
    if (rows > 0) b.linear(head, head_input, nullptr, head_output);
  }
  b.end_step();
  position_ += n;
  if (logits == nullptr) return;  // a prompt chunk before the last: no LM head needed
  b.read_logits(head_output, logits);
}

}  // namespace awq_edge
