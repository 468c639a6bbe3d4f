// Change tracking's pure parts (docs/reconciliation.md, "Change tracking"): a delta page with
// rows, deletions and links, and its malformed forms; the row version a journaled webhook
// carries (real fixtures); the rule that decides whether a change was seen; the identity of the
// event a change becomes (stable across runs, seen by the next run); the state file and its
// malformed forms.
#include <gtest/gtest.h>

#include <string>

#include "adapters/dataverse/change_tracking.h"
#include "adapters/dataverse/tracking_state.h"
#include "router/decode/decode.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

constexpr char kRow[] = "3d1feef9-604d-ef11-bfe3-6045bd03d9d8";
constexpr char kGone[] = "b374239d-4233-41a9-8b17-a86cb4f737b5";
constexpr char kBase[] = "https://org.crm.dynamics.com/api/data/v9.2/";

std::string RowJson(const std::string& id, const std::string& extra = "") {
  return R"({"@odata.etag":"W/\"901\"","accountid":")" + id +
         R"(","name":"Contoso","modifiedon":"2026-12-05T01:02:03Z",)"
         R"("createdon":"2026-12-01T00:00:00Z","versionnumber":901,)"
         R"("_modifiedby_value":"AAAAAAAA-0000-0000-0000-000000000001")" +
         extra + "}";
}
std::string Deleted(const std::string& id) {
  return std::string(R"({"@odata.context":")") + kBase +
         R"($metadata#accounts/$deletedEntity","id":")" + id + R"(","reason":"deleted"})";
}

TEST(ChangeTracking, ADeltaPageHasRowsDeletionsAndItsLink) {
  const std::string body = std::string(R"({"@odata.context":"x","value":[)") + RowJson(kRow) + "," +
                           Deleted(kGone) + R"(],"@odata.deltaLink":")" + kBase +
                           R"(accounts?$deltatoken=919042%2108%2f22%2f2017")" + "}";
  Result<DeltaPage> page = ParseDeltaPage(body, "account");
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_EQ(page->rows.size(), 2u);
  EXPECT_TRUE(page->bad.empty());
  const TrackedRow& row = page->rows[0];
  EXPECT_EQ(row.id, kRow);
  EXPECT_FALSE(row.deleted);
  EXPECT_EQ(row.modified_ms, 1'796'432'523'000);
  EXPECT_EQ(row.created_ms, 1'796'083'200'000);
  EXPECT_EQ(row.version, 901);
  EXPECT_EQ(row.modified_by, "aaaaaaaa-0000-0000-0000-000000000001") << "lowercased";
  EXPECT_NE(row.json.find(R"("name":"Contoso")"), std::string::npos);
  EXPECT_TRUE(page->rows[1].deleted);
  EXPECT_EQ(page->rows[1].id, kGone);
  EXPECT_TRUE(page->rows[1].json.empty());
  EXPECT_EQ(page->delta_link, std::string(kBase) + "accounts?$deltatoken=919042%2108%2f22%2f2017");
  EXPECT_TRUE(page->next_link.empty());

  // A versionnumber given as a string, and a page followed by another.
  Result<DeltaPage> next =
      ParseDeltaPage(R"({"value":[{"accountid":")" + std::string(kRow) +
                         R"(","versionnumber":"77"}],"@odata.nextLink":"https://org/next"})",
                     "account");
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->rows[0].version, 77);
  EXPECT_EQ(next->rows[0].modified_ms, 0) << "not selected";
  EXPECT_EQ(next->next_link, "https://org/next");
}

// A modifier that is not a GUID (36 characters, the length of one) is left out, not kept
// half-written: the loop guard compares it with user ids.
TEST(ChangeTracking, AModifierThatIsNotAGuidIsLeftOut) {
  const std::string row = R"({"accountid":")" + std::string(kRow) +
                          R"(","_modifiedby_value":"aaaaaaaa-0000-0000-0000-00000000000Z"})";
  Result<DeltaPage> page =
      ParseDeltaPage(R"({"value":[)" + row + R"(],"@odata.deltaLink":"https://org/d"})", "account");
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_EQ(page->rows.size(), 1u);
  EXPECT_EQ(page->rows[0].id, kRow);
  EXPECT_EQ(page->rows[0].modified_by, "");
}

TEST(ChangeTracking, MalformedPagesAndEntriesAreNamed) {
  for (const char* body :
       {"", "not json", "[1]", R"({"value":{}})", R"({"value":[)", R"({"value":[]})"}) {
    EXPECT_EQ(ParseDeltaPage(body, "account").status().code(), StatusCode::kInvalidArgument)
        << body;
  }
  const std::string tail = R"(],"@odata.deltaLink":"https://org/d"})";
  struct Case {
    std::string entry;
    std::string reason;
  };
  const Case cases[] = {
      {"1", "not an object"},
      {R"({"name":"no id"})", "accountid is missing or not a GUID"},
      {R"({"accountid":"nope"})", "accountid is missing or not a GUID: nope"},
      {R"({"contactid":")" + std::string(kRow) + R"("})", "accountid is missing"},
      {R"({"@odata.context":"x/$deletedEntity","reason":"deleted"})",
       "a deleted entry's id is missing"},
  };
  for (const Case& k : cases) {
    Result<DeltaPage> page =
        ParseDeltaPage(R"({"value":[)" + RowJson(kRow) + "," + k.entry + tail, "account");
    ASSERT_TRUE(page.ok()) << k.entry;
    ASSERT_EQ(page->bad.size(), 1u) << k.entry;
    EXPECT_EQ(page->bad[0].index, 1u);
    EXPECT_TRUE(page->bad[0].reason.starts_with(k.reason)) << page->bad[0].reason;
  }
}

TEST(ChangeTracking, AJournaledWebhookTellsItsRowVersion) {
  // A real asynchronous Update with a RowVersion and modifiedon in its Target.
  SeenVersion agent =
      SeenInWebhook(testing::Fixture("update-msdyn_agentstatus-postop-async.json"), "Update");
  EXPECT_EQ(agent.version, 5'948'260);
  EXPECT_EQ(agent.modified_ms, 1'722'582'039'000);
  EXPECT_FALSE(agent.deleted);
  // One without a RowVersion: modifiedon alone.
  SeenVersion contact =
      SeenInWebhook(testing::Fixture("update-contact-postop-async.json"), "Update");
  EXPECT_EQ(contact.version, 0);
  EXPECT_EQ(contact.modified_ms, 1'506'384'247'000);
  EXPECT_TRUE(SeenInWebhook("{}", "Delete").deleted);
  for (const char* body :
       {"", "not json", R"({"InputParameters":5})",
        R"({"InputParameters":[{"key":"Target","value":{"RowVersion":"x"}}]})"}) {
    const SeenVersion none = SeenInWebhook(body, "Update");
    EXPECT_EQ(none.version, 0) << body;
    EXPECT_EQ(none.modified_ms, 0) << body;
  }
  // A post image fills what the Target lacks.
  const SeenVersion imaged =
      SeenInWebhook(R"({"InputParameters":[{"key":"Target","value":{"Attributes":[]}}],)"
                    R"("PostEntityImages":[{"key":"post","value":{"RowVersion":"12","Attributes":)"
                    R"([{"key":"modifiedon","value":"/Date(1000)/"}]}}]})",
                    "Update");
  EXPECT_EQ(imaged.version, 12);
  EXPECT_EQ(imaged.modified_ms, 1000);
}

TEST(ChangeTracking, AChangeIsSeenOnlyByAnEventAsNew) {
  TrackedRow row;
  row.id = kRow;
  row.version = 10;
  row.modified_ms = 5000;
  EXPECT_FALSE(IsSeen(SeenVersion{}, row)) << "nothing journaled";
  EXPECT_TRUE(IsSeen(SeenVersion{1000, 10, false}, row)) << "versions decide when both have one";
  EXPECT_FALSE(IsSeen(SeenVersion{9000, 9, false}, row)) << "an older version, a later clock";
  EXPECT_TRUE(IsSeen(SeenVersion{5000, 0, false}, row)) << "same second: seen";
  EXPECT_FALSE(IsSeen(SeenVersion{4999, 0, false}, row));
  EXPECT_FALSE(IsSeen(SeenVersion{0, 0, true}, row)) << "a Delete does not cover a live row";
  TrackedRow gone;
  gone.id = kRow;
  gone.deleted = true;
  EXPECT_TRUE(IsSeen(SeenVersion{0, 0, true}, gone));
  EXPECT_FALSE(IsSeen(SeenVersion{9000, 99, false}, gone));
  SeenVersion merged{100, 0, false};
  MergeSeen(SeenVersion{50, 7, false}, &merged);
  MergeSeen(SeenVersion{0, 0, true}, &merged);
  EXPECT_EQ(merged.modified_ms, 100);
  EXPECT_EQ(merged.version, 7);
  EXPECT_TRUE(merged.deleted);
}

TEST(ChangeTracking, AChangesEventIsStableAndSeenByTheNextRun) {
  Result<DeltaPage> page = ParseDeltaPage(
      R"({"value":[)" + RowJson(kRow) + R"(],"@odata.deltaLink":"https://org/d"})", "account");
  ASSERT_TRUE(page.ok());
  const TrackedRow& row = page->rows[0];
  const FailedJob job = TrackedChangeJob("account", row, "Update", "token-1");
  EXPECT_TRUE(IsGuid(job.id) && IsGuid(job.step_id));
  EXPECT_EQ(job.row_id, kRow);
  // The same change twice (a run repeated after a crash): the same event id.
  EXPECT_EQ(FailedJobKey(TrackedChangeJob("account", row, "Update", "token-2")), FailedJobKey(job))
      << "a row's identity is its version, not the link it came by";
  TrackedRow newer = row;
  ++newer.version;
  EXPECT_NE(FailedJobKey(TrackedChangeJob("account", newer, "Update", "token-1")),
            FailedJobKey(job));
  EXPECT_NE(TrackedChangeJob("contact", row, "Update", "t").step_id, job.step_id);
  TrackedRow gone;
  gone.id = kGone;
  gone.deleted = true;
  EXPECT_NE(FailedJobKey(TrackedChangeJob("account", gone, "Delete", "token-1")),
            FailedJobKey(TrackedChangeJob("account", gone, "Delete", "token-2")))
      << "a deletion's identity is the delta link it was read from";

  // The event decodes as a webhook with that id, and the next run finds it as new as the row.
  Result<std::string> body =
      ReconciledWebhook(job, TrackedChangeStepName("account"), 40, row.json, "change_tracking");
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  Decoder decoder(1 << 20);
  EventHeader h;
  ASSERT_TRUE(decoder.Decode(body->data(), body->size(), body->size(), &h).ok()) << *body;
  EXPECT_EQ(h.DedupeKey(), FailedJobKey(job));
  EXPECT_EQ(h.initiating_user_id, "aaaaaaaa-0000-0000-0000-000000000001") << "the loop guard's";
  EXPECT_NE(body->find(R"("value":"change_tracking )" + job.id), std::string::npos);
  EXPECT_TRUE(IsSeen(SeenInWebhook(*body, h.message_name), row));
  EXPECT_FALSE(IsSeen(SeenInWebhook(*body, h.message_name), newer));
}

TEST(TrackingState, RoundTripsWithSettlingChanges) {
  TrackingState state;
  TableTracking& t = state.tables["account"];
  t.delta_link = std::string(kBase) + "accounts?$deltatoken=5%2101";
  t.scan_from_seq = 1234;
  t.synced_ms = 1'796'432'523'000;
  t.full_syncs = 2;
  TrackedRow row;
  row.id = kRow;
  row.modified_ms = 7;
  row.created_ms = 3;
  row.version = 9;
  row.modified_by = kGone;
  row.json = R"({"name":"a \"quoted\" name"})";
  t.settling.push_back(SettlingChange{row, "token", true});
  TrackedRow gone;
  gone.id = kGone;
  gone.deleted = true;
  t.settling.push_back(SettlingChange{gone, "token-2", false});
  state.tables["contact"];
  testing::TempDir tmp;
  ASSERT_TRUE(SaveTrackingState(tmp.path() + "/reconcile", state).ok());
  Result<TrackingState> back = LoadTrackingState(tmp.path() + "/reconcile");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(EncodeTrackingState(*back), EncodeTrackingState(state));
  ASSERT_EQ(back->tables["account"].settling.size(), 2u);
  EXPECT_EQ(back->tables["account"].settling[0].row.json, row.json);
  EXPECT_TRUE(back->tables["account"].settling[1].row.deleted);
  EXPECT_TRUE(back->tables["account"].settling[0].created);
  Result<TrackingState> none = LoadTrackingState(tmp.path() + "/nowhere");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->tables.empty());
}

TEST(TrackingState, AMalformedFileIsNamedNotIgnored) {
  testing::TempDir tmp;
  const std::string table =
      R"("delta_link":"","scan_from_seq":1,"synced_ms":1,"full_syncs":1,"settling":)";
  const std::string change =
      R"({"id":")" + std::string(kRow) +
      R"(","deleted":false,"modified_ms":1,"created_ms":1,"version":1,"modified_by":"",)";
  for (const std::string& text :
       {std::string(""), std::string("{"), std::string(R"({"version":2,"tables":{}})"),
        std::string(R"({"version":1})"), R"({"version":1,"tables":{"Bad Name":{)" + table + "[]}}}",
        std::string(R"({"version":1,"tables":{"account":{"delta_link":""}}})"),
        std::string(
            R"({"version":1,"tables":{"account":{"delta_link":"","scan_from_seq":-1,"synced_ms":1,)"
            R"("full_syncs":1,"settling":[]}}})"),
        R"({"version":1,"tables":{"account":{)" + table + "[1]}}}",
        R"({"version":1,"tables":{"account":{)" + table + R"([{"id":"x"}]}}})",
        R"({"version":1,"tables":{"account":{)" + table + "[" + change +
            R"("json":"","token":"","created":false}]}}})"}) {
    testing::WriteFileOrDie(tmp.path() + "/change_tracking.json", text);
    Result<TrackingState> state = LoadTrackingState(tmp.path());
    ASSERT_FALSE(state.ok()) << text;
    EXPECT_EQ(state.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(state.status().message().find("change_tracking.json: "), std::string::npos);
  }
  // The same shape with its columns is a state.
  testing::WriteFileOrDie(tmp.path() + "/change_tracking.json",
                          R"({"version":1,"tables":{"account":{)" + table + "[" + change +
                              R"("json":"{}","token":"","created":false}]}}})");
  EXPECT_TRUE(LoadTrackingState(tmp.path()).ok());
}

}  // namespace
}  // namespace dvrouter
