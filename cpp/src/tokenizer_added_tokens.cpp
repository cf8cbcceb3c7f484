// tokenizer_added_tokens.cpp: finding added tokens (<|im_start|>, <s>, ...) in text before the
// model sees it, as `tokenizers` does: at the leftmost position where any matches, the longest;
// single_word tokens only between non-word characters; lstrip / rstrip tokens take the
// whitespace beside them along.
#include <algorithm>

#include "tokenizer_stages.h"
#include "unicode.h"

namespace awq_edge::tokenizer {

namespace {

char32_t code_point_before(std::string_view text, size_t at) {
  size_t start = at;
  while (start > 0 && (static_cast<uint8_t>(text[start - 1]) & 0xC0) == 0x80) --start;
  return start > 0 ? unicode::decode_utf8(text.substr(start - 1, at - start + 1))[0] : 0;
}

char32_t code_point_at(std::string_view text, size_t at) {
  if (at >= text.size()) return 0;
  return unicode::decode_utf8(text.substr(at, unicode::utf8_sequence_length(static_cast<uint8_t>(text[at]))))[0];
}

bool is_word_character(char32_t cp) { return cp == '_' || unicode::is_letter(cp) || unicode::is_number(cp); }

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<const AddedToken*> tokens, std::vector<std::string> patterns)
    : tokens_(std::move(tokens)), patterns_(std::move(patterns)), by_first_byte_(256) {
  for (size_t i = 0; i < patterns_.size(); ++i) {
    if (!patterns_[i].empty()) by_first_byte_[static_cast<uint8_t>(patterns_[i][0])].push_back(i);
  }
  for (auto& candidates : by_first_byte_) {
    std::stable_sort(candidates.begin(), candidates.end(),
                     [&](size_t a, size_t b) { return patterns_[a].size() > patterns_[b].size(); });
  }
}

void AddedTokenMatcher::split(const Piece& piece, std::vector<Segment>& out) const {
  const std::string_view text = piece.text;
  size_t text_start = 0;  // where the text not yet emitted begins
  auto emit_text = [&](size_t end) {
    if (end > text_start) out.push_back({{std::string(text.substr(text_start, end - text_start)),
                                          piece.at_text_start && text_start == 0}});
  };
  for (size_t at = 0; at < text.size();) {
    const std::vector<size_t>* candidates = tokens_.empty() ? nullptr : &by_first_byte_[static_cast<uint8_t>(text[at])];
    const size_t* match = nullptr;
    if (candidates) {
      for (const size_t& index : *candidates) {
        if (text.compare(at, patterns_[index].size(), patterns_[index]) == 0) {
          match = &index;
          break;
        }
      }
    }
    if (!match) {
      ++at;
      continue;
    }
    const AddedToken& token = *tokens_[*match];
    size_t start = at, end = at + patterns_[*match].size();
    at = end;
    if (token.single_word && (is_word_character(code_point_before(text, start)) ||
                              is_word_character(code_point_at(text, end)))) {
      continue;
    }
    if (token.lstrip) {
      while (start > text_start && unicode::is_whitespace(code_point_before(text, start))) {
        const char32_t cp = code_point_before(text, start);
        start -= cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
      }
    }
    if (token.rstrip) {
      while (end < text.size() && unicode::is_whitespace(code_point_at(text, end))) {
        end += unicode::utf8_sequence_length(static_cast<uint8_t>(text[end]));
      }
      at = end;
    }
    emit_text(start);
    out.push_back({{std::string(text.substr(start, end - start)), piece.at_text_start && start == 0}, token.id});
    text_start = end;
  }
  emit_text(text.size());
}

}  // namespace awq_edge::tokenizer
