// Reconciler: one reconciliation run against Dataverse (docs/reconciliation.md). For each
// asynchronous step of the registration it pages through the step's failed system jobs since its
// watermark, rebuilds the webhook each one stands for from the row's current columns (a Delete
// when the row is gone) and journals it under the lost webhook's own event id, so a change the
// router did receive is a duplicate and a second run journals nothing. Web API calls are paced
// (reconcile.max_requests_per_second) and a 429 waits its Retry-After instead of failing the run.
//
// Threads: Run on one thread at a time (the reconcile runner's); `stop` may be set from any
// thread to end a run early (between requests and during waits).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "adapters/dataverse/webapi.h"
#include "router/config/config.h"
#include "router/decode/event.h"

namespace dvrouter {

struct ReconcileState;
struct TrackingState;

// Where reconciled events go: the journal, through the same decoding and dedupe as a webhook.
class ReconcileSink {
 public:
  virtual ~ReconcileSink() = default;
  // Journals `body` under `key` once it is durable; true when an event with that key was
  // journaled before (a duplicate). An error leaves the job to the next run.
  virtual Result<bool> Append(const EventKey& key, std::string_view body) = 0;
  // The sequence the next journaled event gets: where a scan started now ends.
  virtual uint64_t NextSeq() = 0;
  // Visits the journaled webhooks (no status records) of `table` with seq >= from_seq, in
  // order, until fn returns false. Bodies are valid during the call only.
  virtual Status ScanTable(
      uint64_t from_seq, std::string_view table,
      const std::function<bool(const EventHeader& header, std::string_view body)>& fn) = 0;
  // The oldest sequence the journal still holds (0: it is empty). Sequences may have gaps (a
  // restart after a crash skips ahead): only this says whether records were deleted.
  virtual uint64_t FirstSeq() = 0;
};

// What one run covers: `table` limits it to that table's steps and change tracking, `since_ms`
// (> 0) reads failed jobs completed in that span again, whatever the watermark says.
struct ReconcileRequest {
  bool dry_run = false;
  std::string table;
  int64_t since_ms = 0;
};

struct ReconcileSummary {
  uint64_t id = 0;
  bool dry_run = false;
  bool running = false;
  int64_t started_ms = 0;
  int64_t finished_ms = 0;
  uint64_t steps = 0;              // asynchronous steps found registered
  uint64_t failed_jobs_found = 0;  // jobs not handled by an earlier run
  uint64_t rows_read = 0;
  uint64_t events_journaled = 0;
  uint64_t already_seen = 0;  // the journal had the event (the router got the webhook after all)
  uint64_t deletes = 0;       // journaled as Delete: the row is gone
  uint64_t jobs_deleted = 0;  // reconcile.failed_jobs.delete_handled
  uint64_t throttled = 0;     // 429 answers waited out
  // Change tracking (included in the totals above: rows_read, events_journaled, already_seen,
  // deletes).
  uint64_t tables = 0;         // tracked tables read
  uint64_t changes_found = 0;  // changed rows and deletions in the deltas
  uint64_t tracked_journaled = 0;
  uint64_t tracked_seen = 0;
  uint64_t tracked_deletes = 0;
  uint64_t own_changes = 0;     // last changed by a loop_guard user: the router's echo
  uint64_t settling = 0;        // unseen but younger than settle: left to the next run
  uint64_t full_syncs = 0;      // first syncs and resyncs
  uint64_t expired_tokens = 0;  // delta links Dataverse no longer knew: resynced
  uint64_t errors = 0;
  std::vector<std::string> error_texts;  // the first few
  std::vector<std::string> progress;     // the run's progress lines (one per step and table)

  bool ok() const { return errors == 0; }
  std::string Json() const;
};

// Counts an error of the run and keeps its text among the first few.
void NoteReconcileError(ReconcileSummary* summary, const std::string& text);

class Reconciler {
 public:
  // `config` must outlive it; its reconcile section present. State goes to `state_dir`.
  Reconciler(const Config& config, ReconcileSink* sink, std::string state_dir,
             std::function<int64_t()> now_ms);

  // One run; progress lines (one per step and table) to `progress` when not null. With dry_run
  // nothing is journaled, deleted or saved. *summary is updated as the run goes (its id set by
  // the caller).
  void Run(const ReconcileRequest& request, const std::atomic<bool>& stop,
           ReconcileSummary* summary, std::ostream* progress = nullptr);

  // Wakes a run that waits (pacing, Retry-After) so it sees `stop`.
  void Wake();

 private:
  struct StepRef {
    std::string name;
    int32_t stage = 40;
  };
  Result<ClientResponse> Call(const std::string& method, const std::string& resource,
                              const std::vector<std::pair<std::string, std::string>>& headers,
                              const std::atomic<bool>& stop, ReconcileSummary* summary);
  bool Wait(int64_t ms, const std::atomic<bool>& stop);
  Result<std::optional<std::string>> StepId(const std::string& name, const std::atomic<bool>& stop,
                                            ReconcileSummary* summary);
  Status ReconcileStep(const std::string& step_id, const StepRef& step,
                       const ReconcileRequest& request, const std::atomic<bool>& stop,
                       ReconcileSummary* summary, ReconcileState* state);
  void RunFailedJobs(const ReconcileRequest& request, const std::atomic<bool>& stop,
                     ReconcileSummary* summary, std::ostream* progress);
  // Change tracking of one table (table_tracker.cc).
  Status TrackTable(const TrackedTableConfig& table, bool dry_run, const std::atomic<bool>& stop,
                    ReconcileSummary* summary, TrackingState* state);

  const Config& config_;
  const ReconcileConfig& rc_;
  const DataverseConfig& dataverse_;
  ReconcileSink* sink_;
  std::string state_dir_;
  std::function<int64_t()> now_ms_;
  WebApiClient web_;
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t next_call_ms_ = 0;
};

}  // namespace dvrouter
