// Tests of the delivery engine's stores and tables: the DLQ, the cursor file, the status table
// and the route table (with the loop guard).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "router/config/config.h"
#include "router/decode/attributes.h"
#include "router/decode/event.h"
#include "router/delivery/cursor_store.h"
#include "router/delivery/dlq.h"
#include "router/delivery/routing.h"
#include "router/delivery/status_table.h"
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

std::vector<std::string> DirectoryEntries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
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

TEST(DlqBase64, KnownVectors) {
  const std::vector<std::pair<std::string, std::string>> vectors = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
      {std::string("\xff\xfe", 2), "//4="},
      {std::string("\0", 1), "AA=="}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(Base64Encode(plain), encoded);
    std::string decoded = "stale";
    ASSERT_TRUE(Base64Decode(encoded, &decoded)) << encoded;
    EXPECT_EQ(decoded, plain);
  }
}

TEST(DlqBase64, RoundTripsEveryShortLengthAndRandomBytes) {
  std::mt19937 rng(20240607);
  std::uniform_int_distribution<int> byte(0, 255);
  for (size_t len = 0; len <= 10; ++len) {
    for (int trial = 0; trial < 50; ++trial) {
      std::string plain;
      for (size_t i = 0; i < len; ++i) plain.push_back(static_cast<char>(byte(rng)));
      const std::string encoded = Base64Encode(plain);
      EXPECT_EQ(encoded.size(), (len + 2) / 3 * 4);
      std::string decoded;
      ASSERT_TRUE(Base64Decode(encoded, &decoded)) << encoded;
      ASSERT_EQ(decoded, plain) << "length " << len;
    }
  }
  std::string big;
  for (int i = 0; i < 100'000; ++i) big.push_back(static_cast<char>(byte(rng)));
  std::string decoded;
  ASSERT_TRUE(Base64Decode(Base64Encode(big), &decoded));
  EXPECT_EQ(decoded, big);
}

TEST(DlqBase64, DecodeRejectsMalformedInput) {
  const std::vector<std::string> bad = {
      "Z",        "Zg",   "Zg=",    "Zm9vY",  // length not a multiple of 4
      "Zm9*",     "Zm 9", "Zm9v\n", "Zm-_",   // characters outside the alphabet
      "Zg==Zm9v", "Zm=v", "Z===",   "====",   // '=' in the middle or too early
      "Zm9vZ=g=", "=Zm9"};
  for (const std::string& text : bad) {
    std::string out;
    EXPECT_FALSE(Base64Decode(text, &out)) << "accepted '" << text << "'";
  }
  std::string with_nul("Zm\0v", 4);
  std::string out;
  EXPECT_FALSE(Base64Decode(with_nul, &out));
}

// ---------------------------------------------------------------------------------------------
// CursorStore, WriteFileAtomically, MakeDirectories

using CursorMap = std::map<std::string, std::vector<uint64_t>>;

Status LoadError(const std::string& path, const std::string& contents, uint32_t partitions) {
  WriteFileOrDie(path, contents);
  Result<CursorMap> r = CursorStore(path).Load(partitions);
  EXPECT_FALSE(r.ok()) << "accepted:\n" << contents;
  return r.ok() ? Status::Ok() : r.status();
}

TEST(CursorStore, MissingFileGivesAnEmptyMap) {
  TempDir dir;
  CursorStore store(dir.path() + "/cursors");
  Result<CursorMap> r = store.Load(8);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(store.path(), dir.path() + "/cursors");
}

TEST(CursorStore, SaveThenLoadRoundTrips) {
  TempDir dir;
  const std::string path = dir.path() + "/cursors";
  constexpr uint32_t kPartitions = 16;
  CursorMap cursors;
  for (uint32_t p = 0; p < kPartitions; ++p) {
    cursors["lake"].push_back(p * 1000 + 7);
    cursors["audit-hook_2"].push_back(p == 3 ? UINT64_MAX : p);
  }
  CursorStore store(path);
  ASSERT_TRUE(store.Save(cursors).ok());
  Result<CursorMap> r = store.Load(kPartitions);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, cursors);
  EXPECT_THAT(DirectoryEntries(dir.path()), ElementsAre("cursors")) << "no .tmp left behind";
  EXPECT_EQ(ReadFileOrDie(path).substr(0, 19), "dvrouter-cursors 1\n");

  // A second Save replaces the first whole.
  CursorMap fewer{{"lake", std::vector<uint64_t>(kPartitions, 99)}};
  ASSERT_TRUE(store.Save(fewer).ok());
  Result<CursorMap> again = CursorStore(path).Load(kPartitions);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, fewer);
  EXPECT_THAT(DirectoryEntries(dir.path()), ElementsAre("cursors"));
}

TEST(CursorStore, MissingPartitionsLoadAsZero) {
  TempDir dir;
  const std::string path = dir.path() + "/cursors";
  WriteFileOrDie(path, "dvrouter-cursors 1\nlake 2 50\n\nlake 0 10\n");
  Result<CursorMap> r = CursorStore(path).Load(4);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, (CursorMap{{"lake", {10, 0, 50, 0}}}));
}

TEST(CursorStore, BadMagicLineIsInvalidArgumentNamingThePath) {
  TempDir dir;
  const std::string path = dir.path() + "/cursors";
  for (const std::string& contents :
       {std::string("lake 0 5\n"), std::string("dvrouter-cursors 2\nlake 0 5\n"),
        std::string("")}) {
    Status st = LoadError(path, contents, 4);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << contents;
    EXPECT_THAT(Msg(st), HasSubstr(path)) << contents;
    EXPECT_THAT(Msg(st), HasSubstr("first line")) << contents;
  }
}

TEST(CursorStore, MalformedLinesNameThePathAndLineNumber) {
  TempDir dir;
  const std::string path = dir.path() + "/cursors";
  const std::string head = "dvrouter-cursors 1\nlake 0 1\n";  // the bad line is line 3
  const std::vector<std::string> bad_lines = {
      "lake 1\n",                          // too few fields
      "lake 1 5 6\n",                      // too many fields
      "lake\n",                            //
      "lake x 5\n",                        // partition not a number
      "lake 1 five\n",                     // cursor not a number
      "lake 1 5x\n",                       // trailing garbage
      "lake 1 1.5\n",                      //
      "lake 1 99999999999999999999999\n",  // overflows uint64
  };
  for (const std::string& line : bad_lines) {
    Status st = LoadError(path, head + line, 4);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << line;
    EXPECT_THAT(Msg(st), HasSubstr(path + ":3:")) << line;
  }
}

TEST(CursorStore, PartitionOutOfRangeIsInvalidArgument) {
  TempDir dir;
  const std::string path = dir.path() + "/cursors";
  Status st = LoadError(path, "dvrouter-cursors 1\nlake 0 1\nlake 3 1\nlake 4 1\n", 4);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(st), HasSubstr(path + ":4:"));
  EXPECT_THAT(Msg(st), HasSubstr("partition 4 is out of range (4 partitions)"));
}

// A cursor is a seq: a negative one is not a number the file can hold. Read as unsigned it
// would wrap to ~2^64 and mark every event of the partition as delivered.
TEST(CursorStore, NegativeNumbersAreRejected) {
  TempDir dir;
  const std::string path = dir.path() + "/cursors";
  Status st = LoadError(path, "dvrouter-cursors 1\nlake 0 -5\n", 4);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(st), HasSubstr(path + ":2:"));
  Status partition = LoadError(path, "dvrouter-cursors 1\nlake -1 5\n", 4);
  EXPECT_EQ(partition.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(partition), HasSubstr(path + ":2:"));
}

TEST(CursorStore, SaveFailsWhenTheDirectoryIsMissing) {
  TempDir dir;
  CursorStore store(dir.path() + "/missing/cursors");
  Status st = store.Save({{"lake", {1, 2}}});
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(Msg(st), HasSubstr(dir.path() + "/missing/cursors.tmp"));
}

TEST(CursorWriteFileAtomically, ReplacesContentsAndLeavesNoTemporary) {
  TempDir dir;
  ASSERT_TRUE(WriteFileAtomically(dir.path(), "state", "one").ok());
  EXPECT_EQ(ReadFileOrDie(dir.path() + "/state"), "one");
  ASSERT_TRUE(WriteFileAtomically(dir.path(), "state", std::string("t\0o", 3)).ok());
  EXPECT_EQ(ReadFileOrDie(dir.path() + "/state"), std::string("t\0o", 3));
  ASSERT_TRUE(WriteFileAtomically(dir.path(), "state", "").ok());
  EXPECT_EQ(ReadFileOrDie(dir.path() + "/state"), "");
  EXPECT_THAT(DirectoryEntries(dir.path()), ElementsAre("state"));
  EXPECT_TRUE(SyncDirectory(dir.path()).ok());
  EXPECT_FALSE(SyncDirectory(dir.path() + "/state").ok());
}

TEST(CursorMakeDirectories, CreatesNestedDirectoriesIdempotently) {
  TempDir dir;
  const std::string deep = dir.path() + "/a/b/c";
  Status st = MakeDirectories(deep);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(std::filesystem::is_directory(deep));
  EXPECT_TRUE(MakeDirectories(deep).ok()) << "existing directories are fine";
  EXPECT_TRUE(MakeDirectories(dir.path() + "/a/b/d/").ok()) << "a trailing slash is fine";
  EXPECT_TRUE(std::filesystem::is_directory(dir.path() + "/a/b/d"));
  EXPECT_TRUE(MakeDirectories("").ok());
}

TEST(CursorMakeDirectories, FailsWhenAComponentIsARegularFile) {
  TempDir dir;
  const std::string file = dir.path() + "/plain";
  WriteFileOrDie(file, "x");
  Status below = MakeDirectories(file + "/sub/dir");
  EXPECT_FALSE(below.ok());
  EXPECT_THAT(Msg(below), HasSubstr(file + "/sub"));
  EXPECT_FALSE(std::filesystem::exists(file + "/sub"));

  Status itself = MakeDirectories(file);
  EXPECT_FALSE(itself.ok());
  EXPECT_EQ(itself.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(itself), HasSubstr(file + " is not a directory"));
}

// ---------------------------------------------------------------------------------------------
// StatusTable

EventKey Key(uint64_t hi, uint64_t lo = 0) { return EventKey{hi, lo}; }

TEST(StatusTable, UpdateCreatesARecordWithEveryAdapterPending) {
  StatusTable table(1000, 3);
  EXPECT_FALSE(table.Find(Key(1, 2)).has_value());
  table.Update(Key(1, 2), 77, 1, [](AdapterStatus& s) {
    s.state = EventState::kSubmitted;
    s.attempts = 1;
    s.updated_ms = 123;
  });
  std::optional<EventStatus> st = table.Find(Key(1, 2));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->seq, 77u);
  ASSERT_EQ(st->adapters.size(), 3u);
  EXPECT_EQ(st->adapters[0].state, EventState::kPending);
  EXPECT_EQ(st->adapters[0].attempts, 0u);
  EXPECT_EQ(st->adapters[1].state, EventState::kSubmitted);
  EXPECT_EQ(st->adapters[1].attempts, 1u);
  EXPECT_EQ(st->adapters[1].updated_ms, 123);
  EXPECT_EQ(st->adapters[2].state, EventState::kPending);
  EXPECT_FALSE(table.Find(Key(1, 3)).has_value()) << "lo is part of the key";
  EXPECT_FALSE(table.Find(Key(2, 2)).has_value());
}

TEST(StatusTable, FindReturnsLaterUpdates) {
  StatusTable table(1000, 2);
  table.Update(Key(5, 5), 10, 0, [](AdapterStatus& s) { s.state = EventState::kSubmitted; });
  table.Update(Key(5, 5), 999, 0, [](AdapterStatus& s) {
    s.state = EventState::kFailed;
    s.attempts = 4;
    s.last_error = "HTTP 503";
  });
  table.Update(Key(5, 5), 999, 1, [](AdapterStatus& s) {
    s.state = EventState::kCompleted;
    s.answer = "{\"ok\":true}";
  });
  std::optional<EventStatus> st = table.Find(Key(5, 5));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->seq, 10u) << "the seq is the one the record was created with";
  EXPECT_EQ(st->adapters[0].state, EventState::kFailed);
  EXPECT_EQ(st->adapters[0].attempts, 4u);
  EXPECT_EQ(st->adapters[0].last_error, "HTTP 503");
  EXPECT_EQ(st->adapters[1].state, EventState::kCompleted);
  EXPECT_EQ(st->adapters[1].answer, "{\"ok\":true}");
}

// A full table reuses the oldest record's storage for a new event: nothing of it carries over.
TEST(StatusTable, ANewEventInAFullTableStartsClean) {
  StatusTable table(16, 2);  // one record per shard
  RecordHandle where;
  where.seq = 3;
  where.length = 100;
  table.Update(
      Key(0, 1), 3, 1,
      [](AdapterStatus& s) {
        s.state = EventState::kFailed;
        s.attempts = 7;
        s.updated_ms = 55;
        s.last_error = "HTTP 500";
        s.answer = "{\"order\":1}";
      },
      &where);
  // Same shard (hi % 16 == 0): the first record goes.
  table.Update(Key(16, 2), 9, 0, [](AdapterStatus& s) { s.attempts = 1; });
  EXPECT_FALSE(table.Find(Key(0, 1)).has_value());
  std::optional<EventStatus> st = table.Find(Key(16, 2));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->seq, 9u);
  EXPECT_EQ(st->handle.length, 0u) << "the evicted event's journal position carried over";
  ASSERT_EQ(st->adapters.size(), 2u);
  EXPECT_EQ(st->adapters[0].attempts, 1u);
  EXPECT_EQ(st->adapters[1].state, EventState::kPending);
  EXPECT_EQ(st->adapters[1].attempts, 0u);
  EXPECT_EQ(st->adapters[1].updated_ms, 0);
  EXPECT_EQ(st->adapters[1].last_error, "");
  EXPECT_EQ(st->adapters[1].answer, "");
}

TEST(StatusTable, CapacityEvictsTheOldestEvents) {
  constexpr size_t kCapacity = 64;
  StatusTable table(kCapacity, 1);
  // Sequential keys spread evenly over the shards; the first 16 are the oldest.
  for (uint64_t i = 0; i < kCapacity + 16; ++i) {
    table.Update(Key(i, i), i, 0, [](AdapterStatus& s) { s.attempts = 1; });
  }
  for (uint64_t i = 0; i < 16; ++i) {
    EXPECT_FALSE(table.Find(Key(i, i)).has_value()) << "key " << i << " should be evicted";
  }
  for (uint64_t i = 16; i < kCapacity + 16; ++i) {
    std::optional<EventStatus> st = table.Find(Key(i, i));
    ASSERT_TRUE(st.has_value()) << "key " << i;
    EXPECT_EQ(st->seq, i);
  }
  // Updating an existing record does not evict anything.
  table.Update(Key(20, 20), 20, 0, [](AdapterStatus& s) { s.attempts = 2; });
  EXPECT_TRUE(table.Find(Key(36, 36)).has_value());
  EXPECT_EQ(table.Find(Key(20, 20))->adapters[0].attempts, 2u);
}

TEST(StatusTable, ZeroCapacityDisablesTheTable) {
  StatusTable table(0, 2);
  int calls = 0;
  table.Update(Key(1, 1), 1, 0, [&](AdapterStatus&) { ++calls; });
  EXPECT_EQ(calls, 0);
  EXPECT_FALSE(table.Find(Key(1, 1)).has_value());
}

TEST(StatusTable, StateNames) {
  EXPECT_EQ(EventStateName(EventState::kPending), "pending");
  EXPECT_EQ(EventStateName(EventState::kSubmitted), "submitted");
  EXPECT_EQ(EventStateName(EventState::kProcessing), "processing");
  EXPECT_EQ(EventStateName(EventState::kCompleted), "completed");
  EXPECT_EQ(EventStateName(EventState::kFailed), "failed");
}

// ---------------------------------------------------------------------------------------------
// RouteTable

constexpr char kContactUpdate[] = "update-contact-postop-async.json";
constexpr char kAgentCreate[] = "create-msdyn_agentstatus-postop-sync.json";
constexpr char kContactUser[] = "75c2dd85-e89e-e711-8122-000d3aa2331c";

const std::vector<std::string> kAdapters = {"lake", "hook", "audit"};
constexpr uint64_t kLake = 1, kHook = 2, kAudit = 4;

EventHeader Header(const std::string& message, const std::string& table, int32_t stage = 40,
                   const std::string& user = kContactUser) {
  EventHeader h;
  h.message_name = message;
  h.primary_entity_name = table;
  h.stage = stage;
  h.initiating_user_id = user;
  return h;
}

RouteConfig Route(std::vector<std::string> adapters) {
  RouteConfig r;
  r.adapters = std::move(adapters);
  return r;
}

class RouteTableTest : public ::testing::Test {
 protected:
  // Match with the body of fixture `fixture`.
  RouteVerdict MatchBody(const RouteTable& table, const EventHeader& h, const std::string& fixture,
                         uint64_t* mask) {
    body_ = testing::Fixture(fixture);
    *mask = 0xdead;  // Match must overwrite it
    return table.Match(h, body_, &extractor_, mask);
  }

  AttributeExtractor extractor_{1 << 20};
  std::string body_;
};

using RouteMatch = RouteTableTest;

TEST_F(RouteMatch, OnTablesCaseInsensitively) {
  RouteConfig contacts = Route({"lake"});
  contacts.tables = {"contact"};
  RouteConfig accounts = Route({"hook"});
  accounts.tables = {"account", "lead"};
  RouteTable table({contacts, accounts}, LoopGuardConfig{}, kAdapters);
  EXPECT_FALSE(table.needs_columns());
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake);
  EXPECT_EQ(MatchBody(table, Header("Update", "Contact"), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake);
  EXPECT_EQ(MatchBody(table, Header("Update", "lead"), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kHook);
  EXPECT_EQ(MatchBody(table, Header("Create", "msdyn_agentstatus"), kAgentCreate, &mask),
            RouteVerdict::kUnrouted);
  EXPECT_EQ(mask, 0u);
  EXPECT_EQ(MatchBody(table, Header("Update", "contacts"), kContactUpdate, &mask),
            RouteVerdict::kUnrouted)
      << "no prefix matching";
}

TEST_F(RouteMatch, OnMessagesCaseInsensitively) {
  RouteConfig updates = Route({"hook"});
  updates.messages = {"update", "delete"};
  RouteTable table({updates}, LoopGuardConfig{}, kAdapters);
  uint64_t mask = 0;
  for (const char* message : {"Update", "update", "UPDATE", "Delete"}) {
    EXPECT_EQ(MatchBody(table, Header(message, "contact"), kContactUpdate, &mask),
              RouteVerdict::kRouted)
        << message;
    EXPECT_EQ(mask, kHook) << message;
  }
  EXPECT_EQ(MatchBody(table, Header("Create", "contact"), kContactUpdate, &mask),
            RouteVerdict::kUnrouted);
  EXPECT_EQ(mask, 0u);
}

TEST_F(RouteMatch, OnStages) {
  RouteConfig post = Route({"audit"});
  post.stages = {40};
  RouteConfig pre = Route({"hook"});
  pre.stages = {10, 20};
  RouteTable table({post, pre}, LoopGuardConfig{}, kAdapters);
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Update", "contact", 40), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kAudit);
  EXPECT_EQ(MatchBody(table, Header("Update", "contact", 20), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kHook);
  EXPECT_EQ(MatchBody(table, Header("Update", "contact", 30), kContactUpdate, &mask),
            RouteVerdict::kUnrouted);
}

TEST_F(RouteMatch, OnChangedColumns) {
  // update-contact's Target: firstname, contactid, fullname, yomifullname, modifiedon, ...
  RouteConfig names = Route({"lake"});
  names.changed_columns = {"emailaddress1", "FirstName"};
  RouteConfig email = Route({"hook"});
  email.changed_columns = {"emailaddress1"};
  RouteConfig id_only = Route({"audit"});
  id_only.changed_columns = {"contactid"};
  RouteTable table({names, email, id_only}, LoopGuardConfig{}, kAdapters);
  EXPECT_TRUE(table.needs_columns());
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake) << "the primary id column never counts as changed";

  // The Create's Target has msdyn_agentstatusid, statecode, ...: none of the columns above.
  EXPECT_EQ(MatchBody(table, Header("Create", "msdyn_agentstatus"), kAgentCreate, &mask),
            RouteVerdict::kUnrouted);
  EXPECT_EQ(mask, 0u);

  RouteConfig state = Route({"audit"});
  state.changed_columns = {"statecode"};
  RouteTable by_state({state}, LoopGuardConfig{}, kAdapters);
  EXPECT_EQ(MatchBody(by_state, Header("Create", "msdyn_agentstatus"), kAgentCreate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kAudit);
  EXPECT_EQ(MatchBody(by_state, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kUnrouted);
}

TEST_F(RouteMatch, UnionOfEveryMatchingRoute) {
  RouteConfig contacts = Route({"lake"});
  contacts.tables = {"contact"};
  RouteConfig updates = Route({"hook"});
  updates.messages = {"update"};
  RouteConfig pre = Route({"audit"});
  pre.stages = {20};
  RouteConfig everything = Route({"lake"});
  RouteTable table({contacts, updates, pre}, LoopGuardConfig{}, kAdapters);
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Update", "contact", 40), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake | kHook);
  EXPECT_EQ(MatchBody(table, Header("Update", "contact", 20), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake | kHook | kAudit);
  EXPECT_EQ(MatchBody(table, Header("Create", "msdyn_agentstatus", 40), kAgentCreate, &mask),
            RouteVerdict::kUnrouted);

  RouteConfig two = Route({"hook", "audit"});
  two.tables = {"msdyn_agentstatus"};
  RouteTable with_all({everything, two}, LoopGuardConfig{}, kAdapters);
  EXPECT_EQ(MatchBody(with_all, Header("Create", "msdyn_agentstatus"), kAgentCreate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake | kHook | kAudit);
  EXPECT_EQ(MatchBody(with_all, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake);
}

TEST_F(RouteMatch, NoRoutesLeavesEverythingUnrouted) {
  RouteTable table({}, LoopGuardConfig{}, kAdapters);
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kUnrouted);
  EXPECT_EQ(mask, 0u);
}

TEST_F(RouteMatch, LoopGuardSkipsTheRoutersOwnUserCaseInsensitively) {
  LoopGuardConfig guard;
  guard.user_ids = {"00000000-0000-0000-0000-000000000001", "75C2DD85-E89E-E711-8122-000D3AA2331C"};
  RouteTable table({Route({"lake"})}, guard, kAdapters);
  EXPECT_FALSE(table.needs_columns());
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kLoopUser);
  EXPECT_EQ(mask, 0u);
  EXPECT_EQ(
      MatchBody(table, Header("Update", "contact", 40, "00000000-0000-0000-0000-000000000002"),
                kContactUpdate, &mask),
      RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake);
  EXPECT_EQ(MatchBody(table, Header("Update", "contact", 40, ""), kContactUpdate, &mask),
            RouteVerdict::kRouted)
      << "an event without an initiating user is not the router's";
  EXPECT_EQ(mask, kLake);
}

TEST_F(RouteMatch, IgnoreColumnsSkipsUpdatesChangingOnlyThoseColumns) {
  // Every column of update-contact's Target except the primary id (contactid).
  const std::vector<std::string> all_but_id = {"firstname",  "FullName",   "yomifullname",
                                               "modifiedon", "modifiedby", "modifiedonbehalfby"};
  LoopGuardConfig guard;
  guard.ignore_columns = all_but_id;
  RouteTable table({Route({"lake"})}, guard, kAdapters);
  EXPECT_TRUE(table.needs_columns());
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kIgnoredColumns);
  EXPECT_EQ(mask, 0u);
  EXPECT_EQ(MatchBody(table, Header("update", "Contact"), kContactUpdate, &mask),
            RouteVerdict::kIgnoredColumns);

  // The same change reported as a Create is never skipped for its columns.
  EXPECT_EQ(MatchBody(table, Header("Create", "contact"), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake);

  // One more changed column (firstname) outside the list: routed.
  LoopGuardConfig partial;
  partial.ignore_columns = {"fullname", "yomifullname", "modifiedon", "modifiedby",
                            "modifiedonbehalfby"};
  RouteTable routed({Route({"lake"})}, partial, kAdapters);
  EXPECT_EQ(MatchBody(routed, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake);
}

TEST_F(RouteMatch, IgnoreColumnsNeverSkipsACreate) {
  const std::vector<std::string> agent_columns = {"msdyn_capacitymodifiedon",
                                                  "owningbusinessunit",
                                                  "modifiedon",
                                                  "modifiedonbehalfby",
                                                  "msdyn_presencemodifiedby",
                                                  "msdyn_currentpresenceid",
                                                  "msdyn_presencemodifiedon",
                                                  "statecode",
                                                  "statuscode",
                                                  "msdyn_isagentloggedin",
                                                  "createdby",
                                                  "timezoneruleversionnumber",
                                                  "msdyn_agentid",
                                                  "ownerid",
                                                  "msdyn_availableunitscapacity",
                                                  "msdyn_isblockedbysomeprofile",
                                                  "owninguser",
                                                  "modifiedby",
                                                  "createdon"};
  LoopGuardConfig guard;
  guard.ignore_columns = agent_columns;
  RouteTable table({Route({"audit"})}, guard, kAdapters);
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Create", "msdyn_agentstatus"), kAgentCreate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kAudit);
  // The same body as an Update: every changed column is ignored.
  EXPECT_EQ(MatchBody(table, Header("Update", "msdyn_agentstatus"), kAgentCreate, &mask),
            RouteVerdict::kIgnoredColumns);
  EXPECT_EQ(mask, 0u);
}

TEST_F(RouteMatch, LoopUserIsCheckedBeforeColumns) {
  LoopGuardConfig guard;
  guard.user_ids = {kContactUser};
  guard.ignore_columns = {"emailaddress1"};
  RouteTable table({Route({"lake"})}, guard, kAdapters);
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kLoopUser);
  EXPECT_EQ(
      MatchBody(table, Header("Update", "contact", 40, "someone-else"), kContactUpdate, &mask),
      RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake);
}

}  // namespace
}  // namespace dvrouter
