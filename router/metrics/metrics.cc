#include "router/metrics/metrics.h"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <mutex>

namespace dvrouter {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

// Brings a counter up to a count the journal keeps itself (it only grows while the process
// lives). The caller serializes concurrent scrapes.
void FollowCount(prometheus::Counter& counter, uint64_t count) {
  const double target = static_cast<double>(count);
  if (target > counter.Value()) counter.Increment(target - counter.Value());
}

Histogram::BucketBoundaries LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
}

prometheus::Counter& Counter(prometheus::Registry& r, const std::string& name,
                             const std::string& help) {
  return BuildCounter().Name(name).Help(help).Register(r).Add({});
}

prometheus::Gauge& Gauge(prometheus::Registry& r, const std::string& name,
                         const std::string& help) {
  return BuildGauge().Name(name).Help(help).Register(r).Add({});
}

prometheus::Histogram& Hist(prometheus::Registry& r, const std::string& name,
                            const std::string& help, Histogram::BucketBoundaries buckets) {
  return BuildHistogram().Name(name).Help(help).Register(r).Add({}, std::move(buckets));
}

}  // namespace

std::string_view RequestOutcomeName(RequestOutcome o) {
  switch (o) {
    case RequestOutcome::kAccepted:
      return "accepted";
    case RequestOutcome::kDuplicate:
      return "duplicate";
    case RequestOutcome::kUnauthorized:
      return "unauthorized";
    case RequestOutcome::kBadRequest:
      return "bad_request";
    case RequestOutcome::kTooLarge:
      return "too_large";
    case RequestOutcome::kMethodNotAllowed:
      return "method_not_allowed";
    case RequestOutcome::kNotFound:
      return "not_found";
    case RequestOutcome::kOverloaded:
      return "overloaded";
    case RequestOutcome::kCount:
      break;
  }
  return "unknown";
}

RouterMetrics::RouterMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      request_seconds(Hist(*registry_, "dvrouter_request_duration_seconds",
                           "Webhook request time from the full request read to the response",
                           LatencyBuckets())),
      received_bytes(
          Counter(*registry_, "dvrouter_received_bytes_total", "Webhook body bytes received")),
      decode_errors(Counter(*registry_, "dvrouter_decode_errors_total",
                            "Webhook bodies that failed to decode (answered 400)")),
      connections_open(
          Gauge(*registry_, "dvrouter_ingress_connections", "Open ingress connections")),
      connections_refused(Counter(*registry_, "dvrouter_ingress_connections_refused_total",
                                  "Connections closed at accept: max_connections reached")),
      connections_timed_out(Counter(*registry_, "dvrouter_ingress_timeouts_total",
                                    "Connections closed because a header or body read timed out")),
      tls_handshake_failures(Counter(*registry_, "dvrouter_ingress_tls_handshake_failures_total",
                                     "HTTPS connections closed because the handshake failed")),
      journal_write_seconds(Hist(*registry_, "dvrouter_journal_append_duration_seconds",
                                 "Time to write one group commit's records", LatencyBuckets())),
      journal_fsync_seconds(Hist(*registry_, "dvrouter_journal_fsync_duration_seconds",
                                 "Time of one group commit's fdatasync", LatencyBuckets())),
      journal_batch_events(Hist(*registry_, "dvrouter_journal_group_commit_events",
                                "Events made durable by one fdatasync",
                                {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048})),
      journal_written_bytes(Counter(*registry_, "dvrouter_journal_written_bytes_total",
                                    "Bytes appended to the journal")),
      journal_bytes(Gauge(*registry_, "dvrouter_journal_bytes",
                          "Bytes held in journal segments, preallocated ones included")),
      journal_segments(Gauge(*registry_, "dvrouter_journal_segments", "Journal segment files")),
      journal_write_errors(Counter(*registry_, "dvrouter_journal_write_errors_total",
                                   "Group commits that failed to write or sync (events refused)")),
      journal_corrupt_records(Gauge(*registry_, "dvrouter_journal_recovery_corrupt_records",
                                    "Corrupt records skipped by the last recovery")),
      journal_truncated_bytes(Gauge(*registry_, "dvrouter_journal_recovery_truncated_bytes",
                                    "Torn-tail bytes cut off by the last recovery")),
      journal_next_seq(Gauge(*registry_, "dvrouter_journal_next_sequence",
                             "Sequence number the next journaled event gets")),
      journal_pending(Gauge(*registry_, "dvrouter_journal_pending_events",
                            "Events waiting for the next group commit")),
      journal_budget_bytes(Gauge(*registry_, "dvrouter_journal_budget_bytes",
                                 "journal.disk_budget_bytes: what the segments may occupy")),
      journal_retained_seconds(
          Gauge(*registry_, "dvrouter_journal_retained_seconds",
                "Age of the oldest retained record: the replay history actually kept")),
      journal_budget_refusals(Counter(
          *registry_, "dvrouter_journal_budget_refusals_total",
          "Appends refused (503) because events not every adapter finished fill the budget")),
      journal_tail_reads(Counter(
          *registry_, "dvrouter_journal_tail_reads_total",
          "Journal reads answered from the read tail (a record just committed) without the disk")),
      journal_rolls_without_spare(Counter(
          *registry_, "dvrouter_journal_rolls_without_spare_total",
          "Journal segment rolls that found no preallocated segment ready (preallocation on)")),
      journal_reclaimed_bytes(
          Counter(*registry_, "dvrouter_journal_reclaimed_bytes_total",
                  "Delivered journal bytes deleted to make room for new events (budget)")),
      journal_reclaim_family(BuildHistogram()
                                 .Name("dvrouter_journal_reclaim_duration_seconds")
                                 .Help("Time to delete delivered segments to make room, by the "
                                       "thread: the reclaimer ahead of need, or the writer when "
                                       "an append found no room (it waits meanwhile)")
                                 .Register(*registry_)),
      journal_reclaim_writer(journal_reclaim_family.Add({{"thread", "writer"}}, LatencyBuckets())),
      journal_reclaim_background(
          journal_reclaim_family.Add({{"thread", "reclaimer"}}, LatencyBuckets())),
      ready(Gauge(*registry_, "dvrouter_ready", "1 once recovery has finished")) {
  auto& family = BuildCounter()
                     .Name("dvrouter_requests_total")
                     .Help("Webhook requests by outcome")
                     .Register(*registry_);
  for (int i = 0; i < static_cast<int>(RequestOutcome::kCount); ++i) {
    requests[i] =
        &family.Add({{"outcome", std::string(RequestOutcomeName(static_cast<RequestOutcome>(i)))}});
  }
  auto& callback_family = BuildCounter()
                              .Name("dvrouter_callbacks_total")
                              .Help("Callbacks from sinks (POST /callbacks/...) by result")
                              .Register(*registry_);
  int k = 0;
  for (const char* result : {"confirmed", "unauthorized", "not_found", "bad_request", "error"}) {
    callbacks[k++] = &callback_family.Add({{"result", result}});  // exported at 0 from the start
  }
}

std::string RouterMetrics::Serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

void RouterMetrics::CountRequest(RequestOutcome outcome, double seconds) {
  requests[static_cast<int>(outcome)]->Increment();
  request_seconds.Observe(seconds);
}

void RouterMetrics::Count(RequestOutcome outcome) {
  requests[static_cast<int>(outcome)]->Increment();
}

void RouterMetrics::OnWrite(double seconds, uint64_t bytes) {
  journal_write_seconds.Observe(seconds);
  journal_written_bytes.Increment(static_cast<double>(bytes));
}

void RouterMetrics::OnSync(double seconds, size_t batch_events) {
  journal_fsync_seconds.Observe(seconds);
  journal_batch_events.Observe(static_cast<double>(batch_events));
}

void RouterMetrics::OnSize(uint64_t bytes, uint64_t segments) {
  journal_bytes.Set(static_cast<double>(bytes));
  journal_segments.Set(static_cast<double>(segments));
}

void RouterMetrics::OnRefused(const Status&) { journal_write_errors.Increment(); }

void RouterMetrics::OnReclaimed(double seconds, uint64_t bytes, bool on_writer) {
  (on_writer ? journal_reclaim_writer : journal_reclaim_background).Observe(seconds);
  journal_reclaimed_bytes.Increment(static_cast<double>(bytes));
}

void RouterMetrics::OnJournalStats(const JournalStats& stats, int64_t now_ms) {
  journal_next_seq.Set(static_cast<double>(stats.next_seq));
  journal_pending.Set(static_cast<double>(stats.pending));
  journal_budget_bytes.Set(static_cast<double>(stats.budget_bytes));
  journal_retained_seconds.Set(stats.oldest_received_ms == 0
                                   ? 0.0
                                   : std::max(0.0, (now_ms - stats.oldest_received_ms) / 1000.0));
  // Counters that follow the journal's own counts; scrapes may run concurrently.
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  FollowCount(journal_budget_refusals, stats.budget_refusals);
  FollowCount(journal_tail_reads, stats.tail_reads);
  FollowCount(journal_rolls_without_spare, stats.rolls_without_spare);
}

}  // namespace dvrouter
