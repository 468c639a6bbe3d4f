// Metrics: every Prometheus series dvrouter exports, declared once and resolved at start-up.
//
// Hot paths hold references from RouterMetrics and bump them (atomic operations inside
// prometheus-cpp); nothing looks a series up by name per event. Labels are bounded sets (outcome,
// reason), never an event or row id. The registry is serialized in the text format by the admin
// listener. Thread-safe: any thread may update any metric.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "router/journal/file_journal.h"

namespace dvrouter {

// The outcome label of dvrouter_requests_total: a closed set.
enum class RequestOutcome {
  kAccepted,
  kDuplicate,
  kUnauthorized,
  kBadRequest,
  kTooLarge,
  kMethodNotAllowed,
  kNotFound,
  kOverloaded,
  kCount,
};
std::string_view RequestOutcomeName(RequestOutcome outcome);

class RouterMetrics final : public JournalObserver {
 public:
  RouterMetrics();

  prometheus::Registry& registry() { return *registry_; }
  std::string Serialize() const;

  // A request answered after its body was read: counted and timed.
  void CountRequest(RequestOutcome outcome, double seconds);
  // A request refused on its header or by the transport: counted, not timed.
  void Count(RequestOutcome outcome);

  // JournalObserver
  void OnWrite(double seconds, uint64_t bytes) override;
  void OnSync(double seconds, size_t batch_events) override;
  void OnSize(uint64_t bytes, uint64_t segments) override;
  void OnRefused(const Status& why) override;
  void OnReclaimed(double seconds, uint64_t bytes, bool on_writer) override;
  // The journal gauges read from its stats (before a scrape).
  void OnJournalStats(const JournalStats& stats, int64_t now_ms);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter* requests[static_cast<int>(RequestOutcome::kCount)];
  // dvrouter_callbacks_total by result: confirmed, unauthorized, not_found, bad_request, error.
  prometheus::Counter* callbacks[5];
  prometheus::Histogram& request_seconds;
  prometheus::Counter& received_bytes;
  prometheus::Counter& decode_errors;
  prometheus::Gauge& connections_open;
  prometheus::Counter& connections_refused;    // over max_connections
  prometheus::Counter& connections_timed_out;  // slow clients closed
  prometheus::Counter& tls_handshake_failures;
  prometheus::Histogram& journal_write_seconds;
  prometheus::Histogram& journal_fsync_seconds;
  prometheus::Histogram& journal_batch_events;
  prometheus::Counter& journal_written_bytes;
  prometheus::Gauge& journal_bytes;
  prometheus::Gauge& journal_segments;
  prometheus::Counter& journal_write_errors;
  prometheus::Gauge& journal_corrupt_records;
  prometheus::Gauge& journal_truncated_bytes;
  prometheus::Gauge& journal_next_seq;
  prometheus::Gauge& journal_pending;
  prometheus::Gauge& journal_budget_bytes;
  prometheus::Gauge& journal_retained_seconds;
  prometheus::Counter& journal_budget_refusals;
  prometheus::Counter& journal_tail_reads;
  prometheus::Counter& journal_rolls_without_spare;
  prometheus::Counter& journal_reclaimed_bytes;
  prometheus::Family<prometheus::Histogram>& journal_reclaim_family;
  prometheus::Histogram& journal_reclaim_writer;
  prometheus::Histogram& journal_reclaim_background;
  prometheus::Gauge& ready;
};

}  // namespace dvrouter
