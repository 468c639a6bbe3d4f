// Reconciliation end to end (docs/reconciliation.md): the Dataverse simulator posts every change
// to a real dvrouter the way Dataverse does (one retry on 502-504 only, a failed system job for
// an asynchronous step's lost webhook); the router is killed while changes keep coming, restarted,
// and one reconciliation later its SQLite mirror equals the simulator's rows, deleted rows are
// marked deleted, and the ERP simulator got each salesorder Create exactly once. Plus: a change
// the router did receive whose job failed anyway is not delivered twice, a second run journals
// nothing, 429 storms slow a run without failing it, and malformed answers fail a run that the
// next one recovers from.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/http_client.h"
#include "tests/support/router_process.h"
#include "tests/support/sim_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::HttpClient;

std::string Guid(int kind, int n) {
  char id[40];
  std::snprintf(id, sizeof(id), "%08x-0000-4000-8000-%012d", kind, n);
  return id;
}
std::string Account(int n) { return Guid(0xacc, n); }
std::string Order(int n) { return Guid(0x5a1e, n); }

std::string Change(const std::string& op, const std::string& table, const std::string& id,
                   const std::string& columns = "{}") {
  return R"({"op":")" + op + R"(","table":")" + table + R"(","id":")" + id + R"(","columns":)" +
         columns + "}";
}
std::string AccountColumns(int n, int version) {
  return R"({"name":"account )" + std::to_string(n) + " v" + std::to_string(version) +
         R"(","revenue":)" + std::to_string(1000 * n + version) + "}";
}

class Reconciliation : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("DVROUTER_RECON_TEST_KEY", "recon-webhook-key", 1);
    ::setenv("DVROUTER_RECON_TEST_SECRET", "recon-s3cret", 1);
    erp_ = std::make_unique<testing::SimProcess>(DVROUTER_ERP_SIM, "erp-sim", tmp_,
                                                 std::vector<std::string>{});
    dataverse_ = std::make_unique<testing::SimProcess>(
        DVROUTER_DATAVERSE_SIM, "dataverse-sim", tmp_,
        std::vector<std::string>{"--client", "dvrouter:recon-s3cret", "--tables", "account",
                                 "--tables", "salesorder", "--webhook-timeout-ms", "5000"});
    ASSERT_TRUE(erp_->ready() && dataverse_->ready()) << erp_->log() << dataverse_->log();
    port_ = testing::FreeLoopbackPort();
    const std::string dv = dataverse_->url();
    testing::WriteFileOrDie(
        tmp_.path() + "/router.yaml",
        "ingress:\n"
        "  auth: {mode: webhook_key, secret: \"${DVROUTER_RECON_TEST_KEY}\"}\n"
        "journal:\n"
        "  partitions: 8\n"
        "adapters:\n"
        "  mirror:\n"
        "    type: sqlite\n"
        "    path: " +
            tmp_.path() +
            "/mirror.db\n"
            "    table_prefix: crm_\n"
            "    batch: {linger: 5ms}\n"
            "  erp:\n"
            "    type: erp\n"
            "    base_url: " +
            erp_->url() +
            "\n"
            "    retry: {initial_backoff: 20ms, max_backoff: 300ms}\n"
            "    requests:\n"
            "      - path: /api/orders\n"
            "        body: '{\"crm_id\": {{header.row_id}}, \"seq\": {{event.seq}}}'\n"
            "  crm:\n"
            "    type: dataverse\n"
            "    source: erp\n"
            "    url: " +
            dv +
            "\n"
            "    auth: {token_url: " +
            dv +
            "/tenant/oauth2/v2.0/token, client_id: dvrouter, client_secret: "
            "\"${DVROUTER_RECON_TEST_SECRET}\"}\n"
            "    status_column: new_integrationstatus\n"
            "    status_values: {completed: 3, failed: 4}\n"
            "routes:\n"
            "  - {tables: [account], adapters: [mirror]}\n"
            "  - {tables: [salesorder], messages: [Create], adapters: [mirror, erp]}\n"
            "registration:\n"
            "  dataverse: crm\n"
            "  endpoint_name: dvrouter-recon\n"
            "  webhook_url: http://127.0.0.1:" +
            std::to_string(port_) +
            "/webhooks/dataverse\n"
            "  steps:\n"
            "    - {table: account, messages: [Create, Update, Delete]}\n"
            "    - {table: salesorder, messages: [Create]}\n"
            "reconcile:\n"
            "  interval: 0s\n"
            "  max_requests_per_second: 100\n"
            "  failed_jobs: {lookback: 1h, page_size: 25}\n");
    const auto [rc, out] = Cli({"register", "-c", tmp_.path() + "/router.yaml"});
    ASSERT_EQ(rc, 0) << out;
    testing::WriteFileOrDie(log_, "");
    Start();
  }
  void TearDown() override { Kill(SIGTERM); }

  void Start() {
    router_ =
        std::make_unique<testing::RouterProcess>(tmp_, log_, "127.0.0.1:" + std::to_string(port_));
    ASSERT_TRUE(router_->WaitReady(++runs_)) << testing::ReadFileOrDie(log_);
  }
  void Kill(int sig) {
    if (!router_) return;
    router_->child().Kill(sig);
    router_->child().Wait();
    router_.reset();
  }
  // Runs `dvrouter ARGS...`: exit status and output.
  std::pair<int, std::string> Cli(std::vector<std::string> args) {
    const std::string out = tmp_.path() + "/cli-" + std::to_string(++cli_runs_) + ".out";
    testing::ChildProcess cli(DVROUTER_BINARY, std::move(args), out);
    const int status = cli.Wait();
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, testing::ReadFileOrDie(out)};
  }
  // `dvrouter reconcile` against the running router: exit status and the run's summary.
  std::pair<int, std::string> Reconcile() {
    return Cli({"reconcile", "--admin", "127.0.0.1:" + std::to_string(router_->admin_port)});
  }
  // Posts changes (a JSON array's items) to the simulator; its answer.
  std::string Changes(const std::vector<std::string>& changes) {
    std::string body = "[";
    for (size_t i = 0; i < changes.size(); ++i) body += (i ? "," : "") + changes[i];
    body += "]";
    testing::HttpReply r = HttpClient(dataverse_->port()).Post("/_changes", body);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.body;
  }
  // SELECT over the mirror: each row's columns joined by '|'.
  std::vector<std::string> Mirror(const std::string& sql) {
    std::vector<std::string> rows;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2((tmp_.path() + "/mirror.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
        SQLITE_OK) {
      sqlite3_close(db);
      return rows;
    }
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK) {
      while (sqlite3_step(st) == SQLITE_ROW) {
        std::string row;
        for (int c = 0; c < sqlite3_column_count(st); ++c) {
          const unsigned char* text = sqlite3_column_text(st, c);
          row += (c ? "|" : "") + std::string(text ? reinterpret_cast<const char*>(text) : "NULL");
        }
        rows.push_back(row);
      }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rows;
  }
  // What the mirror must hold for the accounts: id|name|revenue|deleted per row, from the
  // simulator's rows and tombstones.
  std::map<std::string, std::string> ExpectedAccounts() {
    std::map<std::string, std::string> want;
    const std::string rows = dataverse_->Get("/_rows?set=accounts");
    for (size_t at = rows.find("\"accountid\":\""); at != std::string::npos;
         at = rows.find("\"accountid\":\"", at + 1)) {
      const size_t open = rows.rfind('{', at), close = rows.find('}', at);
      const std::string row = rows.substr(open, close - open + 1);
      const std::string id = testing::JsonStringField(row, "accountid");
      want[id] = testing::JsonStringField(row, "name") + "|" +
                 std::to_string(static_cast<int64_t>(testing::JsonNumber(row, "revenue"))) + "|0";
    }
    const std::string deleted = dataverse_->Get("/_deleted?set=accounts");
    for (size_t at = deleted.find("\"id\":\""); at != std::string::npos;
         at = deleted.find("\"id\":\"", at + 1)) {
      want[deleted.substr(at + 6, 36)] = "deleted";
    }
    return want;
  }
  std::map<std::string, std::string> MirroredAccounts() {
    std::map<std::string, std::string> got;
    for (const std::string& row : Mirror(
             "SELECT id, json_extract(attributes, '$.name'), "
             "CAST(json_extract(attributes, '$.revenue') AS INTEGER), deleted FROM crm_account")) {
      const std::string id = row.substr(0, row.find('|'));
      got[id] = row.ends_with("|1") ? "deleted" : row.substr(id.size() + 1);
    }
    return got;
  }

  testing::TempDir tmp_;
  std::string log_ = tmp_.path() + "/router.log";
  std::unique_ptr<testing::SimProcess> erp_, dataverse_;
  std::unique_ptr<testing::RouterProcess> router_;
  uint16_t port_ = 0;
  size_t runs_ = 0;
  int cli_runs_ = 0;
};

TEST_F(Reconciliation, WhatAKilledRouterMissedIsRecoveredFromTheFailedJobs) {
  // 40 accounts and 10 orders while the router runs: all delivered.
  std::vector<std::string> changes;
  for (int n = 0; n < 40; ++n)
    changes.push_back(Change("create", "account", Account(n), AccountColumns(n, 0)));
  for (int n = 0; n < 10; ++n) {
    changes.push_back(Change("create", "salesorder", Order(n), R"({"name":"order"})"));
  }
  EXPECT_NE(Changes(changes).find("\"failed_jobs\":0"), std::string::npos);

  // kill -9; meanwhile updates (several per row), deletes, new accounts and 10 more orders.
  Kill(SIGKILL);
  changes.clear();
  for (int v = 1; v <= 3; ++v) {
    for (int n = 0; n < 40; n += 2)
      changes.push_back(Change("update", "account", Account(n), AccountColumns(n, v)));
  }
  for (int n = 1; n < 40; n += 8) changes.push_back(Change("delete", "account", Account(n)));
  for (int n = 0; n < 4; n += 2) changes.push_back(Change("delete", "account", Account(n)));
  for (int n = 40; n < 50; ++n)
    changes.push_back(Change("create", "account", Account(n), AccountColumns(n, 0)));
  for (int n = 10; n < 20; ++n) {
    changes.push_back(Change("create", "salesorder", Order(n), R"({"name":"late order"})"));
  }
  const size_t lost = changes.size();
  const std::string answer = Changes(changes);
  ASSERT_NE(answer.find("\"failed_jobs\":" + std::to_string(lost)), std::string::npos) << answer;

  Start();
  const auto [rc, summary] = Reconcile();
  ASSERT_EQ(rc, 0) << summary << testing::ReadFileOrDie(log_);
  EXPECT_NE(summary.find("\"failed_jobs_found\":" + std::to_string(lost)), std::string::npos)
      << summary;
  EXPECT_NE(summary.find("\"events_journaled\":" + std::to_string(lost)), std::string::npos)
      << summary;
  EXPECT_NE(summary.find("\"errors\":0"), std::string::npos) << summary;

  // The mirror converges to the simulator's rows, deleted ones marked.
  std::map<std::string, std::string> want = ExpectedAccounts();
  ASSERT_EQ(want.size(), 50u);
  ASSERT_TRUE(testing::WaitFor([&] { return MirroredAccounts() == want; }))
      << ::testing::PrintToString(MirroredAccounts()) << "\nwant "
      << ::testing::PrintToString(want);
  // Every order was created at the ERP exactly once, the late ones through reconciliation (a
  // call resent after a timeout carries the same Idempotency-Key: a duplicate, not an order).
  ASSERT_TRUE(testing::WaitFor([&] { return erp_->Stat("created") == 20; })) << erp_->Stats();
  EXPECT_TRUE(testing::WaitFor([&] {
    return Mirror("SELECT count(*) FROM crm_salesorder WHERE deleted = 0") ==
           std::vector<std::string>{"20"};
  }));

  // A second run finds nothing new.
  const auto [rc2, again] = Reconcile();
  EXPECT_EQ(rc2, 0) << again;
  EXPECT_NE(again.find("\"failed_jobs_found\":0,"), std::string::npos) << again;
  EXPECT_NE(again.find("\"events_journaled\":0,"), std::string::npos) << again;

  // A webhook the router got though Dataverse saw it fail: a duplicate, not a second order.
  dataverse_->Control("ack_lost=1");
  EXPECT_NE(Changes({Change("create", "salesorder", Order(99), R"({"name":"acked"})")})
                .find("\"failed_jobs\":1"),
            std::string::npos);
  ASSERT_TRUE(testing::WaitFor([&] { return erp_->Stat("created") == 21; })) << erp_->Stats();
  const int64_t created = erp_->Stat("created");
  const auto [rc3, dup] = Reconcile();
  EXPECT_EQ(rc3, 0) << dup;
  EXPECT_NE(dup.find("\"failed_jobs_found\":1,"), std::string::npos) << dup;
  EXPECT_NE(dup.find("\"already_seen\":1,"), std::string::npos) << dup;
  EXPECT_NE(dup.find("\"events_journaled\":0,"), std::string::npos) << dup;
  EXPECT_EQ(erp_->Stat("created"), created) << "no second order";
  EXPECT_TRUE(testing::WaitFor([&] {
    return Mirror("SELECT count(*) FROM crm_salesorder WHERE deleted = 0") ==
           std::vector<std::string>{"21"};
  }));
  const std::string metrics = HttpClient(router_->admin_port).Get("/metrics").body;
  EXPECT_NE(metrics.find("dvrouter_reconcile_events_total{outcome=\"already_seen\",source=\"failed_"
                         "jobs\"} 1"),
            std::string::npos)
      << metrics;
}

TEST_F(Reconciliation, ThrottlingSlowsARunAndMalformedAnswersFailOnlyThatRun) {
  Kill(SIGKILL);
  std::vector<std::string> changes;
  for (int n = 0; n < 30; ++n)
    changes.push_back(Change("create", "account", Account(n), AccountColumns(n, 0)));
  ASSERT_NE(Changes(changes).find("\"failed_jobs\":30"), std::string::npos);
  Start();

  // Malformed answers: the run reports the error and journals nothing wrong.
  for (const char* kind : {"not_json", "truncated", "status_500", "missing_field", "bad_guid"}) {
    SCOPED_TRACE(kind);
    dataverse_->Control(std::string("malform=asyncoperations:") + kind + "&count=1");
    const auto [rc, summary] = Reconcile();
    EXPECT_EQ(rc, 1) << summary;
    EXPECT_EQ(summary.find("\"errors\":0"), std::string::npos) << summary;
  }
  // A row read that fails stops the step there.
  dataverse_->Control("malform=rows:not_json&count=1");
  const auto [rc_row, row_summary] = Reconcile();
  EXPECT_EQ(rc_row, 1) << row_summary;

  // A 429 storm: waited out, the run succeeds, and everything left is recovered.
  dataverse_->Control("throttle=5&retry_after=1");
  const auto [rc, summary] = Reconcile();
  ASSERT_EQ(rc, 0) << summary << testing::ReadFileOrDie(log_);
  EXPECT_EQ(summary.find("\"throttled\":0,"), std::string::npos) << summary;
  std::map<std::string, std::string> want = ExpectedAccounts();
  ASSERT_EQ(want.size(), 30u);
  ASSERT_TRUE(testing::WaitFor([&] { return MirroredAccounts() == want; }))
      << ::testing::PrintToString(MirroredAccounts());
  // Nothing was journaled twice or wrongly: one event per failed job in all runs together.
  const std::string metrics = HttpClient(router_->admin_port).Get("/metrics").body;
  EXPECT_EQ(testing::MetricSum(router_->admin_port,
                               "dvrouter_reconcile_events_total{outcome=\"journaled\""),
            30)
      << metrics;
}

}  // namespace
}  // namespace dvrouter
