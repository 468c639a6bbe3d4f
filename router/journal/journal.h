// Journal: the durable, append-only log of every accepted event (docs/architecture.md,
// guarantee 1).
//
// Journal is the interface; FileJournal (file_journal.h) is the embedded implementation and a
// replicated one (NATS JetStream) comes later behind the same seam. The ingress hands each decoded
// event to Append() and answers the webhook from the callback, which runs only once the event is
// durable, was found to be a duplicate, or was refused. Committed events are announced to the
// CommitListener in sequence order: that is where partition queues are fed.
//
// Threads: Append() may be called from any thread. Callbacks and the listener run on the
// journal's own writer thread and must not block. Everything else is for the owner's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "router/common/status.h"
#include "router/decode/event.h"

namespace dvrouter {

// Where a committed record lives: trivially copyable, what partition queues carry.
struct RecordHandle {
  uint64_t seq = 0;
  uint64_t segment = 0;  // first sequence number of the segment file
  uint64_t offset = 0;   // of the record's frame within the segment
  uint32_t length = 0;   // frame length in bytes
  uint32_t partition = 0;
};

struct AppendResult {
  Status status;           // OK, or why the event is not durable (then answer 503)
  uint64_t seq = 0;        // the event's sequence (the original's, for a duplicate)
  bool duplicate = false;  // an earlier record has the same dedupe key: nothing was written
};

class AppendCallback {
 public:
  virtual ~AppendCallback() = default;
  // Called exactly once per Append, on the writer thread; or, when the journal is stopping, on
  // the caller's thread before Append returns.
  virtual void OnAppendDone(const AppendResult& result) = 0;
};

// How a journal stores a record's body.
enum class Codec : uint8_t { kNone, kZstd };

// A body as it will be stored: compressed when that saves bytes.
struct StoredBody {
  Codec codec = Codec::kNone;
  uint64_t dict_id = 0;     // the dictionary it was compressed with (0: none)
  uint32_t dict_check = 0;  // that dictionary's BodyDictionary::check()
  std::string bytes;  // the compressed body (kZstd); empty for kNone (the body is stored as is)
};

// One event to append. Owned by the caller and left untouched until the callback has run.
struct AppendRequest {
  EventKey key;
  uint32_t partition = 0;
  int64_t received_ms = 0;
  const EventHeader* header = nullptr;
  std::string_view body;
  AppendCallback* callback = nullptr;
  // The journal's own: the body's stored form, prepared by Append on the caller's thread (so
  // compression runs on the ingress threads, not the writer). Reused across appends.
  StoredBody stored;
  // The journal's own too: the record's plain frame for the journal's read tail (FileJournal),
  // without its seq and checksum, which the reader fills in; its buffer is reused.
  std::string plain_frame;
};

// A record read back from the journal. Views point into a buffer valid during the visit only.
struct RecordView {
  RecordHandle handle;
  EventKey key;
  int64_t received_ms = 0;
  const EventHeader* header = nullptr;
  std::string_view body;
};

class CommitListener {
 public:
  virtual ~CommitListener() = default;
  // After the record is durable, in sequence order, on the writer thread.
  virtual void OnCommitted(const RecordHandle& handle) = 0;
  // After the OnCommitted calls of one group commit (one fdatasync), on the writer thread: a
  // listener that wakes other threads does it here, once per group instead of once per record.
  virtual void OnGroupCommitted() {}
  // The lowest sequence a reader still needs: records below it are delivered everywhere (and no
  // replay or restart will read them). Segments wholly below it may be deleted, oldest first,
  // whenever an append would otherwise exceed the disk budget (docs/architecture.md, "Journal
  // budget and retention"). On the writer thread: cheap, never blocking. 0: nothing may be
  // deleted.
  virtual uint64_t ReclaimableBelow() { return 0; }
};

struct JournalStats {
  uint64_t next_seq = 0;
  uint64_t bytes = 0;
  uint64_t segments = 0;
  uint64_t dedupe_entries = 0;
  uint64_t pending = 0;              // appends queued for the next group commit
  uint64_t corrupt_records = 0;      // skipped during recovery
  uint64_t truncated_bytes = 0;      // torn tail cut off during recovery
  uint64_t budget_bytes = 0;         // journal.disk_budget_bytes
  int64_t oldest_received_ms = 0;    // of the oldest retained record; 0 when there is none
  uint64_t budget_refusals = 0;      // appends refused because undelivered data fills the budget
  uint64_t reclaimed_bytes = 0;      // delivered bytes deleted to make room (not by age)
  uint64_t tail_reads = 0;           // Reads answered from the read tail, without the disk
  bool spare_ready = false;          // a preallocated next segment is ready (file journal)
  uint64_t rolls_without_spare = 0;  // rolls that found none ready, with preallocation on
};

// Where a Scan may start reading: the handle of a record at or before the first one wanted
// (typically the last record the caller saw). Saves reading a segment from its start.
struct ScanHint {
  uint64_t segment = 0;
  uint64_t offset = 0;
};

// What retention removed.
struct RetentionResult {
  uint64_t segments_deleted = 0;
  uint64_t bytes_deleted = 0;
  uint64_t first_retained_seq = 0;  // the oldest sequence still in the journal
};

class Journal {
 public:
  virtual ~Journal() = default;
  virtual void Append(AppendRequest* request) = 0;
  // Visits committed records with seq >= from_seq in order until fn returns false. Reads in
  // bounded chunks, starting at `hint` when it names a retained segment.
  virtual Status Scan(uint64_t from_seq, const std::function<bool(const RecordView&)>& fn,
                      ScanHint hint = {}) = 0;
  // Reads the committed record at `handle` into *buffer and *header; the view points into them.
  // *buffer is the record's plain frame, whose checksum may be blank (a FileJournal record read
  // from its read tail): whoever keeps the frame beyond this process's memory writes it first
  // (journal::WriteFrameChecksum; the DLQ and the kept processing records do). *header has the
  // Target's place (EventHeader::target_*) only when the record came from the read tail. Any
  // thread (each caller with its own buffers). NotFound once retention removed it.
  virtual Status Read(const RecordHandle& handle, std::string* buffer, EventHeader* header,
                      RecordView* out) = 0;
  // Deletes the segments whose records all have seq < `below_seq` and whose last write is at
  // least `min_age_ms` old. The segment being written is never deleted. Any thread.
  virtual Result<RetentionResult> DeleteBefore(uint64_t below_seq, int64_t min_age_ms) = 0;
  virtual JournalStats Stats() const = 0;
  // Bytes of the segments that hold records with seq >= `seq`: what a reader positioned at `seq`
  // keeps from being deleted. Any thread.
  virtual uint64_t BytesFrom(uint64_t seq) const = 0;
  // Completes every pending Append (their callbacks run) and stops the writer thread.
  virtual void Stop() = 0;
};

}  // namespace dvrouter
