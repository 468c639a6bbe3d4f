// The postmaster killed (SIGKILL, with its backends) while a dvrouter child process delivers to
// it, and restarted: the router keeps acknowledging webhooks during the outage, and afterwards
// every acknowledged event is in PostgreSQL, each row with its own event's value.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/http_client.h"
#include "tests/support/postgres_server.h"
#include "tests/support/router_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::HttpClient;
using testing::HttpReply;
using testing::RouterProcess;

// Event n: an update of record `row` (the row id ends in it) carrying capacity n.
std::string Event(int n, int row_number) {
  static const std::string base = testing::Fixture("update-msdyn_agentstatus-postop-async.json");
  char op[40], row[40];
  std::snprintf(op, sizeof(op), "%08x-2222-4000-8000-%012d", n, n);
  std::snprintf(row, sizeof(row), "3d1feef9-604d-ef11-bfe3-%012d", row_number);
  std::string body =
      testing::ReplaceAll(testing::ReplaceAll(base, "1a14c3ec-9c50-ef11-bfe3-00224802dbb1", op),
                          "3d1feef9-604d-ef11-bfe3-6045bd03d9d8", row);
  const size_t key = body.find("\"msdyn_availableunitscapacity\"");
  const size_t value = body.find("\"value\":100", key);
  return body.replace(value, 11, "\"value\":" + std::to_string(n));
}

// Kills the postmaster while a dvrouter child delivers to it, then restarts it. With
// `records` == 0 every event is its own record (two clients); otherwise the events go round
// robin over that many records from one client (journal order = n order), so PostgreSQL's
// batches carry several events of a record (RecordOrdering::kOneBatchInFlight) across the outage.
void KillPostmasterDuringDelivery(int records) {
  std::string why;
  if (!testing::PostgresServer::Available(&why)) GTEST_SKIP() << why;
  testing::PostgresServer pg;
  ASSERT_TRUE(pg.ok()) << pg.error();

  testing::TempDir tmp;
  const std::string log = tmp.path() + "/router.log";
  testing::WriteFileOrDie(log, "");
  ::setenv("DVROUTER_PG_TEST_KEY", "pg-key", 1);
  testing::WriteFileOrDie(tmp.path() + "/router.yaml",
                          "ingress:\n"
                          "  auth:\n"
                          "    mode: webhook_key\n"
                          "    secret: ${DVROUTER_PG_TEST_KEY}\n"
                          "journal:\n"
                          "  partitions: 16\n"
                          "adapters:\n" +
                              pg.AdapterYaml("pg",
                                             "    pool_size: 2\n"
                                             "    batch:\n"
                                             "      max_events: 50\n"
                                             "      linger: 5ms\n"
                                             "    retry:\n"
                                             "      initial_backoff: 20ms\n"
                                             "      max_backoff: 300ms\n"
                                             "    breaker:\n"
                                             "      failures: 5\n"
                                             "      open_for: 200ms\n") +
                              "routes:\n"
                              "  - adapters: [pg]\n");
  RouterProcess router(tmp, log);
  ASSERT_TRUE(router.WaitReady(1)) << testing::ReadFileOrDie(log);

  const int kClients = records == 0 ? 2 : 1, kEach = 1200 / kClients, kTotal = kClients * kEach;
  std::atomic<int> acks{0}, refused{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      HttpClient client(router.port);
      for (int i = 0; i < kEach; ++i) {
        const int n = c * kEach + i;
        HttpReply r = client.Post("/webhooks/dataverse?code=pg-key",
                                  Event(n, records == 0 ? n : n % records));
        if (r.status == 200) {
          ++acks;
        } else {
          ++refused;
        }
      }
    });
  }
  auto rows = [&] {
    auto r = pg.Query("SELECT count(*) FROM crm_msdyn_agentstatus");
    return r.ok && !r.rows.empty() && r.rows[0][0] ? std::stoi(*r.rows[0][0]) : -1;
  };
  // Kill once rows are arriving; keep the database down while the router goes on acknowledging.
  const bool arriving = testing::WaitFor([&] { return rows() > 0; }, std::chrono::seconds(60));
  const int acked_at_kill = acks.load();
  pg.Kill();
  const bool acked_while_down =
      testing::WaitFor([&] { return acks.load() >= std::min(kTotal, acked_at_kill + 200); },
                       std::chrono::seconds(60));
  const bool restarted = pg.Start();
  for (auto& t : clients) t.join();
  ASSERT_TRUE(arriving) << testing::ReadFileOrDie(log);
  ASSERT_LE(acked_at_kill + 200, kTotal) << "the load ended before the kill";
  EXPECT_TRUE(acked_while_down) << "the router stopped acknowledging while PostgreSQL was down";
  ASSERT_TRUE(restarted) << pg.error();
  EXPECT_EQ(refused.load(), 0);
  EXPECT_EQ(acks.load(), kTotal);

  const int expected_rows = records == 0 ? kTotal : records;
  // Each row holds its newest event's value: its own (row id's last 12 digits = capacity), or,
  // with shared records, the last of its round robin (kTotal - records + row number).
  const int offset = records == 0 ? 0 : kTotal - records;
  auto mismatched_rows = [&] {
    auto r = pg.Query(
        "SELECT count(*) FROM crm_msdyn_agentstatus WHERE right(id::text, 12)::bigint + " +
        std::to_string(offset) + " <> (attributes->>'msdyn_availableunitscapacity')::bigint");
    return r.ok && !r.rows.empty() && r.rows[0][0] ? std::stoi(*r.rows[0][0]) : -1;
  };
  EXPECT_TRUE(testing::WaitFor([&] { return rows() == expected_rows && mismatched_rows() == 0; },
                               std::chrono::seconds(120)))
      << rows() << " rows of " << expected_rows << ", " << mismatched_rows()
      << " not at their newest event\n"
      << testing::ReadFileOrDie(log);
  // The outage was seen and retried, not missed.
  EXPECT_GT(testing::MetricSum(router.admin_port, "dvrouter_sql_errors_total{adapter=\"pg\","), 0);
  EXPECT_GT(
      testing::MetricSum(router.admin_port, "dvrouter_delivery_retries_total{adapter=\"pg\"}"), 0);

  router.child().Kill(SIGTERM);
  EXPECT_EQ(router.child().Wait(), 0);
}

TEST(PostgresCrashTest, PostmasterKilledDuringDeliveryAndRestartedLosesNothing) {
  KillPostmasterDuringDelivery(/*records=*/0);
}

TEST(PostgresCrashTest, PostmasterKilledWhileBatchesCarrySeveralEventsOfARecord) {
  KillPostmasterDuringDelivery(/*records=*/20);
}

}  // namespace
}  // namespace dvrouter
