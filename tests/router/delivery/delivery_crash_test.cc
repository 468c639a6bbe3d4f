// End to end over a real dvrouter process delivering to the lake: a kill -9 mid-load must leave
// every acknowledged event in the lake exactly once after the restart; and with the lake down,
// ingesting 200k events must not grow the process's memory past its configured windows.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "tests/support/http_client.h"
#include "tests/support/lake_rows.h"
#include "tests/support/router_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::HttpClient;
using testing::HttpReply;
using testing::RouterProcess;

// Event n: its own operation (a new event) on one of 500 records.
std::string Event(int n) {
  static const std::string base = testing::Fixture("update-msdyn_agentstatus-postop-async.json");
  char op[40], row[40];
  std::snprintf(op, sizeof(op), "%08x-1111-4000-8000-%012d", n, n);
  std::snprintf(row, sizeof(row), "3d1feef9-604d-ef11-bfe3-%012d", n % 500);
  return testing::ReplaceAll(testing::ReplaceAll(base, "1a14c3ec-9c50-ef11-bfe3-00224802dbb1", op),
                             "3d1feef9-604d-ef11-bfe3-6045bd03d9d8", row);
}

using testing::LakeRows;

double Metric(uint16_t admin_port, const std::string& series) {
  HttpClient admin(admin_port);
  const std::string text = admin.Get("/metrics").body;
  const size_t at = text.find("\n" + series + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size() + 2));
}

void WriteConfig(const testing::TempDir& tmp, const std::string& extra) {
  ::setenv("DVROUTER_DELIVERY_TEST_KEY", "delivery-key", 1);
  testing::WriteFileOrDie(tmp.path() + "/router.yaml",
                          "ingress:\n"
                          "  io_threads: 2\n"
                          "  auth:\n"
                          "    mode: webhook_key\n"
                          "    secret: ${DVROUTER_DELIVERY_TEST_KEY}\n"
                          "journal:\n"
                          "  partitions: 16\n"
                          "  segment_bytes: 4MiB\n" +
                              extra);
}

constexpr const char* kTarget = "/webhooks/dataverse?code=delivery-key";

TEST(DeliveryCrashTest, EveryAcknowledgedEventIsInTheLakeExactlyOnceAfterKill9) {
  testing::TempDir tmp;
  const std::string log = tmp.path() + "/router.log";
  const std::string lake = tmp.path() + "/data/lake";
  testing::WriteFileOrDie(log, "");
  // Cursors are persisted rarely and files roll often: at the kill, many events are final in
  // the lake but past the persisted cursor, so the restart delivers them again.
  WriteConfig(tmp,
              "delivery:\n"
              "  cursor_flush_interval: 5s\n"
              "adapters:\n"
              "  lake:\n"
              "    type: lake\n"
              "    roll_interval: 30ms\n"
              "routes:\n"
              "  - adapters: [lake]\n");
  std::mutex mu;
  std::map<std::string, int> acked;
  std::atomic<int> acks{0};
  {
    RouterProcess first(tmp, log);
    ASSERT_TRUE(first.WaitReady(1)) << testing::ReadFileOrDie(log);
    constexpr int kClients = 4, kEach = 500;
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c] {
        HttpClient client(first.port);
        for (int i = 0; i < kEach; ++i) {
          const int n = c * kEach + i;
          HttpReply r = client.Post(kTarget, Event(n));
          if (r.status != 200) return;  // the router died under us
          std::lock_guard<std::mutex> lock(mu);
          acked[testing::JsonStringField(r.body, "event_id")] = n;
          ++acks;
        }
      });
    }
    // Kill mid-load, once some lake files are final.
    const bool loaded = testing::WaitFor(
        [&] { return acks.load() >= 500 && !LakeRows(lake).empty(); }, std::chrono::seconds(60));
    first.child().Kill(SIGKILL);
    const int status = first.child().Wait();
    for (auto& t : clients) t.join();
    ASSERT_TRUE(loaded) << acks.load() << " acks\n" << testing::ReadFileOrDie(log);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  }
  ASSERT_LT(acked.size(), 2000u) << "the kill came too late to interrupt anything";
  const size_t before_restart = LakeRows(lake).size();
  ASSERT_GT(before_restart, 0u);

  RouterProcess second(tmp, log);
  ASSERT_TRUE(second.WaitReady(2)) << testing::ReadFileOrDie(log);
  const bool complete = testing::WaitFor(
      [&] {
        auto rows = LakeRows(lake);
        for (const auto& [id, n] : acked) {
          if (!rows.count(id)) return false;
        }
        return true;
      },
      std::chrono::seconds(60));
  const double skipped =
      Metric(second.admin_port, "dvrouter_lake_duplicates_skipped_total{adapter=\"lake\"}");
  second.child().Kill(SIGTERM);
  const int status = second.child().Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << testing::ReadFileOrDie(log);
  ASSERT_TRUE(complete) << "acknowledged events missing from the lake";
  const auto rows = LakeRows(lake);
  for (const auto& [id, n] : acked) {
    EXPECT_EQ(rows.at(id), 1) << "event " << n << " (" << id << ")";
  }
  for (const auto& [id, count] : rows) EXPECT_EQ(count, 1) << id;
  // The restart did deliver final events again, and the lake recognised them.
  EXPECT_GT(skipped, 0) << testing::ReadFileOrDie(log);
}

long RssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

TEST(DeliveryMemoryTest, AnAdapterDownKeepsMemoryBoundedWhile200kEventsArrive) {
  if (kSanitized) {
    GTEST_SKIP() << "sanitizer runtimes hold freed memory in quarantine: RSS says nothing here";
  }
  testing::TempDir tmp;
  const std::string log = tmp.path() + "/router.log";
  const std::string lake = tmp.path() + "/data/lake";
  testing::WriteFileOrDie(log, "");
  // The configured bound: 16 partitions x 64 window entries x 1 adapter, queues of 256 handles,
  // 1000 status entries, 10000 dedupe entries: a few MiB at most.
  WriteConfig(tmp,
              "  disk_budget_bytes: 8GiB\n"
              "dedupe:\n"
              "  max_entries: 10000\n"
              "delivery:\n"
              "  queue_capacity: 256\n"
              "  window_events: 64\n"
              "  status_entries: 1000\n"
              "adapters:\n"
              "  lake:\n"
              "    type: lake\n"
              "    retry:\n"
              "      initial_backoff: 10ms\n"
              "      max_backoff: 100ms\n"
              "    breaker:\n"
              "      failures: 1000000\n"
              "routes:\n"
              "  - adapters: [lake]\n");
  // The router's own bounds, not the allocator's: two arenas keep the allocator's share small
  // and steady (MALLOC_ARENA_MAX for glibc's malloc, narenas for jemalloc, which a release
  // build links). The test runs alone (RUN_SERIAL, tests/slow_labels.cmake).
  testing::ScopedEnv arenas("MALLOC_ARENA_MAX", "2");
  testing::ScopedEnv jemalloc_arenas("MALLOC_CONF", "narenas:2");
  RouterProcess router(tmp, log);
  ASSERT_TRUE(router.WaitReady(1)) << testing::ReadFileOrDie(log);
  // The lake goes down: its directory is replaced by a file, so every write fails (retryable).
  ASSERT_EQ(::rename(lake.c_str(), (lake + ".gone").c_str()), 0);
  testing::WriteFileOrDie(lake, "not a directory");

  constexpr int kClients = 4;
  std::atomic<int> next{0}, failed{0};
  auto post = [&](int until) {
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, until] {
        HttpClient client(router.port);
        for (int n; (n = next.fetch_add(1)) < until;) {
          if (client.Post(kTarget, Event(n)).status != 200) ++failed;
        }
      });
    }
    for (auto& t : clients) t.join();
    next = until;
  };
  // The first 100k reach the buffers' and the allocator's high-water marks (reached sooner and
  // higher when the cores are busy with other work: 15-30 MiB by 40-80k events, then flat); the
  // next 100k must add no memory per waiting event.
  post(20'000);
  const long rss_20k = RssKiB(router.child().pid());
  post(100'000);
  const long rss_100k = RssKiB(router.child().pid());
  post(200'000);
  const long rss_200k = RssKiB(router.child().pid());
  EXPECT_EQ(failed.load(), 0);
  const double retries = Metric(
      router.admin_port, "dvrouter_deliveries_total{adapter=\"lake\",outcome=\"retryable\"}");
  const double lag = Metric(router.admin_port, "dvrouter_delivery_lag_events{adapter=\"lake\"}");
  std::printf(
      "RSS after 20k events: %ld KiB, after 100k: %ld KiB, after 200k: %ld KiB; %g failed "
      "attempts, lag %g\n",
      rss_20k, rss_100k, rss_200k, retries, lag);
  EXPECT_GT(retries, 0) << "the lake was supposed to be down";
  EXPECT_GE(lag, 180'000) << "the events were supposed to be waiting";
  // 100k more events waiting: without the window they would hold ~0.9 GB of bodies, or ~14 MB
  // of lane entries. With it, growth stays within allocator noise (0-6 MiB measured).
  EXPECT_LT(rss_200k - rss_100k, 10 * 1024) << "KiB";
  router.child().Kill(SIGTERM);
  const int status = router.child().Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << testing::ReadFileOrDie(log);
}

}  // namespace
}  // namespace dvrouter

namespace dvrouter {
namespace {

// Runs `dvrouter ARGS...` and returns (exit status, what it printed).
std::pair<int, std::string> Cli(const testing::TempDir& tmp, std::vector<std::string> args) {
  static int n = 0;
  const std::string out = tmp.path() + "/cli-" + std::to_string(++n) + ".out";
  testing::ChildProcess cli(DVROUTER_BINARY, args, out);
  const int status = cli.Wait();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, testing::ReadFileOrDie(out)};
}

TEST(DeliveryOperations, StatusDlqAndReplayCommandsAgainstARunningRouter) {
  testing::TempDir tmp;
  const std::string log = tmp.path() + "/router.log";
  testing::WriteFileOrDie(log, "");
  WriteConfig(tmp,
              "adapters:\n"
              "  lake:\n"
              "    type: lake\n"
              "    roll_interval: 20ms\n"
              "routes:\n"
              "  - adapters: [lake]\n");
  RouterProcess router(tmp, log);
  ASSERT_TRUE(router.WaitReady(1)) << testing::ReadFileOrDie(log);
  const std::string admin = "127.0.0.1:" + std::to_string(router.admin_port);
  HttpClient client(router.port);
  // A notification the lake cannot convert (Target is not an entity): a permanent error.
  const std::string poison =
      R"({"MessageName":"Update","PrimaryEntityName":"account",)"
      R"("PrimaryEntityId":"11111111-2222-3333-4444-555555555555","Stage":40,"Mode":1,)"
      R"("OwningExtension":{"Id":"aaaaaaaa-2222-3333-4444-555555555555"},)"
      R"("OperationId":"bbbbbbbb-2222-3333-4444-555555555555",)"
      R"("InputParameters":[{"key":"Target","value":[1,2]}]})";
  HttpReply r = client.Post(kTarget, poison);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string bad_id = testing::JsonStringField(r.body, "event_id");
  r = client.Post(kTarget, Event(1));
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string good_id = testing::JsonStringField(r.body, "event_id");

  HttpClient admin_http(router.admin_port);
  ASSERT_TRUE(testing::WaitFor([&] {
    return admin_http.Get("/dlq").body.find(bad_id) != std::string::npos &&
           admin_http.Get("/events/" + good_id).body.find("completed") != std::string::npos;
  })) << admin_http.Get("/dlq").body;

  auto [rc, out] = Cli(tmp, {"dlq", "list", "--admin", admin});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("\"event_id\":\"" + bad_id + "\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"reason\":\"permanent\""), std::string::npos) << out;
  EXPECT_NE(out.find("Target"), std::string::npos) << "the error names the problem: " << out;
  std::tie(rc, out) = Cli(tmp, {"status", bad_id, "--admin", admin});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("\"lake\":{\"state\":\"failed\""), std::string::npos) << out;
  std::tie(rc, out) = Cli(tmp, {"status", good_id, "--admin", admin});
  EXPECT_NE(out.find("\"lake\":{\"state\":\"completed\""), std::string::npos) << out;

  // Replaying the entry sends it to the lake again: it fails again, into a new entry, and the
  // old one is marked replayed.
  std::tie(rc, out) = Cli(tmp, {"dlq", "replay", "--id", "1", "--admin", admin});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("{\"replayed\":1}"), std::string::npos) << out;
  ASSERT_TRUE(testing::WaitFor([&] {
    return admin_http.Get("/dlq?id=2").body.find(bad_id) != std::string::npos;
  })) << admin_http.Get("/dlq?all=1").body;
  // The new entry is written before the old one is marked replayed (the same pass, later).
  ASSERT_TRUE(testing::WaitFor([&] {
    return admin_http.Get("/dlq?all=1&id=1").body.find("\"replayed\":true") != std::string::npos;
  })) << admin_http.Get("/dlq?all=1").body;
  std::tie(rc, out) = Cli(tmp, {"dlq", "list", "--all", "--id", "1", "--admin", admin});
  EXPECT_NE(out.find("\"replayed\":true"), std::string::npos) << out;

  // A range replay to the lake writes the good event's row a second time.
  std::tie(rc, out) =
      Cli(tmp, {"replay", "--adapter", "lake", "--from", "2", "--to", "2", "--admin", admin});
  EXPECT_EQ(rc, 0) << out;
  ASSERT_TRUE(testing::WaitFor([&] { return LakeRows(tmp.path() + "/data/lake")[good_id] == 2; }));

  // Refusals: exit status 1 and the reason.
  std::tie(rc, out) =
      Cli(tmp, {"replay", "--adapter", "nope", "--from", "1", "--to", "2", "--admin", admin});
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("no adapter named 'nope'"), std::string::npos) << out;
  std::tie(rc, out) = Cli(tmp, {"status", "not-an-id", "--admin", admin});
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("32 hexadecimal digits"), std::string::npos) << out;
  std::tie(rc, out) = Cli(tmp, {"status", std::string(32, '0'), "--admin", admin});
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("not_found"), std::string::npos) << out;
  std::tie(rc, out) = Cli(tmp, {"dlq", "list", "--admin", "127.0.0.1:1"});
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("cannot reach"), std::string::npos) << out;

  router.child().Kill(SIGTERM);
  const int status = router.child().Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << testing::ReadFileOrDie(log);
}

}  // namespace
}  // namespace dvrouter
