// Journal test helpers: events with a callback to wait on, a journal directory with a fake
// clock, and readers of what a journal directory holds. Used from the test's main thread.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "router/journal/file_journal.h"
#include "router/journal/record.h"
#include "tests/support/test_util.h"

namespace dvrouter::testing {

// Collects callback results; each Append gets its own Pending slot.
struct Pending final : AppendCallback {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  AppendResult result;
  EventHeader header;
  std::string body;
  AppendRequest request;

  void OnAppendDone(const AppendResult& r) override {
    std::lock_guard<std::mutex> lock(mu);
    result = r;
    done = true;
    cv.notify_all();
  }
  AppendResult Wait() {
    std::unique_lock<std::mutex> lock(mu);
    EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return done; }));
    return result;
  }
};

inline std::string Guid(int n) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "00000000-0000-0000-0000-%012d", n);
  return buf;
}

// An event whose dedupe key is unique per `n`, with a body of `body_bytes`.
constexpr int64_t kEpochMs = 1'700'000'000'000;  // the fake clock's start

inline std::unique_ptr<Pending> MakeEvent(int n, size_t body_bytes = 200,
                                          int64_t received_ms = kEpochMs) {
  auto p = std::make_unique<Pending>();
  p->header.message_name = "Update";
  p->header.primary_entity_name = "contact";
  p->header.primary_entity_id = Guid(n % 97);
  p->header.operation_id = Guid(n);
  p->header.owning_extension_id = Guid(424242);
  p->header.stage = 40;
  p->header.mode = 1;
  p->body = "{\"n\":" + std::to_string(n) + ",\"pad\":\"";
  p->body.append(body_bytes > p->body.size() + 2 ? body_bytes - p->body.size() - 2 : 0, 'x');
  p->body += "\"}";
  p->request.key = p->header.DedupeKey();
  p->request.partition = static_cast<uint32_t>(n % 7);
  p->request.received_ms = received_ms;
  p->request.header = &p->header;
  p->request.body = p->body;
  p->request.callback = p.get();
  return p;
}

// A journal directory and a fake clock. Its journals store bodies uncompressed, so that frames
// are as large as their bodies (the tests of segment and budget arithmetic); the compression
// tests turn it on.
struct JournalFixture {
  TempDir tmp;
  std::string dir = tmp.path() + "/journal";
  int64_t now = kEpochMs;

  FileJournalOptions Options() {
    FileJournalOptions o;
    o.dir = dir;
    o.partitions = 8;
    o.compression = Codec::kNone;
    o.now_ms = [this] { return now; };
    return o;
  }
};

inline std::unique_ptr<FileJournal> OpenOrDie(FileJournalOptions o) {
  auto j = FileJournal::Open(std::move(o));
  EXPECT_TRUE(j.ok()) << j.status().ToString();
  if (!j.ok()) return nullptr;
  return std::move(j).value();
}

inline AppendResult AppendOne(Journal* j, Pending* p) {
  j->Append(&p->request);
  return p->Wait();
}

inline std::vector<std::pair<uint64_t, std::string>> ReadAll(const std::string& dir) {
  std::vector<std::pair<uint64_t, std::string>> out;
  Status st = FileJournal::ScanDirectory(dir, [&](const RecordView& v) {
    out.emplace_back(v.handle.seq, std::string(v.body));
    return true;
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

// A Read of one record, and the plain frame it gave decoded with its checksum verified, once
// written as the DLQ writes it (a frame from the read tail has it blank: Journal::Read). Both must
// succeed: callers wrap the call in ASSERT_NO_FATAL_FAILURE.
struct PlainRead {
  std::string buffer;
  EventHeader header;
  RecordView view;
  journal::FrameMeta meta;
  EventHeader frame_header;
  std::string_view frame_body;
  uint32_t frame_len = 0;
};
inline void ReadPlainFrame(Journal* j, const RecordHandle& h, PlainRead* out) {
  const Status st = j->Read(h, &out->buffer, &out->header, &out->view);
  ASSERT_TRUE(st.ok()) << h.seq << ": " << st.ToString();
  journal::WriteFrameChecksum(&out->buffer);
  ASSERT_TRUE(journal::DecodeFrame(out->buffer.data(), out->buffer.size(), &out->meta,
                                   &out->frame_header, &out->frame_body, &out->frame_len)
                  .ok())
      << h.seq;
}

inline std::vector<std::string> SegmentFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".seg") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Appends events 0..count-1 with bodies of `body_bytes`, one at a time: how many were accepted,
// and the last refusal.
struct AppendTally {
  int accepted = 0;
  AppendResult refused;
};
inline AppendTally AppendEach(Journal* j, int count, size_t body_bytes) {
  AppendTally t;
  for (int i = 0; i < count; ++i) {
    auto e = MakeEvent(i, body_bytes);
    AppendResult r = AppendOne(j, e.get());
    if (r.status.ok()) {
      ++t.accepted;
    } else {
      t.refused = r;
    }
  }
  return t;
}

// Bytes of the segment files in `dir` and of the preallocated spare being made, what the budget
// bounds (a file deleted meanwhile counts 0).
inline uint64_t SegmentBytesOnDisk(const std::string& dir) {
  uint64_t bytes = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".seg" && e.path().filename() != "next.spare") continue;
    const auto size = std::filesystem::file_size(e.path(), ec);
    if (!ec) bytes += size;
  }
  return bytes;
}

// The handles of the records committed, in order (the journal's listener).
struct HandleLog final : CommitListener {
  std::vector<RecordHandle> all;
  void OnCommitted(const RecordHandle& h) override { all.push_back(h); }
  size_t size() const { return all.size(); }
  const RecordHandle& operator[](size_t i) const { return all[i]; }
  const RecordHandle& back() const { return all.back(); }
};

// The frames in the segment files of `dir`: how many name a dictionary, and their stored bytes;
// and how many that name none have a higher seq than the first frame that names one.
struct FrameCensus {
  size_t with_dict = 0, without = 0;
  uint64_t bytes_with = 0, bytes_without = 0;
  size_t without_after_first_with = 0;
};
inline FrameCensus Census(const std::string& dir) {
  FrameCensus c;
  uint64_t first_with = UINT64_MAX;
  std::vector<uint64_t> without_seqs;
  for (const std::string& path : SegmentFiles(dir)) {
    const std::string data = ReadFileOrDie(path);
    for (size_t pos = 0; pos < data.size();) {
      journal::FrameMeta meta;
      EventHeader h;
      std::string_view stored;
      uint32_t len = 0;
      if (!journal::DecodeFrame(data.data() + pos, data.size() - pos, &meta, &h, &stored, &len)
               .ok()) {
        break;
      }
      (meta.dict_id != 0 ? c.with_dict : c.without) += 1;
      (meta.dict_id != 0 ? c.bytes_with : c.bytes_without) += stored.size();
      if (meta.dict_id != 0) {
        first_with = std::min(first_with, meta.seq);
      } else {
        without_seqs.push_back(meta.seq);
      }
      pos += len;
    }
  }
  for (uint64_t seq : without_seqs) c.without_after_first_with += seq > first_with ? 1 : 0;
  return c;
}

}  // namespace dvrouter::testing
