// The one JSON reader and writer of the code base (dataset.json,
// safetensors headers, metrics.jsonl, finetune.json, summary.json,
// experiment.json, registry event payloads).
//
// Reading: ParseJson is strict RFC 8259 (no comments, no trailing commas, no
// control characters inside strings, one value and nothing but whitespace
// after it), decodes \uXXXX escapes including surrogate pairs to UTF-8, and
// refuses nesting deeper than kMaxJsonDepth. Objects keep their members in
// file order; duplicate keys are kept, Find returns the last (as Python and
// JavaScript do).
//
// Writing: callers assemble documents themselves (their layouts differ) from
// JsonQuote and JsonNumber / JsonNumberExact.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gcl {

// At most this many arrays and objects nested in one another.
inline constexpr int kMaxJsonDepth = 64;

class JsonValue {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  using Array = std::vector<JsonValue>;
  using Object = std::vector<std::pair<std::string, JsonValue>>;  // file order

  JsonValue() = default;  // null
  static JsonValue Bool(bool b);
  static JsonValue Number(double v);
  static JsonValue Integer(int64_t v);  // a number that is_integer()
  static JsonValue String(std::string s);
  static JsonValue MakeArray(Array items);
  static JsonValue MakeObject(Object fields);

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }
  // A number written without fraction or exponent that fits int64_t
  // ("12", "-3"; not "-0", "12.0", "1e3" or "99999999999999999999").
  bool is_integer() const { return type_ == Type::kNumber && is_integer_; }

  // Lenient access: the value, or false / 0 / "" / empty when the type differs.
  bool bool_value() const { return is_bool() && bool_; }
  double number_value() const { return is_number() ? number_ : 0.0; }
  int64_t int_value() const { return is_integer() ? integer_ : 0; }  // exact
  const std::string& string_value() const;
  const Array& items() const;    // array elements
  const Object& fields() const;  // object members

  // The member `key` of an object (the last one if repeated); nullptr when
  // this is not an object or has no such member.
  const JsonValue* Find(std::string_view key) const;

  // Checked access: kInvalidArgument "expected a string, found a number".
  absl::StatusOr<bool> AsBool() const;
  absl::StatusOr<double> AsNumber() const;
  absl::StatusOr<int64_t> AsInt64() const;  // requires is_integer()
  absl::StatusOr<std::string> AsString() const;
  absl::StatusOr<const Array*> AsArray() const;
  absl::StatusOr<const Object*> AsObject() const;
  // Find(key), kNotFound "no member \"key\"" when absent (or not an object).
  absl::StatusOr<const JsonValue*> Get(std::string_view key) const;

  // Compact JSON text; numbers through JsonNumberExact (integers verbatim),
  // so Serialize(ParseJson(Serialize(v))) == Serialize(v).
  std::string Serialize() const;

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  bool is_integer_ = false;
  double number_ = 0.0;
  int64_t integer_ = 0;
  std::string string_;
  Array array_;
  Object object_;
};

// Name of a type for messages: "null", "a bool", "a number", "a string",
// "an array", "an object".
const char* JsonTypeName(JsonValue::Type type);

// Parses one JSON document. Errors are kInvalidArgument
// "<source>: JSON error at byte <offset>: <what>" (offset into `text`);
// callers that read files they wrote themselves map them to kDataLoss.
absl::StatusOr<JsonValue> ParseJson(std::string_view text, std::string_view source);

// `s` as a JSON string literal with quotes: escapes " and \ as \" \\, newline,
// carriage return and tab as \n \r \t, other bytes below 0x20 as \u00XX;
// every other byte (UTF-8 included) passes through.
std::string JsonQuote(std::string_view s);

// A finite double as "%.9g" (what metrics.jsonl, finetune.json and cells.csv
// have always held: 9 significant digits, exact for floats and integers
// below 1e9); NaN and infinities become null.
std::string JsonNumber(double v);

// A finite double as the shortest text that reads back to the same double
// (summary.json); NaN and infinities become null.
std::string JsonNumberExact(double v);

}  // namespace gcl
