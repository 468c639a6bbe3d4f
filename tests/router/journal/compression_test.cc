// The compressed journal: bodies round-trip byte for byte through appends, recovery, Scan and
// Read; readers get plain frames; a damaged compressed frame is skipped like any corrupt frame;
// journals written before compression (format 1) still open, read and take new records.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "router/journal/file_journal.h"
#include "router/journal/record.h"
#include "tests/support/journal_events.h"

namespace dvrouter {
namespace {

using testing::AppendOne;
using testing::HandleLog;
using testing::JournalFixture;
using testing::MakeEvent;
using testing::OpenOrDie;
using testing::Pending;
using testing::SegmentFiles;

FileJournalOptions Compressed(JournalFixture& f) {
  FileJournalOptions o = f.Options();
  o.compression = Codec::kZstd;
  return o;
}

// Bodies worth testing: the fixtures, tiny ones, incompressible random bytes of several sizes,
// a large compressible one.
std::vector<std::string> Bodies() {
  std::vector<std::string> out;
  for (const std::string& name : testing::FixtureNames()) out.push_back(testing::Fixture(name));
  out.push_back("");
  out.push_back("{}");
  out.push_back(std::string(255, 'a'));
  out.push_back(std::string(100'000, 'a'));
  std::mt19937_64 rng(42);
  for (size_t n : {1u, 300u, 4096u, 70'000u, 1u << 20}) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    out.push_back(std::move(s));
  }
  // A large compressible body, then a small one again.
  std::string large;
  while (large.size() < 600'000) large += testing::Fixture(testing::FixtureNames().front());
  out.push_back(std::move(large));
  out.push_back(testing::Fixture(testing::FixtureNames().back()));
  return out;
}

std::unique_ptr<Pending> EventWithBody(int n, std::string body) {
  auto e = MakeEvent(n);
  e->body = std::move(body);
  e->request.body = e->body;
  return e;
}

TEST(JournalCompression, EveryBodyRoundTripsThroughScanReadAndRecovery) {
  JournalFixture f;
  const auto bodies = Bodies();
  HandleLog handles;
  FileJournalOptions o = Compressed(f);
  o.listener = &handles;
  uint64_t raw_bytes = 0;
  {
    auto j = OpenOrDie(o);
    for (size_t i = 0; i < bodies.size(); ++i) {
      auto e = EventWithBody(static_cast<int>(i), bodies[i]);
      ASSERT_TRUE(AppendOne(j.get(), e.get()).status.ok()) << i;
      raw_bytes += bodies[i].size();
    }
  }
  ASSERT_EQ(handles.size(), bodies.size());
  o.listener = nullptr;
  auto j = OpenOrDie(o);
  EXPECT_EQ(j->Stats().corrupt_records, 0u);
  size_t seen = 0;
  ASSERT_TRUE(j->Scan(0, [&](const RecordView& v) {
                 EXPECT_EQ(v.body, bodies[seen]) << "scan of body " << seen;
                 ++seen;
                 return true;
               }).ok());
  EXPECT_EQ(seen, bodies.size());
  for (size_t i = 0; i < handles.size(); ++i) {
    testing::PlainRead r;
    ASSERT_NO_FATAL_FAILURE(testing::ReadPlainFrame(j.get(), handles[i], &r)) << i;
    EXPECT_EQ(r.view.body, bodies[i]) << "read of body " << i;
    // The buffer holds a plain frame whatever the disk holds.
    EXPECT_EQ(r.meta.codec, Codec::kNone);
    EXPECT_EQ(r.frame_len, r.buffer.size());
    EXPECT_EQ(r.frame_body, bodies[i]);
    EXPECT_EQ(r.meta.seq, handles[i].seq);
  }
  // The repetitive bodies shrank on disk (the random ones are stored as they are).
  EXPECT_LT(j->Stats().bytes, raw_bytes);
  // FileJournal::ScanDirectory (the CLI's reader) decompresses too.
  seen = 0;
  j->Stop();
  ASSERT_TRUE(FileJournal::ScanDirectory(f.dir, [&](const RecordView& v) {
                EXPECT_EQ(v.body, bodies[seen]);
                ++seen;
                return true;
              }).ok());
  EXPECT_EQ(seen, bodies.size());
}

TEST(JournalCompression, FixturesShrinkSeveralTimes) {
  JournalFixture f;
  uint64_t raw = 0;
  {
    auto j = OpenOrDie(Compressed(f));
    int n = 0;
    for (const std::string& name : testing::FixtureNames()) {
      auto e = EventWithBody(n++, testing::Fixture(name));
      raw += e->body.size();
      ASSERT_TRUE(AppendOne(j.get(), e.get()).status.ok());
    }
  }
  uint64_t on_disk = 0;
  for (const auto& s : SegmentFiles(f.dir)) on_disk += std::filesystem::file_size(s);
  EXPECT_LT(on_disk * 3, raw) << on_disk << " bytes on disk for " << raw << " bytes of bodies";
}

TEST(JournalCompression, ReadsIntoOneBufferKeepThePaddingAndDoNotGrowIt) {
  JournalFixture f;
  RecordHandle handle;
  struct Listener final : CommitListener {
    RecordHandle* out;
    void OnCommitted(const RecordHandle& h) override { *out = h; }
  } listener;
  listener.out = &handle;
  FileJournalOptions o = Compressed(f);
  o.listener = &listener;
  auto j = OpenOrDie(o);
  auto e = EventWithBody(1, testing::Fixture("update-contact-postop-async.json"));
  ASSERT_TRUE(AppendOne(j.get(), e.get()).status.ok());
  std::string buffer;
  EventHeader header;
  RecordView view;
  size_t settled_capacity = 0;
  for (int i = 0; i < 1000; ++i) {
    buffer.reserve(handle.length + 64);
    ASSERT_TRUE(j->Read(handle, &buffer, &header, &view).ok());
    const size_t body_end =
        static_cast<size_t>(view.body.data() + view.body.size() - buffer.data());
    ASSERT_GE(buffer.capacity() - body_end, 64u) << "read " << i;
    if (i == 1) settled_capacity = buffer.capacity();
  }
  EXPECT_EQ(view.body, e->body);
  // Settled after the first reads: not one body more per read.
  EXPECT_EQ(buffer.capacity(), settled_capacity);
}

// The read tail: the first Read of a record just committed is answered from the plain frame the
// appending thread built, with its seq and a blank checksum (Journal::Read): once the checksum is
// written, byte for byte the frame a read of the segment gives. Bodies over 60 KiB and records the
// tail has dropped are read from the segment.
TEST(JournalCompression, AFreshRecordIsReadFromTheTailAsTheFrameTheSegmentGives) {
  for (const size_t tail_records : {size_t{2048}, size_t{3}, size_t{0}}) {
    SCOPED_TRACE(tail_records);
    JournalFixture f;
    const auto bodies = Bodies();
    HandleLog handles;
    FileJournalOptions o = Compressed(f);
    o.listener = &handles;
    o.read_tail_records = tail_records;
    auto j = OpenOrDie(o);
    std::vector<std::unique_ptr<Pending>> events;
    for (size_t i = 0; i < bodies.size(); ++i) {
      events.push_back(EventWithBody(static_cast<int>(i), bodies[i]));
      // The Target's place the decoder would note: not in the frame, carried by the tail.
      events.back()->header.target_offset = static_cast<uint32_t>(i + 1);
      events.back()->header.target_length = static_cast<uint32_t>(2 * i + 2);
      ASSERT_TRUE(AppendOne(j.get(), events.back().get()).status.ok()) << i;
    }
    ASSERT_EQ(handles.size(), bodies.size());
    // The tail is a ring by seq: a slot holds the newest kept record of its residue.
    std::vector<uint64_t> ring(tail_records, 0);
    for (size_t i = 0; i < handles.size(); ++i) {
      if (tail_records > 0 && bodies[i].size() + 4096 <= (64u << 10)) {
        ring[handles[i].seq % tail_records] = handles[i].seq;
      }
    }
    uint64_t expected_tail_reads = 0;
    for (size_t i = 0; i < handles.size(); ++i) {
      const bool from_tail =
          tail_records > 0 && ring[handles[i].seq % tail_records] == handles[i].seq;
      if (from_tail) ++expected_tail_reads;
      std::string first, second;
      EventHeader h1, h2;
      RecordView v1, v2;
      first.reserve(handles[i].length + 64);  // as the engine does: simdjson's padding
      ASSERT_TRUE(j->Read(handles[i], &first, &h1, &v1).ok()) << i;
      EXPECT_EQ(j->Stats().tail_reads, expected_tail_reads) << i;
      ASSERT_TRUE(j->Read(handles[i], &second, &h2, &v2).ok()) << i;  // the segment's
      EXPECT_EQ(j->Stats().tail_reads, expected_tail_reads) << i;
      std::string sealed = first;
      journal::WriteFrameChecksum(&sealed);
      EXPECT_EQ(sealed, second) << "frame of body " << i;
      EXPECT_EQ(v1.body, bodies[i]);
      EXPECT_EQ(v1.key, events[i]->request.key);
      EXPECT_EQ(v1.received_ms, v2.received_ms);
      EXPECT_EQ(h1.primary_entity_id, events[i]->header.primary_entity_id);
      EXPECT_EQ(h1.operation_id, h2.operation_id);
      EXPECT_EQ(h1.stage, h2.stage);
      // The Target's place from the tail only; a segment's read clears one the header held.
      EXPECT_EQ(h1.target_offset, from_tail ? i + 1 : 0u);
      EXPECT_EQ(h1.target_length, from_tail ? 2 * i + 2 : 0u);
      ASSERT_TRUE(j->Read(handles[i], &second, &h1, &v2).ok()) << i;
      EXPECT_EQ(h1.target_offset, 0u);
      EXPECT_EQ(h1.target_length, 0u);
      // The caller's padding past the body is kept, as for a read of the segment.
      const size_t body_end = static_cast<size_t>(v1.body.data() + v1.body.size() - first.data());
      EXPECT_GE(first.capacity() - body_end, 64u) << i;
    }
    EXPECT_EQ(j->Stats().tail_reads, expected_tail_reads);
    if (tail_records == 2048) {
      EXPECT_GT(expected_tail_reads, 5u);
    }
  }
}

// Buffers go round between the appending threads, the tail and the readers. A record read from
// the tail keeps its header flags, and a small record that came in a large buffer is handed out
// in a buffer of its size (a record cache charges a record by its buffer's capacity); a large
// one is not grown past what it needs.
TEST(JournalCompression, TailReadsKeepFlagsAndHandOutBuffersOfTheRecordsSize) {
  JournalFixture f;
  HandleLog handles;
  FileJournalOptions o = Compressed(f);
  o.listener = &handles;
  o.read_tail_records = 2;
  auto j = OpenOrDie(o);
  const std::string large = testing::Fixture("create-msdyn_agentstatus-postop-sync.json");
  ASSERT_GT(large.size(), 12'000u);
  // One appending request, used again and again as an ingress connection does: large bodies
  // leave it a large buffer, which a small body's frame then travels in.
  auto e = MakeEvent(1);
  std::string reader;
  for (int i = 0; i < 12; ++i) {
    SCOPED_TRACE(i);
    const bool small = i % 2 == 1;
    auto fresh = MakeEvent(100 + i);
    e->header = fresh->header;
    e->header.status_record = small;
    e->header.size_exceeded = i % 3 == 0;
    e->body = small ? std::string(R"({"status":"completed"})") : large;
    e->request.body = e->body;
    e->request.key = e->header.DedupeKey();
    e->done = false;
    ASSERT_TRUE(AppendOne(j.get(), e.get()).status.ok());
    const RecordHandle h = handles.back();
    EventHeader header;
    RecordView view;
    reader.clear();
    reader.reserve(h.length + 64);
    const uint64_t tail_reads = j->Stats().tail_reads;
    ASSERT_TRUE(j->Read(h, &reader, &header, &view).ok());
    EXPECT_EQ(j->Stats().tail_reads, tail_reads + 1);
    EXPECT_EQ(view.body, e->body);
    EXPECT_EQ(header.status_record, small);
    EXPECT_EQ(header.size_exceeded, i % 3 == 0);
    std::string disk;
    EventHeader disk_header;
    RecordView disk_view;
    ASSERT_TRUE(j->Read(h, &disk, &disk_header, &disk_view).ok());
    std::string sealed = reader;
    journal::WriteFrameChecksum(&sealed);
    EXPECT_EQ(sealed, disk);
    const size_t body_end =
        static_cast<size_t>(view.body.data() + view.body.size() - reader.data());
    EXPECT_GE(reader.capacity() - body_end, 64u);
    if (small) {
      EXPECT_LT(reader.capacity(), 2 * (reader.size() + 64));
    } else {
      EXPECT_LE(reader.capacity(), size_t{32} << 10);
    }
  }
}

TEST(JournalCompression, ADamagedCompressedFrameIsSkippedLikeAnyCorruptFrame) {
  JournalFixture f;
  const std::string body = testing::Fixture("update-msdyn_agentstatus-postop-async.json");
  {
    auto j = OpenOrDie(Compressed(f));
    for (int i = 0; i < 3; ++i) {
      auto e = EventWithBody(i, body);
      ASSERT_TRUE(AppendOne(j.get(), e.get()).status.ok());
    }
  }
  auto segs = SegmentFiles(f.dir);
  ASSERT_EQ(segs.size(), 1u);
  std::string data = testing::ReadFileOrDie(segs[0]);
  ASSERT_LT(data.size(), 3 * body.size());  // compressed
  data[data.size() / 2] ^= 0x20;            // inside the second record's compressed body
  testing::WriteFileOrDie(segs[0], data);
  auto j = OpenOrDie(Compressed(f));
  EXPECT_EQ(j->Stats().corrupt_records, 1u);
  std::vector<uint64_t> seqs;
  ASSERT_TRUE(j->Scan(0, [&](const RecordView& v) {
                 EXPECT_EQ(v.body, body);
                 seqs.push_back(v.handle.seq);
                 return true;
               }).ok());
  EXPECT_EQ(seqs, (std::vector<uint64_t>{1, 3}));
}

// tests/fixtures/journal-v1: the four fixture bodies, in file-name order, by the first format.
std::string CopyV1Journal(const testing::TempDir& tmp) {
  const std::string dir = tmp.path() + "/journal-v1";
  std::filesystem::create_directories(dir);
  for (const char* name : {"META", "00000000000000000001.seg"}) {
    std::filesystem::copy_file(
        std::string(DVROUTER_SOURCE_DIR) + "/tests/fixtures/journal-v1/" + name, dir + "/" + name);
  }
  return dir;
}

TEST(JournalCompression, AJournalOfTheFirstFormatOpensReadsAndTakesCompressedRecords) {
  JournalFixture f;
  f.dir = CopyV1Journal(f.tmp);
  FileJournalOptions o = Compressed(f);
  o.segment_bytes = 64 << 10;
  std::vector<std::string> expected;
  for (const std::string& name : testing::FixtureNames())
    expected.push_back(testing::Fixture(name));
  ASSERT_EQ(expected.size(), 4u);
  {
    auto j = OpenOrDie(o);
    EXPECT_EQ(j->Stats().next_seq, 5u);
    EXPECT_EQ(j->Stats().corrupt_records, 0u);
    // Compressed records may join it now: it says so before the first one.
    EXPECT_EQ(testing::ReadFileOrDie(f.dir + "/META"), "format=2\npartitions=8\n");
    for (int i = 0; i < 20; ++i) {  // enough to roll into new segments
      auto e = EventWithBody(100 + i, expected[static_cast<size_t>(i) % 4]);
      ASSERT_TRUE(AppendOne(j.get(), e.get()).status.ok());
      expected.push_back(e->body);
    }
    EXPECT_GT(j->Stats().segments, 1u);
  }
  auto j = OpenOrDie(o);
  EXPECT_EQ(j->Stats().corrupt_records, 0u);
  size_t seen = 0;
  ASSERT_TRUE(j->Scan(0, [&](const RecordView& v) {
                 EXPECT_EQ(v.handle.seq, seen + 1);
                 EXPECT_EQ(v.body, expected[seen]) << "record " << seen + 1;
                 ++seen;
                 return true;
               }).ok());
  EXPECT_EQ(seen, expected.size());
}

TEST(JournalCompression, WithCompressionOffAFirstFormatJournalStaysFirstFormat) {
  JournalFixture f;
  f.dir = CopyV1Journal(f.tmp);
  {
    auto j = OpenOrDie(f.Options());
    auto e = MakeEvent(7);
    ASSERT_TRUE(AppendOne(j.get(), e.get()).status.ok());
  }
  EXPECT_EQ(testing::ReadFileOrDie(f.dir + "/META"), "format=1\npartitions=8\n");
  EXPECT_EQ(testing::ReadAll(f.dir).size(), 5u);
}

TEST(JournalCompression, AnUnknownMetaFormatIsRefused) {
  JournalFixture f;
  { auto j = OpenOrDie(f.Options()); }
  testing::WriteFileOrDie(f.dir + "/META", "format=5\npartitions=8\n");
  auto j = FileJournal::Open(f.Options());
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("format=1 to 4"), std::string_view::npos)
      << j.status().ToString();
  // The offline reader (`dvrouter journal`) refuses it too, rather than skip what it cannot read.
  const Status scan = FileJournal::ScanDirectory(f.dir, [](const RecordView&) { return true; });
  EXPECT_EQ(scan.code(), StatusCode::kInvalidArgument) << scan.ToString();
  EXPECT_NE(scan.message().find("format=5"), std::string_view::npos) << scan.ToString();
}

}  // namespace
}  // namespace dvrouter
