// Two dvrouter nodes on one replicated NATS stream (docs/journal-nats.md, "Several router
// nodes"): three clustered nats-servers, webhooks posted to both nodes, the same webhook posted
// to both journaled once, delivery on the lease holder only. The leader is killed with SIGKILL
// mid-load: the other node takes the lease over and delivers the rest (every acknowledged event
// reaches the shared lake), within 10 s of the kill. The killed node comes back as a follower;
// the new leader, its lease taken from under it, exits with its distinct code and the follower
// takes over again. Dead letters written by one leader are listed and replayed by the next. A
// second run kills a nats-server (one of three) mid-load and brings it back:
// every acknowledged event still reaches the lake, nodes that exit are restarted as a supervisor
// would. The combined run puts both faults in one load from dvrouter-loadgen, one per node, with
// PostgreSQL next to the lake: it converges to every record's newest event.
#include <dirent.h>
#include <gtest/gtest.h>
#include <nats/nats.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "router/app/app.h"
#include "router/cluster/nats_kv.h"
#include "router/common/clock.h"
#include "tests/support/http_client.h"
#include "tests/support/lake_rows.h"
#include "tests/support/nats_server.h"
#include "tests/support/postgres_server.h"
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
                     const std::string& extra = "", const std::string& extra_names = "",
                     const std::string& ack_timeout = "3s") {
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
                              "    ack_timeout: " +
                              ack_timeout +
                              "\n"
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

// Creates the lease bucket the nodes will bind, so that the routers' start does not spend its
// readiness timeout on the bucket's own election (the cluster's meta group has formed already:
// tests/support/nats_server.h).
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
  FAIL() << "JetStream never answered; the servers' logs:\n" << cluster.LogTails();
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
  SupervisedNode(const std::string& name, const std::string& servers, const std::string& lake,
                 const std::string& extra = "", const std::string& extra_names = "",
                 const std::string& ack_timeout = "3s")
      : name(name), log(dir.path() + "/router.log") {
    WriteNodeConfig(dir, name, servers, lake, extra, extra_names, ack_timeout);
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
    ++starts;
  }
  // Whether the current run's ingress is up (its "ingress on" line is in the log); reads the
  // run's admin port then.
  bool Up() {
    const std::string text = testing::ReadFileOrDie(log);
    size_t runs = 0;
    for (size_t at = text.find("ingress on "); at != std::string::npos;
         at = text.find("ingress on ", at + 1)) {
      ++runs;
    }
    if (runs < starts) return false;
    return process->admin_port != 0 || process->WaitReady(starts);
  }
  testing::TempDir dir;
  std::string name, log;
  std::unique_ptr<testing::RouterProcess> process;
  uint16_t port = 0;
  size_t starts = 1;
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

// One lake row: what the order and convergence checks read.
struct LakeRow {
  std::string event_id, row_id, file;
  uint64_t seq = 0;
  size_t line = 0;
};

// Every row of every final lake file under `dir`.
std::vector<LakeRow> ReadLake(const std::string& dir) {
  std::vector<LakeRow> out;
  testing::ForEachLakeLine(dir, [&](const std::string& path, size_t n, const std::string& line) {
    LakeRow r;
    r.event_id = testing::JsonStringField(line, "event_id");
    r.row_id = testing::JsonStringField(line, "row_id");
    r.seq = std::stoull(SeqOf(line));
    r.file = path;
    r.line = n;
    out.push_back(std::move(r));
  });
  return out;
}

// A loadgen JSON result's answers by status ("200", "503", "error": no answer) -> count.
std::map<std::string, uint64_t> LoadgenStatuses(const std::string& json) {
  std::map<std::string, uint64_t> out;
  const size_t at = json.find("\"status\":{");
  if (at == std::string::npos) return out;
  const size_t end = json.find('}', at);
  for (size_t q = json.find('"', at + 10); q != std::string::npos && q < end;
       q = json.find('"', json.find_first_of(",}", q) + 1)) {
    const size_t close = json.find('"', q + 1);
    out[json.substr(q + 1, close - q - 1)] = std::stoull(json.substr(close + 2));
    if (json.find_first_of(",}", close) >= end) break;
  }
  return out;
}

// The issue's combined run (docs/journal-nats.md, "Several router nodes"): load from two
// dvrouter-loadgen processes, one per node, 5% duplicates, on records both nodes take events
// for, delivered to a shared lake and to PostgreSQL. During the load the delivery leader is
// killed (its supervisor restarts it; a node takes the lease over), then a nats-server (the
// stream's leader or a follower of it), which is started again. Afterwards every acknowledged event
// is in the lake, each event id once journaled (one seq); PostgreSQL holds every record at the
// version of its newest event (the highest seq the lake has for it); a record's rows within a lake
// file are in seq order (the lake takes a record's events in journal order); and no answer was a
// 5xx or another refusal: a quorum of servers was up throughout.
//
// `stream_leader`: the nats-server killed is the stream's leader, else one of its followers.
// Killing the leader loses the publishes in flight on it (one per loadgen connection): they get
// no PubAck and must be published again, under their Nats-Msg-Id, while the stream elects its
// next leader (4 to 9 s). They were answered 503 while the retries waited behind the stream-info
// calls of the maintenance thread, which block for the whole election.
void LoadThroughALeaderAndAServerKill(bool stream_leader) {
#ifndef DVROUTER_LOADGEN
  GTEST_SKIP() << "dvrouter-loadgen is not built (DVROUTER_BUILD_BENCH)";
#else
  std::string why;
  if (!testing::NatsServer::Available(&why)) GTEST_SKIP() << why;
  if (!testing::PostgresServer::Available(&why)) GTEST_SKIP() << why;
  testing::PostgresServer pg;
  ASSERT_TRUE(pg.ok()) << pg.error();
  testing::NatsCluster cluster;
  ASSERT_TRUE(cluster.ok()) << cluster.error();
  ASSERT_NO_FATAL_FAILURE(WaitForJetStream(cluster));
  testing::ScopedEnv key("DVROUTER_CLUSTER_TEST_KEY", "cluster-key");
  std::string servers;
  for (const std::string& u : cluster.urls()) servers += (servers.empty() ? "" : ", ") + u;
  const std::string postgres =
      pg.AdapterYaml("pg",
                     "    pool_size: 2\n"
                     "    batch: {max_events: 50, linger: 5ms}\n"
                     "    retry: {initial_backoff: 20ms, max_backoff: 300ms}\n");
  testing::TempDir shared;
  const std::string lake = shared.path() + "/lake";
  // nats-server 2.9 elects the stream's next leader within its election timeout (4 to 9 s): an
  // ack_timeout above it.
  SupervisedNode a("node-a", servers, lake, postgres, ", pg", "12s");
  ASSERT_TRUE(a.WaitReady()) << testing::ReadFileOrDie(a.log);
  SupervisedNode b("node-b", servers, lake, postgres, ", pg", "12s");
  ASSERT_TRUE(b.WaitReady()) << testing::ReadFileOrDie(b.log);
  auto logs = [&] {
    return "--- node-a\n" + testing::ReadFileOrDie(a.log) + "--- node-b\n" +
           testing::ReadFileOrDie(b.log);
  };
  auto supervised_until = [&](const std::function<bool()>& done, int seconds) {
    return testing::WaitFor(
        [&] {
          a.Supervise();
          b.Supervise();
          return done();
        },
        std::chrono::seconds(seconds));
  };

  // One open-loop loadgen per node: 120 requests/s for 24 s, 5% duplicates, 150 records (the
  // seeds differ: distinct events, the same records).
  const std::string fixture =
      std::string(DVROUTER_FIXTURES_DIR) + "/update-msdyn_agentstatus-postop-async.json";
  auto loadgen = [&](const SupervisedNode& node, const std::string& seed) {
    const std::string out = shared.path() + "/loadgen-" + node.name;
    return std::make_unique<testing::ChildProcess>(
        DVROUTER_LOADGEN,
        std::vector<std::string>{
            "--url",         "http://127.0.0.1:" + std::to_string(node.port) + kTarget,
            "--body",        fixture,
            "--rate",        "120",
            "--duration",    "24",
            "--connections", "8",
            "--duplicates",  "0.05",
            "--records",     "150",
            "--hot-records", "0",
            "--timeout-ms",  "15000",
            "--seed",        seed,
            "--json",        out + ".json",
            "--acked",       out + ".acked"},
        out + ".log");
  };
  auto load_a = loadgen(a, "11");
  auto load_b = loadgen(b, "22");
  const int64_t start_ms = SteadyNowMs();
  auto lake_rows = [&] { return testing::LakeRows(lake).size(); };

  // The leader delivers; then it is killed and restarted by its supervisor, and the other node
  // takes the lease over.
  ASSERT_TRUE(supervised_until([&] { return lake_rows() >= 300; }, 30)) << logs();
  SupervisedNode* leader = nullptr;
  ASSERT_TRUE(supervised_until(
      [&] {
        for (SupervisedNode* n : {&a, &b}) {
          if (testing::MetricSum(n->process->admin_port,
                                 "dvrouter_cluster_leader{node=\"" + n->name + "\"}") == 1) {
            leader = n;
          }
        }
        return leader != nullptr;
      },
      10))
      << logs();
  std::fprintf(stderr, "killing the leader %s at %lld ms\n", leader->name.c_str(),
               static_cast<long long>(SteadyNowMs() - start_ms));
  leader->process->child().Kill(SIGKILL);
  ASSERT_TRUE(supervised_until(
      [&] {
        // The lease expires; either node may take it (the restarted one is a follower too).
        return leader->starts == 2 && leader->Up() &&
               logs().find(" acquired the delivery lease") != std::string::npos;
      },
      30))
      << logs();
  const size_t after_failover = lake_rows();
  ASSERT_TRUE(supervised_until([&] { return lake_rows() >= after_failover + 200; }, 30)) << logs();

  // The stream's leader server (GET /cluster lists the replicas, the leader first; the servers
  // are n0, n1, n2) killed mid-load: two of three keep the quorum and elect another; then it is
  // started again.
  size_t victim = cluster.size();
  std::string view;
  ASSERT_TRUE(supervised_until(
      [&] {
        const SupervisedNode& up = a.Up() ? a : b;
        view = HttpClient(up.process->admin_port).Get("/cluster").body;
        const std::string kFirst = R"("replicas":[{"server":"n)";
        const size_t at = view.find(kFirst);
        if (at == std::string::npos || at + kFirst.size() >= view.size()) return false;
        victim = static_cast<size_t>(view[at + kFirst.size()] - '0');
        // A follower: n0 when it is one (the first server started, likely the JetStream meta
        // leader and the leader of buckets besides: its loss costs the most).
        if (!stream_leader) victim = victim == 0 ? 1 : 0;
        return victim < cluster.size();
      },
      10))
      << view << "\n"
      << logs();
  std::fprintf(stderr, "killing nats-server n%zu (the stream's %s) at %lld ms\n", victim,
               stream_leader ? "leader" : "follower",
               static_cast<long long>(SteadyNowMs() - start_ms));
  cluster.server(victim).Kill();
  const size_t after_server_kill = lake_rows();
  const int64_t killed_ms = SteadyNowMs();
  EXPECT_TRUE(supervised_until([&] { return lake_rows() >= after_server_kill + 300; }, 30))
      << logs();
  // Deliveries paused by the server's loss (an election of a bucket or the consumer's server):
  // the nodes' logs say why.
  if (SteadyNowMs() - killed_ms > 5000) std::fprintf(stderr, "%s", logs().c_str());
  std::fprintf(stderr, "300 more lake rows at %lld ms\n",
               static_cast<long long>(SteadyNowMs() - start_ms));
  ASSERT_TRUE(cluster.server(victim).Start()) << cluster.server(victim).error();
  std::fprintf(stderr, "nats-server n%zu back at %lld ms\n", victim,
               static_cast<long long>(SteadyNowMs() - start_ms));

  // The load ends (bounded: 24 s of requests, each at most 15 s).
  int status_a = -1, status_b = -1;
  ASSERT_TRUE(supervised_until(
      [&] {
        if (status_a == -1) status_a = load_a->Wait(std::chrono::milliseconds(0));
        if (status_b == -1) status_b = load_b->Wait(std::chrono::milliseconds(0));
        return status_a != -1 && status_b != -1;
      },
      60))
      << logs();
  std::set<std::string> acked;
  std::map<std::string, uint64_t> statuses;
  for (const SupervisedNode* n : {&a, &b}) {
    const std::string out = shared.path() + "/loadgen-" + n->name;
    std::istringstream lines(testing::ReadFileOrDie(out + ".acked"));
    for (std::string id; std::getline(lines, id);) acked.insert(id);
    for (const auto& [code, count] : LoadgenStatuses(testing::ReadFileOrDie(out + ".json"))) {
      statuses[code] += count;
    }
    std::fprintf(stderr, "loadgen to %s:\n%s", n->name.c_str(),
                 testing::ReadFileOrDie(out + ".log").c_str());
  }

  // Every acknowledged event reaches the lake, and PostgreSQL converges to the newest event of
  // every record the lake has.
  std::vector<LakeRow> rows;
  std::string missing;
  std::map<std::string, uint64_t> newest;  // row id -> highest seq in the lake
  std::map<std::string, uint64_t> stored;  // row id -> PostgreSQL's version
  auto converged = [&] {
    rows = ReadLake(lake);
    std::set<std::string> in_lake;
    newest.clear();
    for (const LakeRow& r : rows) {
      in_lake.insert(r.event_id);
      newest[r.row_id] = std::max(newest[r.row_id], r.seq);
    }
    missing.clear();
    for (const std::string& id : acked) {
      if (in_lake.count(id) == 0) {
        missing = id;
        return false;
      }
    }
    auto q = pg.Query("SELECT id::text, version FROM crm_msdyn_agentstatus");
    if (!q.ok) return false;
    stored.clear();
    for (const auto& row : q.rows) stored[*row[0]] = std::stoull(*row[1]);
    return stored == newest;
  };
  const bool done = supervised_until(converged, 60);
  for (SupervisedNode* n : {&a, &b}) {
    if (!n->Up()) continue;
    std::fprintf(
        stderr,
        "%s since its last start: PubAck errors %.0f, timeouts %.0f; published again: %.0f "
        "without a PubAck, %.0f without a stream leader\n",
        n->name.c_str(),
        testing::MetricSum(n->process->admin_port,
                           "dvrouter_nats_pub_acks_total{result=\"error\"}"),
        testing::MetricSum(n->process->admin_port,
                           "dvrouter_nats_pub_acks_total{result=\"timeout\"}"),
        testing::MetricSum(n->process->admin_port,
                           "dvrouter_nats_publish_retries_total{reason=\"no_pub_ack\"}"),
        testing::MetricSum(n->process->admin_port,
                           "dvrouter_nats_publish_retries_total{reason=\"no_responders\"}"));
  }
  std::fprintf(stderr,
               "acked %zu events, lake %zu rows, %zu records; statuses %s; node-a exits %s, "
               "node-b exits %s; %lld ms in all\n",
               acked.size(), rows.size(), newest.size(), ::testing::PrintToString(statuses).c_str(),
               ::testing::PrintToString(a.exits).c_str(), ::testing::PrintToString(b.exits).c_str(),
               static_cast<long long>(SteadyNowMs() - start_ms));
  ASSERT_TRUE(done) << "missing " << missing << " of " << acked.size() << "; " << stored.size()
                    << " rows in PostgreSQL for " << newest.size() << " records\n"
                    << logs();
  EXPECT_GT(acked.size(), 3000u);
  EXPECT_GE(newest.size(), 140u);  // nearly every one of the 150 records

  // Each event id has one seq (journaled once, whichever node took it and however often), and
  // a record's rows within a lake file are in seq order.
  std::map<std::string, uint64_t> seq_of;
  std::map<std::pair<std::string, std::string>, uint64_t> last_in_file;  // (file, row id)
  size_t out_of_order = 0, two_seqs = 0;
  for (const LakeRow& r : rows) {
    auto [it, fresh] = seq_of.emplace(r.event_id, r.seq);
    if (!fresh && it->second != r.seq) ++two_seqs;
    uint64_t& last = last_in_file[{r.file, r.row_id}];
    if (r.seq <= last) ++out_of_order;
    last = r.seq;
  }
  EXPECT_EQ(two_seqs, 0u);
  EXPECT_EQ(out_of_order, 0u);
  std::fprintf(stderr, "lake rows for %zu events (%zu written again after the failover)\n",
               seq_of.size(), rows.size() - seq_of.size());

  // Every answer was a 2xx, or no answer from the node while it was down: a quorum was up.
  for (const auto& [code, count] : statuses) {
    if (code == "error") continue;
    EXPECT_TRUE(code.size() == 3 && code[0] == '2') << count << " answers " << code << "\n"
                                                    << logs();
  }
  ASSERT_GE(leader->exits.size(), 1u);
  for (const SupervisedNode* n : {&a, &b}) {
    for (size_t i = 0; i < n->exits.size(); ++i) {
      if (n == leader && i == 0) {
        EXPECT_EQ(n->exits[i], -SIGKILL);
      } else {
        EXPECT_EQ(n->exits[i], App::kExitLeaseLost) << logs();
      }
    }
  }
#endif
}

TEST(ClusterProcess, LoadFromBothNodesConvergesInPostgresThroughALeaderAndAServerKill) {
  LoadThroughALeaderAndAServerKill(/*stream_leader=*/false);
}

TEST(ClusterProcess, LoadFromBothNodesThroughTheStreamLeadersKillAnswersNo5xx) {
  LoadThroughALeaderAndAServerKill(/*stream_leader=*/true);
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
