// unicode.h: what the tokenizer needs from Unicode: UTF-8 decoding and encoding, the code point
// classes its split patterns use (\p{L}, \p{N}, \s) and NFC normalization. The tables are
// generated (tools/gen_unicode_tables.py -> unicode_tables.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace awq_edge::unicode {

// Bit flags; a code point may have none (punctuation, symbols, marks, ...).
enum CodePointClass : uint8_t { kLetter = 1, kNumber = 2, kWhitespace = 4 };

uint8_t code_point_class(char32_t cp);
inline bool is_letter(char32_t cp) { return code_point_class(cp) & kLetter; }
inline bool is_number(char32_t cp) { return code_point_class(cp) & kNumber; }
inline bool is_whitespace(char32_t cp) { return code_point_class(cp) & kWhitespace; }

// Decodes well-formed UTF-8 (callers validate first with json::is_valid_utf8).
std::u32string decode_utf8(std::string_view text);
void append_utf8(std::string& out, char32_t cp);
std::string encode_utf8(std::u32string_view text);

// The length of the UTF-8 sequence a lead byte starts (1 for continuation or invalid bytes).
size_t utf8_sequence_length(uint8_t lead);

// Bytes -> text the way Rust's String::from_utf8_lossy does it: each maximal ill-formed
// subsequence becomes one U+FFFD (Unicode's "substitution of maximal subparts").
std::string utf8_lossy(std::string_view bytes);

// Unicode Normalization Form C.
std::string nfc(std::string_view text);

namespace tables {
struct ClassRange { char32_t first, last; uint8_t bits; };
struct CombiningRange { char32_t first, last; uint8_t combining_class; };
struct Decomposition { char32_t code_point; uint16_t offset; uint8_t length; };
struct Composition { char32_t first, second, composite; };

extern const ClassRange kClassRanges[];
extern const size_t kClassRangeCount;
extern const CombiningRange kCombiningRanges[];
extern const size_t kCombiningRangeCount;
extern const Decomposition kDecompositions[];
extern const size_t kDecompositionCount;
extern const char32_t kDecompositionData[];
extern const Composition kCompositions[];
extern const size_t kCompositionCount;
}  // namespace tables

}  // namespace awq_edge::unicode
