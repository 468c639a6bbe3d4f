// Adapter: the one interface every sink (ERP, SQL, warehouse, lake files, Dataverse write-back)
// implements. The delivery engine (router/delivery/engine.h) drives it; adapters are built from
// configuration by the factory table in adapters/registry.h.
//
// Life cycle: constructed from its AdapterConfig; Start() once before the first Deliver, told
// from which sequence on events may be delivered again (everything past the oldest persisted
// cursor); Deliver() many times; Stop() once, after the last Deliver.
//
// Batches: Deliver() receives events of one adapter. A record's (table, row id) events are
// handed over in journal order, as the adapter's record_ordering() says; events of different
// records may share a batch or be in separate concurrent batches, in any order, up to the limit
// the adapter's `max_in_flight` setting allows (per delivery worker).
//
// Threads: Deliver() is called from a delivery worker thread and must not block it: I/O runs on
// the adapter's own threads or event loop, so a slow sink never holds up other adapters or the
// ingress (guarantee 4). `done` is called exactly once per Deliver, from any thread, after which
// the adapter no longer touches the batch. Stop() returns once no callback can run any more.
//
// Errors: the result says per event what happened. kRetryable comes back later according to the
// adapter's RetryPolicy (router/delivery/retry.h), no sooner than retry_after_ms when set;
// kPermanent goes to the DLQ at once with `error`. Adapters classify their library's errors in
// one place (e.g. HTTP 408/429/5xx and connection errors retryable, other 4xx permanent), and
// must be idempotent at the sink (guarantee 2): the event id is the idempotency key, the journal
// seq the version guard.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "router/common/status.h"
#include "router/decode/attributes.h"
#include "router/decode/event.h"

namespace dvrouter {

// One event handed to an adapter. Views stay valid until `done` is called.
struct Delivery {
  uint64_t seq = 0;                     // journal position: version guard at the sink
  EventKey key;                         // key.ToHex() is the event id / idempotency key
  const EventHeader* header = nullptr;  // table, row id, message, stage, ...
  std::string_view body;                // the webhook body as received
  uint32_t attempt = 1;                 // 1 for the first try
  int64_t received_ms = 0;              // when the ingress accepted it
  bool replay = false;                  // sent again by an operator (DLQ or range replay)
  // The event's Target, extracted once for every adapter it goes to (the engine attaches one
  // when it has the record cached; null otherwise). Use ExtractChanges(d.body, d.changes, ...).
  ChangeMemo* changes = nullptr;
};

// Asks the CPU to load ahead what an encoder reads of later events of the batch: the memo of
// batch[i + 4], the extracted attributes of batch[i + 2] (ChangeMemo::Prefetch). An encoder
// calls it before event i: batches are built long after their records were read (a linger, a
// lake roll), when the attributes are no longer in the cache (bench/README.md, "Issue 23,
// twelfth round").
inline void PrefetchAhead(std::span<const Delivery> batch, size_t i) {
  if (i + 4 < batch.size() && batch[i + 4].changes != nullptr) {
    __builtin_prefetch(batch[i + 4].changes);
  }
  if (i + 2 < batch.size() && batch[i + 2].changes != nullptr) batch[i + 2].changes->Prefetch();
}

enum class DeliveryOutcome {
  kDelivered,   // the sink has it (status: completed)
  kProcessing,  // accepted, confirmed later (an ERP answering 202; status: processing): only
                // from an adapter with AsyncConfirmations. The engine treats the event as
                // finished for ordering and cursors: the adapter owns its confirmation.
  kRetryable,   // try again later
  kPermanent,   // will never succeed as is: DLQ
};

struct DeliveryResult {
  DeliveryOutcome outcome = DeliveryOutcome::kDelivered;
  int64_t retry_after_ms = -1;  // kRetryable: the sink's Retry-After, -1 if none
  std::string error;            // kRetryable / kPermanent: what the sink said (bounded excerpt)
  std::string answer;           // kDelivered / kProcessing: captured answer (e.g. order number)
};

class DeliveryDone {
 public:
  virtual ~DeliveryDone() = default;
  // results[i] is the outcome of batch[i]. Any thread, exactly once per Deliver.
  virtual void OnDelivered(std::span<const DeliveryResult> results) = 0;
};

// Where an adapter reports the later outcome of an event it answered kProcessing for (a job the
// sink confirmed by polling or by a callback). Any thread.
class ConfirmationSink {
 public:
  virtual ~ConfirmationSink() = default;
  // `result`: kDelivered (with the answer) or kPermanent (with the error; the event goes to the
  // DLQ). NotFound when the engine no longer knows the event (restart, status_entries), OK when
  // it was confirmed already, FailedPrecondition when it is not processing.
  virtual Status Confirm(const EventKey& key, const DeliveryResult& result) = 0;
};

// How the engine hands over a record's events (docs/architecture.md, "Per-record order").
enum class RecordOrdering {
  // One event per record in flight, the next only after the previous one's result: what a sink
  // that applies state needs (the default; the ERP and the write-back).
  kOneEventInFlight,
  // One batch per record in flight, which may carry several ready events of the record in journal
  // order; the adapter writes them in that order and answers a later one delivered only if every
  // earlier one of its record in the batch was delivered or failed for good. The SQL adapters:
  // one transaction per round of a record's events, so a hot record moves several per round trip.
  kOneBatchInFlight,
  // No waiting: a record's events go out in journal order, several in one batch or in batches in
  // flight together; a retried event can land after a later one of its record. The lake and
  // ClickHouse (append-only histories whose rows carry seq), so a hot record is not limited to
  // one event per file roll or insert.
  kPipelined,
};

// What a callback presents, from its request line and header: POST /callbacks/<adapter>/<event
// id>[?query] with its Authorization header.
struct CallbackCredentials {
  std::string_view event_id;       // from the path
  std::string_view target;         // the request target (path and query), as sent
  std::string_view authorization;  // the Authorization header, "" if none
};

// Optional second interface, for sinks that accept a job and confirm it later (an ERP answering
// 202): by a callback the ingress receives, or by the adapter's own polling.
class AsyncConfirmations {
 public:
  virtual ~AsyncConfirmations() = default;
  // Before Start: where to report confirmations of kProcessing events (adapters that poll).
  virtual void SetConfirmationSink(ConfirmationSink* sink) = 0;
  // A callback POSTed by the sink to /callbacks/<adapter>/<event id> on the ingress listener:
  // authenticates it (AuthorizeCallback) and reads the outcome. PermissionDenied for a wrong
  // credential; NotFound when callbacks are not configured; InvalidArgument for a body it cannot
  // read. Any ingress thread.
  virtual Result<DeliveryResult> ParseCallback(const CallbackCredentials& credentials,
                                               std::string_view body) = 0;
  // The credential check of a callback, on its header alone (the ingress answers a refusal
  // before reading the body: docs/operations.md, "Security"); the credential may be bound to the
  // event. OK when ParseCallback may read the body; PermissionDenied for a wrong credential;
  // NotFound when callbacks are not configured. Any thread.
  virtual Status AuthorizeCallback(const CallbackCredentials& credentials) const = 0;
};

class Adapter {
 public:
  virtual ~Adapter() = default;
  // The configured name (`adapters.<name>`): used in statuses, metrics labels and the DLQ.
  virtual std::string_view name() const = 0;
  // Before the first Deliver: events with seq >= redelivery_from_seq may arrive again (they were
  // delivered after the last cursor was persisted); an adapter that cannot rely on the sink's
  // idempotency uses this to recognise them (the lake does). Called from the engine's thread.
  virtual Status Start(uint64_t /*redelivery_from_seq*/) { return Status::Ok(); }
  // Constant for the adapter's life: the engine keeps per-lane state by it (a record's events in
  // flight are counted only where the ordering waits for them).
  virtual RecordOrdering record_ordering() const { return RecordOrdering::kOneEventInFlight; }
  virtual void Deliver(std::span<const Delivery> batch, DeliveryDone* done) = 0;
  // The adapter's asynchronous confirmations; null (the default) when it never answers
  // kProcessing and takes no callbacks.
  virtual AsyncConfirmations* async_confirmations() { return nullptr; }
  // Completes every outstanding batch (calling its `done`, with kRetryable if it cannot finish)
  // and returns once no callback can run any more.
  virtual void Stop() = 0;
};

}  // namespace dvrouter
