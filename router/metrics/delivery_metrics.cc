#include "router/metrics/delivery_metrics.h"

#include "router/delivery/routing.h"

namespace dvrouter {

namespace {

const char* kOutcomeNames[] = {"delivered", "processing", "retryable", "permanent", "gave_up"};

}  // namespace

DeliveryMetrics DeliveryMetrics::Register(prometheus::Registry* registry,
                                          const std::vector<std::string>& adapter_names) {
  DeliveryMetrics m;
  m.per_adapter.resize(adapter_names.size());
  if (registry == nullptr) return m;
  auto& r = *registry;
  using namespace prometheus;
  auto& outcomes = BuildCounter()
                       .Name("dvrouter_deliveries_total")
                       .Help("Delivery results per adapter and outcome (one per event and attempt)")
                       .Register(r);
  auto& duration = BuildHistogram()
                       .Name("dvrouter_delivery_duration_seconds")
                       .Help("Time from handing a batch to an adapter to its result")
                       .Register(r);
  auto& batch = BuildHistogram()
                    .Name("dvrouter_delivery_batch_events")
                    .Help("Events per batch handed to an adapter")
                    .Register(r);
  auto& retries = BuildCounter()
                      .Name("dvrouter_delivery_retries_total")
                      .Help("Events scheduled for another attempt")
                      .Register(r);
  auto& breaker = BuildGauge()
                      .Name("dvrouter_delivery_breaker_state")
                      .Help("Circuit breaker per adapter: 0 closed, 1 open, 2 half-open")
                      .Register(r);
  auto& dlq_g = BuildGauge()
                    .Name("dvrouter_dlq_entries")
                    .Help("Dead-letter entries not yet replayed, per adapter")
                    .Register(r);
  auto& lag_e = BuildGauge()
                    .Name("dvrouter_delivery_lag_events")
                    .Help("Journal sequences past the adapter's oldest unfinished event")
                    .Register(r);
  auto& lag_s = BuildGauge()
                    .Name("dvrouter_delivery_lag_seconds")
                    .Help("Age of the adapter's oldest unfinished event it is tracking")
                    .Register(r);
  auto& held = BuildGauge()
                   .Name("dvrouter_journal_bytes_held")
                   .Help(
                       "Journal bytes the adapter keeps from being deleted: the segments from its "
                       "oldest unfinished event on (undelivered data never yields to the budget)")
                   .Register(r);
  for (size_t a = 0; a < adapter_names.size(); ++a) {
    const std::string& name = adapter_names[a];
    for (int k = 0; k < 5; ++k) {
      m.per_adapter[a].outcome[k] =
          &outcomes.Add({{"adapter", name}, {"outcome", kOutcomeNames[k]}});
    }
    m.per_adapter[a].duration = &duration.Add(
        {{"adapter", name}}, Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                         0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
    m.per_adapter[a].batch = &batch.Add(
        {{"adapter", name}},
        Histogram::BucketBoundaries{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000});
    m.per_adapter[a].retries = &retries.Add({{"adapter", name}});
    m.per_adapter[a].breaker = &breaker.Add({{"adapter", name}});
    m.per_adapter[a].dlq = &dlq_g.Add({{"adapter", name}});
    m.per_adapter[a].lag_events = &lag_e.Add({{"adapter", name}});
    m.per_adapter[a].lag_seconds = &lag_s.Add({{"adapter", name}});
    m.per_adapter[a].bytes_held = &held.Add({{"adapter", name}});
  }
  auto& depth = BuildGauge()
                    .Name("dvrouter_delivery_queue_depth")
                    .Help("Handles waiting in the partition queues: sum and max over partitions")
                    .Register(r);
  m.queue_sum = &depth.Add({{"stat", "sum"}});
  m.queue_max = &depth.Add({{"stat", "max"}});
  m.cache_bytes = &BuildGauge()
                       .Name("dvrouter_delivery_record_cache_bytes")
                       .Help(
                           "Bytes charged to the record cache: records read for routing that lane "
                           "entries keep for their batches (delivery.record_cache_bytes)")
                       .Register(r)
                       .Add({});
  auto& skip = BuildCounter()
                   .Name("dvrouter_events_skipped_total")
                   .Help("Events no adapter receives: no route matched, or the loop guard")
                   .Register(r);
  m.skipped[static_cast<int>(RouteVerdict::kUnrouted)] = &skip.Add({{"reason", "unrouted"}});
  m.skipped[static_cast<int>(RouteVerdict::kLoopUser)] = &skip.Add({{"reason", "loop_user"}});
  m.skipped[static_cast<int>(RouteVerdict::kIgnoredColumns)] =
      &skip.Add({{"reason", "ignored_columns"}});
  m.catch_up_reads = &BuildCounter()
                          .Name("dvrouter_delivery_catch_up_scans_total")
                          .Help("Journal scans by lanes that fell behind their in-memory window")
                          .Register(r)
                          .Add({});
  auto& sources = BuildCounter()
                      .Name("dvrouter_delivery_batch_records_total")
                      .Help(
                          "Records put into adapter batches (first attempts and retries), by "
                          "where they came from: the record cache or a journal read")
                      .Register(r);
  m.batch_records[0] = &sources.Add({{"source", "cache"}});
  m.batch_records[1] = &sources.Add({{"source", "journal"}});
  m.retention_bytes = &BuildCounter()
                           .Name("dvrouter_journal_retention_deleted_bytes_total")
                           .Help("Journal bytes deleted once every adapter had delivered them")
                           .Register(r)
                           .Add({});
  m.confirmations = &BuildCounter()
                         .Name("dvrouter_delivery_confirmations_total")
                         .Help(
                             "Later outcomes of events a sink accepted as processing (202), by "
                             "callback or poll: completed, failed")
                         .Register(r);
  for (const std::string& name : adapter_names) {  // exported at 0 from the start
    m.confirmations->Add({{"adapter", name}, {"outcome", "completed"}});
    m.confirmations->Add({{"adapter", name}, {"outcome", "failed"}});
  }
  auto& sr = BuildCounter()
                 .Name("dvrouter_status_records_total")
                 .Help(
                     "Status records journaled for write-back adapters, and failed appends "
                     "(tried again)")
                 .Register(r);
  m.status_records = &sr.Add({{"result", "appended"}});
  m.status_append_errors = &sr.Add({{"result", "error"}});
  m.cursor_flush_errors = &BuildCounter()
                               .Name("dvrouter_delivery_cursor_flush_errors_total")
                               .Help("Failed attempts to persist the delivery cursors")
                               .Register(r)
                               .Add({});
  return m;
}

}  // namespace dvrouter
