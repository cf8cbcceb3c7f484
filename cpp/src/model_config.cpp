// model_config.cpp: metadata["config"] -> ModelConfig, and the rotary frequencies.
#include <cmath>
#include <stdexcept>

#include "awq_edge/model.h"

namespace awq_edge {
namespace {

const json::Value& member(const json::Value& object, std::string_view key, std::string_view where) {
  const json::Value* value = object.find(key);
  if (value == nullptr) {
    throw std::invalid_argument("[Model] metadata " + std::string(where) + " has no field '" +
                                std::string(key) + "'");
  }
  return *value;
}

int64_t positive_int(const json::Value& config, std::string_view key) {
  const int64_t value = member(config, key, "config").as_int();
  if (value < 1) {
    throw std::invalid_argument("[Model] metadata config." + std::string(key) +
                                " must be >= 1, found " + std::to_string(value));
  }
  return value;
}

double number(const json::Value& rope, std::string_view key) {
  return member(rope, key, "config.rope").as_double();
}

}  // namespace

std::vector<float> rope_inverse_frequencies(const json::Value& rope, int64_t head_dim) {
  const std::string& type = member(rope, "rope_type", "config.rope").as_string();
  const float theta = static_cast<float>(number(rope, "rope_theta"));
  // transformers: 1 / theta ** (arange(0, D, 2).float() / D), all in float32.
  std::vector<float> inv_freq(static_cast<size_t>(head_dim / 2));
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[i] = 1.0f / std::pow(theta, exponent);
  }
  if (type == "default") return inv_freq;
  if (type == "linear") {
    const float factor = static_cast<float>(number(rope, "factor"));
    for (float& f : inv_freq) f /= factor;  // the same as dividing the positions by factor
    return inv_freq;
  }
  if (type == "llama3") {
    // Llama 3.1: slow frequencies are divided by factor, fast ones kept, those between
    // interpolated (python/awq_edge/reference/decoder.py::_llama3_inv_freq).
    const double factor = number(rope, "factor");
    const double low = number(rope, "low_freq_factor");
    const double high = number(rope, "high_freq_factor");
    const double old_context = number(rope, "original_max_position_embeddings");
    constexpr double kPi = 3.14159265358979323846;
    for (float& f : inv_freq) {
      const float wavelength = static_cast<float>(2 * kPi) / f;
      if (wavelength > old_context / low) {
        f = static_cast<float>(f / factor);
      } else if (wavelength >= old_context / high) {
        const float smooth = static_cast<float>((old_context / wavelength - low) / (high - low));
        f = (1 - smooth) * f / static_cast<float>(factor) + smooth * f;
      }
    }
    return inv_freq;
  }
  throw std::invalid_argument("[Model] metadata config.rope.rope_type '" + type +
                              "' is not supported (supported: default, linear, llama3)");
}

ModelConfig ModelConfig::from_metadata(const json::Value& metadata) {
  ModelConfig c;
  c.architecture = member(metadata, "architecture", "").as_string();
  if (c.architecture != "llama" && c.architecture != "mistral" && c.architecture != "qwen2") {
    throw std::invalid_argument("[Model] architecture '" + c.architecture +
                                "' is not supported (supported: llama, mistral, qwen2)");
  }
  const json::Value& config = member(metadata, "config", "");
  c.vocab_size = positive_int(config, "vocab_size");
  c.hidden_size = positive_int(config, "hidden_size");
  c.intermediate_size = positive_int(config, "intermediate_size");
  c.n_layers = positive_int(config, "num_hidden_layers");
  c.n_heads = positive_int(config, "num_attention_heads");
  c.n_kv_heads = positive_int(config, "num_key_value_heads");
  c.head_dim = positive_int(config, "head_dim");
  c.max_position_embeddings = positive_int(config, "max_position_embeddings");
  c.rms_norm_eps = static_cast<float>(member(config, "rms_norm_eps", "config").as_double());
  if (c.n_heads % c.n_kv_heads != 0 || c.head_dim % 2 != 0) {
    throw std::invalid_argument(
        "[Model] metadata config: num_attention_heads (" + std::to_string(c.n_heads) +
        ") must be a multiple of num_key_value_heads (" + std::to_string(c.n_kv_heads) +
        ") and head_dim (" + std::to_string(c.head_dim) + ") even");
  }
  if (const json::Value* act = config.find("hidden_act"); act && !act->is_null() &&
                                                          act->as_string() != "silu") {
    throw std::invalid_argument("[Model] metadata config.hidden_act '" + act->as_string() +
                                "' is not supported (supported: silu)");
  }
  if (const json::Value* window = config.find("sliding_window"); window && !window->is_null()) {
    c.sliding_window = window->as_int();
  }
  c.rope_inv_freq = rope_inverse_frequencies(member(config, "rope", "config"), c.head_dim);
  c.tie_word_embeddings = member(config, "tie_word_embeddings", "config").as_bool();
  c.attention_bias = member(config, "attention_bias", "config").as_bool();
  c.attention_out_bias = member(config, "attention_out_bias", "config").as_bool();
  c.mlp_bias = member(config, "mlp_bias", "config").as_bool();
  if (const json::Value* bos = config.find("bos_token_id"); bos && bos->is_int()) {
    c.bos_token_id = static_cast<int32_t>(bos->as_int());
  }
  if (const json::Value* eos = config.find("eos_token_id"); eos && !eos->is_null()) {
    if (eos->is_int()) {
      c.eos_token_ids.push_back(static_cast<int32_t>(eos->as_int()));
    } else {
      for (const json::Value& id : eos->as_array()) {
        c.eos_token_ids.push_back(static_cast<int32_t>(id.as_int()));
      }
    }
  }
  return c;
}

}  // namespace awq_edge
