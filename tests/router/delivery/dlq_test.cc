// The dead-letter queue: appends, reopen, replay marks, recovery of damaged files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "router/delivery/dlq.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using ::dvrouter::testing::ReadFileOrDie;
using ::dvrouter::testing::TempDir;
using ::dvrouter::testing::WriteFileOrDie;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Msg(const Status& st) { return std::string(st.message()); }

uint64_t FileSize(const std::string& path) {
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  EXPECT_FALSE(ec) << path << ": " << ec.message();
  return ec ? 0 : static_cast<uint64_t>(size);
}

// ---------------------------------------------------------------------------------------------
// DeadLetterQueue

// A journal frame with the bytes that break naive text handling: NUL, newline, quote, 0xff.
std::string BinaryRecord(int variant) {
  static constexpr char kBytes[] = "frame\0with\nnul\"and\\newline\r\xff\xfe";
  std::string r(kBytes, sizeof(kBytes) - 1);
  r += std::to_string(variant);
  r.push_back('\0');
  r.push_back('\n');
  return r;
}

DlqEntry MakeEntry(const std::string& adapter, uint64_t seq, const std::string& event_id,
                   int variant = 0) {
  DlqEntry e;
  e.adapter = adapter;
  e.seq = seq;
  e.event_id = event_id;
  e.table = "contact";
  e.row_id = "4b5f4d1e-0000-4000-8000-00000000000" + std::to_string(variant % 10);
  e.message = "Update";
  e.reason = "permanent";
  e.attempts = 1;
  e.last_error = "HTTP 400";
  e.failed_at_ms = 1'700'000'000'000 + variant;
  e.record = BinaryRecord(variant);
  return e;
}

std::unique_ptr<DeadLetterQueue> OpenDlq(const std::string& path) {
  Result<std::unique_ptr<DeadLetterQueue>> q = DeadLetterQueue::Open(path);
  EXPECT_TRUE(q.ok()) << q.status().ToString();
  return q.ok() ? std::move(*q) : nullptr;
}

void AppendOne(DeadLetterQueue* q, DlqEntry e) {
  std::vector<DlqEntry> v{std::move(e)};
  Status st = q->Append(&v);
  ASSERT_TRUE(st.ok()) << st.ToString();
}

std::vector<uint64_t> Ids(const std::vector<DlqEntry>& entries) {
  std::vector<uint64_t> ids;
  for (const DlqEntry& e : entries) ids.push_back(e.id);
  return ids;
}

TEST(DlqAppend, AssignsIncreasingIdsAcrossCallsAndWritesThemBack) {
  TempDir dir;
  auto q = OpenDlq(dir.path() + "/dlq.log");
  ASSERT_NE(q, nullptr);
  std::vector<DlqEntry> batch{MakeEntry("lake", 10, "e1", 1), MakeEntry("lake", 11, "e2", 2)};
  ASSERT_TRUE(q->Append(&batch).ok());
  EXPECT_EQ(batch[0].id, 1u);
  EXPECT_EQ(batch[1].id, 2u);
  std::vector<DlqEntry> next{MakeEntry("hook", 12, "e3", 3)};
  ASSERT_TRUE(q->Append(&next).ok());
  EXPECT_EQ(next[0].id, 3u);
  EXPECT_THAT(Ids(q->List("", std::nullopt, true)), ElementsAre(1, 2, 3));
  EXPECT_EQ(q->damaged_lines(), 0u);
}

TEST(DlqReopen, EntriesSurviveWithEveryFieldAndIdsContinue) {
  TempDir dir;
  const std::string path = dir.path() + "/dlq.log";
  DlqEntry original = MakeEntry("lake", 42, "0123456789abcdef0123456789abcdef", 7);
  original.table = "msdyn_agentstatus";
  original.message = "Create";
  original.reason = "gave_up: max_attempts 5";
  original.attempts = 5;
  original.last_error = "sink said \"no\"\nsecond line\ttab \xc3\xa9";
  original.failed_at_ms = -12;  // before the epoch: the field is signed
  {
    auto q = OpenDlq(path);
    ASSERT_NE(q, nullptr);
    AppendOne(q.get(), MakeEntry("hook", 1, "other", 1));
    AppendOne(q.get(), original);
  }
  auto q = OpenDlq(path);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->damaged_lines(), 0u);
  std::vector<DlqEntry> all = q->List("", std::nullopt, true);
  ASSERT_EQ(all.size(), 2u);
  const DlqEntry& e = all[1];
  EXPECT_EQ(e.id, 2u);
  EXPECT_EQ(e.adapter, original.adapter);
  EXPECT_EQ(e.seq, original.seq);
  EXPECT_EQ(e.event_id, original.event_id);
  EXPECT_EQ(e.table, original.table);
  EXPECT_EQ(e.row_id, original.row_id);
  EXPECT_EQ(e.message, original.message);
  EXPECT_EQ(e.reason, original.reason);
  EXPECT_EQ(e.attempts, original.attempts);
  EXPECT_EQ(e.last_error, original.last_error);
  EXPECT_EQ(e.failed_at_ms, original.failed_at_ms);
  EXPECT_FALSE(e.replayed);
  EXPECT_TRUE(e.record.empty()) << "List leaves the record out";

  Result<DlqEntry> got = q->Get(2);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->record, original.record);
  EXPECT_EQ(got->last_error, original.last_error);
  EXPECT_EQ(got->event_id, original.event_id);

  DlqEntry later = MakeEntry("lake", 43, "later", 8);
  AppendOne(q.get(), later);
  EXPECT_THAT(Ids(q->List("", std::nullopt, true)), ElementsAre(1, 2, 3));
}

// An adapter's error text may be cut inside a character, or come in another encoding (libpq
// passes the server's messages on as they are): the entry must still be there after a restart.
TEST(DlqReopen, TextThatIsNotUtf8IsStoredValidAndSurvives) {
  TempDir dir;
  const std::string path = dir.path() + "/dlq.log";
  DlqEntry e = MakeEntry("lake", 7, "0123456789abcdef0123456789abcdef", 1);
  e.last_error =
      "ERREUR: \xe9"
      "chec \xff\xfe; cut in the middle of \xe2\x82";
  e.table = "acc\xc3";
  e.reason = "gave_up: \x80 attempts";
  DlqEntry long_error = MakeEntry("lake", 8, "fedcba9876543210fedcba9876543210", 2);
  long_error.last_error = std::string(3999, 'x') + "\xe2\x82\xac and more";
  std::vector<DlqEntry> listed;
  {
    auto q = OpenDlq(path);
    ASSERT_NE(q, nullptr);
    std::vector<DlqEntry> batch{e, long_error};
    ASSERT_TRUE(q->Append(&batch).ok());
    EXPECT_EQ(batch[0].last_error, "ERREUR: ?chec ??; cut in the middle of ??");
    EXPECT_EQ(batch[0].table, "acc?");
    EXPECT_EQ(batch[0].reason, "gave_up: ? attempts");
    EXPECT_EQ(batch[1].last_error.size(), 4000u);  // cut inside the euro sign
    EXPECT_TRUE(batch[1].last_error.ends_with("x?"));
    listed = q->List("", std::nullopt, true);
  }
  auto q = OpenDlq(path);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->damaged_lines(), 0u);
  std::vector<DlqEntry> after = q->List("", std::nullopt, true);
  ASSERT_EQ(after.size(), 2u);
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].last_error, listed[i].last_error);
    EXPECT_EQ(after[i].table, listed[i].table);
    EXPECT_EQ(after[i].reason, listed[i].reason);
  }
  EXPECT_EQ(after[0].event_id, e.event_id);
  Result<DlqEntry> full = q->Get(after[0].id);
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  EXPECT_EQ(full->record, e.record);  // the record's bytes are kept exactly (base64)
  EXPECT_EQ(full->last_error, "ERREUR: ?chec ??; cut in the middle of ??");
}

TEST(DlqGet, ReturnsTheRecordBytesExactly) {
  TempDir dir;
  auto q = OpenDlq(dir.path() + "/dlq.log");
  ASSERT_NE(q, nullptr);
  std::string every_byte;
  for (int b = 0; b < 256; ++b) every_byte.push_back(static_cast<char>(b));
  std::vector<DlqEntry> batch{MakeEntry("lake", 1, "a", 1), MakeEntry("lake", 2, "b", 2),
                              MakeEntry("lake", 3, "c", 3)};
  batch[1].record = every_byte + every_byte;
  batch[2].record.clear();  // an empty frame reads back empty
  ASSERT_TRUE(q->Append(&batch).ok());
  for (const DlqEntry& want : batch) {
    Result<DlqEntry> got = q->Get(want.id);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->id, want.id);
    EXPECT_EQ(got->seq, want.seq);
    EXPECT_EQ(got->record, want.record) << "entry " << want.id;
  }
  Result<DlqEntry> missing = q->Get(99);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST(DlqReplay, MarkReplayedHidesEntriesAndPersistsAcrossReopen) {
  TempDir dir;
  const std::string path = dir.path() + "/dlq.log";
  {
    auto q = OpenDlq(path);
    ASSERT_NE(q, nullptr);
    std::vector<DlqEntry> batch{MakeEntry("lake", 1, "a", 1), MakeEntry("lake", 2, "b", 2),
                                MakeEntry("lake", 3, "c", 3)};
    ASSERT_TRUE(q->Append(&batch).ok());
    ASSERT_EQ(q->Pending("lake"), 3u);
    ASSERT_TRUE(q->MarkReplayed({1, 3}).ok());
    EXPECT_THAT(Ids(q->List("", std::nullopt, false)), ElementsAre(2));
    EXPECT_EQ(q->Pending("lake"), 1u);
  }
  auto q = OpenDlq(path);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->damaged_lines(), 0u);
  EXPECT_THAT(Ids(q->List("", std::nullopt, false)), ElementsAre(2));
  std::vector<DlqEntry> all = q->List("", std::nullopt, true);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_TRUE(all[0].replayed);
  EXPECT_FALSE(all[1].replayed);
  EXPECT_TRUE(all[2].replayed);
  EXPECT_EQ(q->Pending("lake"), 1u);
  Result<DlqEntry> got = q->Get(3);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->replayed);
  EXPECT_EQ(got->record, BinaryRecord(3));
  // Replay markers do not take ids.
  AppendOne(q.get(), MakeEntry("lake", 4, "d", 4));
  EXPECT_THAT(Ids(q->List("", std::nullopt, true)), ElementsAre(1, 2, 3, 4));
}

// A DLQ of a sink that rejected everything for a day, all of it replayed since: every marker
// lands on its entry, on MarkReplayed and again when the file is read at start-up. (How long
// that takes: bench/dlq_bench.cc.)
TEST(DlqReplay, ManyEntriesAndMarkersApplyEachMarkerToItsEntry) {
  constexpr uint64_t kEntries = 50'000;
  TempDir dir;
  const std::string path = dir.path() + "/dlq.log";
  std::vector<uint64_t> replayed;
  {
    auto q = OpenDlq(path);
    ASSERT_NE(q, nullptr);
    std::vector<DlqEntry> batch;
    for (uint64_t i = 0; i < kEntries; ++i) {
      DlqEntry e = MakeEntry(i % 2 ? "lake" : "hook", i + 1, "e" + std::to_string(i),
                             static_cast<int>(i % 10));
      e.record = "r" + std::to_string(i);
      batch.push_back(std::move(e));
    }
    ASSERT_TRUE(q->Append(&batch).ok());
    // Everything but ids 7 and kEntries is replayed, newest first, in two calls, plus a marker
    // for an id the DLQ never had.
    for (uint64_t id = kEntries - 1; id >= 1; --id) {
      if (id != 7) replayed.push_back(id);
    }
    const auto half = replayed.begin() + static_cast<std::ptrdiff_t>(replayed.size() / 2);
    ASSERT_TRUE(q->MarkReplayed(std::vector<uint64_t>(replayed.begin(), half)).ok());
    ASSERT_TRUE(q->MarkReplayed(std::vector<uint64_t>(half, replayed.end())).ok());
    ASSERT_TRUE(q->MarkReplayed({kEntries + 100}).ok());
    EXPECT_THAT(Ids(q->List("", std::nullopt, false)), ElementsAre(7, kEntries));
    EXPECT_EQ(q->Pending("lake"), 1u);  // 7 is odd: lake
    EXPECT_EQ(q->Pending("hook"), 1u);
  }
  auto q = OpenDlq(path);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->damaged_lines(), 0u);
  EXPECT_THAT(Ids(q->List("", std::nullopt, false)), ElementsAre(7, kEntries));
  std::vector<DlqEntry> all = q->List("", std::nullopt, true);
  ASSERT_EQ(all.size(), kEntries);
  uint64_t marked = 0;
  for (const DlqEntry& e : all) marked += e.replayed;
  EXPECT_EQ(marked, kEntries - 2);
  EXPECT_EQ(q->Pending("lake") + q->Pending("hook"), 2u);
  for (uint64_t id : {uint64_t{1}, uint64_t{7}, kEntries / 2, kEntries}) {
    Result<DlqEntry> got = q->Get(id);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->id, id);
    EXPECT_EQ(got->record, "r" + std::to_string(id - 1));
    EXPECT_EQ(got->replayed, id != 7 && id != kEntries);
  }
  EXPECT_EQ(q->Get(kEntries + 100).status().code(), StatusCode::kNotFound);
  // Ids go on after the largest.
  AppendOne(q.get(), MakeEntry("lake", 1, "after", 1));
  EXPECT_THAT(Ids(q->List("lake", kEntries + 1, true)), ElementsAre(kEntries + 1));
}

TEST(DlqList, FiltersByAdapterIdAndReplayed) {
  TempDir dir;
  auto q = OpenDlq(dir.path() + "/dlq.log");
  ASSERT_NE(q, nullptr);
  std::vector<DlqEntry> batch{MakeEntry("lake", 1, "a", 1), MakeEntry("hook", 2, "b", 2),
                              MakeEntry("lake", 3, "c", 3), MakeEntry("hook", 4, "d", 4)};
  ASSERT_TRUE(q->Append(&batch).ok());
  ASSERT_TRUE(q->MarkReplayed({3}).ok());

  EXPECT_THAT(Ids(q->List("", std::nullopt, true)), ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(Ids(q->List("", std::nullopt, false)), ElementsAre(1, 2, 4));
  EXPECT_THAT(Ids(q->List("lake", std::nullopt, true)), ElementsAre(1, 3));
  EXPECT_THAT(Ids(q->List("lake", std::nullopt, false)), ElementsAre(1));
  EXPECT_THAT(Ids(q->List("hook", std::nullopt, false)), ElementsAre(2, 4));
  EXPECT_THAT(Ids(q->List("", 4, false)), ElementsAre(4));
  EXPECT_TRUE((Ids(q->List("lake", 4, true))).empty());
  EXPECT_TRUE((Ids(q->List("", 3, false))).empty());
  EXPECT_THAT(Ids(q->List("", 3, true)), ElementsAre(3));
  EXPECT_TRUE((Ids(q->List("nope", std::nullopt, true))).empty());
  for (const DlqEntry& e : q->List("", std::nullopt, true)) {
    EXPECT_TRUE(e.record.empty());
  }
}

TEST(DlqPending, CountsUnreplayedEntriesPerAdapter) {
  TempDir dir;
  auto q = OpenDlq(dir.path() + "/dlq.log");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->Pending("lake"), 0u);
  std::vector<DlqEntry> batch{MakeEntry("lake", 1, "a"), MakeEntry("lake", 2, "b"),
                              MakeEntry("hook", 3, "c")};
  ASSERT_TRUE(q->Append(&batch).ok());
  EXPECT_EQ(q->Pending("lake"), 2u);
  EXPECT_EQ(q->Pending("hook"), 1u);
  EXPECT_EQ(q->Pending("other"), 0u);
  ASSERT_TRUE(q->MarkReplayed({batch[2].id}).ok());
  EXPECT_EQ(q->Pending("lake"), 2u);
  EXPECT_EQ(q->Pending("hook"), 0u);
}

TEST(DlqFindEvent, ReturnsTheNewestEntryOfThatEventAndAdapter) {
  TempDir dir;
  auto q = OpenDlq(dir.path() + "/dlq.log");
  ASSERT_NE(q, nullptr);
  DlqEntry first = MakeEntry("lake", 5, "ev", 1);
  first.attempts = 1;
  DlqEntry second = MakeEntry("lake", 5, "ev", 2);
  second.attempts = 9;
  second.reason = "gave_up: max_age";
  std::vector<DlqEntry> batch{first, MakeEntry("hook", 5, "ev", 3), second,
                              MakeEntry("lake", 6, "other", 4)};
  ASSERT_TRUE(q->Append(&batch).ok());

  std::optional<DlqEntry> lake = q->FindEvent("ev", "lake");
  ASSERT_TRUE(lake.has_value());
  EXPECT_EQ(lake->id, 3u);
  EXPECT_EQ(lake->attempts, 9u);
  EXPECT_EQ(lake->reason, "gave_up: max_age");
  std::optional<DlqEntry> hook = q->FindEvent("ev", "hook");
  ASSERT_TRUE(hook.has_value());
  EXPECT_EQ(hook->id, 2u);
  EXPECT_FALSE(q->FindEvent("ev", "audit").has_value());
  EXPECT_FALSE(q->FindEvent("missing", "lake").has_value());
}

TEST(DlqRecovery, TornLastLineIsIgnoredAndCut) {
  TempDir dir;
  const std::string path = dir.path() + "/dlq.log";
  {
    auto q = OpenDlq(path);
    ASSERT_NE(q, nullptr);
    std::vector<DlqEntry> batch{MakeEntry("lake", 1, "a", 1), MakeEntry("lake", 2, "b", 2)};
    ASSERT_TRUE(q->Append(&batch).ok());
  }
  const std::string intact = ReadFileOrDie(path);
  ASSERT_FALSE(intact.empty());
  ASSERT_EQ(intact.back(), '\n');
  WriteFileOrDie(path, intact + "{\"id\":3,\"adapter\":\"lake\",\"seq\":3,\"event_");
  {
    auto q = OpenDlq(path);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q->damaged_lines(), 0u) << "a torn last line is not damage";
    EXPECT_THAT(Ids(q->List("", std::nullopt, true)), ElementsAre(1, 2));
    EXPECT_EQ(FileSize(path), intact.size()) << "the torn line is cut";
    AppendOne(q.get(), MakeEntry("lake", 3, "c", 3));
    EXPECT_THAT(Ids(q->List("", std::nullopt, true)), ElementsAre(1, 2, 3));
    Result<DlqEntry> got = q->Get(3);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->record, BinaryRecord(3));
  }
  auto q = OpenDlq(path);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->damaged_lines(), 0u);
  EXPECT_THAT(Ids(q->List("", std::nullopt, true)), ElementsAre(1, 2, 3));
  for (uint64_t id : {1, 2, 3}) {
    Result<DlqEntry> got = q->Get(id);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->record, BinaryRecord(static_cast<int>(id)));
  }
}

TEST(DlqRecovery, DamagedMiddleLineIsCountedAndSkipped) {
  TempDir dir;
  const std::string path = dir.path() + "/dlq.log";
  {
    auto q = OpenDlq(path);
    ASSERT_NE(q, nullptr);
    for (int i = 1; i <= 3; ++i) AppendOne(q.get(), MakeEntry("lake", i, "e", i));
  }
  std::string text = ReadFileOrDie(path);
  const size_t first_nl = text.find('\n');
  const size_t second_nl = text.find('\n', first_nl + 1);
  ASSERT_NE(second_nl, std::string::npos);
  text.replace(first_nl + 1, second_nl - first_nl, "{not json}\n");
  WriteFileOrDie(path, text);

  auto q = OpenDlq(path);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->damaged_lines(), 1u);
  EXPECT_THAT(Ids(q->List("", std::nullopt, true)), ElementsAre(1, 3));
  EXPECT_EQ(q->Pending("lake"), 2u);
  for (uint64_t id : {1, 3}) {
    Result<DlqEntry> got = q->Get(id);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->record, BinaryRecord(static_cast<int>(id)));
  }
  EXPECT_EQ(q->Get(2).status().code(), StatusCode::kNotFound);
  AppendOne(q.get(), MakeEntry("lake", 4, "e", 4));
  EXPECT_THAT(Ids(q->List("", std::nullopt, true)), ElementsAre(1, 3, 4));
  Result<DlqEntry> got = q->Get(4);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->record, BinaryRecord(4));
}

TEST(DlqOpen, FailsClearlyWhenTheDirectoryIsMissing) {
  TempDir dir;
  const std::string path = dir.path() + "/missing/dlq.log";
  Result<std::unique_ptr<DeadLetterQueue>> q = DeadLetterQueue::Open(path);
  ASSERT_FALSE(q.ok());
  EXPECT_THAT(Msg(q.status()), HasSubstr(path));
}

}  // namespace
}  // namespace dvrouter
