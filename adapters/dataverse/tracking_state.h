// What change tracking keeps across runs, in <data_dir>/reconcile/change_tracking.json
// (docs/reconciliation.md, "Change tracking"): per table, the delta link to read next, where in
// the journal the last read started (the seen index is rebuilt from there), when, how many full
// syncs it made, and the changes still settling (unseen, too young to journal at the last run).
// Written atomically after each table; read once per run. Reconciler thread only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "adapters/dataverse/change_tracking.h"
#include "router/common/status.h"

namespace dvrouter {

// A change found unseen but younger than change_tracking.settle: the webhook may still come.
struct SettlingChange {
  TrackedRow row;
  std::string token;     // the delta link it was read from (a deletion's identity)
  bool created = false;  // a lost Create, as its first read decided
};

struct TableTracking {
  std::string delta_link;      // "" until a first sync completed
  uint64_t scan_from_seq = 0;  // the journal's next seq when the last read started
  int64_t synced_ms = 0;       // when the last read started
  uint64_t full_syncs = 0;     // the first and every resync after an expired token
  std::vector<SettlingChange> settling;
};

struct TrackingState {
  std::map<std::string, TableTracking> tables;  // by logical name
};

// The state in `dir` (empty when the file does not exist yet); InvalidArgument naming the file
// when it cannot be read as one.
Result<TrackingState> LoadTrackingState(const std::string& dir);
Status SaveTrackingState(const std::string& dir, const TrackingState& state);
std::string EncodeTrackingState(const TrackingState& state);
Result<TrackingState> DecodeTrackingState(std::string_view text);

}  // namespace dvrouter
