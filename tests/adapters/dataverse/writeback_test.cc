// Status write-back to Dataverse, end to end: webhooks posted to a dvrouter child process go to
// the ERP simulator, and the statuses of those ERP calls are PATCHed onto the rows of the
// Dataverse simulator (tests/simulators/dataverse_simulator.cc), both separate processes speaking
// HTTP. The row's status column must move Pending Submission -> Submitted -> Completed with the
// ERP's order number; outages, a refused order, Dataverse throttling, deleted rows and the
// write-back's own Update notifications (the loop) are exercised for real. Plus unit tests of the
// PATCH built from a status record and of the configuration's malformed forms.
#include "adapters/dataverse/dataverse_adapter.h"
#include "adapters/dataverse/dataverse_config.h"
#include "adapters/erp/callback_token.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "router/common/json.h"
#include "tests/support/delivery_done.h"
#include "tests/support/http_client.h"
#include "tests/support/router_process.h"
#include "tests/support/sim_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::HttpClient;

constexpr const char* kAppUser = "9f3c1d2e-0000-4000-8000-00000000a001";
// The row's integration status (a choice column) and what dvrouter's states map to.
constexpr int kPendingSubmission = 100000000, kSubmitted = 100000001, kProcessing = 100000002,
              kCompleted = 100000003, kFailed = 100000004;

std::string Row(int r) {
  char row[40];
  std::snprintf(row, sizeof(row), "3d1feef9-604d-ef11-bfe3-%012d", r);
  return row;
}

// Event k of record r: an update of msdyn_agentstatus row r.
std::string Event(int r, int k) {
  static const std::string base = testing::Fixture("update-msdyn_agentstatus-postop-async.json");
  char op[40];
  std::snprintf(op, sizeof(op), "%08x-4444-4000-8000-%012d", r, k);
  return testing::ReplaceAll(testing::ReplaceAll(base, "1a14c3ec-9c50-ef11-bfe3-00224802dbb1", op),
                             "3d1feef9-604d-ef11-bfe3-6045bd03d9d8", Row(r));
}

class Sims {
 public:
  explicit Sims(const testing::TempDir& tmp)
      : erp(DVROUTER_ERP_SIM, "erp-sim", tmp, {}),
        dataverse(DVROUTER_DATAVERSE_SIM, "dataverse-sim", tmp,
                  {"--client", "dvrouter:s3cret", "--app-user", kAppUser}) {}
  bool ready() const { return erp.ready() && dataverse.ready(); }
  // A row of the table as the CRM has it before dvrouter touches it.
  void SeedRow(int r) {
    const testing::HttpReply reply =
        HttpClient(dataverse.port())
            .Post(
                "/_rows?set=msdyn_agentstatuses&table="
                "msdyn_agentstatus&id=" +
                    Row(r),
                "{\"new_integrationstatus\":" + std::to_string(kPendingSubmission) + "}");
    EXPECT_EQ(reply.status, 200) << reply.body;
  }
  std::string RowJson(int r) {
    return dataverse.Get("/_rows?set=msdyn_agentstatuses&id=" + Row(r));
  }
  // The status values PATCHed onto row r, in order (accepted PATCHes only).
  std::vector<int> StatusesWritten(int r) {
    const std::string log = dataverse.Get("/_patches");
    std::vector<int> out;
    const std::string id = "\"id\":\"" + Row(r) + "\",\"status\":204";
    for (size_t at = log.find(id); at != std::string::npos; at = log.find(id, at + 1)) {
      const size_t v = log.find("\"new_integrationstatus\":", at);
      if (v != std::string::npos) out.push_back(std::atoi(log.c_str() + v + 24));
    }
    return out;
  }
  int RowStatus(int r) {
    return static_cast<int>(testing::JsonNumber(RowJson(r), "new_integrationstatus"));
  }

  testing::SimProcess erp;
  testing::SimProcess dataverse;
};

class WritebackRouter {
 public:
  // `erp_async`: YAML of the ERP adapter's `async` section (indented by four), with
  // {{PUBLIC_URL}} for the router's own ingress URL.
  WritebackRouter(const testing::TempDir& tmp, Sims& sims, bool loop_guard = true,
                  const std::string& erp_async = "")
      : log_(tmp.path() + "/router.log"), port_(testing::FreeLoopbackPort()) {
    ::setenv("DVROUTER_DV_TEST_SECRET", "s3cret", 1);
    testing::WriteFileOrDie(log_, "");
    const std::string dv = sims.dataverse.url();
    std::string yaml =
        "ingress:\n"
        "  auth: {mode: none}\n"
        "journal:\n"
        "  partitions: 16\n";
    if (loop_guard) {
      yaml += std::string("loop_guard:\n  user_ids: [") + kAppUser + "]\n";
    }
    yaml +=
        "adapters:\n"
        "  erp:\n"
        "    type: erp\n"
        "    base_url: " +
        sims.erp.url() +
        "\n"
        "    retry: {initial_backoff: 20ms, max_backoff: 300ms}\n"
        "    breaker: {failures: 5, open_for: 100ms}\n" +
        testing::ReplaceAll(erp_async, "{{PUBLIC_URL}}",
                            "http://127.0.0.1:" + std::to_string(port_)) +
        "    requests:\n"
        "      - path: /api/orders\n"
        "        body: '{\"crm_id\": {{header.row_id}}, \"seq\": {{event.seq}}}'\n"
        "        capture: {order_number: /orderNumber}\n"
        "  crm:\n"
        "    type: dataverse\n"
        "    source: erp\n"
        "    url: " +
        dv +
        "\n"
        "    auth:\n"
        "      token_url: " +
        dv +
        "/contoso.onmicrosoft.com/oauth2/v2.0/token\n"
        "      client_id: dvrouter\n"
        "      client_secret: ${DVROUTER_DV_TEST_SECRET}\n"
        "    status_column: new_integrationstatus\n"
        "    status_values: {pending: " +
        std::to_string(kPendingSubmission) + ", submitted: " + std::to_string(kSubmitted) +
        ", processing: " + std::to_string(kProcessing) +
        ", completed: " + std::to_string(kCompleted) + ", failed: " + std::to_string(kFailed) +
        "}\n"
        "    error_column: new_integrationerror\n"
        "    answer_columns: {new_erpordernumber: order_number}\n"
        "    retry: {initial_backoff: 20ms, max_backoff: 300ms}\n"
        "    breaker: {failures: 1000, open_for: 100ms}\n"
        "routes:\n"
        "  - adapters: [erp]\n";
    testing::WriteFileOrDie(tmp.path() + "/router.yaml", yaml);
    router_ =
        std::make_unique<testing::RouterProcess>(tmp, log_, "127.0.0.1:" + std::to_string(port_));
    ready_ = router_->WaitReady(1);
  }
  ~WritebackRouter() {
    router_->child().Kill(SIGTERM);
    router_->child().Wait();
  }
  bool ready() const { return ready_; }
  // kill -9, and reaped.
  void Crash() {
    router_->child().Kill(SIGKILL);
    router_->child().Wait();
  }
  std::string log() const { return testing::ReadFileOrDie(log_); }
  std::string webhook_url() const {
    return "http://127.0.0.1:" + std::to_string(router_->port) + "/webhooks/dataverse";
  }
  std::string Post(const std::string& body) {
    testing::HttpReply r = HttpClient(router_->port).Post("/webhooks/dataverse", body);
    EXPECT_EQ(r.status, 200) << r.body;
    return testing::JsonStringField(r.body, "event_id");
  }
  testing::HttpReply Callback(const std::string& target, const std::string& body,
                              const std::string& secret, const std::string& method = "POST") {
    return HttpClient(router_->port)
        .Request(method, target, body, {{"Authorization", "Bearer " + secret}});
  }
  // A callback to the ERP adapter's event `event_id` with `token` as its URL's token and no
  // Authorization header.
  testing::HttpReply TokenCallback(const std::string& event_id, const std::string& token,
                                   const std::string& body) {
    return HttpClient(router_->port)
        .Request("POST", "/callbacks/erp/" + event_id + "?token=" + token, body);
  }
  std::string Admin(const std::string& method, const std::string& target) {
    return HttpClient(router_->admin_port).Request(method, target).body;
  }
  double Metric(const std::string& prefix) {
    return testing::MetricSum(router_->admin_port, prefix);
  }

 private:
  std::string log_;
  uint16_t port_;
  std::unique_ptr<testing::RouterProcess> router_;
  bool ready_ = false;
};

TEST(WritebackEndToEnd, RowsGoFromPendingSubmissionToSubmittedToCompletedWithTheOrderNumber) {
  testing::TempDir tmp;
  Sims sims(tmp);
  ASSERT_TRUE(sims.ready()) << sims.erp.log() << sims.dataverse.log();
  WritebackRouter router(tmp, sims);
  ASSERT_TRUE(router.ready()) << router.log();
  constexpr int kRows = 5;
  for (int r = 0; r < kRows; ++r) {
    sims.SeedRow(r);
    EXPECT_EQ(sims.RowStatus(r), kPendingSubmission);
  }
  std::vector<std::string> ids;
  for (int r = 0; r < kRows; ++r) ids.push_back(router.Post(Event(r, 0)));
  for (int r = 0; r < kRows; ++r) {
    ASSERT_TRUE(testing::WaitFor([&] { return sims.RowStatus(r) == kCompleted; }))
        << sims.RowJson(r) << router.log();
    EXPECT_EQ(sims.StatusesWritten(r), (std::vector<int>{kSubmitted, kCompleted}));
    // The event's page says what reached the CRM row, and through which adapter.
    std::string status;
    EXPECT_TRUE(testing::WaitFor([&] {
      status = router.Admin("GET", "/events/" + ids[static_cast<size_t>(r)]);
      return status.find("\"written_back\":{\"state\":\"completed\"") != std::string::npos;
    })) << status;
    EXPECT_NE(status.find("\"by\":\"crm\"}"), std::string::npos) << status;
    const std::string row = sims.RowJson(r);
    EXPECT_NE(row.find("\"new_erpordernumber\":\"SO-"), std::string::npos) << row;
    EXPECT_NE(row.find("\"new_integrationerror\":null"), std::string::npos) << row;
  }
  // Every PATCH carried If-Match: * (never creating a row) and a token.
  const std::string patches = sims.dataverse.Get("/_patches");
  EXPECT_EQ(patches.find("\"if_match\":false"), std::string::npos) << patches;
  EXPECT_EQ(sims.dataverse.Stat("unauthorized"), 0);
  EXPECT_EQ(sims.dataverse.Stat("tokens_issued"), 1);
  EXPECT_EQ(router.Metric("dvrouter_dataverse_writes_total{adapter=\"crm\",result=\"written\"}"),
            2 * kRows);

  // A range replay to the ERP resends the events (absorbed by their idempotency keys), never the
  // status records between them; one to the write-back resends the statuses, and none takes a
  // row back in time.
  ASSERT_NE(router.Admin("POST", "/replay?adapter=erp&from=1&to=" + std::to_string(4 * kRows))
                .find("replaying"),
            std::string::npos);
  ASSERT_TRUE(testing::WaitFor([&] { return sims.erp.Stat("duplicates") == kRows; }))
      << sims.erp.Stats();
  EXPECT_EQ(sims.erp.Stat("created"), kRows);
  EXPECT_EQ(sims.erp.Stat("requests"), 2 * kRows);
  auto crm_delivered = [&] {
    return router.Metric("dvrouter_deliveries_total{adapter=\"crm\",outcome=\"delivered\"}");
  };
  // The ERP's replay recorded a submission and a completion per event again.
  ASSERT_TRUE(testing::WaitFor([&] { return crm_delivered() == 4 * kRows; })) << router.log();
  ASSERT_NE(router.Admin("POST", "/replay?adapter=crm&from=1&to=100000").find("replaying"),
            std::string::npos);
  // All 4 statuses per row again: only each row's newest is written, the older three are
  // dropped as older than what the row shows.
  ASSERT_TRUE(testing::WaitFor([&] { return crm_delivered() == 8 * kRows; })) << router.log();
  EXPECT_EQ(router.Metric("dvrouter_dataverse_writes_total{adapter=\"crm\",result=\"superseded\"}"),
            3 * kRows);
  for (int r = 0; r < kRows; ++r) EXPECT_EQ(sims.RowStatus(r), kCompleted);
}

TEST(WritebackEndToEnd, AnErpOutageShowsOnTheRowsThenEverythingCompletesInOrder) {
  testing::TempDir tmp;
  Sims sims(tmp);
  ASSERT_TRUE(sims.ready());
  WritebackRouter router(tmp, sims);
  ASSERT_TRUE(router.ready()) << router.log();
  constexpr int kRows = 4, kEach = 3;
  for (int r = 0; r < kRows; ++r) sims.SeedRow(r);
  sims.erp.Control("outage=1");
  for (int k = 0; k < kEach; ++k) {
    for (int r = 0; r < kRows; ++r) router.Post(Event(r, k));
  }
  // While the ERP is down the rows say so: back to Pending Submission, with the ERP's answer.
  for (int r = 0; r < kRows; ++r) {
    ASSERT_TRUE(testing::WaitFor([&] {
      const std::vector<int> w = sims.StatusesWritten(r);
      return w.size() == 2 && w[1] == kPendingSubmission && sims.RowStatus(r) == kPendingSubmission;
    })) << sims.dataverse.Get("/_patches");
    EXPECT_NE(sims.RowJson(r).find("503"), std::string::npos) << sims.RowJson(r);
  }
  EXPECT_EQ(sims.erp.Stat("created"), 0);
  sims.erp.Control("outage=0");
  ASSERT_TRUE(testing::WaitFor([&] { return sims.erp.Stat("created") == kRows * kEach; },
                               std::chrono::seconds(30)))
      << sims.erp.Stats();
  EXPECT_EQ(sims.erp.Stat("order_violations"), 0);
  for (int r = 0; r < kRows; ++r) {
    // The last event of each row completes last: the row ends Completed, never behind.
    ASSERT_TRUE(testing::WaitFor([&] {
      const std::vector<int> w = sims.StatusesWritten(r);
      return std::count(w.begin(), w.end(), kCompleted) == kEach;
    })) << sims.dataverse.Get("/_patches");
    const std::vector<int> w = sims.StatusesWritten(r);
    // Per event: submitted, then (the first one) pending, then completed: in order per row.
    EXPECT_EQ(w[0], kSubmitted);
    EXPECT_EQ(w[1], kPendingSubmission);
    size_t completed = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      if (w[i] == kCompleted) {
        ++completed;
        ASSERT_GT(i, 0u);
        EXPECT_NE(w[i - 1], kCompleted) << "two completions without a submission between";
      }
    }
    EXPECT_EQ(completed, static_cast<size_t>(kEach));
    EXPECT_EQ(w.back(), kCompleted);
    EXPECT_NE(sims.RowJson(r).find("\"new_integrationerror\":null"), std::string::npos);
  }
}

TEST(WritebackEndToEnd, ARefusedOrderShowsFailedWithTheErrorAndCompletedAfterAReplay) {
  testing::TempDir tmp;
  Sims sims(tmp);
  ASSERT_TRUE(sims.ready());
  WritebackRouter router(tmp, sims);
  ASSERT_TRUE(router.ready()) << router.log();
  sims.SeedRow(1);
  sims.erp.Control("reject=" + Row(1));
  const std::string id = router.Post(Event(1, 0));
  ASSERT_TRUE(testing::WaitFor([&] { return sims.RowStatus(1) == kFailed; })) << sims.RowJson(1);
  const std::string failed = sims.RowJson(1);
  EXPECT_NE(failed.find("customer blocked"), std::string::npos) << failed;
  EXPECT_NE(failed.find("400"), std::string::npos) << failed;
  // The failed status is on its way to the row before the DLQ entry is written.
  EXPECT_TRUE(testing::WaitFor(
      [&] { return router.Admin("GET", "/dlq?adapter=erp").find(id) != std::string::npos; }));
  sims.erp.Control("unreject=" + Row(1));
  EXPECT_NE(router.Admin("POST", "/dlq/replay?adapter=erp").find("\"replayed\":1"),
            std::string::npos);
  ASSERT_TRUE(testing::WaitFor([&] { return sims.RowStatus(1) == kCompleted; })) << sims.RowJson(1);
  EXPECT_EQ(sims.StatusesWritten(1),
            (std::vector<int>{kSubmitted, kFailed, kSubmitted, kCompleted}));
  const std::string done = sims.RowJson(1);
  EXPECT_NE(done.find("\"new_erpordernumber\":\"SO-"), std::string::npos) << done;
  EXPECT_NE(done.find("\"new_integrationerror\":null"), std::string::npos) << done;
}

TEST(WritebackEndToEnd, DataverseThrottlingIsHonouredForEveryWrite) {
  testing::TempDir tmp;
  Sims sims(tmp);
  ASSERT_TRUE(sims.ready());
  WritebackRouter router(tmp, sims);
  ASSERT_TRUE(router.ready()) << router.log();
  constexpr int kRows = 6;
  for (int r = 0; r < kRows; ++r) sims.SeedRow(r);
  sims.dataverse.Control("throttle=4&retry_after=2");
  for (int r = 0; r < kRows; ++r) router.Post(Event(r, 0));
  for (int r = 0; r < kRows; ++r) {
    ASSERT_TRUE(
        testing::WaitFor([&] { return sims.RowStatus(r) == kCompleted; }, std::chrono::seconds(30)))
        << sims.RowJson(r);
  }
  EXPECT_EQ(sims.dataverse.Stat("throttled"), 4);
  // After a 429 no PATCH of the adapter came sooner than the Retry-After asked for (except
  // those already on their way when the 429 was sent: the simulator allows 300 ms for them).
  EXPECT_EQ(sims.dataverse.Stat("early_after_429"), 0) << sims.dataverse.Stats();
  EXPECT_GE(router.Metric("dvrouter_dataverse_writes_total{adapter=\"crm\",result=\"throttled\"}"),
            1);
}

TEST(WritebackEndToEnd, ADeletedRowEndsItsWritebackWithoutRetries) {
  testing::TempDir tmp;
  Sims sims(tmp);
  ASSERT_TRUE(sims.ready());
  WritebackRouter router(tmp, sims);
  ASSERT_TRUE(router.ready()) << router.log();
  sims.SeedRow(2);
  router.Post(Event(1, 0));  // row 1 does not exist in the CRM (deleted, or rolled back)
  router.Post(Event(2, 0));
  ASSERT_TRUE(testing::WaitFor([&] { return sims.RowStatus(2) == kCompleted; }));
  ASSERT_TRUE(testing::WaitFor([&] {
    return router.Metric("dvrouter_dataverse_writes_total{adapter=\"crm\",result=\"not_found\"}") ==
           2;
  })) << sims.dataverse.Stats();
  EXPECT_EQ(sims.dataverse.Stat("not_found"), 2);  // submitted and completed, once each
  EXPECT_EQ(router.Metric("dvrouter_delivery_retries_total{adapter=\"crm\"}"), 0);
  EXPECT_EQ(router.Metric("dvrouter_delivery_dlq_entries{adapter=\"crm\"}"), 0);
  EXPECT_EQ(sims.erp.Stat("created"), 2);
}

// The write-back's PATCH raises an Update of the row, which Dataverse posts back to dvrouter
// (the simulator does so like a registered step): the loop guard must drop it, or every status
// write would order again.
TEST(WritebackEndToEnd, TheWritebacksOwnUpdatesDoNotLoopBackToTheErp) {
  testing::TempDir tmp;
  Sims sims(tmp);
  ASSERT_TRUE(sims.ready());
  WritebackRouter router(tmp, sims);
  ASSERT_TRUE(router.ready()) << router.log();
  sims.dataverse.Control("webhook=" + router.webhook_url());
  for (int r = 0; r < 3; ++r) sims.SeedRow(r);
  for (int r = 0; r < 3; ++r) router.Post(Event(r, 0));
  // Two PATCHes per row, each echoed as an Update notification the router accepted.
  ASSERT_TRUE(testing::WaitFor([&] { return sims.dataverse.Stat("notifications_sent") == 6; }))
      << sims.dataverse.Stats() << sims.dataverse.log();
  ASSERT_TRUE(testing::WaitFor([&] {
    return router.Metric("dvrouter_events_skipped_total{reason=\"loop_user\"}") == 6;
  })) << router.log();
  EXPECT_EQ(sims.erp.Stat("requests"), 3);
  EXPECT_EQ(sims.erp.Stat("created"), 3);
  EXPECT_EQ(sims.dataverse.Stat("patched"), 6);
}

// A kill -9 while ERP calls and write-backs are under way loses no status: after the restart
// every row ends Completed with its order number, and the ERP created each order once.
TEST(WritebackEndToEnd, AKill9MidLoadLosesNoStatus) {
  testing::TempDir tmp;
  Sims sims(tmp);
  ASSERT_TRUE(sims.ready());
  constexpr int kRows = 60;
  for (int r = 0; r < kRows; ++r) sims.SeedRow(r);
  sims.erp.Control("latency_ms=30");
  {
    WritebackRouter router(tmp, sims);
    ASSERT_TRUE(router.ready()) << router.log();
    for (int r = 0; r < kRows; ++r) router.Post(Event(r, 0));
    ASSERT_TRUE(testing::WaitFor([&] { return sims.dataverse.Stat("patched") >= kRows; }));
    router.Crash();
  }
  const int64_t patched_at_crash = sims.dataverse.Stat("patched");
  EXPECT_LT(patched_at_crash, 2 * kRows) << "the crash came too late to test anything";
  WritebackRouter again(tmp, sims);
  ASSERT_TRUE(again.ready()) << again.log();
  for (int r = 0; r < kRows; ++r) {
    ASSERT_TRUE(
        testing::WaitFor([&] { return sims.RowStatus(r) == kCompleted; }, std::chrono::seconds(30)))
        << r << ": " << sims.RowJson(r) << again.log();
    EXPECT_NE(sims.RowJson(r).find("\"new_erpordernumber\":\"SO-"), std::string::npos);
  }
  EXPECT_EQ(sims.erp.Stat("created"), kRows);  // resends were absorbed by the idempotency key
  EXPECT_EQ(sims.erp.Stat("order_violations"), 0);
}

// ERP jobs (202) confirmed by the ERP calling back: the row shows Processing, then Completed with
// the order number from the callback; a failed job shows Failed and goes to the DLQ.
constexpr const char* kCallbacks =
    "    async:\n"
    "      callback: {secret: '${DVROUTER_CB_TEST_SECRET}', public_url: '{{PUBLIC_URL}}'}\n";

TEST(WritebackEndToEnd, JobsConfirmedByCallbackShowProcessingThenCompleted) {
  testing::TempDir tmp;
  Sims sims(tmp);
  ASSERT_TRUE(sims.ready());
  ::setenv("DVROUTER_CB_TEST_SECRET", "callback-secret", 1);
  WritebackRouter router(tmp, sims, true, kCallbacks);
  ASSERT_TRUE(router.ready()) << router.log();
  sims.erp.Control("async=1&job_ms=300&callback=1");
  sims.erp.Control("reject=" + Row(3));
  for (int r = 0; r < 4; ++r) sims.SeedRow(r);
  std::string refused;
  for (int r = 0; r < 4; ++r) {
    const std::string id = router.Post(Event(r, 0));
    if (r == 3) refused = id;
  }
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(testing::WaitFor([&] { return sims.RowStatus(r) == kCompleted; }))
        << sims.RowJson(r) << sims.erp.Stats() << router.log();
    EXPECT_EQ(sims.StatusesWritten(r), (std::vector<int>{kSubmitted, kProcessing, kCompleted}));
    EXPECT_NE(sims.RowJson(r).find("\"new_erpordernumber\":\"SO-"), std::string::npos);
  }
  ASSERT_TRUE(testing::WaitFor([&] { return sims.RowStatus(3) == kFailed; })) << sims.RowJson(3);
  EXPECT_NE(sims.RowJson(3).find("customer blocked"), std::string::npos) << sims.RowJson(3);
  EXPECT_NE(router.Admin("GET", "/dlq?adapter=erp").find(refused), std::string::npos);
  EXPECT_EQ(sims.erp.Stat("callbacks_sent"), 4);
  EXPECT_EQ(sims.erp.Stat("polls"), 0);
  EXPECT_EQ(
      router.Metric("dvrouter_delivery_confirmations_total{adapter=\"erp\",outcome=\"completed\"}"),
      3);
  // A repeated callback changes nothing; a wrong secret, an unknown event, a body without a
  // status and a GET are refused.
  const std::string target = "/callbacks/erp/" + refused;
  const std::string done = R"({"status":"completed","orderNumber":"SO-9"})";
  EXPECT_EQ(router.Callback(target, done, "callback-secret").status, 200);
  EXPECT_EQ(sims.RowStatus(3), kFailed);
  EXPECT_EQ(router.Callback(target, done, "wrong").status, 401);
  EXPECT_EQ(
      router.Callback("/callbacks/erp/" + std::string(32, 'a'), done, "callback-secret").status,
      404);
  EXPECT_EQ(router.Callback("/callbacks/nope/" + refused, done, "callback-secret").status, 404);
  EXPECT_EQ(router.Callback("/callbacks/crm/" + refused, done, "callback-secret").status, 404);
  EXPECT_EQ(router.Callback(target, "{not json", "callback-secret").status, 400);
  EXPECT_EQ(router.Callback(target, R"({"status":"processing"})", "callback-secret").status, 400);
  EXPECT_EQ(router.Callback(target, "", "callback-secret", "GET").status, 405);
  EXPECT_EQ(router.Callback("/callbacks/erp", done, "callback-secret").status, 404);
  EXPECT_EQ(router.Metric("dvrouter_callbacks_total{result=\"unauthorized\"}"), 1);
  EXPECT_EQ(router.Metric("dvrouter_callbacks_total{result=\"bad_request\"}"), 2);
}

// The ERP calls back with the URL it was given alone (its per-event token, no Bearer secret):
// every job is confirmed. A token opens its own event only: another event's is refused (401)
// before the body is read.
TEST(WritebackEndToEnd, CallbacksAuthenticatedByTheirEventsTokenAlone) {
  testing::TempDir tmp;
  Sims sims(tmp);
  ASSERT_TRUE(sims.ready());
  ::setenv("DVROUTER_CB_TEST_SECRET", "callback-secret", 1);
  WritebackRouter router(tmp, sims, true, kCallbacks);
  ASSERT_TRUE(router.ready()) << router.log();
  sims.erp.Control("async=1&job_ms=100&callback=1&callback_auth=token");
  for (int r = 0; r < 3; ++r) sims.SeedRow(r);
  std::vector<std::string> ids;
  for (int r = 0; r < 3; ++r) ids.push_back(router.Post(Event(r, 0)));
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(testing::WaitFor([&] { return sims.RowStatus(r) == kCompleted; }))
        << sims.RowJson(r) << sims.erp.Stats() << router.log();
    EXPECT_EQ(sims.StatusesWritten(r), (std::vector<int>{kSubmitted, kProcessing, kCompleted}));
  }
  EXPECT_EQ(sims.erp.Stat("callbacks_sent"), 3);
  EXPECT_EQ(sims.erp.Stat("callbacks_refused"), 0);

  const std::string done = R"({"status":"completed","orderNumber":"SO-9"})";
  const std::string token0 = CallbackToken("callback-secret", "erp", ids[0]);
  const std::string token1 = CallbackToken("callback-secret", "erp", ids[1]);
  EXPECT_EQ(router.TokenCallback(ids[1], token0, done).status, 401);
  EXPECT_EQ(router.TokenCallback(ids[0], token1, done).status, 401);
  EXPECT_EQ(router.TokenCallback(ids[0], "", done).status, 401);
  EXPECT_EQ(router.Metric("dvrouter_callbacks_total{result=\"unauthorized\"}"), 3);
  EXPECT_EQ(router.TokenCallback(ids[0], token0, done).status, 200);  // again: changes nothing
  EXPECT_EQ(router.TokenCallback(ids[1], token1, done).status, 200);
  EXPECT_EQ(router.Metric("dvrouter_callbacks_total{result=\"confirmed\"}"), 5);
}

// The ERP calls back before its 202 answer reaches dvrouter (the job was instant, the answer
// slow): the confirmation is kept and applied when the 202 arrives, never refused.
TEST(WritebackEndToEnd, ACallbackThatOvertakesThe202IsAppliedWhenTheAnswerArrives) {
  testing::TempDir tmp;
  Sims sims(tmp);
  ASSERT_TRUE(sims.ready());
  ::setenv("DVROUTER_CB_TEST_SECRET", "callback-secret", 1);
  WritebackRouter router(tmp, sims, true, kCallbacks);
  ASSERT_TRUE(router.ready()) << router.log();
  sims.erp.Control("async=1&job_ms=0&callback=1&latency_ms=300");
  for (int r = 0; r < 3; ++r) sims.SeedRow(r);
  for (int r = 0; r < 3; ++r) router.Post(Event(r, 0));
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(testing::WaitFor([&] { return sims.RowStatus(r) == kCompleted; }))
        << sims.RowJson(r) << sims.erp.Stats();
    EXPECT_EQ(sims.StatusesWritten(r), (std::vector<int>{kSubmitted, kProcessing, kCompleted}));
  }
  EXPECT_EQ(sims.erp.Stat("callbacks_sent"), 3);
  EXPECT_EQ(sims.erp.Stat("callbacks_refused"), 0) << "a callback was refused (409) and resent";
  EXPECT_EQ(
      router.Metric("dvrouter_delivery_confirmations_total{adapter=\"erp\",outcome=\"completed\"}"),
      3);
}

TEST(WritebackEndToEnd, JobsConfirmedByPollingTheStatusUrl) {
  testing::TempDir tmp;
  Sims sims(tmp);
  ASSERT_TRUE(sims.ready());
  WritebackRouter router(tmp, sims, true, "    async:\n      poll: {interval: 100ms}\n");
  ASSERT_TRUE(router.ready()) << router.log();
  sims.erp.Control("async=1&job_ms=400");
  for (int r = 0; r < 3; ++r) sims.SeedRow(r);
  for (int r = 0; r < 3; ++r) router.Post(Event(r, 0));
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(testing::WaitFor([&] { return sims.RowStatus(r) == kCompleted; }))
        << sims.RowJson(r) << sims.erp.Stats();
    EXPECT_EQ(sims.StatusesWritten(r), (std::vector<int>{kSubmitted, kProcessing, kCompleted}));
    EXPECT_NE(sims.RowJson(r).find("\"new_erpordernumber\":\"SO-"), std::string::npos);
  }
  EXPECT_GE(sims.erp.Stat("polls"), 6);  // each job answered "processing" at least once
  EXPECT_EQ(sims.erp.Stat("callbacks_sent"), 0);
}

// A 202 may name any URL as the job's status: only base_url's origin and the listed ones are
// fetched (no request to another host on the router's network), and another origin's answers are
// never quoted in errors.
TEST(WritebackEndToEnd, AStatusUrlOnAnotherOriginIsNeverFetchedUnlessAllowed) {
  testing::TempDir tmp;
  Sims sims(tmp);
  testing::TempDir other_tmp;  // a second ERP simulator: another origin
  testing::SimProcess elsewhere(DVROUTER_ERP_SIM, "erp-sim", other_tmp, {});
  ASSERT_TRUE(sims.ready() && elsewhere.ready());
  sims.erp.Control("async=1&job_ms=50&status_base=" + elsewhere.url());
  {
    WritebackRouter router(tmp, sims, true, "    async:\n      poll: {interval: 50ms}\n");
    ASSERT_TRUE(router.ready()) << router.log();
    sims.SeedRow(0);
    router.Post(Event(0, 0));
    ASSERT_TRUE(testing::WaitFor([&] { return sims.RowStatus(0) == kFailed; }))
        << sims.RowJson(0) << router.log();
    const std::string dlq = router.Admin("GET", "/dlq?adapter=erp");
    EXPECT_NE(dlq.find("erp job not polled"), std::string::npos) << dlq;
    EXPECT_NE(dlq.find("async.poll.allowed_origins"), std::string::npos) << dlq;
    EXPECT_EQ(elsewhere.Stat("polls"), 0) << "the router fetched a URL on another origin";
  }
  {
    // Listed: polled, without the ERP's credentials, and its answer is not quoted.
    testing::TempDir tmp2;
    WritebackRouter router(
        tmp2, sims, true,
        "    async:\n      poll: {interval: 50ms, allowed_origins: [" + elsewhere.url() + "]}\n");
    ASSERT_TRUE(router.ready()) << router.log();
    sims.SeedRow(1);
    router.Post(Event(1, 0));
    ASSERT_TRUE(testing::WaitFor([&] { return sims.RowStatus(1) == kFailed; }))
        << sims.RowJson(1) << router.log();
    EXPECT_GE(elsewhere.Stat("polls"), 1);
    const std::string dlq = router.Admin("GET", "/dlq?adapter=erp");
    EXPECT_NE(dlq.find("erp job status HTTP 404"), std::string::npos) << dlq;
    EXPECT_EQ(dlq.find("no such job"), std::string::npos) << "another origin's body was quoted";
  }
}

// --- units ---

DataverseConfig Config() {
  DataverseConfig c;
  c.source = "erp";
  c.url = "https://contoso.crm.dynamics.com";
  c.status_column = "new_integrationstatus";
  c.status_values = {{"submitted", 2}, {"completed", 3}, {"failed", 4}};
  c.error_column = "new_integrationerror";
  c.answer_columns = {{"new_erpordernumber", "order_number"}};
  return c;
}

using Results = testing::Done;

EventHeader StatusHeader() {
  EventHeader h;
  h.status_record = true;
  h.message_name = kStatusMessage;
  h.primary_entity_name = "salesorder";
  h.primary_entity_id = "3d1feef9-604d-ef11-bfe3-6045bd03d9d8";
  return h;
}

TEST(DataverseAdapterUnit, ACompletionSetsStatusAnswerColumnsAndClearsTheError) {
  auto p = DataverseAdapter::BuildPatch(
      Config(), StatusHeader(),
      R"({"state":"completed","error":null,"answer":{"order_number":"SO-7","other":1}})");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->resource, "salesorders(3d1feef9-604d-ef11-bfe3-6045bd03d9d8)");
  EXPECT_EQ(p->body, R"({"new_integrationstatus":3,"new_integrationerror":null,)"
                     R"("new_erpordernumber":"SO-7"})");
}

TEST(DataverseAdapterUnit, AFailureWritesTheErrorTextBounded) {
  const std::string error(5000, 'x');
  auto p = DataverseAdapter::BuildPatch(Config(), StatusHeader(),
                                        R"({"state":"failed","error":")" + error + R"("})");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->body, R"({"new_integrationstatus":4,"new_integrationerror":")" +
                         std::string(2000, 'x') + "\"}");
}

TEST(DataverseAdapterUnit, AStateWithoutAValueWritesNothing) {
  auto p = DataverseAdapter::BuildPatch(Config(), StatusHeader(), R"({"state":"processing"})");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->body.empty());
}

TEST(DataverseAdapterUnit, WhatIsNotAStatusRecordIsRefused) {
  EventHeader webhook = StatusHeader();
  webhook.status_record = false;  // a webhook posing as one
  EXPECT_FALSE(DataverseAdapter::BuildPatch(Config(), webhook, R"({"state":"completed"})").ok());
  EXPECT_FALSE(DataverseAdapter::BuildPatch(Config(), StatusHeader(), "{not json").ok());
  EXPECT_FALSE(DataverseAdapter::BuildPatch(Config(), StatusHeader(), R"({"st":1})").ok());
  EventHeader no_row = StatusHeader();
  no_row.primary_entity_id = "../accounts";
  EXPECT_FALSE(DataverseAdapter::BuildPatch(Config(), no_row, R"({"state":"completed"})").ok());
}

// The table is spliced into the PATCH URL: one that is not a logical name is refused for good
// (the DLQ), never retried, and no request is made for it.
TEST(DataverseAdapterUnit, ATableThatIsNotALogicalNameIsPermanent) {
  const std::string completed = R"({"state":"completed"})";
  const std::vector<std::string> bad = {
      std::string(300, 'a'), "contacts(x)#",       "../x", "Account", "",
      "accounts?$filter=x",  std::string(129, 'a')};
  for (const std::string& table : bad) {
    EventHeader h = StatusHeader();
    h.primary_entity_name = table;
    auto p = DataverseAdapter::BuildPatch(Config(), h, completed);
    ASSERT_FALSE(p.ok()) << table << " gave " << p->resource;
    EXPECT_NE(p.status().message().find("is not a Dataverse logical name"), std::string::npos)
        << p.status().ToString();
  }
  EventHeader longest = StatusHeader();
  longest.primary_entity_name = std::string(128, 'a');
  auto p = DataverseAdapter::BuildPatch(Config(), longest, completed);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->resource, std::string(128, 'a') + "s(3d1feef9-604d-ef11-bfe3-6045bd03d9d8)");

  // Through Deliver, against an endpoint where nothing listens: a request would be retryable.
  AdapterConfig c;
  c.name = "crm";
  c.type = "dataverse";
  c.Settings<DataverseConfig>() = Config();
  c.Settings<DataverseConfig>().url = "http://127.0.0.1:1";
  c.Settings<DataverseConfig>().token_url = "http://127.0.0.1:1/token";
  c.Settings<DataverseConfig>().client_id = "dvrouter";
  c.Settings<DataverseConfig>().client_secret = "s3cret";
  DataverseAdapter adapter(c, nullptr);
  ASSERT_TRUE(adapter.Start(1).ok());
  std::vector<EventHeader> headers(bad.size(), StatusHeader());
  std::vector<Delivery> batch(bad.size());
  for (size_t i = 0; i < bad.size(); ++i) {
    headers[i].primary_entity_name = bad[i];
    batch[i].seq = i + 1;
    batch[i].header = &headers[i];
    batch[i].body = completed;
  }
  Results done;
  adapter.Deliver(batch, &done);
  const std::vector<DeliveryResult> results = done.Wait();
  ASSERT_EQ(results.size(), bad.size());
  for (size_t i = 0; i < bad.size(); ++i) {
    EXPECT_EQ(results[i].outcome, DeliveryOutcome::kPermanent)
        << bad[i] << ": " << results[i].error;
  }
  adapter.Stop();
}

TEST(DataverseAdapterUnit, TheStatusOrderIsReadAndForeignTextIsKeptValid) {
  auto p = DataverseAdapter::BuildPatch(
      Config(), StatusHeader(),
      R"({"state":"failed","order":1732792800000123,"error":"Kunde gesperrt: \u00fcberf\u00e4llig"})");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->order, 1732792800000123u);
  EXPECT_NE(p->body.find("Kunde gesperrt: \u00fcberf\u00e4llig"), std::string::npos) << p->body;
  // An excerpt cut inside a character, or with a stray byte, stays valid UTF-8.
  EXPECT_EQ(Utf8Excerpt("ab\xc3\xbc", 3), "ab?");
  EXPECT_EQ(Utf8Excerpt("a\xff"
                        "b"),
            "a?b");
  EXPECT_EQ(Utf8Excerpt("\xe2\x82\xac ok", 100), "\xe2\x82\xac ok");
}

TEST(DataverseAdapterUnit, EntitySetsFollowDataversePluralsUnlessConfigured) {
  DataverseConfig c = Config();
  EXPECT_EQ(DataverseAdapter::EntitySet(c, "account"), "accounts");
  EXPECT_EQ(DataverseAdapter::EntitySet(c, "opportunity"), "opportunities");
  EXPECT_EQ(DataverseAdapter::EntitySet(c, "address"), "addresses");
  EXPECT_EQ(DataverseAdapter::EntitySet(c, "msdyn_agentstatus"), "msdyn_agentstatuses");
  EXPECT_EQ(DataverseAdapter::EntitySet(c, "new_survey"), "new_surveys");
  c.entity_sets = {{"new_survey", "new_surveyset"}};
  EXPECT_EQ(DataverseAdapter::EntitySet(c, "new_survey"), "new_surveyset");
}

}  // namespace
}  // namespace dvrouter
