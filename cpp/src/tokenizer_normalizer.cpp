// tokenizer_normalizer.cpp: the normalizers LLaMA-family tokenizers use: NFC (Qwen2),
// Prepend("▁") and Replace(" ", "▁") (LLaMA-2, Mistral), and Sequence of them.
#include "tokenizer_stages.h"
#include "unicode.h"

namespace awq_edge::tokenizer {

Normalizer Normalizer::parse(const json::Value& normalizer) {
  Normalizer result;
  if (!normalizer.is_null()) result.add(normalizer);
  return result;
}

void Normalizer::add(const json::Value& normalizer) {
  const std::string where = "normalizer";
  const std::string type = type_of(normalizer, where);
  if (type == "Sequence") {
    for (const json::Value& inner : member(normalizer, "normalizers", where).as_array()) add(inner);
  } else if (type == "NFC") {
    steps_.push_back({Step::Kind::Nfc, "", ""});
  } else if (type == "Prepend") {
    steps_.push_back({Step::Kind::Prepend, string_member(normalizer, "prepend", where), ""});
  } else if (type == "Replace") {
    const json::Value* pattern = member(normalizer, "pattern", where).find("String");
    if (!pattern || !pattern->is_string() || pattern->as_string().empty()) {
      fail("normalizer Replace: only a nonempty {\"String\": ...} pattern is supported");
    }
    steps_.push_back({Step::Kind::Replace, pattern->as_string(), string_member(normalizer, "content", where)});
  } else {
    fail("normalizer type '" + type + "' is not supported (supported: NFC, Prepend, Replace, Sequence)");
  }
}

std::string Normalizer::apply(std::string text) const {
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::Kind::Nfc: text = unicode::nfc(text); break;
      case Step::Kind::Prepend:
        if (!text.empty()) text.insert(0, step.text);
        break;
      case Step::Kind::Replace: {
        std::string replaced;
        for (size_t at = 0;;) {
          const size_t found = text.find(step.text, at);
          replaced.append(text, at, found == std::string::npos ? std::string::npos : found - at);
          if (found == std::string::npos) break;
          replaced += step.replacement;
          at = found + step.text.size();
        }
        text = std::move(replaced);
        break;
      }
    }
  }
  return text;
}

}  // namespace awq_edge::tokenizer
