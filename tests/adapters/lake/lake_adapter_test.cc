// LakeAdapter against the real file system: row format, atomic finalization, dedupe of
// redelivered rows after a restart, crash leftovers, and I/O failures.
#include "adapters/lake/lake_adapter.h"
#include "adapters/lake/lake_config.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>

#include "router/decode/decode.h"
#include "tests/support/delivery_done.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::Fixture;
using testing::TempDir;

using testing::Done;

// Events built from the fixtures, decoded as the ingress does.
struct Events {
  std::vector<std::string> bodies;
  std::vector<EventHeader> headers;
  std::vector<Delivery> deliveries;

  void Add(const std::string& fixture, uint64_t seq) {
    bodies.push_back(Fixture(fixture));
    headers.emplace_back();
    Decoder decoder(1 << 20);
    Status st = decoder.Decode(bodies.back().data(), bodies.back().size(), bodies.back().size(),
                               &headers.back());
    EXPECT_TRUE(st.ok()) << st.ToString();
    seqs.push_back(seq);
  }
  std::span<const Delivery> Batch() {
    deliveries.clear();
    for (size_t i = 0; i < bodies.size(); ++i) {
      Delivery d;
      d.seq = seqs[i];
      d.key = EventKey{seqs[i], 42};
      d.header = &headers[i];
      d.body = bodies[i];
      d.received_ms = 1'700'000'000'000;
      deliveries.push_back(d);
    }
    return deliveries;
  }
  std::vector<uint64_t> seqs;
};

AdapterConfig LakeConfig(const std::string& dir, uint64_t roll_ms = 20) {
  AdapterConfig c;
  c.name = "lake";
  c.type = "lake";
  c.Settings<dvrouter::LakeConfig>().dir = dir;
  c.Settings<dvrouter::LakeConfig>().roll_ms = roll_ms;
  return c;
}

// Every file under dir (relative paths).
std::vector<std::string> Files(const std::string& dir, const std::string& prefix = "") {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat sb {};
    const std::string path = dir + "/" + name;
    ::stat(path.c_str(), &sb);
    if (S_ISDIR(sb.st_mode)) {
      for (auto& f : Files(path, prefix + name + "/")) out.push_back(f);
    } else {
      out.push_back(prefix + name);
    }
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// All rows of all final files, concatenated.
std::string AllRows(const std::string& dir) {
  std::string out;
  for (const std::string& f : Files(dir)) {
    if (f.ends_with(".jsonl")) out += testing::ReadFileOrDie(dir + "/" + f);
  }
  return out;
}

size_t Count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

TEST(LakeAdapter, WritesOneConvertedRowPerEventIntoFilesPerTableAndDay) {
  TempDir tmp;
  LakeAdapter lake(LakeConfig(tmp.path() + "/lake"), nullptr);
  ASSERT_TRUE(lake.Start(1).ok());
  Events ev;
  ev.Add("update-contact-postop-async.json", 7);
  ev.Add("create-msdyn_agentstatus-postop-sync.json", 8);
  Done done;
  lake.Deliver(ev.Batch(), &done);
  auto results = done.Wait();
  ASSERT_EQ(results.size(), 2u);
  for (const auto& r : results) EXPECT_EQ(r.outcome, DeliveryOutcome::kDelivered) << r.error;
  const auto files = Files(tmp.path() + "/lake");
  ASSERT_EQ(files.size(), 2u) << ::testing::PrintToString(files);
  EXPECT_EQ(files[0], "contact/date=2017-09-26/part-7-7.jsonl");
  EXPECT_TRUE(files[1].starts_with("msdyn_agentstatus/date=")) << files[1];
  EXPECT_TRUE(files[1].ends_with("/part-8-8.jsonl")) << files[1];
  const std::string row = testing::ReadFileOrDie(tmp.path() + "/lake/" + files[0]);
  EXPECT_EQ(Count(row, "\n"), 1u);
  EXPECT_NE(row.find("\"event_id\":\"" + EventKey{7, 42}.ToHex() + "\""), std::string::npos);
  EXPECT_NE(row.find("\"seq\":7,\"table\":\"contact\""), std::string::npos) << row;
  EXPECT_NE(row.find("\"row_id\":\"6d81597f-0f9f-e711-8122-000d3aa2331c\""), std::string::npos);
  EXPECT_NE(row.find("\"message\":\"Update\""), std::string::npos);
  EXPECT_NE(row.find("\"operation_time\":\"2017-09-26T"), std::string::npos) << row;
  // Converted Target attributes: an EntityReference and a /Date()/ value.
  EXPECT_NE(row.find("\"modifiedby\":{\"id\":\"75c2dd85-e89e-e711-8122-000d3aa2331c\","
                     "\"logicalname\":\"systemuser\""),
            std::string::npos)
      << row;
  EXPECT_NE(row.find("\"modifiedon\":\"2017-09-26T"), std::string::npos) << row;
  EXPECT_EQ(row.find("/Date("), std::string::npos) << row;
  lake.Stop();
}

TEST(LakeAdapter, NothingIsFinalOrAcknowledgedBeforeTheRoll) {
  TempDir tmp;
  LakeAdapter lake(LakeConfig(tmp.path() + "/lake", /*roll_ms=*/3'600'000), nullptr);
  ASSERT_TRUE(lake.Start(1).ok());
  Events ev;
  ev.Add("update-contact-postop-async.json", 1);
  Done done;
  lake.Deliver(ev.Batch(), &done);
  // The row reaches a temporary file; no reader-visible file exists, no ack was given.
  ASSERT_TRUE(testing::WaitFor([&] {
    auto f = Files(tmp.path() + "/lake");
    return f.size() == 1 && f[0].ends_with(".tmp");
  }));
  EXPECT_FALSE(done.called());
  EXPECT_EQ(AllRows(tmp.path() + "/lake"), "");
  lake.Stop();  // finalizes what was written
  ASSERT_TRUE(done.called());
  EXPECT_EQ(done.Wait()[0].outcome, DeliveryOutcome::kDelivered);
  const auto files = Files(tmp.path() + "/lake");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_TRUE(files[0].ends_with("part-1-1.jsonl")) << files[0];
}

TEST(LakeAdapter, ARestartSkipsRedeliveredRowsAndRemovesUnfinishedFiles) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/lake";
  {
    LakeAdapter lake(LakeConfig(dir), nullptr);
    ASSERT_TRUE(lake.Start(1).ok());
    Events ev;
    for (uint64_t s = 1; s <= 5; ++s) ev.Add("update-contact-postop-async.json", s);
    Done done;
    lake.Deliver(ev.Batch(), &done);
    done.Wait();
    lake.Stop();
  }
  // A crash left a temporary file behind.
  const std::string leftover = dir + "/contact/date=2017-09-26/.part-1-9.jsonl.tmp";
  testing::WriteFileOrDie(leftover, "{\"seq\":99,\"partial");
  LakeAdapter lake(LakeConfig(dir), nullptr);
  ASSERT_TRUE(lake.Start(/*redelivery_from_seq=*/3).ok());
  struct stat sb {};
  EXPECT_NE(::stat(leftover.c_str(), &sb), 0) << "unfinished file kept";
  Events ev;
  for (uint64_t s = 3; s <= 7; ++s) ev.Add("update-contact-postop-async.json", s);
  Done done;
  lake.Deliver(ev.Batch(), &done);
  for (const auto& r : done.Wait()) EXPECT_EQ(r.outcome, DeliveryOutcome::kDelivered);
  EXPECT_EQ(lake.skipped_duplicates(), 3u);
  const std::string rows = AllRows(dir);
  for (int s = 1; s <= 7; ++s) {
    EXPECT_EQ(Count(rows, "\"seq\":" + std::to_string(s) + ","), 1u) << "seq " << s;
  }
  // An operator replay writes the row again, into a new file (never over an existing one).
  Events again;
  again.Add("update-contact-postop-async.json", 4);
  again.Batch();
  again.deliveries[0].replay = true;
  Done replayed;
  lake.Deliver(again.deliveries, &replayed);
  EXPECT_EQ(replayed.Wait()[0].outcome, DeliveryOutcome::kDelivered);
  EXPECT_EQ(Count(AllRows(dir), "\"seq\":4,"), 2u);
  lake.Stop();
}

TEST(LakeAdapter, AnUnusableDirectoryFailsStart) {
  TempDir tmp;
  testing::WriteFileOrDie(tmp.path() + "/file", "x");
  LakeAdapter lake(LakeConfig(tmp.path() + "/file/lake"), nullptr);
  // Start fails clearly, and so does a delivery if the directory breaks later.
  Status st = lake.Start(1);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("file"), std::string::npos) << st.ToString();
}

TEST(LakeAdapter, WriteErrorsAfterStartAreRetryableAndLoseNothing) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/lake";
  LakeAdapter lake(LakeConfig(dir), nullptr);
  ASSERT_TRUE(lake.Start(1).ok());
  // The table directory cannot be created: a regular file is in its way.
  testing::WriteFileOrDie(dir + "/contact", "in the way");
  Events ev;
  ev.Add("update-contact-postop-async.json", 1);
  Done done;
  lake.Deliver(ev.Batch(), &done);
  auto results = done.Wait();
  EXPECT_EQ(results[0].outcome, DeliveryOutcome::kRetryable);
  EXPECT_NE(results[0].error.find("contact"), std::string::npos) << results[0].error;
  // Fixed: the retry lands.
  ASSERT_EQ(::unlink((dir + "/contact").c_str()), 0);
  Done again;
  lake.Deliver(ev.Batch(), &again);
  EXPECT_EQ(again.Wait()[0].outcome, DeliveryOutcome::kDelivered);
  EXPECT_EQ(Count(AllRows(dir), "\"seq\":1,"), 1u);
  lake.Stop();
}

TEST(LakeAdapter, AnUnconvertibleTargetIsPermanent) {
  TempDir tmp;
  LakeAdapter lake(LakeConfig(tmp.path() + "/lake"), nullptr);
  ASSERT_TRUE(lake.Start(1).ok());
  Events ev;
  ev.Add("update-contact-postop-async.json", 1);
  ev.bodies[0] = R"({"InputParameters":[{"key":"Target","value":[1,2]}]})";
  Done done;
  lake.Deliver(ev.Batch(), &done);
  auto results = done.Wait();
  EXPECT_EQ(results[0].outcome, DeliveryOutcome::kPermanent);
  EXPECT_NE(results[0].error.find("Target"), std::string::npos) << results[0].error;
  lake.Stop();
}

TEST(LakeAdapter, ATableNameThatIsNotALogicalNameIsPermanentAndWritesNothing) {
  TempDir tmp;
  LakeAdapter lake(LakeConfig(tmp.path() + "/lake"), nullptr);
  ASSERT_TRUE(lake.Start(1).ok());
  const std::vector<std::string> bad = {std::string(300, 'a'), "contacts(x)#", "../x", "Account",
                                        ""};
  Events ev;
  for (uint64_t s = 1; s <= bad.size() + 1; ++s) ev.Add("update-contact-postop-async.json", s);
  for (size_t i = 0; i < bad.size(); ++i) ev.headers[i].primary_entity_name = bad[i];
  Done done;
  lake.Deliver(ev.Batch(), &done);
  const auto results = done.Wait();
  ASSERT_EQ(results.size(), bad.size() + 1);
  for (size_t i = 0; i < bad.size(); ++i) {
    EXPECT_EQ(results[i].outcome, DeliveryOutcome::kPermanent) << bad[i];
    EXPECT_NE(results[i].error.find("is not a Dataverse logical name"), std::string::npos)
        << results[i].error;
  }
  // The good event of the same batch is written, alone.
  EXPECT_EQ(results.back().outcome, DeliveryOutcome::kDelivered) << results.back().error;
  EXPECT_EQ(Files(tmp.path()),
            (std::vector<std::string>{"lake/contact/date=2017-09-26/part-6-6.jsonl"}));
  lake.Stop();
}

// `root` extended with subdirectories to about `length` characters (each name under NAME_MAX).
std::string LongPath(std::string root, size_t length) {
  while (root.size() < length) {
    root += "/" + std::string(std::clamp<size_t>(length - root.size(), 1, 200), 'd');
  }
  return root;
}

// How many rows of each seq the final files hold.
std::map<uint64_t, int> RowsBySeq(const std::string& dir) {
  std::map<uint64_t, int> out;
  const std::string rows = AllRows(dir);
  for (size_t line = 0; line < rows.size(); line = rows.find('\n', line) + 1) {
    const size_t at = rows.find("\"seq\":", line);
    if (at == std::string::npos) break;
    ++out[std::strtoull(rows.c_str() + at + 6, nullptr, 10)];
  }
  return out;
}

// Among 10,000 good events, two that fail at every roll they are in: one whose table directory
// is in the way (a regular file: retryable, an operator can fix it) and one whose path is longer
// than PATH_MAX (ENAMETOOLONG: permanent). The engine hands the retried one over again with each
// next batch, as it does for the lake. They fail alone: every good event is answered delivered
// at its first attempt and written exactly once.
TEST(LakeAdapter, AnEventThatKeepsFailingHoldsBackNoOther) {
  TempDir tmp;
  // <dir>/<128 characters> is past PATH_MAX (4096); <dir>/contact/date=.../<file> is not.
  const std::string dir = LongPath(tmp.path() + "/lake", 3980);
  LakeAdapter lake(LakeConfig(dir, /*roll_ms=*/1), nullptr);
  ASSERT_TRUE(lake.Start(1).ok());
  testing::WriteFileOrDie(dir + "/account", "in the way");
  Events ev;
  ev.Add("update-contact-postop-async.json", 0);  // one decoded header and body for all
  EventHeader lead = ev.headers[0], squatted = ev.headers[0], too_long = ev.headers[0];
  lead.primary_entity_name = "lead";
  squatted.primary_entity_name = "account";
  too_long.primary_entity_name = std::string(kMaxLogicalNameBytes, 'n');
  auto event = [&](uint64_t seq, const EventHeader* h, uint32_t attempt) {
    Delivery d;
    d.seq = seq;
    d.key = EventKey{seq, 42};
    d.header = h;
    d.body = ev.bodies[0];
    d.attempt = attempt;
    d.received_ms = 1'700'000'000'000;
    return d;
  };
  constexpr uint64_t kGood = 10'000, kPerBatch = 100;
  constexpr uint64_t kSquatted = kGood + 1, kTooLong = kGood + 2;
  uint64_t delivered = 0, squatted_retryable = 0, too_long_permanent = 0;
  std::string squatted_error, too_long_error;
  for (uint64_t first = 1; first <= kGood; first += kPerBatch) {
    std::vector<Delivery> batch;
    batch.push_back(event(kSquatted, &squatted, static_cast<uint32_t>(first / kPerBatch + 1)));
    if (too_long_permanent == 0) batch.push_back(event(kTooLong, &too_long, 1));
    for (uint64_t s = first; s < first + kPerBatch; ++s) {
      batch.push_back(event(s, s % 2 != 0 ? &ev.headers[0] : &lead, 1));
    }
    Done done;
    lake.Deliver(batch, &done);
    const auto results = done.Wait();
    ASSERT_EQ(results.size(), batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      const DeliveryOutcome o = results[i].outcome;
      if (batch[i].seq == kSquatted) {
        squatted_retryable += o == DeliveryOutcome::kRetryable;
        squatted_error = results[i].error;
      } else if (batch[i].seq == kTooLong) {
        too_long_permanent += o == DeliveryOutcome::kPermanent;
        too_long_error = results[i].error;
      } else {
        delivered += o == DeliveryOutcome::kDelivered;
      }
    }
  }
  lake.Stop();
  EXPECT_EQ(delivered, kGood);
  EXPECT_EQ(squatted_retryable, kGood / kPerBatch);
  EXPECT_NE(squatted_error.find("/account/date=2017-09-26: Not a directory"), std::string::npos)
      << squatted_error;
  EXPECT_EQ(too_long_permanent, 1u);
  EXPECT_NE(too_long_error.find(std::strerror(ENAMETOOLONG)), std::string::npos) << too_long_error;
  const std::map<uint64_t, int> rows = RowsBySeq(dir);
  uint64_t once = 0;
  for (uint64_t s = 1; s <= kGood; ++s) once += rows.count(s) == 1 && rows.at(s) == 1;
  EXPECT_EQ(once, kGood);
  EXPECT_EQ(rows.size(), kGood) << "a failing event was written";
  for (const std::string& f : Files(dir)) EXPECT_FALSE(f.ends_with(".tmp")) << f;
}

}  // namespace
}  // namespace dvrouter
