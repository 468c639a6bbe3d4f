// FileJournal: the embedded, single-node Journal on local disk.
//
// Layout under <dir>: META (format and partition count, written once), LOCK (flock: one router
// per directory), SEQ (sequences reserved ahead, so they never go back after a crash), segment
// files <first seq, 20 digits>.seg, compression dictionaries <id, 20 digits>.dict and, while
// preallocating, next.spare (the next segment, zeros; SegmentSpare). One writer
// thread takes every Append queued since its last pass, writes their frames with writev, syncs once
// with fdatasync (group commit, as LevelDB's BuildBatchGroup) and only then runs the callbacks.
// Open() recovers: it scans every segment, skips (and counts) corrupt records that valid ones
// follow, truncates a torn tail after the last valid record of the newest segment, fdatasyncs what
// it found (it may have been in the page cache only), and rebuilds the next sequence and the dedupe
// index.
//
// Threads: Append() from any thread; callbacks, the CommitListener and the JournalObserver on the
// writer thread (ReclaimableBelow and OnReclaimed also on the reclaimer, dv-journal-gc);
// Open/Stop/Scan/Stats from the owner's thread (Scan and Stats are also safe while the writer
// runs). Dictionaries are written and deleted on their own thread, dv-journal-dict; the
// preallocated next segment is written on dv-journal-pre (SegmentSpare).
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "router/journal/body_dictionary.h"
#include "router/journal/journal.h"

namespace dvrouter {

// The syscalls the writer makes, behind an interface so tests can inject ENOSPC and EIO (like
// LevelDB's EnvWrapper). The default forwards to the kernel.
class JournalIo {
 public:
  virtual ~JournalIo() = default;
  virtual ssize_t Writev(int fd, const iovec* iov, int iovcnt);
  virtual int Fdatasync(int fd);
  virtual int Ftruncate(int fd, off_t size);
  static JournalIo* Default();
};

// Told what the writer does, for metrics. Runs on the writer thread.
class JournalObserver {
 public:
  virtual ~JournalObserver() = default;
  virtual void OnWrite(double seconds, uint64_t bytes) = 0;
  virtual void OnSync(double seconds, size_t batch_events) = 0;
  virtual void OnSize(uint64_t bytes, uint64_t segments) = 0;
  virtual void OnRefused(const Status& why) = 0;
  // Delivered segments deleted to make room: how long it took, the bytes, and whether the writer
  // did it (an append found no room) or the reclaimer, ahead of need. On either thread.
  virtual void OnReclaimed(double /*seconds*/, uint64_t /*bytes*/, bool /*on_writer*/) {}
};

struct FileJournalOptions {
  std::string dir;                       // required; created if missing
  uint32_t partitions = 64;              // recorded when the journal is created; must match
  uint64_t segment_bytes = 64ull << 20;  // roll to a new segment past this size
  // Past this many bytes, delivered segments are deleted to make room (CommitListener::
  // ReclaimableBelow); appends are refused (503) only when undelivered data fills it.
  uint64_t disk_budget_bytes = 8ull << 30;
  bool fsync = true;  // false: ack before fdatasync (unsafe, off by default)
  // With fsync: the next segment is written full of zeros and synced ahead of need, on its own
  // thread, so that a group's fdatasync flushes data only (docs/architecture.md, "Preallocated
  // segments"). Its bytes count against the budget from the moment it is begun. Off here (the
  // tests of exact file sizes); the router's configuration turns it on by default.
  bool preallocate = false;
  // With fsync, the newest this-many synced bytes stay in the page cache; older ones are dropped
  // (posix_fadvise DONTNEED) as the journal grows. 0: leave the page cache to the kernel.
  uint64_t page_cache_bytes = 256ull << 20;
  int64_t dedupe_window_ms = 24ll * 3600 * 1000;  // duplicates within this window are absorbed
  size_t dedupe_max_entries = 1'000'000;          // bound on the dedupe index; oldest evicted first
  size_t max_batch_events = 2048;                 // upper bound on events per group commit
  // A group of fewer than group_window_events events (and max_batch_events) waits up to this long
  // for more before it is written, and no longer once that many wait: fewer, larger writes and
  // syncs (docs/architecture.md, "Group commit"). 0: no window. group_window_events 0 counts as 1.
  int64_t group_window_us = 200;
  size_t group_window_events = 64;
  // Bodies are stored compressed (zstd at this level; on the appending thread) when that saves
  // bytes. Journals of either setting read the same; turning it on marks META format=2.
  Codec compression = Codec::kZstd;
  int compression_level = 1;
  // With zstd: bodies are compressed with a dictionary of recent bodies, kept in <dir>/<id>.dict
  // (docs/architecture.md, "Compression dictionaries"); the first marks META format=3 (format=4
  // with entropy tables).
  bool dictionaries = true;
  DictionarySampler::Options dictionary;  // when a new dictionary is made, and its size
  // The read tail: plain frames of the newest this-many committed records kept in memory (bodies
  // up to 60 KiB), so the delivery worker's routing read right after the commit reads neither
  // the disk nor zstd. Only with a listener. 0: off.
  size_t read_tail_records = 2048;
  JournalIo* io = nullptr;              // default: JournalIo::Default()
  JournalObserver* observer = nullptr;  // optional
  CommitListener* listener = nullptr;   // optional
  std::function<int64_t()> now_ms;      // default: system clock
};

class FileJournal final : public Journal {
 public:
  // Recovers the directory and starts the writer thread.
  static Result<std::unique_ptr<FileJournal>> Open(FileJournalOptions options);
  ~FileJournal() override;

  void Append(AppendRequest* request) override;
  Status Scan(uint64_t from_seq, const std::function<bool(const RecordView&)>& fn,
              ScanHint hint = {}) override;
  Status Read(const RecordHandle& handle, std::string* buffer, EventHeader* header,
              RecordView* out) override;
  Result<RetentionResult> DeleteBefore(uint64_t below_seq, int64_t min_age_ms) override;
  JournalStats Stats() const override;
  uint64_t BytesFrom(uint64_t seq) const override;
  void Stop() override;

  // Reads a journal directory without opening it for writing (tools, tests): visits every valid
  // record in order. Does not truncate or take the lock.
  static Status ScanDirectory(const std::string& dir,
                              const std::function<bool(const RecordView&)>& fn);

 private:
  struct Impl;
  explicit FileJournal(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dvrouter
