#include "router/decode/attributes.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

ChangeSet ExtractOk(const std::string& body) {
  AttributeExtractor x(1 << 20);
  ChangeSet cs;
  Status st = x.Extract(body.data(), body.size(), body.size(), &cs);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return cs;
}

Status ExtractStatus(const std::string& body) {
  AttributeExtractor x(1 << 20);
  ChangeSet cs;
  return x.Extract(body.data(), body.size(), body.size(), &cs);
}

// A body whose Target is exactly `target_json` (the rest of the context is the contact fixture).
std::string WithTarget(const std::string& target_json) {
  const std::string base = testing::Fixture("update-contact-postop-async.json");
  const std::string marker = "\"key\": \"Target\",";
  size_t at = base.find(marker);
  EXPECT_NE(at, std::string::npos);
  size_t value = base.find("\"value\":", at) + 8;
  // The Target object ends where its "RowVersion" member closes it.
  size_t end = base.find("\"RowVersion\": null", value);
  end = base.find('}', end) + 1;
  return base.substr(0, value) + " " + target_json + base.substr(end);
}

TEST(AttributeExtractor, ContactUpdate) {
  ChangeSet cs = ExtractOk(testing::Fixture("update-contact-postop-async.json"));
  EXPECT_TRUE(cs.has_target);
  EXPECT_FALSE(cs.is_reference);
  EXPECT_EQ(cs.entity, "contact");
  EXPECT_EQ(cs.id, "6d81597f-0f9f-e711-8122-000d3aa2331c");
  EXPECT_EQ(cs.columns,
            (std::vector<std::string>{"firstname", "contactid", "fullname", "yomifullname",
                                      "modifiedon", "modifiedby", "modifiedonbehalfby"}));
  // 1506384247000 ms = 2017-09-26T00:04:07Z (date -u -d @1506384247).
  EXPECT_EQ(cs.attributes,
            "{\"firstname\":\"James\",\"contactid\":\"6d81597f-0f9f-e711-8122-000d3aa2331c\","
            "\"fullname\":\"James Glynn (sample)\",\"yomifullname\":\"James Glynn (sample)\","
            "\"modifiedon\":\"2017-09-26T00:04:07.000Z\",\"modifiedby\":{\"id\":\"75c2dd85-e89e-"
            "e711-8122-000d3aa2331c\",\"logicalname\":\"systemuser\",\"name\":null},"
            "\"modifiedonbehalfby\":null}");
}

TEST(AttributeExtractor, CreateWithOptionSetsAndBooleans) {
  ChangeSet cs = ExtractOk(testing::Fixture("create-msdyn_agentstatus-postop-sync.json"));
  EXPECT_EQ(cs.entity, "msdyn_agentstatus");
  EXPECT_EQ(cs.id, "4b1e3d75-a749-ef11-acce-00224802d26d");
  EXPECT_NE(cs.attributes.find("\"statecode\":0,\"statuscode\":1,"), std::string::npos)
      << cs.attributes;
  EXPECT_NE(cs.attributes.find("\"msdyn_isagentloggedin\":false"), std::string::npos);
  EXPECT_NE(cs.attributes.find("\"owningbusinessunit\":{\"id\":\"e95e91cf-7b10-ef11-9f8a-"
                               "6045bdd4c6be\",\"logicalname\":\"businessunit\",\"name\":null}"),
            std::string::npos);
  // /Date(1721809601000)/ = 2024-07-24T08:26:41Z.
  EXPECT_NE(cs.attributes.find("\"msdyn_capacitymodifiedon\":\"2024-07-24T08:26:41.000Z\""),
            std::string::npos);
  EXPECT_EQ(cs.attributes.find("__type"), std::string::npos);
  EXPECT_EQ(cs.attributes.find("/Date("), std::string::npos);
}

TEST(AttributeExtractor, ActionsWithoutTargetHaveNone) {
  ChangeSet cs = ExtractOk(testing::Fixture("customaction-context-devkit-isodates.json"));
  EXPECT_FALSE(cs.has_target);
  EXPECT_EQ(cs.attributes, "{}");
  EXPECT_TRUE(cs.columns.empty());
}

TEST(AttributeExtractor, EntityWithCollectionsReferencesAndIsoDates) {
  // The devkit fixture's InputEntity, renamed to Target: an OptionSetValue collection, an
  // EntityReference and an ISO date (passed through unchanged).
  std::string body =
      testing::ReplaceAll(testing::Fixture("customaction-context-devkit-isodates.json"),
                          "\"key\": \"InputEntity\"", "\"key\": \"Target\"");
  ChangeSet cs = ExtractOk(body);
  EXPECT_TRUE(cs.has_target);
  EXPECT_EQ(cs.entity, "account");
  EXPECT_EQ(cs.id, "98982849-096f-ef11-a670-6045bd21f435");
  EXPECT_EQ(cs.attributes,
            "{\"name\":\"ACCOUNT NAME\",\"datetime\":\"2024-12-10T06:43:27.963Z\","
            "\"entityreference\":{\"id\":\"a4982849-096f-ef11-a670-6045bd21f435\","
            "\"logicalname\":\"account\",\"name\":null},"
            "\"guid\":\"fc69bba7-3a04-4ec1-97b7-d3ae047da76e\",\"optionsets\":[1,2]}");
}

TEST(AttributeExtractor, DeleteTargetIsAReference) {
  ChangeSet cs = ExtractOk(WithTarget(
      "{\"__type\":\"EntityReference:http:\\/\\/schemas.microsoft.com\\/xrm\\/2011\\/Contracts\","
      "\"Id\":\"6D81597F-0F9F-E711-8122-000D3AA2331C\",\"KeyAttributes\":[],"
      "\"LogicalName\":\"contact\",\"Name\":null,\"RowVersion\":null}"));
  EXPECT_TRUE(cs.has_target);
  EXPECT_TRUE(cs.is_reference);
  EXPECT_EQ(cs.entity, "contact");
  EXPECT_EQ(cs.id, "6d81597f-0f9f-e711-8122-000d3aa2331c");
  EXPECT_EQ(cs.attributes, "{}");
}

// The memo reuses one ChangeSet per cached record and the extractor writes the attributes
// straight into it: nothing of an earlier event may show in a later one's result.
TEST(AttributeExtractor, AReusedChangeSetKeepsNothingOfTheEventBefore) {
  AttributeExtractor x(1 << 20);
  ChangeSet cs;
  const auto extract = [&](const std::string& body) {
    return x.Extract(body.data(), body.size(), body.size(), &cs);
  };
  const std::string update = testing::Fixture("update-contact-postop-async.json");
  ASSERT_TRUE(extract(update).ok());
  const std::string first = cs.attributes;
  ASSERT_GT(first.size(), 2u);

  // A reference (Delete): no attributes.
  ASSERT_TRUE(extract(WithTarget("{\"__type\":\"EntityReference:http:\\/\\/schemas.microsoft.com\\/"
                                 "xrm\\/2011\\/Contracts\",\"Id\":\"6D81597F-0F9F-E711-8122-"
                                 "000D3AA2331C\",\"LogicalName\":\"contact\",\"Name\":null}"))
                  .ok());
  EXPECT_TRUE(cs.is_reference);
  EXPECT_EQ(cs.attributes, "{}");

  // A typed reference that carries Attributes anyway: still none kept.
  ASSERT_TRUE(
      extract(WithTarget("{\"__type\":\"EntityReference:http:\\/\\/schemas.microsoft.com\\/"
                         "xrm\\/2011\\/Contracts\",\"Attributes\":[{\"key\":\"name\","
                         "\"value\":\"x\"}],\"Id\":\"6D81597F-0F9F-E711-8122-000D3AA2331C\","
                         "\"LogicalName\":\"contact\"}"))
          .ok());
  EXPECT_TRUE(cs.is_reference);
  EXPECT_EQ(cs.attributes, "{}");

  // A Target that fails half-way through its attributes: no partial object left behind.
  ASSERT_TRUE(extract(update).ok());
  EXPECT_FALSE(extract(WithTarget("{\"__type\":\"Entity:http://schemas.microsoft.com/xrm/2011/"
                                  "Contracts\",\"Attributes\":[{\"key\":\"name\",\"value\":"
                                  "\"x\"},{\"value\":1,\"key\":\"b\"}],\"Id\":\"6D81597F-0F9F-"
                                  "E711-8122-000D3AA2331C\",\"LogicalName\":\"contact\"}"))
                   .ok());
  EXPECT_FALSE(cs.has_target);
  EXPECT_EQ(cs.attributes, "{}");

  // A smaller entity after a larger one, then the first again: the same as extracted fresh.
  ASSERT_TRUE(extract(WithTarget("{\"__type\":\"Entity:http://schemas.microsoft.com/xrm/2011/"
                                 "Contracts\",\"Attributes\":[{\"key\":\"name\",\"value\":\"x\"}],"
                                 "\"Id\":\"6D81597F-0F9F-E711-8122-000D3AA2331C\",\"LogicalName\":"
                                 "\"contact\"}"))
                  .ok());
  EXPECT_EQ(cs.attributes, "{\"name\":\"x\"}");
  EXPECT_EQ(cs.columns, std::vector<std::string>{"name"});
  ASSERT_TRUE(extract(update).ok());
  EXPECT_EQ(cs.attributes, first);
}

TEST(AppendIsoUtc, AppendsWhatFormatIsoUtcReturns) {
  std::string out = "at ";
  AppendIsoUtc(&out, 1506384247123);
  AppendIsoUtc(&out, 253402300800000);  // the general path (five-digit year)
  EXPECT_EQ(out, "at " + FormatIsoUtc(1506384247123) + FormatIsoUtc(253402300800000));
  EXPECT_EQ(FormatIsoUtc(1506384247123), "2017-09-26T00:04:07.123Z");
}

TEST(AttributeExtractor, MoneyDecimalsEscapesAndNestedCollections) {
  ChangeSet cs = ExtractOk(WithTarget(
      "{\"__type\":\"Entity:http://schemas.microsoft.com/xrm/2011/Contracts\",\"Attributes\":["
      "{\"key\":\"revenue\",\"value\":{\"__type\":\"Money:http://schemas.microsoft.com/xrm/2011/"
      "Contracts\",\"Value\":1234.500}},"
      "{\"key\":\"ratio\",\"value\":1.230},"
      "{\"key\":\"big\",\"value\":123456789012345678901234567890},"
      "{\"key\":\"note\",\"value\":\"line1\\nline2 \\\"q\\\" \\\\ \\u0001\"},"
      "{\"key\":\"when\",\"value\":\"\\/Date(1506409448000-0700)\\/\"},"
      "{\"key\":\"contacts\",\"value\":{\"__type\":\"EntityCollection:http://schemas.microsoft.com"
      "/xrm/2011/Contracts\",\"Entities\":[{\"Attributes\":[{\"key\":\"n\",\"value\":1}],"
      "\"Id\":\"00000000-0000-0000-0000-000000000001\",\"LogicalName\":\"contact\"}],"
      "\"EntityName\":\"contact\",\"MoreRecords\":false}}],"
      "\"Id\":\"6d81597f-0f9f-e711-8122-000d3aa2331c\",\"LogicalName\":\"account\"}"));
  EXPECT_EQ(cs.columns,
            (std::vector<std::string>{"revenue", "ratio", "big", "note", "when", "contacts"}));
  EXPECT_EQ(cs.attributes,
            "{\"revenue\":1234.500,\"ratio\":1.230,\"big\":123456789012345678901234567890,"
            "\"note\":\"line1\\nline2 \\\"q\\\" \\\\ \\u0001\","
            "\"when\":\"2017-09-26T07:04:08.000Z\","
            "\"contacts\":[{\"id\":\"00000000-0000-0000-0000-000000000001\","
            "\"logicalname\":\"contact\",\"attributes\":{\"n\":1}}]}");
}

TEST(AttributeExtractor, MalformedTargetsAreErrors) {
  EXPECT_FALSE(ExtractStatus(WithTarget("{\"__type\":\"Entity:x\",\"Attributes\":["
                                        "{\"value\":1,\"key\":\"a\"}],\"Id\":\"x\"}"))
                   .ok());
  EXPECT_FALSE(ExtractStatus(WithTarget("{\"__type\":\"Entity:x\",\"Attributes\":["
                                        "{\"key\":\"a\"}],\"Id\":\"x\"}"))
                   .ok());
  EXPECT_FALSE(ExtractStatus(WithTarget("{\"__type\":\"Entity:x\",\"Attributes\":[1]}")).ok());
  EXPECT_FALSE(ExtractStatus(WithTarget("{\"__type\":\"Entity:x\",\"Attributes\":["
                                        "{\"key\":\"a\",\"value\":tru}]}"))
                   .ok());
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += "[";
  for (int i = 0; i < 100; ++i) deep += "]";
  Status st =
      ExtractStatus(WithTarget("{\"__type\":\"Entity:x\",\"Attributes\":["
                               "{\"key\":\"a\",\"value\":" +
                               deep + "}]}"));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("nested deeper"), std::string_view::npos) << st.ToString();
  EXPECT_FALSE(ExtractStatus("{\"InputParameters\": [").ok());
}

TEST(FormatIsoUtc, KnownInstants) {
  EXPECT_EQ(FormatIsoUtc(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatIsoUtc(951782400000), "2000-02-29T00:00:00.000Z");
  EXPECT_EQ(FormatIsoUtc(1735689599999), "2024-12-31T23:59:59.999Z");
  EXPECT_EQ(FormatIsoUtc(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(FormatIsoUtc(253402300799999), "9999-12-31T23:59:59.999Z");  // last 4-digit year
  EXPECT_EQ(FormatIsoUtc(253402300800000), "10000-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatIsoUtc(-62135596800000), "0001-01-01T00:00:00.000Z");
}

// The digit-by-digit formatter against std::chrono's calendar and snprintf, over instants
// spread across four centuries (each a different day, time and millisecond).
TEST(FormatIsoUtc, MatchesTheCalendarEverywhere) {
  using namespace std::chrono;
  for (int64_t ms = -2'208'988'800'000; ms < 10'000'000'000'000; ms += 9'876'543'211) {
    const sys_days day = floor<days>(sys_time<milliseconds>(milliseconds(ms)));
    const year_month_day ymd(day);
    const int64_t rem = ms - duration_cast<milliseconds>(day.time_since_epoch()).count();
    char want[96];
    std::snprintf(want, sizeof(want), "%04d-%02u-%02uT%02lld:%02lld:%02lld.%03lldZ",
                  static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                  static_cast<unsigned>(ymd.day()), static_cast<long long>(rem / 3'600'000),
                  static_cast<long long>(rem / 60'000 % 60),
                  static_cast<long long>(rem / 1000 % 60), static_cast<long long>(rem % 1000));
    ASSERT_EQ(FormatIsoUtc(ms), want) << ms;
  }
}

}  // namespace
}  // namespace dvrouter

namespace dvrouter {
namespace {

// Objects are looked at more than once (type detection, then output): a long key must not be
// unescaped into simdjson's single-pass string buffer on every look. Under ASan this overran the
// buffer before names were compared raw in the detection passes.
TEST(AttributeExtractor, LongKeysInNestedObjectsAreReadOnce) {
  const std::string long_key(300'000, 'k');
  const std::string target =
      "{\"__type\":\"Entity:x\",\"Attributes\":[{\"key\":\"a\",\"value\":{\"" + long_key +
      "\":1,\"other\":{\"" + long_key + "\":2}}}],\"Id\":\"x\"}";
  const std::string body = "{\"InputParameters\":[{\"key\":\"Target\",\"value\":" + target + "}]}";
  AttributeExtractor x(1 << 20);
  ChangeSet cs;
  Status st = x.Extract(body.data(), body.size(), body.size(), &cs);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(cs.columns, std::vector<std::string>{"a"});
  EXPECT_EQ(cs.attributes, "{\"a\":{\"" + long_key + "\":1,\"other\":{\"" + long_key + "\":2}}}");
}

}  // namespace
}  // namespace dvrouter

namespace dvrouter {
namespace {

// The memo extracts once: every caller, on any thread, gets the same ChangeSet, equal to what
// an extractor of its own gives.
TEST(ChangeMemo, ExtractsOnceForAllCallersOnAnyThread) {
  const std::string body = testing::Fixture("update-contact-postop-async.json");
  const ChangeSet direct = ExtractOk(body);
  ChangeMemo memo;
  const uint64_t before = ChangeMemo::Extractions();
  std::vector<const ChangeSet*> got(4, nullptr);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i) {
    threads.emplace_back([&, i] { EXPECT_TRUE(memo.Get(body, &got[i]).ok()); });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ChangeMemo::Extractions() - before, 1u);
  for (const ChangeSet* cs : got) ASSERT_EQ(cs, got[0]);
  EXPECT_EQ(got[0]->attributes, direct.attributes);
  EXPECT_EQ(got[0]->columns, direct.columns);
  EXPECT_EQ(got[0]->id, direct.id);
}

// A malformed body's error is kept: every caller sees it, and it is not extracted again.
TEST(ChangeMemo, KeepsTheErrorOfAMalformedBodyForEveryCaller) {
  const std::string body = "{\"InputParameters\": [";
  ChangeMemo memo;
  const uint64_t before = ChangeMemo::Extractions();
  const ChangeSet* first = nullptr;
  const ChangeSet* second = nullptr;
  Status a = memo.Get(body, &first);
  Status b = memo.Get(body, &second);
  EXPECT_FALSE(a.ok());
  EXPECT_FALSE(b.ok());
  EXPECT_EQ(a.ToString(), b.ToString());
  EXPECT_EQ(ChangeMemo::Extractions() - before, 1u);
}

// A reset memo serves the next event: its own Target, not the previous one's or its error.
TEST(ChangeMemo, AfterResetItExtractsTheNextBody) {
  ChangeMemo memo;
  const ChangeSet* cs = nullptr;
  EXPECT_FALSE(memo.Get("{\"InputParameters\": [", &cs).ok());
  memo.Reset();
  const std::string contact = testing::Fixture("update-contact-postop-async.json");
  ASSERT_TRUE(memo.Get(contact, &cs).ok());
  EXPECT_EQ(cs->entity, "contact");
  memo.Reset();
  const std::string agent = testing::Fixture("create-msdyn_agentstatus-postop-sync.json");
  ASSERT_TRUE(memo.Get(agent, &cs).ok());
  EXPECT_EQ(cs->entity, "msdyn_agentstatus");
  EXPECT_EQ(cs->attributes, ExtractOk(agent).attributes);
}

// Prefetch is a hint: before the extraction it extracts nothing, after it changes nothing.
TEST(ChangeMemo, PrefetchNeitherExtractsNorChangesTheExtraction) {
  ChangeMemo memo;
  const uint64_t before = ChangeMemo::Extractions();
  memo.Prefetch();
  EXPECT_EQ(ChangeMemo::Extractions(), before);
  const std::string contact = testing::Fixture("update-contact-postop-async.json");
  const ChangeSet* cs = nullptr;
  ASSERT_TRUE(memo.Get(contact, &cs).ok());
  const std::string attributes = cs->attributes;
  memo.Prefetch();
  ASSERT_TRUE(memo.Get(contact, &cs).ok());
  EXPECT_EQ(ChangeMemo::Extractions(), before + 1);
  EXPECT_EQ(cs->attributes, attributes);
}

// A body with readable bytes after it (the record cache's buffer) is parsed in place; what
// those bytes hold does not matter. A body other than the one named is not read past its end.
TEST(ChangeMemo, ParsesAPaddedBodyInPlaceWhateverThePaddingHolds) {
  const std::string body = testing::Fixture("create-msdyn_agentstatus-postop-sync.json");
  const ChangeSet direct = ExtractOk(body);
  std::string buffer = body + std::string(64, '"') + "{[";  // padding that is not JSON
  const std::string_view in_place(buffer.data(), body.size());
  ChangeMemo memo;
  memo.SetReadable(buffer.data(), buffer.size());
  const ChangeSet* cs = nullptr;
  const uint64_t in_place_before = ChangeMemo::InPlaceExtractions();
  ASSERT_TRUE(memo.Get(in_place, &cs).ok());
  EXPECT_EQ(ChangeMemo::InPlaceExtractions() - in_place_before, 1u);
  EXPECT_EQ(cs->attributes, direct.attributes);
  EXPECT_EQ(cs->columns, direct.columns);
  // Reset forgets the readable range: the next body (elsewhere, unpadded) is copied.
  memo.Reset();
  const std::string other = testing::Fixture("update-contact-postop-async.json");
  ASSERT_TRUE(memo.Get(other, &cs).ok());
  EXPECT_EQ(cs->attributes, ExtractOk(other).attributes);
  // Named for one body, asked for another: that one is copied, not read as if padded.
  ChangeMemo mismatched;
  mismatched.SetReadable(buffer.data(), buffer.size());
  ASSERT_TRUE(mismatched.Get(other, &cs).ok());
  EXPECT_EQ(cs->entity, "contact");
  EXPECT_EQ(ChangeMemo::InPlaceExtractions() - in_place_before, 1u) << "an unpadded body in place";
}

// Without a memo, ExtractChanges extracts into the caller's scratch.
TEST(ChangeMemo, ExtractChangesWithoutAMemoUsesTheScratch) {
  const std::string body = testing::Fixture("update-contact-postop-async.json");
  ChangeSet scratch;
  const ChangeSet* out = nullptr;
  ASSERT_TRUE(ExtractChanges(body, nullptr, &scratch, &out).ok());
  EXPECT_EQ(out, &scratch);
  EXPECT_EQ(scratch.entity, "contact");
  ChangeMemo memo;
  ASSERT_TRUE(ExtractChanges(body, &memo, &scratch, &out).ok());
  EXPECT_NE(out, &scratch);
  EXPECT_EQ(out->attributes, scratch.attributes);
}

}  // namespace
}  // namespace dvrouter
