// Reconciliation's pure parts (docs/reconciliation.md): a page of failed jobs and its malformed
// forms, the event a job stands for (the lost webhook's own id, a body the webhook decoder
// takes, the row converted like a webhook Target), the state file and its malformed forms, and
// the `reconcile` configuration section.
#include <gtest/gtest.h>

#include <string>

#include "adapters/dataverse/failed_jobs.h"
#include "adapters/dataverse/reconcile_state.h"
#include "adapters/registry.h"
#include "router/decode/attributes.h"
#include "router/decode/decode.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

constexpr char kStep[] = "8ff4bda5-9d4e-ef11-bfe3-00224802dbb1";
constexpr char kJob[] = "1a14c3ec-9c50-ef11-bfe3-00224802dbb1";
constexpr char kRow[] = "3d1feef9-604d-ef11-bfe3-6045bd03d9d8";

std::string JobRow(const std::string& id, const std::string& completed,
                   const std::string& extra = "") {
  return R"({"asyncoperationid":")" + id + R"(","_owningextensionid_value":")" + kStep +
         R"(","_regardingobjectid_value":")" + kRow +
         R"(","messagename":"Update","primaryentitytype":"msdyn_agentstatus","completedon":")" +
         completed + R"(","createdon":"2026-12-05T01:00:00Z")" + extra + "}";
}

TEST(FailedJobs, APageIsReadWithItsNextLink) {
  const std::string body =
      R"({"@odata.context":"x","value":[)" +
      JobRow("AAAAAAAA-0000-0000-0000-000000000001", "2026-12-05T01:02:03Z") + "," +
      JobRow("aaaaaaaa-0000-0000-0000-000000000002", "2026-12-05T01:02:04.5Z",
             R"(,"correlationid":"B374239D-4233-41A9-8B17-A86CB4F737B5")") +
      R"(],"@odata.nextLink":"https://org/api/data/v9.2/asyncoperations?$skiptoken=2"})";
  Result<FailedJobsPage> page = ParseFailedJobsPage(body);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_EQ(page->jobs.size(), 2u);
  EXPECT_TRUE(page->bad.empty());
  EXPECT_EQ(page->jobs[0].id, "aaaaaaaa-0000-0000-0000-000000000001") << "lowercased";
  EXPECT_EQ(page->jobs[0].step_id, kStep);
  EXPECT_EQ(page->jobs[0].row_id, kRow);
  EXPECT_EQ(page->jobs[0].message, "Update");
  EXPECT_EQ(page->jobs[0].table, "msdyn_agentstatus");
  EXPECT_EQ(page->jobs[0].completed_ms, 1'796'432'523'000);
  EXPECT_EQ(page->jobs[1].completed_ms, 1'796'432'524'500);
  EXPECT_EQ(page->jobs[1].correlation_id, "b374239d-4233-41a9-8b17-a86cb4f737b5");
  EXPECT_EQ(page->next_link, "https://org/api/data/v9.2/asyncoperations?$skiptoken=2");
}

// An optional GUID that is not one (here 36 characters long, the length of one) is left out,
// not kept half-written: the reconciled event then carries the nil GUID as its user.
TEST(FailedJobs, AnOptionalGuidThatIsNotOneIsLeftOut) {
  const std::string not_a_guid = "b374239d-4233-41a9-8b17-a86cb4f737bX";
  ASSERT_EQ(not_a_guid.size(), 36u);
  Result<FailedJobsPage> page =
      ParseFailedJobsPage(R"({"value":[)" +
                          JobRow(kJob, "2026-12-05T01:02:03Z",
                                 R"(,"correlationid":")" + not_a_guid +
                                     R"(","_createdby_value":")" + not_a_guid + R"(")") +
                          "]}");
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_EQ(page->jobs.size(), 1u);
  EXPECT_EQ(page->jobs[0].correlation_id, "");
  EXPECT_EQ(page->jobs[0].user_id, "");
}

TEST(FailedJobs, MalformedAnswersAndRowsAreNamed) {
  for (const char* body : {"", "not json", "[1,2]", R"({"value":{}})", R"({"value":[)"}) {
    EXPECT_EQ(ParseFailedJobsPage(body).status().code(), StatusCode::kInvalidArgument) << body;
  }
  const std::string good = JobRow(kJob, "2026-12-05T01:02:03Z");
  struct Case {
    std::string row;
    std::string reason;
  };
  const Case cases[] = {
      {testing::ReplaceAll(good, "\"_regardingobjectid_value\"", "\"x\""),
       "_regardingobjectid_value is missing"},
      {testing::ReplaceAll(good, kJob, "not-a-guid"), "asyncoperationid is not a GUID: not-a-guid"},
      {testing::ReplaceAll(good, "\"2026-12-05T01:02:03Z\"", "\"yesterday\""),
       "completedon is not a date: yesterday"},
      {testing::ReplaceAll(good, "\"msdyn_agentstatus\"", "\"../etc\""),
       "primaryentitytype is missing or not a table's logical name"},
      {testing::ReplaceAll(good, "\"Update\"", "17"), "messagename is missing"},
      {"42", "not an object"},
  };
  for (const Case& c : cases) {
    Result<FailedJobsPage> page = ParseFailedJobsPage(R"({"value":[)" + good + "," + c.row + "]}");
    ASSERT_TRUE(page.ok()) << c.row;
    EXPECT_EQ(page->jobs.size(), 1u);
    ASSERT_EQ(page->bad.size(), 1u) << c.row;
    EXPECT_EQ(page->bad[0].index, 1u);
    EXPECT_EQ(page->bad[0].reason, c.reason);
  }
}

// The job names the lost webhook exactly: its event id is the one the ingress computed for the
// webhook itself (the fixture is a real asynchronous Update).
TEST(FailedJobs, TheEventIdIsTheLostWebhooksOwn) {
  const std::string fixture = testing::Fixture("update-msdyn_agentstatus-postop-async.json");
  Decoder decoder(1 << 20);
  EventHeader webhook;
  ASSERT_TRUE(decoder.Decode(fixture.data(), fixture.size(), fixture.size(), &webhook).ok());
  FailedJob job;
  job.id = webhook.operation_id;
  job.step_id = webhook.owning_extension_id;
  job.message = webhook.message_name;
  job.row_id = webhook.primary_entity_id;
  job.table = webhook.primary_entity_name;
  EXPECT_EQ(FailedJobKey(job), webhook.DedupeKey());
  job.message = "Create";
  EXPECT_NE(FailedJobKey(job), webhook.DedupeKey());
}

FailedJob Job() {
  FailedJob job;
  job.id = kJob;
  job.step_id = kStep;
  job.message = "Update";
  job.table = "account";
  job.row_id = kRow;
  job.completed_ms = 1'796'432'523'000;
  return job;
}

TEST(FailedJobs, TheRebuiltWebhookCarriesTheRowAsATarget) {
  const std::string row =
      R"({"@odata.etag":"W/\"77\"","accountid":")" + std::string(kRow) +
      R"(","name":"Contoso \"East\"","revenue":12.50,"numberofemployees":7,"donotemail":false,)"
      R"("description":null,"modifiedon":"2026-12-05T01:02:03Z","versionnumber":77,)"
      R"("_parentaccountid_value":"b374239d-4233-41a9-8b17-a86cb4f737b5",)"
      R"("_parentaccountid_value@Microsoft.Dynamics.CRM.lookuplogicalname":"account",)"
      R"("_parentaccountid_value@OData.Community.Display.V1.FormattedValue":"Parent",)"
      R"("revenue@OData.Community.Display.V1.FormattedValue":"$12.50"})";
  Result<std::string> body = ReconciledWebhook(Job(), "dvrouter: account Update 40", 40, row);
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  Decoder decoder(1 << 20);
  EventHeader h;
  ASSERT_TRUE(decoder.Decode(body->data(), body->size(), body->size(), &h).ok()) << *body;
  EXPECT_EQ(h.message_name, "Update");
  EXPECT_EQ(h.primary_entity_name, "account");
  EXPECT_EQ(h.primary_entity_id, kRow);
  EXPECT_EQ(h.operation_id, kJob);
  EXPECT_EQ(h.owning_extension_id, kStep);
  EXPECT_EQ(h.mode, 1);
  EXPECT_EQ(h.stage, 40);
  EXPECT_EQ(h.DedupeKey(), FailedJobKey(Job()));
  EXPECT_NE(body->find(R"("key":"dvrouter.reconciled","value":"failed_job )" + std::string(kJob)),
            std::string::npos);
  ChangeSet changes;
  AttributeExtractor extractor(1 << 20);
  ASSERT_TRUE(extractor.Extract(body->data(), body->size(), body->size(), &changes).ok());
  EXPECT_FALSE(changes.is_reference);
  EXPECT_EQ(changes.id, kRow);
  // Converted as a webhook's: dates to ISO with milliseconds, lookups to references, numbers
  // with their digits; annotations, the etag and versionnumber left out.
  EXPECT_EQ(changes.attributes,
            std::string(R"({"accountid":")") + kRow +
                R"(","name":"Contoso \"East\"","revenue":12.50,"numberofemployees":7,)"
                R"("donotemail":false,"description":null,"modifiedon":"2026-12-05T01:02:03.000Z",)"
                R"("parentaccountid":{"id":"b374239d-4233-41a9-8b17-a86cb4f737b5",)"
                R"("logicalname":"account","name":"Parent"}})");
}

// The row's last modifier is the event's user, so the loop guard sees the router's own write-back
// (loop_guard.user_ids) in a reconciled event as in a webhook.
TEST(FailedJobs, TheRowsLastModifierIsTheInitiatingUser) {
  const std::string row =
      R"({"name":"x","_modifiedby_value":"9F3C1D2E-0000-4000-8000-00000000A001",)"
      R"("_createdby_value":"11111111-0000-4000-8000-000000000001"})";
  Decoder decoder(1 << 20);
  EventHeader h;
  Result<std::string> body = ReconciledWebhook(Job(), "step", 40, row);
  ASSERT_TRUE(body.ok());
  ASSERT_TRUE(decoder.Decode(body->data(), body->size(), body->size(), &h).ok()) << *body;
  EXPECT_EQ(h.initiating_user_id, "9f3c1d2e-0000-4000-8000-00000000a001");
  FailedJob create = Job();
  create.message = "Create";
  body = ReconciledWebhook(create, "step", 40, row);
  ASSERT_TRUE(body.ok());
  ASSERT_TRUE(decoder.Decode(body->data(), body->size(), body->size(), &h).ok()) << *body;
  EXPECT_EQ(h.initiating_user_id, "11111111-0000-4000-8000-000000000001");
  body = ReconciledWebhook(Job(), "step", 40, std::string(R"({"_modifiedby_value":"nope"})"));
  ASSERT_TRUE(body.ok());
  ASSERT_TRUE(decoder.Decode(body->data(), body->size(), body->size(), &h).ok()) << *body;
  EXPECT_EQ(h.initiating_user_id, "00000000-0000-0000-0000-000000000000");
  // The system job's creator, when the page has it, is the lost webhook's user: the row's last
  // modifier may since be the router's own write-back.
  FailedJob by_user = Job();
  by_user.user_id = "22222222-0000-4000-8000-000000000002";
  body = ReconciledWebhook(by_user, "step", 40, row);
  ASSERT_TRUE(body.ok());
  ASSERT_TRUE(decoder.Decode(body->data(), body->size(), body->size(), &h).ok()) << *body;
  EXPECT_EQ(h.initiating_user_id, "22222222-0000-4000-8000-000000000002");
  Result<FailedJobsPage> page =
      ParseFailedJobsPage(R"({"value":[)" +
                          JobRow(kJob, "2026-12-05T01:02:03Z",
                                 R"(,"_createdby_value":"22222222-0000-4000-8000-000000000002")") +
                          "]}");
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->jobs.size(), 1u);
  EXPECT_EQ(page->jobs[0].user_id, "22222222-0000-4000-8000-000000000002");
}

TEST(FailedJobs, AGoneRowIsADeleteUnderTheLostWebhooksId) {
  Result<std::string> body = ReconciledWebhook(Job(), "step", 40, std::nullopt);
  ASSERT_TRUE(body.ok());
  Decoder decoder(1 << 20);
  EventHeader h;
  ASSERT_TRUE(decoder.Decode(body->data(), body->size(), body->size(), &h).ok()) << *body;
  EXPECT_EQ(h.message_name, "Delete");
  ChangeSet changes;
  AttributeExtractor extractor(1 << 20);
  ASSERT_TRUE(extractor.Extract(body->data(), body->size(), body->size(), &changes).ok());
  EXPECT_TRUE(changes.is_reference);
  EXPECT_EQ(changes.id, kRow);
  EXPECT_NE(body->find("(row gone)"), std::string::npos);
}

TEST(FailedJobs, ARowThatIsNotAnObjectIsRefused) {
  for (const char* row : {"", "[]", "not json", "\"x\"", R"({"a":)"}) {
    EXPECT_EQ(ReconciledWebhook(Job(), "step", 40, std::string(row)).status().code(),
              StatusCode::kInvalidArgument)
        << row;
  }
}

TEST(ReconcileState, RoundTripsAndKeepsTheJobsOfTheOverlap) {
  ReconcileState state;
  StepWatermark& w = state.steps[kStep];
  constexpr int64_t kT = 100 * kReconcileOverlapMs;
  w.Handled("aaaaaaaa-0000-0000-0000-000000000001", kT - kReconcileOverlapMs - 1);
  w.Handled("aaaaaaaa-0000-0000-0000-000000000002", kT - 5);
  w.Handled("aaaaaaaa-0000-0000-0000-000000000003", kT);
  EXPECT_EQ(w.completed_ms, kT);
  EXPECT_EQ(w.ReadFrom(), kT - kReconcileOverlapMs);
  EXPECT_EQ(w.handled.size(), 2u) << "the jobs before the overlap are forgotten";
  // A job that became visible late, inside the overlap, is not handled yet.
  EXPECT_FALSE(w.IsHandled("aaaaaaaa-0000-0000-0000-000000000009", kT - 7));
  EXPECT_TRUE(w.IsHandled("aaaaaaaa-0000-0000-0000-000000000002", kT - 5));
  EXPECT_TRUE(w.IsHandled("aaaaaaaa-0000-0000-0000-000000000003", kT));
  EXPECT_TRUE(w.IsHandled("anything", kT - kReconcileOverlapMs - 1)) << "before what is read";
  // Handling an older job inside the overlap keeps the watermark.
  w.Handled("aaaaaaaa-0000-0000-0000-000000000009", kT - 7);
  EXPECT_EQ(w.completed_ms, kT);
  EXPECT_EQ(w.handled.size(), 3u);
  testing::TempDir tmp;
  ASSERT_TRUE(SaveReconcileState(tmp.path() + "/reconcile", state).ok());
  Result<ReconcileState> back = LoadReconcileState(tmp.path() + "/reconcile");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(EncodeReconcileState(*back), EncodeReconcileState(state));
  Result<ReconcileState> none = LoadReconcileState(tmp.path() + "/nowhere");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->steps.empty());
}

TEST(ReconcileState, AMalformedFileIsNamedNotIgnored) {
  testing::TempDir tmp;
  for (
      const char* text :
      {"", "{", "[]", R"({"version":2,"steps":{}})", R"({"version":1})",
       R"({"version":1,"steps":{"not-a-guid":{"completed_ms":1,"handled":{}}}})",
       R"({"version":1,"steps":{"8ff4bda5-9d4e-ef11-bfe3-00224802dbb1":{"handled":{}}}})",
       R"({"version":1,"steps":{"8ff4bda5-9d4e-ef11-bfe3-00224802dbb1":{"completed_ms":1,"handled":[]}}})",
       R"({"version":1,"steps":{"8ff4bda5-9d4e-ef11-bfe3-00224802dbb1":{"completed_ms":-5,"handled":{}}}})",
       R"({"version":1,"steps":{"8ff4bda5-9d4e-ef11-bfe3-00224802dbb1":{"completed_ms":1,"handled":{"x":1}}}})",
       R"({"version":1,"steps":{"8ff4bda5-9d4e-ef11-bfe3-00224802dbb1":{"completed_ms":1,"handled":{"8ff4bda5-9d4e-ef11-bfe3-00224802dbb1":"1"}}}})"}) {
    testing::WriteFileOrDie(tmp.path() + "/failed_jobs.json", text);
    Result<ReconcileState> state = LoadReconcileState(tmp.path());
    ASSERT_FALSE(state.ok()) << text;
    EXPECT_EQ(state.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(state.status().message().find("failed_jobs.json: "), std::string::npos);
  }
}

std::string ReconcileYaml(const std::string& reconcile, bool registration = true) {
  return std::string(
             "ingress:\n"
             "  auth: {mode: webhook_key, secret: \"${DVROUTER_RECONCILE_TEST_KEY}\"}\n"
             "adapters:\n"
             "  lake: {type: lake}\n"
             "  crm:\n"
             "    type: dataverse\n"
             "    source: lake\n"
             "    url: https://contoso.crm.dynamics.com\n"
             "    auth: {token_url: https://login.example.com/t, client_id: a, "
             "client_secret: \"${DVROUTER_RECONCILE_TEST_KEY}\"}\n"
             "    status_column: new_status\n"
             "    status_values: {completed: 1, failed: 2}\n"
             "routes:\n"
             "  - adapters: [lake]\n") +
         (registration ? "registration:\n"
                         "  dataverse: crm\n"
                         "  webhook_url: https://router.example.com/webhooks/dataverse\n"
                         "  steps: [{table: account, messages: [Update]}]\n"
                       : "") +
         reconcile;
}

TEST(ReconcileConfig, DefaultsAndErrors) {
  testing::ScopedEnv key("DVROUTER_RECONCILE_TEST_KEY", "reconcile-test-key");
  Result<Config> c = ParseConfig(ReconcileYaml("reconcile: {}\n"), ".");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->reconcile.present);
  EXPECT_EQ(c->reconcile.dataverse, "crm") << "the registration's by default";
  EXPECT_EQ(c->reconcile.interval_ms, 300'000u);
  EXPECT_TRUE(c->reconcile.failed_jobs);
  EXPECT_EQ(c->reconcile.lookback_ms, 24 * 3600 * 1000ull) << "the dedupe window's";
  EXPECT_FALSE(c->reconcile.delete_handled);
  EXPECT_EQ(c->reconcile.page_size, 500u);
  EXPECT_FALSE(ParseConfig(ReconcileYaml(""), ".")->reconcile.present);
  struct Case {
    std::string yaml;
    std::string starts;
  };
  const Case cases[] = {
      {ReconcileYaml("reconcile: {}\n", false), "reconcile.dataverse: must name a dataverse"},
      {ReconcileYaml("reconcile: {dataverse: lake}\n"), "reconcile.dataverse: must name"},
      {ReconcileYaml("reconcile: {interval: 5s}\n"), "reconcile.interval: at least 10s"},
      {ReconcileYaml("reconcile: {interval: often}\n"), "reconcile.interval: "},
      {ReconcileYaml("reconcile: {failed_jobs: {page_size: 0}}\n"),
       "reconcile.failed_jobs.page_size"},
      {ReconcileYaml("reconcile: {failed_jobs: {lookback: 1s}}\n"),
       "reconcile.failed_jobs.lookback"},
      {ReconcileYaml("reconcile: {failed_jobs: {delete: true}}\n"), "reconcile.failed_jobs.delete"},
      {ReconcileYaml("reconcile: {failed_jobs: {lookback: 48h}}\n"),
       "reconcile.failed_jobs.lookback: longer than dedupe.window"},
      {ReconcileYaml("reconcile: {max_requests_per_second: 0}\n"),
       "reconcile.max_requests_per_second"},
      // With the journal on NATS, the stream's duplicate window is the one that counts.
      {ReconcileYaml("journal:\n"
                     "  backend: nats\n"
                     "  nats: {servers: [nats://a:4222], duplicate_window: 10m}\n"
                     "reconcile: {}\n"),
       "reconcile.failed_jobs.lookback: longer than journal.nats.duplicate_window (600s)"},
  };
  for (const Case& k : cases) {
    Result<Config> bad = ParseConfig(k.yaml, ".");
    ASSERT_FALSE(bad.ok()) << k.yaml;
    EXPECT_TRUE(std::string(bad.status().message()).starts_with(k.starts))
        << bad.status().message();
  }
  // Without a registration the registration's adapter is unknown; with one named, it says why.
  Result<Config> no_reg = ParseConfig(ReconcileYaml("reconcile: {dataverse: crm}\n", false), ".");
  ASSERT_FALSE(no_reg.ok());
  EXPECT_NE(std::string(no_reg.status().message()).find("add the registration section"),
            std::string::npos);
}

TEST(ReconcileConfig, ChangeTrackingTablesAndTheirErrors) {
  testing::ScopedEnv key("DVROUTER_RECONCILE_TEST_KEY", "reconcile-test-key");
  Result<Config> c = ParseConfig(
      ReconcileYaml("reconcile:\n"
                    "  change_tracking:\n"
                    "    tables:\n"
                    "      - {table: account, columns: [name, _parentaccountid_value]}\n"
                    "      - {table: contact, initial: full}\n"
                    "    settle: 30s\n"),
      ".");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->reconcile.tracked_tables.size(), 2u);
  EXPECT_EQ(c->reconcile.tracked_tables[0].table, "account");
  EXPECT_EQ(c->reconcile.tracked_tables[0].columns,
            (std::vector<std::string>{"name", "_parentaccountid_value"}));
  EXPECT_FALSE(c->reconcile.tracked_tables[0].initial_full) << "from_now by default";
  EXPECT_TRUE(c->reconcile.tracked_tables[1].initial_full);
  EXPECT_EQ(c->reconcile.settle_ms, 30'000u);
  EXPECT_EQ(c->reconcile.tracking_page_size, 5000u);
  EXPECT_EQ(c->reconcile.max_seen_rows, 500'000u);

  // Change tracking alone: no registration needed once failed jobs are off.
  Result<Config> alone =
      ParseConfig(ReconcileYaml("reconcile:\n"
                                "  dataverse: crm\n"
                                "  failed_jobs: {enabled: false}\n"
                                "  change_tracking: {tables: [{table: account}]}\n",
                                false),
                  ".");
  ASSERT_TRUE(alone.ok()) << alone.status().ToString();
  EXPECT_FALSE(alone->reconcile.failed_jobs);

  struct Case {
    std::string reconcile;
    std::string starts;
  };
  const Case cases[] = {
      {"reconcile: {change_tracking: {tables: account}}\n",
       "reconcile.change_tracking.tables: must be a list"},
      {"reconcile: {change_tracking: {tables: [account]}}\n",
       "reconcile.change_tracking.tables[0]: must be a mapping"},
      {"reconcile: {change_tracking: {tables: [{table: Account}]}}\n",
       "reconcile.change_tracking.tables[0].table: must be a table's logical name"},
      {"reconcile: {change_tracking: {tables: [{table: a}, {table: a}]}}\n",
       "reconcile.change_tracking.tables[1].table: listed twice"},
      {"reconcile: {change_tracking: {tables: [{table: a, columns: [\"x;drop\"]}]}}\n",
       "reconcile.change_tracking.tables[0].columns: 'x;drop'"},
      {"reconcile: {change_tracking: {tables: [{table: a, initial: all}]}}\n",
       "reconcile.change_tracking.tables[0].initial"},
      {"reconcile: {change_tracking: {tables: [{table: a, filter: x}]}}\n",
       "reconcile.change_tracking.tables[0].filter"},
      {"reconcile: {change_tracking: {page_size: 6000}}\n", "reconcile.change_tracking.page_size"},
      {"reconcile: {change_tracking: {settle: soon}}\n", "reconcile.change_tracking.settle"},
      {"reconcile: {change_tracking: {max_seen_rows: 10}}\n",
       "reconcile.change_tracking.max_seen_rows"},
      {"reconcile: {failed_jobs: {enabled: false}}\n", "reconcile.change_tracking.tables: with"},
  };
  for (const Case& k : cases) {
    Result<Config> bad = ParseConfig(ReconcileYaml(k.reconcile), ".");
    ASSERT_FALSE(bad.ok()) << k.reconcile;
    EXPECT_TRUE(std::string(bad.status().message()).starts_with(k.starts))
        << bad.status().message();
  }
}

}  // namespace
}  // namespace dvrouter
