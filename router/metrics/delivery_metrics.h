// DeliveryMetrics: the delivery engine's Prometheus series (dvrouter_deliveries_total,
// dvrouter_delivery_*, dvrouter_dlq_entries, dvrouter_journal_bytes_held, ...), registered once
// from a registry and the adapters' names. Every pointer is null when there is no registry.
//
// Threads: built on the owner's thread before the engine starts; the series themselves are
// thread-safe (any delivery thread bumps them).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string>
#include <vector>

namespace dvrouter {

// One adapter's series (label adapter=<name>).
struct AdapterDeliveryMetrics {
  prometheus::Counter* outcome[5] = {};  // delivered, processing, retryable, permanent, gave_up
  prometheus::Histogram* duration = nullptr;
  prometheus::Histogram* batch = nullptr;
  prometheus::Counter* retries = nullptr;
  prometheus::Gauge* breaker = nullptr;
  prometheus::Gauge* dlq = nullptr;
  prometheus::Gauge* lag_events = nullptr;
  prometheus::Gauge* lag_seconds = nullptr;
  prometheus::Gauge* bytes_held = nullptr;
};

struct DeliveryMetrics {
  // Registers the series in `registry` (nothing when null: then every pointer stays null, and
  // per_adapter still has one element per adapter).
  static DeliveryMetrics Register(prometheus::Registry* registry,
                                  const std::vector<std::string>& adapter_names);

  std::vector<AdapterDeliveryMetrics> per_adapter;  // by adapter index
  prometheus::Gauge* queue_sum = nullptr;
  prometheus::Gauge* queue_max = nullptr;
  prometheus::Gauge* cache_bytes = nullptr;
  prometheus::Counter* skipped[4] = {};  // by RouteVerdict (router/delivery/routing.h)
  prometheus::Counter* catch_up_reads = nullptr;
  prometheus::Counter* batch_records[2] = {};  // from the record cache, from the journal
  prometheus::Counter* retention_bytes = nullptr;
  prometheus::Counter* cursor_flush_errors = nullptr;
  // By adapter and outcome (completed, failed); looked up per confirmation.
  prometheus::Family<prometheus::Counter>* confirmations = nullptr;
  prometheus::Counter* status_records = nullptr;
  prometheus::Counter* status_append_errors = nullptr;
};

}  // namespace dvrouter
