// Compression dictionaries: the dictionary file's format and its malformed forms, when the
// sampler makes a new dictionary and what it holds, zstd dictionaries with entropy tables and
// raw content, frames that name a dictionary, and the file journal's use of them: bodies read
// back byte for byte after a reopen and across the move from raw content to tables, a damaged or
// missing dictionary costs only the records compressed with it, and dictionaries no retained
// segment names are deleted.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>

#include "router/journal/body_dictionary.h"
#include "router/journal/file_journal.h"
#include "router/journal/record.h"
#include "tests/support/fault_io.h"
#include "tests/support/journal_events.h"

namespace dvrouter {
namespace {

using testing::AppendOne;
using testing::Census;
using testing::FrameCensus;
using testing::JournalFixture;
using testing::MakeEvent;
using testing::OpenOrDie;
using testing::Pending;

TEST(DictionaryFile, RoundTripsAndSaysWhatIsWrongWithAMalformedOne) {
  const std::string content = "{\"a\":1,\"InputParameters\":[]}";
  const std::string text = DictionaryFileText(42, content);
  Result<std::string> back = ParseDictionaryFile(text, 42);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, content);
  EXPECT_EQ(DictionaryFileName(42), "00000000000000000042.dict");

  auto error = [](std::string_view bytes, uint64_t id) {
    Result<std::string> r = ParseDictionaryFile(bytes, id);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : std::string(r.status().message());
  };
  EXPECT_NE(error("", 42).find("not a dvrouter dictionary file"), std::string::npos);
  EXPECT_NE(error(text.substr(0, 20), 42).find("not a dvrouter dictionary"), std::string::npos);
  std::string magic = text;
  magic[0] = 'X';
  EXPECT_NE(error(magic, 42).find("not a dvrouter dictionary"), std::string::npos);
  EXPECT_NE(error(text, 43).find("holds dictionary 42, not 43"), std::string::npos);
  EXPECT_NE(error(text.substr(0, text.size() - 1), 42).find("differs"), std::string::npos);
  EXPECT_NE(error(text + "x", 42).find("differs"), std::string::npos);
  std::string flipped = text;
  flipped.back() ^= 1;
  EXPECT_NE(error(flipped, 42).find("checksum"), std::string::npos);
}

DictionarySampler::Options Quick() {
  DictionarySampler::Options o;
  o.min_events_between = 10;
  o.kind_min_events = 3;
  o.resample_every = 2;
  o.refresh_events = 100;
  return o;
}

TEST(DictionarySampler, NothingIsDueBeforeAKindHasEnoughEventsAndEnoughEventsPassed) {
  DictionarySampler s(Quick());
  for (int i = 0; i < 9; ++i) s.Observe("contact", "Update", "body " + std::to_string(i));
  EXPECT_FALSE(s.Due());  // 9 events: fewer than min_events_between
  s.Observe("contact", "Update", "body 9");
  EXPECT_TRUE(s.Due());
  const DictionaryMaterial m = s.Take();
  // The newest sample (every resample_every-th event: 0, 2, ... 8), and the three before it for
  // zstd's tables, newest first.
  EXPECT_EQ(m.content, "body 8");
  EXPECT_EQ(m.samples, "body 6body 4body 2");
  EXPECT_EQ(m.sample_sizes, (std::vector<size_t>{6, 6, 6}));
  EXPECT_FALSE(s.Due());
  for (int i = 0; i < 20; ++i) s.Observe("contact", "Update", "more");
  EXPECT_FALSE(s.Due()) << "the kind is covered and the dictionary is not old";
}

TEST(DictionarySampler, ANewKindMakesTheNextOneDueAndARefreshComesWithAge) {
  DictionarySampler s(Quick());
  for (int i = 0; i < 10; ++i) s.Observe("contact", "Update", "contact body");
  ASSERT_TRUE(s.Due());
  s.Take();
  s.Observe("account", "Create", "account body");
  s.Observe("account", "Create", "account body");
  for (int i = 0; i < 10; ++i) s.Observe("contact", "Update", "contact body");
  EXPECT_FALSE(s.Due()) << "the new kind has 2 events, fewer than kind_min_events";
  s.Observe("account", "Create", "account body");
  EXPECT_TRUE(s.Due());
  // The most frequent kind last: zstd reaches the end of a dictionary cheapest.
  EXPECT_EQ(s.Take().content, "account bodycontact body");
  for (int i = 0; i < 99; ++i) s.Observe("contact", "Update", "contact body");
  EXPECT_FALSE(s.Due());
  s.Observe("contact", "Update", "contact body");
  EXPECT_TRUE(s.Due()) << "refresh_events passed";
}

TEST(DictionarySampler, ContentStaysWithinItsSizeAndKindsBeyondTheLimitAreNotSampled) {
  DictionarySampler::Options o = Quick();
  o.max_bytes = 25;
  o.max_sample_bytes = 10;
  o.max_kinds = 3;
  DictionarySampler s(o);
  for (int i = 0; i < 10; ++i) {
    s.Observe("a", "m", std::string(40, 'a'));  // cut to 10 bytes
    s.Observe("b", "m", std::string(10, 'b'));
    if (i < 5) s.Observe("c", "m", std::string(10, 'c'));
    s.Observe("d", "m", std::string(10, 'd'));  // a fourth kind: not tracked
  }
  ASSERT_TRUE(s.Due());
  const std::string content = s.Take().content;
  // a and b (10 events each) fit in 25 bytes; c (5 events) does not; d was never sampled.
  EXPECT_EQ(content.size(), 20u);
  EXPECT_EQ(content.find('c'), std::string::npos);
  EXPECT_EQ(content.find('d'), std::string::npos);
  EXPECT_NE(content.find(std::string(10, 'a')), std::string::npos);
  EXPECT_NE(content.find(std::string(10, 'b')), std::string::npos);
}

// A body of the fixture `name` that differs from the fixture's by its number n.
std::string Body(const std::string& name, int n) {
  std::string body = testing::Fixture(name);
  body.insert(1, "\"n\":" + std::to_string(n) + ",");
  return body;
}

// The material a sampler takes from varied bodies of three fixtures; with `older_samples`, each
// kind also has the samples its newest replaced (for zstd's tables).
DictionaryMaterial FixtureMaterial(bool older_samples) {
  DictionarySampler::Options o = Quick();
  o.resample_every = older_samples ? 2 : 1000;
  DictionarySampler s(o);
  for (int n = 0; n < 10; ++n) {
    for (const char* name :
         {"update-contact-postop-async.json", "update-msdyn_agentstatus-postop-async.json",
          "create-msdyn_agentstatus-postop-sync.json"}) {
      s.Observe(name, "m", Body(name, n));
    }
  }
  return s.Take();
}

// Compresses `body` with `dict` and reads it back; the bytes it took.
size_t RoundTrip(const std::string& body, const BodyDictionary& dict) {
  StoredBody stored;
  journal::CompressBody(body, 1, &dict, &stored);
  EXPECT_EQ(stored.dict_id, dict.id());
  journal::FrameMeta meta;
  meta.codec = stored.codec;
  meta.raw_length = static_cast<uint32_t>(body.size());
  meta.dict_id = stored.dict_id;
  meta.dict_check = stored.dict_check;
  std::string scratch;
  Result<std::string_view> raw = journal::RawBody(meta, stored.bytes, &scratch, &dict);
  EXPECT_TRUE(raw.ok()) << raw.status().ToString();
  EXPECT_EQ(raw.ok() ? *raw : std::string_view(), body);
  return stored.bytes.size();
}

TEST(DictionaryContent, IsAZstdDictionaryWithTablesOnceThereAreOlderSamples) {
  const DictionaryMaterial m = FixtureMaterial(/*older_samples=*/true);
  ASSERT_FALSE(m.sample_sizes.empty());
  const std::string content = DictionaryContent(m, 1);
  EXPECT_TRUE(IsZstdDictionary(content));
  EXPECT_NE(content.find(m.content), std::string::npos) << "the samples follow the tables";
  auto tables = BodyDictionary::Make(3, content, 1);
  ASSERT_TRUE(tables);
  // Without older samples: the raw content, as before.
  const DictionaryMaterial alone = FixtureMaterial(/*older_samples=*/false);
  ASSERT_TRUE(alone.sample_sizes.empty());
  const std::string raw = DictionaryContent(alone, 1);
  EXPECT_EQ(raw, alone.content);
  EXPECT_FALSE(IsZstdDictionary(raw));
  auto plain = BodyDictionary::Make(4, raw, 1);
  ASSERT_TRUE(plain);
  // Both read every body back; the tables take no more bytes than raw content.
  size_t with_tables = 0, without = 0;
  for (const char* name :
       {"update-contact-postop-async.json", "update-msdyn_agentstatus-postop-async.json",
        "create-msdyn_agentstatus-postop-sync.json"}) {
    with_tables += RoundTrip(Body(name, 99), *tables);
    without += RoundTrip(Body(name, 99), *plain);
  }
  EXPECT_LE(with_tables, without);
}

TEST(DictionaryContent, RawContentThatOpensWithZstdsMagicStaysRawAndABadZstdDictionaryIsRefused) {
  DictionaryMaterial m;
  m.content = std::string("\x37\xA4\x30\xEC", 4) + Body("update-contact-postop-async.json", 1);
  const std::string raw = DictionaryContent(m, 1);
  EXPECT_FALSE(IsZstdDictionary(raw));
  EXPECT_EQ(raw, " " + m.content);
  auto dict = BodyDictionary::Make(5, raw, 1);
  ASSERT_TRUE(dict);
  RoundTrip(Body("update-contact-postop-async.json", 2), *dict);
  // A file whose content opens with the magic but holds no zstd dictionary is not digested.
  EXPECT_FALSE(BodyDictionary::Make(6, m.content, 1));
}

TEST(DictionaryFrames, NameTheirDictionaryAndReadOnlyWithIt) {
  const std::string body = Body("update-contact-postop-async.json", 1);
  auto dict = BodyDictionary::Make(7, Body("update-contact-postop-async.json", 2), 1);
  ASSERT_TRUE(dict);
  StoredBody with, without;
  journal::CompressBody(body, 1, dict.get(), &with);
  journal::CompressBody(body, 1, nullptr, &without);
  ASSERT_EQ(with.codec, Codec::kZstd);
  EXPECT_EQ(with.dict_id, 7u);
  EXPECT_EQ(without.dict_id, 0u);
  // A body much like the dictionary is stored in a small part of the bytes it takes alone.
  EXPECT_LT(with.bytes.size() * 4, without.bytes.size());

  journal::FrameMeta meta;
  meta.seq = 5;
  meta.codec = Codec::kZstd;
  meta.raw_length = static_cast<uint32_t>(body.size());
  meta.dict_id = with.dict_id;
  meta.dict_check = with.dict_check;
  EventHeader h;
  h.message_name = "Update";
  std::string frame;
  journal::EncodeFramePrefix(meta, h, with.bytes, &frame);
  frame += with.bytes;
  journal::FrameMeta got;
  EventHeader gh;
  std::string_view stored;
  uint32_t len = 0;
  ASSERT_TRUE(journal::DecodeFrame(frame.data(), frame.size(), &got, &gh, &stored, &len).ok());
  EXPECT_EQ(got.dict_id, 7u);
  std::string scratch;
  Result<std::string_view> raw = journal::RawBody(got, stored, &scratch, dict.get());
  ASSERT_TRUE(raw.ok()) << raw.status().ToString();
  EXPECT_EQ(*raw, body);
  EXPECT_EQ(journal::RawBody(got, stored, &scratch, nullptr).status().code(),
            StatusCode::kNotFound);
  auto other = BodyDictionary::Make(8, dict->content(), 1);
  EXPECT_EQ(journal::RawBody(got, stored, &scratch, other.get()).status().code(),
            StatusCode::kNotFound);
  // The same id with another content (a file from another journal) is refused, not used.
  auto impostor = BodyDictionary::Make(7, dict->content() + " ", 1);
  Result<std::string_view> wrong = journal::RawBody(got, stored, &scratch, impostor.get());
  EXPECT_EQ(wrong.status().code(), StatusCode::kNotFound);
  EXPECT_NE(wrong.status().message().find("content differs"), std::string_view::npos);

  // The flag without a compressed body, or with dictionary id 0, is a malformed frame.
  for (const journal::FrameMeta& bad : {journal::FrameMeta{5, 0, {}, 0, Codec::kNone, 0, 7},
                                        journal::FrameMeta{5, 0, {}, 0, Codec::kZstd, 9, 0}}) {
    std::string f;
    journal::EncodeFramePrefix(bad, h, "123456789", &f);
    f += "123456789";
    // Set the dictionary flag by hand (the encoder never writes it for these), checksum included.
    const size_t flags_at = journal::kFrameHeaderBytes + 8 + 8 + 16 + 4;
    f[flags_at] |= 8;
    ASSERT_TRUE(journal::DecodeFrame(f.data(), f.size(), &got, &gh, &stored, &len,
                                     journal::Checksum::kTrusted)
                    .code() == StatusCode::kInvalidArgument);
  }
}

// The .dict files in `dir`.
std::vector<std::string> DictionaryFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".dict") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

const std::vector<std::string>& Kinds() {
  static const std::vector<std::string> kinds = testing::FixtureNames();
  return kinds;
}

std::unique_ptr<Pending> KindEvent(int n) {
  auto e = MakeEvent(n);
  e->body = Body(Kinds()[static_cast<size_t>(n) % Kinds().size()], n);
  e->header.primary_entity_name = "kind" + std::to_string(n % Kinds().size());
  e->request.body = e->body;
  return e;
}

FileJournalOptions WithDictionaries(JournalFixture& f) {
  FileJournalOptions o = f.Options();
  o.compression = Codec::kZstd;
  o.dictionary.min_events_between = 40;
  o.dictionary.kind_min_events = 4;
  o.dictionary.resample_every = 4;
  return o;
}

// Scans the whole journal: every record's body must be the one appended with its seq. The
// number of records read.
size_t ScanAndCompare(Journal* j, std::map<uint64_t, std::string>& bodies) {
  size_t seen = 0;
  const Status st = j->Scan(0, [&](const RecordView& v) {
    EXPECT_EQ(v.body, bodies[v.handle.seq]) << v.handle.seq;
    ++seen;
    return true;
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
  return seen;
}

// Reads the directory as `dvrouter journal` does (FileJournal::ScanDirectory): every record's
// body must be the one appended with its seq. The records read, by seq.
std::vector<std::pair<uint64_t, std::string>> ReadAllAndCompare(
    const std::string& dir, std::map<uint64_t, std::string>& bodies) {
  auto all = testing::ReadAll(dir);
  for (const auto& [seq, body] : all) EXPECT_EQ(body, bodies[seq]) << seq;
  return all;
}

// For the tests that delete segments: segments of 32 KiB, and a clock an hour past the real one
// (DeleteBefore compares a segment's real mtime with the journal's clock).
FileJournalOptions WithSegmentsToDelete(JournalFixture& f) {
  f.now = std::chrono::duration_cast<std::chrono::milliseconds>(
              std::chrono::system_clock::now().time_since_epoch())
              .count() +
          3'600'000;
  FileJournalOptions o = WithDictionaries(f);
  o.segment_bytes = 32u << 10;
  return o;
}

// Appends events [from, to) of KindEvent, one at a time; their bodies by seq.
void AppendKinds(Journal* j, int from, int to, std::map<uint64_t, std::string>* bodies) {
  for (int n = from; n < to; ++n) {
    auto e = KindEvent(n);
    const AppendResult r = AppendOne(j, e.get());
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    (*bodies)[r.seq] = e->body;
  }
}

// Expects `zstd_files` of the dictionary files in `dir` to be zstd dictionaries (with entropy
// tables), the others raw content.
void ExpectDictionaryKinds(const std::string& dir, size_t zstd_files) {
  size_t zstd = 0;
  for (const std::string& path : DictionaryFiles(dir)) {
    const uint64_t id = std::stoull(std::filesystem::path(path).filename().string());
    Result<std::string> content = ParseDictionaryFile(testing::ReadFileOrDie(path), id);
    ASSERT_TRUE(content.ok()) << content.status().ToString();
    zstd += IsZstdDictionary(*content) ? 1 : 0;
  }
  EXPECT_EQ(zstd, zstd_files);
}

TEST(JournalDictionaries, BodiesAreCompressedWithADictionaryOfTheKindsSeenAndReadBackAfterReopen) {
  JournalFixture f;
  std::map<uint64_t, std::string> bodies;
  {
    auto j = OpenOrDie(WithDictionaries(f));
    AppendKinds(j.get(), 0, 200, &bodies);
  }
  ASSERT_GE(DictionaryFiles(f.dir).size(), 1u);
  // Zstd dictionaries with entropy tables (older samples came before the first): format 4.
  EXPECT_EQ(testing::ReadFileOrDie(f.dir + "/META").rfind("format=4\n", 0), 0u);
  ExpectDictionaryKinds(f.dir, DictionaryFiles(f.dir).size());
  const FrameCensus c = Census(f.dir);
  EXPECT_EQ(c.with_dict + c.without, 200u);
  // When the first dictionary becomes active depends on its thread; from then on, every body
  // names one.
  ASSERT_GE(c.with_dict, 1u);
  EXPECT_EQ(c.without_after_first_with, 0u) << "every body after the first dictionary names one";
  // Bodies of the kinds seen take a fraction of the bytes they take without the dictionary.
  EXPECT_LT(c.bytes_with / c.with_dict * 3, c.bytes_without / c.without);

  auto j = OpenOrDie(WithDictionaries(f));
  EXPECT_EQ(ScanAndCompare(j.get(), bodies), bodies.size());
  // Read gets the plain frame; new appends go on with the newest dictionary.
  std::map<uint64_t, std::string> more;
  AppendKinds(j.get(), 200, 210, &more);
  j->Stop();
  const FrameCensus after = Census(f.dir);
  EXPECT_EQ(after.with_dict, c.with_dict + 10);
  bodies.insert(more.begin(), more.end());
  EXPECT_EQ(ReadAllAndCompare(f.dir, bodies).size(), bodies.size());
}

TEST(JournalDictionaries, AJournalWithRawContentDictionariesReadsOnAndMovesToTables) {
  JournalFixture f;
  std::map<uint64_t, std::string> bodies;
  {
    // One sample per kind: no older ones for tables, so raw content, as versions before tables
    // wrote it, and META format=3.
    FileJournalOptions o = WithDictionaries(f);
    o.dictionary.resample_every = 1000;
    auto j = OpenOrDie(o);
    AppendKinds(j.get(), 0, 120, &bodies);
  }
  const size_t raw_files = DictionaryFiles(f.dir).size();
  ASSERT_GE(raw_files, 1u);
  ExpectDictionaryKinds(f.dir, 0);
  EXPECT_EQ(testing::ReadFileOrDie(f.dir + "/META").rfind("format=3\n", 0), 0u);
  {
    auto j = OpenOrDie(WithDictionaries(f));
    AppendKinds(j.get(), 120, 320, &bodies);
  }
  EXPECT_GT(DictionaryFiles(f.dir).size(), raw_files);
  EXPECT_EQ(testing::ReadFileOrDie(f.dir + "/META").rfind("format=4\n", 0), 0u);
  ExpectDictionaryKinds(f.dir, DictionaryFiles(f.dir).size() - raw_files);
  auto j = OpenOrDie(WithDictionaries(f));
  EXPECT_EQ(ScanAndCompare(j.get(), bodies), bodies.size());
  j->Stop();
  EXPECT_EQ(ReadAllAndCompare(f.dir, bodies).size(), bodies.size());
}

TEST(JournalDictionaries, ReadGivesThePlainFrameOfABodyCompressedWithADictionary) {
  JournalFixture f;
  testing::HandleLog log;
  FileJournalOptions o = WithDictionaries(f);
  o.listener = &log;
  o.read_tail_records = 0;  // every Read goes to the segment
  std::map<uint64_t, std::string> bodies;
  auto j = OpenOrDie(o);
  AppendKinds(j.get(), 0, 120, &bodies);
  ASSERT_GE(Census(f.dir).with_dict, 1u);
  for (const RecordHandle& h : log.all) {
    testing::PlainRead r;
    ASSERT_NO_FATAL_FAILURE(testing::ReadPlainFrame(j.get(), h, &r));
    EXPECT_EQ(r.view.body, bodies[h.seq]);
    EXPECT_EQ(r.meta.codec, Codec::kNone);
    EXPECT_EQ(r.meta.dict_id, 0u);
  }
}

// Damages every dictionary file (flips a byte, removes it, replaces it with a valid file of the
// same id and another content, or with one whose content opens with zstd's dictionary magic but
// holds no zstd dictionary) and reopens: the records compressed with one are unreadable and
// counted, every other record reads as it was appended, and new appends work.
enum class Damage { kFlip, kRemove, kReplace, kBadTables };
void DamagedDictionariesCostOnlyTheirRecords(Damage damage) {
  const bool remove = damage == Damage::kRemove;
  JournalFixture f;
  std::map<uint64_t, std::string> bodies;
  {
    auto j = OpenOrDie(WithDictionaries(f));
    AppendKinds(j.get(), 0, 120, &bodies);
  }
  const FrameCensus c = Census(f.dir);
  ASSERT_GE(c.with_dict, 1u);
  const std::vector<std::string> dicts = DictionaryFiles(f.dir);
  for (const std::string& path : dicts) {
    if (remove) {
      std::filesystem::remove(path);
    } else if (damage == Damage::kFlip) {
      std::string text = testing::ReadFileOrDie(path);
      text.back() ^= 1;
      testing::WriteFileOrDie(path, text);
    } else {
      const std::string name = std::filesystem::path(path).filename().string();
      const uint64_t id = std::stoull(name);
      Result<std::string> content = ParseDictionaryFile(testing::ReadFileOrDie(path), id);
      ASSERT_TRUE(content.ok());
      const std::string other = damage == Damage::kReplace
                                    ? *content + "x"
                                    : std::string("\x37\xA4\x30\xEC", 4) + "no tables";
      testing::WriteFileOrDie(path, DictionaryFileText(id, other));
    }
  }
  auto j = OpenOrDie(WithDictionaries(f));
  ASSERT_TRUE(j);
  // Recovery counts the records it could not read back.
  if (damage != Damage::kReplace) {
    EXPECT_EQ(j->Stats().corrupt_records, c.with_dict);
  }
  EXPECT_EQ(ScanAndCompare(j.get(), bodies), c.without);
  // New events are journaled; a damaged file is kept for inspection, never overwritten.
  AppendKinds(j.get(), 120, 240, &bodies);
  j->Stop();
  for (const std::string& path : dicts) {
    EXPECT_EQ(std::filesystem::exists(path), !remove) << path;
  }
  // A damaged file is not overwritten: the new dictionary has a new id.
  EXPECT_GT(DictionaryFiles(f.dir).size(), remove ? 0u : dicts.size());
  EXPECT_EQ(testing::ReadAll(f.dir).size(), c.without + 120);
}

TEST(JournalDictionaries, ADamagedDictionaryCostsOnlyTheRecordsCompressedWithIt) {
  DamagedDictionariesCostOnlyTheirRecords(Damage::kFlip);
}

TEST(JournalDictionaries, AMissingDictionaryCostsOnlyTheRecordsCompressedWithIt) {
  DamagedDictionariesCostOnlyTheirRecords(Damage::kRemove);
}

TEST(JournalDictionaries, ADictionaryOfAnotherContentIsNeverUsed) {
  DamagedDictionariesCostOnlyTheirRecords(Damage::kReplace);
}

TEST(JournalDictionaries, ADictionaryZstdDoesNotParseCostsOnlyTheRecordsCompressedWithIt) {
  DamagedDictionariesCostOnlyTheirRecords(Damage::kBadTables);
}

TEST(JournalDictionaries, DictionariesNoRetainedSegmentNamesAreDeletedTheOthersStay) {
  JournalFixture f;
  FileJournalOptions o = WithSegmentsToDelete(f);
  o.dictionary.refresh_events = 40;  // a new dictionary every 40 events
  std::map<uint64_t, std::string> bodies;
  auto j = OpenOrDie(o);
  AppendKinds(j.get(), 0, 600, &bodies);
  const size_t made = DictionaryFiles(f.dir).size();
  ASSERT_GE(made, 5u);
  ASSERT_GE(testing::SegmentFiles(f.dir).size(), 5u);
  // Delete the older half of the history, then append until the next dictionary is made.
  Result<RetentionResult> r = j->DeleteBefore(300, 0);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_GT(r->segments_deleted, 0u);
  AppendKinds(j.get(), 600, 650, &bodies);
  j->Stop();
  const size_t kept = DictionaryFiles(f.dir).size();
  EXPECT_LT(kept, made) << "dictionaries of deleted segments only were not deleted";
  // Every retained record reads back with the dictionaries that stayed.
  const auto all = ReadAllAndCompare(f.dir, bodies);
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.back().first, bodies.rbegin()->first);
  EXPECT_EQ(all.size(), bodies.size() - (r->first_retained_seq - 1));
}

// A body compressed with a dictionary that was deleted before the writer wrote it (a new one was
// made and no segment named the old one) is compressed again: no record names a dictionary the
// journal does not hold. The group window (500 ms) holds the body back while the dictionary
// thread makes the new dictionary and deletes the old one (a few file syncs).
TEST(JournalDictionaries, ABodyWhoseDictionaryWasDeletedMeanwhileIsCompressedAgain) {
  JournalFixture f;
  testing::FaultIo io;
  FileJournalOptions o = WithDictionaries(f);
  o.io = &io;
  o.group_window_us = 500'000;
  o.dictionary.min_events_between = 1;
  o.dictionary.kind_min_events = 1;
  o.dictionary.resample_every = 1;
  o.dictionary.refresh_events = 1;  // a new dictionary after every group
  auto j = OpenOrDie(o);
  auto first = KindEvent(0);
  ASSERT_TRUE(AppendOne(j.get(), first.get()).status.ok());
  ASSERT_TRUE(testing::WaitFor([&] { return DictionaryFiles(f.dir).size() == 1; },
                               std::chrono::seconds(10)));
  const std::string old_dict = DictionaryFiles(f.dir)[0];
  const uint64_t old_id = std::stoull(std::filesystem::path(old_dict).filename().string());
  // A small body (stored as it is: no segment names the first dictionary) held at its sync,
  // then a body compressed with the first dictionary meanwhile.
  auto small = MakeEvent(1, 100);
  auto held = KindEvent(2);
  io.CloseGate();
  j->Append(&small->request);
  ASSERT_TRUE(io.WaitUntilBlocked());
  j->Append(&held->request);
  ASSERT_EQ(held->request.stored.dict_id, old_id);
  io.OpenGate();
  ASSERT_TRUE(small->Wait().status.ok());
  const AppendResult r = held->Wait();
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  j->Stop();
  EXPECT_FALSE(std::filesystem::exists(old_dict)) << "the first dictionary was not deleted";
  const auto all = testing::ReadAll(f.dir);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[2].second, held->body);
  EXPECT_EQ(Census(f.dir).with_dict, 1u);
}

// Turned off, a journal still reads the records compressed with dictionaries, makes no new one,
// and deletes them with the last segment that names them.
TEST(JournalDictionaries, TurnedOffTheyStillReadAndGoWithTheirSegments) {
  JournalFixture f;
  FileJournalOptions o = WithSegmentsToDelete(f);
  std::map<uint64_t, std::string> bodies;
  {
    auto j = OpenOrDie(o);
    AppendKinds(j.get(), 0, 200, &bodies);
  }
  const size_t made = DictionaryFiles(f.dir).size();
  ASSERT_GE(made, 1u);
  o.dictionaries = false;
  auto j = OpenOrDie(o);
  AppendKinds(j.get(), 200, 400, &bodies);
  EXPECT_EQ(DictionaryFiles(f.dir).size(), made);
  EXPECT_EQ(ScanAndCompare(j.get(), bodies), 400u);
  // Every segment with records of the first 200 goes: so do the dictionaries.
  Result<RetentionResult> r = j->DeleteBefore(300, 0);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_GT(r->first_retained_seq, 200u);
  EXPECT_TRUE(DictionaryFiles(f.dir).empty());
  j->Stop();
  EXPECT_EQ(testing::ReadAll(f.dir).size(), 400 - (r->first_retained_seq - 1));
}

// Appending threads compress with dictionaries the writer makes and deletes while another thread
// deletes segments: every record retained reads back (and TSan sees the threads' sharing).
TEST(JournalDictionaries, AppendsFromSeveralThreadsWhileDictionariesComeAndGo) {
  JournalFixture f;
  FileJournalOptions o = WithSegmentsToDelete(f);
  o.dictionary.min_events_between = 10;
  o.dictionary.refresh_events = 10;
  auto j = OpenOrDie(o);
  constexpr int kThreads = 4, kEach = 150;
  std::mutex mu;
  std::map<uint64_t, std::string> bodies;
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto e = KindEvent(t * kEach + i);
        const AppendResult r = AppendOne(j.get(), e.get());
        EXPECT_TRUE(r.status.ok()) << r.status.ToString();
        std::lock_guard<std::mutex> lock(mu);
        bodies[r.seq] = e->body;
      }
    });
  }
  std::thread deleter([&] {
    while (!done.load()) {
      const uint64_t below = j->Stats().next_seq / 2;
      EXPECT_TRUE(j->DeleteBefore(below, 0).ok());
    }
  });
  for (auto& t : threads) t.join();
  done = true;
  deleter.join();
  j->Stop();
  const auto all = ReadAllAndCompare(f.dir, bodies);
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.back().first, static_cast<uint64_t>(kThreads * kEach));
  // Every record from the first retained one on is there: none was lost to a dictionary.
  EXPECT_EQ(all.size(), kThreads * kEach - (all.front().first - 1));
}

TEST(JournalDictionaries, NoneAreMadeWithoutCompressionOrWhenTurnedOff) {
  for (bool compress : {false, true}) {
    JournalFixture f;
    FileJournalOptions o = WithDictionaries(f);
    if (compress) {
      o.dictionaries = false;
    } else {
      o.compression = Codec::kNone;
    }
    std::map<uint64_t, std::string> bodies;
    {
      auto j = OpenOrDie(o);
      AppendKinds(j.get(), 0, 120, &bodies);
    }
    EXPECT_TRUE(DictionaryFiles(f.dir).empty());
    EXPECT_EQ(Census(f.dir).with_dict, 0u);
    EXPECT_EQ(
        testing::ReadFileOrDie(f.dir + "/META").rfind(compress ? "format=2\n" : "format=1\n", 0),
        0u);
  }
}

}  // namespace
}  // namespace dvrouter
