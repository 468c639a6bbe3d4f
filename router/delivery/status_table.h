// StatusTable: the delivery status of recent events, per adapter, for GET /events/{id} and
// `dvrouter status`.
//
// A bounded map from event key to a small record: the event's seq and, per adapter, its state
// (pending, submitted, processing, completed, failed), attempts, last error and the sink's
// captured answer. The oldest events are forgotten first once `capacity` is reached; older
// events are answered from the cursors and the DLQ instead (engine.h). Threads: thread-safe
// (sharded mutexes: delivery workers update it on every transition).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
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

struct AdapterStatus {
  EventState state = EventState::kPending;
  uint32_t attempts = 0;
  int64_t updated_ms = 0;
  std::string last_error;
  std::string answer;
};

struct EventStatus {
  uint64_t seq = 0;
  RecordHandle handle;                  // where the record is (length 0: not known)
  std::vector<AdapterStatus> adapters;  // indexed like the engine's adapters
};

class StatusTable {
 public:
  StatusTable(size_t capacity, size_t adapters);

  // Creates the record if missing (every adapter pending), then applies fn to adapter a's status.
  // `handle`, when given, records where the event is in the journal.
  template <typename Fn>
  void Update(const EventKey& key, uint64_t seq, size_t adapter, Fn&& fn,
              const RecordHandle* handle = nullptr) {
    UpdateEach(key, seq, uint64_t{1} << adapter, std::forward<Fn>(fn), handle);
  }
  // The same for every adapter whose bit is set in `adapters` (bit a: adapter a), with one
  // lookup: routing a new event sets it pending at all its adapters at once.
  template <typename Fn>
  void UpdateEach(const EventKey& key, uint64_t seq, uint64_t adapters, Fn&& fn,
                  const RecordHandle* handle = nullptr) {
    if (capacity_ == 0 || adapters == 0) return;
    Shard& s = ShardOf(key);
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.map.find(key);
    if (it == s.map.end()) {
      if (s.map.size() >= per_shard_) {
        // Full: the oldest record's node (and its statuses' storage) becomes the new record's.
        auto node = s.map.extract(s.order.front());
        s.order.pop_front();
        node.key() = key;
        Reset(&node.mapped());
        it = s.map.insert(std::move(node)).position;
      } else {
        it = s.map.try_emplace(key).first;
        it->second.adapters.resize(adapters_);
      }
      it->second.seq = seq;
      s.order.push_back(key);
    }
    if (handle != nullptr) it->second.handle = *handle;
    for (size_t a = 0; a < adapters_ && a < 64; ++a) {
      if (adapters >> a & 1) fn(it->second.adapters[a]);
    }
  }

  std::optional<EventStatus> Find(const EventKey& key) const;

 private:
  struct Hash {
    size_t operator()(const EventKey& k) const { return static_cast<size_t>(k.lo ^ (k.hi >> 3)); }
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<EventKey, EventStatus, Hash> map;
    std::deque<EventKey> order;
  };
  Shard& ShardOf(const EventKey& key) { return shards_[key.hi % kShards]; }
  // As created (every adapter pending), keeping the strings' storage.
  static void Reset(EventStatus* st) {
    st->handle = RecordHandle{};
    for (AdapterStatus& a : st->adapters) {
      a.state = EventState::kPending;
      a.attempts = 0;
      a.updated_ms = 0;
      a.last_error.clear();
      a.answer.clear();
    }
  }

  static constexpr size_t kShards = 16;
  size_t capacity_;
  size_t per_shard_;
  size_t adapters_;
  std::array<Shard, kShards> shards_;
};

}  // namespace dvrouter
