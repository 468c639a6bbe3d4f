// A delivery worker's state: per partition and adapter a lane (a window of events in sequence
// order with their delivery state), per adapter a channel (batches in flight, linger, replays,
// retry policy), the batches handed to adapters, and the inbox other threads post to.
//
// Threads: a Worker and everything in it belong to its delivery thread, except the inbox
// (PostCompletion from adapters' threads, PostReplay from the maintenance thread), the waker, the
// atomics, and Channel::oldest_ms (read by RefreshMetrics).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "adapters/adapter.h"
#include "router/decode/attributes.h"
#include "router/delivery/record_cache.h"
#include "router/delivery/replays.h"
#include "router/delivery/retry.h"
#include "router/delivery/status_table.h"
#include "router/delivery/waiting_set.h"
#include "router/journal/journal.h"
#include "router/partition/partition_queue.h"

namespace dvrouter::delivery {

using SteadyClock = std::chrono::steady_clock;

// Wakes a sleeping thread; Notify is cheap when nobody sleeps (one atomic exchange).
class Waker {
 public:
  void Notify() {
    if (!signaled_.exchange(true, std::memory_order_acq_rel)) {
      std::lock_guard<std::mutex> lock(mu_);
      cv_.notify_one();
    }
  }
  void WaitFor(int64_t ms) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(ms),
                 [&] { return signaled_.load(std::memory_order_acquire); });
    signaled_.store(false, std::memory_order_release);
  }

 private:
  std::atomic<bool> signaled_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

enum class EntryState : uint8_t { kWaiting, kInFlight, kDone };

// One event in a lane: small; its body only while the record is cached (CachedRecord).
struct Entry {
  uint64_t seq = 0;
  RecordHandle handle;
  uint64_t record = 0;  // RecordHash(table, row id): the ordering key
  EventKey key;
  int64_t received_ms = 0;
  int64_t ready_ms = 0;  // may be dispatched from then on
  int64_t first_attempt_ms = 0;
  uint32_t attempts = 0;
  EntryState state = EntryState::kWaiting;
  StatusTable::Slot status = nullptr;  // where its status was (a hint: StatusTable::Update)
  std::string last_error;
  EntryHold cached;  // the record, until its first batch is built (not always: CachedRecord)
};

// One adapter's view of one partition.
struct Lane {
  std::deque<Entry> window;
  uint64_t read_pos = 0;  // every event of the partition up to here is in the window or skipped
  ScanHint hint;          // just past the record at read_pos, for journal scans
  uint64_t cursor = 0;    // every event up to here is finished
  uint64_t popped = 0;  // entries that left the window's front: window[i] is at position popped + i
  WaitingSet waiting;   // the positions of the entries in kWaiting
  // Records with an event in flight, for the adapters that wait for them (not kPipelined).
  std::unordered_map<uint64_t, uint32_t> in_flight;
  std::atomic<uint64_t>* published = nullptr;
};

struct Part {
  uint32_t partition = 0;
  PartitionQueue* queue = nullptr;
  uint64_t last = 0;        // every record of the partition up to here was offered to the lanes
  std::vector<Lane> lanes;  // by adapter index
};

struct Worker;

struct Batch final : DeliveryDone {
  Worker* worker = nullptr;
  size_t adapter = 0;
  bool probe = false;
  SteadyClock::time_point started;
  int64_t dispatched_ms = 0;  // on the engine's clock
  struct Ref {
    size_t part = 0;  // index into worker->parts
    uint64_t seq = 0;
    int replay = -1;  // index into replays when an operator replay
  };
  std::vector<Ref> refs;
  std::vector<Delivery> deliveries;
  std::vector<std::string> buffers;  // records read from the journal for this batch
  std::vector<EventHeader> headers;
  std::vector<CachedRecord*> held;  // or cached ones (one reference each), by delivery index
  // The journal record of delivery i (not a replay).
  const std::string& Record(size_t i) const { return held[i] ? held[i]->buffer : buffers[i]; }
  std::vector<std::unique_ptr<ReplayItem>> replays;
  std::vector<DeliveryResult> results;

  ~Batch() override { ReleaseHeld(); }
  void ReleaseHeld() {
    for (CachedRecord* r : held) {
      if (r != nullptr) r->cache->Unref(r);
    }
    held.clear();
  }

  void OnDelivered(std::span<const DeliveryResult> r) override;  // adapters' threads
};

struct Channel {
  size_t adapter = 0;
  int in_flight = 0;
  int64_t linger_since = -1;
  bool dirty = true;                 // something changed since the last Dispatch: look again
  int64_t due_ms = 0;                // or look again at this time (linger, backoff, breaker)
  bool stalled = false;              // see MarkStalled; cleared when the breaker lets a batch go
  int64_t unanswered_since_ms = -1;  // batches in flight, none answered since (-1: none out)
  int64_t answer_avg_ms = 0;         // how long its batches take (moving average)
  std::unique_ptr<RetryPolicy> policy;
  std::deque<std::unique_ptr<ReplayItem>> replays;  // in seq order
  std::multiset<uint64_t> replays_in_flight;        // their records
  std::atomic<int64_t> oldest_ms{0};  // received time of the oldest unfinished event, 0: none
};

struct Worker {
  // First: outlives the entries and batches that hold its records.
  RecordCache record_cache;
  int index = 0;
  std::vector<Part> parts;
  std::vector<size_t> part_of;  // partition -> index in parts (or SIZE_MAX)
  std::vector<std::unique_ptr<Channel>> channels;
  Waker waker;
  std::mutex inbox_mu;
  std::vector<Batch*> completions;
  std::vector<std::unique_ptr<ReplayItem>> replay_inbox;
  std::vector<std::unique_ptr<Batch>> free_batches;
  std::unique_ptr<AttributeExtractor> extractor;
  std::string read_buf;
  EventHeader read_header;
  std::unordered_set<uint64_t> blocked;
  std::atomic<bool> stop_dispatch{false};
  std::atomic<bool> exit{false};
  std::atomic<int> in_flight_total{0};
  std::thread thread;

  void PostCompletion(Batch* b) {
    {
      std::lock_guard<std::mutex> lock(inbox_mu);
      completions.push_back(b);
    }
    waker.Notify();
  }
  void PostReplay(std::unique_ptr<ReplayItem> item) {
    {
      std::lock_guard<std::mutex> lock(inbox_mu);
      replay_inbox.push_back(std::move(item));
    }
    waker.Notify();
  }
};

inline void Batch::OnDelivered(std::span<const DeliveryResult> r) {
  results.assign(r.begin(), r.end());
  for (DeliveryResult& result : results) KeepTextsValid(&result);
  worker->PostCompletion(this);
}

// Keeps a channel's replays in sequence order, so one record's replays go out in order.
inline void InsertReplay(Channel& c, std::unique_ptr<ReplayItem> item) {
  auto at = std::upper_bound(
      c.replays.begin(), c.replays.end(), item->meta.seq,
      [](uint64_t seq, const std::unique_ptr<ReplayItem>& x) { return seq < x->meta.seq; });
  c.replays.insert(at, std::move(item));
}

// Marks window[index] waiting, or not.
inline void MarkWaiting(Lane& lane, size_t index) { lane.waiting.Insert(lane.popped + index); }
inline void UnmarkWaiting(Lane& lane, size_t index) { lane.waiting.Erase(lane.popped + index); }

inline size_t IndexOf(const Lane& lane, uint64_t seq) {
  auto it = std::lower_bound(lane.window.begin(), lane.window.end(), seq,
                             [](const Entry& x, uint64_t s) { return x.seq < s; });
  return static_cast<size_t>(it - lane.window.begin());
}

// IndexOf for lookups in seq order within one lane (a batch's events as Scheduler::Complete
// meets them): each search starts where the last one ended and gallops, so that near seqs cost a
// step or two instead of a binary search over the window (thousands of entries while a sink
// holds its batches, two or three per deque block). Valid while no entry leaves the window.
class WindowCursor {
 public:
  size_t Find(const Lane& lane, uint64_t seq) {
    const auto& w = lane.window;
    if (&lane != lane_ || seq <= seq_) {
      next_ = IndexOf(lane, seq);
    } else {
      // w[lo].seq < seq for every lo before next_; gallop to a bound, then search between.
      size_t lo = next_, step = 1;
      while (lo + step < w.size() && w[lo + step].seq < seq) {
        lo += step;
        step *= 2;
      }
      const size_t hi = std::min(w.size(), lo + step);
      next_ = static_cast<size_t>(
          std::lower_bound(w.begin() + static_cast<std::ptrdiff_t>(lo),
                           w.begin() + static_cast<std::ptrdiff_t>(hi), seq,
                           [](const Entry& x, uint64_t s) { return x.seq < s; }) -
          w.begin());
    }
    lane_ = &lane;
    seq_ = seq;
    return next_;
  }

 private:
  const Lane* lane_ = nullptr;
  uint64_t seq_ = 0;
  size_t next_ = 0;
};

// Lane a of a partition may hold a cached record: it keeps up (fewer than kCacheMaxWaiting
// events waiting for a batch) and its adapter is not stalled.
inline bool CanHoldCached(const Worker& w, const Lane& lane, size_t a) {
  return lane.waiting.size() < kCacheMaxWaiting && !w.channels[a]->stalled;
}

// Drops finished entries from the front of the window and publishes the cursor.
inline void Finish(Lane& lane) {
  const uint64_t before = lane.popped;
  while (!lane.window.empty() && lane.window.front().state == EntryState::kDone) {
    lane.window.pop_front();
    ++lane.popped;
  }
  if (lane.popped != before) lane.waiting.DropBelow(lane.popped);
  const uint64_t c = lane.window.empty() ? lane.read_pos : lane.window.front().seq - 1;
  if (c > lane.cursor) {
    lane.cursor = c;
    lane.published->store(c, std::memory_order_release);
  }
}

}  // namespace dvrouter::delivery
