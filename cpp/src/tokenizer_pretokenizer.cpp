// tokenizer_pretokenizer.cpp: splitting normalized text into the words the model tokenizes
// one by one: ByteLevel, Split, Metaspace, Digits and Sequence of them.
#include <array>

#include "tokenizer_stages.h"
#include "unicode.h"

namespace awq_edge::tokenizer {

namespace {

constexpr std::string_view kSupported = "ByteLevel, Split, Metaspace, Digits, Sequence";

struct ByteLevelTable {
  std::array<std::string, 256> chars;       // byte -> UTF-8 of its stand-in character
  std::array<int16_t, 512> bytes;           // stand-in code point (all < 512) -> byte, or -1
  ByteLevelTable() {
    bytes.fill(-1);
    int next_unprintable = 256;
    for (int byte = 0; byte < 256; ++byte) {
      const bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
      const int cp = printable ? byte : next_unprintable++;
      unicode::append_utf8(chars[byte], static_cast<char32_t>(cp));
      bytes[cp] = static_cast<int16_t>(byte);
    }
  }
};

const ByteLevelTable& byte_level_table() {
  static const ByteLevelTable table;
  return table;
}

// Replaces every piece by the pieces of the byte lengths `cut` gives (which cover it).
template <typename Cut>
void split_each(std::vector<Piece>& pieces, Cut cut) {
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (Piece& piece : pieces) {
    size_t at = 0;
    for (size_t length : cut(piece)) {
      if (length) out.push_back({piece.text.substr(at, length), piece.at_text_start && at == 0});
      at += length;
    }
  }
  pieces = std::move(out);
}

// Byte lengths of the runs where `boundary(previous, current)` does not cut between characters.
template <typename Boundary>
std::vector<size_t> cut_at(std::string_view text, Boundary boundary) {
  std::vector<size_t> lengths;
  size_t start = 0;
  char32_t previous = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t length = unicode::utf8_sequence_length(static_cast<uint8_t>(text[i]));
    const char32_t current = unicode::decode_utf8(text.substr(i, length))[0];
    if (i > 0 && boundary(previous, current)) {
      lengths.push_back(i - start);
      start = i;
    }
    previous = current;
    i += length;
  }
  lengths.push_back(text.size() - start);
  return lengths;
}

}  // namespace

const std::string& byte_level_char(uint8_t byte) { return byte_level_table().chars[byte]; }

std::optional<uint8_t> byte_level_byte(char32_t cp) {
  if (cp >= 512 || byte_level_table().bytes[cp] < 0) return std::nullopt;
  return static_cast<uint8_t>(byte_level_table().bytes[cp]);
}

PreTokenizer PreTokenizer::parse(const json::Value& pre_tokenizer) {
  PreTokenizer result;
  if (!pre_tokenizer.is_null()) result.add(pre_tokenizer);
  return result;
}

void PreTokenizer::add(const json::Value& pre_tokenizer) {
  const std::string where = "pre_tokenizer";
  const std::string type = type_of(pre_tokenizer, where);
  Step step{};
  if (type == "Sequence") {
    for (const json::Value& inner : member(pre_tokenizer, "pretokenizers", where).as_array()) add(inner);
    return;
  }
  if (type == "ByteLevel") {
    step.kind = Step::Kind::ByteLevel;
    step.add_prefix_space = bool_member(pre_tokenizer, "add_prefix_space", where, true);
    if (bool_member(pre_tokenizer, "use_regex", where, true)) step.pattern = SplitPattern::Gpt2;
  } else if (type == "Split") {
    step.kind = Step::Kind::Split;
    const json::Value& pattern = member(pre_tokenizer, "pattern", where);
    const json::Value* regex = pattern.find("Regex");
    if (!regex || !regex->is_string()) fail("pre_tokenizer Split: only {\"Regex\": ...} patterns are supported");
    step.pattern = known_split_pattern(regex->as_string());
    if (!step.pattern) {
      fail("pre_tokenizer Split: regex '" + regex->as_string() +
           "' is not supported (supported: the exact GPT-2, LLaMA-3 and Qwen2 patterns)");
    }
    const std::string behavior = string_member(pre_tokenizer, "behavior", where);
    if (behavior != "Isolated") fail("pre_tokenizer Split: behavior '" + behavior + "' is not supported (supported: Isolated)");
    if (bool_member(pre_tokenizer, "invert", where, false)) fail("pre_tokenizer Split: invert true is not supported");
  } else if (type == "Metaspace") {
    step.kind = Step::Kind::Metaspace;
    step.replacement = string_member(pre_tokenizer, "replacement", where);
    if (step.replacement.empty() || unicode::decode_utf8(step.replacement).size() != 1) {
      fail("pre_tokenizer Metaspace: replacement '" + step.replacement + "' is not one character");
    }
    step.split = bool_member(pre_tokenizer, "split", where, true);
    std::string scheme = "always";
    if (const json::Value* value = pre_tokenizer.find("prepend_scheme"); value && value->is_string()) {
      scheme = value->as_string();
    } else if (!bool_member(pre_tokenizer, "add_prefix_space", where, true)) {
      scheme = "never";
    }
    if (scheme == "always") step.prepend = Step::Prepend::Always;
    else if (scheme == "first") step.prepend = Step::Prepend::First;
    else if (scheme == "never") step.prepend = Step::Prepend::Never;
    else fail("pre_tokenizer Metaspace: prepend_scheme '" + scheme + "' is unknown (always, first, never)");
  } else if (type == "Digits") {
    step.kind = Step::Kind::Digits;
    step.individual_digits = bool_member(pre_tokenizer, "individual_digits", where, false);
  } else {
    fail("pre_tokenizer type '" + type + "' is not supported (supported: " + std::string(kSupported) + ")");
  }
  steps_.push_back(std::move(step));
}

void PreTokenizer::apply(std::vector<Piece>& pieces) const {
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::Kind::ByteLevel: {
        for (Piece& piece : pieces) {
          if (step.add_prefix_space && piece.text[0] != ' ') piece.text.insert(0, 1, ' ');
        }
        if (step.pattern) split_each(pieces, [&](const Piece& p) { return split_lengths(*step.pattern, p.text); });
        for (Piece& piece : pieces) {
          std::string mapped;
          mapped.reserve(piece.text.size() * 2);
          for (char byte : piece.text) mapped += byte_level_char(static_cast<uint8_t>(byte));
          piece.text = std::move(mapped);
        }
        break;
      }
      case Step::Kind::Split:
        split_each(pieces, [&](const Piece& p) { return split_lengths(*step.pattern, p.text); });
        break;
      case Step::Kind::Metaspace: {
        for (Piece& piece : pieces) {
          std::string replaced;
          for (char c : piece.text) {
            if (c == ' ') replaced += step.replacement;
            else replaced += c;
          }
          const bool starts = replaced.compare(0, step.replacement.size(), step.replacement) == 0;
          const bool prepend = step.prepend == Step::Prepend::Always ||
                               (step.prepend == Step::Prepend::First && piece.at_text_start);
          if (prepend && !starts) replaced.insert(0, step.replacement);
          piece.text = std::move(replaced);
        }
        if (step.split) {
          // Each replacement character starts a new piece ("MergedWithNext").
          const std::u32string marker = unicode::decode_utf8(step.replacement);
          split_each(pieces, [&](const Piece& p) {
            return cut_at(p.text, [&](char32_t, char32_t current) { return current == marker[0]; });
          });
        }
        break;
      }
      case Step::Kind::Digits:
        split_each(pieces, [&](const Piece& p) {
          return cut_at(p.text, [&](char32_t previous, char32_t current) {
            const bool was_digit = unicode::is_number(previous), is_digit = unicode::is_number(current);
            return was_digit != is_digit || (is_digit && step.individual_digits);
          });
        });
        break;
    }
  }
}

}  // namespace awq_edge::tokenizer
