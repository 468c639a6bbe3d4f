// The scheduler: what a worker hands its adapters and what it does with their answers.
// Dispatch gathers, per channel, the events a batch may take (per-record order: one event of a
// record in flight, or its ready events in order for adapters that pipeline; replays wait for
// their record), lingers for fuller batches, asks the adapter's circuit breaker, builds the batch
// (from the record cache or a journal read) and hands it over. Complete applies the results:
// statuses and status records, retries with backoff, confirmations that came early, the DLQ for
// permanent failures and exhausted retries, the breaker, and the lanes' cursors.
//
// Threads: Dispatch and Complete on the delivery worker that owns the Worker (batches complete
// through its inbox); the breakers are shared by the workers; breaker_state from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "router/delivery/confirmations.h"
#include "router/delivery/dlq.h"
#include "router/delivery/engine.h"
#include "router/delivery/lanes.h"
#include "router/delivery/replays.h"
#include "router/delivery/retry.h"
#include "router/delivery/status_records.h"
#include "router/delivery/status_table.h"
#include "router/journal/journal.h"
#include "router/metrics/delivery_metrics.h"

namespace dvrouter::delivery {

// A circuit breaker shared by one adapter's workers.
class SharedBreaker {
 public:
  explicit SharedBreaker(BreakerOptions o) : breaker_(o) {}
  // False: not now (then *retry_at says when). *probe: only one event may go.
  bool Allow(int64_t now, bool* probe, int64_t* retry_at) {
    std::lock_guard<std::mutex> lock(mu_);
    const bool half_open_before = breaker_.state() != BreakerState::kClosed;
    if (!breaker_.Allow(now)) {
      *retry_at = breaker_.state() == BreakerState::kOpen ? breaker_.probe_at_ms() : now + 1000;
      return false;
    }
    *probe = half_open_before;
    return true;
  }
  void OnSuccess() {
    std::lock_guard<std::mutex> lock(mu_);
    breaker_.OnSuccess();
  }
  void OnFailure(int64_t now) {
    std::lock_guard<std::mutex> lock(mu_);
    breaker_.OnFailure(now);
  }
  BreakerState state() const {
    std::lock_guard<std::mutex> lock(mu_);
    return breaker_.state();
  }

 private:
  mutable std::mutex mu_;
  CircuitBreaker breaker_;
};

class Scheduler {
 public:
  // Everything passed must outlive this object.
  Scheduler(const std::vector<EngineAdapter>& adapters, const std::function<int64_t()>& now_ms,
            StatusTable* status, StatusRecords* records, Confirmations* confirmations,
            Replays* replays, const DeliveryMetrics& metrics);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Start: the journal batches read records from, and the DLQ.
  void Attach(Journal* journal, DeadLetterQueue* dlq) {
    journal_ = journal;
    dlq_ = dlq;
  }

  // Hands channel c's adapter the batches it may take now; true when something went out.
  // *wake_at: when to look again (linger, backoff, breaker) if nothing changes before.
  bool Dispatch(Worker* w, Channel& c, int64_t now, int64_t* wake_at);
  // Applies an answered batch (posted to the worker's inbox), then reuses it.
  void Complete(Worker* w, Batch* b);

  BreakerState breaker_state(size_t adapter) const { return breakers_[adapter]->state(); }

 private:
  // The channel's adapter stopped taking batches (open breaker) or answering them (see
  // kCacheHungMs): its lanes drop the cached records they hold and take no more until it does.
  void MarkStalled(Worker* w, Channel& c) {
    if (c.stalled) return;
    c.stalled = true;
    for (Part& part : w->parts) {
      for (Entry& e : part.lanes[c.adapter].window) e.cached = EntryHold();
    }
  }
  // One batch in flight per record, several of its events in a batch (the SQL adapters).
  bool SharesBatches(size_t adapter) const {
    return adapters_[adapter].adapter->record_ordering() == RecordOrdering::kOneBatchInFlight;
  }
  bool WriteDlq(Worker* w, std::vector<DlqEntry>* entries);
  // A status record that write-back adapter `a` delivered: shown at its source event (the
  // console's "written back to the CRM row").
  void NoteWrittenBack(size_t a, std::string_view body, int64_t now);

  const std::vector<EngineAdapter>& adapters_;
  const std::function<int64_t()>& now_ms_;
  StatusTable* const status_;
  StatusRecords* const records_;
  Confirmations* const confirmations_;
  Replays* const replays_;
  const DeliveryMetrics& metrics_;
  Journal* journal_ = nullptr;
  DeadLetterQueue* dlq_ = nullptr;
  std::vector<std::unique_ptr<SharedBreaker>> breakers_;  // by adapter
};

}  // namespace dvrouter::delivery
