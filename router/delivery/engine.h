// DeliveryEngine: takes every committed journal record to the adapters its routes name, per
// record in order, with retries, a circuit breaker, a DLQ and replay (docs/architecture.md, "The
// delivery engine": data flow, ordering, isolation, bounded memory, status records).
//
// engine.cc holds the wiring and the data path (commit -> partition queue -> worker -> lanes);
// it calls the units that do one job each: scheduler.h (batches, answers, retries, DLQ),
// record_cache.h, lanes.h, status_records.h, confirmations.h, retention.h (cursors, journal
// deletion), replays.h, router/metrics/delivery_metrics.h, router/ingress/admin_json.h.
//
// Threads: OnCommitted on the journal's writer thread; one thread per worker; one maintenance
// thread (cursor flushes, retention, replay feeding). Start, Stop on the owner's thread; the
// admin methods from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "adapters/adapter.h"
#include "router/common/status.h"
#include "router/config/config.h"
#include "router/delivery/status_table.h"
#include "router/journal/journal.h"

namespace prometheus {
class Registry;
}

namespace dvrouter {

struct EngineOptions {
  DeliveryConfig delivery;
  LoopGuardConfig loop_guard;
  std::vector<RouteConfig> routes;
  uint32_t partitions = 64;
  std::string state_dir;                            // cursors and dlq.log; created if missing
  std::shared_ptr<class CursorStore> cursor_store;  // null: the file <state_dir>/cursors
  // Opens where the DLQ's lines are kept, at Start; null: the file <state_dir>/dlq.log.
  std::function<Result<std::unique_ptr<class DlqLog>>()> dlq_log;
  size_t max_body_bytes = 1 << 20;           // for the attribute parser that routes on columns
  prometheus::Registry* registry = nullptr;  // optional: delivery metrics are registered here
  std::function<int64_t()> now_ms;           // wall clock in ms; tests pass a fake one
};

// One configured adapter; the engine does not own it but calls Start and Stop.
struct EngineAdapter {
  AdapterConfig config;
  Adapter* adapter = nullptr;
};

class DeliveryEngine final : public CommitListener {
 public:
  DeliveryEngine(EngineOptions options, std::vector<EngineAdapter> adapters);
  ~DeliveryEngine() override;

  // Loads cursors and the DLQ, starts the adapters and the threads. The journal is recovered;
  // what it holds past the cursors is delivered first.
  Status Start(Journal* journal);
  // Stops dispatching, waits (bounded) for batches in flight, stops the adapters, persists the
  // cursors and joins the threads.
  void Stop();

  void OnCommitted(const RecordHandle& handle) override;
  void OnGroupCommitted() override;
  uint64_t ReclaimableBelow() override;

  // --- operations (admin listener, CLI, tests); any thread ---

  // JSON: the event's seq, table, row and message, and per adapter state, attempts, last error,
  // answer, timeline and write-back (admin_json.h); with `with_record`, its header fields and
  // body read from the journal. NotFound when the event is neither in the status table nor in
  // the DLQ.
  Result<std::string> EventStatusJson(const std::string& event_id, bool with_record = false) const;
  // JSON: the kept events matching `query`, newest first (admin_json.h, EventSearchJson).
  std::string SearchEventsJson(const EventQuery& query) const;
  // JSON array of DLQ entries, optionally one adapter's, optionally one id, with replayed ones,
  // narrowed by reason prefix, time and count (admin_json.h, DlqJson).
  std::string DlqJson(const std::string& adapter, std::optional<uint64_t> id, bool include_replayed,
                      const std::string& reason = "", int64_t since_ms = 0, size_t limit = 0) const;
  // Sends DLQ entries (one adapter's, or one id) back to their adapter. Returns how many.
  Result<uint64_t> ReplayDlq(const std::string& adapter, std::optional<uint64_t> id);
  // The later outcome of an event `adapter` answered kProcessing for (a callback or a poll):
  // updates its status, records it for write-back, and sends a failure to the DLQ. OK when it
  // was confirmed already; NotFound for an event the status table no longer holds;
  // FailedPrecondition when the event is not processing at that adapter.
  Status Confirm(std::string_view adapter, const std::string& event_id,
                 const DeliveryResult& result);
  // Delivers the retained journal range [from_seq, to_seq] again to one adapter; `to_seq` past
  // the newest event is cut to it (*queued_to: the last seq queued). FailedPrecondition while
  // the adapter has a range replay queued already (replays.h).
  // With a time window [from_ms, to_ms], only the events received within it (from_seq 0: from
  // the oldest retained event; Replays::QueueRange).
  Status ReplayRange(const std::string& adapter, uint64_t from_seq, uint64_t to_seq,
                     uint64_t* queued_to = nullptr, int64_t from_ms = 0, int64_t to_ms = INT64_MAX);
  // JSON of the replays queued and running (Replays::Json).
  std::string ReplaysJson() const;

  // Wakes every worker now (after a fake clock moved, in tests).
  void Wake();
  // Worker loop iterations so far (tests wait for a full pass after changing the clock).
  uint64_t LoopPasses() const;

  // Updates the delivery gauges (queue depth, lag, breaker state, DLQ size): before a scrape.
  void RefreshMetrics();

  // The persisted-or-not cursor of one adapter and partition (tests, status).
  uint64_t Cursor(size_t adapter, uint32_t partition) const;
  // Events committed but not yet finished for an adapter, counted as journal sequences past its
  // oldest cursor (0 when it has everything).
  uint64_t LagEvents(size_t adapter) const;
  // Replay work not yet finished (queued or in flight), all adapters.
  uint64_t ReplaysPending() const;
  // Bytes charged to the record cache (delivery.record_cache_bytes), all workers.
  uint64_t RecordCacheBytes() const;
  size_t adapter_index(std::string_view name) const;  // SIZE_MAX when unknown
  uint64_t dlq_pending(size_t adapter) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace dvrouter
