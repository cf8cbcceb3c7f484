// tokenizer_decoder.cpp: tokens back to text, step by step as `tokenizers` decoders do: each step
// maps the list of token strings to a new list, and the result is their concatenation.
#include "tokenizer_stages.h"
#include "unicode.h"

namespace awq_edge::tokenizer {

namespace {

constexpr std::string_view kSupported = "ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence";

// "<0x0A>" -> 0x0A
std::optional<uint8_t> fallback_byte(std::string_view token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return std::nullopt;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int high = hex(token[3]), low = hex(token[4]);
  if (high < 0 || low < 0) return std::nullopt;
  return static_cast<uint8_t>(high * 16 + low);
}

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  for (size_t at = 0;;) {
    const size_t found = text.find(from, at);
    out.append(text.substr(at, found == std::string_view::npos ? std::string_view::npos : found - at));
    if (found == std::string_view::npos) return out;
    out.append(to);
    at = found + from.size();
  }
}

}  // namespace

Decoder Decoder::parse(const json::Value& decoder) {
  Decoder result;
  if (!decoder.is_null()) {
    result.add(decoder);
    result.has_decoder_ = true;
  }
  return result;
}

void Decoder::add(const json::Value& decoder) {
  const std::string where = "decoder";
  const std::string type = type_of(decoder, where);
  Step step{};
  if (type == "Sequence") {
    for (const json::Value& inner : member(decoder, "decoders", where).as_array()) add(inner);
    return;
  }
  if (type == "ByteLevel") {
    step.kind = Step::Kind::ByteLevel;
  } else if (type == "ByteFallback") {
    step.kind = Step::Kind::ByteFallback;
  } else if (type == "Fuse") {
    step.kind = Step::Kind::Fuse;
  } else if (type == "Metaspace") {
    step.kind = Step::Kind::Metaspace;
    step.text = string_member(decoder, "replacement", where);
    std::string scheme = "always";
    if (const json::Value* value = decoder.find("prepend_scheme"); value && value->is_string()) {
      scheme = value->as_string();
    } else if (!bool_member(decoder, "add_prefix_space", where, true)) {
      scheme = "never";
    }
    step.strips_first = scheme != "never";
  } else if (type == "Replace") {
    step.kind = Step::Kind::Replace;
    const json::Value* pattern = member(decoder, "pattern", where).find("String");
    if (!pattern || !pattern->is_string() || pattern->as_string().empty()) {
      fail("decoder Replace: only a nonempty {\"String\": ...} pattern is supported");
    }
    step.text = pattern->as_string();
    step.replacement = string_member(decoder, "content", where);
  } else if (type == "Strip") {
    step.kind = Step::Kind::Strip;
    step.text = string_member(decoder, "content", where);
    step.strip_start = static_cast<size_t>(member(decoder, "start", where).as_int());
    if (member(decoder, "stop", where).as_int() != 0) {
      fail("decoder Strip: stop > 0 (stripping the end of the text) is not supported");
    }
  } else {
    fail("decoder type '" + type + "' is not supported (supported: " + std::string(kSupported) + ")");
  }
  steps_.push_back(std::move(step));
}

bool Decoder::holds_back(std::string_view token) const {
  for (const Step& step : steps_) {
    if (step.kind == Step::Kind::ByteFallback && fallback_byte(token)) return true;
  }
  return false;
}

std::string Decoder::decode(std::vector<std::string> tokens, bool at_sequence_start) const {
  if (!has_decoder_) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0 || !at_sequence_start) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  bool fused = false;  // tokens is one string: the text of the whole window
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::Kind::ByteLevel: {
        std::string bytes;
        for (const std::string& token : tokens) {
          std::string mapped;
          bool all_mapped = true;
          for (char32_t cp : unicode::decode_utf8(token)) {
            const auto byte = byte_level_byte(cp);
            if (!byte) {
              all_mapped = false;
              break;
            }
            mapped.push_back(static_cast<char>(*byte));
          }
          bytes += all_mapped ? mapped : token;  // a token outside the byte alphabet stays as it is
        }
        tokens = {unicode::utf8_lossy(bytes)};
        fused = true;
        break;
      }
      case Step::Kind::Metaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          const bool drop = i == 0 && at_sequence_start && step.strips_first;
          tokens[i] = replace_all(tokens[i], step.text, drop ? "" : " ");
        }
        break;
      case Step::Kind::Replace:
        for (std::string& token : tokens) token = replace_all(token, step.text, step.replacement);
        break;
      case Step::Kind::ByteFallback: {
        // A run of byte tokens becomes its text if it is valid UTF-8, else one U+FFFD per byte.
        std::vector<std::string> out;
        std::string run;
        auto end_run = [&] {
          if (run.empty()) return;
          if (unicode::utf8_lossy(run) == run) {
            out.push_back(run);
          } else {
            for (size_t k = 0; k < run.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
          }
          run.clear();
        };
        for (std::string& token : tokens) {
          if (const auto byte = fallback_byte(token)) {
            run.push_back(static_cast<char>(*byte));
          } else {
            end_run();
            out.push_back(std::move(token));
          }
        }
        end_run();
        tokens = std::move(out);
        break;
      }
      case Step::Kind::Fuse: {
        std::string joined;
        for (const std::string& token : tokens) joined += token;
        tokens = {joined};
        fused = true;
        break;
      }
      case Step::Kind::Strip:
        for (size_t i = 0; i < tokens.size(); ++i) {
          if (i == 0 && fused && !at_sequence_start) continue;  // the window continues earlier text
          size_t cut = 0;
          for (size_t n = 0; n < step.strip_start && tokens[i].compare(cut, step.text.size(), step.text) == 0; ++n) {
            cut += step.text.size();
          }
          tokens[i].erase(0, cut);
        }
        break;
    }
  }
  std::string out;
  for (const std::string& token : tokens) out += token;
  return out;
}

}  // namespace awq_edge::tokenizer
