// The delivery lease and the cursors in the key-value buckets (docs/journal-nats.md, "Several
// router nodes"), against a real nats-server: of two holders on one bucket only one wins; the
// other takes over within lease_ttl and a renewal once the winner stops renewing, or at once
// after a release; a revision conflict loses the lease; a bucket of another TTL is refused; the
// cursor store round-trips, refuses malformed values naming the key, and saves nothing once the
// lease is gone; the DLQ in its stream is read back whole by another node, a line published
// twice stored once.
#include "router/cluster/lease.h"

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <memory>
#include <string>

#include "router/cluster/nats_cursor_store.h"
#include "router/cluster/nats_dlq_log.h"
#include "router/cluster/nats_kv.h"
#include "router/common/clock.h"
#include "tests/support/nats_server.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

class NatsLeaseTest : public ::testing::Test {
 protected:
  static constexpr int64_t kTtlMs = 1000;
  void SetUp() override {
    std::string why;
    if (!testing::NatsServer::Available(&why)) GTEST_SKIP() << why;
    server_ = std::make_unique<testing::NatsServer>();
    ASSERT_TRUE(server_->ok()) << server_->error();
    kv_a_ = Connect();
    kv_b_ = Connect();
    ASSERT_TRUE(kv_a_ && kv_b_);
  }
  std::unique_ptr<NatsKv> Connect() {
    NatsKvOptions o;
    o.servers = {server_->url()};
    o.request_timeout_ms = 500;
    auto kv = NatsKv::Connect(o);
    EXPECT_TRUE(kv.ok()) << kv.status().ToString();
    return kv.ok() ? std::move(kv).value() : nullptr;
  }
  kvStore* State(NatsKv& kv) {
    auto b = kv.Bucket("DVT_state", kTtlMs, 1);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? *b : nullptr;
  }
  static LeaseOptions Node(const std::string& name) {
    LeaseOptions o;
    o.node = name;
    o.ttl_ms = kTtlMs;
    return o;
  }

  std::unique_ptr<testing::NatsServer> server_;
  std::unique_ptr<NatsKv> kv_a_, kv_b_;
};

TEST_F(NatsLeaseTest, OnlyOneOfTwoHoldersWinsAndTheOtherTakesOverWhenItStopsRenewing) {
  NatsLease a(State(*kv_a_), Node("a"));
  NatsLease b(State(*kv_b_), Node("b"));
  EXPECT_EQ(a.Step(), NatsLease::Change::kAcquired);
  EXPECT_EQ(b.Step(), NatsLease::Change::kNone);
  EXPECT_TRUE(a.held());
  EXPECT_FALSE(b.held());
  Result<LeaderInfo> leader = b.Leader();
  ASSERT_TRUE(leader.ok()) << leader.status().ToString();
  EXPECT_EQ(leader->node, "a");
  // While a renews, b never gets it (longer than the TTL).
  const int64_t until = SteadyNowMs() + 2 * kTtlMs;
  while (SteadyNowMs() < until) {
    EXPECT_EQ(a.Step(), NatsLease::Change::kNone);
    EXPECT_EQ(b.Step(), NatsLease::Change::kNone);
    std::this_thread::sleep_for(std::chrono::milliseconds(a.renew_interval_ms()));
  }
  EXPECT_TRUE(a.held());
  // a stops renewing (as if killed): b holds it within lease_ttl and one renewal interval, plus
  // the server's expiry tick.
  const int64_t stopped = SteadyNowMs();
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        if (b.Step() == NatsLease::Change::kAcquired) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(b.renew_interval_ms()));
        return false;
      },
      std::chrono::seconds(10)));
  const int64_t took = SteadyNowMs() - stopped;
  std::fprintf(stderr, "takeover after %lld ms (lease_ttl %lld ms)\n", static_cast<long long>(took),
               static_cast<long long>(kTtlMs));
  EXPECT_LE(took, kTtlMs + b.renew_interval_ms() + 1000);
  EXPECT_EQ(b.Leader()->node, "b");
  // a's next step (stalled past 3/4 of the TTL) knows it lost.
  std::string why;
  EXPECT_EQ(a.Step(&why), NatsLease::Change::kLost);
  EXPECT_FALSE(a.held());
  EXPECT_NE(why.find("no renewal for"), std::string::npos) << why;
}

TEST_F(NatsLeaseTest, ARevisionConflictLosesTheLease) {
  kvStore* bucket = State(*kv_a_);
  NatsLease a(bucket, Node("a"));
  ASSERT_EQ(a.Step(), NatsLease::Change::kAcquired);
  // Someone else writes the key (an operator, a node with a skewed view).
  uint64_t rev = 0;
  ASSERT_EQ(kvStore_PutString(&rev, State(*kv_b_), "leader", R"({"node":"x"})"), NATS_OK);
  std::string why;
  EXPECT_EQ(a.Step(&why), NatsLease::Change::kLost);
  EXPECT_FALSE(a.held());
  EXPECT_NE(why.find("revision conflict"), std::string::npos) << why;
}

TEST_F(NatsLeaseTest, ARenewalWhoseAnswerWasLostKeepsTheLease) {
  kvStore* bucket = State(*kv_a_);
  NatsLease a(bucket, Node("a"));
  ASSERT_EQ(a.Step(), NatsLease::Change::kAcquired);
  // The renewal reached the server but its answer did not come back: the key holds a's value at
  // a revision a does not know.
  Result<LeaderInfo> now = a.Leader();
  ASSERT_TRUE(now.ok());
  kvEntry* e = nullptr;
  ASSERT_EQ(kvStore_Get(&e, bucket, "leader"), NATS_OK);
  const std::string value(static_cast<const char*>(kvEntry_Value(e)),
                          static_cast<size_t>(kvEntry_ValueLen(e)));
  kvEntry_Destroy(e);
  uint64_t rev = 0;
  ASSERT_EQ(kvStore_UpdateString(&rev, bucket, "leader", value.c_str(), now->revision), NATS_OK);
  EXPECT_EQ(a.Step(), NatsLease::Change::kNone);
  EXPECT_TRUE(a.held());
  EXPECT_EQ(a.Step(), NatsLease::Change::kNone);  // renews at the adopted revision
  EXPECT_GT(a.Leader()->revision, rev);
}

TEST_F(NatsLeaseTest, AReleaseLetsAFollowerTakeOverAtOnceAndNodesAreListed) {
  NatsLease a(State(*kv_a_), Node("a"));
  NatsLease b(State(*kv_b_), Node("b"));
  ASSERT_EQ(a.Step(), NatsLease::Change::kAcquired);
  ASSERT_EQ(b.Step(), NatsLease::Change::kNone);
  std::vector<NodeInfo> nodes = a.Nodes();
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0].node, "a");
  EXPECT_EQ(nodes[0].role, "leader");
  EXPECT_EQ(nodes[1].node, "b");
  EXPECT_EQ(nodes[1].role, "follower");
  a.Release();
  EXPECT_FALSE(a.held());
  EXPECT_EQ(b.Step(), NatsLease::Change::kAcquired);
  EXPECT_EQ(b.Leader()->node, "b");
}

TEST_F(NatsLeaseTest, TheLeaseThreadRenewsAndWaitHeldSeesTheAcquisition) {
  NatsLease a(State(*kv_a_), Node("a"));
  NatsLease b(State(*kv_b_), Node("b"));
  std::atomic<bool> lost{false};
  a.Start([&](const std::string&) { lost = true; });
  ASSERT_TRUE(a.WaitHeld(5000));
  b.Start([&](const std::string&) {});
  EXPECT_FALSE(b.WaitHeld(3 * kTtlMs));  // a renews in the background
  EXPECT_FALSE(lost.load());
  a.Stop();  // stops renewing without releasing
  EXPECT_TRUE(b.WaitHeld(3 * kTtlMs));
  b.Stop();
}

// A leader whose renewals block (its server stopped answering: SIGSTOP) reports the lease lost
// at 3/4 of lease_ttl after its last renewal, while a renewal still waits for its answer: before
// the key can expire and another node start delivering.
TEST_F(NatsLeaseTest, ALeaderWhoseRenewalsBlockLosesTheLeaseBeforeItCouldExpire) {
  NatsKvOptions o;
  o.servers = {server_->url()};
  o.request_timeout_ms = 4 * kTtlMs;  // each blocked call outlasts the lease
  auto kv = NatsKv::Connect(o);
  ASSERT_TRUE(kv.ok()) << kv.status().ToString();
  NatsLease a(State(**kv), Node("a"));
  std::atomic<int64_t> lost_at{0};
  a.Start([&](const std::string&) { lost_at = SteadyNowMs(); });
  ASSERT_TRUE(a.WaitHeld(5000));
  ASSERT_TRUE(testing::WaitFor([&] { return !a.Leader().ok() || a.Leader()->revision > 1; }))
      << "a renewal went through";
  const int64_t stopped_at = SteadyNowMs();
  ASSERT_EQ(::kill(server_->pid(), SIGSTOP), 0);
  const bool reported =
      testing::WaitFor([&] { return lost_at.load() != 0; }, std::chrono::milliseconds(6 * kTtlMs));
  ::kill(server_->pid(), SIGCONT);
  ASSERT_TRUE(reported);
  EXPECT_FALSE(a.held());
  EXPECT_LT(lost_at.load() - stopped_at, kTtlMs) << "ms from the stop to the report";
  a.Stop();
}

TEST_F(NatsLeaseTest, ABucketOfAnotherTtlIsRefused) {
  ASSERT_NE(State(*kv_a_), nullptr);
  auto other = kv_b_->Bucket("DVT_state", 2 * kTtlMs, 1);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(other.status().message().find("lease_ttl"), std::string::npos)
      << other.status().ToString();
}

TEST_F(NatsLeaseTest, CursorsRoundTripAndMalformedValuesNameTheirKey) {
  auto bucket = kv_a_->Bucket("DVT_cursors", 0, 1);
  ASSERT_TRUE(bucket.ok()) << bucket.status().ToString();
  bool leader = true;
  NatsCursorStore store(*bucket, "DVT_cursors", [&] { return leader; });
  Result<CursorMap> empty = store.Load(4);
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_TRUE(empty->empty());
  const CursorMap saved = {{"lake", {1, 2, 3, 4}}, {"pg", {0, 0, 7, 18446744073709551615ull}}};
  ASSERT_TRUE(store.Save(saved).ok());
  // Another node (a new leader) reads them.
  auto other_bucket = kv_b_->Bucket("DVT_cursors", 0, 1);
  ASSERT_TRUE(other_bucket.ok());
  NatsCursorStore other(*other_bucket, "DVT_cursors", [] { return true; });
  Result<CursorMap> loaded = other.Load(4);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(*loaded, saved);
  // Another partition count is refused.
  Result<CursorMap> wrong = other.Load(8);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("DVT_cursors/c.lake"), std::string::npos)
      << wrong.status().ToString();
  // A node that lost the lease saves nothing.
  leader = false;
  EXPECT_EQ(store.Save({{"lake", {9, 9, 9, 9}}}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(other.Load(4)->at("lake"), saved.at("lake"));
  // Malformed values.
  for (const char* bad : {"garbage", "dvrouter-cursors 1 4 1 2 3", "dvrouter-cursors 1 4 1 2 x 4",
                          "dvrouter-cursors 1 4 1 2 -3 4", "dvrouter-cursors 1 4 1 2 3 4 5"}) {
    uint64_t rev = 0;
    ASSERT_EQ(kvStore_PutString(&rev, *bucket, "c.pg", bad), NATS_OK);
    Result<CursorMap> r = other.Load(4);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("DVT_cursors/c.pg"), std::string::npos)
        << r.status().ToString();
  }
}

TEST_F(NatsLeaseTest, TheDlqInItsStreamIsReadBackByAnotherNode) {
  auto log = NatsDlqLog::Open(kv_a_.get(), "DVT_DLQ", 1);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  auto q = DeadLetterQueue::Open(std::move(log).value());
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_TRUE((*q)->List("", std::nullopt, true).empty());
  std::vector<DlqEntry> entries(2);
  for (size_t i = 0; i < entries.size(); ++i) {
    DlqEntry& e = entries[i];
    e.adapter = i == 0 ? "erp" : "pg";
    e.seq = 10 + i;
    e.event_id = std::string(31, '0') + std::to_string(i);
    e.table = "contact";
    e.row_id = "row-" + std::to_string(i);
    e.message = "Update";
    e.reason = "permanent";
    e.attempts = 3;
    e.last_error = "HTTP 400";
    e.failed_at_ms = 1'700'000'000'000;
    e.record = std::string("frame\0bytes", 11) + std::to_string(i);
  }
  ASSERT_TRUE((*q)->Append(&entries).ok());
  ASSERT_TRUE((*q)->MarkReplayed({entries[0].id}).ok());
  EXPECT_EQ((*q)->Pending("erp"), 0u);
  EXPECT_EQ((*q)->Pending("pg"), 1u);

  // The next leader, on its own connection.
  auto other_log = NatsDlqLog::Open(kv_b_.get(), "DVT_DLQ", 1);
  ASSERT_TRUE(other_log.ok()) << other_log.status().ToString();
  NatsDlqLog* raw = other_log->get();
  auto other = DeadLetterQueue::Open(std::move(other_log).value());
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  const std::vector<DlqEntry> listed = (*other)->List("", std::nullopt, true);
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_TRUE(listed[0].replayed);
  EXPECT_FALSE(listed[1].replayed);
  EXPECT_EQ(listed[1].adapter, "pg");
  EXPECT_EQ((*other)->Pending("pg"), 1u);
  Result<DlqEntry> got = (*other)->Get(entries[1].id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->record, entries[1].record);
  EXPECT_EQ(got->row_id, "row-1");
  // Ids go on after the ones read back.
  std::vector<DlqEntry> more{entries[1]};
  ASSERT_TRUE((*other)->Append(&more).ok());
  EXPECT_EQ(more[0].id, entries[1].id + 1);
  // A line published again (an unanswered publish retried) is stored once.
  std::vector<uint64_t> first, again;
  ASSERT_TRUE(raw->Append({R"({"replayed":99})"}, &first).ok());
  ASSERT_TRUE(raw->Append({R"({"replayed":99})"}, &again).ok());
  EXPECT_EQ(first, again);
}

}  // namespace
}  // namespace dvrouter
