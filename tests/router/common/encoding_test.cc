// The shared encodings: percent-encoding of query parameters, base64 (RFC 4648 vectors, round
// trips, malformed input refused).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "router/common/encoding.h"

namespace dvrouter {
namespace {

TEST(UrlEncode, KeepsUnreservedCharactersAndEscapesTheRest) {
  EXPECT_EQ(UrlEncode("INSERT INTO a.b FORMAT JSONEachRow"),
            "INSERT%20INTO%20a.b%20FORMAT%20JSONEachRow");
  EXPECT_EQ(UrlEncode("AZaz09-_.~"), "AZaz09-_.~");
  EXPECT_EQ(UrlEncode("a&b=c?d/e%f+g"), "a%26b%3Dc%3Fd%2Fe%25f%2Bg");
  EXPECT_EQ(UrlEncode(std::string("\x00\xff\xc3\xa9", 4)), "%00%FF%C3%A9");
  EXPECT_EQ(UrlEncode(""), "");
}

TEST(Base64, KnownVectors) {
  const std::vector<std::pair<std::string, std::string>> vectors = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
      {std::string("\xff\xfe", 2), "//4="},
      {std::string("\0", 1), "AA=="}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(Base64Encode(plain), encoded);
    std::string decoded = "stale";
    ASSERT_TRUE(Base64Decode(encoded, &decoded)) << encoded;
    EXPECT_EQ(decoded, plain);
  }
}

TEST(Base64, RoundTripsEveryShortLengthAndRandomBytes) {
  std::mt19937 rng(20240607);
  std::uniform_int_distribution<int> byte(0, 255);
  for (size_t len = 0; len <= 10; ++len) {
    for (int trial = 0; trial < 50; ++trial) {
      std::string plain;
      for (size_t i = 0; i < len; ++i) plain.push_back(static_cast<char>(byte(rng)));
      const std::string encoded = Base64Encode(plain);
      EXPECT_EQ(encoded.size(), (len + 2) / 3 * 4);
      std::string decoded;
      ASSERT_TRUE(Base64Decode(encoded, &decoded)) << encoded;
      ASSERT_EQ(decoded, plain) << "length " << len;
    }
  }
  std::string big;
  for (int i = 0; i < 100'000; ++i) big.push_back(static_cast<char>(byte(rng)));
  std::string decoded;
  ASSERT_TRUE(Base64Decode(Base64Encode(big), &decoded));
  EXPECT_EQ(decoded, big);
}

TEST(Base64, DecodeRejectsMalformedInput) {
  const std::vector<std::string> bad = {
      "Z",        "Zg",   "Zg=",    "Zm9vY",  // length not a multiple of 4
      "Zm9*",     "Zm 9", "Zm9v\n", "Zm-_",   // characters outside the alphabet
      "Zg==Zm9v", "Zm=v", "Z===",   "====",   // '=' in the middle or too early
      "Zm9vZ=g=", "=Zm9"};
  for (const std::string& text : bad) {
    std::string out;
    EXPECT_FALSE(Base64Decode(text, &out)) << "accepted '" << text << "'";
  }
  std::string with_nul("Zm\0v", 4);
  std::string out;
  EXPECT_FALSE(Base64Decode(with_nul, &out));
}

}  // namespace
}  // namespace dvrouter
