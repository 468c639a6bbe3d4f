// Preallocated segments (docs/architecture.md, "Preallocated segments"): the spare made on its
// own thread, appends written over zeros, recovery that cuts zeros without counting them as
// damage, a failed write that leaves no gap, and a spare that yields to events at the budget.
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "router/journal/file_journal.h"
#include "router/journal/segment_spare.h"
#include "tests/support/fault_io.h"
#include "tests/support/journal_events.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::AppendOne;
using testing::FaultIo;
using testing::MakeEvent;
using testing::OpenOrDie;
using testing::ReadAll;
using testing::SegmentFiles;
using testing::TempDir;
using Fixture = testing::JournalFixture;

namespace fs = std::filesystem;

constexpr uint64_t kSegment = 64 << 10;

bool AllZeros(const std::string& data) { return data.find_first_not_of('\0') == std::string::npos; }

uint64_t FileSize(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  return ec ? 0 : size;
}

// Polls TakeAs until a made spare is renamed to `to`.
bool TakeWhenMade(SegmentSpare* spare, const std::string& to) {
  return testing::WaitFor([&] {
    Result<bool> taken = spare->TakeAs(to);
    return taken.ok() && *taken;
  });
}

TEST(SegmentSpare, MakesASyncedFileOfZerosAndRenamesIt) {
  TempDir tmp;
  const std::string path = tmp.path() + "/next.spare";
  SegmentSpare spare(path, 3 * (1 << 20) + 5);
  Result<bool> early = spare.TakeAs(tmp.path() + "/a.seg");
  ASSERT_TRUE(early.ok());
  EXPECT_FALSE(*early) << "nothing was asked for";
  EXPECT_FALSE(spare.Pending());
  spare.Make();
  EXPECT_TRUE(spare.Pending());
  ASSERT_TRUE(TakeWhenMade(&spare, tmp.path() + "/a.seg"));
  EXPECT_FALSE(fs::exists(path));
  const std::string data = testing::ReadFileOrDie(tmp.path() + "/a.seg");
  EXPECT_EQ(data.size(), 3u * (1 << 20) + 5);
  EXPECT_TRUE(AllZeros(data));
  EXPECT_FALSE(spare.Pending());
  EXPECT_EQ(spare.failures(), 0u);
}

TEST(SegmentSpare, ASpareNeverReplacesAnExistingFile) {
  TempDir tmp;
  const std::string taken = tmp.path() + "/a.seg";
  testing::WriteFileOrDie(taken, "records");
  SegmentSpare spare(tmp.path() + "/next.spare", 1 << 20);
  spare.Make();
  Result<bool> result = false;
  ASSERT_TRUE(testing::WaitFor([&] {
    result = spare.TakeAs(taken);
    return !result.ok() || *result;
  }));
  EXPECT_FALSE(result.ok()) << "renamed over an existing file";
  EXPECT_EQ(testing::ReadFileOrDie(taken), "records");
  EXPECT_FALSE(fs::exists(tmp.path() + "/next.spare"));
  EXPECT_FALSE(spare.Pending());
  EXPECT_EQ(spare.failures(), 1u);
}

TEST(SegmentSpare, DiscardAndTheDestructorRemoveAnUnusedSpare) {
  TempDir tmp;
  const std::string path = tmp.path() + "/next.spare";
  {
    SegmentSpare spare(path, 1 << 20);
    spare.Make();
    ASSERT_TRUE(testing::WaitFor([&] { return FileSize(path) == (1u << 20); }));
    spare.Discard();
    EXPECT_FALSE(fs::exists(path));
    EXPECT_FALSE(spare.Pending());
    spare.Make();  // asked for again after a discard
    ASSERT_TRUE(testing::WaitFor([&] { return FileSize(path) == (1u << 20); }));
  }
  EXPECT_FALSE(fs::exists(path));
}

// A spare spread over ten minutes is cancelled at once: Discard wakes the thread from its wait for
// the next write's time.
TEST(SegmentSpare, DiscardDoesNotWaitForASlowSparesNextWrite) {
  TempDir tmp;
  const std::string path = tmp.path() + "/next.spare";
  SegmentSpare spare(path, 4 << 20);
  spare.Make(std::chrono::minutes(10));
  ASSERT_TRUE(testing::WaitFor([&] { return FileSize(path) > 0; }));  // its first write
  Result<bool> taken = spare.TakeAs(tmp.path() + "/a.seg");
  ASSERT_TRUE(taken.ok());
  EXPECT_FALSE(*taken) << "a spare still being written is not handed out";
  const auto start = std::chrono::steady_clock::now();
  spare.Discard();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(spare.Pending());
}

TEST(SegmentSpare, ASpareLeftByAnEarlierRunIsRemoved) {
  TempDir tmp;
  const std::string path = tmp.path() + "/next.spare";
  testing::WriteFileOrDie(path, "half-made");
  SegmentSpare spare(path, 1 << 20);
  EXPECT_FALSE(fs::exists(path));
}

TEST(SegmentSpare, ASpareThatCannotBeMadeIsCountedAndNotPending) {
  TempDir tmp;
  SegmentSpare spare(tmp.path() + "/missing/next.spare", 1 << 20);
  spare.Make();
  ASSERT_TRUE(testing::WaitFor([&] { return spare.failures() == 1; }));
  EXPECT_FALSE(spare.Pending());
  Result<bool> taken = spare.TakeAs(tmp.path() + "/a.seg");
  ASSERT_TRUE(taken.ok());
  EXPECT_FALSE(*taken);
}

FileJournalOptions Preallocating(Fixture& f) {
  FileJournalOptions o = f.Options();
  o.segment_bytes = kSegment;
  o.preallocate = true;
  return o;
}

TEST(PreallocatedJournal, AppendsWriteOverZerosAndRollIntoTheSpare) {
  Fixture f;
  const std::string spare = f.dir + "/next.spare";
  {
    auto j = OpenOrDie(Preallocating(f));
    auto segs = SegmentFiles(f.dir);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(FileSize(segs[0]), kSegment) << "a new journal's first segment is preallocated";
    ASSERT_TRUE(testing::WaitFor([&] { return j->Stats().spare_ready; }));
    EXPECT_EQ(FileSize(spare), kSegment);
    // The budget counts what the files hold: the segment and the spare.
    EXPECT_EQ(j->Stats().bytes, 2 * kSegment);
    for (int i = 0; i < 3; ++i) {
      auto e = MakeEvent(i, 10 << 10);
      ASSERT_TRUE(AppendOne(j.get(), e.get()).status.ok());
    }
    EXPECT_EQ(FileSize(segs[0]), kSegment)
        << "appends write over the zeros, the file does not grow";
    EXPECT_EQ(j->Stats().bytes, 2 * kSegment);
    for (int i = 3; i < 8; ++i) {  // six frames of ~10.3 KiB fill a segment; the seventh rolls
      auto e = MakeEvent(i, 10 << 10);
      ASSERT_TRUE(AppendOne(j.get(), e.get()).status.ok());
    }
    segs = SegmentFiles(f.dir);
    ASSERT_EQ(segs.size(), 2u);
    const uint64_t first_records = FileSize(segs[0]);
    EXPECT_LT(first_records, kSegment) << "a rolled segment is cut to its records";
    EXPECT_GT(first_records, 6u * (10 << 10));
    EXPECT_EQ(FileSize(segs[1]), kSegment) << "the new segment is the spare";
    EXPECT_EQ(j->Stats().rolls_without_spare, 0u);
    ASSERT_TRUE(testing::WaitFor([&] { return j->Stats().spare_ready; }));
    EXPECT_EQ(j->Stats().bytes, first_records + 2 * kSegment);
    EXPECT_EQ(ReadAll(f.dir).size(), 8u);
  }
  EXPECT_FALSE(fs::exists(spare)) << "a stop removes the unused spare";
  // The zeros after the newest records are cut on open, not counted as a torn tail.
  auto j = OpenOrDie(Preallocating(f));
  EXPECT_EQ(j->Stats().corrupt_records, 0u);
  EXPECT_EQ(j->Stats().truncated_bytes, 0u);
  EXPECT_EQ(j->Stats().next_seq, 9u);
  auto e = MakeEvent(100, 10 << 10);
  EXPECT_EQ(AppendOne(j.get(), e.get()).seq, 9u);
  EXPECT_EQ(ReadAll(f.dir).size(), 9u);
}

// Options of a journal whose segments grow (no preallocation), kSegment long.
FileJournalOptions GrowingSegments(Fixture& f) {
  FileJournalOptions o = f.Options();
  o.segment_bytes = kSegment;
  return o;
}

// Eight events of 10 KiB, six in the first segment and two in the second: the two files.
void WriteTwoSegments(const FileJournalOptions& o, std::vector<std::string>* segs) {
  {
    auto j = OpenOrDie(o);
    for (int i = 0; i < 8; ++i) {
      auto e = MakeEvent(i, 10 << 10);
      ASSERT_TRUE(AppendOne(j.get(), e.get()).status.ok());
    }
  }
  *segs = SegmentFiles(o.dir);
  ASSERT_EQ(segs->size(), 2u);
}

// Zeros after an older segment's records (a crash before its cut reached the disk) are not
// damage; a torn write before zeros counts only its own bytes.
TEST(PreallocatedJournal, RecoveryCutsZerosWithoutCountingThem) {
  Fixture f;
  const FileJournalOptions o = GrowingSegments(f);
  std::vector<std::string> segs;
  ASSERT_NO_FATAL_FAILURE(WriteTwoSegments(o, &segs));
  const uint64_t older = FileSize(segs[0]), newer = FileSize(segs[1]);
  fs::resize_file(segs[0], kSegment);  // zeros after the older segment's records
  {
    std::string torn = testing::ReadFileOrDie(segs[1]);
    torn += torn.substr(0, 700);  // the start of a frame, as a write cut short leaves it
    torn.append(kSegment - torn.size(), '\0');
    testing::WriteFileOrDie(segs[1], torn);
  }
  auto j = OpenOrDie(o);
  EXPECT_EQ(j->Stats().corrupt_records, 0u);
  EXPECT_EQ(j->Stats().truncated_bytes, 700u);
  EXPECT_EQ(FileSize(segs[0]), older);
  EXPECT_EQ(FileSize(segs[1]), newer);
  EXPECT_EQ(j->Stats().bytes, older + newer);
  EXPECT_EQ(ReadAll(f.dir).size(), 8u);
}

// After a failed write the zeros go with the torn bytes, and the next write starts right after
// the last record: no gap that a restart would count as damage.
TEST(PreallocatedJournal, AFailedWriteLeavesNoGapForTheNextOne) {
  Fixture f;
  FaultIo io;
  FileJournalOptions o = Preallocating(f);
  o.io = &io;
  {
    auto j = OpenOrDie(o);
    for (int i = 0; i < 2; ++i) {
      auto e = MakeEvent(i, 1000);
      ASSERT_TRUE(AppendOne(j.get(), e.get()).status.ok());
    }
    io.write_errno = EIO;
    io.partial_write = true;
    auto refused = MakeEvent(2, 1000);
    EXPECT_FALSE(AppendOne(j.get(), refused.get()).status.ok());
    // The zeros went with the torn bytes: the budget counts the records and the spare only.
    const auto segs = SegmentFiles(f.dir);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_LT(FileSize(segs[0]), kSegment);
    EXPECT_EQ(j->Stats().bytes, FileSize(segs[0]) + kSegment);
    io.write_errno = 0;
    io.partial_write = false;
    for (int i = 2; i < 4; ++i) {
      auto e = MakeEvent(i, 1000);
      AppendResult r = AppendOne(j.get(), e.get());
      ASSERT_TRUE(r.status.ok()) << r.status.ToString();
      EXPECT_EQ(r.seq, static_cast<uint64_t>(i + 1));
    }
  }
  auto j = OpenOrDie(f.Options());
  EXPECT_EQ(j->Stats().corrupt_records, 0u);
  EXPECT_EQ(j->Stats().truncated_bytes, 0u);
  const auto all = ReadAll(f.dir);
  ASSERT_EQ(all.size(), 4u);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].first, i + 1);
}

// The router's default configuration under the faults the growing journal is tested with: a
// failed fdatasync, short writes, and groups across a roll into the spare. Every acknowledged
// record reads back once, in order, and nothing counts as damage.
TEST(PreallocatedJournal, FaultsAndShortWritesLoseNoAcknowledgedRecord) {
  Fixture f;
  FaultIo io;
  FileJournalOptions o = Preallocating(f);
  o.io = &io;
  std::vector<std::string> acked;
  {
    auto j = OpenOrDie(o);
    const auto append = [&](int n) {
      auto e = MakeEvent(n, 10 << 10);
      const AppendResult r = AppendOne(j.get(), e.get());
      if (r.status.ok()) acked.push_back(e->body);
      return r;
    };
    ASSERT_TRUE(append(0).status.ok());
    io.sync_errno = EIO;
    EXPECT_FALSE(append(1).status.ok());
    io.sync_errno = 0;
    EXPECT_EQ(j->Stats().bytes, FileSize(SegmentFiles(f.dir)[0]) + kSegment)
        << "the failed group's zeros went with it";
    io.short_write = 3000;
    for (int n = 2; n < 5; ++n) ASSERT_TRUE(append(n).status.ok()) << n;
    io.short_write = 0;
    ASSERT_TRUE(testing::WaitFor([&] { return j->Stats().spare_ready; }));
    std::vector<std::unique_ptr<testing::Pending>> group;
    for (int n = 5; n < 17; ++n) group.push_back(MakeEvent(n, 10 << 10));
    for (auto& e : group) j->Append(&e->request);
    for (auto& e : group) {
      ASSERT_TRUE(e->Wait().status.ok());
      acked.push_back(e->body);
    }
    EXPECT_GE(SegmentFiles(f.dir).size(), 3u);
  }
  auto j = OpenOrDie(Preallocating(f));
  EXPECT_EQ(j->Stats().corrupt_records, 0u);
  EXPECT_EQ(j->Stats().truncated_bytes, 0u);
  const auto all = ReadAll(f.dir);
  ASSERT_EQ(all.size(), acked.size());
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].first, i + 1);
    EXPECT_EQ(all[i].second, acked[i]);
  }
}

// A spare never costs an event its room: at the budget it is given back before a refusal.
TEST(PreallocatedJournal, TheSpareYieldsToEventsAtTheBudget) {
  int accepted[2] = {0, 0};
  for (const bool preallocate : {false, true}) {
    Fixture f;
    FileJournalOptions o = f.Options();
    o.segment_bytes = kSegment;
    o.disk_budget_bytes = 96 << 10;
    o.preallocate = preallocate;
    auto j = OpenOrDie(o);
    const auto [n, refused] = testing::AppendEach(j.get(), 20, 10 << 10);
    accepted[preallocate] = n;
    // The spare gave its room to events, and none was made for the roll that followed.
    EXPECT_EQ(j->Stats().rolls_without_spare, preallocate ? 1u : 0u);
    EXPECT_EQ(refused.status.code(), StatusCode::kResourceExhausted) << preallocate;
    EXPECT_LE(j->Stats().bytes, o.disk_budget_bytes) << preallocate;
    EXPECT_FALSE(fs::exists(f.dir + "/next.spare")) << preallocate;
  }
  EXPECT_EQ(accepted[1], accepted[0]);
  EXPECT_EQ(accepted[0], 9);  // 9 frames of ~10.3 KiB fit in 96 KiB
}

// Zeros that no roll and no preallocated file explain are lost records: counted as before.
TEST(PreallocatedJournal, ZerosPreallocationCannotHaveLeftAreCounted) {
  Fixture f;
  const FileJournalOptions o = GrowingSegments(f);
  std::vector<std::string> segs;
  ASSERT_NO_FATAL_FAILURE(WriteTwoSegments(o, &segs));
  // The older segment's last record turned to zeros: the newer one is not named right after
  // the older one's last valid record.
  std::string older = testing::ReadFileOrDie(segs[0]);
  const size_t last = older.rfind("{\"n\":5,");
  ASSERT_NE(last, std::string::npos);
  const size_t frame = older.rfind(std::string("{\"n\":4,")) + (10 << 10);
  ASSERT_LT(frame, last);
  std::fill(older.begin() + static_cast<std::ptrdiff_t>(frame), older.end(), '\0');
  testing::WriteFileOrDie(segs[0], older);
  // The newest, not a preallocated file, ends in zeros after its records.
  const uint64_t newer = FileSize(segs[1]);
  fs::resize_file(segs[1], newer + 3000);
  auto j = OpenOrDie(o);
  EXPECT_EQ(j->Stats().corrupt_records, 1u) << "the older segment's zeros are damage";
  EXPECT_EQ(FileSize(segs[0]), older.size()) << "kept for inspection";
  EXPECT_EQ(j->Stats().truncated_bytes, 3000u);
  EXPECT_EQ(FileSize(segs[1]), newer);
  EXPECT_EQ(ReadAll(f.dir).size(), 7u);
}

TEST(PreallocatedJournal, ASpareLeftByAnEarlierRunIsRemovedWhenPreallocationIsOff) {
  Fixture f;
  { auto j = OpenOrDie(Preallocating(f)); }
  testing::WriteFileOrDie(f.dir + "/next.spare", std::string(4096, '\0'));
  FileJournalOptions o = Preallocating(f);
  o.preallocate = false;
  auto j = OpenOrDie(o);
  EXPECT_FALSE(fs::exists(f.dir + "/next.spare"));
}

// Delivered history yields to the spare as to events: with the budget full of delivered
// segments, each roll still finds a spare, and the files never exceed the budget.
TEST(PreallocatedJournal, DeliveredHistoryYieldsToTheSpare) {
  struct AllDelivered final : CommitListener {
    void OnCommitted(const RecordHandle&) override {}
    uint64_t ReclaimableBelow() override { return UINT64_MAX; }
  } listener;
  Fixture f;
  FileJournalOptions o = Preallocating(f);
  o.disk_budget_bytes = 4 * kSegment;
  o.listener = &listener;
  auto j = OpenOrDie(o);
  int n = 0;
  for (int segment = 0; segment < 8; ++segment) {
    ASSERT_TRUE(testing::WaitFor([&] { return j->Stats().spare_ready; })) << segment;
    for (int i = 0; i < 6; ++i, ++n) {  // six frames fill a segment; the next one rolls
      auto e = MakeEvent(n, 10 << 10);
      ASSERT_TRUE(AppendOne(j.get(), e.get()).status.ok()) << n;
      ASSERT_LE(testing::SegmentBytesOnDisk(f.dir), o.disk_budget_bytes) << n;
    }
  }
  EXPECT_EQ(j->Stats().rolls_without_spare, 0u);
  EXPECT_GT(j->Stats().reclaimed_bytes, 0u);
  EXPECT_LE(j->Stats().bytes, o.disk_budget_bytes);
}

}  // namespace
}  // namespace dvrouter
