// PartitionQueue: the bounded hand-off of committed record handles from the journal's writer
// thread to the worker thread that owns the partition (docs/architecture.md: queues carry trivially
// copyable handles, never event bytes).
//
// Threads: exactly one producer (the journal's writer, from CommitListener::OnCommitted) and one
// consumer (the owning worker). TryPush and NoteDropped are producer-only; PopBatch,
// DroppedUpTo and ClearDropped consumer-only; SizeApprox any thread.
//
// Bounded memory (guarantee 5): when the queue is full the producer does not wait (that would
// stall the ingress) and does not grow the queue: it records that handles up to some sequence
// were dropped. The record itself is safe in the journal. The consumer (the delivery engine's
// worker, DeliveryEngine::Impl::Drain) checks DroppedUpTo() after each pop; when non-zero the
// popped handles may lie past a gap, so its lanes read the partition back from the journal past
// the last sequence they delivered instead, and it calls ClearDropped(value), which fails if
// more were dropped meanwhile. (A drop that precedes a popped handle is always visible after
// the pop: the push that follows it publishes it.) Handles at or below the last sequence known
// are skipped, since the queue may repeat what the journal gave.
#pragma once

#include <boost/lockfree/spsc_queue.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "router/journal/journal.h"

namespace dvrouter {

static_assert(std::is_trivially_copyable_v<RecordHandle>, "queues carry plain handles");

class PartitionQueue {
 public:
  explicit PartitionQueue(size_t capacity) : queue_(capacity) {}
  PartitionQueue(const PartitionQueue&) = delete;
  PartitionQueue& operator=(const PartitionQueue&) = delete;

  // Producer. False when full; then call NoteDropped(handle.seq).
  bool TryPush(const RecordHandle& handle) { return queue_.push(handle); }

  // Producer. Sequences only grow, so the stored value is the highest dropped one.
  void NoteDropped(uint64_t seq) { dropped_up_to_.store(seq, std::memory_order_release); }

  // Producer: push, or remember the drop. True when the handle went into the queue.
  bool Offer(const RecordHandle& handle) {
    if (TryPush(handle)) return true;
    NoteDropped(handle.seq);
    return false;
  }

  // Consumer. Pops up to `max` handles in order into `out`; returns how many.
  size_t PopBatch(RecordHandle* out, size_t max) { return queue_.pop(out, max); }

  // Consumer. 0, or the highest sequence that was dropped and must be read from the journal.
  uint64_t DroppedUpTo() const { return dropped_up_to_.load(std::memory_order_acquire); }

  // Consumer, after reading the journal up to at least `seen`. False if more were dropped since
  // DroppedUpTo() returned `seen`: read again up to the new value.
  bool ClearDropped(uint64_t seen) {
    return dropped_up_to_.compare_exchange_strong(seen, 0, std::memory_order_acq_rel);
  }

  // Any thread; exact only when both sides are idle.
  size_t SizeApprox() const { return queue_.read_available(); }

 private:
  boost::lockfree::spsc_queue<RecordHandle> queue_;
  alignas(64) std::atomic<uint64_t> dropped_up_to_{0};
};

}  // namespace dvrouter
