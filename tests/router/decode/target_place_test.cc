// The Target's place the decoder notes (EventHeader::target_*) and the memo's conversion of
// those bytes alone (ChangeMemo::SetTarget): for every fixture and every shape of InputParameters
// the attribute extractor treats apart, the same ChangeSet as the whole body gives.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "router/decode/attributes.h"
#include "router/decode/decode.h"
#include "router/decode/event.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

constexpr size_t kMaxBody = 1 << 20;

// A body with the fields the decoder requires and `params` as its InputParameters.
std::string WithParams(const std::string& params) {
  return R"({"CorrelationId":"9e1ba2b7-8a5a-4a8e-a3f1-0d6a7ad4d1a1","Depth":1,)"
         R"("InputParameters":)" +
         params +
         R"(,"MessageName":"Update","Mode":1,)"
         R"("OperationId":"2f0c6a57-3c51-4d38-9c1e-5a1c4cf1a001",)"
         R"("OwningExtension":{"Id":"0e6f5f3d-1a2b-4c5d-8e9f-0a1b2c3d4e5f","Name":"step"},)"
         R"("PrimaryEntityId":"6d81597f-0f9f-e711-8122-000d3aa2331c",)"
         R"("PrimaryEntityName":"contact","Stage":40})";
}

// An Entity whose one attribute is firstname = `name`.
std::string Entity(const std::string& name) {
  return R"({"__type":"Entity:http://schemas.microsoft.com/xrm/2011/Contracts",)"
         R"("Attributes":[{"key":"firstname","value":")" +
         name +
         R"("}],"EntityState":null,"FormattedValues":[],)"
         R"("Id":"6d81597f-0f9f-e711-8122-000d3aa2331c","KeyAttributes":[],)"
         R"("LogicalName":"contact","RelatedEntities":[],"RowVersion":null})";
}

struct Extraction {
  Status status;
  ChangeSet changes;
};

Extraction Whole(const std::string& body) {
  AttributeExtractor x(kMaxBody);
  Extraction e;
  e.status = x.Extract(body.data(), body.size(), body.size(), &e.changes);
  return e;
}

// Through a memo told the decoder's place, as delivery does; *alone: whether it parsed only it.
Extraction ThroughMemo(const std::string& body, const EventHeader& h, bool* alone) {
  ChangeMemo memo;
  memo.SetTarget(h.target_offset, h.target_length);
  const uint64_t before = ChangeMemo::TargetExtractions();
  const ChangeSet* out = nullptr;
  Extraction e;
  e.status = memo.Get(body, &out);
  e.changes = *out;
  *alone = ChangeMemo::TargetExtractions() != before;
  return e;
}

void ExpectSame(const Extraction& a, const Extraction& b) {
  EXPECT_EQ(a.status.ok(), b.status.ok());
  EXPECT_EQ(a.status.message(), b.status.message());
  EXPECT_EQ(a.changes.has_target, b.changes.has_target);
  EXPECT_EQ(a.changes.is_reference, b.changes.is_reference);
  EXPECT_EQ(a.changes.entity, b.changes.entity);
  EXPECT_EQ(a.changes.id, b.changes.id);
  EXPECT_EQ(a.changes.attributes, b.changes.attributes);
  EXPECT_EQ(a.changes.columns, b.changes.columns);
}

EventHeader DecodeOk(const std::string& body) {
  Decoder decoder(kMaxBody);
  EventHeader h;
  const Status st = decoder.Decode(body.data(), body.size(), body.size(), &h);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return h;
}

TEST(TargetPlace, EveryFixtureWithATargetHasItsPlaceAndConvertsAsTheWholeBody) {
  size_t with_target = 0;
  for (const std::string& name : testing::FixtureNames()) {
    SCOPED_TRACE(name);
    const std::string body = testing::Fixture(name);
    const EventHeader h = DecodeOk(body);
    const Extraction whole = Whole(body);
    ASSERT_TRUE(whole.status.ok()) << whole.status.ToString();
    bool alone = false;
    ExpectSame(ThroughMemo(body, h, &alone), whole);
    EXPECT_EQ(alone, whole.changes.has_target);
    if (!whole.changes.has_target) {
      EXPECT_EQ(h.target_length, 0u);
      continue;
    }
    ++with_target;
    ASSERT_GT(h.target_length, 0u);
    ASSERT_LE(size_t{h.target_offset} + h.target_length, body.size());
    // The value's own bytes: an object within the body.
    EXPECT_EQ(body[h.target_offset], '{');
    EXPECT_EQ(body[h.target_offset + h.target_length - 1], '}');
    EXPECT_LT(h.target_length, body.size());
  }
  EXPECT_GE(with_target, 3u);
}

// Each shape the extractor's walk treats apart: the place is the value it converts, or none
// where it converts nothing or stops at an error; the memo's result is the whole body's.
TEST(TargetPlace, EachShapeOfInputParametersGivesTheExtractorsTarget) {
  const std::string ann = Entity("Ann");
  const std::string bob = Entity("Bob");
  // An attribute without its value: the converter refuses it, from the place as from the body.
  const std::string refused =
      R"({"__type":"Entity:http://schemas.microsoft.com/xrm/2011/Contracts",)"
      R"("Attributes":[{"key":"firstname"}],"Id":"6d81597f-0f9f-e711-8122-000d3aa2331c",)"
      R"("LogicalName":"contact"})";
  struct Case {
    const char* what;
    std::string params;
    std::string target;    // the bytes noted, "" for none
    bool refused = false;  // the extractor ends with an error
  };
  const std::vector<Case> cases = {
      {"plain", R"([{"key":"Target","value":)" + ann + "}]", ann},
      {"with whitespace", "[ {\n \"key\" : \"Target\" ,\r\n\t\"value\" :  " + ann + " \n\t } ]",
       ann},
      {"after another parameter",
       R"([{"key":"Other","value":)" + bob + R"(},{"key":"Target","value":)" + ann + "}]", ann},
      {"the first of two",
       R"([{"key":"Target","value":)" + ann + R"(},{"key":"Target","value":)" + bob + "}]", ann},
      {"escaped key", R"([{"key":"Tar\u0067et","value":)" + ann + "}]", ann},
      {"value before key", R"([{"value":)" + ann + R"(,"key":"Target"}])", ""},
      {"a later key wins", R"([{"key":"Target","key":"Other","value":)" + ann + "}]", ""},
      {"a later key makes it the Target", R"([{"key":"Other","key":"Target","value":)" + ann + "}]",
       ann},
      {"a key that is not a string",
       R"([{"key":1,"value":{}},{"key":"Target","value":)" + ann + "}]", "", true},
      {"a parameter that is not an object", R"(["x",{"key":"Target","value":)" + ann + "}]", "",
       true},
      {"a Target that is not an object",
       R"([{"key":"Target","value":"text"},{"key":"Target","value":)" + ann + "}]", "", true},
      {"a Target the converter refuses", R"([{"key":"Target","value":)" + refused + "}]", refused,
       true},
      {"no Target", R"([{"key":"Other","value":)" + ann + "}]", ""},
      {"not an array", R"({"key":"Target","value":)" + ann + "}", "", true},
      {"empty", "[]", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string body = WithParams(c.params);
    const EventHeader h = DecodeOk(body);
    if (c.target.empty()) {
      EXPECT_EQ(h.target_length, 0u);
    } else {
      ASSERT_LE(size_t{h.target_offset} + h.target_length, body.size());
      EXPECT_EQ(body.substr(h.target_offset, h.target_length), c.target);
    }
    bool alone = false;
    const Extraction whole = Whole(body);
    EXPECT_EQ(whole.status.ok(), !c.refused) << whole.status.ToString();
    ExpectSame(ThroughMemo(body, h, &alone), whole);
    EXPECT_EQ(alone, !c.target.empty());
  }
}

// A place that does not hold an object of the body (another body's, a stale one) is not used:
// the memo parses the whole body.
TEST(TargetPlace, APlaceThatIsNotAnObjectOfTheBodyIsIgnored) {
  const std::string body = WithParams(R"([{"key":"Target","value":)" + Entity("Ann") + "}]");
  const EventHeader good = DecodeOk(body);
  ASSERT_GT(good.target_length, 0u);
  const Extraction whole = Whole(body);
  const std::vector<std::pair<uint32_t, uint32_t>> bad = {
      {good.target_offset + 1, good.target_length - 1},
      {good.target_offset, good.target_length - 1},
      {static_cast<uint32_t>(body.size()), 2},
      {good.target_offset, static_cast<uint32_t>(body.size())},
      {0, 1}};
  for (const auto& [offset, length] : bad) {
    SCOPED_TRACE(std::to_string(offset) + "+" + std::to_string(length));
    EventHeader h = good;
    h.target_offset = offset;
    h.target_length = length;
    bool alone = true;
    ExpectSame(ThroughMemo(body, h, &alone), whole);
    EXPECT_FALSE(alone);
  }
}

// The decoder clears the place of the body before.
TEST(TargetPlace, ABodyWithoutATargetClearsThePlaceOfTheOneBefore) {
  Decoder decoder(kMaxBody);
  EventHeader h;
  const std::string with = WithParams(R"([{"key":"Target","value":)" + Entity("Ann") + "}]");
  ASSERT_TRUE(decoder.Decode(with.data(), with.size(), with.size(), &h).ok());
  ASSERT_GT(h.target_length, 0u);
  const std::string without = WithParams("[]");
  ASSERT_TRUE(decoder.Decode(without.data(), without.size(), without.size(), &h).ok());
  EXPECT_EQ(h.target_offset, 0u);
  EXPECT_EQ(h.target_length, 0u);
}

}  // namespace
}  // namespace dvrouter
