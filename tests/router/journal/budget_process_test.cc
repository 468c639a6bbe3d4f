// The journal's disk budget end to end, over a real dvrouter process: delivered history yields
// so ingest never stops (also across a kill -9 during deletions), and a stalled sink (a real
// PostgreSQL stopped) fills the budget honestly: 503 with Retry-After, the holder named, and
// ingest resuming by itself once the sink is back, with nothing acknowledged lost.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/support/http_client.h"
#include "tests/support/journal_events.h"
#include "tests/support/lake_rows.h"
#include "tests/support/postgres_server.h"
#include "tests/support/router_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::HttpClient;
using testing::HttpReply;
using testing::MetricSum;
using testing::RouterProcess;
using testing::SegmentBytesOnDisk;

// Room for what the lake has not finished at full speed (its files roll every 50 ms).
constexpr uint64_t kSegment = 2 << 20;
constexpr uint64_t kBudget = 24 << 20;
constexpr const char* kTarget = "/webhooks/dataverse?code=budget-key";

// Event n: a 7.8 KB contact update of its own operation, on its own row.
std::string Event(int n) {
  static const std::string base = testing::Fixture("update-contact-postop-async.json");
  char op[40], row[40];
  std::snprintf(op, sizeof(op), "%08x-3333-4000-8000-%012d", n, n);
  std::snprintf(row, sizeof(row), "6d81597f-0f9f-e711-8122-%012d", n);
  return testing::ReplaceAll(testing::ReplaceAll(base, "4af10637-4ea2-e711-8122-000d3aa2331c", op),
                             "6d81597f-0f9f-e711-8122-000d3aa2331c", row);
}

// A small budget, the default 24 h retention: only the budget can make room. Uncompressed, so
// that a few thousand events fill it several times over (compression only changes how many
// events a byte of budget holds; it has its own tests).
void WriteConfig(const testing::TempDir& tmp, const std::string& adapters) {
  ::setenv("DVROUTER_BUDGET_TEST_KEY", "budget-key", 1);
  testing::WriteFileOrDie(tmp.path() + "/router.yaml",
                          "ingress:\n"
                          "  io_threads: 2\n"
                          "  auth:\n"
                          "    mode: webhook_key\n"
                          "    secret: ${DVROUTER_BUDGET_TEST_KEY}\n"
                          "journal:\n"
                          "  partitions: 16\n"
                          "  segment_bytes: " +
                              std::to_string(kSegment) +
                              "\n"
                              "  disk_budget_bytes: " +
                              std::to_string(kBudget) +
                              "\n"
                              "  compression: none\n" +
                              adapters);
}

// Posts events [first, first + count) over `connections` connections; records each answer.
struct Load {
  std::mutex mu;
  std::map<int, std::string> acked;  // event number -> event id
  std::map<int, int> failed;         // event number -> status (0: no answer)
  std::atomic<int> answered{0};

  void Run(uint16_t port, int first, int count, int connections) {
    std::vector<std::thread> threads;
    for (int c = 0; c < connections; ++c) {
      threads.emplace_back([&, c] {
        HttpClient client(port);
        for (int n = first + c; n < first + count; n += connections) {
          HttpReply r = client.Post(kTarget, Event(n));
          std::lock_guard<std::mutex> lock(mu);
          if (r.status == 200) {
            acked[n] = testing::JsonStringField(r.body, "event_id");
          } else {
            failed[n] = r.status;
          }
          ++answered;
        }
      });
    }
    for (auto& t : threads) t.join();
  }

  // The same in waves of `wave` events, each waited for until the lake has it all: however slow
  // the machine (a sanitizer build), the budget then never fills with undelivered events, and a
  // refusal can only mean that delivered history did not yield.
  void RunInWaves(uint16_t port, uint16_t admin_port, int first, int count, int connections,
                  int wave) {
    for (int at = first; at < first + count; at += wave) {
      Run(port, at, std::min(wave, first + count - at), connections);
      EXPECT_TRUE(testing::WaitFor(
          [&] {
            return MetricSum(admin_port, "dvrouter_delivery_lag_events{adapter=\"lake\"}") == 0;
          },
          std::chrono::seconds(60)));
    }
  }
};

// A third of the budget: what one wave of RunInWaves may leave undelivered.
constexpr int kWave = static_cast<int>(kBudget / 3 / 7800);

// Samples the journal's size on disk and as reported until stopped; the largest seen.
struct BudgetSampler {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> max_disk{0};
  std::atomic<double> max_reported{0};
  std::atomic<int> samples{0};
  std::thread thread;

  BudgetSampler(const std::string& journal_dir, uint16_t admin_port) {
    thread = std::thread([this, journal_dir, admin_port] {
      while (!stop.load()) {
        max_disk = std::max<uint64_t>(max_disk.load(), SegmentBytesOnDisk(journal_dir));
        max_reported =
            std::max(max_reported.load(), MetricSum(admin_port, "dvrouter_journal_bytes "));
        ++samples;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a sampling period
      }
    });
  }
  ~BudgetSampler() { Stop(); }
  void Stop() {
    stop = true;
    if (thread.joinable()) thread.join();
  }
};

bool EveryAckedEventInTheLakeOnce(const std::string& lake, const std::map<int, std::string>& acked,
                                  std::string* why) {
  const auto rows = testing::LakeRows(lake);
  for (const auto& [n, id] : acked) {
    auto it = rows.find(id);
    if (it == rows.end() || it->second != 1) {
      *why = "event " + std::to_string(n) + " has " +
             std::to_string(it == rows.end() ? 0 : it->second) + " lake rows";
      return false;
    }
  }
  return true;
}

const std::string kLake =
    "adapters:\n"
    "  lake:\n"
    "    type: lake\n"
    "    roll_interval: 50ms\n"
    "routes:\n"
    "  - adapters: [lake]\n";

TEST(JournalBudgetProcess, FiveTimesTheBudgetIsAllAcceptedAndEveryEventReachesTheLakeOnce) {
  testing::TempDir tmp;
  const std::string log = tmp.path() + "/router.log";
  testing::WriteFileOrDie(log, "");
  WriteConfig(tmp, kLake);
  RouterProcess router(tmp, log);
  ASSERT_TRUE(router.WaitReady(1)) << testing::ReadFileOrDie(log);

  const int kEvents = static_cast<int>(5 * kBudget / 7800);
  Load load;
  {
    BudgetSampler sampler(tmp.path() + "/data/journal", router.admin_port);
    load.RunInWaves(router.port, router.admin_port, 0, kEvents, 16, kWave);
    sampler.Stop();
    EXPECT_GT(sampler.samples.load(), 10);
    // The directory listing is not atomic: it may see a segment being deleted beside the newest
    // one's growth, one segment more than was ever there.
    EXPECT_LE(sampler.max_disk.load(), kBudget + kSegment);
    EXPECT_LE(sampler.max_reported.load(), static_cast<double>(kBudget));
  }
  EXPECT_TRUE(load.failed.empty())
      << load.failed.size() << " refused, e.g. event " << load.failed.begin()->first << ": "
      << load.failed.begin()->second;
  EXPECT_EQ(load.acked.size(), static_cast<size_t>(kEvents));
  std::string why;
  EXPECT_TRUE(testing::WaitFor(
      [&] { return EveryAckedEventInTheLakeOnce(tmp.path() + "/data/lake", load.acked, &why); },
      std::chrono::seconds(60)))
      << why;
  // History was deleted to make room, and what is kept is reported.
  EXPECT_GT(MetricSum(router.admin_port, "dvrouter_journal_reclaimed_bytes_total"), kBudget);
  EXPECT_EQ(MetricSum(router.admin_port, "dvrouter_journal_budget_bytes"),
            static_cast<double>(kBudget));
  EXPECT_EQ(MetricSum(router.admin_port, "dvrouter_journal_budget_refusals_total"), 0);
  EXPECT_EQ(MetricSum(router.admin_port, "dvrouter_requests_total{outcome=\"overloaded\"}"), 0);
  router.child().Kill(SIGTERM);
  EXPECT_EQ(router.child().Wait(), 0);
}

TEST(JournalBudgetProcess, Kill9WhileDeletingUnderPressureLosesNoAcknowledgedEvent) {
  testing::TempDir tmp;
  const std::string log = tmp.path() + "/router.log";
  testing::WriteFileOrDie(log, "");
  WriteConfig(tmp, kLake);
  const int kEvents = static_cast<int>(4 * kBudget / 7800);
  Load load;
  {
    RouterProcess first(tmp, log);
    ASSERT_TRUE(first.WaitReady(1)) << testing::ReadFileOrDie(log);
    std::thread posting([&] { load.Run(first.port, 0, kEvents, 8); });
    // Kill once deletions for room are under way, with clients still posting.
    const bool deleting = testing::WaitFor(
        [&] {
          return MetricSum(first.admin_port, "dvrouter_journal_reclaimed_bytes_total") >
                 2 * kSegment;
        },
        std::chrono::seconds(120));
    first.child().Kill(SIGKILL);
    const int status = first.child().Wait();
    posting.join();
    ASSERT_TRUE(deleting) << load.answered.load() << " answered\n" << testing::ReadFileOrDie(log);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  }
  ASSERT_LT(load.acked.size(), static_cast<size_t>(kEvents)) << "the kill came too late";

  RouterProcess second(tmp, log);
  ASSERT_TRUE(second.WaitReady(2)) << testing::ReadFileOrDie(log);
  // Dataverse would send the unanswered ones again: so do we, and then more than the budget.
  std::vector<int> again;
  for (const auto& [n, status] : load.failed) again.push_back(n);
  Load retry;
  retry.RunInWaves(second.port, second.admin_port, kEvents, kEvents / 2, 8, kWave);
  for (int n : again) {
    HttpClient client(second.port);
    HttpReply r = client.Post(kTarget, Event(n));
    ASSERT_EQ(r.status, 200) << r.body;
    retry.acked[n] = testing::JsonStringField(r.body, "event_id");
  }
  EXPECT_TRUE(retry.failed.empty()) << retry.failed.size() << " refused after the restart";
  std::map<int, std::string> all = load.acked;
  all.insert(retry.acked.begin(), retry.acked.end());
  std::string why;
  EXPECT_TRUE(testing::WaitFor(
      [&] { return EveryAckedEventInTheLakeOnce(tmp.path() + "/data/lake", all, &why); },
      std::chrono::seconds(60)))
      << why << "\n"
      << testing::ReadFileOrDie(log);
  EXPECT_LE(SegmentBytesOnDisk(tmp.path() + "/data/journal"), kBudget);
  second.child().Kill(SIGTERM);
  EXPECT_EQ(second.child().Wait(), 0);
}

TEST(JournalBudgetProcess, AStalledSinkFillsTheBudgetHonestlyAndIngestResumesByItself) {
  std::string why;
  if (!testing::PostgresServer::Available(&why)) GTEST_SKIP() << why;
  testing::PostgresServer pg;
  ASSERT_TRUE(pg.ok()) << pg.error();
  testing::TempDir tmp;
  const std::string log = tmp.path() + "/router.log";
  testing::WriteFileOrDie(log, "");
  WriteConfig(tmp, "adapters:\n" +
                       pg.AdapterYaml("pg",
                                      "    retry:\n"
                                      "      initial_backoff: 20ms\n"
                                      "      max_backoff: 200ms\n"
                                      "    breaker:\n"
                                      "      failures: 5\n"
                                      "      open_for: 100ms\n") +
                       "routes:\n"
                       "  - adapters: [pg]\n");
  RouterProcess router(tmp, log);
  ASSERT_TRUE(router.WaitReady(1)) << testing::ReadFileOrDie(log);
  auto rows = [&] {
    auto r = pg.Query("SELECT count(*) FROM crm_contact");
    return r.ok && !r.rows.empty() && r.rows[0][0] ? std::stoi(*r.rows[0][0]) : -1;
  };
  // The sink works, then stops: the budget fills with what it has not written.
  Load load;
  load.Run(router.port, 0, 50, 2);
  ASSERT_EQ(load.acked.size(), 50u);
  ASSERT_TRUE(testing::WaitFor([&] { return rows() == 50; }, std::chrono::seconds(60)));
  pg.Stop();
  const int kOffered = static_cast<int>(2 * kBudget / 7800);
  load.Run(router.port, 50, kOffered, 4);
  ASSERT_FALSE(load.failed.empty()) << "the budget never filled";
  ASSERT_GT(load.acked.size(), static_cast<size_t>(kBudget / 2 / 7800));
  for (const auto& [n, status] : load.failed) ASSERT_EQ(status, 503) << "event " << n;
  {
    HttpClient client(router.port);
    HttpReply r = client.Post(kTarget, Event(load.failed.begin()->first));
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.headers["retry-after"], "5");
    EXPECT_NE(r.body.find("not finished"), std::string::npos) << r.body;
  }
  // Metrics and the log name the holder.
  const double held = MetricSum(router.admin_port, "dvrouter_journal_bytes_held{adapter=\"pg\"}");
  EXPECT_GT(held, 0.8 * kBudget);
  EXPECT_GT(MetricSum(router.admin_port, "dvrouter_journal_budget_refusals_total"), 0);
  EXPECT_TRUE(testing::WaitFor(
      [&] { return testing::ReadFileOrDie(log).find("pg holds ") != std::string::npos; },
      std::chrono::seconds(10)))
      << testing::ReadFileOrDie(log);
  EXPECT_LE(SegmentBytesOnDisk(tmp.path() + "/data/journal"), kBudget);

  // The sink returns: the backlog drains and the refused events are taken again, unprompted.
  ASSERT_TRUE(pg.Start()) << pg.error();
  std::vector<int> refused;
  for (const auto& [n, status] : load.failed) refused.push_back(n);
  HttpClient client(router.port);
  for (int n : refused) {
    HttpReply r;
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          r = client.Post(kTarget, Event(n));
          return r.status == 200;
        },
        std::chrono::seconds(60)))
        << "event " << n << ": " << r.status << " " << r.body;
    load.acked[n] = testing::JsonStringField(r.body, "event_id");
  }
  const int total = 50 + kOffered;
  EXPECT_EQ(load.acked.size(), static_cast<size_t>(total));
  EXPECT_TRUE(testing::WaitFor([&] { return rows() == total; }, std::chrono::seconds(120)))
      << rows() << " rows of " << total << "\n"
      << testing::ReadFileOrDie(log);
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        return MetricSum(router.admin_port, "dvrouter_journal_bytes_held{adapter=\"pg\"}") == 0;
      },
      std::chrono::seconds(10)));
  router.child().Kill(SIGTERM);
  EXPECT_EQ(router.child().Wait(), 0);
}

}  // namespace
}  // namespace dvrouter
