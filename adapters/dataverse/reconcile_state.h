// What reconciliation has handled, kept across restarts in <data_dir>/reconcile/failed_jobs.json
// (docs/reconciliation.md, "State"): per step, the completedon watermark of the failed jobs read
// so far and the ids of the jobs handled within the overlap before it. Written atomically after
// each page; read once per run. Reconciler thread only.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "router/common/status.h"

namespace dvrouter {

// Jobs can become visible out of completedon order (several asynchronous service hosts, dates
// of second precision): each run reads again from kReconcileOverlapMs before the watermark and
// skips the jobs it handled in that overlap.
inline constexpr int64_t kReconcileOverlapMs = 10 * 60 * 1000;

struct StepWatermark {
  int64_t completed_ms = 0;                // the newest completedon handled
  std::map<std::string, int64_t> handled;  // id -> completedon, the jobs within the overlap

  // Where the next run reads from.
  int64_t ReadFrom() const { return completed_ms - kReconcileOverlapMs; }
  // Job `id`, completed at `ms`, is handled; jobs older than the overlap are forgotten.
  void Handled(const std::string& id, int64_t ms);
  bool IsHandled(const std::string& id, int64_t ms) const {
    return (completed_ms > 0 && ms < ReadFrom()) || handled.count(id) != 0;
  }
};

struct ReconcileState {
  std::map<std::string, StepWatermark> steps;  // by step id
};

// The state in `dir` (empty when the file does not exist yet); InvalidArgument naming the file
// when it cannot be read as one.
Result<ReconcileState> LoadReconcileState(const std::string& dir);
Status SaveReconcileState(const std::string& dir, const ReconcileState& state);
// The file's text (and what Load reads).
std::string EncodeReconcileState(const ReconcileState& state);
Result<ReconcileState> DecodeReconcileState(std::string_view text);

}  // namespace dvrouter
