// Two dvrouter nodes on one replicated NATS stream (docs/journal-nats.md, "Several router
// nodes"): three clustered nats-servers, webhooks posted to both nodes, the same webhook posted
// to both journaled once, delivery on the lease holder only. The leader is killed with SIGKILL
// mid-load: the other node takes the lease over and delivers the rest (every acknowledged event
// reaches the shared lake), within 10 s of the kill. The killed node comes back as a follower;
// the new leader, its lease taken from under it, exits with its distinct code and the follower
// takes over again. Dead letters written by one leader are listed and replayed by the next. A
// second run kills a nats-server (one of three) mid-load and brings it back:
// every acknowledged event still reaches the lake, nodes that exit are restarted as a supervisor
// would.
#include <gtest/gtest.h>
#include <nats/nats.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "router/app/app.h"
#include "router/cluster/nats_kv.h"
#include "router/common/clock.h"
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
  std::snprintf(op, sizeof(op), "%08x-3333-4000-8000-%012d", n, n);
  return testing::ReplaceAll(base, "1a14c3ec-9c50-ef11-bfe3-00224802dbb1", op);
}

// The "seq" of a webhook's answer.
std::string SeqOf(const std::string& body) {
  const size_t at = body.find("\"seq\":");
  return at == std::string::npos ? "" : body.substr(at + 6, body.find_first_of(",}", at) - at - 6);
}

const char kTarget[] = "/webhooks/dataverse?code=cluster-key";

// `extra`: more adapters (YAML at their indentation), routed with the lake.
void WriteNodeConfig(const testing::TempDir& node_dir, const std::string& name,
                     const std::string& servers, const std::string& lake,
                     const std::string& extra = "", const std::string& extra_names = "") {
  testing::WriteFileOrDie(node_dir.path() + "/router.yaml",
                          "ingress:\n"
                          "  auth: {mode: webhook_key, secret: \"${DVROUTER_CLUSTER_TEST_KEY}\"}\n"
                          "journal:\n"
                          "  partitions: 8\n"
                          "  backend: nats\n"
                          "  nats:\n"
                          "    servers: [" +
                              servers +
                              "]\n"
                              "    stream: DVCLUSTER\n"
                              "    replicas: 3\n"
                              "    ack_timeout: 3s\n"
                              "cluster:\n"
                              "  node: " +
                              name +
                              "\n"
                              "  lease_ttl: 3s\n"
                              "delivery:\n"
                              "  cursor_flush_interval: 100ms\n"
                              "adapters:\n"
                              "  lake:\n"
                              "    type: lake\n"
                              "    dir: " +
                              lake +
                              "\n"
                              "    roll_interval: 50ms\n" +
                              extra +
                              "routes:\n"
                              "  - adapters: [lake" +
                              extra_names + "]\n");
}

// Waits until the three servers' JetStream answers (a cluster that just started elects its
// leaders first), by creating the lease bucket the nodes will bind: the routers' start then
// does not spend its readiness timeout on the election.
void WaitForJetStream(testing::NatsCluster& cluster) {
  NatsKvOptions o;
  o.servers = cluster.urls();
  auto kv = NatsKv::Connect(o);
  ASSERT_TRUE(kv.ok()) << kv.status().ToString();
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto bucket = (*kv)->Bucket("DVCLUSTER_state", 3000, 3);
    if (bucket.ok()) return;
    std::fprintf(stderr, "JetStream not ready yet: %s\n", bucket.status().ToString().c_str());
  }
  FAIL() << "JetStream never answered";
}

// The lake's rows missing one of `acked` (empty when none is).
std::string Missing(const std::string& lake, const std::map<std::string, int>& acked) {
  const std::map<std::string, int> rows = testing::LakeRows(lake);
  for (const auto& [id, n] : acked) {
    if (rows.count(id) == 0) return id;
  }
  return "";
}

TEST(ClusterProcess, TheOtherNodeTakesOverDeliveryWhenTheLeaderIsKilled) {
  std::string why;
  if (!testing::NatsServer::Available(&why)) GTEST_SKIP() << why;
  testing::NatsCluster cluster;
  ASSERT_TRUE(cluster.ok()) << cluster.error();
  ASSERT_NO_FATAL_FAILURE(WaitForJetStream(cluster));
  testing::ScopedEnv key("DVROUTER_CLUSTER_TEST_KEY", "cluster-key");
  std::string servers;
  for (const std::string& u : cluster.urls()) servers += (servers.empty() ? "" : ", ") + u;
  testing::TempDir shared, dir_a, dir_b;
  const std::string lake = shared.path() + "/lake";
  WriteNodeConfig(dir_a, "node-a", servers, lake);
  WriteNodeConfig(dir_b, "node-b", servers, lake);
  const std::string log_a = dir_a.path() + "/router.log", log_b = dir_b.path() + "/router.log";
  testing::WriteFileOrDie(log_a, "");
  testing::WriteFileOrDie(log_b, "");
  auto logs = [&] {
    return "--- node-a\n" + testing::ReadFileOrDie(log_a) + "--- node-b\n" +
           testing::ReadFileOrDie(log_b);
  };

  auto a = std::make_unique<testing::RouterProcess>(dir_a, log_a);
  ASSERT_TRUE(a->WaitReady(1)) << logs();
  testing::RouterProcess b(dir_b, log_b);
  ASSERT_TRUE(b.WaitReady(1)) << logs();
  EXPECT_NE(testing::ReadFileOrDie(log_a).find("node-a holds the delivery lease"),
            std::string::npos)
      << logs();
  EXPECT_NE(testing::ReadFileOrDie(log_b).find("node-b is a follower"), std::string::npos)
      << logs();
  {
    HttpClient admin_b(b.admin_port);
    EXPECT_EQ(admin_b.Get("/readyz").status, 200);
    const std::string view = admin_b.Get("/cluster").body;
    EXPECT_NE(view.find(R"("node":"node-b","role":"follower")"), std::string::npos) << view;
    EXPECT_NE(view.find(R"("leader":{"node":"node-a")"), std::string::npos) << view;
    EXPECT_NE(view.find(R"("name":"DVCLUSTER")"), std::string::npos) << view;
    // The stream's three replicas, the leader first.
    EXPECT_NE(view.find(R"("replicas":[{"server":)"), std::string::npos) << view;
    size_t servers = 0;
    for (size_t at = view.find(R"("server":)"); at != std::string::npos;
         at = view.find(R"("server":)", at + 1)) {
      ++servers;
    }
    EXPECT_EQ(servers, 3u) << view;
  }
  EXPECT_EQ(testing::MetricSum(a->admin_port, "dvrouter_cluster_leader{node=\"node-a\"}"), 1);
  EXPECT_EQ(testing::MetricSum(b.admin_port, "dvrouter_cluster_leader{node=\"node-b\"}"), 0);

  // The same webhook to both nodes: journaled once.
  {
    HttpClient to_a(a->port), to_b(b.port);
    HttpReply first = to_a.Post(kTarget, Event(0));
    HttpReply second = to_b.Post(kTarget, Event(0));
    ASSERT_EQ(first.status, 200) << first.body;
    ASSERT_EQ(second.status, 200) << second.body;
    EXPECT_NE(first.body.find(R"("status":"accepted")"), std::string::npos) << first.body;
    EXPECT_NE(second.body.find(R"("status":"duplicate")"), std::string::npos) << second.body;
    EXPECT_EQ(testing::JsonStringField(first.body, "event_id"),
              testing::JsonStringField(second.body, "event_id"));
    EXPECT_EQ(SeqOf(first.body), SeqOf(second.body)) << first.body << " / " << second.body;
  }

  std::mutex mu;
  std::map<std::string, int> acked;     // event id -> event
  std::map<std::string, int> refusals;  // answer -> count
  std::atomic<bool> killed{false};
  std::atomic<int64_t> first_after_kill_ms{0};
  std::string first_after_kill;
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0};
  // One client per node; the one of node-a stops when it is killed, node-b's goes on.
  auto client = [&](uint16_t port, int base) {
    HttpClient c(port);
    for (int i = 0; !stop.load(); ++i) {
      const int n = base + i;
      HttpReply r = c.Post(kTarget, Event(n));
      ++sent;
      if (r.status == 0) return;  // the node is gone
      std::lock_guard<std::mutex> lock(mu);
      if (r.status != 200) {
        refusals[r.body.substr(0, 160)]++;
        continue;
      }
      const std::string id = testing::JsonStringField(r.body, "event_id");
      acked[id] = n;
      if (killed.load() && first_after_kill.empty()) first_after_kill = id;
      if (i % 10 == 9) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  };
  std::thread to_a(client, a->port, 100'000);
  std::thread to_b(client, b.port, 200'000);
  ASSERT_TRUE(testing::WaitFor([&] { return sent.load() >= 200; }, std::chrono::seconds(60)));
  // node-a delivers while it leads.
  ASSERT_TRUE(testing::WaitFor([&] { return testing::LakeRows(lake).size() >= 100; },
                               std::chrono::seconds(30)))
      << logs();

  a->child().Kill(SIGKILL);
  const int64_t kill_ms = SteadyNowMs();
  a->child().Wait();
  killed = true;
  to_a.join();
  // node-b takes over: the first event it acknowledged after the kill reaches the lake.
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        std::string id;
        {
          std::lock_guard<std::mutex> lock(mu);
          id = first_after_kill;
        }
        if (id.empty() || testing::LakeRows(lake).count(id) == 0) return false;
        first_after_kill_ms = SteadyNowMs();
        return true;
      },
      std::chrono::seconds(30)))
      << logs();
  const int64_t failover_ms = first_after_kill_ms.load() - kill_ms;
  std::fprintf(stderr, "failover: leader killed -> first delivery by node-b in %lld ms\n",
               static_cast<long long>(failover_ms));
  EXPECT_LE(failover_ms, 10'000);
  EXPECT_NE(testing::ReadFileOrDie(log_b).find("node-b acquired the delivery lease"),
            std::string::npos)
      << logs();
  ASSERT_TRUE(testing::WaitFor([&] { return sent.load() >= 600; }, std::chrono::seconds(60)));
  stop = true;
  to_b.join();

  // Every acknowledged event, from either node, is in the lake.
  std::map<std::string, int> all;
  {
    std::lock_guard<std::mutex> lock(mu);
    all = acked;
  }
  std::string missing;
  ASSERT_TRUE(testing::WaitFor([&] { return (missing = Missing(lake, all)).empty(); },
                               std::chrono::seconds(60)))
      << "missing " << missing << " of " << all.size() << "\n"
      << logs();
  std::fprintf(stderr, "acked %zu, refused %s\n", all.size(),
               ::testing::PrintToString(refusals).c_str());
  {
    HttpClient admin_b(b.admin_port);
    const std::string view = admin_b.Get("/cluster").body;
    EXPECT_NE(view.find(R"("node":"node-b","role":"leader")"), std::string::npos) << view;
  }
  EXPECT_EQ(testing::MetricSum(b.admin_port, "dvrouter_cluster_leader{node=\"node-b\"}"), 1);

  // node-a comes back as a follower.
  a = std::make_unique<testing::RouterProcess>(dir_a, log_a);
  ASSERT_TRUE(a->WaitReady(2)) << logs();
  EXPECT_NE(testing::ReadFileOrDie(log_a).find("node-a is a follower"), std::string::npos)
      << logs();

  // The lease written from under node-b (a revision conflict): it stops delivering and exits
  // with its code; node-a takes over.
  NatsKvOptions ko;
  ko.servers = cluster.urls();
  auto kv = NatsKv::Connect(ko);
  ASSERT_TRUE(kv.ok()) << kv.status().ToString();
  auto state = (*kv)->Bucket("DVCLUSTER_state", 3000, 3);
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  uint64_t rev = 0;
  ASSERT_EQ(kvStore_PutString(&rev, *state, "leader", R"({"node":"operator"})"), NATS_OK);
  const int status = b.child().Wait(std::chrono::seconds(10));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == App::kExitLeaseLost) << status << "\n"
                                                                               << logs();
  EXPECT_NE(testing::ReadFileOrDie(log_b).find("lost the delivery lease"), std::string::npos)
      << logs();
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return testing::ReadFileOrDie(log_a).find("node-a acquired the delivery lease") !=
               std::string::npos;
      },
      std::chrono::seconds(15)))
      << logs();
  HttpClient to_a_again(a->port);
  HttpReply last = to_a_again.Post(kTarget, Event(300'000));
  ASSERT_EQ(last.status, 200) << last.body;
  const std::string last_id = testing::JsonStringField(last.body, "event_id");
  EXPECT_TRUE(testing::WaitFor([&] { return testing::LakeRows(lake).count(last_id) == 1; },
                               std::chrono::seconds(20)))
      << logs();
  // A graceful stop releases the lease.
  a->child().Kill(SIGTERM);
  const int a_status = a->child().Wait();
  EXPECT_TRUE(WIFEXITED(a_status) && WEXITSTATUS(a_status) == 0) << logs();
  // (awaited: a read may be served by a replica that has not applied the deletion yet)
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        kvEntry* e = nullptr;
        const natsStatus s = kvStore_Get(&e, *state, "leader");
        if (e != nullptr) kvEntry_Destroy(e);
        return s == NATS_NOT_FOUND;
      },
      std::chrono::seconds(2)))
      << "the lease key is still there after a graceful stop";
}

// Two nodes under a supervisor of the test's own: a node that exits (it lost the lease) is
// started again on its ports.
struct SupervisedNode {
  SupervisedNode(const std::string& name, const std::string& servers, const std::string& lake)
      : name(name), log(dir.path() + "/router.log") {
    WriteNodeConfig(dir, name, servers, lake);
    testing::WriteFileOrDie(log, "");
    process = std::make_unique<testing::RouterProcess>(dir, log);
  }
  bool WaitReady() {
    if (!process->WaitReady(1)) return false;
    port = process->port;
    return true;
  }
  // Starts the node again (on its ports) if it exited; the clients reconnect by themselves.
  void Supervise() {
    const int status = process->child().Wait(std::chrono::milliseconds(0));
    if (status == -1) return;
    exits.push_back(WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
    process =
        std::make_unique<testing::RouterProcess>(dir, log, "127.0.0.1:" + std::to_string(port));
  }
  testing::TempDir dir;
  std::string name, log;
  std::unique_ptr<testing::RouterProcess> process;
  uint16_t port = 0;
  std::vector<int> exits;
};

TEST(ClusterProcess, ANatsServersLossMidLoadLosesNoAcknowledgedEvent) {
  std::string why;
  if (!testing::NatsServer::Available(&why)) GTEST_SKIP() << why;
  testing::NatsCluster cluster;
  ASSERT_TRUE(cluster.ok()) << cluster.error();
  ASSERT_NO_FATAL_FAILURE(WaitForJetStream(cluster));
  testing::ScopedEnv key("DVROUTER_CLUSTER_TEST_KEY", "cluster-key");
  std::string servers;
  for (const std::string& u : cluster.urls()) servers += (servers.empty() ? "" : ", ") + u;
  testing::TempDir shared;
  const std::string lake = shared.path() + "/lake";
  SupervisedNode a("node-a", servers, lake);
  ASSERT_TRUE(a.WaitReady()) << testing::ReadFileOrDie(a.log);
  SupervisedNode b("node-b", servers, lake);
  ASSERT_TRUE(b.WaitReady()) << testing::ReadFileOrDie(b.log);
  auto logs = [&] {
    return "--- node-a\n" + testing::ReadFileOrDie(a.log) + "--- node-b\n" +
           testing::ReadFileOrDie(b.log);
  };

  std::mutex mu;
  std::map<std::string, int> acked;
  std::map<std::string, int> refusals;
  std::atomic<bool> stop{false};
  std::atomic<int> oks{0};
  auto client = [&](uint16_t port, int base) {
    auto c = std::make_unique<HttpClient>(port);
    for (int i = 0; !stop.load(); ++i) {
      HttpReply r = c->Post(kTarget, Event(base + i));
      if (r.status == 0) {  // the node restarts: a new connection later
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        c = std::make_unique<HttpClient>(port);
        continue;
      }
      std::lock_guard<std::mutex> lock(mu);
      if (r.status != 200) {
        refusals[std::to_string(r.status) + " " + r.body.substr(0, 120)]++;
        continue;
      }
      acked[testing::JsonStringField(r.body, "event_id")] = base + i;
      ++oks;
      if (i % 10 == 9) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  };
  std::thread to_a(client, a.port, 400'000);
  std::thread to_b(client, b.port, 500'000);
  auto supervised_until = [&](const std::function<bool()>& done, int seconds) {
    return testing::WaitFor(
        [&] {
          a.Supervise();
          b.Supervise();
          return done();
        },
        std::chrono::seconds(seconds));
  };
  ASSERT_TRUE(supervised_until([&] { return oks.load() >= 300; }, 60)) << logs();
  cluster.server(0).Kill();
  const int before = oks.load();
  EXPECT_TRUE(supervised_until([&] { return oks.load() >= before + 500; }, 90))
      << ::testing::PrintToString(refusals) << logs();
  ASSERT_TRUE(cluster.server(0).Start()) << cluster.server(0).error();
  const int back = oks.load();
  EXPECT_TRUE(supervised_until([&] { return oks.load() >= back + 300; }, 60)) << logs();
  stop = true;
  to_a.join();
  to_b.join();
  std::string missing;
  EXPECT_TRUE(supervised_until([&] { return (missing = Missing(lake, acked)).empty(); }, 90))
      << "missing " << missing << " of " << acked.size() << "\n"
      << logs();
  std::fprintf(stderr, "acked %zu, refused %s, node-a exits %s, node-b exits %s\n", acked.size(),
               ::testing::PrintToString(refusals).c_str(),
               ::testing::PrintToString(a.exits).c_str(),
               ::testing::PrintToString(b.exits).c_str());
  for (const std::vector<int>* exits : {&a.exits, &b.exits}) {
    for (int code : *exits) EXPECT_EQ(code, App::kExitLeaseLost) << logs();
  }
}

TEST(ClusterProcess, TheNextLeaderListsTheDeadLettersOfTheOneBefore) {
  std::string why;
  if (!testing::NatsServer::Available(&why)) GTEST_SKIP() << why;
  testing::NatsCluster cluster;
  ASSERT_TRUE(cluster.ok()) << cluster.error();
  ASSERT_NO_FATAL_FAILURE(WaitForJetStream(cluster));
  testing::ScopedEnv key("DVROUTER_CLUSTER_TEST_KEY", "cluster-key");
  std::string servers;
  for (const std::string& u : cluster.urls()) servers += (servers.empty() ? "" : ", ") + u;
  // An ERP nobody listens for, given up on at the first failure: every event is a dead letter.
  const std::string erp =
      "  erp:\n"
      "    type: erp\n"
      "    base_url: http://127.0.0.1:1\n"
      "    connect_timeout: 100ms\n"
      "    retry: {max_attempts: 1}\n"
      "    requests:\n"
      "      - path: /orders\n";
  testing::TempDir shared, dir_a, dir_b;
  const std::string lake = shared.path() + "/lake";
  WriteNodeConfig(dir_a, "node-a", servers, lake, erp, ", erp");
  WriteNodeConfig(dir_b, "node-b", servers, lake, erp, ", erp");
  const std::string log_a = dir_a.path() + "/router.log", log_b = dir_b.path() + "/router.log";
  testing::WriteFileOrDie(log_a, "");
  testing::WriteFileOrDie(log_b, "");
  auto logs = [&] {
    return "--- node-a\n" + testing::ReadFileOrDie(log_a) + "--- node-b\n" +
           testing::ReadFileOrDie(log_b);
  };
  testing::RouterProcess a(dir_a, log_a);
  ASSERT_TRUE(a.WaitReady(1)) << logs();
  testing::RouterProcess b(dir_b, log_b);
  ASSERT_TRUE(b.WaitReady(1)) << logs();
  HttpClient to_b(b.port);
  for (int n = 0; n < 3; ++n) {
    HttpReply r = to_b.Post(kTarget, Event(600'000 + n));
    ASSERT_EQ(r.status, 200) << r.body;
  }
  auto entries = [](uint16_t admin_port) {
    const std::string body = HttpClient(admin_port).Get("/dlq?adapter=erp").body;
    size_t n = 0;
    for (size_t at = body.find("\"event_id\""); at != std::string::npos;
         at = body.find("\"event_id\"", at + 1)) {
      ++n;
    }
    return n;
  };
  ASSERT_TRUE(
      testing::WaitFor([&] { return entries(a.admin_port) == 3; }, std::chrono::seconds(30)))
      << HttpClient(a.admin_port).Get("/dlq").body << logs();
  a.child().Kill(SIGKILL);
  a.child().Wait();
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return testing::ReadFileOrDie(log_b).find("node-b acquired the delivery lease") !=
               std::string::npos;
      },
      std::chrono::seconds(15)))
      << logs();
  ASSERT_TRUE(testing::WaitFor([&] { return HttpClient(b.admin_port).Get("/dlq").status == 200; },
                               std::chrono::seconds(15)));
  // The old leader's three (and the same events again if its last cursors were not saved yet).
  EXPECT_GE(entries(b.admin_port), 3u) << HttpClient(b.admin_port).Get("/dlq").body << logs();
  // Replayed from the new leader: marked in the stream (and dead again at the absent ERP).
  HttpReply replay = HttpClient(b.admin_port).Post("/dlq/replay?adapter=erp", "");
  EXPECT_EQ(replay.status, 200) << replay.body;
  EXPECT_NE(replay.body.find("\"replayed\":"), std::string::npos) << replay.body;
  EXPECT_EQ(replay.body.find("\"replayed\":0"), std::string::npos) << replay.body;
}

}  // namespace
}  // namespace dvrouter
