// The reconciliation process tests' fixture (docs/reconciliation.md): an ERP simulator, a
// Dataverse simulator with the router's steps registered, and a real dvrouter mirroring account,
// contact and salesorder rows to SQLite (salesorder Creates also to the ERP), with reconciliation
// run on demand through `dvrouter reconcile`. Suites add simulator flags and change tracking.
#pragma once

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

namespace dvrouter::testing {

inline std::string Guid(int kind, int n) {
  char id[40];
  std::snprintf(id, sizeof(id), "%08x-0000-4000-8000-%012d", kind, n);
  return id;
}
inline std::string Account(int n) { return Guid(0xacc, n); }
inline std::string Order(int n) { return Guid(0x5a1e, n); }

inline std::string Change(const std::string& op, const std::string& table, const std::string& id,
                          const std::string& columns = "{}") {
  return R"({"op":")" + op + R"(","table":")" + table + R"(","id":")" + id + R"(","columns":)" +
         columns + "}";
}
inline std::string AccountColumns(int n, int version) {
  return R"({"name":"account )" + std::to_string(n) + " v" + std::to_string(version) +
         R"(","revenue":)" + std::to_string(1000 * n + version) + "}";
}

class ReconcileFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("DVROUTER_RECON_TEST_KEY", "recon-webhook-key", 1);
    ::setenv("DVROUTER_RECON_TEST_SECRET", "recon-s3cret", 1);
    erp_ =
        std::make_unique<SimProcess>(DVROUTER_ERP_SIM, "erp-sim", tmp_, std::vector<std::string>{});
    dataverse_ =
        std::make_unique<SimProcess>(DVROUTER_DATAVERSE_SIM, "dataverse-sim", tmp_, SimArgs());
    ASSERT_TRUE(erp_->ready() && dataverse_->ready()) << erp_->log() << dataverse_->log();
    port_ = FreeLoopbackPort();
    const std::string dv = dataverse_->url();
    WriteFileOrDie(tmp_.path() + "/router.yaml",
                   "ingress:\n"
                   "  auth: {mode: webhook_key, secret: \"${DVROUTER_RECON_TEST_KEY}\"}\n"
                   "journal:\n"
                   "  partitions: 8\n"
                   "loop_guard: {user_ids: [9f3c1d2e-0000-4000-8000-00000000a001]}\n"
                   "adapters:\n" +
                       ExtraAdapters() +
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
                       "  - {tables: [account, contact], adapters: [" +
                       Mirrors() +
                       "]}\n"
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
                       "  max_requests_per_second: 100\n" +
                       FailedJobsSection() + ChangeTrackingSection());
    const auto [rc, out] = Cli({"register", "-c", tmp_.path() + "/router.yaml"});
    ASSERT_EQ(rc, 0) << out;
    WriteFileOrDie(log_, "");
    Start();
  }
  void TearDown() override { Kill(SIGTERM); }

  // The simulator's flags and the reconcile section's change tracking: what a suite adds.
  virtual std::vector<std::string> SimArgs() const {
    return {"--client",   "dvrouter:recon-s3cret", "--tables", "account", "--tables",
            "salesorder", "--webhook-timeout-ms",  "5000"};
  }
  virtual std::string ChangeTrackingSection() const { return ""; }
  virtual std::string FailedJobsSection() const {
    return "  failed_jobs: {lookback: 1h, page_size: 25}\n";
  }
  // More adapters (YAML indented under `adapters:`) and the account mirrors' names.
  virtual std::string ExtraAdapters() const { return ""; }
  virtual std::string Mirrors() const { return "mirror"; }

  void Start() {
    router_ = std::make_unique<RouterProcess>(tmp_, log_, "127.0.0.1:" + std::to_string(port_));
    ASSERT_TRUE(router_->WaitReady(++runs_)) << ReadFileOrDie(log_);
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
    ChildProcess cli(DVROUTER_BINARY, std::move(args), out);
    const int status = cli.Wait();
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ReadFileOrDie(out)};
  }
  // `dvrouter reconcile` against the running router: exit status and the run's summary.
  std::pair<int, std::string> Reconcile(std::vector<std::string> options = {}) {
    std::vector<std::string> args = {"reconcile", "--admin",
                                     "127.0.0.1:" + std::to_string(router_->admin_port)};
    args.insert(args.end(), options.begin(), options.end());
    return Cli(std::move(args));
  }
  // Posts changes (a JSON array's items) to the simulator; its answer.
  std::string Changes(const std::vector<std::string>& changes) {
    std::string body = "[";
    for (size_t i = 0; i < changes.size(); ++i) body += (i ? "," : "") + changes[i];
    body += "]";
    HttpReply r = HttpClient(dataverse_->port()).Post("/_changes", body);
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
  // What the mirror must hold for `table` (entity set `set`): id|name|revenue|deleted per row,
  // from the simulator's rows and tombstones.
  std::map<std::string, std::string> Expected(const std::string& table = "account",
                                              const std::string& set = "accounts") {
    std::map<std::string, std::string> want;
    const std::string rows = dataverse_->Get("/_rows?set=" + set);
    const std::string key = "\"" + table + "id\":\"";
    for (size_t at = rows.find(key); at != std::string::npos; at = rows.find(key, at + 1)) {
      const size_t open = rows.rfind('{', at), close = rows.find('}', at);
      const std::string row = rows.substr(open, close - open + 1);
      const std::string id = JsonStringField(row, table + "id");
      want[id] = JsonStringField(row, "name") + "|" +
                 std::to_string(static_cast<int64_t>(JsonNumber(row, "revenue"))) + "|0";
    }
    const std::string deleted = dataverse_->Get("/_deleted?set=" + set);
    for (size_t at = deleted.find("\"id\":\""); at != std::string::npos;
         at = deleted.find("\"id\":\"", at + 1)) {
      want[deleted.substr(at + 6, 36)] = "deleted";
    }
    return want;
  }
  std::map<std::string, std::string> Mirrored(const std::string& table = "account") {
    std::map<std::string, std::string> got;
    for (const std::string& row :
         Mirror("SELECT id, json_extract(attributes, '$.name'), "
                "CAST(json_extract(attributes, '$.revenue') AS INTEGER), deleted FROM crm_" +
                table)) {
      const std::string id = row.substr(0, row.find('|'));
      got[id] = row.ends_with("|1") ? "deleted" : row.substr(id.size() + 1);
    }
    return got;
  }

  TempDir tmp_;
  std::string log_ = tmp_.path() + "/router.log";
  std::unique_ptr<SimProcess> erp_, dataverse_;
  std::unique_ptr<RouterProcess> router_;
  uint16_t port_ = 0;
  size_t runs_ = 0;
  int cli_runs_ = 0;
};

}  // namespace dvrouter::testing
