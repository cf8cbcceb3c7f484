// json.h: a small JSON value type and a strict RFC 8259 parser, for the metadata of .awqe
// files (the model config, the tokenizer, the quantization settings).
//
// Strict means: one value and nothing after it but whitespace; UTF-8 input, validated;
// no comments, trailing commas, NaN/Infinity, leading zeros or lone surrogates (\ud800);
// duplicate object keys are rejected. Integers without fraction or exponent that fit in
// int64 are kept exact; every other number is a double.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace awq_edge::json {

// A syntax error; what() ends with "at byte <position>".
class ParseError : public std::runtime_error {
 public:
  ParseError(const std::string& message, size_t position);
  size_t position() const { return position_; }

 private:
  size_t position_;
};

// Asking a value for the wrong type (as_int() of a string, ...).
class TypeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Value {
 public:
  enum class Type { Null, Bool, Int, Double, String, Array, Object };
  using Array = std::vector<Value>;
  using Object = std::vector<std::pair<std::string, Value>>;  // members in document order

  // Parses exactly one JSON text. Nesting deeper than max_depth is an error (no stack overflow).
  static Value parse(std::string_view text, size_t max_depth = 256);

  Value() = default;  // null
  explicit Value(bool value) : data_(value) {}
  explicit Value(int64_t value) : data_(value) {}
  explicit Value(double value) : data_(value) {}
  explicit Value(std::string value) : data_(std::move(value)) {}
  explicit Value(Array value) : data_(std::move(value)) {}
  explicit Value(Object value) : data_(std::move(value)) {}

  Type type() const { return static_cast<Type>(data_.index()); }
  const char* type_name() const;  // "null", "boolean", "integer", "number", "string", "array", "object"
  bool is_null() const { return type() == Type::Null; }
  bool is_bool() const { return type() == Type::Bool; }
  bool is_int() const { return type() == Type::Int; }
  bool is_number() const { return type() == Type::Int || type() == Type::Double; }
  bool is_string() const { return type() == Type::String; }
  bool is_array() const { return type() == Type::Array; }
  bool is_object() const { return type() == Type::Object; }

  // Typed access; throws TypeError on the wrong type. as_double() accepts integers too.
  bool as_bool() const;
  int64_t as_int() const;
  double as_double() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;

  // The member `key` of an object, or nullptr (also for non-objects). Linear in the member count.
  const Value* find(std::string_view key) const;

 private:
  // Alternative order matches Type.
  std::variant<std::monostate, bool, int64_t, double, std::string, Array, Object> data_;
};

// True when `text` is well-formed UTF-8 (RFC 3629: no overlongs, surrogates or code points
// above U+10FFFF).
bool is_valid_utf8(std::string_view text);

}  // namespace awq_edge::json
