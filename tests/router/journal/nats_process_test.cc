// dvrouter on `journal.backend: nats` (docs/journal-nats.md), a real router process against three
// clustered nats-servers with a stream of 3 replicas: webhooks are acknowledged once JetStream
// stored them on a quorum. Mid-load the router is killed (SIGKILL) and so is one nats-server;
// after both restart, every acknowledged event is in the lake, a resent one is a duplicate, and
// the metrics count the PubAcks.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/support/http_client.h"
#include "tests/support/lake_rows.h"
#include "tests/support/nats_server.h"
#include "tests/support/router_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::HttpClient;
using testing::HttpReply;

std::string Event(int n) {
  static const std::string base = testing::Fixture("update-msdyn_agentstatus-postop-async.json");
  char op[40];
  std::snprintf(op, sizeof(op), "%08x-2222-4000-8000-%012d", n, n);
  return testing::ReplaceAll(base, "1a14c3ec-9c50-ef11-bfe3-00224802dbb1", op);
}

TEST(NatsJournalProcess, AcknowledgedEventsSurviveTheRoutersAndAServersKill) {
  std::string why;
  if (!testing::NatsServer::Available(&why)) GTEST_SKIP() << why;
  testing::NatsCluster cluster;
  ASSERT_TRUE(cluster.ok()) << cluster.error();
  testing::TempDir tmp;
  const std::string log = tmp.path() + "/router.log";
  testing::WriteFileOrDie(log, "");
  testing::ScopedEnv key("DVROUTER_NATS_TEST_KEY", "nats-key");
  std::string servers;
  for (const std::string& u : cluster.urls()) servers += (servers.empty() ? "" : ", ") + u;
  testing::WriteFileOrDie(tmp.path() + "/router.yaml",
                          "ingress:\n"
                          "  auth: {mode: webhook_key, secret: \"${DVROUTER_NATS_TEST_KEY}\"}\n"
                          "journal:\n"
                          "  partitions: 8\n"
                          "  backend: nats\n"
                          "  nats:\n"
                          "    servers: [" +
                              servers +
                              "]\n"
                              "    stream: DVPROCESS\n"
                              "    replicas: 3\n"
                              "    ack_timeout: 3s\n");
  const std::string target = "/webhooks/dataverse?code=nats-key";

  std::mutex mu;
  std::map<std::string, int> acked;  // event id -> event
  std::atomic<int> answers{0};
  std::map<std::string, int> refusals;  // answer -> count
  {
    testing::RouterProcess first(tmp, log);
    ASSERT_TRUE(first.WaitReady(1)) << testing::ReadFileOrDie(log);
    constexpr int kClients = 4, kEach = 300;
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c] {
        HttpClient client(first.port);
        for (int i = 0; i < kEach; ++i) {
          const int n = c * kEach + i;
          HttpReply r = client.Post(target, Event(n));
          ++answers;
          if (r.status == 0) return;  // the router is gone
          std::lock_guard<std::mutex> lock(mu);
          if (r.status != 200) {
            refusals[r.body.substr(0, 160)]++;
            continue;
          }
          acked[testing::JsonStringField(r.body, "event_id")] = n;
        }
      });
    }
    ASSERT_TRUE(testing::WaitFor([&] { return answers.load() >= 300; }, std::chrono::seconds(60)));
    size_t before_kill = 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      before_kill = acked.size();
    }
    cluster.server(2).Kill();  // not the last quorum member
    // The two left go on taking events (after a moment of 503s while the client reconnects or
    // the stream elects a leader).
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          std::lock_guard<std::mutex> lock(mu);
          return acked.size() >= before_kill + 200;
        },
        std::chrono::seconds(60)))
        << ::testing::PrintToString(refusals) << testing::ReadFileOrDie(log);
    first.child().Kill(SIGKILL);
    first.child().Wait();
    for (auto& t : clients) t.join();
  }
  std::fprintf(stderr, "acked %zu, refused %s\n", acked.size(),
               ::testing::PrintToString(refusals).c_str());
  ASSERT_TRUE(cluster.server(2).Start()) << cluster.server(2).error();

  testing::RouterProcess second(tmp, log);
  ASSERT_TRUE(second.WaitReady(2)) << testing::ReadFileOrDie(log);
  // Every acknowledged event reaches the lake (the restarted router resumes its cursors).
  std::string missing;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        const std::map<std::string, int> rows = testing::LakeRows(tmp.path() + "/data/lake");
        for (const auto& [id, n] : acked) {
          if (rows.count(id) == 0) {
            missing = id;
            return false;
          }
        }
        return true;
      },
      std::chrono::seconds(60)))
      << "missing " << missing << "\n"
      << testing::ReadFileOrDie(log);
  // Dataverse's retry of a stored event is a duplicate, found by the stream.
  HttpClient client(second.port);
  const auto& [id, n] = *acked.begin();
  HttpReply again = client.Post(target, Event(n));
  EXPECT_EQ(again.status, 200) << again.body;
  EXPECT_NE(again.body.find("\"status\":\"duplicate\""), std::string::npos) << again.body;
  EXPECT_NE(again.body.find(id), std::string::npos);
  EXPECT_EQ(
      testing::MetricSum(second.admin_port, "dvrouter_nats_pub_acks_total{result=\"duplicate\"}"),
      1);
  second.child().Kill(SIGTERM);
  const int status = second.child().Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << testing::ReadFileOrDie(log);
}

}  // namespace
}  // namespace dvrouter
