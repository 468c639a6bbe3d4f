// DeliveryEngine: takes every committed journal record to the adapters its routes name
// (ARCHITECTURE.md guarantees 2-7).
//
// Data flow. The journal's writer announces each commit (CommitListener) and the engine pushes
// the record's handle into its partition's bounded queue (partition_queue.h) and wakes the
// worker that owns the partition (partition p belongs to worker p % workers). A worker keeps,
// per adapter and partition, a *lane*: a window of at most `window_events` events in sequence
// order with their delivery state. It reads each handle's record once, routes it (routing.h,
// with the loop guard) and appends it to the lanes of the adapters it goes to.
//
// Ordering (guarantee 3): within a lane an event is dispatched only when no earlier event of the
// same record is unfinished, so one record's events reach an adapter one at a time, in order,
// while other records proceed. An adapter that applies events in hand-over order (the lake and
// ClickHouse: Adapter::one_in_flight_per_record() false) gets a record's ready events in order,
// several per batch, without waiting for earlier results. Isolation (guarantee 4): every
// adapter has its own lanes, batches, retry state and circuit breaker; a stalled adapter fills its
// own windows and nothing else. Bounded memory (guarantee 5): lanes hold small entries, bodies
// only within the record cache's budget (otherwise a body is read from the journal when its
// batch is built); a lane whose window is full stops taking events and later catches up by
// scanning the journal, as does every lane after a queue overflow or a restart. Record cache: a
// record the worker read to route it stays in memory, shared by the lanes it went to, until their
// batches are built (then its Target is also extracted once for all adapters); lanes with a backlog
// or an open breaker do not hold it, and what lane entries hold is bounded by
// delivery.record_cache_bytes. Without it each adapter reads the record from the journal again.
//
// Progress: an adapter's cursor per partition (cursor_store.h) is the sequence up to which every
// event is finished; it is persisted every `cursor_flush_interval`, and after a restart delivery
// resumes past it. Journal segments are deleted once every cursor has passed them and
// `retention` has elapsed. Failures follow the adapter's RetryPolicy and CircuitBreaker
// (retry.h); permanent errors and exhausted retries go to the DLQ (dlq.h).
//
// Status records (write-back): for an adapter that a write-back adapter reports (type
// dataverse, `source: <adapter>`), every status change of its events that a CRM row should show
// is journaled as a record of its own (EventHeader::status_record, on the event's partition,
// body: event id, seq, adapter, state, attempts, table, row id, error, captured answer): the
// first submission, the first failure that waits for a retry (pending), completed, processing
// and failed. Those records go only to the source's write-back adapters, in journal order per
// row, with their own retries, breaker and DLQ. The source adapter's cursors are persisted only
// once its status records are durable, so a crash loses none: the events are delivered again
// (the sinks are idempotent) and their statuses recorded again.
//
// Threads: OnCommitted on the journal's writer thread; one thread per worker; one maintenance
// thread (cursor flushes, retention, replay feeding, gauges). Start, Stop on the owner's thread;
// the admin methods from any thread.
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
  std::string state_dir;                     // cursors and dlq.log; created if missing
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

  // JSON: the event's seq and per adapter state, attempts, last error and answer. NotFound when
  // the event is neither in the status table nor in the DLQ.
  Result<std::string> EventStatusJson(const std::string& event_id) const;
  // JSON array of DLQ entries, optionally one adapter's, optionally one id, with replayed ones.
  std::string DlqJson(const std::string& adapter, std::optional<uint64_t> id,
                      bool include_replayed) const;
  // Sends DLQ entries (one adapter's, or one id) back to their adapter. Returns how many.
  Result<uint64_t> ReplayDlq(const std::string& adapter, std::optional<uint64_t> id);
  // The later outcome of an event `adapter` answered kProcessing for (a callback or a poll):
  // updates its status, records it for write-back, and sends a failure to the DLQ. OK when it
  // was confirmed already; NotFound for an event the status table no longer holds;
  // FailedPrecondition when the event is not processing at that adapter.
  Status Confirm(std::string_view adapter, const std::string& event_id,
                 const DeliveryResult& result);
  // Delivers the retained journal range [from_seq, to_seq] again to one adapter.
  Status ReplayRange(const std::string& adapter, uint64_t from_seq, uint64_t to_seq);

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
