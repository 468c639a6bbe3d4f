// StatusTable: the delivery status of recent events, per adapter, for GET /events/{id}, the
// event search (GET /api/events), the console and `dvrouter status`.
//
// A bounded map from event key to a small record: the event's seq, table, row, message and
// arrival, and per adapter its state (pending, submitted, processing, completed, failed),
// attempts, last error, the sink's captured answer, the timeline of its steps and what was
// written back to the CRM row. The oldest events are forgotten first once `capacity` is reached;
// older events are answered from the cursors and the DLQ instead (engine.h). Threads:
// thread-safe (sharded mutexes: delivery workers update it on every transition; Search holds one
// shard's lock at a time).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "router/decode/event.h"
#include "router/journal/journal.h"

namespace dvrouter {

struct DeliveryResult;

enum class EventState : uint8_t { kPending, kSubmitted, kProcessing, kCompleted, kFailed };
std::string_view EventStateName(EventState s);

// A sink's texts as the engine keeps them (this table, status records, the DLQ): its error and
// captured answer made valid UTF-8 by Utf8Excerpt (router/common/json.h), so GET /events/{id}
// and the write-back's records always parse whatever bytes an adapter passed on. Applied where
// results come in: Batch::OnDelivered (lanes.h) and Confirmations::Confirm. Any thread.
void KeepTextsValid(DeliveryResult* result);

// One step of an event at one adapter: a state it entered, when, on which attempt, with the
// sink's error or answer of that step.
// 24 bytes: the texts, which most steps lack, live apart (every routed event gets about three
// steps per adapter, and the table keeps 100 000 events: bench/README.md, "Issue 23, fourth
// round").
struct StatusStep {
  struct Texts {
    std::string error;  // at most AdapterStatus::kMaxStepText bytes
    std::string answer;
  };
  int64_t ms = 0;
  uint32_t attempt = 0;
  EventState state = EventState::kPending;
  bool replay = false;           // a replay's delivery (DLQ or range) was handed to the adapter
  bool same_error = false;       // the error of the previous failed step again (not kept twice)
  std::unique_ptr<Texts> texts;  // null: neither an error nor an answer

  const std::string& error() const;  // "" when none
  const std::string& answer() const;

  StatusStep() = default;
  StatusStep(StatusStep&&) noexcept = default;
  StatusStep& operator=(StatusStep&&) noexcept = default;
  StatusStep(const StatusStep& other) { *this = other; }
  StatusStep& operator=(const StatusStep& other);
};

struct AdapterStatus {
  // The timeline keeps the first step and the latest ones, kMaxSteps in all, each text cut to
  // kMaxStepText bytes: at most about 12 x 600 bytes per event and adapter in a retry storm.
  static constexpr size_t kMaxSteps = 12;
  static constexpr size_t kMaxStepText = 300;
  static constexpr size_t kUsualSteps = 4;  // room taken at the first step

  EventState state = EventState::kPending;
  uint32_t attempts = 0;
  int64_t updated_ms = 0;
  std::string last_error;
  std::string answer;
  std::vector<StatusStep> steps;  // oldest first
  uint32_t steps_dropped = 0;     // steps left out between the first and the kept ones
  // The last status a write-back adapter wrote to the CRM row for this adapter's delivery.
  std::string written_back;  // its state; empty: none yet
  int64_t written_back_ms = 0;
  int32_t written_back_by = -1;  // the write-back adapter's index

  // Enters state `s` at `ms` (attempt 0: the count stays), keeping `error` and `answer` when
  // not empty, and adds the step to the timeline.
  void Step(EventState s, int64_t ms, uint32_t attempt, const std::string& error,
            const std::string& answer);
};

// What the search shows of an event without reading the journal.
struct EventSummary {
  std::string table;    // PrimaryEntityName
  std::string row_id;   // PrimaryEntityId
  std::string message;  // MessageName
  int64_t received_ms = 0;
  bool status_record = false;  // a status record for the write-back, not a webhook
};

// The same, pointing into the event's header: what UpdateEach copies (into kept storage).
struct EventSummaryView {
  std::string_view table, row_id, message;
  int64_t received_ms = 0;
  bool status_record = false;
};

struct EventStatus {
  EventKey key;  // whose status this is (a slot is reused for a newer event once the table is full)
  uint64_t seq = 0;
  RecordHandle handle;  // where the record is (length 0: not known)
  EventSummary summary;
  std::vector<AdapterStatus> adapters;  // indexed like the engine's adapters
};

// GET /api/events: which events to list, newest (highest seq) first.
struct EventQuery {
  std::string row_id;                // empty: any
  std::string table;                 // empty: any
  std::string message;               // empty: any (compared ignoring case)
  std::optional<EventState> state;   // at any adapter (or at `adapter`); nullopt: any
  size_t adapter = SIZE_MAX;         // only events routed to this adapter; SIZE_MAX: any
  bool status_records = false;       // also the write-back's status records
  uint64_t before_seq = UINT64_MAX;  // paging: only events below this seq
  size_t limit = 50;
};

struct EventMatch {
  EventKey key;
  EventStatus status;
};

class StatusTable {
 public:
  StatusTable(size_t capacity, size_t adapters);

  // Where an event's status was last found: what UpdateEach returns and a lane entry keeps, so
  // the event's later steps skip the hash lookup. Only a hint: the slot may have been reused for
  // a newer event since (checked under the lock), and then the table is searched.
  using Slot = const EventStatus*;

  // Creates the record if missing (every adapter pending), then applies fn to adapter a's status.
  // `handle`, when given, records where the event is in the journal; `hint`, when it still holds
  // the event, saves the lookup.
  template <typename Fn>
  void Update(const EventKey& key, uint64_t seq, size_t adapter, Fn&& fn,
              const RecordHandle* handle = nullptr, Slot hint = nullptr) {
    UpdateEach(key, seq, uint64_t{1} << adapter, std::forward<Fn>(fn), handle, nullptr, hint);
  }
  // The same for every adapter whose bit is set in `adapters` (bit a: adapter a), with one
  // lookup: routing a new event sets it pending at all its adapters at once.
  template <typename Fn>
  // `summary`, when given, is what the search shows of the event. Returns the event's slot (a
  // hint for its later updates), null when nothing was updated.
  Slot UpdateEach(const EventKey& key, uint64_t seq, uint64_t adapters, Fn&& fn,
                  const RecordHandle* handle = nullptr, const EventSummaryView* summary = nullptr,
                  Slot hint = nullptr) {
    if (capacity_ == 0 || adapters == 0) return nullptr;
    Shard& s = ShardOf(key);
    std::lock_guard<std::mutex> lock(s.mu);
    // A slot stays where it is for the table's life (a full shard reuses its oldest slot,
    // nothing is freed), so a hint read under the shard's lock is either this event or another
    // of the same shard.
    if (hint != nullptr && hint->key == key) {
      EventStatus& st = const_cast<EventStatus&>(*hint);
      Apply(&st, adapters, fn, handle, summary);
      return hint;
    }
    EventStatus* st = s.Lookup(key);
    if (st == nullptr) {
      st = s.Claim(key, per_shard_, adapters_);
      st->seq = seq;
    }
    Apply(st, adapters, fn, handle, summary);
    return st;
  }

  // Applies fn to adapter a's status of an event the table holds; false when it holds none.
  template <typename Fn>
  bool UpdateExisting(const EventKey& key, size_t adapter, Fn&& fn) {
    Shard& s = ShardOf(key);
    std::lock_guard<std::mutex> lock(s.mu);
    EventStatus* st = s.Lookup(key);
    if (st == nullptr || adapter >= st->adapters.size()) return false;
    fn(st->adapters[adapter]);
    return true;
  }

  // The 32 bits of a key's hash its shard's index keeps: the low ones are the key's home
  // position there (tests choose keys by it).
  static uint32_t IndexHash(const EventKey& key);

  std::optional<EventStatus> Find(const EventKey& key) const;
  // The events matching `query`, newest first, at most query.limit. Visits every kept event:
  // O(capacity), one shard locked at a time, so delivery workers wait for one shard's part only.
  std::vector<EventMatch> Search(const EventQuery& query) const;
  size_t size() const;

 private:
  // One shard: its events' statuses in slots that never move, filled in arrival order and then
  // reused oldest first (a ring), and an open-addressing index from key to slot.
  // docs/architecture.md, "The status table".
  class Shard {
   public:
    mutable std::mutex mu;

    // The slot holding `key`, null when none. Under mu.
    EventStatus* Lookup(const EventKey& key) const;
    // A slot for `key`, which the shard does not hold: a new one while fewer than `capacity`
    // are in use, else the oldest one, reset (every adapter pending, its storage kept). Under mu.
    EventStatus* Claim(const EventKey& key, size_t capacity, size_t adapters);
    // fn(const EventStatus&) for every slot in use, in slot order. Under mu.
    template <typename Fn>
    void ForEach(Fn&& fn) const {
      for (size_t i = 0; i < used_; ++i) fn(Slot(i));
    }
    size_t size() const { return used_; }

   private:
    static constexpr size_t kChunk = 256;  // slots per allocation
    EventStatus& Slot(size_t i) const { return chunks_[i / kChunk][i % kChunk]; }
    // The entry pointing at `slot`; SIZE_MAX if none (never, while the index is consistent).
    size_t Find(uint32_t hash, uint32_t slot) const;
    static void Insert(std::vector<uint64_t>* index, uint32_t hash, uint32_t slot);
    void Erase(size_t at);  // backward shift: no tombstones
    void Grow();

    std::vector<std::unique_ptr<EventStatus[]>> chunks_;
    size_t used_ = 0;    // slots in use
    size_t oldest_ = 0;  // once full: the slot Claim reuses next
    // Entries: the key's IndexHash (its home position and a first comparison) above, its
    // slot + 1 below; 0 is an empty entry. A power of two of them, at most half in use.
    std::vector<uint64_t> index_;
  };
  Shard& ShardOf(const EventKey& key) { return shards_[key.hi % kShards]; }
  template <typename Fn>
  void Apply(EventStatus* st, uint64_t adapters, Fn& fn, const RecordHandle* handle,
             const EventSummaryView* summary) {
    if (handle != nullptr) st->handle = *handle;
    if (summary != nullptr) {
      EventSummary& kept = st->summary;
      kept.table.assign(summary->table);
      kept.row_id.assign(summary->row_id);
      kept.message.assign(summary->message);
      kept.received_ms = summary->received_ms;
      kept.status_record = summary->status_record;
    }
    for (size_t a = 0; a < adapters_ && a < 64; ++a) {
      if (adapters >> a & 1) fn(st->adapters[a]);
    }
  }

  static constexpr size_t kShards = 16;
  size_t capacity_;
  size_t per_shard_;
  size_t adapters_;
  std::array<Shard, kShards> shards_;
};

}  // namespace dvrouter
