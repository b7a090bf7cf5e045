#include "gcl/base/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace gcl {
namespace {

const std::string& EmptyString() {
  static const std::string* const kEmpty = new std::string();
  return *kEmpty;
}

absl::Status WrongType(JsonValue::Type want, JsonValue::Type got) {
  return absl::InvalidArgumentError(
      absl::StrCat("expected ", JsonTypeName(want), ", found ", JsonTypeName(got)));
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Recursive descent; pos_ always points at the next unread byte, which is the
// offset every error reports.
class Parser {
 public:
  Parser(std::string_view text, std::string_view source) : s_(text), source_(source) {}

  absl::StatusOr<JsonValue> Parse() {
    JsonValue v;
    if (!Value(&v, 0)) return error_;
    SkipWs();
    if (pos_ != s_.size()) {
      Fail("trailing characters after the value");
      return error_;
    }
    return v;
  }

 private:
  bool Fail(std::string_view what) {
    error_ = absl::InvalidArgumentError(
        absl::StrCat(std::string(source_), ": JSON error at byte ", pos_, ": ", std::string(what)));
    return false;
  }
  bool AtEnd() const { return pos_ >= s_.size(); }
  bool Peek(char c) const { return pos_ < s_.size() && s_[pos_] == c; }
  void SkipWs() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool Value(JsonValue* v, int depth) {
    SkipWs();
    if (AtEnd()) return Fail("unexpected end of input");
    const char c = s_[pos_];
    if (c == '{' || c == '[') {
      if (depth >= kMaxJsonDepth) return Fail("nesting too deep");
      return c == '{' ? Object(v, depth) : Array(v, depth);
    }
    if (c == '"') {
      std::string str;
      if (!String(&str)) return false;
      *v = JsonValue::String(std::move(str));
      return true;
    }
    if (c == '-' || IsDigit(c)) return Number(v);
    for (const auto& [lit, value] : {std::pair<std::string_view, int>{"true", 1},
                                     {"false", 0}, {"null", -1}}) {
      if (s_.substr(pos_, lit.size()) == lit) {
        pos_ += lit.size();
        *v = value < 0 ? JsonValue() : JsonValue::Bool(value == 1);
        return true;
      }
    }
    return Fail(absl::StrCat("unexpected character '", std::string(1, s_[pos_]), "'"));
  }

  bool Object(JsonValue* v, int depth) {
    ++pos_;  // {
    JsonValue::Object fields;
    SkipWs();
    if (Peek('}')) {
      ++pos_;
      *v = JsonValue::MakeObject(std::move(fields));
      return true;
    }
    while (true) {
      SkipWs();
      if (!Peek('"')) return Fail("expected a member name string");
      std::string key;
      if (!String(&key)) return false;
      SkipWs();
      if (!Peek(':')) return Fail("expected ':'");
      ++pos_;
      JsonValue item;
      if (!Value(&item, depth + 1)) return false;
      fields.emplace_back(std::move(key), std::move(item));
      SkipWs();
      if (Peek(',')) {
        ++pos_;
        continue;
      }
      if (Peek('}')) {
        ++pos_;
        *v = JsonValue::MakeObject(std::move(fields));
        return true;
      }
      return Fail("expected ',' or '}'");
    }
  }

  bool Array(JsonValue* v, int depth) {
    ++pos_;  // [
    JsonValue::Array items;
    SkipWs();
    if (Peek(']')) {
      ++pos_;
      *v = JsonValue::MakeArray(std::move(items));
      return true;
    }
    while (true) {
      JsonValue item;
      if (!Value(&item, depth + 1)) return false;
      items.push_back(std::move(item));
      SkipWs();
      if (Peek(',')) {
        ++pos_;
        continue;
      }
      if (Peek(']')) {
        ++pos_;
        *v = JsonValue::MakeArray(std::move(items));
        return true;
      }
      return Fail("expected ',' or ']'");
    }
  }

  bool Hex4(uint32_t* cp) {
    if (pos_ + 4 > s_.size()) return Fail("short \\u escape");
    *cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = s_[pos_];
      *cp <<= 4;
      if (h >= '0' && h <= '9') {
        *cp |= h - '0';
      } else if (h >= 'a' && h <= 'f') {
        *cp |= h - 'a' + 10;
      } else if (h >= 'A' && h <= 'F') {
        *cp |= h - 'A' + 10;
      } else {
        return Fail("bad hex digit in \\u escape");
      }
      ++pos_;
    }
    return true;
  }

  bool String(std::string* out) {
    ++pos_;  // opening quote
    while (pos_ < s_.size()) {
      const unsigned char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) return Fail("control character in string");
      ++pos_;
      if (c != '\\') {
        out->push_back(static_cast<char>(c));  // UTF-8 passes through
        continue;
      }
      if (AtEnd()) break;
      const char e = s_[pos_];
      switch (e) {
        case '"': case '\\': case '/': out->push_back(e); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          ++pos_;
          uint32_t cp = 0;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xDC00 && cp < 0xE000) {
            pos_ -= 6;
            return Fail("unpaired low surrogate");
          }
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (s_.substr(pos_, 2) != "\\u") return Fail("high surrogate without a low one");
            pos_ += 2;
            uint32_t lo = 0;
            if (!Hex4(&lo)) return false;
            if (lo < 0xDC00 || lo >= 0xE000) {
              pos_ -= 6;
              return Fail("high surrogate without a low one");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          AppendUtf8(cp, out);
          continue;  // pos_ is past the escape already
        }
        default:
          return Fail(absl::StrCat("bad escape '\\", std::string(1, s_[pos_]), "'"));
      }
      ++pos_;
    }
    return Fail("unterminated string");
  }

  // RFC 8259: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
  bool Number(JsonValue* v) {
    const size_t start = pos_;
    bool integral = true;
    if (Peek('-')) ++pos_;
    if (Peek('0')) {
      ++pos_;
    } else if (!AtEnd() && IsDigit(s_[pos_])) {
      while (!AtEnd() && IsDigit(s_[pos_])) ++pos_;
    } else {
      return Fail("bad number: expected a digit");
    }
    if (Peek('.')) {
      integral = false;
      ++pos_;
      if (AtEnd() || !IsDigit(s_[pos_])) return Fail("bad number: expected a digit after '.'");
      while (!AtEnd() && IsDigit(s_[pos_])) ++pos_;
    }
    if (Peek('e') || Peek('E')) {
      integral = false;
      ++pos_;
      if (Peek('+') || Peek('-')) ++pos_;
      if (AtEnd() || !IsDigit(s_[pos_])) return Fail("bad number: expected an exponent digit");
      while (!AtEnd() && IsDigit(s_[pos_])) ++pos_;
    }
    const std::string token(s_.substr(start, pos_ - start));
    // strtod rather than from_chars: it rounds out-of-range values to +-inf
    // or 0 instead of failing, which is what a reader of "1e999" expects.
    const double d = std::strtod(token.c_str(), nullptr);
    // "-0" stays the double -0.0 (an int64_t has no negative zero).
    if (integral && token != "-0") {
      int64_t i = 0;
      const auto res = std::from_chars(token.data(), token.data() + token.size(), i);
      if (res.ec == std::errc() && res.ptr == token.data() + token.size()) {
        *v = JsonValue::Integer(i);
        return true;
      }
    }
    *v = JsonValue::Number(d);
    return true;
  }

  std::string_view s_;
  std::string_view source_;
  size_t pos_ = 0;
  absl::Status error_;
};

void SerializeTo(const JsonValue& v, std::string* out) {
  switch (v.type()) {
    case JsonValue::Type::kNull: *out += "null"; break;
    case JsonValue::Type::kBool: *out += v.bool_value() ? "true" : "false"; break;
    case JsonValue::Type::kNumber:
      *out += v.is_integer() ? std::to_string(v.int_value()) : JsonNumberExact(v.number_value());
      break;
    case JsonValue::Type::kString: *out += JsonQuote(v.string_value()); break;
    case JsonValue::Type::kArray: {
      out->push_back('[');
      bool first = true;
      for (const JsonValue& item : v.items()) {
        if (!first) out->push_back(',');
        first = false;
        SerializeTo(item, out);
      }
      out->push_back(']');
      break;
    }
    case JsonValue::Type::kObject: {
      out->push_back('{');
      bool first = true;
      for (const auto& [key, item] : v.fields()) {
        if (!first) out->push_back(',');
        first = false;
        *out += JsonQuote(key);
        out->push_back(':');
        SerializeTo(item, out);
      }
      out->push_back('}');
      break;
    }
  }
}

}  // namespace

JsonValue JsonValue::Bool(bool b) {
  JsonValue v;
  v.type_ = Type::kBool;
  v.bool_ = b;
  return v;
}

JsonValue JsonValue::Number(double d) {
  JsonValue v;
  v.type_ = Type::kNumber;
  v.number_ = d;
  return v;
}

JsonValue JsonValue::Integer(int64_t i) {
  JsonValue v;
  v.type_ = Type::kNumber;
  v.number_ = static_cast<double>(i);
  v.integer_ = i;
  v.is_integer_ = true;
  return v;
}

JsonValue JsonValue::String(std::string s) {
  JsonValue v;
  v.type_ = Type::kString;
  v.string_ = std::move(s);
  return v;
}

JsonValue JsonValue::MakeArray(Array items) {
  JsonValue v;
  v.type_ = Type::kArray;
  v.array_ = std::move(items);
  return v;
}

JsonValue JsonValue::MakeObject(Object fields) {
  JsonValue v;
  v.type_ = Type::kObject;
  v.object_ = std::move(fields);
  return v;
}

const std::string& JsonValue::string_value() const {
  return is_string() ? string_ : EmptyString();
}

// array_ / object_ stay empty unless the type matches, so no check is needed.
const JsonValue::Array& JsonValue::items() const { return array_; }
const JsonValue::Object& JsonValue::fields() const { return object_; }

const JsonValue* JsonValue::Find(std::string_view key) const {
  for (auto it = object_.rbegin(); it != object_.rend(); ++it) {
    if (it->first == key) return &it->second;
  }
  return nullptr;
}

absl::StatusOr<bool> JsonValue::AsBool() const {
  if (!is_bool()) return WrongType(Type::kBool, type_);
  return bool_;
}

absl::StatusOr<double> JsonValue::AsNumber() const {
  if (!is_number()) return WrongType(Type::kNumber, type_);
  return number_;
}

absl::StatusOr<int64_t> JsonValue::AsInt64() const {
  if (!is_number()) return WrongType(Type::kNumber, type_);
  if (!is_integer_) return absl::InvalidArgumentError("expected an integer, found a non-integral number");
  return integer_;
}

absl::StatusOr<std::string> JsonValue::AsString() const {
  if (!is_string()) return WrongType(Type::kString, type_);
  return string_;
}

absl::StatusOr<const JsonValue::Array*> JsonValue::AsArray() const {
  if (!is_array()) return WrongType(Type::kArray, type_);
  return &array_;
}

absl::StatusOr<const JsonValue::Object*> JsonValue::AsObject() const {
  if (!is_object()) return WrongType(Type::kObject, type_);
  return &object_;
}

absl::StatusOr<const JsonValue*> JsonValue::Get(std::string_view key) const {
  if (!is_object()) return WrongType(Type::kObject, type_);
  const JsonValue* v = Find(key);
  if (v == nullptr) return absl::NotFoundError(absl::StrCat("no member \"", std::string(key), "\""));
  return v;
}

std::string JsonValue::Serialize() const {
  std::string out;
  SerializeTo(*this, &out);
  return out;
}

const char* JsonTypeName(JsonValue::Type type) {
  switch (type) {
    case JsonValue::Type::kNull: return "null";
    case JsonValue::Type::kBool: return "a bool";
    case JsonValue::Type::kNumber: return "a number";
    case JsonValue::Type::kString: return "a string";
    case JsonValue::Type::kArray: return "an array";
    case JsonValue::Type::kObject: return "an object";
  }
  return "?";
}

absl::StatusOr<JsonValue> ParseJson(std::string_view text, std::string_view source) {
  return Parser(text, source).Parse();
}

std::string JsonQuote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
  return out;
}

std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

std::string JsonNumberExact(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

}  // namespace gcl
