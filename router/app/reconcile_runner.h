// ReconcileRunner: reconciliation inside `dvrouter serve` (docs/reconciliation.md, "How it
// runs"). One thread, dv-reconcile, runs the Reconciler every reconcile.interval (±10% jitter)
// and when asked (POST /reconcile), one run at a time; reconciled events go to the journal
// through the webhook's decoder, under the lost webhook's event id. It keeps the last runs'
// summaries for GET /reconcile and counts runs and events in the metrics.
//
// Threads: Start/Stop from the thread that starts and stops the router (App), before the
// journal stops; Handle (the admin routes) on admin I/O threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "adapters/dataverse/reconciler.h"
#include "router/ingress/admin_handler.h"
#include "router/journal/journal.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

namespace dvrouter {

// Reconciliation's series (docs/operations.md, "Reconciliation").
struct ReconcileMetrics {
  explicit ReconcileMetrics(prometheus::Registry* registry);
  prometheus::Family<prometheus::Counter>& runs;
  prometheus::Family<prometheus::Counter>& events;
  prometheus::Counter& ok;
  prometheus::Counter& failed;
  prometheus::Counter& journaled;
  prometheus::Counter& seen;
  prometheus::Counter& deletes;
  prometheus::Counter& tracked_journaled;
  prometheus::Counter& tracked_seen;
  prometheus::Counter& tracked_deletes;
  prometheus::Counter& own_changes;
  prometheus::Family<prometheus::Counter>& resyncs;
  prometheus::Counter& initial_syncs;
  prometheus::Counter& expired_syncs;
  prometheus::Gauge& last_success;
  prometheus::Gauge& interval;
  prometheus::Counter& throttled;
};

class ReconcileRunner final : public AdminOperations {
 public:
  // `config` and `journal` must outlive it.
  ReconcileRunner(const Config& config, Journal* journal, prometheus::Registry* registry);
  ~ReconcileRunner() override;  // Stop()

  void Start();
  // Ends a run in progress at its next request or wait, and joins the thread.
  void Stop();
  // Starts a run now; its id, or FailedPrecondition while one runs.
  Result<uint64_t> Trigger(const ReconcileRequest& request);
  // {"running": bool, "runs": [summary, newest first]}
  std::string Json() const;

  // POST /reconcile[?dry_run=1&table=T&since=DURATION] (202 with the run's id; 409 while one runs),
  // GET /reconcile.
  std::optional<HttpResponse> Handle(std::string_view method, std::string_view target) override;

 private:
  class JournalSink;
  void Loop();
  void RunOnce(const ReconcileRequest& request, uint64_t id);

  const Config& config_;
  std::unique_ptr<JournalSink> sink_;
  std::unique_ptr<Reconciler> reconciler_;
  std::unique_ptr<ReconcileMetrics> metrics_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stop_{false};
  bool started_ = false;
  bool running_ = false;
  bool pending_ = false;  // a run asked for
  ReconcileRequest pending_request_;
  uint64_t next_id_ = 1;
  std::deque<ReconcileSummary> runs_;  // newest first, a few
  std::thread thread_;
};

}  // namespace dvrouter
