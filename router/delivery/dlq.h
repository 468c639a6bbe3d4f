// DeadLetterQueue: events an adapter will not take, kept durably until an operator replays them.
//
// An entry names the adapter, the reason (a permanent error, or the retry policy giving up), the
// attempts and the last error, and carries the whole journal record (base64 of its frame), so a
// replay works after retention has removed the journal segment. The file is append-only JSON
// lines (`dlq.log`): entries, and {"replayed":id} markers when an entry is sent back to its
// adapter. Each Append or MarkReplayed is one write and one fdatasync; a torn last line (a crash
// mid-write) is ignored on Open, a damaged line elsewhere is counted and skipped. Every text
// field is stored as valid UTF-8 (invalid or split bytes become '?'; the last error at most
// 4000 bytes), so no entry is lost to an adapter's bytes. The lines are kept by a DlqLog: the
// file (one node), or a JetStream stream that every node of a cluster reads (NatsDlqLog,
// router/cluster/; docs/journal-nats.md, "Several router nodes").
// Threads: every method is thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "router/common/status.h"

namespace dvrouter {

struct DlqEntry {
  uint64_t id = 0;  // assigned by Append, increasing
  std::string adapter;
  uint64_t seq = 0;
  std::string event_id;
  std::string table;
  std::string row_id;
  std::string message;
  std::string reason;  // "permanent" or "gave_up: <policy reason>"
  uint32_t attempts = 0;
  std::string last_error;
  int64_t failed_at_ms = 0;
  bool replayed = false;
  std::string record;  // the journal frame; Append needs it, List leaves it empty
};

// Where the DLQ's lines are kept. A line is one JSON object without its newline; `location`
// and `length` are what Read takes to read it back. Called under the DLQ's lock.
class DlqLog {
 public:
  virtual ~DlqLog() = default;
  // A path or a stream name, for messages.
  virtual const std::string& name() const = 0;
  // Every stored line in order (a torn last line of a file is cut off).
  virtual Status Load(
      const std::function<void(std::string_view line, uint64_t location, uint32_t length)>& fn) = 0;
  // Stores `lines` durably (a file: all or none), and where each went.
  virtual Status Append(const std::vector<std::string>& lines,
                        std::vector<uint64_t>* locations) = 0;
  virtual Result<std::string> Read(uint64_t location, uint32_t length) const = 0;
};

class DeadLetterQueue {
 public:
  // The file `path` (created if missing).
  static Result<std::unique_ptr<DeadLetterQueue>> Open(const std::string& path);
  static Result<std::unique_ptr<DeadLetterQueue>> Open(std::unique_ptr<DlqLog> log);

  // Assigns ids and makes the text fields valid UTF-8 (both written back into *entries), then
  // makes the entries durable.
  Status Append(std::vector<DlqEntry>* entries);
  Status MarkReplayed(const std::vector<uint64_t>& ids);

  // Entries (without their records), oldest first, optionally only one adapter's or one id.
  std::vector<DlqEntry> List(const std::string& adapter, std::optional<uint64_t> id,
                             bool include_replayed) const;
  // The entry with its journal frame, read back from the file.
  Result<DlqEntry> Get(uint64_t id) const;
  // Entries not replayed, per adapter.
  uint64_t Pending(const std::string& adapter) const;
  // The newest entry for an event id and adapter, if any (for status queries).
  std::optional<DlqEntry> FindEvent(const std::string& event_id, const std::string& adapter) const;
  uint64_t damaged_lines() const { return damaged_lines_; }
  // Where the lines are kept (a path or a stream name).
  const std::string& name() const { return log_->name(); }

  ~DeadLetterQueue();

 private:
  explicit DeadLetterQueue(std::unique_ptr<DlqLog> log) : log_(std::move(log)) {}

  struct Slot {
    DlqEntry entry;  // without record
    uint64_t offset = 0;
    uint32_t length = 0;
  };
  void AddSlot(Slot slot);
  void SetReplayed(uint64_t id);
  std::unique_ptr<DlqLog> log_;
  mutable std::mutex mu_;
  uint64_t next_id_ = 1;
  uint64_t damaged_lines_ = 0;
  std::vector<Slot> slots_;
  // id -> position in slots_, so replay markers (on Open and MarkReplayed) and Get cost one
  // lookup each instead of a scan of every entry.
  std::unordered_map<uint64_t, size_t> index_;
};

}  // namespace dvrouter
