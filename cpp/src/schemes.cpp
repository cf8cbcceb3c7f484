// schemes.cpp: storage schemes and the tensor set of a model (see awq_edge/schemes.h).
// The rules are the ones of python/awq_edge/awqe/schemes.py; keep the two in step.
#include "awq_edge/schemes.h"

#include <cstdint>
#include <stdexcept>

namespace awq_edge {

namespace {

constexpr const char* kSchemeChoices = "expected f16, q8_row or q{3,4}_g{32,64,128}";

[[noreturn]] void invalid(const std::string& message) { throw std::invalid_argument(message); }

const json::Value& member(const json::Value& object, const std::string& where, const char* key) {
  const json::Value* value = object.find(key);
  if (value == nullptr) invalid(where + ": required field '" + key + "' is missing");
  return *value;
}

// A model dimension: an integer in 1..2^31-1, so that products of two never overflow.
uint64_t dimension(const json::Value& config, const char* key) {
  const json::Value& value = member(config, "metadata.config", key);
  if (!value.is_int() || value.as_int() < 1 || value.as_int() > INT32_MAX) {
    invalid(std::string("metadata.config.") + key + ": expected an integer in 1..2^31-1, found " +
            (value.is_int() ? std::to_string(value.as_int()) : value.type_name()));
  }
  return static_cast<uint64_t>(value.as_int());
}

// The sizes section 6 of FORMAT.md is written in.
struct ModelDims {
  uint64_t hidden, inter, vocab, layers, q_dim, kv_dim;
};

ModelDims read_dims(const json::Value& config) {
  const uint64_t head_dim = dimension(config, "head_dim");
  return {dimension(config, "hidden_size"), dimension(config, "intermediate_size"),
          dimension(config, "vocab_size"), dimension(config, "num_hidden_layers"),
          dimension(config, "num_attention_heads") * head_dim, dimension(config, "num_key_value_heads") * head_dim};
}

Scheme parse_field(const json::Value& value, const std::string& where) {
  if (!value.is_string()) invalid(where + ": expected a scheme name (string), found " + value.type_name());
  const auto scheme = Scheme::parse(value.as_string());
  if (!scheme) invalid(where + ": unknown storage scheme '" + value.as_string() + "': " + kSchemeChoices);
  return *scheme;
}

uint64_t packed_words(uint64_t count, int bits) { return (count * static_cast<uint64_t>(bits) + 31) / 32; }

}  // namespace

std::optional<Scheme> Scheme::parse(std::string_view text) {
  if (text == "f16") return Scheme{Kind::F16, 16, 0};
  if (text == "q8_row") return Scheme{Kind::Q8Row, 8, 0};
  for (int bits : {3, 4}) {
    for (int group_size : {32, 64, 128}) {
      if (text == "q" + std::to_string(bits) + "_g" + std::to_string(group_size)) {
        return Scheme{Kind::Grouped, bits, group_size};
      }
    }
  }
  return std::nullopt;
}

std::string Scheme::name() const {
  switch (kind) {
    case Kind::F16: return "f16";
    case Kind::Q8Row: return "q8_row";
    case Kind::Grouped: break;
  }
  return "q" + std::to_string(bits) + "_g" + std::to_string(group_size);
}

std::vector<Module> model_modules(const json::Value& metadata) {
  const json::Value& config = member(metadata, "metadata", "config");
  const json::Value& quant = member(metadata, "metadata", "quantization");
  const auto [hidden, inter, vocab, layers, q_dim, kv_dim] = read_dims(config);

  const json::Value& bits = member(quant, "metadata.quantization", "bits");
  const json::Value& group_size = member(quant, "metadata.quantization", "group_size");
  const std::string decoder_text = "q" + std::to_string(bits.as_int()) + "_g" + std::to_string(group_size.as_int());
  const auto decoder = Scheme::parse(decoder_text);
  if (!decoder) {
    invalid("metadata.quantization: bits " + std::to_string(bits.as_int()) + " and group_size " +
            std::to_string(group_size.as_int()) + " make the unknown storage scheme '" + decoder_text + "': " +
            kSchemeChoices);
  }

  std::vector<Module> modules;
  modules.push_back({"embed", parse_field(member(quant, "metadata.quantization", "embedding"),
                                          "metadata.quantization.embedding"), vocab, hidden});
  for (uint64_t i = 0; i < layers; ++i) {
    const std::string layer = "layers." + std::to_string(i) + ".";
    modules.push_back({layer + "attn.q", *decoder, q_dim, hidden});
    modules.push_back({layer + "attn.k", *decoder, kv_dim, hidden});
    modules.push_back({layer + "attn.v", *decoder, kv_dim, hidden});
    modules.push_back({layer + "attn.o", *decoder, hidden, q_dim});
    modules.push_back({layer + "mlp.gate", *decoder, inter, hidden});
    modules.push_back({layer + "mlp.up", *decoder, inter, hidden});
    modules.push_back({layer + "mlp.down", *decoder, hidden, inter});
  }
  const json::Value& lm_head = member(quant, "metadata.quantization", "lm_head");
  const bool tied_head = lm_head.is_string() && lm_head.as_string() == "tied";
  if (!tied_head) modules.push_back({"lm_head", parse_field(lm_head, "metadata.quantization.lm_head"), vocab, hidden});

  if (const json::Value* overrides = quant.find("overrides")) {
    if (!overrides->is_object()) {
      invalid(std::string("metadata.quantization.overrides: expected an object, found ") + overrides->type_name());
    }
    for (const auto& [name, text] : overrides->as_object()) {
      const Scheme scheme = parse_field(text, "metadata.quantization.overrides['" + name + "']");
      Module* target = nullptr;
      for (Module& module : modules) {
        if (module.name == name) target = &module;
      }
      if (target == nullptr) {
        invalid("metadata.quantization.overrides names module '" + name + "', which the model does not have");
      }
      target->scheme = scheme;
    }
  }

  const bool tie_word_embeddings = member(config, "metadata.config", "tie_word_embeddings").as_bool();
  if (tied_head != tie_word_embeddings) {
    invalid("metadata.quantization.lm_head is '" + (lm_head.is_string() ? lm_head.as_string() : "?") +
            "' but metadata.config.tie_word_embeddings is " + (tie_word_embeddings ? "true" : "false") +
            ": 'tied' is required exactly when embeddings are tied");
  }
  return modules;
}

std::vector<TensorSpec> module_tensors(const Module& m) {
  const uint64_t n = m.rows, k = m.cols;
  switch (m.scheme.kind) {
    case Scheme::Kind::F16:
      return {{m.name + ".weight", DType::F16, {n, k}}};
    case Scheme::Kind::Q8Row:
      return {{m.name + ".qweight", DType::I8, {n, k}}, {m.name + ".scales", DType::F16, {n}}};
    case Scheme::Kind::Grouped:
      break;
  }
  const auto g = static_cast<uint64_t>(m.scheme.group_size);
  if (k % g != 0 || k % 32 != 0) {
    invalid("module '" + m.name + "': " + std::to_string(k) + " input features are not a multiple of group size " +
            std::to_string(g) + " (and of 32)");
  }
  const uint64_t groups = k / g;
  return {
      {m.name + ".qweight", DType::U32, {n, k * static_cast<uint64_t>(m.scheme.bits) / 32}},
      {m.name + ".scales", DType::F16, {n, groups}},
      {m.name + ".zeros", DType::U32, {n, packed_words(groups, m.scheme.bits)}},
  };
}

std::vector<TensorSpec> expected_tensors(const json::Value& metadata) {
  std::vector<TensorSpec> specs;
  for (const Module& module : model_modules(metadata)) {
    for (TensorSpec& spec : module_tensors(module)) specs.push_back(std::move(spec));
  }
  const json::Value& config = member(metadata, "metadata", "config");
  const auto [hidden, inter, vocab, layers, q_dim, kv_dim] = read_dims(config);
  const bool attention_bias = member(config, "metadata.config", "attention_bias").as_bool();
  const bool attention_out_bias = member(config, "metadata.config", "attention_out_bias").as_bool();
  const bool mlp_bias = member(config, "metadata.config", "mlp_bias").as_bool();

  for (uint64_t i = 0; i < layers; ++i) {
    const std::string layer = "layers." + std::to_string(i) + ".";
    specs.push_back({layer + "attn_norm.weight", DType::F16, {hidden}});
    specs.push_back({layer + "mlp_norm.weight", DType::F16, {hidden}});
    if (attention_bias) {
      specs.push_back({layer + "attn.q.bias", DType::F16, {q_dim}});
      specs.push_back({layer + "attn.k.bias", DType::F16, {kv_dim}});
      specs.push_back({layer + "attn.v.bias", DType::F16, {kv_dim}});
    }
    if (attention_out_bias) specs.push_back({layer + "attn.o.bias", DType::F16, {hidden}});
    if (mlp_bias) {
      specs.push_back({layer + "mlp.gate.bias", DType::F16, {inter}});
      specs.push_back({layer + "mlp.up.bias", DType::F16, {inter}});
      specs.push_back({layer + "mlp.down.bias", DType::F16, {hidden}});
    }
  }
  specs.push_back({"norm.weight", DType::F16, {hidden}});
  return specs;
}

}  // namespace awq_edge
