// DataverseAdapter: writes the statuses of another adapter's events (its `source`, typically the
// ERP) back onto the CRM rows, through the Dataverse Web API (docs/dataverse.md,
// "Writing to the Web API"; docs/adapters/dataverse.md).
//
// Input: status records only (EventHeader::status_record; the delivery engine journals one per
// status change of a source event and routes it here, engine.h). Each becomes one
//   PATCH <url><api_path>/<entity set>(<row id>)   If-Match: *, OData-Version 4.0
// with the configured status column set to the option value of the state, the error column set
// to the error text (pending, failed) or null, and answer columns from the source's captured
// answer (e.g. the ERP's order number). If-Match: * means a PATCH never creates a row. A status
// record whose table is not a logical name (IsLogicalName) or whose row id is not a GUID is
// refused as permanent: nothing from the body is spliced into the URL unchecked.
//
// Answers: 204/200 delivered; 404 (the row was deleted or its transaction rolled back) ends that
// write-back as delivered with the answer "row not found", counted, never retried; 429 honours
// Retry-After and pauses every PATCH of the adapter until then; 408, 5xx, timeouts, connection
// errors, 401 (after one fresh token) and 403 (privileges to fix) are retried; any other 4xx
// (a wrong column or option value) is permanent, with the service's message: the DLQ shows it
// and a replay sends it again once the configuration is fixed.
//
// Order: a row's status records arrive in the order they were journaled; a status record whose
// append had to be retried can be journaled after a newer one, and a DLQ replay can bring an old
// one back. Each carries its place in time (`order`), and a status older than the last one
// written to its row is dropped (counted as superseded), so a row never goes back in time.
//
// Pacing: at most max_concurrency PATCHes at once and max_requests_per_second on average (the
// service protection limits are per user: 6000 requests per 5 minutes, about 52 concurrent).
// Authentication: OAuth 2.0 client credentials (token cached and renewed before expiry).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "adapters/adapter.h"
#include "adapters/common/call_pool.h"
#include "adapters/dataverse/dataverse_config.h"
#include "adapters/dataverse/webapi.h"
#include "router/config/config.h"

namespace prometheus {
class Registry;
class Counter;
class Histogram;
}  // namespace prometheus

namespace dvrouter {

class DataverseAdapter final : public Adapter {
 public:
  DataverseAdapter(AdapterConfig config, prometheus::Registry* registry);
  ~DataverseAdapter() override;

  std::string_view name() const override { return config_.name; }
  Status Start(uint64_t redelivery_from_seq) override;
  void Deliver(std::span<const Delivery> batch, DeliveryDone* done) override;
  void Stop() override;

  // The entity set of a table: the configured one, else Dataverse's default plural
  // (account -> accounts, opportunity -> opportunities, address -> addresses).
  static std::string EntitySet(const DataverseConfig& c, const std::string& table);

  struct Patch {
    std::string resource;  // <entity set>(<row id>)
    uint64_t order = 0;    // the status's place in time (StatusRecord::order)
    std::string body;      // empty: nothing to write for this state
    std::string state;
  };
  // The PATCH for one status record body; InvalidArgument when it is not one.
  static Result<Patch> BuildPatch(const DataverseConfig& c, const EventHeader& header,
                                  std::string_view body);

 private:
  DeliveryResult Execute(const Patch& patch);
  bool Pace();  // waits for the next request slot; false when stopping

  AdapterConfig config_;
  const DataverseConfig& dataverse_ =
      config_.Settings<DataverseConfig>();  // the type's own settings
  WebApiClient web_;

  // Whether a newer status than `p` was written to its row already (then `p` is not written);
  // Remember records one that was.
  bool Superseded(const Patch& p);
  void Remember(const Patch& p);

  prometheus::Counter* writes_[6] = {};  // written, not_found, throttled, retried, rejected,
                                         // superseded
  prometheus::Histogram* duration_ = nullptr;

  std::mutex pace_mu_;
  std::condition_variable pace_cv_;
  bool stopping_ = false;
  int64_t next_slot_ms_ = 0;     // the earliest start of the next request
  int64_t paused_until_ms_ = 0;  // after a 429: no request before this
  // The order of the last status written per row (bounded; oldest rows forgotten first).
  std::mutex order_mu_;
  std::unordered_map<std::string, uint64_t> last_order_;
  std::deque<std::string> order_fifo_;
  CallPool pool_;
};

}  // namespace dvrouter
