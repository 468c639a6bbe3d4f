// DeadLetterQueue: events an adapter will not take, kept durably until an operator replays them.
//
// An entry names the adapter, the reason (a permanent error, or the retry policy giving up), the
// attempts and the last error, and carries the whole journal record (base64 of its frame), so a
// replay works after retention has removed the journal segment. The file is append-only JSON
// lines (`dlq.log`): entries, and {"replayed":id} markers when an entry is sent back to its
// adapter. Each Append or MarkReplayed is one write and one fdatasync; a torn last line (a crash
// mid-write) is ignored on Open, a damaged line elsewhere is counted and skipped. Every text
// field is stored as valid UTF-8 (invalid or split bytes become '?'; the last error at most
// 4000 bytes), so no entry is lost to an adapter's bytes.
// Threads: every method is thread-safe.
#pragma once

#include <cstdint>
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

class DeadLetterQueue {
 public:
  static Result<std::unique_ptr<DeadLetterQueue>> Open(const std::string& path);

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

  ~DeadLetterQueue();

 private:
  explicit DeadLetterQueue(std::string path) : path_(std::move(path)) {}
  Status AppendText(const std::string& text);

  struct Slot {
    DlqEntry entry;  // without record
    uint64_t offset = 0;
    uint32_t length = 0;
  };
  void AddSlot(Slot slot);
  void SetReplayed(uint64_t id);
  std::string path_;
  mutable std::mutex mu_;
  int fd_ = -1;
  uint64_t size_ = 0;
  uint64_t next_id_ = 1;
  uint64_t damaged_lines_ = 0;
  std::vector<Slot> slots_;
  // id -> position in slots_, so replay markers (on Open and MarkReplayed) and Get cost one
  // lookup each instead of a scan of every entry.
  std::unordered_map<uint64_t, size_t> index_;
};

}  // namespace dvrouter
