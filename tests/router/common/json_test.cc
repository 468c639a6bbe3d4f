// AppendJsonString against a byte-at-a-time reference, over every byte value and at every
// position relative to the 16-byte blocks the fast path scans.
#include "router/common/json.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace dvrouter {
namespace {

std::string Reference(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20) {
      out += "\\u00";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string Escaped(std::string_view s, std::string prefix = "") {
  AppendJsonString(&prefix, s);
  return prefix;
}

TEST(AppendDecimal, AppendsTheDigitsOfAnyInteger) {
  std::string out = "n=";
  AppendDecimal(&out, uint64_t{18446744073709551615ULL});
  out += ',';
  AppendDecimal(&out, int64_t{-9223372036854775807LL - 1});
  out += ',';
  AppendDecimal(&out, int32_t{0});
  EXPECT_EQ(out, "n=18446744073709551615,-9223372036854775808,0");
}

TEST(AppendJsonString, EscapesQuotesBackslashesAndControls) {
  EXPECT_EQ(Escaped(""), "\"\"");
  EXPECT_EQ(Escaped("plain"), "\"plain\"");
  EXPECT_EQ(Escaped(R"({"a":"b\c"})"), R"("{\"a\":\"b\\c\"}")");
  EXPECT_EQ(Escaped(std::string("a\0b", 3)), "\"a\\u0000b\"");
  EXPECT_EQ(Escaped("\x1f\x7f\t\r\n"), "\"\\u001f\x7f\\t\\r\\n\"");
  EXPECT_EQ(Escaped("caf\xc3\xa9 \xe2\x82\xac"), "\"caf\xc3\xa9 \xe2\x82\xac\"");  // UTF-8 as is
  EXPECT_EQ(Escaped("x", "prefix:"), "prefix:\"x\"");                              // appends
}

// Each byte value, alone and at each offset of a run long enough to cross 16-byte blocks.
TEST(AppendJsonString, EveryByteAtEveryOffsetMatchesTheReference) {
  for (int b = 0; b < 256; ++b) {
    for (size_t at = 0; at < 40; ++at) {
      std::string s(40, 'a');
      s[at] = static_cast<char>(b);
      ASSERT_EQ(Escaped(s), Reference(s)) << "byte " << b << " at " << at;
    }
  }
}

TEST(AppendJsonString, RandomTextMatchesTheReference) {
  std::mt19937 rng(7);
  // Mostly printable, with quotes, backslashes, controls and high bytes mixed in.
  const std::string alphabet = std::string("abc xyz019{}:,\"\\\n\t\x01\x1f\x80\xff") + '\0';
  for (int i = 0; i < 2000; ++i) {
    std::string s(rng() % 200, ' ');
    for (char& c : s) c = alphabet[rng() % alphabet.size()];
    ASSERT_EQ(Escaped(s), Reference(s)) << i;
  }
}

// Every set of places among 16 bytes that hold a quote or a backslash (a block the fast path
// writes with two shuffles), the block at two offsets from the start.
TEST(AppendJsonString, EveryPatternOfQuotesAndBackslashesInABlockMatchesTheReference) {
  for (uint32_t pattern = 0; pattern < (1u << 16); ++pattern) {
    for (size_t lead : {size_t{0}, size_t{5}}) {
      std::string s(lead, 'x');
      for (int i = 0; i < 16; ++i) {
        s += (pattern >> i) & 1 ? (i % 3 == 0 ? '\\' : '"') : static_cast<char>('a' + i);
      }
      s += "tail";
      ASSERT_EQ(Escaped(s), Reference(s)) << "pattern " << pattern << " after " << lead;
    }
  }
}

// Texts whose escaped form is several times their length (the room reserved ahead is grown).
TEST(AppendJsonString, TextsThatGrowSixfoldOrTwofoldMatchTheReference) {
  for (size_t n : {size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{1000}, size_t{5000}}) {
    const std::string controls(n, '\x01');
    const std::string quotes(n, '"');
    ASSERT_EQ(Escaped(controls, "pre"), "pre" + Reference(controls)) << n;
    ASSERT_EQ(Escaped(quotes, "pre"), "pre" + Reference(quotes)) << n;
  }
}

}  // namespace
}  // namespace dvrouter
