// NatsJournal against real nats-server processes (docs/journal-nats.md): appends acknowledged by
// PubAck with the stream sequence, duplicates by Nats-Msg-Id keeping the first's seq, commits to
// the listener in order, reads and scans of what was stored (compressed bodies come back whole),
// a reopen that goes on after the last seq, a stream of another journal refused, a server gone
// (refused within ack_timeout, then back), a stop that leaves its consumer to the server, scans
// that stop while the server still sends (nothing freed in use), purges of what readers passed,
// a full budget that refuses and makes room, and a 3-server cluster that loses a server mid-load
// and keeps every acknowledged event, readable again once the lost server is back and current.
#include "router/journal/nats_journal.h"

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "router/common/clock.h"
#include "tests/support/journal_events.h"
#include "tests/support/nats_server.h"

namespace dvrouter {
namespace {

using testing::MakeEvent;
using testing::Pending;

// Records commits, as the delivery engine would.
struct Commits final : CommitListener {
  std::mutex mu;
  std::vector<RecordHandle> handles;
  std::atomic<uint64_t> reclaimable{0};
  void OnCommitted(const RecordHandle& h) override {
    std::lock_guard<std::mutex> lock(mu);
    handles.push_back(h);
  }
  uint64_t ReclaimableBelow() override { return reclaimable.load(); }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return handles.size();
  }
};

class NatsJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!testing::NatsServer::Available(&why)) GTEST_SKIP() << why;
    server_ = std::make_unique<testing::NatsServer>();
    ASSERT_TRUE(server_->ok()) << server_->error();
  }
  NatsJournalOptions Options() {
    NatsJournalOptions o;
    o.servers = {server_->url()};
    o.stream = "DVTEST";
    o.replicas = 1;
    o.partitions = 7;
    o.ack_timeout_ms = 2000;
    o.listener = &commits_;
    return o;
  }
  std::unique_ptr<NatsJournal> Open(NatsJournalOptions o) {
    auto j = NatsJournal::Open(std::move(o));
    EXPECT_TRUE(j.ok()) << j.status().ToString();
    return j.ok() ? std::move(j).value() : nullptr;
  }
  // Appends events first..last-1, waits for each: their results.
  std::vector<AppendResult> AppendAll(NatsJournal* j, int first, int last, size_t bytes = 200) {
    std::vector<std::unique_ptr<Pending>> events;
    for (int n = first; n < last; ++n) {
      events.push_back(MakeEvent(n, bytes, WallNowMs()));
      j->Append(&events.back()->request);
    }
    std::vector<AppendResult> out;
    for (auto& e : events) out.push_back(e->Wait());
    return out;
  }

  std::unique_ptr<testing::NatsServer> server_;
  Commits commits_;
};

TEST_F(NatsJournalTest, AppendsAreAcknowledgedInOrderAndDuplicatesKeepTheirSeq) {
  auto j = Open(Options());
  ASSERT_TRUE(j);
  const std::vector<AppendResult> first = AppendAll(j.get(), 0, 100, 3000);
  for (size_t i = 0; i < first.size(); ++i) {
    ASSERT_TRUE(first[i].status.ok()) << first[i].status.ToString();
    EXPECT_EQ(first[i].seq, i + 1);
    EXPECT_FALSE(first[i].duplicate);
  }
  // Dataverse's retry of events already stored: duplicates with the original's seq.
  const std::vector<AppendResult> again = AppendAll(j.get(), 10, 20);
  for (size_t i = 0; i < again.size(); ++i) {
    ASSERT_TRUE(again[i].status.ok());
    EXPECT_TRUE(again[i].duplicate);
    EXPECT_EQ(again[i].seq, i + 11);
  }
  // Commits reach the listener once each, in seq order, with their partitions.
  ASSERT_TRUE(testing::WaitFor([&] { return commits_.size() == 100; })) << commits_.size();
  for (size_t i = 0; i < 100; ++i) {
    EXPECT_EQ(commits_.handles[i].seq, i + 1);
    EXPECT_EQ(commits_.handles[i].partition, i % 7);
  }
  // Reads give back header and body (stored compressed: 3000 bytes of 'x').
  std::string buffer;
  EventHeader header;
  RecordView view;
  for (const RecordHandle& h : {commits_.handles[0], commits_.handles[57]}) {
    ASSERT_TRUE(j->Read(h, &buffer, &header, &view).ok());
    const auto expected = MakeEvent(static_cast<int>(h.seq - 1), 3000);
    EXPECT_EQ(view.body, expected->body);
    EXPECT_EQ(view.key, expected->request.key);
    EXPECT_EQ(view.handle.seq, h.seq);
    EXPECT_EQ(header.operation_id, expected->header.operation_id);
  }
  RecordHandle missing;
  missing.seq = 5000;
  EXPECT_EQ(j->Read(missing, &buffer, &header, &view).code(), StatusCode::kNotFound);
  // A scan from 51 visits 51..100 in order.
  std::vector<uint64_t> seen;
  ASSERT_TRUE(j->Scan(51, [&](const RecordView& v) {
                 seen.push_back(v.handle.seq);
                 return true;
               }).ok());
  ASSERT_EQ(seen.size(), 50u);
  EXPECT_EQ(seen.front(), 51u);
  EXPECT_EQ(seen.back(), 100u);
  EXPECT_EQ(j->Stats().next_seq, 101u);
}

TEST_F(NatsJournalTest, AReopenGoesOnAndAnotherJournalsStreamIsRefused) {
  {
    auto j = Open(Options());
    ASSERT_TRUE(j);
    AppendAll(j.get(), 0, 20);
    j->Stop();
  }
  auto j = Open(Options());
  ASSERT_TRUE(j);
  EXPECT_EQ(j->Stats().next_seq, 21u);
  const std::vector<AppendResult> more = AppendAll(j.get(), 20, 21);
  EXPECT_EQ(more[0].seq, 21u);
  EXPECT_TRUE(AppendAll(j.get(), 3, 4)[0].duplicate) << "the window outlives the reopen";
  j->Stop();
  NatsJournalOptions other = Options();
  other.partitions = 8;
  auto refused = NatsJournal::Open(other);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().ToString().find("partitions=7"), std::string::npos)
      << refused.status().ToString();
  NatsJournalOptions nowhere = Options();
  nowhere.servers = {"nats://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort())};
  auto unreachable = NatsJournal::Open(nowhere);
  ASSERT_FALSE(unreachable.ok());
  EXPECT_EQ(unreachable.status().code(), StatusCode::kUnavailable);
}

// The stream's consumers as the server counts them; -1 when it cannot be asked.
int64_t StreamConsumers(const std::string& url, const char* stream) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  jsStreamInfo* si = nullptr;
  int64_t n = -1;
  if (natsConnection_ConnectTo(&nc, url.c_str()) == NATS_OK &&
      natsConnection_JetStream(&js, nc, nullptr) == NATS_OK &&
      js_GetStreamInfo(&si, js, stream, nullptr, nullptr) == NATS_OK) {
    n = static_cast<int64_t>(si->State.Consumers);
  }
  jsStreamInfo_Destroy(si);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return n;
}

// A stop destroys the delivery feed's ordered consumer without deleting it on the server
// (libnats' delete reads a name its own thread may be replacing: docs/journal-nats.md, "Known
// limits"); the server removes it once nobody listens.
TEST_F(NatsJournalTest, AStopLeavesItsConsumerToTheServerWhichRemovesIt) {
  auto j = Open(Options());
  ASSERT_TRUE(j);
  for (const AppendResult& r : AppendAll(j.get(), 0, 3)) ASSERT_TRUE(r.status.ok());
  ASSERT_TRUE(testing::WaitFor([&] { return commits_.size() == 3; }));
  ASSERT_EQ(StreamConsumers(server_->url(), "DVTEST"), 1);
  j->Stop();
  EXPECT_EQ(StreamConsumers(server_->url(), "DVTEST"), 1) << "deleted at the stop";
  EXPECT_TRUE(testing::WaitFor([&] { return StreamConsumers(server_->url(), "DVTEST") == 0; },
                               std::chrono::seconds(30)))
      << "the server kept a consumer nobody listens to";
}

// Scans that stop at their first record while the server still sends the rest: each ends its
// subscription while libnats may be delivering to it. libnats 3.4 then reads the freed
// subscription (an ASan report within a few hundred scans) unless the consumer's own connection
// is closed first (docs/journal-nats.md, "Known limits").
TEST_F(NatsJournalTest, ScansThatStopWhileTheServerStillSendsFreeNothingInUse) {
  auto j = Open(Options());
  ASSERT_TRUE(j);
  std::vector<AppendResult> stored = AppendAll(j.get(), 0, 1000, 4000);
  for (const AppendResult& r : stored) ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  for (size_t i = 0; i < 300; ++i) {
    const uint64_t from = stored[i % 500].seq;
    uint64_t seen = 0;
    Status st = j->Scan(from, [&](const RecordView& v) {
      seen = v.handle.seq;
      return false;
    });
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_EQ(seen, from) << "scan " << i;
  }
}

TEST_F(NatsJournalTest, AServerGoneRefusesWithinTheAckTimeoutAndItsReturnHeals) {
  auto j = Open(Options());
  ASSERT_TRUE(j);
  ASSERT_TRUE(AppendAll(j.get(), 0, 5)[4].status.ok());
  server_->Kill();
  const auto started = std::chrono::steady_clock::now();
  const std::vector<AppendResult> lost = AppendAll(j.get(), 5, 8);
  for (const AppendResult& r : lost) {
    EXPECT_EQ(r.status.code(), StatusCode::kUnavailable) << "never claimed durable";
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
  ASSERT_TRUE(server_->Start()) << server_->error();
  // The client reconnects; appends are acknowledged again, after the 5 stored.
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        const std::vector<AppendResult> r = AppendAll(j.get(), 5, 6);
        return r[0].status.ok();
      },
      std::chrono::seconds(30)));
  EXPECT_EQ(AppendAll(j.get(), 6, 7)[0].seq, 7u);
}

TEST_F(NatsJournalTest, PurgesTakeWhatReadersPassedAndAFullBudgetMakesRoom) {
  NatsJournalOptions o = Options();
  o.max_bytes = 1 << 20;
  o.compression = Codec::kNone;
  auto j = Open(o);
  ASSERT_TRUE(j);
  // 10 KiB events until the stream refuses: a budget refusal, nothing dropped.
  int n = 0;
  AppendResult refused;
  while (n < 200) {
    refused = AppendAll(j.get(), n, n + 1, 10'000)[0];
    if (!refused.status.ok()) break;
    ++n;
  }
  ASSERT_LT(n, 200) << "max_bytes never refused";
  EXPECT_NE(refused.status.ToString().find("budget"), std::string::npos)
      << refused.status.ToString();
  EXPECT_GE(j->Stats().budget_refusals, 1u);
  std::string buffer;
  EventHeader header;
  RecordView view;
  RecordHandle oldest;
  oldest.seq = 1;
  ASSERT_TRUE(j->Read(oldest, &buffer, &header, &view).ok()) << "undelivered data stays";
  // Readers passed the first half: the journal purges it and takes events again.
  commits_.reclaimable = static_cast<uint64_t>(n / 2);
  ASSERT_TRUE(testing::WaitFor([&] { return AppendAll(j.get(), n, n + 1, 10'000)[0].status.ok(); },
                               std::chrono::seconds(20)));
  EXPECT_EQ(j->Read(oldest, &buffer, &header, &view).code(), StatusCode::kNotFound);
  // Counted once the purging thread has read the stream's new size back: the append above can
  // succeed in between (a TSan CI run read 0 there).
  EXPECT_TRUE(testing::WaitFor([&] { return j->Stats().reclaimed_bytes > 0; }))
      << "reclaimed_bytes stayed 0";
  // DeleteBefore keeps records younger than its age, and purges the older ones.
  EXPECT_EQ(j->DeleteBefore(static_cast<uint64_t>(n), 3'600'000)->bytes_deleted, 0u);
  auto purged = j->DeleteBefore(static_cast<uint64_t>(n), 0);
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_EQ(purged->first_retained_seq, static_cast<uint64_t>(n));
}

TEST(NatsJournalCluster, ThreeReplicasKeepEveryAcknowledgedEventWhenAServerDies) {
  std::string why;
  if (!testing::NatsServer::Available(&why)) GTEST_SKIP() << why;
  testing::NatsCluster cluster;
  ASSERT_TRUE(cluster.ok()) << cluster.error();
  Commits commits;
  NatsJournalOptions o;
  o.servers = cluster.urls();
  o.stream = "DVCLUSTER";
  o.replicas = 3;
  o.partitions = 7;
  o.ack_timeout_ms = 3000;
  o.listener = &commits;
  auto opened = NatsJournal::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto j = std::move(opened).value();
  std::vector<std::unique_ptr<Pending>> events;
  std::map<uint64_t, int> acked;  // seq -> event
  auto append = [&](int first, int last) {
    const size_t from = events.size();
    for (int n = first; n < last; ++n) {
      events.push_back(MakeEvent(n, 500, WallNowMs()));
      j->Append(&events.back()->request);
    }
    int ok = 0;
    for (size_t i = from; i < events.size(); ++i) {
      const AppendResult r = events[i]->Wait();
      if (r.status.ok()) {
        acked[r.seq] = static_cast<int>(i);
        ++ok;
      }
    }
    return ok;
  };
  ASSERT_EQ(append(0, 200), 200);
  // A server dies: after a moment (the client reconnects, the stream may elect a leader) the
  // two left, a quorum, take events again.
  cluster.server(1).Kill();
  int n = 200;
  ASSERT_TRUE(testing::WaitFor([&] { return append(n, n + 1) == 1 || (++n, false); },
                               std::chrono::seconds(60)));
  n += 1;
  EXPECT_EQ(append(n, n + 200), 200);
  EXPECT_GE(acked.size(), 401u);
  j->Stop();
  // Every acknowledged event reads back from the stored stream (a new journal: no cache), from
  // the two servers left; then, the third back and the first killed, from those two.
  auto read_all = [&](std::vector<std::string> urls) {
    NatsJournalOptions r = o;
    r.servers = std::move(urls);
    r.listener = nullptr;
    auto reader = NatsJournal::Open(r);
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    std::string buffer;
    EventHeader header;
    RecordView view;
    for (const auto& [seq, n] : acked) {
      RecordHandle h;
      h.seq = seq;
      Status st;
      // A leader being elected answers after a moment.
      ASSERT_TRUE(
          testing::WaitFor([&] { return (st = (*reader)->Read(h, &buffer, &header, &view)).ok(); },
                           std::chrono::seconds(30)))
          << seq << ": " << st.ToString();
      ASSERT_EQ(view.key, events[static_cast<size_t>(n)]->request.key) << seq;
    }
  };
  read_all({cluster.server(0).url(), cluster.server(2).url()});
  ASSERT_TRUE(cluster.server(1).Start()) << cluster.server(1).error();
  // The server back must have caught up before the next loss: killing another one sooner is two
  // machines lost at once, which three replicas do not promise to survive.
  ASSERT_TRUE(testing::WaitFor([&] { return cluster.server(1).JetStreamCurrent(); },
                               std::chrono::seconds(60)))
      << cluster.server(1).log();
  cluster.server(0).Kill();
  read_all({cluster.server(1).url(), cluster.server(2).url()});
}

}  // namespace
}  // namespace dvrouter
