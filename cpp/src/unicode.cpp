// unicode.cpp: UTF-8 coding, code point classes and NFC over the generated tables.
#include "unicode.h"

#include <algorithm>

namespace awq_edge::unicode {

namespace {

// Hangul syllables compose and decompose by arithmetic (Unicode chapter 3.12), not by table.
constexpr char32_t kHangulBase = 0xAC00, kLeadBase = 0x1100, kVowelBase = 0x1161, kTrailBase = 0x11A7;
constexpr char32_t kVowelCount = 21, kTrailCount = 28, kSyllableCount = 11172;

uint8_t combining_class(char32_t cp) {
  if (cp < 0x300) return 0;
  const auto* end = tables::kCombiningRanges + tables::kCombiningRangeCount;
  const auto* range = std::upper_bound(tables::kCombiningRanges, end, cp,
                                       [](char32_t value, const auto& r) { return value < r.first; });
  if (range == tables::kCombiningRanges) return 0;
  --range;
  return cp <= range->last ? range->combining_class : 0;
}

void append_decomposition(std::u32string& out, char32_t cp) {
  if (cp >= kHangulBase && cp < kHangulBase + kSyllableCount) {
    const char32_t index = cp - kHangulBase;
    out.push_back(kLeadBase + index / (kVowelCount * kTrailCount));
    out.push_back(kVowelBase + (index % (kVowelCount * kTrailCount)) / kTrailCount);
    if (index % kTrailCount) out.push_back(kTrailBase + index % kTrailCount);
    return;
  }
  const auto* end = tables::kDecompositions + tables::kDecompositionCount;
  const auto* found = std::lower_bound(tables::kDecompositions, end, cp,
                                       [](const auto& d, char32_t value) { return d.code_point < value; });
  if (found == end || found->code_point != cp) {
    out.push_back(cp);
    return;
  }
  out.append(tables::kDecompositionData + found->offset, found->length);
}

// The primary composite of (first, second), or 0.
char32_t compose_pair(char32_t first, char32_t second) {
  if (first >= kLeadBase && first < kLeadBase + 19 && second >= kVowelBase && second < kVowelBase + kVowelCount) {
    return kHangulBase + ((first - kLeadBase) * kVowelCount + (second - kVowelBase)) * kTrailCount;
  }
  if (first >= kHangulBase && first < kHangulBase + kSyllableCount && (first - kHangulBase) % kTrailCount == 0 &&
      second > kTrailBase && second < kTrailBase + kTrailCount) {
    return first + (second - kTrailBase);
  }
  const auto* end = tables::kCompositions + tables::kCompositionCount;
  const auto* found = std::lower_bound(tables::kCompositions, end, std::make_pair(first, second),
                                       [](const auto& c, const std::pair<char32_t, char32_t>& key) {
                                         return std::make_pair(c.first, c.second) < key;
                                       });
  return found != end && found->first == first && found->second == second ? found->composite : 0;
}

}  // namespace

uint8_t code_point_class(char32_t cp) {
  if (cp < 0x80) {
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return kWhitespace;
    if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return kLetter;
    return cp >= '0' && cp <= '9' ? kNumber : 0;
  }
  const auto* end = tables::kClassRanges + tables::kClassRangeCount;
  const auto* range = std::upper_bound(tables::kClassRanges, end, cp,
                                       [](char32_t value, const auto& r) { return value < r.first; });
  if (range == tables::kClassRanges) return 0;
  --range;
  return cp <= range->last ? range->bits : 0;
}

size_t utf8_sequence_length(uint8_t lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return lead < 0xF8 ? 4 : 1;
}

std::u32string decode_utf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const auto lead = static_cast<uint8_t>(text[i]);
    const size_t length = utf8_sequence_length(lead);
    char32_t cp = length == 1 ? lead : lead & (0x7F >> length);
    for (size_t k = 1; k < length && i + k < text.size(); ++k) cp = (cp << 6) | (text[i + k] & 0x3F);
    out.push_back(cp);
    i += length;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : text) append_utf8(out, cp);
  return out;
}

namespace {

// How many bytes of `bytes` from `at` form a well-formed prefix of one UTF-8 sequence, and
// whether that sequence is complete (Unicode Table 3-7).
struct SequenceCheck {
  size_t valid_bytes;
  bool complete;
};

SequenceCheck check_sequence(std::string_view bytes, size_t at) {
  const auto lead = static_cast<uint8_t>(bytes[at]);
  if (lead < 0x80) return {1, true};
  size_t length = 0;
  uint8_t low = 0x80, high = 0xBF;  // the range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;
    if (lead == 0xED) high = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;
  } else {
    return {0, false};
  }
  size_t valid = 1;
  for (; valid < length && at + valid < bytes.size(); ++valid) {
    const auto byte = static_cast<uint8_t>(bytes[at + valid]);
    const uint8_t min = valid == 1 ? low : 0x80, max = valid == 1 ? high : 0xBF;
    if (byte < min || byte > max) return {valid, false};
  }
  return {valid, valid == length};
}

}  // namespace

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    const SequenceCheck check = check_sequence(bytes, i);
    if (check.complete) {
      out.append(bytes.substr(i, check.valid_bytes));
    } else {
      out.append("\xEF\xBF\xBD");
    }
    i += std::max<size_t>(check.valid_bytes, 1);
  }
  return out;
}

std::string nfc(std::string_view text) {
  if (std::all_of(text.begin(), text.end(), [](char c) { return static_cast<uint8_t>(c) < 0x80; })) {
    return std::string(text);
  }
  std::u32string decomposed;
  for (char32_t cp : decode_utf8(text)) append_decomposition(decomposed, cp);
  // Canonical ordering: a stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < decomposed.size();) {
    if (combining_class(decomposed[i]) == 0) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < decomposed.size() && combining_class(decomposed[end]) != 0) ++end;
    std::stable_sort(decomposed.begin() + i, decomposed.begin() + end,
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = end;
  }
  // Canonical composition: each character joins the last starter unless blocked.
  std::u32string composed;
  size_t starter = std::u32string::npos;
  uint8_t last_class = 0;
  for (char32_t cp : decomposed) {
    const uint8_t cls = combining_class(cp);
    if (starter != std::u32string::npos) {
      const bool blocked = composed.size() - 1 != starter && (last_class == 0 || last_class >= cls);
      if (!blocked) {
        if (const char32_t composite = compose_pair(composed[starter], cp)) {
          composed[starter] = composite;
          continue;
        }
      }
    }
    if (cls == 0) starter = composed.size();
    last_class = cls;
    composed.push_back(cp);
  }
  return encode_utf8(composed);
}

}  // namespace awq_edge::unicode
