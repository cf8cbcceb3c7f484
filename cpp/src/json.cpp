// json.cpp: the strict RFC 8259 parser behind awq_edge/json.h.
//
// A recursive-descent parser over a byte range; it never reads past the end of the input and
// never recurses deeper than max_depth. Errors name what was expected and the byte position.
#include "awq_edge/json.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <locale>
#include <sstream>

namespace awq_edge::json {

ParseError::ParseError(const std::string& message, size_t position)
    : std::runtime_error(message + " at byte " + std::to_string(position)), position_(position) {}

namespace {

// Appends code point `cp` (<= 0x10FFFF, not a surrogate) as UTF-8.
void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// The length (2..4) of the well-formed UTF-8 sequence at p (available bytes, p[0] >= 0x80),
// or 0 when it is malformed or truncated. RFC 3629: no overlongs, no surrogates, <= U+10FFFF.
size_t utf8_sequence_length(const char* p, size_t available) {
  const auto lead = static_cast<unsigned char>(p[0]);
  size_t length;
  unsigned char low = 0x80, high = 0xBF;  // allowed range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // overlong
    if (lead == 0xED) high = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // overlong
    if (lead == 0xF4) high = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (available < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    const auto c = static_cast<unsigned char>(p[i]);
    if (i == 1 ? (c < low || c > high) : (c < 0x80 || c > 0xBF)) return 0;
  }
  return length;
}

class Parser {
 public:
  Parser(std::string_view text, size_t max_depth) : text_(text), max_depth_(max_depth) {}

  Value parse_document() {
    skip_whitespace();
    Value value = parse_value(0);
    skip_whitespace();
    if (pos_ != text_.size()) fail("unexpected data after the JSON value");
    return value;
  }

 private:
  [[noreturn]] void fail(const std::string& message) const { throw ParseError(message, pos_); }

  bool at_end() const { return pos_ >= text_.size(); }
  unsigned char peek() const { return static_cast<unsigned char>(text_[pos_]); }

  void skip_whitespace() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++pos_;
  }

  void expect_literal(std::string_view literal) {
    if (text_.substr(pos_, literal.size()) != literal) fail("invalid literal (expected '" + std::string(literal) + "')");
    pos_ += literal.size();
  }

  Value parse_value(size_t depth) {
    if (at_end()) fail("unexpected end of input, expected a value");
    switch (peek()) {
      case '{': return parse_object(depth + 1);
      case '[': return parse_array(depth + 1);
      case '"': return Value(parse_string());
      case 't': expect_literal("true"); return Value(true);
      case 'f': expect_literal("false"); return Value(false);
      case 'n': expect_literal("null"); return Value();
      default:
        if (peek() == '-' || (peek() >= '0' && peek() <= '9')) return parse_number();
        fail("unexpected character '" + printable(peek()) + "', expected a value");
    }
  }

  static std::string printable(unsigned char c) {
    if (c >= 0x20 && c < 0x7F) return std::string(1, static_cast<char>(c));
    char hex[8];
    std::snprintf(hex, sizeof hex, "\\x%02X", c);
    return hex;
  }

  void enter(size_t depth) {
    if (depth > max_depth_) fail("nesting deeper than " + std::to_string(max_depth_) + " levels");
    ++pos_;  // the opening bracket
    skip_whitespace();
  }

  Value parse_object(size_t depth) {
    enter(depth);
    Value::Object members;
    if (!at_end() && peek() == '}') {
      ++pos_;
      return Value(std::move(members));
    }
    for (;;) {
      if (at_end() || peek() != '"') fail("expected a string key in the object");
      std::string key = parse_string();
      skip_whitespace();
      if (at_end() || peek() != ':') fail("expected ':' after the object key");
      ++pos_;
      skip_whitespace();
      members.emplace_back(std::move(key), parse_value(depth));
      skip_whitespace();
      if (at_end()) fail("unexpected end of input inside an object");
      if (peek() == ',') {
        ++pos_;
        skip_whitespace();
        continue;
      }
      if (peek() != '}') fail("expected ',' or '}' after an object member");
      ++pos_;
      check_unique_keys(members);
      return Value(std::move(members));
    }
  }

  // Sorting keys costs O(n log n); the tokenizer's vocabulary object has 10^5 members.
  void check_unique_keys(const Value::Object& members) const {
    std::vector<std::string_view> keys;
    keys.reserve(members.size());
    for (const auto& member : members) keys.emplace_back(member.first);
    std::sort(keys.begin(), keys.end());
    auto duplicate = std::adjacent_find(keys.begin(), keys.end());
    if (duplicate != keys.end()) fail("duplicate object key \"" + std::string(*duplicate) + "\" in the object ending");
  }

  Value parse_array(size_t depth) {
    enter(depth);
    Value::Array items;
    if (!at_end() && peek() == ']') {
      ++pos_;
      return Value(std::move(items));
    }
    for (;;) {
      items.push_back(parse_value(depth));
      skip_whitespace();
      if (at_end()) fail("unexpected end of input inside an array");
      if (peek() == ',') {
        ++pos_;
        skip_whitespace();
        continue;
      }
      if (peek() != ']') fail("expected ',' or ']' after an array element");
      ++pos_;
      return Value(std::move(items));
    }
  }

  // Four hex digits after "\u".
  uint32_t parse_hex4() {
    if (text_.size() - pos_ < 4) fail("truncated \\u escape");
    uint32_t value = 0;
    for (int i = 0; i < 4; ++i) {
      unsigned char c = peek();
      uint32_t digit;
      if (c >= '0' && c <= '9') digit = c - '0';
      else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
      else fail("invalid hex digit in \\u escape");
      value = value * 16 + digit;
      ++pos_;
    }
    return value;
  }

  // One UTF-8 sequence starting at a byte >= 0x80, validated and copied to `out`.
  void copy_utf8_sequence(std::string& out) {
    const size_t length = utf8_sequence_length(text_.data() + pos_, text_.size() - pos_);
    if (length == 0) fail("invalid UTF-8 sequence starting with byte " + printable(peek()));
    out.append(text_.data() + pos_, length);
    pos_ += length;
  }

  std::string parse_string() {
    ++pos_;  // the opening quote
    std::string out;
    for (;;) {
      // Copy the longest run of plain ASCII in one go.
      size_t run = pos_;
      while (run < text_.size()) {
        const auto c = static_cast<unsigned char>(text_[run]);
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
        ++run;
      }
      out.append(text_.data() + pos_, run - pos_);
      pos_ = run;
      if (at_end()) fail("unterminated string");
      const unsigned char c = peek();
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail("unescaped control character " + printable(c) + " in a string");
      if (c >= 0x80) {
        copy_utf8_sequence(out);
        continue;
      }
      ++pos_;  // the backslash
      if (at_end()) fail("unterminated escape");
      const char escape = static_cast<char>(peek());
      ++pos_;
      switch (escape) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': append_utf8(out, parse_unicode_escape()); break;
        default: --pos_; fail("invalid escape '\\" + printable(static_cast<unsigned char>(escape)) + "'");
      }
    }
  }

  // After "\u": one code point, joining a surrogate pair "\ud83d\ude00" into U+1F600.
  uint32_t parse_unicode_escape() {
    const uint32_t first = parse_hex4();
    if (first >= 0xDC00 && first <= 0xDFFF) fail("lone low surrogate in \\u escape");
    if (first < 0xD800 || first > 0xDBFF) return first;
    if (text_.substr(pos_, 2) != "\\u") fail("high surrogate not followed by a \\u low surrogate");
    pos_ += 2;
    const uint32_t second = parse_hex4();
    if (second < 0xDC00 || second > 0xDFFF) fail("high surrogate not followed by a low surrogate");
    return 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  Value parse_number() {
    const size_t start = pos_;
    auto digit = [this] { return !at_end() && peek() >= '0' && peek() <= '9'; };
    auto digits = [&] {
      if (!digit()) fail("expected a digit");
      while (digit()) ++pos_;
    };
    const bool negative = peek() == '-';
    if (negative) ++pos_;
    if (!at_end() && peek() == '0') {
      ++pos_;
      if (digit()) fail("leading zero in a number");
    } else {
      digits();
    }
    bool integral = true;
    if (!at_end() && peek() == '.') {
      ++pos_;
      digits();
      integral = false;
    }
    if (!at_end() && (peek() == 'e' || peek() == 'E')) {
      ++pos_;
      if (!at_end() && (peek() == '+' || peek() == '-')) ++pos_;
      digits();
      integral = false;
    }
    const char* begin = text_.data() + start;
    const char* end = text_.data() + pos_;
    if (integral) {
      // Accumulate the magnitude; fall back to double when it does not fit in int64.
      uint64_t magnitude = 0;
      bool fits = true;
      for (const char* p = begin + (negative ? 1 : 0); p < end; ++p) {
        const auto d = static_cast<uint64_t>(*p - '0');
        if (magnitude > (UINT64_MAX - d) / 10) {
          fits = false;
          break;
        }
        magnitude = magnitude * 10 + d;
      }
      const uint64_t limit = negative ? uint64_t{1} << 63 : (uint64_t{1} << 63) - 1;
      if (fits && magnitude <= limit) {
        return Value(negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude));
      }
    }
    return Value(parse_double(begin, end, start));
  }

  // Locale-independent: JSON's '.' is the decimal point whatever the process locale says.
  double parse_double(const char* begin, const char* end, size_t start) {
    double value = 0;
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
    const auto result = std::from_chars(begin, end, value);
    const bool ok = result.ec == std::errc() && result.ptr == end;
#else
    std::istringstream stream(std::string(begin, end));
    stream.imbue(std::locale::classic());
    stream >> value;
    const bool ok = !stream.fail();
#endif
    if (!ok) {
      pos_ = start;
      fail("number " + std::string(begin, end) + " is out of the range of a double");
    }
    return value;
  }

  std::string_view text_;
  size_t max_depth_;
  size_t pos_ = 0;
};

}  // namespace

Value Value::parse(std::string_view text, size_t max_depth) { return Parser(text, max_depth).parse_document(); }

const char* Value::type_name() const {
  static constexpr const char* kNames[] = {"null", "boolean", "integer", "number", "string", "array", "object"};
  return kNames[data_.index()];
}

namespace {
[[noreturn]] void wrong_type(const Value& value, const char* wanted) {
  throw TypeError(std::string("JSON: expected ") + wanted + ", found " + value.type_name());
}
}  // namespace

bool Value::as_bool() const {
  if (!is_bool()) wrong_type(*this, "a boolean");
  return std::get<bool>(data_);
}

int64_t Value::as_int() const {
  if (!is_int()) wrong_type(*this, "an integer");
  return std::get<int64_t>(data_);
}

double Value::as_double() const {
  if (is_int()) return static_cast<double>(std::get<int64_t>(data_));
  if (type() != Type::Double) wrong_type(*this, "a number");
  return std::get<double>(data_);
}

const std::string& Value::as_string() const {
  if (!is_string()) wrong_type(*this, "a string");
  return std::get<std::string>(data_);
}

const Value::Array& Value::as_array() const {
  if (!is_array()) wrong_type(*this, "an array");
  return std::get<Array>(data_);
}

const Value::Object& Value::as_object() const {
  if (!is_object()) wrong_type(*this, "an object");
  return std::get<Object>(data_);
}

const Value* Value::find(std::string_view key) const {
  if (!is_object()) return nullptr;
  for (const auto& member : std::get<Object>(data_)) {
    if (member.first == key) return &member.second;
  }
  return nullptr;
}

bool is_valid_utf8(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const size_t length = utf8_sequence_length(text.data() + pos, text.size() - pos);
    if (length == 0) return false;
    pos += length;
  }
  return true;
}

}  // namespace awq_edge::json
