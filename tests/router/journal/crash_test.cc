// Crash test: a real dvrouter process acknowledges posts, is SIGKILLed mid-load, and restarted on
// the same data directory. Every acknowledged event must be in the journal exactly once, and
// sequences never go back. The kill comes after the journal made its first compression
// dictionary (after 2000 events), so bodies compressed with it must read back too.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "router/journal/file_journal.h"
#include "tests/support/http_client.h"
#include "tests/support/journal_events.h"
#include "tests/support/router_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::HttpClient;
using testing::HttpReply;

uint64_t SeqOf(const std::string& reply) {
  const size_t at = reply.find("\"seq\":");
  return at == std::string::npos ? 0 : std::strtoull(reply.c_str() + at + 6, nullptr, 10);
}

std::string Event(int n) {
  static const std::string base = testing::Fixture("update-msdyn_agentstatus-postop-async.json");
  char op[40];
  std::snprintf(op, sizeof(op), "%08x-1111-4000-8000-%012d", n, n);
  return testing::ReplaceAll(base, "1a14c3ec-9c50-ef11-bfe3-00224802dbb1", op);
}

using Router = testing::RouterProcess;

TEST(CrashTest, AcknowledgedEventsSurviveSigkill) {
  testing::TempDir tmp;
  const std::string log = tmp.path() + "/router.log";
  testing::WriteFileOrDie(log, "");
  ::setenv("DVROUTER_CRASH_TEST_KEY", "crash-key", 1);
  testing::WriteFileOrDie(tmp.path() + "/router.yaml",
                          "ingress:\n"
                          "  io_threads: 2\n"
                          "  auth:\n"
                          "    mode: webhook_key\n"
                          "    secret: ${DVROUTER_CRASH_TEST_KEY}\n"
                          "journal:\n"
                          "  partitions: 16\n"
                          "  segment_bytes: 1MiB\n");
  const std::string target = "/webhooks/dataverse?code=crash-key";

  std::mutex mu;
  std::map<std::string, int> acked;  // event id -> event number
  uint64_t max_acked_seq = 0;
  std::atomic<int> acks{0};
  {
    Router first(tmp, log);
    ASSERT_TRUE(first.WaitReady(1)) << testing::ReadFileOrDie(log);
    constexpr int kClients = 6, kEach = 800;
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c] {
        HttpClient client(first.port);
        for (int i = 0; i < kEach; ++i) {
          const int n = c * kEach + i;
          HttpReply r = client.Post(target, Event(n));
          if (r.status != 200) return;  // the router died under us
          const std::string id = testing::JsonStringField(r.body, "event_id");
          if (id.size() == 32) {
            std::lock_guard<std::mutex> lock(mu);
            acked[id] = n;
            max_acked_seq = std::max(max_acked_seq, SeqOf(r.body));
          }
          ++acks;
        }
      });
    }
    // Kill while the clients are still posting, so some requests are mid-flight.
    ASSERT_TRUE(testing::WaitFor([&] { return acks.load() >= 2600; }, std::chrono::seconds(60)));
    first.child().Kill(SIGKILL);
    int status = first.child().Wait();
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    for (auto& t : clients) t.join();
  }
  ASSERT_GE(acked.size(), 2600u);
  ASSERT_LT(acked.size(), 4800u) << "the kill came too late to interrupt anything";
  bool dictionary = false;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path() + "/data/journal")) {
    dictionary = dictionary || e.path().extension() == ".dict";
  }
  EXPECT_TRUE(dictionary) << "no compression dictionary was made before the kill";
  EXPECT_GT(testing::Census(tmp.path() + "/data/journal").with_dict, 0u)
      << "no acknowledged body was compressed with a dictionary before the kill";

  // Restart on the same directory: recovery, then the same events again are duplicates.
  {
    Router second(tmp, log);
    ASSERT_TRUE(second.WaitReady(2)) << testing::ReadFileOrDie(log);
    HttpClient admin(second.admin_port);
    EXPECT_EQ(admin.Get("/readyz").status, 200);
    HttpClient client(second.port);
    int checked = 0;
    for (const auto& [id, n] : acked) {
      if (++checked > 50) break;
      HttpReply r = client.Post(target, Event(n));
      EXPECT_EQ(r.status, 200);
      EXPECT_NE(r.body.find("\"status\":\"duplicate\""), std::string::npos) << r.body;
      EXPECT_NE(r.body.find(id), std::string::npos);
    }
    // A new event after the crash gets a sequence above every one handed out before it.
    HttpReply fresh = client.Post(target, Event(99999));
    EXPECT_EQ(fresh.status, 200);
    EXPECT_GT(SeqOf(fresh.body), max_acked_seq) << fresh.body;
    second.child().Kill(SIGTERM);
    int status = second.child().Wait();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << testing::ReadFileOrDie(log);
  }

  std::map<std::string, int> in_journal;
  uint64_t last_seq = 0;
  bool ordered = true;
  ASSERT_TRUE(FileJournal::ScanDirectory(tmp.path() + "/data/journal", [&](const RecordView& v) {
                in_journal[v.key.ToHex()]++;
                ordered = ordered && v.handle.seq > last_seq;
                last_seq = v.handle.seq;
                return true;
              }).ok());
  EXPECT_TRUE(ordered);
  for (const auto& [id, n] : acked) {
    auto it = in_journal.find(id);
    ASSERT_NE(it, in_journal.end()) << "acknowledged event " << n << " (" << id << ") lost";
    EXPECT_EQ(it->second, 1) << "event " << id << " journaled " << it->second << " times";
  }
  for (const auto& [id, count] : in_journal) EXPECT_EQ(count, 1) << id;
  // After a crash the journal resumes past its reserved sequences: gaps, never reuse.
  EXPECT_LE(in_journal.size(), static_cast<size_t>(last_seq));

  // `dvrouter journal` prints the same records, one JSON line each.
  const std::string dump = tmp.path() + "/dump.jsonl";
  testing::ChildProcess dumper(
      DVROUTER_BINARY, {"journal", "--data-dir", tmp.path() + "/data", "--from", "1"}, dump);
  int status = dumper.Wait();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const std::string text = testing::ReadFileOrDie(dump);
  EXPECT_EQ(static_cast<size_t>(std::count(text.begin(), text.end(), '\n')), in_journal.size());
  for (const auto& [id, n] : acked) {
    EXPECT_NE(text.find("\"event_id\":\"" + id + "\""), std::string::npos) << id;
  }
  EXPECT_NE(text.find("\"table\":\"msdyn_agentstatus\""), std::string::npos);
}

}  // namespace
}  // namespace dvrouter
