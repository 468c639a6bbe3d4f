// Adapter: the one interface every sink (ERP, SQL, warehouse, lake files, Dataverse write-back)
// implements. The delivery engine (issue 3, not built yet) drives it; this header fixes the
// contract it will rely on.
//
// Batches: Deliver() receives events of one adapter in journal order. Two events of the same
// record (table, row id) are never in flight at once, and never out of journal order; events of
// different records may share a batch or be in separate concurrent batches, up to the limit the
// adapter reports in max_in_flight().
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

#include "router/decode/event.h"

namespace dvrouter {

// One event handed to an adapter. Views stay valid until `done` is called.
struct Delivery {
  uint64_t seq = 0;                     // journal position: version guard at the sink
  EventKey key;                         // key.ToHex() is the event id / idempotency key
  const EventHeader* header = nullptr;  // table, row id, message, stage, ...
  std::string_view body;                // the webhook body as received
  uint32_t attempt = 1;                 // 1 for the first try
};

enum class DeliveryOutcome {
  kDelivered,   // the sink has it (status: completed)
  kProcessing,  // accepted, confirmed later (an ERP answering 202; status: processing)
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

class Adapter {
 public:
  virtual ~Adapter() = default;
  // The configured name (`adapters.<name>`): used in statuses, metrics labels and the DLQ.
  virtual std::string_view name() const = 0;
  // How many batches may be in flight at once (1: strictly one at a time).
  virtual int max_in_flight() const { return 1; }
  virtual void Deliver(std::span<const Delivery> batch, DeliveryDone* done) = 0;
  virtual void Stop() = 0;
};

}  // namespace dvrouter
