// What reconciliation has handled, kept across restarts in <data_dir>/reconcile/failed_jobs.json
// (docs/reconciliation.md, "State"): per step, the completedon watermark of the failed jobs read
// so far and the ids of the jobs handled at that watermark (jobs completed in the same
// millisecond). Written atomically after each page; read once per run. Reconciler thread only.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "router/common/status.h"

namespace dvrouter {

struct StepWatermark {
  int64_t completed_ms = 0;       // every job completed before it is handled
  std::set<std::string> handled;  // job ids completed at completed_ms, handled

  // Job `id` completed at `ms` is handled (ms is never below the watermark).
  void Handled(const std::string& id, int64_t ms);
  bool IsHandled(const std::string& id, int64_t ms) const {
    return ms < completed_ms || (ms == completed_ms && handled.count(id) != 0);
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
