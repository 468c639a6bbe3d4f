// The journal's disk budget and its sequence numbers: delivered segments yield to new events,
// undelivered ones never do, and sequences never go back, whatever happened to the newest
// records. Also the start-up checks of META, SEQ and frames.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>

#include "router/journal/file_journal.h"
#include "tests/support/journal_events.h"

namespace dvrouter {
namespace {

using testing::AppendOne;
using testing::JournalFixture;
using testing::kEpochMs;
using testing::MakeEvent;
using testing::OpenOrDie;
using testing::ReadAll;
using testing::SegmentFiles;

// Readers are done below `floor`, as the delivery engine reports it.
struct FloorListener final : CommitListener {
  std::atomic<uint64_t> floor{0};
  void OnCommitted(const RecordHandle&) override {}
  uint64_t ReclaimableBelow() override { return floor.load(); }
};

// Counts what the writer reports of the deletions it made room with.
struct ReclaimObserver final : JournalObserver {
  std::atomic<uint64_t> reclaims{0}, bytes{0};
  void OnWrite(double, uint64_t) override {}
  void OnSync(double, size_t) override {}
  void OnSize(uint64_t, uint64_t) override {}
  void OnRefused(const Status&) override {}
  void OnReclaimed(double, uint64_t b, bool) override {
    reclaims.fetch_add(1);
    bytes.fetch_add(b);
  }
};

uint64_t FirstRetainedSeq(Journal* j, int64_t* received_ms = nullptr) {
  uint64_t first = 0;
  EXPECT_TRUE(j->Scan(0, [&](const RecordView& v) {
                 first = v.handle.seq;
                 if (received_ms) *received_ms = v.received_ms;
                 return false;
               }).ok());
  return first;
}

TEST(JournalBudget, DeliveredSegmentsYieldSoIngestNeverStops) {
  JournalFixture f;
  FloorListener listener;
  listener.floor = UINT64_MAX;  // everything delivered everywhere
  ReclaimObserver observer;
  FileJournalOptions o = f.Options();
  o.segment_bytes = 64 << 10;
  o.disk_budget_bytes = 256 << 10;
  o.listener = &listener;
  o.observer = &observer;
  auto j = OpenOrDie(o);
  // Five times the budget, each event an hour after the previous (retention is no factor: the
  // journal is never asked to delete by age here).
  constexpr int kEvents = 5 * 256 / 10;
  for (int i = 0; i < kEvents; ++i) {
    auto e = MakeEvent(i, 10 << 10, kEpochMs + int64_t{i} * 3'600'000);
    AppendResult r = AppendOne(j.get(), e.get());
    ASSERT_TRUE(r.status.ok()) << "event " << i << ": " << r.status.ToString();
    ASSERT_LE(j->Stats().bytes, o.disk_budget_bytes) << "after event " << i;
    ASSERT_LE(testing::SegmentBytesOnDisk(f.dir), o.disk_budget_bytes) << "after event " << i;
  }
  const JournalStats s = j->Stats();
  EXPECT_EQ(s.budget_refusals, 0u);
  EXPECT_GT(s.reclaimed_bytes, 3 * o.disk_budget_bytes);
  EXPECT_GT(observer.reclaims.load(), 0u);
  // The oldest retained record is what the history now starts with, and its age is reported.
  int64_t first_received = 0;
  const uint64_t first = FirstRetainedSeq(j.get(), &first_received);
  EXPECT_GT(first, 1u);
  EXPECT_EQ(s.oldest_received_ms, first_received);
  EXPECT_EQ(first_received, kEpochMs + static_cast<int64_t>(first - 1) * 3'600'000);
  // What is retained is contiguous up to the newest record.
  j->Stop();
  EXPECT_EQ(observer.bytes.load(), j->Stats().reclaimed_bytes);
  auto all = ReadAll(f.dir);
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front().first, first);
  EXPECT_EQ(all.back().first, static_cast<uint64_t>(kEvents));
  EXPECT_EQ(all.size(), kEvents - first + 1);
}

TEST(JournalBudget, UndeliveredDataIsKeptAndIngestResumesOnceDelivered) {
  JournalFixture f;
  FloorListener listener;
  listener.floor = 1;  // a sink has finished nothing
  FileJournalOptions o = f.Options();
  o.segment_bytes = 64 << 10;
  o.disk_budget_bytes = 256 << 10;
  o.listener = &listener;
  auto j = OpenOrDie(o);
  const auto [accepted, refused] = testing::AppendEach(j.get(), 40, 10 << 10);
  ASSERT_GT(accepted, 20);
  ASSERT_LT(accepted, 40);
  EXPECT_EQ(refused.status.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status.message().find("not finished"), std::string_view::npos);
  EXPECT_EQ(j->Stats().budget_refusals, static_cast<uint64_t>(40 - accepted));
  EXPECT_EQ(FirstRetainedSeq(j.get()), 1u);

  // The sink catches up to the middle: without a restart, appends go through again, and only
  // segments wholly below the floor are gone.
  const uint64_t floor = static_cast<uint64_t>(accepted / 2);
  listener.floor = floor;
  auto next = MakeEvent(1000, 10 << 10);
  AppendResult r = AppendOne(j.get(), next.get());
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.seq, static_cast<uint64_t>(accepted + 1));
  const uint64_t first = FirstRetainedSeq(j.get());
  EXPECT_GT(first, 1u);
  EXPECT_LE(first, floor);
  EXPECT_LE(j->Stats().bytes, o.disk_budget_bytes);
  j->Stop();
  auto all = ReadAll(f.dir);
  EXPECT_EQ(all.front().first, first);
  EXPECT_EQ(all.back().first, r.seq);
  EXPECT_EQ(all.size(), r.seq - first + 1);
}

// The write-back's status records must get in even when undelivered events fill the budget:
// the source's saved cursor (and with it what the budget could free) waits for them.
TEST(JournalBudget, StatusRecordsAreAdmittedWhenWebhooksAreNot) {
  JournalFixture f;
  FloorListener listener;
  listener.floor = 1;
  FileJournalOptions o = f.Options();
  o.segment_bytes = 64 << 10;
  o.disk_budget_bytes = 128 << 10;
  o.listener = &listener;
  auto j = OpenOrDie(o);
  AppendResult refused;
  for (int i = 0; i < 20 && refused.status.ok(); ++i) {
    auto e = MakeEvent(i, 10 << 10);
    refused = AppendOne(j.get(), e.get());
  }
  ASSERT_EQ(refused.status.code(), StatusCode::kResourceExhausted);
  // As large as the webhook just refused (status records are smaller; this one must not fit).
  auto status = MakeEvent(100, 10 << 10);
  status->header.status_record = true;
  EXPECT_TRUE(AppendOne(j.get(), status.get()).status.ok());
  EXPECT_GT(j->Stats().bytes, o.disk_budget_bytes);
  auto webhook = MakeEvent(101, 10 << 10);
  EXPECT_EQ(AppendOne(j.get(), webhook.get()).status.code(), StatusCode::kResourceExhausted);
}

TEST(JournalBudget, WithoutAListenerNothingIsDeletedToMakeRoom) {
  JournalFixture f;
  FileJournalOptions o = f.Options();
  o.segment_bytes = 64 << 10;
  o.disk_budget_bytes = 128 << 10;
  auto j = OpenOrDie(o);
  EXPECT_LT(testing::AppendEach(j.get(), 20, 10 << 10).accepted, 20);
  EXPECT_EQ(FirstRetainedSeq(j.get()), 1u);
  EXPECT_EQ(j->Stats().reclaimed_bytes, 0u);
}

TEST(JournalBudget, BytesFromCountsTheSegmentsAReaderHolds) {
  JournalFixture f;
  FileJournalOptions o = f.Options();
  o.segment_bytes = 32 << 10;
  auto j = OpenOrDie(o);
  for (int i = 0; i < 12; ++i) {
    auto e = MakeEvent(i, 10 << 10);
    ASSERT_TRUE(AppendOne(j.get(), e.get()).status.ok());
  }
  const JournalStats s = j->Stats();
  ASSERT_GE(s.segments, 3u);
  EXPECT_EQ(j->BytesFrom(1), s.bytes);
  EXPECT_LT(j->BytesFrom(12), j->BytesFrom(1));
  EXPECT_GT(j->BytesFrom(12), 0u);
  EXPECT_LE(j->BytesFrom(12), o.segment_bytes);
}

// --- sequences never go back ---

// Copies the journal's files as a crash would leave them (the journal still open).
void CopyDirectory(const std::string& from, const std::string& to) {
  std::filesystem::create_directories(to);
  for (const auto& e : std::filesystem::directory_iterator(from)) {
    if (e.path().filename() == "LOCK") continue;
    std::filesystem::copy_file(e.path(), to + "/" + e.path().filename().string());
  }
}

TEST(JournalSequence, NeverGoesBackAfterTheNewestRecordsAreLost) {
  JournalFixture f;
  FileJournalOptions o = f.Options();
  o.fsync = false;  // unsafe_no_fsync: records are handed out before they are on disk
  const std::string crashed = f.tmp.path() + "/crashed";
  {
    auto j = OpenOrDie(o);
    for (int i = 0; i < 10; ++i) {
      auto e = MakeEvent(i);
      ASSERT_EQ(AppendOne(j.get(), e.get()).seq, static_cast<uint64_t>(i + 1));
    }
    CopyDirectory(f.dir, crashed);
  }
  // The copy lost its newest records (the page cache never reached the disk) and ends in the
  // middle of the 7th: a torn tail, after all ten were acknowledged (and maybe delivered).
  uint64_t keep = 0;
  ASSERT_TRUE(FileJournal::ScanDirectory(crashed, [&](const RecordView& v) {
                if (v.handle.seq == 7) keep = v.handle.offset + v.handle.length / 2;
                return true;
              }).ok());
  ASSERT_GT(keep, 0u);
  auto segs = SegmentFiles(crashed);
  ASSERT_EQ(segs.size(), 1u);
  std::filesystem::resize_file(segs[0], keep);

  o.dir = crashed;
  auto j = OpenOrDie(o);
  EXPECT_GT(j->Stats().truncated_bytes, 0u);
  EXPECT_EQ(testing::ReadAll(crashed).size(), 6u);
  EXPECT_GT(j->Stats().next_seq, 10u);
  auto e = MakeEvent(500);
  const AppendResult r = AppendOne(j.get(), e.get());
  ASSERT_TRUE(r.status.ok());
  EXPECT_GT(r.seq, 10u) << "a sequence an adapter may have seen was handed out again";
}

TEST(JournalSequence, CleanStopResumesAtTheExactNextSequence) {
  JournalFixture f;
  for (int round = 0; round < 3; ++round) {
    auto j = OpenOrDie(f.Options());
    auto e = MakeEvent(round);
    EXPECT_EQ(AppendOne(j.get(), e.get()).seq, static_cast<uint64_t>(round + 1));
  }
  EXPECT_EQ(testing::ReadFileOrDie(f.dir + "/SEQ"), "next=4\n");
}

TEST(JournalSequence, MalformedSeqMarkIsRefusedWithAClearError) {
  for (const std::string bad : {"", "next=\n", "next=12", "next=x1\n", "seq=5\n",
                                "next=99999999999999999999999\n", "next=5\nnext=6\n"}) {
    JournalFixture f;
    { auto j = OpenOrDie(f.Options()); }
    testing::WriteFileOrDie(f.dir + "/SEQ", bad);
    auto j = FileJournal::Open(f.Options());
    ASSERT_FALSE(j.ok()) << "'" << bad << "' was accepted";
    EXPECT_NE(j.status().message().find("/SEQ"), std::string_view::npos) << j.status().ToString();
  }
}

// --- META and frames ---

TEST(JournalMeta, SegmentsWithoutMetaAreRefusedAndMetaIsNotRecreated) {
  JournalFixture f;
  {
    auto j = OpenOrDie(f.Options());
    auto e = MakeEvent(1);
    ASSERT_TRUE(AppendOne(j.get(), e.get()).status.ok());
  }
  std::filesystem::remove(f.dir + "/META");
  auto j = FileJournal::Open(f.Options());
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(j.status().message().find("no META"), std::string_view::npos) << j.status().ToString();
  EXPECT_FALSE(std::filesystem::exists(f.dir + "/META"));
  EXPECT_EQ(ReadAll(f.dir).size(), 1u);
}

TEST(JournalMeta, AnEmptyDirectoryGetsMetaOfTheFormatItWillWrite) {
  JournalFixture f;
  std::filesystem::create_directories(f.dir);
  { auto j = OpenOrDie(f.Options()); }  // uncompressed: format 1, readable by older versions
  EXPECT_EQ(testing::ReadFileOrDie(f.dir + "/META"), "format=1\npartitions=8\n");
  JournalFixture g;
  FileJournalOptions o = g.Options();
  o.compression = Codec::kZstd;
  { auto j = OpenOrDie(o); }
  EXPECT_EQ(testing::ReadFileOrDie(g.dir + "/META"), "format=2\npartitions=8\n");
}

TEST(JournalMeta, FramesBeyondThePartitionCountAreCorrupt) {
  JournalFixture f;
  std::vector<EventKey> keys;
  {
    auto j = OpenOrDie(f.Options());
    for (int i = 0; i < 14; ++i) {  // partitions i % 7: 0..6
      auto e = MakeEvent(i);
      keys.push_back(e->request.key);
      ASSERT_TRUE(AppendOne(j.get(), e.get()).status.ok());
    }
  }
  // The same frames read by a journal of 4 partitions: those of partitions 4..6 name a
  // partition it does not have.
  testing::WriteFileOrDie(f.dir + "/META", "format=1\npartitions=4\n");
  FileJournalOptions o = f.Options();
  o.partitions = 4;
  auto j = OpenOrDie(o);
  EXPECT_GT(j->Stats().corrupt_records, 0u);
  std::vector<uint32_t> seen;
  ASSERT_TRUE(j->Scan(0, [&](const RecordView& v) {
                 seen.push_back(v.handle.partition);
                 return true;
               }).ok());
  for (uint32_t p : seen) EXPECT_LT(p, 4u);
  // Not indexed for dedupe either: the event of partition 5 is journaled again, not absorbed.
  auto again = MakeEvent(5);
  again->request.partition = 1;
  const AppendResult r = AppendOne(j.get(), again.get());
  ASSERT_TRUE(r.status.ok());
  EXPECT_FALSE(r.duplicate);
}

}  // namespace
}  // namespace dvrouter
