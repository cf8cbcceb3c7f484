// tokenizer_split_patterns.cpp: the pre-tokenizer regular expressions of GPT-2, LLaMA-3 and
// Qwen2, written out as matchers over code points instead of run by a regex engine.
//
// Each matcher follows its regex alternative by alternative, in order, with the backtracking
// the regex engine (Oniguruma, in `tokenizers`) would do spelled out where it matters:
//   \s+(?!\S)    a whitespace run followed by a non-space gives all but its last character
//                (which then starts the next piece, e.g. " word"); at the end of text, all of it.
//   \s*[\r\n]+   a whitespace run up to and including its last \r or \n.

#include "tokenizer_stages.h"
#include "unicode.h"

namespace awq_edge::tokenizer {

namespace {

constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

using unicode::kLetter;
using unicode::kNumber;
using unicode::kWhitespace;

// The text as code points with their classes; past the end reads as class 0, code point 0.
class Text {
 public:
  explicit Text(std::string_view utf8) : cps_(unicode::decode_utf8(utf8)) {
    classes_.reserve(cps_.size());
    for (char32_t cp : cps_) classes_.push_back(unicode::code_point_class(cp));
  }
  size_t size() const { return cps_.size(); }
  char32_t at(size_t i) const { return i < cps_.size() ? cps_[i] : 0; }
  uint8_t cls(size_t i) const { return i < cps_.size() ? classes_[i] : 0; }
  bool letter(size_t i) const { return cls(i) & kLetter; }
  bool number(size_t i) const { return cls(i) & kNumber; }
  bool space(size_t i) const { return cls(i) & kWhitespace; }
  bool other(size_t i) const { return i < size() && cls(i) == 0; }  // [^\s\p{L}\p{N}]
  bool newline(size_t i) const { return at(i) == '\r' || at(i) == '\n'; }
  const std::u32string& code_points() const { return cps_; }

 private:
  std::u32string cps_;
  std::vector<uint8_t> classes_;
};

template <typename Predicate>
size_t run_end(const Text& t, size_t i, Predicate in_run) {
  while (i < t.size() && in_run(i)) ++i;
  return i;
}

// 's 't 're 've 'm 'll 'd; the end of the match or 0. Case-insensitive as (?i:...) is, where
// Unicode case folding also lets U+017F (long s) match s.
size_t contraction_end(const Text& t, size_t i, bool ignore_case) {
  if (t.at(i) != '\'') return 0;
  auto is = [&](size_t k, char lower) {
    const char32_t c = t.at(k);
    if (c == static_cast<char32_t>(lower)) return true;
    if (!ignore_case) return false;
    return c == static_cast<char32_t>(lower - 'a' + 'A') || (lower == 's' && c == 0x17F);
  };
  if (is(i + 1, 's') || is(i + 1, 't') || is(i + 1, 'm') || is(i + 1, 'd')) return i + 2;
  if ((is(i + 1, 'r') || is(i + 1, 'v')) && is(i + 2, 'e')) return i + 3;
  if (is(i + 1, 'l') && is(i + 2, 'l')) return i + 3;
  return 0;
}

// The two whitespace alternatives every pattern ends with: \s+(?!\S)|\s+
size_t whitespace_end(const Text& t, size_t i) {
  const size_t end = run_end(t, i, [&](size_t k) { return t.space(k); });
  if (end == t.size() || end - i <= 1) return end;
  return end - 1;
}

size_t gpt2_match_end(const Text& t, size_t i) {
  if (size_t end = contraction_end(t, i, false)) return end;
  const size_t body = t.at(i) == ' ' ? i + 1 : i;  // after the optional space of " ?X+"; a
                                                  // space before no X matches as whitespace
  for (auto in_class : {&Text::letter, &Text::number, &Text::other}) {
    if ((t.*in_class)(body)) return run_end(t, body, [&](size_t k) { return (t.*in_class)(k); });
  }
  return whitespace_end(t, i);
}

// LLaMA-3 (max_digits 3) and Qwen2 (max_digits 1).
size_t llama3_match_end(const Text& t, size_t i, size_t max_digits) {
  if (size_t end = contraction_end(t, i, true)) return end;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  const bool may_lead = i < t.size() && !t.newline(i) && !t.letter(i) && !t.number(i);
  if (may_lead && t.letter(i + 1)) return run_end(t, i + 1, [&](size_t k) { return t.letter(k); });
  if (t.letter(i)) return run_end(t, i, [&](size_t k) { return t.letter(k); });
  // \p{N}{1,max}
  if (t.number(i)) {
    size_t end = i;
    while (end < t.size() && end - i < max_digits && t.number(end)) ++end;
    return end;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  const size_t body = t.at(i) == ' ' && t.other(i + 1) ? i + 1 : i;
  if (t.other(body)) {
    const size_t end = run_end(t, body, [&](size_t k) { return t.other(k); });
    return run_end(t, end, [&](size_t k) { return t.newline(k); });
  }
  // \s*[\r\n]+
  const size_t end = run_end(t, i, [&](size_t k) { return t.space(k); });
  for (size_t k = end; k > i; --k) {
    if (t.newline(k - 1)) return k;
  }
  return whitespace_end(t, i);
}

}  // namespace

std::optional<SplitPattern> known_split_pattern(std::string_view regex) {
  if (regex == kGpt2Regex) return SplitPattern::Gpt2;
  if (regex == kLlama3Regex) return SplitPattern::Llama3;
  if (regex == kQwen2Regex) return SplitPattern::Qwen2;
  return std::nullopt;
}

std::vector<size_t> split_lengths(SplitPattern pattern, std::string_view text) {
  const Text t(text);
  std::vector<size_t> lengths;
  for (size_t i = 0; i < t.size();) {
    size_t end = 0;
    switch (pattern) {
      case SplitPattern::Gpt2: end = gpt2_match_end(t, i); break;
      case SplitPattern::Llama3: end = llama3_match_end(t, i, 3); break;
      case SplitPattern::Qwen2: end = llama3_match_end(t, i, 1); break;
    }
    // Every code point is a letter, number, whitespace or other, and each pattern matches each
    // of those, so every match is nonempty and there are no gaps.
    if (end <= i) end = i + 1;
    size_t bytes = 0;
    for (size_t k = i; k < end; ++k) {
      const char32_t cp = t.code_points()[k];
      bytes += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    }
    lengths.push_back(bytes);
    i = end;
  }
  return lengths;
}

}  // namespace awq_edge::tokenizer
