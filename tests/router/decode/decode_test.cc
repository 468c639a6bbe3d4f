// The webhook decoder against every real body in tests/fixtures/dataverse and their malformed
// forms (cuts, wrong types, duplicates, padding). Over 800 lines because every malformed form is
// its own small test (more than a hundred) next to the fixture table they start from; they share
// the helpers at the top.
#include "router/decode/decode.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <ctime>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "router/decode/event.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using ::dvrouter::testing::Fixture;
using ::dvrouter::testing::FixtureNames;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

constexpr size_t kMaxBody = 1 << 20;

constexpr char kContact[] = "update-contact-postop-async.json";
constexpr char kAgentUpdate[] = "update-msdyn_agentstatus-postop-async.json";
constexpr char kAgentCreate[] = "create-msdyn_agentstatus-postop-sync.json";
constexpr char kDevkit[] = "customaction-context-devkit-isodates.json";

// ---------------------------------------------------------------------------------------------
// Helpers that edit a JSON text at the top level of its root object, so that the same keys inside
// ParentContext (which repeats MessageName, Stage, ...) are never touched.

size_t SkipWs(const std::string& j, size_t i) {
  while (i < j.size() && (j[i] == ' ' || j[i] == '\n' || j[i] == '\r' || j[i] == '\t')) ++i;
  return i;
}

// `i` is at an opening quote; returns the index just past the closing quote.
size_t SkipString(const std::string& j, size_t i) {
  for (++i; i < j.size(); ++i) {
    if (j[i] == '\\') {
      ++i;
    } else if (j[i] == '"') {
      return i + 1;
    }
  }
  return j.size();
}

// `i` is at the first character of a value; returns the index just past it.
size_t SkipValue(const std::string& j, size_t i) {
  if (i >= j.size()) return i;
  if (j[i] == '"') return SkipString(j, i);
  if (j[i] == '{' || j[i] == '[') {
    int depth = 0;
    while (i < j.size()) {
      const char c = j[i];
      if (c == '"') {
        i = SkipString(j, i);
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') --depth;
      ++i;
      if (depth == 0) return i;
    }
    return i;
  }
  while (i < j.size() && j[i] != ',' && j[i] != '}' && j[i] != ']' && j[i] != ' ' && j[i] != '\n' &&
         j[i] != '\r' && j[i] != '\t') {
    ++i;
  }
  return i;
}

struct FieldSpan {
  size_t key_begin;    // the key's opening quote
  size_t value_begin;  // first character of the value
  size_t value_end;    // just past the value
};

std::optional<FieldSpan> FindTopLevelField(const std::string& j, std::string_view key) {
  int depth = 0;
  size_t i = 0;
  while (i < j.size()) {
    const char c = j[i];
    if (c == '"') {
      const size_t end = SkipString(j, i);
      if (depth == 1) {
        const size_t colon = SkipWs(j, end);
        if (colon < j.size() && j[colon] == ':' &&
            std::string_view(j).substr(i + 1, end - i - 2) == key) {
          const size_t vb = SkipWs(j, colon + 1);
          return FieldSpan{i, vb, SkipValue(j, vb)};
        }
      }
      i = end;
      continue;
    }
    if (c == '{' || c == '[') ++depth;
    if (c == '}' || c == ']') --depth;
    ++i;
  }
  return std::nullopt;
}

// Replaces the raw JSON text of the top-level field `key`'s value.
std::string ReplaceValue(std::string j, std::string_view key, std::string_view new_value) {
  std::optional<FieldSpan> f = FindTopLevelField(j, key);
  if (!f) {
    ADD_FAILURE() << "no top-level field " << key;
    return j;
  }
  j.replace(f->value_begin, f->value_end - f->value_begin, new_value);
  return j;
}

std::string ValueText(const std::string& j, std::string_view key) {
  std::optional<FieldSpan> f = FindTopLevelField(j, key);
  if (!f) {
    ADD_FAILURE() << "no top-level field " << key;
    return "";
  }
  return j.substr(f->value_begin, f->value_end - f->value_begin);
}

// Removes the top-level field `key` and one adjacent comma.
std::string RemoveField(std::string j, std::string_view key) {
  std::optional<FieldSpan> f = FindTopLevelField(j, key);
  if (!f) {
    ADD_FAILURE() << "no top-level field " << key;
    return j;
  }
  size_t begin = f->key_begin;
  size_t end = SkipWs(j, f->value_end);
  if (end < j.size() && j[end] == ',') {
    ++end;
  } else {
    // Last field: drop the comma before it instead.
    size_t p = begin;
    while (p > 0 && (j[p - 1] == ' ' || j[p - 1] == '\n' || j[p - 1] == '\r' || j[p - 1] == '\t')) {
      --p;
    }
    if (p > 0 && j[p - 1] == ',') begin = p - 1;
    end = f->value_end;
  }
  j.erase(begin, end - begin);
  return j;
}

// Replaces the first occurrence of `from` (which must exist) with `to`.
std::string ReplaceFirst(std::string s, std::string_view from, std::string_view to) {
  const size_t pos = s.find(from);
  if (pos == std::string::npos) {
    ADD_FAILURE() << "text not found: " << from;
    return s;
  }
  s.replace(pos, from.size(), to);
  return s;
}

// Decodes from a buffer with kPadding bytes of spare capacity, so the decoder reads it in place.
Status DecodePadded(Decoder& decoder, std::string_view body, EventHeader* out) {
  std::vector<char> buf(body.size() + Decoder::kPadding, '\0');
  std::copy(body.begin(), body.end(), buf.begin());
  return decoder.Decode(buf.data(), body.size(), buf.size(), out);
}

// Decodes a body and returns the status; the header goes to *out.
Status DecodeBody(std::string_view body, EventHeader* out) {
  Decoder decoder(kMaxBody);
  return DecodePadded(decoder, body, out);
}

std::string Msg(const Status& st) { return std::string(st.message()); }

// ---------------------------------------------------------------------------------------------
// Every fixture, field by field. The values were read from the fixture files by hand.

struct Golden {
  const char* file;
  const char* message_name;
  const char* primary_entity_name;
  const char* primary_entity_id;
  int32_t stage;
  int32_t mode;
  int32_t depth;
  const char* correlation_id;
  const char* operation_id;
  const char* request_id;
  const char* owning_extension_id;
  const char* initiating_user_id;
  const char* organization_name;
  int64_t operation_created_on_ms;
};

// 2024-12-10T06:43:34Z: 20067 days after 1970-01-01 (54 years with 13 leap days = 19723 days to
// 2024-01-01, plus 335 days to 1 December in the leap year 2024, plus 9) and 6:43:34 = 24214 s.
constexpr int64_t kDevkitCreatedOnMs = (20067LL * 86400 + 24214) * 1000;
static_assert(kDevkitCreatedOnMs == 1733813014000LL);

const Golden kGoldens[] = {
    {kAgentCreate, "Create", "msdyn_agentstatus", "4b1e3d75-a749-ef11-acce-00224802d26d", 40, 0, 1,
     "58dc9af0-fe25-4f81-b3f3-c4cb147c2ec4", "09097f27-6123-4c61-b463-af00adb2e082",
     "09097f27-6123-4c61-b463-af00adb2e082", "58378ec8-a649-ef11-acce-6045bd03d9d8",
     "09eb2446-db10-ef11-9f8a-6045bdd4c6be", "unqc09254dea911ef119f83000d3a9d3", 1721816905786LL},
    {kDevkit, "devkit_DebugCustomAction", "none", "00000000-0000-0000-0000-000000000000", 40, 1, 1,
     "1346ad20-8b00-41a6-9a17-a3bda4771909", "d4cb7713-c2b6-ef11-a72f-6045bd213099",
     "f2921a3c-5d13-4b80-a809-7df446463f22", "e5811dab-abb6-ef11-a72f-6045bd213099",
     "b1977479-f590-ef11-8a69-000d3ac831e1", "unq29c6e552e16fef11a66b6045bd1e7",
     kDevkitCreatedOnMs},
    {kContact, "Update", "contact", "6d81597f-0f9f-e711-8122-000d3aa2331c", 40, 1, 1,
     "b374239d-4233-41a9-8b17-a86cb4f737b5", "4af10637-4ea2-e711-8122-000d3aa2331c", "",
     "75417616-4ea2-e711-8122-000d3aa2331c", "75c2dd85-e89e-e711-8122-000d3aa2331c", "OrgName",
     1506409448000LL},
    {kAgentUpdate, "Update", "msdyn_agentstatus", "3d1feef9-604d-ef11-bfe3-6045bd03d9d8", 40, 1, 1,
     "e1bcd028-ae87-4ca6-af27-a17ee680dbc9", "1a14c3ec-9c50-ef11-bfe3-00224802dbb1",
     "84d03007-6a8f-41da-aeae-7b6460bb7a04", "8ff4bda5-9d4e-ef11-bfe3-00224802dbb1",
     "d89254ff-9438-ef11-a315-000d3a5a54dc", "unq6042beb1a93aef118e4b00224802c", 1722582039000LL},
};

void ExpectGolden(const Golden& g, const EventHeader& h) {
  EXPECT_EQ(h.message_name, g.message_name);
  EXPECT_EQ(h.primary_entity_name, g.primary_entity_name);
  EXPECT_EQ(h.primary_entity_id, g.primary_entity_id);
  EXPECT_EQ(h.stage, g.stage);
  EXPECT_EQ(h.mode, g.mode);
  EXPECT_EQ(h.depth, g.depth);
  EXPECT_EQ(h.correlation_id, g.correlation_id);
  EXPECT_EQ(h.operation_id, g.operation_id);
  EXPECT_EQ(h.request_id, g.request_id);
  EXPECT_EQ(h.owning_extension_id, g.owning_extension_id);
  EXPECT_EQ(h.initiating_user_id, g.initiating_user_id);
  EXPECT_EQ(h.organization_name, g.organization_name);
  EXPECT_EQ(h.operation_created_on_ms, g.operation_created_on_ms);
  // Nothing from the HTTP request until ApplyHttpHeaders.
  EXPECT_EQ(h.organization_host, "");
  EXPECT_FALSE(h.size_exceeded);
}

const Golden& GoldenFor(const std::string& file) {
  for (const Golden& g : kGoldens) {
    if (file == g.file) return g;
  }
  ADD_FAILURE() << "no golden values for fixture " << file;
  return kGoldens[0];
}

TEST(DecodeFixtures, EveryFixtureHasGoldenValues) {
  const std::vector<std::string> names = FixtureNames();
  ASSERT_EQ(names.size(), std::size(kGoldens));
  std::set<std::string> golden_files;
  for (const Golden& g : kGoldens) golden_files.insert(g.file);
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), golden_files);
}

TEST(DecodeFixtures, EveryFixtureDecodesPadded) {
  Decoder decoder(kMaxBody);
  for (const std::string& name : FixtureNames()) {
    SCOPED_TRACE(name);
    const std::string body = Fixture(name);
    EventHeader h;
    Status st = DecodePadded(decoder, body, &h);
    ASSERT_TRUE(st.ok()) << st.ToString();
    ExpectGolden(GoldenFor(name), h);
  }
  EXPECT_EQ(decoder.copies(), 0u);
}

TEST(DecodeFixtures, EveryFixtureDecodesUnpaddedWithOneCopyEach) {
  Decoder decoder(kMaxBody);
  size_t n = 0;
  for (const std::string& name : FixtureNames()) {
    SCOPED_TRACE(name);
    // Exactly len bytes of capacity: the decoder must copy into its own padded buffer.
    const std::vector<char> exact = [&] {
      std::string s = Fixture(name);
      return std::vector<char>(s.begin(), s.end());
    }();
    EventHeader h;
    Status st = decoder.Decode(exact.data(), exact.size(), exact.size(), &h);
    ASSERT_TRUE(st.ok()) << st.ToString();
    ExpectGolden(GoldenFor(name), h);
    ++n;
    EXPECT_EQ(decoder.copies(), n);
  }
}

TEST(DecodeFixtures, DevkitIsoDateMatchesTimegm) {
  std::tm tm{};
  tm.tm_year = 2024 - 1900;
  tm.tm_mon = 11;
  tm.tm_mday = 10;
  tm.tm_hour = 6;
  tm.tm_min = 43;
  tm.tm_sec = 34;
  const int64_t expected = static_cast<int64_t>(timegm(&tm)) * 1000;
  EventHeader h;
  ASSERT_TRUE(DecodeBody(Fixture(kDevkit), &h).ok());
  EXPECT_EQ(h.operation_created_on_ms, expected);
  EXPECT_EQ(h.operation_created_on_ms, kDevkitCreatedOnMs);
}

TEST(DecodeFixtures, FixturesHaveDistinctDedupeKeys) {
  std::set<std::string> keys;
  for (const std::string& name : FixtureNames()) {
    EventHeader h;
    ASSERT_TRUE(DecodeBody(Fixture(name), &h).ok()) << name;
    const std::string hex = h.DedupeKey().ToHex();
    EXPECT_THAT(hex, MatchesRegex("[0-9a-f]{32}"));
    keys.insert(hex);
  }
  EXPECT_EQ(keys.size(), FixtureNames().size());
}

TEST(DecodeFixtures, DecoderIsReusableAndClearsStaleFields) {
  Decoder decoder(kMaxBody);
  EventHeader h;
  ASSERT_TRUE(DecodePadded(decoder, Fixture(kAgentUpdate), &h).ok());
  EXPECT_EQ(h.request_id, "84d03007-6a8f-41da-aeae-7b6460bb7a04");
  h.organization_host = "stale.crm.dynamics.com";
  // A failure in between leaves nothing usable behind and does not poison the decoder.
  EXPECT_FALSE(DecodePadded(decoder, "{", &h).ok());
  EXPECT_EQ(h.organization_host, "");
  // The contact sample has RequestId null: the previous RequestId must not survive.
  ASSERT_TRUE(DecodePadded(decoder, Fixture(kContact), &h).ok());
  ExpectGolden(GoldenFor(kContact), h);
}

TEST(DecodeFixtures, ApplyHttpHeadersAfterDecode) {
  EventHeader h;
  ASSERT_TRUE(DecodeBody(Fixture(kContact), &h).ok());
  WebhookHttpHeaders headers;
  headers.organization = "orgname.crm.dynamics.com";
  headers.entity_name = "contact";
  headers.request_name = "Update";
  headers.request_id = "11111111-2222-3333-4444-555555555555";
  headers.correlation_request_id = "b374239d-4233-41a9-8b17-a86cb4f737b5";
  headers.size_exceeded = true;
  ApplyHttpHeaders(headers, &h);
  EXPECT_EQ(h.organization_host, "orgname.crm.dynamics.com");
  EXPECT_EQ(h.header_entity_name, "contact");
  EXPECT_EQ(h.header_request_name, "Update");
  EXPECT_EQ(h.http_request_id, "11111111-2222-3333-4444-555555555555");
  EXPECT_EQ(h.correlation_request_id, "b374239d-4233-41a9-8b17-a86cb4f737b5");
  EXPECT_TRUE(h.size_exceeded);
  // Body fields are untouched.
  ExpectGolden(GoldenFor(kContact), [&] {
    EventHeader copy = h;
    copy.organization_host.clear();
    copy.size_exceeded = false;
    return copy;
  }());

  // Absent headers become empty strings, and size_exceeded goes back to false.
  ApplyHttpHeaders(WebhookHttpHeaders{}, &h);
  EXPECT_EQ(h.organization_host, "");
  EXPECT_EQ(h.header_entity_name, "");
  EXPECT_EQ(h.header_request_name, "");
  EXPECT_EQ(h.http_request_id, "");
  EXPECT_EQ(h.correlation_request_id, "");
  EXPECT_FALSE(h.size_exceeded);
  EXPECT_EQ(h.message_name, "Update");
}

TEST(DecodeFixtures, DecodeClearsHttpHeaderFields) {
  EventHeader h;
  WebhookHttpHeaders headers;
  headers.organization = "org.crm.dynamics.com";
  headers.size_exceeded = true;
  ApplyHttpHeaders(headers, &h);
  ASSERT_TRUE(DecodeBody(Fixture(kContact), &h).ok());
  EXPECT_EQ(h.organization_host, "");
  EXPECT_FALSE(h.size_exceeded);
}

// ---------------------------------------------------------------------------------------------
// Padding, copies and the size cap.

TEST(DecodeBuffers, PaddedInputIsNotCopied) {
  Decoder decoder(kMaxBody);
  const std::string body = Fixture(kAgentCreate);
  std::vector<char> buf(body.size() + Decoder::kPadding);
  std::copy(body.begin(), body.end(), buf.begin());
  EventHeader h;
  ASSERT_TRUE(decoder.Decode(buf.data(), body.size(), buf.size(), &h).ok());
  EXPECT_EQ(decoder.copies(), 0u);
  // More than enough capacity is fine as well.
  std::vector<char> big(body.size() + 4 * Decoder::kPadding);
  std::copy(body.begin(), body.end(), big.begin());
  ASSERT_TRUE(decoder.Decode(big.data(), body.size(), big.size(), &h).ok());
  EXPECT_EQ(decoder.copies(), 0u);
  ExpectGolden(GoldenFor(kAgentCreate), h);
}

TEST(DecodeBuffers, UnpaddedInputIsCopiedOnce) {
  Decoder decoder(kMaxBody);
  const std::string body = Fixture(kAgentCreate);
  std::vector<char> exact(body.begin(), body.end());
  EventHeader h;
  ASSERT_TRUE(decoder.Decode(exact.data(), exact.size(), exact.size(), &h).ok());
  EXPECT_EQ(decoder.copies(), 1u);
  ExpectGolden(GoldenFor(kAgentCreate), h);
}

TEST(DecodeBuffers, OneByteShortOfPaddingIsCopied) {
  Decoder decoder(kMaxBody);
  const std::string body = Fixture(kContact);
  std::vector<char> buf(body.size() + Decoder::kPadding - 1);
  std::copy(body.begin(), body.end(), buf.begin());
  EventHeader h;
  ASSERT_TRUE(decoder.Decode(buf.data(), body.size(), buf.size(), &h).ok());
  EXPECT_EQ(decoder.copies(), 1u);
  ExpectGolden(GoldenFor(kContact), h);
}

TEST(DecodeBuffers, CopyBufferIsReusedAcrossDifferentSizes) {
  Decoder decoder(kMaxBody);
  EventHeader h;
  size_t n = 0;
  // Large, then small, then large again through the fallback copy.
  for (const char* name : {kAgentCreate, kContact, kAgentCreate, kDevkit}) {
    const std::string body = Fixture(name);
    ASSERT_TRUE(decoder.Decode(body.data(), body.size(), body.size(), &h).ok()) << name;
    EXPECT_EQ(decoder.copies(), ++n);
    ExpectGolden(GoldenFor(name), h);
  }
}

TEST(DecodeBuffers, BodyLargerThanMaxBodyBytesIsRefused) {
  const std::string body = Fixture(kContact);
  Decoder small(body.size() - 1);
  EventHeader h;
  Status st = DecodePadded(small, body, &h);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Msg(st), "body: larger than max_body_bytes");
  EXPECT_EQ(small.copies(), 0u);

  // Exactly at the cap is accepted.
  Decoder exact(body.size());
  ASSERT_TRUE(DecodePadded(exact, body, &h).ok());
  ExpectGolden(GoldenFor(kContact), h);
}

// ---------------------------------------------------------------------------------------------
// Malformed and unusual bodies.

void ExpectError(std::string_view body, std::string_view expected_prefix) {
  EventHeader h;
  Status st = DecodeBody(body, &h);
  ASSERT_FALSE(st.ok()) << "decoded: " << h.message_name;
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(st), StartsWith(std::string(expected_prefix)));
}

void ExpectErrorExactly(std::string_view body, std::string_view expected) {
  EventHeader h;
  Status st = DecodeBody(body, &h);
  ASSERT_FALSE(st.ok()) << "decoded: " << h.message_name;
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Msg(st), expected);
}

TEST(DecodeMalformed, EmptyBody) {
  Decoder decoder(kMaxBody);
  EventHeader h;
  h.message_name = "stale";
  Status st = decoder.Decode("", 0, 0, &h);
  EXPECT_EQ(Msg(st), "body: empty");
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(h.message_name, "");  // cleared even on error
  EXPECT_EQ(decoder.copies(), 0u);
}

TEST(DecodeMalformed, WhitespaceOnlyBody) { ExpectError(" \n\t ", "body: "); }

TEST(DecodeMalformed, EmptyObjectNamesMessageName) {
  ExpectErrorExactly("{}", "MessageName: missing");
}

class TruncatedTest : public ::testing::TestWithParam<std::tuple<const char*, double>> {};

TEST_P(TruncatedTest, IsAnError) {
  const auto [name, fraction] = GetParam();
  const std::string body = Fixture(name);
  // Cut just past the last non-space character for 1.0 means: drop only the closing brace.
  size_t cut = static_cast<size_t>(static_cast<double>(body.size()) * fraction);
  if (fraction >= 1.0) cut = body.rfind('}');
  ASSERT_GT(cut, 0u);
  ASSERT_LT(cut, body.size());
  SCOPED_TRACE(::testing::Message() << "cut at " << cut << " of " << body.size());
  // Whatever field the cut falls in, the document is reported broken, never decoded; the
  // message names the body or the top-level field the cut fell in.
  EventHeader h;
  Status st = DecodeBody(std::string_view(body).substr(0, cut), &h);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(st), MatchesRegex("^(body|[A-Z][A-Za-z]+): .+"));
}

INSTANTIATE_TEST_SUITE_P(Cuts, TruncatedTest,
                         ::testing::Combine(::testing::Values(kContact, kAgentCreate, kDevkit),
                                            ::testing::Values(0.001, 0.25, 0.5, 0.75, 0.99, 1.0)),
                         [](const auto& info) {
                           // Stable names (ctest lists tests by name): fixture prefix + per mille.
                           std::string name = std::get<0>(info.param);
                           name = name.substr(0, name.find('-'));
                           return name + "_" +
                                  std::to_string(static_cast<int>(std::get<1>(info.param) * 1000));
                         });

TEST(DecodeMalformed, TruncatedInsideMessageNameValue) {
  const std::string body = Fixture(kContact);
  const size_t pos = body.find("\"Update\"");
  ASSERT_NE(pos, std::string::npos);
  ExpectError(std::string_view(body).substr(0, pos + 4), "body: ");
}

TEST(DecodeMalformed, RootIsArray) { ExpectError("[" + Fixture(kContact) + "]", "body: "); }
TEST(DecodeMalformed, RootIsString) { ExpectError("\"Update\"", "body: "); }
TEST(DecodeMalformed, RootIsNumber) { ExpectError("42", "body: "); }
TEST(DecodeMalformed, RootIsNull) { ExpectError("null", "body: "); }

// simdjson checks up front that a root object's last token is '}', so trailing content that does
// not end in '}' is refused before the decoder's own trailing-content check runs (with simdjson's
// "ended early" wording). Either way the body is refused as a whole.
TEST(DecodeMalformed, TrailingGarbageWord) { ExpectError(Fixture(kContact) + "x", "body: "); }

TEST(DecodeMalformed, TrailingSecondObject) {
  ExpectErrorExactly(Fixture(kContact) + "{}", "body: trailing content after the JSON object");
}

TEST(DecodeMalformed, TrailingNumber) { ExpectError(Fixture(kContact) + " 1", "body: "); }

TEST(DecodeMalformed, TrailingObjectAfterSpace) {
  ExpectErrorExactly(Fixture(kContact) + "\n{\"MessageName\": \"Delete\"}",
                     "body: trailing content after the JSON object");
}

TEST(DecodeMalformed, TrailingClosingBrace) { ExpectError(Fixture(kContact) + "}", "body: "); }

TEST(DecodeMalformed, TrailingWhitespaceIsFine) {
  EventHeader h;
  ASSERT_TRUE(DecodeBody(Fixture(kContact) + "\r\n\t  \n", &h).ok());
  ExpectGolden(GoldenFor(kContact), h);
}

TEST(DecodeMalformed, MessageNameNumber) {
  ExpectError(ReplaceValue(Fixture(kContact), "MessageName", "42"), "MessageName: ");
}

TEST(DecodeMalformed, MessageNameNull) {
  ExpectError(ReplaceValue(Fixture(kContact), "MessageName", "null"), "MessageName: ");
}

TEST(DecodeMalformed, MessageNameEmptyIsMissing) {
  ExpectErrorExactly(ReplaceValue(Fixture(kContact), "MessageName", "\"\""),
                     "MessageName: missing");
}

TEST(DecodeMalformed, MissingMessageName) {
  ExpectErrorExactly(RemoveField(Fixture(kContact), "MessageName"), "MessageName: missing");
}

TEST(DecodeMalformed, MissingPrimaryEntityName) {
  ExpectErrorExactly(RemoveField(Fixture(kAgentUpdate), "PrimaryEntityName"),
                     "PrimaryEntityName: missing");
}

// Table names reach lake paths and Web API URLs: each of these is refused, naming the field.
TEST(DecodeMalformed, EntityNamesThatAreNotLogicalNamesAreRefusedNamingTheField) {
  const std::string base = Fixture(kContact);
  for (const std::string& bad :
       {std::string(300, 'a'), std::string("contacts(x)#"), std::string("../x"),
        std::string("Account"), std::string(""), std::string("_contact"), std::string("2contact"),
        std::string("con tact"), std::string("cont\u00e9"), std::string("contact?x=1"),
        std::string("a/b"), std::string(129, 'a')}) {
    for (const char* field : {"PrimaryEntityName", "SecondaryEntityName"}) {
      SCOPED_TRACE(std::string(field) + " = \"" + bad + "\"");
      ExpectError(ReplaceValue(base, field, "\"" + bad + "\""),
                  std::string(field) + ": not a Dataverse logical name");
    }
  }
  ExpectError(ReplaceValue(base, "SecondaryEntityName", "42"), "SecondaryEntityName: ");
}

TEST(DecodeMalformed, LogicalNamesOfUpTo128CharactersDecode) {
  const std::string base = Fixture(kContact);
  const std::string longest = "new_" + std::string(120, 'x') + "_9_z";
  ASSERT_EQ(longest.size(), 128u);
  EventHeader h;
  Status st = DecodeBody(ReplaceValue(base, "PrimaryEntityName", "\"" + longest + "\""), &h);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(h.primary_entity_name, longest);
  st = DecodeBody(ReplaceValue(base, "SecondaryEntityName", "\"" + longest + "\""), &h);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(h.primary_entity_name, "contact");
  // "none" (every fixture's secondary) and null are accepted; the field may be absent.
  EXPECT_TRUE(DecodeBody(ReplaceValue(base, "SecondaryEntityName", "null"), &h).ok());
  EXPECT_TRUE(DecodeBody(RemoveField(base, "SecondaryEntityName"), &h).ok());
  ExpectErrorExactly(
      ReplaceValue(base, "PrimaryEntityName", "\"" + longest + "a\""),
      "PrimaryEntityName: not a Dataverse logical name (a lowercase letter, then up to 127 "
      "lowercase letters, digits or underscores)");
}

TEST(IsLogicalName, TheDataverseRule) {
  for (std::string_view good : {"a", "none", "contact", "msdyn_agentstatus", "new_x1", "a_"}) {
    EXPECT_TRUE(IsLogicalName(good)) << good;
  }
  EXPECT_TRUE(IsLogicalName(std::string(128, 'z')));
  for (std::string_view bad : {"", "_a", "1a", "A", "aB", "a-b", "a.b", "a/b", "..", "a b", "a#",
                               "a?", "a(b)", "\xc3\xa9t\xc3\xa9"}) {
    EXPECT_FALSE(IsLogicalName(bad)) << bad;
  }
  EXPECT_FALSE(IsLogicalName(std::string(129, 'z')));
  EXPECT_FALSE(IsLogicalName(std::string_view("a\0b", 3)));
}

TEST(DecodeMalformed, PrimaryEntityIdNotAGuid) {
  const std::string base = Fixture(kContact);
  for (const char* bad : {
           "\"not-a-guid\"",
           "\"6d81597f-0f9f-e711-8122-000d3aa2331\"",     // 35 characters
           "\"6d81597f-0f9f-e711-8122-000d3aa2331cc\"",   // 37 characters
           "\"6d81597f0f9f-e711-8122-000d3aa2331c0\"",    // dash missing
           "\"6d81597g-0f9f-e711-8122-000d3aa2331c\"",    // 'g'
           "\"{6d81597f-0f9f-e711-8122-000d3aa2331c}\"",  // braces
           "\"\"",
       }) {
    SCOPED_TRACE(bad);
    ExpectErrorExactly(ReplaceValue(base, "PrimaryEntityId", bad), "PrimaryEntityId: not a GUID");
  }
}

TEST(DecodeMalformed, PrimaryEntityIdNumber) {
  ExpectError(ReplaceValue(Fixture(kContact), "PrimaryEntityId", "12345"), "PrimaryEntityId: ");
}

TEST(DecodeMalformed, PrimaryEntityIdNullIsMissing) {
  ExpectErrorExactly(ReplaceValue(Fixture(kContact), "PrimaryEntityId", "null"),
                     "PrimaryEntityId: missing");
}

TEST(DecodeMalformed, MissingPrimaryEntityId) {
  ExpectErrorExactly(RemoveField(Fixture(kContact), "PrimaryEntityId"), "PrimaryEntityId: missing");
}

TEST(DecodeMalformed, MissingStage) {
  ExpectErrorExactly(RemoveField(Fixture(kContact), "Stage"), "Stage: missing");
}

TEST(DecodeMalformed, MissingMode) {
  ExpectErrorExactly(RemoveField(Fixture(kAgentCreate), "Mode"), "Mode: missing");
}

TEST(DecodeMalformed, StageAsString) {
  ExpectError(ReplaceValue(Fixture(kContact), "Stage", "\"40\""), "Stage: ");
}

TEST(DecodeMalformed, StageAsFloat) {
  ExpectError(ReplaceValue(Fixture(kContact), "Stage", "40.0"), "Stage: ");
}

TEST(DecodeMalformed, StageHugeExponent) {
  ExpectError(ReplaceValue(Fixture(kContact), "Stage", "1e30"), "Stage: ");
}

TEST(DecodeMalformed, StageBeyondInt64) {
  ExpectError(ReplaceValue(Fixture(kContact), "Stage", "99999999999999999999"), "Stage: ");
}

TEST(DecodeMalformed, StageBeyondInt32) {
  ExpectErrorExactly(ReplaceValue(Fixture(kContact), "Stage", "2147483648"),
                     "Stage: integer out of range");
  ExpectErrorExactly(ReplaceValue(Fixture(kContact), "Stage", "-2147483649"),
                     "Stage: integer out of range");
}

TEST(DecodeMalformed, Int32LimitsAreAccepted) {
  EventHeader h;
  std::string body = ReplaceValue(Fixture(kContact), "Stage", "2147483647");
  body = ReplaceValue(body, "Depth", "-2147483648");
  ASSERT_TRUE(DecodeBody(body, &h).ok());
  EXPECT_EQ(h.stage, INT32_MAX);
  EXPECT_EQ(h.depth, INT32_MIN);
}

TEST(DecodeMalformed, DepthOutOfRange) {
  ExpectErrorExactly(ReplaceValue(Fixture(kContact), "Depth", "4294967297"),
                     "Depth: integer out of range");
}

TEST(DecodeMalformed, ModeAsBool) {
  ExpectError(ReplaceValue(Fixture(kContact), "Mode", "true"), "Mode: ");
}

TEST(DecodeMalformed, MissingOwningExtension) {
  ExpectErrorExactly(RemoveField(Fixture(kContact), "OwningExtension"),
                     "OwningExtension.Id: missing");
}

TEST(DecodeMalformed, OwningExtensionIdNull) {
  const std::string body = ReplaceFirst(
      Fixture(kContact), "\"Id\": \"75417616-4ea2-e711-8122-000d3aa2331c\"", "\"Id\": null");
  ExpectErrorExactly(body, "OwningExtension.Id: missing");
}

TEST(DecodeMalformed, OwningExtensionIdNotAGuid) {
  const std::string body = ReplaceValue(
      Fixture(kContact), "OwningExtension",
      "{\"Id\": \"sdkmessageprocessingstep\", \"LogicalName\": \"sdkmessageprocessingstep\"}");
  ExpectErrorExactly(body, "OwningExtension.Id: not a GUID");
}

TEST(DecodeMalformed, OwningExtensionNotAnObject) {
  ExpectError(ReplaceValue(Fixture(kContact), "OwningExtension",
                           "\"75417616-4ea2-e711-8122-000d3aa2331c\""),
              "OwningExtension: ");
}

TEST(DecodeMalformed, OwningExtensionNull) {
  ExpectError(ReplaceValue(Fixture(kContact), "OwningExtension", "null"), "OwningExtension: ");
}

TEST(DecodeMalformed, OwningExtensionWithoutId) {
  ExpectErrorExactly(
      ReplaceValue(Fixture(kContact), "OwningExtension",
                   "{\"KeyAttributes\": [], \"LogicalName\": \"sdkmessageprocessingstep\"}"),
      "OwningExtension.Id: missing");
}

TEST(DecodeMalformed, OperationIdAndRequestIdBothNull) {
  // The contact sample already has RequestId null.
  ExpectErrorExactly(ReplaceValue(Fixture(kContact), "OperationId", "null"),
                     "OperationId: missing, and RequestId is null");
}

TEST(DecodeMalformed, OperationIdAndRequestIdBothAbsent) {
  std::string body = RemoveField(Fixture(kAgentUpdate), "OperationId");
  body = RemoveField(body, "RequestId");
  ExpectErrorExactly(body, "OperationId: missing, and RequestId is null");
}

TEST(DecodeMalformed, OperationIdNotAGuid) {
  ExpectErrorExactly(ReplaceValue(Fixture(kContact), "OperationId", "\"12\""),
                     "OperationId: not a GUID");
}

TEST(DecodeMalformed, CorrelationIdNullIsAccepted) {
  EventHeader h;
  ASSERT_TRUE(DecodeBody(ReplaceValue(Fixture(kContact), "CorrelationId", "null"), &h).ok());
  EXPECT_EQ(h.correlation_id, "");
  EXPECT_EQ(h.message_name, "Update");
}

TEST(DecodeMalformed, OnlyRequestIdUsesItForDedupe) {
  // A synchronous step without an OperationId: RequestId identifies the event.
  const std::string base = Fixture(kAgentUpdate);
  EventHeader h;
  ASSERT_TRUE(DecodeBody(ReplaceValue(base, "OperationId", "null"), &h).ok());
  EXPECT_EQ(h.operation_id, "");
  EXPECT_EQ(h.request_id, "84d03007-6a8f-41da-aeae-7b6460bb7a04");

  EventHeader removed;
  ASSERT_TRUE(DecodeBody(RemoveField(base, "OperationId"), &removed).ok());
  EXPECT_EQ(removed.operation_id, "");
  EXPECT_EQ(removed.DedupeKey(), h.DedupeKey());

  EventHeader expected;
  expected.owning_extension_id = "8ff4bda5-9d4e-ef11-bfe3-00224802dbb1";
  expected.operation_id = "84d03007-6a8f-41da-aeae-7b6460bb7a04";
  expected.message_name = "Update";
  expected.primary_entity_id = "3d1feef9-604d-ef11-bfe3-6045bd03d9d8";
  EXPECT_EQ(h.DedupeKey(), expected.DedupeKey());

  // With OperationId present, RequestId plays no part.
  EventHeader full;
  ASSERT_TRUE(DecodeBody(base, &full).ok());
  EXPECT_NE(full.DedupeKey(), h.DedupeKey());
  EventHeader other_request;
  ASSERT_TRUE(DecodeBody(ReplaceValue(base, "RequestId", "null"), &other_request).ok());
  EXPECT_EQ(other_request.DedupeKey(), full.DedupeKey());
}

TEST(DecodeMalformed, EscapedAndUnescapedDateSlashesAgree) {
  const std::string escaped = Fixture(kAgentCreate);
  ASSERT_EQ(ValueText(escaped, "OperationCreatedOn"), "\"\\/Date(1721816905786)\\/\"");
  EventHeader a, b;
  ASSERT_TRUE(DecodeBody(escaped, &a).ok());
  ASSERT_TRUE(
      DecodeBody(ReplaceValue(escaped, "OperationCreatedOn", "\"/Date(1721816905786)/\""), &b)
          .ok());
  EXPECT_EQ(a.operation_created_on_ms, 1721816905786LL);
  EXPECT_EQ(b.operation_created_on_ms, 1721816905786LL);
}

TEST(DecodeMalformed, DateOffsetsAreInformational) {
  const std::string base = Fixture(kContact);
  for (const char* date :
       {"\"\\/Date(1506409448000-0700)\\/\"", "\"\\/Date(1506409448000+0530)\\/\"",
        "\"/Date(1506409448000+0000)/\"", "\"\\/Date(1506409448000)\\/\""}) {
    SCOPED_TRACE(date);
    EventHeader h;
    ASSERT_TRUE(DecodeBody(ReplaceValue(base, "OperationCreatedOn", date), &h).ok());
    EXPECT_EQ(h.operation_created_on_ms, 1506409448000LL);
  }
}

TEST(DecodeMalformed, BadDateString) {
  const std::string base = Fixture(kContact);
  ExpectErrorExactly(ReplaceValue(base, "OperationCreatedOn", "\"yesterday\""),
                     "OperationCreatedOn: not a date");
  ExpectErrorExactly(ReplaceValue(base, "OperationCreatedOn", "\"\\/Date(abc)\\/\""),
                     "OperationCreatedOn: bad /Date()/ number");
  ExpectErrorExactly(ReplaceValue(base, "OperationCreatedOn", "\"\\/Date(1506409448000-07)\\/\""),
                     "OperationCreatedOn: bad /Date()/ offset");
  ExpectErrorExactly(ReplaceValue(base, "OperationCreatedOn", "\"\\/Date(1506409448000\""),
                     "OperationCreatedOn: unterminated /Date()/");
}

TEST(DecodeMalformed, DateAsNumber) {
  ExpectError(ReplaceValue(Fixture(kContact), "OperationCreatedOn", "1506409448000"),
              "OperationCreatedOn: ");
}

TEST(DecodeMalformed, MissingDateLeavesZero) {
  EventHeader h;
  ASSERT_TRUE(DecodeBody(RemoveField(Fixture(kContact), "OperationCreatedOn"), &h).ok());
  EXPECT_EQ(h.operation_created_on_ms, 0);
}

TEST(DecodeMalformed, IsoDateWithOffset) {
  // 08:43:34 at +02:00 is 06:43:34 UTC, the devkit fixture's own instant.
  EventHeader h;
  ASSERT_TRUE(DecodeBody(ReplaceValue(Fixture(kDevkit), "OperationCreatedOn",
                                      "\"2024-12-10T08:43:34.000+02:00\""),
                         &h)
                  .ok());
  EXPECT_EQ(h.operation_created_on_ms, kDevkitCreatedOnMs);
}

TEST(DecodeMalformed, UppercaseGuidsAreCanonicalized) {
  std::string body = Fixture(kAgentUpdate);
  body = ReplaceValue(body, "PrimaryEntityId", "\"3D1FEEF9-604D-EF11-BFE3-6045BD03D9D8\"");
  body = ReplaceValue(body, "CorrelationId", "\"E1BCD028-AE87-4CA6-AF27-A17EE680DBC9\"");
  body = ReplaceValue(body, "OperationId", "\"1A14C3EC-9c50-EF11-bfe3-00224802DBB1\"");
  body = ReplaceFirst(body, "\"Id\":\"8ff4bda5-9d4e-ef11-bfe3-00224802dbb1\"",
                      "\"Id\":\"8FF4BDA5-9D4E-EF11-BFE3-00224802DBB1\"");
  EventHeader upper;
  ASSERT_TRUE(DecodeBody(body, &upper).ok());
  ExpectGolden(GoldenFor(kAgentUpdate), upper);
  EventHeader lower;
  ASSERT_TRUE(DecodeBody(Fixture(kAgentUpdate), &lower).ok());
  EXPECT_EQ(upper.DedupeKey(), lower.DedupeKey());
}

TEST(DecodeMalformed, EscapedKeysAreMatchedAfterUnescaping) {
  std::string body = Fixture(kContact);
  body = ReplaceFirst(body, "\"MessageName\"", "\"Message\\u004eame\"");
  body = ReplaceFirst(body, "\"Stage\": 40", "\"\\u0053tage\": 20");
  body = ReplaceFirst(body, "\"OwningExtension\"", "\"Owning\\u0045xtension\"");
  EventHeader h;
  ASSERT_TRUE(DecodeBody(body, &h).ok());
  EXPECT_EQ(h.message_name, "Update");
  EXPECT_EQ(h.stage, 20);
  EXPECT_EQ(h.owning_extension_id, "75417616-4ea2-e711-8122-000d3aa2331c");
}

TEST(DecodeMalformed, EscapedStringValuesAreUnescaped) {
  EventHeader h;
  ASSERT_TRUE(
      DecodeBody(ReplaceValue(Fixture(kContact), "MessageName", "\"Up\\u0064ate\""), &h).ok());
  EXPECT_EQ(h.message_name, "Update");
  ASSERT_TRUE(DecodeBody(ReplaceValue(Fixture(kContact), "PrimaryEntityId",
                                      "\"6d81597f\\u002d0f9f-e711-8122-000d3aa2331c\""),
                         &h)
                  .ok());
  EXPECT_EQ(h.primary_entity_id, "6d81597f-0f9f-e711-8122-000d3aa2331c");
}

TEST(DecodeMalformed, DeepNestingInSkippedFieldIsRefused) {
  // Every value is walked to validate the whole body, with a nesting cap so a hostile body
  // cannot exhaust the stack.
  const std::string deep = std::string(2000, '[') + std::string(2000, ']');
  const std::string body = ReplaceValue(Fixture(kContact), "InputParameters", deep);
  for (int i = 0; i < 2; ++i) {
    ExpectErrorExactly(body, "InputParameters: JSON nested deeper than 64 levels");
  }
}

TEST(DecodeMalformed, DeepNestedObjectsInSkippedFieldAreRefused) {
  std::string deep;
  for (int i = 0; i < 2000; ++i) deep += "{\"key\":";
  deep += "null";
  deep += std::string(2000, '}');
  ExpectErrorExactly(ReplaceValue(Fixture(kContact), "ParentContext", deep),
                     "ParentContext: JSON nested deeper than 64 levels");
}

TEST(DecodeMalformed, NestingWithinTheCapIsAccepted) {
  std::string nested;
  for (int i = 0; i < 60; ++i) nested += "[{\"k\":";
  nested += "1";
  for (int i = 0; i < 60; ++i) nested += "}]";
  // 120 levels of [ and { together exceed the cap; 30 pairs (60 levels) stay below it.
  std::string ok;
  for (int i = 0; i < 30; ++i) ok += "[{\"k\":";
  ok += "1";
  for (int i = 0; i < 30; ++i) ok += "}]";
  EventHeader h;
  Status st = DecodeBody(ReplaceValue(Fixture(kContact), "InputParameters", ok), &h);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ExpectGolden(GoldenFor(kContact), h);
  ExpectError(ReplaceValue(Fixture(kContact), "InputParameters", nested), "InputParameters: ");
}

TEST(DecodeMalformed, UnbalancedNestingInSkippedField) {
  const std::string deep = std::string(40, '[') + std::string(39, ']');
  ExpectError(ReplaceValue(Fixture(kContact), "InputParameters", deep), "");
  const std::string very_deep = std::string(2000, '[') + std::string(1999, ']');
  ExpectError(ReplaceValue(Fixture(kContact), "InputParameters", very_deep), "InputParameters: ");
}

TEST(DecodeMalformed, InvalidUtf8InReadString) {
  ExpectError(ReplaceValue(Fixture(kContact), "OrganizationName", "\"Org\xff\xfeName\""), "body: ");
}

TEST(DecodeMalformed, InvalidUtf8InSkippedString) {
  ExpectError(ReplaceFirst(Fixture(kContact), "James Glynn", "James\xff\xfeGlynn"), "body: ");
}

TEST(DecodeMalformed, OverlongUtf8Encoding) {
  // 0xC0 0xAF is an overlong '/', which UTF-8 forbids.
  ExpectError(ReplaceValue(Fixture(kContact), "OrganizationName", "\"Org\xc0\xaf\""), "body: ");
}

TEST(DecodeMalformed, ValidMultibyteUtf8IsKept) {
  EventHeader h;
  ASSERT_TRUE(DecodeBody(ReplaceValue(Fixture(kContact), "OrganizationName",
                                      "\"Org\xc3\xa9\xe2\x82\xac\\u00e9\""),
                         &h)
                  .ok());
  EXPECT_EQ(h.organization_name, "Org\xc3\xa9\xe2\x82\xac\xc3\xa9");
}

TEST(DecodeMalformed, BadEscapeInReadString) {
  ExpectError(ReplaceValue(Fixture(kContact), "MessageName", "\"Up\\qdate\""), "MessageName: ");
}

TEST(DecodeMalformed, UnescapedControlCharacterInString) {
  ExpectError(ReplaceValue(Fixture(kContact), "OrganizationName", "\"Org\tName\""), "body: ");
}

TEST(DecodeMalformed, MissingColonInSkippedField) {
  ExpectError(ReplaceFirst(Fixture(kContact), "\"IsolationMode\": 1", "\"IsolationMode\" 1"),
              "body: ");
}

TEST(DecodeMalformed, ByteOrderMarkIsRefused) {
  ExpectError("\xEF\xBB\xBF" + Fixture(kContact), "body: ");
}

// Documents a limitation rather than a wish: simdjson On-Demand validates structure and UTF-8 for
// the whole body, but it does not check the grammar of values it skips (missing commas inside a
// skipped array, misspelt literals, bad escapes), so such bodies are accepted and journaled.
TEST(DecodeMalformed, GrammarErrorsInsideSkippedValuesAreDetected) {
  // The decoder reads only header fields but walks every other value, so grammar errors deep
  // in the body still get a 400 naming the top-level field that holds them.
  const std::string base = Fixture(kContact);
  const std::pair<std::string, std::string> cases[] = {
      {ReplaceValue(base, "OutputParameters", "[1 2 3]"), "OutputParameters: "},
      {ReplaceValue(base, "IsExecutingOffline", "fals"), "IsExecutingOffline: "},
      {ReplaceFirst(base, "James Glynn (sample)", "James \\q"), "InputParameters: "},
      {ReplaceValue(base, "OutputParameters", "[01]"), "OutputParameters: "},
      {ReplaceValue(base, "OutputParameters", "[nul]"), "OutputParameters: "},
  };
  for (const auto& [body, prefix] : cases) ExpectError(body, prefix);
}

TEST(DecodeMalformed, DuplicateKeyWithBadValueIsAnError) {
  const std::string body =
      ReplaceFirst(Fixture(kContact), "\"Stage\": 40", "\"Stage\": 40, \"Stage\": \"forty\"");
  ExpectError(body, "Stage: ");
}

TEST(DecodeMalformed, SizeExceededShapeStillDecodes) {
  // Over 256 KB Dataverse strips these four and sets x-ms-dynamics-msg-size-exceeded.
  for (const char* name : {kContact, kAgentCreate, kAgentUpdate, kDevkit}) {
    SCOPED_TRACE(name);
    std::string body = Fixture(name);
    for (const char* key :
         {"InputParameters", "PreEntityImages", "PostEntityImages", "ParentContext"}) {
      body = RemoveField(body, key);
    }
    ASSERT_EQ(body.find("\"InputParameters\""), std::string::npos);
    ASSERT_EQ(body.find("\"ParentContext\""), std::string::npos);
    EventHeader h;
    Status st = DecodeBody(body, &h);
    ASSERT_TRUE(st.ok()) << st.ToString();
    ExpectGolden(GoldenFor(name), h);
    WebhookHttpHeaders headers;
    headers.size_exceeded = true;
    ApplyHttpHeaders(headers, &h);
    EXPECT_TRUE(h.size_exceeded);
  }
}

TEST(DecodeMalformed, FieldOrderDoesNotMatter) {
  // Move OwningExtension to the front and Stage to the end.
  const std::string base = Fixture(kContact);
  const std::string ext = ValueText(base, "OwningExtension");
  std::string body = RemoveField(base, "OwningExtension");
  body = RemoveField(body, "Stage");
  body = ReplaceFirst(body, "{", "{\"OwningExtension\": " + ext + ",");
  const size_t last = body.rfind('}');
  body.insert(last, ", \"Stage\": 40");
  EventHeader h;
  Status st = DecodeBody(body, &h);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ExpectGolden(GoldenFor(kContact), h);
}

TEST(DecodeMalformed, NestedParentContextDoesNotOverrideTopLevel) {
  // ParentContext repeats MessageName, Stage (30) and so on; only the top level counts.
  const std::string body = RemoveField(Fixture(kAgentUpdate), "Stage");
  ASSERT_NE(body.find("\"Stage\":30"), std::string::npos);
  ExpectErrorExactly(body, "Stage: missing");
}

// ---------------------------------------------------------------------------------------------
// DedupeKey and ToHex.

EventHeader KeyBase() {
  EventHeader h;
  h.owning_extension_id = "75417616-4ea2-e711-8122-000d3aa2331c";
  h.operation_id = "4af10637-4ea2-e711-8122-000d3aa2331c";
  h.message_name = "Update";
  h.primary_entity_id = "6d81597f-0f9f-e711-8122-000d3aa2331c";
  return h;
}

TEST(DedupeKey, SameTupleSameKey) {
  EXPECT_EQ(KeyBase().DedupeKey(), KeyBase().DedupeKey());
  EventHeader decoded;
  ASSERT_TRUE(DecodeBody(Fixture(kContact), &decoded).ok());
  EXPECT_EQ(decoded.DedupeKey(), KeyBase().DedupeKey());
}

TEST(DedupeKey, OtherFieldsDoNotMatter) {
  EventHeader h = KeyBase();
  h.stage = 20;
  h.mode = 0;
  h.depth = 3;
  h.correlation_id = "b374239d-4233-41a9-8b17-a86cb4f737b5";
  h.request_id = "11111111-1111-1111-1111-111111111111";
  h.initiating_user_id = "75c2dd85-e89e-e711-8122-000d3aa2331c";
  h.operation_created_on_ms = 12345;
  h.organization_name = "OrgName";
  h.primary_entity_name = "contact";
  h.http_request_id = "x";
  h.organization_host = "org.crm.dynamics.com";
  h.size_exceeded = true;
  EXPECT_EQ(h.DedupeKey(), KeyBase().DedupeKey());
}

TEST(DedupeKey, EachFieldChangesTheKey) {
  const EventKey base = KeyBase().DedupeKey();
  EventHeader h = KeyBase();
  h.owning_extension_id = "75417616-4ea2-e711-8122-000d3aa2331d";
  EXPECT_NE(h.DedupeKey(), base);
  h = KeyBase();
  h.operation_id = "4af10637-4ea2-e711-8122-000d3aa2331d";
  EXPECT_NE(h.DedupeKey(), base);
  h = KeyBase();
  h.message_name = "Create";
  EXPECT_NE(h.DedupeKey(), base);
  h = KeyBase();
  h.primary_entity_id = "6d81597f-0f9f-e711-8122-000d3aa2331d";
  EXPECT_NE(h.DedupeKey(), base);
}

TEST(DedupeKey, RequestIdStandsInForMissingOperationId) {
  EventHeader with_op = KeyBase();
  with_op.request_id = "99999999-9999-9999-9999-999999999999";
  EventHeader with_request = KeyBase();
  with_request.request_id = with_request.operation_id;
  with_request.operation_id.clear();
  EXPECT_EQ(with_request.DedupeKey(), KeyBase().DedupeKey());
  EXPECT_EQ(with_op.DedupeKey(), KeyBase().DedupeKey());

  EventHeader other_request = with_request;
  other_request.request_id = "4af10637-4ea2-e711-8122-000d3aa2331d";
  EXPECT_NE(other_request.DedupeKey(), with_request.DedupeKey());
}

TEST(DedupeKey, FieldBoundariesAreSeparated) {
  EventHeader a = KeyBase();
  EventHeader b = KeyBase();
  a.owning_extension_id = "ab";
  a.operation_id = "c";
  b.owning_extension_id = "a";
  b.operation_id = "bc";
  EXPECT_NE(a.DedupeKey(), b.DedupeKey());
  a = KeyBase();
  b = KeyBase();
  a.message_name = "Update6d";
  a.primary_entity_id = "81597f";
  b.message_name = "Update";
  b.primary_entity_id = "6d81597f";
  EXPECT_NE(a.DedupeKey(), b.DedupeKey());
}

TEST(DedupeKey, EmptyHeaderHasAKeyToo) {
  EventHeader empty;
  EXPECT_NE(empty.DedupeKey(), KeyBase().DedupeKey());
  EXPECT_NE(empty.DedupeKey(), EventKey{});
}

TEST(EventKeyToHex, Digits) {
  EXPECT_EQ((EventKey{0x0123456789abcdefULL, 0xfedcba9876543210ULL}.ToHex()),
            "0123456789abcdeffedcba9876543210");
  EXPECT_EQ(EventKey{}.ToHex(), std::string(32, '0'));
  EXPECT_EQ((EventKey{~0ULL, ~0ULL}.ToHex()), std::string(32, 'f'));
  EXPECT_EQ((EventKey{0, 1}.ToHex()), std::string(31, '0') + "1");
  EXPECT_EQ((EventKey{1, 0}.ToHex()), std::string(15, '0') + "1" + std::string(16, '0'));
}

TEST(EventKeyToHex, AppendHexKeepsWhatWasThere) {
  std::string out = "id=";
  EventKey{0x0123456789abcdefULL, 0xfedcba9876543210ULL}.AppendHex(&out);
  EXPECT_EQ(out, "id=0123456789abcdeffedcba9876543210");
}

TEST(EventKeyToHex, DedupeKeyHexIsLowercase32) {
  const std::string hex = KeyBase().DedupeKey().ToHex();
  EXPECT_EQ(hex.size(), 32u);
  EXPECT_THAT(hex, MatchesRegex("[0-9a-f]{32}"));
}

TEST(EventHeaderClear, ResetsEverything) {
  EventHeader h = KeyBase();
  h.stage = 40;
  h.mode = 1;
  h.depth = 2;
  h.request_id = "r";
  h.correlation_id = "c";
  h.initiating_user_id = "u";
  h.operation_created_on_ms = 5;
  h.organization_name = "o";
  h.primary_entity_name = "contact";
  h.organization_host = "h";
  h.header_entity_name = "e";
  h.header_request_name = "n";
  h.http_request_id = "i";
  h.correlation_request_id = "k";
  h.size_exceeded = true;
  h.Clear();
  EventHeader fresh;
  EXPECT_EQ(h.DedupeKey(), fresh.DedupeKey());
  EXPECT_EQ(h.message_name, "");
  EXPECT_EQ(h.primary_entity_name, "");
  EXPECT_EQ(h.primary_entity_id, "");
  EXPECT_EQ(h.stage, 0);
  EXPECT_EQ(h.mode, 0);
  EXPECT_EQ(h.depth, 0);
  EXPECT_EQ(h.correlation_id, "");
  EXPECT_EQ(h.operation_id, "");
  EXPECT_EQ(h.request_id, "");
  EXPECT_EQ(h.owning_extension_id, "");
  EXPECT_EQ(h.initiating_user_id, "");
  EXPECT_EQ(h.operation_created_on_ms, 0);
  EXPECT_EQ(h.organization_name, "");
  EXPECT_EQ(h.organization_host, "");
  EXPECT_EQ(h.header_entity_name, "");
  EXPECT_EQ(h.header_request_name, "");
  EXPECT_EQ(h.http_request_id, "");
  EXPECT_EQ(h.correlation_request_id, "");
  EXPECT_FALSE(h.size_exceeded);
}

// ---------------------------------------------------------------------------------------------
// ParseDataverseDate.

int64_t Timegm(int y, int mo, int d, int h, int mi, int s) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

void ExpectDate(std::string_view text, int64_t expected) {
  Result<int64_t> r = ParseDataverseDate(text);
  ASSERT_TRUE(r.ok()) << text << ": " << r.status().ToString();
  EXPECT_EQ(*r, expected) << text;
}

void ExpectBadDate(std::string_view text, std::string_view message) {
  Result<int64_t> r = ParseDataverseDate(text);
  ASSERT_FALSE(r.ok()) << text << " parsed as " << *r;
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), message) << text;
}

TEST(ParseDataverseDate, WcfForms) {
  ExpectDate("/Date(1506384247000)/", 1506384247000LL);
  ExpectDate("\\/Date(1506384247000)\\/", 1506384247000LL);
  ExpectDate("/Date(1506409448000-0700)/", 1506409448000LL);
  ExpectDate("\\/Date(1506409448000-0700)\\/", 1506409448000LL);
  ExpectDate("/Date(1722582039000+0000)/", 1722582039000LL);
  ExpectDate("/Date(1506409448000+1400)/", 1506409448000LL);
  ExpectDate("/Date(0)/", 0);
  ExpectDate("/Date(-86400000)/", -86400000LL);  // 1969-12-31
  ExpectDate("/Date(253402300799999)/", Timegm(9999, 12, 31, 23, 59, 59) + 999);
}

TEST(ParseDataverseDate, BadWcfForms) {
  ExpectBadDate("/Date()/", "bad /Date()/ number");
  ExpectBadDate("/Date(abc)/", "bad /Date()/ number");
  ExpectBadDate("/Date(+1000)/", "bad /Date()/ number");
  ExpectBadDate("/Date(1506409448000", "unterminated /Date()/");
  ExpectBadDate("/Date(1506409448000)", "unterminated /Date()/");
  ExpectBadDate("\\/Date(1506409448000)/", "unterminated /Date()/");
  ExpectBadDate("/Date(1506409448000)\\/", "unterminated /Date()/");
  ExpectBadDate("/Date(1506409448000-07)/", "bad /Date()/ offset");
  ExpectBadDate("/Date(1506409448000-07:00)/", "bad /Date()/ offset");
  ExpectBadDate("/Date(1506409448000*0700)/", "bad /Date()/ offset");
  ExpectBadDate("/Date(1506409448000-07x0)/", "bad /Date()/ offset");
  ExpectBadDate("/Date(1506409448000 )/", "bad /Date()/ offset");
  ExpectBadDate("/Date(99999999999999999999)/", "bad /Date()/ number");
}

TEST(ParseDataverseDate, IsoForms) {
  const int64_t devkit = Timegm(2024, 12, 10, 6, 43, 34);
  EXPECT_EQ(devkit, kDevkitCreatedOnMs);
  ExpectDate("2024-12-10T06:43:34.000Z", devkit);
  ExpectDate("2024-12-10T06:43:34Z", devkit);
  ExpectDate("2024-12-10T06:43:34", devkit);  // no zone: UTC
  ExpectDate("2024-12-10 06:43:34Z", devkit);
  ExpectDate("2024-12-10T06:43:34.5Z", devkit + 500);
  ExpectDate("2024-12-10T06:43:34.12Z", devkit + 120);
  ExpectDate("2024-12-10T06:43:34.1234567Z", devkit + 123);
  ExpectDate("2024-12-10T08:43:34.000+02:00", devkit);
  ExpectDate("2024-12-10T12:13:34+05:30", devkit);
  ExpectDate("2024-12-09T23:43:34-07:00", devkit);
  ExpectDate("1970-01-01T00:00:00Z", 0);
  ExpectDate("1969-12-31T23:59:59Z", -1000);
  ExpectDate("2000-02-29T12:00:00Z", Timegm(2000, 2, 29, 12, 0, 0));
  ExpectDate("2100-03-01T00:00:00Z", Timegm(2100, 3, 1, 0, 0, 0));
  ExpectDate("2017-09-26T06:04:08Z", 1506405848000LL);
}

TEST(ParseDataverseDate, IsoAgreesWithTimegmAcrossYears) {
  for (int y : {1900, 1970, 1999, 2000, 2001, 2024, 2038, 2100, 2400}) {
    for (int mo : {1, 2, 3, 6, 12}) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%04d-%02d-28T13:14:15Z", y, mo);
      ExpectDate(buf, Timegm(y, mo, 28, 13, 14, 15));
    }
  }
}

TEST(ParseDataverseDate, BadIsoForms) {
  ExpectBadDate("", "not a date");
  ExpectBadDate("yesterday", "not a date");
  ExpectBadDate("2024-12-10", "not a date");
  ExpectBadDate("2024/12/10T06:43:34Z", "not a date");
  ExpectBadDate("2024-12-10X06:43:34Z", "not a date");
  ExpectBadDate("2024-12-10T06:43:34.Z", "not a date");
  ExpectBadDate("2024-12-10T06:43:34ZZ", "not a date");
  ExpectBadDate("2024-12-10T06:43:34 ", "not a date");
  ExpectBadDate("2024-12-10T06:43:34+0200", "not a date");
  ExpectBadDate("2024-12-10T06:43:34+02:0x", "bad offset");
  ExpectBadDate("2024-13-10T06:43:34Z", "date out of range");
  ExpectBadDate("2024-00-10T06:43:34Z", "date out of range");
  ExpectBadDate("2024-12-32T06:43:34Z", "date out of range");
  ExpectBadDate("2024-12-10T24:00:00Z", "date out of range");
  ExpectBadDate("2024-12-10T06:60:00Z", "date out of range");
  ExpectBadDate("2024-12-10T06:43:61Z", "date out of range");
}

TEST(ParseDataverseDate, SignsInsideIsoFieldsAreRefused) {
  // Every numeric field of the ISO form is plain digits; a '-' must not parse as a negative.
  ExpectBadDate("2024-12-10T-1:43:34Z", "not a date");
  ExpectBadDate("2024-12-10T06:-1:34Z", "not a date");
  ExpectBadDate("2024-12-10T06:43:-1Z", "not a date");
  ExpectBadDate("-024-12-10T06:43:34Z", "not a date");
  ExpectBadDate("2024-12-10T06:43:34+-1:00", "bad offset");
  ExpectBadDate("2024-12-10T06:43:34+01:-1", "bad offset");
}

TEST(ParseDataverseDate, SignInsideWcfOffsetIsRefused) {
  ExpectBadDate("/Date(1506409448000+-700)/", "bad /Date()/ offset");
  ExpectBadDate("/Date(1506409448000--700)/", "bad /Date()/ offset");
}

// ---------------------------------------------------------------------------------------------
// CanonicalGuid.

TEST(CanonicalGuid, AcceptsAndLowercases) {
  std::string out;
  ASSERT_TRUE(CanonicalGuid("6d81597f-0f9f-e711-8122-000d3aa2331c", &out));
  EXPECT_EQ(out, "6d81597f-0f9f-e711-8122-000d3aa2331c");
  ASSERT_TRUE(CanonicalGuid("6D81597F-0F9F-E711-8122-000D3AA2331C", &out));
  EXPECT_EQ(out, "6d81597f-0f9f-e711-8122-000d3aa2331c");
  ASSERT_TRUE(CanonicalGuid("AbCdEf01-2345-6789-aBcD-eF0123456789", &out));
  EXPECT_EQ(out, "abcdef01-2345-6789-abcd-ef0123456789");
  ASSERT_TRUE(CanonicalGuid("00000000-0000-0000-0000-000000000000", &out));
  EXPECT_EQ(out, "00000000-0000-0000-0000-000000000000");
  // Replaces whatever *out held.
  out = "previous value that is longer than a guid, by quite a lot";
  ASSERT_TRUE(CanonicalGuid("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", &out));
  EXPECT_EQ(out, "ffffffff-ffff-ffff-ffff-ffffffffffff");
}

TEST(CanonicalGuid, Refuses) {
  std::string out;
  for (std::string_view bad : {
           std::string_view(""),
           std::string_view("6d81597f-0f9f-e711-8122-000d3aa2331"),
           std::string_view("6d81597f-0f9f-e711-8122-000d3aa2331c0"),
           std::string_view("{6d81597f-0f9f-e711-8122-000d3aa2331c}"),
           std::string_view("6d81597f0f9fe7118122000d3aa2331c"),
           std::string_view("6d81597f-0f9f-e711-8122+000d3aa2331c"),
           std::string_view("6d81597f-0f9fe-711-8122-000d3aa2331c"),
           std::string_view("6d81597g-0f9f-e711-8122-000d3aa2331c"),
           std::string_view("6d81597f-0f9f-e711-8122-000d3aa2331G"),
           std::string_view("6d81597f-0f9f-e711-8122-000d3aa 331c"),
           std::string_view("6d81597f-0f9f-e711-8122-000d3aa2331\0", 36),
           std::string_view("-6d81597f0f9f-e711-8122-000d3aa2331c"),
       }) {
    EXPECT_FALSE(CanonicalGuid(bad, &out)) << bad;
  }
}

// Every byte value in every position against the rule written out plainly: a hex digit of
// either case where a digit belongs, a hyphen at 8, 13, 18 and 23; a refused GUID leaves *out
// as it was.
TEST(CanonicalGuid, EveryByteInEveryPositionFollowsTheRule) {
  const std::string good = "6d81597f-0f9f-e711-8122-000d3aa2331c";
  for (size_t pos = 0; pos < good.size(); ++pos) {
    const bool hyphen_slot = pos == 8 || pos == 13 || pos == 18 || pos == 23;
    for (int byte = 0; byte < 256; ++byte) {
      std::string in = good;
      in[pos] = static_cast<char>(byte);
      const bool digit = byte >= '0' && byte <= '9';
      const bool lower = byte >= 'a' && byte <= 'f';
      const bool upper = byte >= 'A' && byte <= 'F';
      const bool accept = hyphen_slot ? byte == '-' : (digit || lower || upper);
      std::string out = "untouched";
      ASSERT_EQ(CanonicalGuid(in, &out), accept) << "byte " << byte << " at " << pos;
      if (!accept) {
        EXPECT_EQ(out, "untouched");
        continue;
      }
      std::string expected = good;
      expected[pos] = upper ? static_cast<char>(byte - 'A' + 'a') : static_cast<char>(byte);
      EXPECT_EQ(out, expected) << "byte " << byte << " at " << pos;
    }
  }
}

}  // namespace
}  // namespace dvrouter

namespace dvrouter {
namespace {

TEST(ParseDataverseDateCalendar, DaysBeyondTheMonthAreRefused) {
  EXPECT_FALSE(ParseDataverseDate("2024-02-31T00:00:00Z").ok());
  EXPECT_FALSE(ParseDataverseDate("2023-02-29T00:00:00Z").ok());  // not a leap year
  EXPECT_FALSE(ParseDataverseDate("2024-04-31T00:00:00Z").ok());
  EXPECT_FALSE(ParseDataverseDate("1900-02-29T00:00:00Z").ok());         // century, not leap
  ASSERT_TRUE(ParseDataverseDate("2024-02-29T00:00:00Z").ok());          // leap year
  EXPECT_EQ(*ParseDataverseDate("2000-02-29T00:00:00Z"), 951782400000);  // 400-year leap
  EXPECT_EQ(*ParseDataverseDate("2024-12-31T23:59:59.999Z"), 1735689599999);
}

}  // namespace
}  // namespace dvrouter

namespace dvrouter {
namespace {

TEST(DecodeNumbers, IntegersBeyond64BitsInOtherFieldsAreValidJson) {
  std::string body = testing::Fixture("update-contact-postop-async.json");
  body = testing::ReplaceAll(body, "\"IsolationMode\": 1",
                             "\"IsolationMode\": 123456789012345678901234567890");
  ASSERT_NE(body.find("123456789012345678901234567890"), std::string::npos);
  Decoder decoder(1 << 20);
  EventHeader h;
  Status st = decoder.Decode(body.data(), body.size(), body.size(), &h);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(h.message_name, "Update");
}

}  // namespace
}  // namespace dvrouter

namespace dvrouter {
namespace {

// A field the router reads, given twice: a reader taking the first and one taking the last would
// disagree about the event (which row, which message, which Target), so the body is refused.
TEST(DecodeMalformed, AFieldTheRouterReadsGivenTwiceIsRefused) {
  const std::string body = Fixture(kContact);
  for (const char* key : {"MessageName", "PrimaryEntityId", "PrimaryEntityName", "Stage",
                          "InputParameters", "PostEntityImages", "OperationId"}) {
    // The same member again (its original value), first in the object.
    const std::string twice = "{\"" + std::string(key) + "\": " + ValueText(body, key) + "," +
                              body.substr(body.find('{') + 1);
    ExpectErrorExactly(twice, std::string(key) + ": appears twice");
  }
  const std::string ext_value = ValueText(body, "OwningExtension");
  const std::string ext_twice =
      "{\"Id\":\"00000000-0000-0000-0000-000000000001\"," + ext_value.substr(1);
  ExpectErrorExactly(ReplaceValue(body, "OwningExtension", ext_twice),
                     "OwningExtension.Id: appears twice");
}

}  // namespace
}  // namespace dvrouter
