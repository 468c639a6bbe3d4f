// The record cache: a worker's records read from the journal for routing, kept for the lane
// entries they were offered to until their batches are built (delivery.record_cache_bytes, split
// among the workers), and a bounded free list of spare records to reuse.
//
// Threads: each RecordCache belongs to one delivery worker and is used only on its thread, except
// bytes() (any thread, for the gauge).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "router/decode/attributes.h"
#include "router/decode/event.h"

namespace dvrouter {

class RecordCache;

// A record read from the journal to be routed, kept for the lanes it was offered to until each
// of their adapters' batches is built: the adapters then neither read it again nor parse its
// Target again (the memo extracts it once for all). Charged against its worker's share of
// delivery.record_cache_bytes while lane entries hold it; a batch's hold is not charged (the
// batch would hold a journal read of the record otherwise). Worker thread only.
struct CachedRecord {
  std::string buffer;  // the whole frame (a DLQ entry keeps it)
  EventHeader header;
  std::string_view body;
  ChangeMemo changes;
  RecordCache* cache = nullptr;
  uint64_t charge = 0;       // bytes charged, 0 once no entry holds it
  uint32_t entry_holds = 0;  // lane entries holding it
  uint32_t refs = 0;         // entry holds, batch holds and the reader's own
};

// A worker's cached records: their budget, and a bounded free list so that a steady stream of
// events reuses records (and their buffers) instead of allocating. Worker thread only, except
// bytes().
class RecordCache {
 public:
  explicit RecordCache(uint64_t budget = 0) : budget_(budget) {}
  RecordCache(const RecordCache&) = delete;
  RecordCache& operator=(const RecordCache&) = delete;
  ~RecordCache() {
    for (CachedRecord* r : free_) delete r;
  }
  void set_budget(uint64_t budget) { budget_ = budget; }

  // A record to read into, charged `charge` bytes and referenced once (by the caller), or null
  // when the charge would pass the budget.
  CachedRecord* Acquire(uint64_t charge) {
    if (bytes_.load(std::memory_order_relaxed) + charge > budget_) return nullptr;
    CachedRecord* r;
    if (!free_.empty()) {
      r = free_.back();
      free_.pop_back();
      free_bytes_ -= Footprint(*r);
      charge = std::max(charge, Footprint(*r));  // a reused record keeps its largest buffers
    } else {
      r = new CachedRecord;
      r->cache = this;
    }
    r->charge = charge;
    r->refs = 1;
    bytes_.fetch_add(charge, std::memory_order_relaxed);
    return r;
  }
  // After the read: a record is charged what it really holds once that is known (a compressed
  // record's buffer holds its body decompressed), twice for the Target its memo may extract.
  void Recharge(CachedRecord* r) {
    const uint64_t real = 2ull * r->buffer.size();
    if (real <= r->charge) return;
    bytes_.fetch_add(real - r->charge, std::memory_order_relaxed);
    r->charge = real;
  }
  void AddEntryHold(CachedRecord* r) {
    ++r->entry_holds;
    ++r->refs;
  }
  // An entry lets go (dropped, or turned into a batch's hold when `to_batch`).
  void ReleaseEntryHold(CachedRecord* r, bool to_batch) {
    if (--r->entry_holds == 0) Uncharge(r);
    if (!to_batch) Unref(r);
  }
  void Unref(CachedRecord* r) {
    if (--r->refs != 0) return;
    Uncharge(r);
    r->changes.Reset();
    r->body = {};
    // Spare records count against the budget too: a burst of releases (a large batch
    // answered) is followed by as many reads, but charged and spare records together stay
    // within it.
    const uint64_t footprint = Footprint(*r);
    if (bytes_.load(std::memory_order_relaxed) + free_bytes_ + footprint <= budget_) {
      free_bytes_ += footprint;
      free_.push_back(r);
    } else {
      delete r;
    }
  }
  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }

 private:
  static uint64_t Footprint(const CachedRecord& r) {
    return sizeof(CachedRecord) + r.buffer.capacity() + r.changes.StorageBytes();
  }
  void Uncharge(CachedRecord* r) {
    bytes_.fetch_sub(r->charge, std::memory_order_relaxed);
    r->charge = 0;
  }
  uint64_t budget_;
  std::atomic<uint64_t> bytes_{0};
  std::vector<CachedRecord*> free_;
  uint64_t free_bytes_ = 0;  // Footprint of the records in free_
};

// A lane entry's hold on a cached record.
class EntryHold {
 public:
  EntryHold() = default;
  explicit EntryHold(CachedRecord* r) : r_(r) { r_->cache->AddEntryHold(r_); }
  EntryHold(EntryHold&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
  EntryHold& operator=(EntryHold&& o) noexcept {
    if (this != &o) {
      Release();
      r_ = std::exchange(o.r_, nullptr);
    }
    return *this;
  }
  ~EntryHold() { Release(); }

  explicit operator bool() const { return r_ != nullptr; }
  // Hands the record to a batch: the entry no longer holds it; the caller owns one reference
  // (RecordCache::Unref when done).
  CachedRecord* TakeForBatch() {
    CachedRecord* r = std::exchange(r_, nullptr);
    r->cache->ReleaseEntryHold(r, /*to_batch=*/true);
    return r;
  }

 private:
  void Release() {
    if (r_ != nullptr) r_->cache->ReleaseEntryHold(std::exchange(r_, nullptr), false);
  }
  CachedRecord* r_ = nullptr;
};

// A lane with this many events waiting for a batch does not hold cached records.
constexpr size_t kCacheMaxWaiting = 256;
// An adapter with batches in flight and none answered for this long, or for 4 times as long as
// its batches usually take, counts as stalled for the record cache (a healthy lake or ClickHouse
// answers within about a second of its roll or linger; a paced write-back takes longer).
constexpr int64_t kCacheHungMs = 5000;

}  // namespace dvrouter
