// Tests for the shared JSON reader and writers (proto/gcl/base/json.h).
// Byte offsets in the expected errors are counted by hand from the literals
// (0-based: the offset of the byte the parser stopped at).
#include "gcl/base/json.h"

#include <cmath>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace gcl {
namespace {

using ::gcl::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

JsonValue MustParse(std::string_view text) {
  absl::StatusOr<JsonValue> v = ParseJson(text, "test");
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : JsonValue();
}

std::string ErrorOf(std::string_view text) {
  absl::StatusOr<JsonValue> v = ParseJson(text, "src.json");
  EXPECT_FALSE(v.ok()) << text;
  EXPECT_EQ(v.status().code(), kInvalid) << text;
  return std::string(v.status().message());
}

TEST(JsonQuoteTest, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(JsonQuote(""), "\"\"");
  EXPECT_EQ(JsonQuote("plain"), "\"plain\"");
  EXPECT_EQ(JsonQuote("a\"b\\c/d"), "\"a\\\"b\\\\c/d\"");
  EXPECT_EQ(JsonQuote("\n\r\t"), "\"\\n\\r\\t\"");
  EXPECT_EQ(JsonQuote(std::string("\x00\x01\x08\x0c\x1f\x20", 6)),
            "\"\\u0000\\u0001\\u0008\\u000c\\u001f \"");
  // DEL and UTF-8 pass through unchanged.
  EXPECT_EQ(JsonQuote("\x7f\xc3\xa9\xf0\x9f\x98\x80"), "\"\x7f\xc3\xa9\xf0\x9f\x98\x80\"");
}

TEST(JsonQuoteTest, EveryByteRoundTrips) {
  std::string all;
  for (int c = 0; c < 0x80; ++c) all.push_back(static_cast<char>(c));
  all += "\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";  // é € 😀
  GCL_ASSERT_OK_AND_ASSIGN(JsonValue v, ParseJson(JsonQuote(all), "quoted"));
  ASSERT_TRUE(v.is_string());
  EXPECT_EQ(v.string_value(), all);
}

TEST(ParseJsonTest, UnicodeEscapesAndSurrogatePairs) {
  EXPECT_EQ(MustParse(R"("\u0041\u00e9\u20AC")").string_value(), "A\xc3\xa9\xe2\x82\xac");
  EXPECT_EQ(MustParse(R"("\ud83d\ude00")").string_value(), "\xf0\x9f\x98\x80");  // U+1F600
  EXPECT_EQ(MustParse(R"("\uD834\uDD1E")").string_value(), "\xf0\x9d\x84\x9e");  // U+1D11E
  EXPECT_EQ(MustParse(R"("\udbff\udfff")").string_value(), "\xf4\x8f\xbf\xbf");  // U+10FFFF
  EXPECT_EQ(MustParse(R"("\u0000")").string_value(), std::string(1, '\0'));
  EXPECT_EQ(MustParse(R"("\"\\\/\b\f\n\r\t")").string_value(), "\"\\/\b\f\n\r\t");
  // Raw UTF-8 passes through.
  EXPECT_EQ(MustParse("\"\xc3\xa9\"").string_value(), "\xc3\xa9");
}

TEST(ParseJsonTest, Numbers) {
  JsonValue v = MustParse("0");
  EXPECT_TRUE(v.is_integer());
  EXPECT_EQ(v.int_value(), 0);
  v = MustParse("-12");
  EXPECT_TRUE(v.is_integer());
  EXPECT_EQ(v.int_value(), -12);
  EXPECT_EQ(v.number_value(), -12.0);
  // Integers keep all 64 bits; the double view rounds.
  v = MustParse("9007199254740993");
  EXPECT_EQ(v.int_value(), int64_t{9007199254740993});
  EXPECT_EQ(v.number_value(), 9007199254740992.0);
  v = MustParse("-9223372036854775808");
  EXPECT_EQ(v.int_value(), std::numeric_limits<int64_t>::min());
  // Out of int64_t range: a number, not an integer.
  v = MustParse("99999999999999999999");
  EXPECT_TRUE(v.is_number());
  EXPECT_FALSE(v.is_integer());
  EXPECT_EQ(v.number_value(), 1e20);
  // Fractions and exponents are never integers.
  v = MustParse("12.0");
  EXPECT_FALSE(v.is_integer());
  EXPECT_EQ(v.number_value(), 12.0);
  EXPECT_EQ(MustParse("1e3").number_value(), 1000.0);
  EXPECT_FALSE(MustParse("1e3").is_integer());
  EXPECT_EQ(MustParse("1E+2").number_value(), 100.0);
  EXPECT_EQ(MustParse("-2.5e-3").number_value(), -0.0025);
  EXPECT_EQ(MustParse("0.1").number_value(), 0.1);
  // Negative zero keeps its sign.
  v = MustParse("-0");
  EXPECT_TRUE(v.is_number());
  EXPECT_FALSE(v.is_integer());
  EXPECT_EQ(v.number_value(), 0.0);
  EXPECT_TRUE(std::signbit(v.number_value()));
  EXPECT_TRUE(std::signbit(MustParse("-0.0").number_value()));
  EXPECT_EQ(v.Serialize(), "-0");
}

TEST(ParseJsonTest, NestedArraysAndObjectsKeepOrder) {
  GCL_ASSERT_OK_AND_ASSIGN(
      JsonValue doc,
      ParseJson(" {\"z\": [1, {\"b\": [true, false, null]}, \"x\"],\n\t\"a\": {}, \"e\": []}\r\n", "t"));
  ASSERT_TRUE(doc.is_object());
  ASSERT_EQ(doc.fields().size(), 3u);
  EXPECT_EQ(doc.fields()[0].first, "z");
  EXPECT_EQ(doc.fields()[1].first, "a");
  EXPECT_EQ(doc.fields()[2].first, "e");
  const JsonValue* z = doc.Find("z");
  ASSERT_NE(z, nullptr);
  ASSERT_TRUE(z->is_array());
  ASSERT_EQ(z->items().size(), 3u);
  EXPECT_EQ(z->items()[0].int_value(), 1);
  const JsonValue* b = z->items()[1].Find("b");
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(b->items().size(), 3u);
  EXPECT_TRUE(b->items()[0].is_bool());
  EXPECT_TRUE(b->items()[0].bool_value());
  EXPECT_FALSE(b->items()[1].bool_value());
  EXPECT_TRUE(b->items()[2].is_null());
  EXPECT_EQ(z->items()[2].string_value(), "x");
  EXPECT_TRUE(doc.Find("a")->is_object());
  EXPECT_TRUE(doc.Find("a")->fields().empty());
  EXPECT_TRUE(doc.Find("e")->items().empty());
  EXPECT_EQ(doc.Find("nope"), nullptr);
  EXPECT_EQ(z->Find("z"), nullptr);  // not an object
  EXPECT_EQ(doc.Serialize(), "{\"z\":[1,{\"b\":[true,false,null]},\"x\"],\"a\":{},\"e\":[]}");
  // Serialize -> parse -> serialize is a fixed point.
  GCL_ASSERT_OK_AND_ASSIGN(JsonValue again, ParseJson(doc.Serialize(), "t2"));
  EXPECT_EQ(again.Serialize(), doc.Serialize());
}

TEST(ParseJsonTest, DuplicateKeysAreKeptAndFindReturnsTheLast) {
  JsonValue doc = MustParse(R"({"k": 1, "k": 2})");
  EXPECT_EQ(doc.fields().size(), 2u);
  EXPECT_EQ(doc.Find("k")->int_value(), 2);
}

TEST(JsonValueTest, CheckedAccessorsNameBothTypes) {
  JsonValue doc = MustParse(R"({"n": 1.5, "i": 7, "s": "x", "a": [1], "t": true})");
  EXPECT_THAT(doc.Find("n")->AsString(), StatusIs(kInvalid, "expected a string, found a number"));
  EXPECT_THAT(doc.Find("s")->AsNumber(), StatusIs(kInvalid, "expected a number, found a string"));
  EXPECT_THAT(doc.Find("n")->AsInt64(), StatusIs(kInvalid, "expected an integer"));
  EXPECT_THAT(doc.Find("a")->AsObject(), StatusIs(kInvalid, "expected an object, found an array"));
  EXPECT_THAT(doc.Find("t")->AsArray(), StatusIs(kInvalid, "expected an array, found a bool"));
  EXPECT_THAT(doc.Find("i")->AsBool(), StatusIs(kInvalid, "expected a bool, found a number"));
  EXPECT_THAT(doc.Get("missing"), StatusIs(absl::StatusCode::kNotFound, "no member \"missing\""));
  EXPECT_THAT(JsonValue().Get("x"), StatusIs(kInvalid, "expected an object, found null"));
  GCL_ASSERT_OK_AND_ASSIGN(double n, doc.Find("n")->AsNumber());
  EXPECT_EQ(n, 1.5);
  GCL_ASSERT_OK_AND_ASSIGN(int64_t i, doc.Find("i")->AsInt64());
  EXPECT_EQ(i, 7);
  GCL_ASSERT_OK_AND_ASSIGN(std::string s, doc.Find("s")->AsString());
  EXPECT_EQ(s, "x");
  GCL_ASSERT_OK_AND_ASSIGN(bool t, doc.Find("t")->AsBool());
  EXPECT_TRUE(t);
  GCL_ASSERT_OK_AND_ASSIGN(const JsonValue* a, doc.Get("a"));
  GCL_ASSERT_OK_AND_ASSIGN(const JsonValue::Array* items, a->AsArray());
  EXPECT_EQ(items->size(), 1u);
  // Lenient accessors fall back to empty values.
  EXPECT_EQ(doc.Find("n")->string_value(), "");
  EXPECT_EQ(doc.Find("s")->number_value(), 0.0);
  EXPECT_EQ(doc.Find("n")->int_value(), 0);
  EXPECT_TRUE(doc.Find("s")->items().empty());
}

TEST(ParseJsonTest, ErrorsNameTheSourceAndByteOffset) {
  EXPECT_EQ(ErrorOf("[1,2,]"), "src.json: JSON error at byte 5: unexpected character ']'");
  EXPECT_EQ(ErrorOf(R"({"a":1,})"), "src.json: JSON error at byte 7: expected a member name string");
  EXPECT_EQ(ErrorOf(R"({"k": "ab)"), "src.json: JSON error at byte 9: unterminated string");
  EXPECT_EQ(ErrorOf(R"("a\x")"), "src.json: JSON error at byte 3: bad escape '\\x'");
  EXPECT_EQ(ErrorOf(R"("\u12G4")"), "src.json: JSON error at byte 5: bad hex digit in \\u escape");
  EXPECT_EQ(ErrorOf(R"("\u12")"), "src.json: JSON error at byte 3: short \\u escape");
  EXPECT_EQ(ErrorOf(R"("\udc00")"), "src.json: JSON error at byte 1: unpaired low surrogate");
  EXPECT_EQ(ErrorOf(R"("\ud83d")"), "src.json: JSON error at byte 7: high surrogate without a low one");
  EXPECT_EQ(ErrorOf(R"("\ud83d\u0041")"),
            "src.json: JSON error at byte 7: high surrogate without a low one");
  EXPECT_EQ(ErrorOf("\"a\x01\""), "src.json: JSON error at byte 2: control character in string");
  EXPECT_EQ(ErrorOf("{} x"), "src.json: JSON error at byte 3: trailing characters after the value");
  EXPECT_EQ(ErrorOf("[1]]"), "src.json: JSON error at byte 3: trailing characters after the value");
  EXPECT_EQ(ErrorOf("01"), "src.json: JSON error at byte 1: trailing characters after the value");
  EXPECT_EQ(ErrorOf(""), "src.json: JSON error at byte 0: unexpected end of input");
  EXPECT_EQ(ErrorOf("  "), "src.json: JSON error at byte 2: unexpected end of input");
  EXPECT_EQ(ErrorOf("[1"), "src.json: JSON error at byte 2: expected ',' or ']'");
  EXPECT_EQ(ErrorOf(R"({"a" 1})"), "src.json: JSON error at byte 5: expected ':'");
  EXPECT_EQ(ErrorOf(R"({"a":1 "b":2})"), "src.json: JSON error at byte 7: expected ',' or '}'");
  EXPECT_EQ(ErrorOf("{1:2}"), "src.json: JSON error at byte 1: expected a member name string");
  EXPECT_EQ(ErrorOf("-"), "src.json: JSON error at byte 1: bad number: expected a digit");
  EXPECT_EQ(ErrorOf("1."), "src.json: JSON error at byte 2: bad number: expected a digit after '.'");
  EXPECT_EQ(ErrorOf("1e+"), "src.json: JSON error at byte 3: bad number: expected an exponent digit");
  EXPECT_EQ(ErrorOf(".5"), "src.json: JSON error at byte 0: unexpected character '.'");
  EXPECT_EQ(ErrorOf("tru"), "src.json: JSON error at byte 0: unexpected character 't'");
  EXPECT_EQ(ErrorOf("nul"), "src.json: JSON error at byte 0: unexpected character 'n'");
  EXPECT_EQ(ErrorOf("[NaN]"), "src.json: JSON error at byte 1: unexpected character 'N'");
}

TEST(ParseJsonTest, NestingDepthIsLimited) {
  const std::string ok = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  GCL_EXPECT_OK(ParseJson(ok, "deep"));
  const std::string too_deep = std::string(kMaxJsonDepth + 1, '[') + std::string(kMaxJsonDepth + 1, ']');
  EXPECT_EQ(ErrorOf(too_deep), "src.json: JSON error at byte 64: nesting too deep");
  std::string objects;
  for (int i = 0; i <= kMaxJsonDepth; ++i) objects += "{\"a\":";
  objects += "1" + std::string(kMaxJsonDepth + 1, '}');
  EXPECT_THAT(ParseJson(objects, "o.json"), StatusIs(kInvalid, "o.json: JSON error at byte 320: nesting too deep"));
  // Deep input that never closes fails on depth, not on the stack.
  EXPECT_THAT(ParseJson(std::string(100000, '['), "x"), StatusIs(kInvalid, "nesting too deep"));
}

TEST(JsonNumberTest, NineSignificantDigitsAndNullForNonFinite) {
  EXPECT_EQ(JsonNumber(std::nan("")), "null");
  EXPECT_EQ(JsonNumber(std::numeric_limits<double>::infinity()), "null");
  EXPECT_EQ(JsonNumber(-std::numeric_limits<double>::infinity()), "null");
  EXPECT_EQ(JsonNumber(0), "0");
  EXPECT_EQ(JsonNumber(-0.0), "-0");
  EXPECT_EQ(JsonNumber(42), "42");
  EXPECT_EQ(JsonNumber(0.1), "0.1");
  EXPECT_EQ(JsonNumber(1.0 / 3.0), "0.333333333");
  EXPECT_EQ(JsonNumber(123456789), "123456789");
  EXPECT_EQ(JsonNumber(1234567890123.0), "1.23456789e+12");
  EXPECT_EQ(JsonNumber(2.5e-7), "2.5e-07");
  // Whatever it writes, ParseJson reads back as a number.
  for (double d : {0.0, -1.5, 1e300, 2.5e-7, 1.0 / 3.0}) {
    GCL_ASSERT_OK_AND_ASSIGN(JsonValue v, ParseJson(JsonNumber(d), "n"));
    EXPECT_TRUE(v.is_number()) << d;
    EXPECT_NEAR(v.number_value(), d, std::abs(d) * 1e-8) << d;
  }
}

TEST(JsonNumberTest, ExactIsShortestRoundTrip) {
  EXPECT_EQ(JsonNumberExact(std::nan("")), "null");
  EXPECT_EQ(JsonNumberExact(std::numeric_limits<double>::infinity()), "null");
  EXPECT_EQ(JsonNumberExact(0.1), "0.1");
  EXPECT_EQ(JsonNumberExact(1), "1");
  EXPECT_EQ(JsonNumberExact(-0.0), "-0");
  EXPECT_EQ(JsonNumberExact(1.0 / 3.0), "0.3333333333333333");
  for (double d : {1.0 / 3.0, 0.1 + 0.2, 1e-300, 123456789.123456789, -2.0 / 7.0}) {
    GCL_ASSERT_OK_AND_ASSIGN(JsonValue v, ParseJson(JsonNumberExact(d), "n"));
    EXPECT_EQ(v.number_value(), d) << JsonNumberExact(d);
  }
}

TEST(JsonValueTest, BuildersAndSerialize) {
  JsonValue v = JsonValue::MakeObject(
      {{"s", JsonValue::String("a\"\n")},
       {"n", JsonValue::Number(0.25)},
       {"i", JsonValue::Integer(-3)},
       {"nan", JsonValue::Number(std::nan(""))},
       {"l", JsonValue::MakeArray({JsonValue::Bool(true), JsonValue()})}});
  EXPECT_EQ(v.Serialize(), R"({"s":"a\"\n","n":0.25,"i":-3,"nan":null,"l":[true,null]})");
  EXPECT_THAT(JsonTypeName(JsonValue::Type::kObject), HasSubstr("object"));
  std::vector<std::string> keys;
  for (const auto& [k, unused] : v.fields()) keys.push_back(k);
  EXPECT_THAT(keys, ElementsAre("s", "n", "i", "nan", "l"));
}

}  // namespace
}  // namespace gcl
