// Reconciler::TrackTable: the change tracking catch-up of one table (docs/reconciliation.md,
// "Change tracking"). Reads the table's delta link (its first sync when there is none, a full
// resync when Dataverse says the token expired), rebuilds from the journal which version of each
// changed row the router already holds, and journals the changes it does not hold once they are
// older than change_tracking.settle.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <optional>
#include <unordered_map>
#include <utility>

#include "adapters/dataverse/change_tracking.h"
#include "adapters/dataverse/dataverse_adapter.h"
#include "adapters/dataverse/reconciler.h"
#include "adapters/dataverse/tracking_state.h"
#include "router/common/encoding.h"
#include "router/common/json.h"

namespace dvrouter {

namespace {

// Settling changes kept for the next run at most; past it they are journaled at once.
constexpr size_t kMaxSettling = 10'000;

bool Contains(const std::vector<std::string>& list, std::string_view s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

// Dataverse's answer to a delta link older than the organization's change tracking expiry.
bool TokenExpired(const ClientResponse& r) {
  if (r.status != 400 && r.status != 410) return false;
  std::string lower(r.body);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower.find("0x80044352") != std::string::npos ||
         lower.find("expired") != std::string::npos;
}

// The seen index: per row of one table, the newest version the journal holds, fed from the
// journal in sequence order and bounded by change_tracking.max_seen_rows.
class SeenIndex {
 public:
  SeenIndex(ReconcileSink* sink, std::string table, uint64_t from_seq, size_t max_rows)
      : sink_(sink), table_(std::move(table)), next_(from_seq), max_rows_(max_rows) {}

  // Reads what was journaled since the last call.
  Status CatchUp() {
    const uint64_t end = sink_->NextSeq();
    if (end < next_) complete_ = false;  // the journal is behind the stored position: another one
    if (end <= next_) return Status::Ok();
    // Records from the scan's start were deleted (retention, a purge): the index misses them.
    if (!checked_first_) {
      checked_first_ = true;
      if (sink_->FirstSeq() > std::max<uint64_t>(next_, 1)) complete_ = false;
    }
    Status st = sink_->ScanTable(next_, table_, [&](const EventHeader& h, std::string_view body) {
      auto it = rows_.find(h.primary_entity_id);
      if (it == rows_.end()) {
        if (rows_.size() >= max_rows_) {
          full_ = true;
          return true;
        }
        it = rows_.emplace(h.primary_entity_id, SeenVersion{}).first;
      }
      MergeSeen(SeenInWebhook(body, h.message_name), &it->second);
      return true;
    });
    next_ = end;
    return st;
  }
  bool Seen(const TrackedRow& row) const {
    auto it = rows_.find(row.id);
    return it != rows_.end() && IsSeen(it->second, row);
  }
  // Whether the journal holds any event of the row since the scan began.
  bool Known(const std::string& id) const { return rows_.count(id) != 0; }
  bool full() const { return full_; }
  // Whether every event since the scan's start is in it: only then does "not Known" mean the
  // router never journaled the row.
  bool complete() const { return complete_ && !full_; }

 private:
  ReconcileSink* sink_;
  std::string table_;
  uint64_t next_;
  size_t max_rows_;
  bool full_ = false;
  bool complete_ = true;
  bool checked_first_ = false;
  std::unordered_map<std::string, SeenVersion> rows_;
};

}  // namespace

Status Reconciler::TrackTable(const TrackedTableConfig& table, bool dry_run,
                              const std::atomic<bool>& stop, ReconcileSummary* summary,
                              TrackingState* state) {
  TableTracking& tt = state->tables[table.table];
  const uint64_t start_seq = sink_->NextSeq();
  const int64_t start_ms = now_ms_();
  const std::string set = DataverseAdapter::EntitySet(dataverse_, table.table);
  std::string select;
  if (!table.columns.empty()) {
    // What deciding needs comes along whatever the configuration lists.
    std::vector<std::string> columns = table.columns;
    for (std::string c : {table.table + "id", std::string("modifiedon"), std::string("createdon"),
                          std::string("versionnumber"), std::string("_modifiedby_value")}) {
      if (!Contains(columns, c)) columns.push_back(c);
    }
    for (const std::string& c : columns) select += (select.empty() ? "" : ",") + c;
  }
  const std::string full_query = set + (select.empty() ? "" : "?$select=" + UrlEncode(select));
  const std::string base = web_.Url("");
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"Prefer", "odata.track-changes,odata.maxpagesize=" + std::to_string(rc_.tracking_page_size) +
                     ",odata.include-annotations=\"*\""}};

  bool full = tt.delta_link.empty();
  // from_now: the first sync only takes the delta link; nothing before it is journaled.
  bool baseline = full && tt.full_syncs == 0 && !table.initial_full;
  std::string token = tt.delta_link;  // what a deletion's identity is made of
  std::string resource;
  if (full) {
    resource = full_query;
  } else if (tt.delta_link.starts_with(base)) {
    resource = tt.delta_link.substr(base.size());
  } else {
    return InvalidArgument("the stored delta link leads elsewhere: " +
                           Utf8Excerpt(tt.delta_link, 200));
  }
  // A full sync compares with everything the journal still holds, a delta with what was
  // journaled since the last read began (an older event cannot be as new as a later change).
  SeenIndex seen(sink_, table.table, full ? 0 : tt.scan_from_seq, rc_.max_seen_rows);

  // Changes left settling by the last run, by row: a newer entry in this read replaces one.
  std::unordered_map<std::string, SettlingChange> carried;
  // (Copied: a run that fails keeps the state's list as it was.)
  for (const SettlingChange& c : tt.settling) carried[c.row.id] = c;
  std::vector<SettlingChange> settling;

  // Lost Creates of a table with an asynchronous Create step are the failed jobs' to recover,
  // under the webhook's own id: here they are Updates, so no row ever gets two Creates.
  bool creates_by_jobs = false;
  if (rc_.failed_jobs) {
    for (const RegistrationStep& st : config_.registration.steps) {
      if (st.table == table.table && st.async && Contains(st.messages, "Create")) {
        creates_by_jobs = true;
      }
    }
  }
  // Created after the second in which the last read began (createdon has whole seconds; a row
  // of that second may have been journaled before the scan's start) and nothing of it journaled
  // since, by a complete index: the Create webhook is what was lost. Anything in doubt is an
  // Update: a second Create would be a second order at an ERP.
  const auto created_now = [&](const TrackedRow& row) {
    return !row.deleted && !creates_by_jobs && tt.synced_ms > 0 &&
           row.created_ms >= (tt.synced_ms / 1000 + 1) * 1000 && seen.complete() &&
           !seen.Known(row.id);
  };

  // Journals `row` (or counts it), unless the journal has it or it must settle first.
  // `created_then`: for a change that settled, what its first read decided.
  const auto decide = [&](const TrackedRow& row, const std::string& row_token, bool settle,
                          std::optional<bool> created_then) -> Status {
    if (seen.Seen(row)) {
      ++summary->already_seen;
      ++summary->tracked_seen;
      return Status::Ok();
    }
    if (!row.deleted && !row.modified_by.empty() &&
        Contains(config_.loop_guard.user_ids, row.modified_by)) {
      ++summary->own_changes;  // the router's own write-back: delivery would drop it anyway
      return Status::Ok();
    }
    const auto settle_ms = static_cast<int64_t>(rc_.settle_ms);
    const bool young = row.deleted || start_ms - row.modified_ms < settle_ms;
    if (settle && settle_ms > 0 && young && settling.size() < kMaxSettling) {
      ++summary->settling;
      settling.push_back(SettlingChange{row, row_token, created_then.value_or(created_now(row))});
      return Status::Ok();
    }
    const bool created = created_then.has_value()
                             ? *created_then && seen.complete() && !seen.Known(row.id)
                             : created_now(row);
    const std::string message = row.deleted ? "Delete" : created ? "Create" : "Update";
    const FailedJob job = TrackedChangeJob(table.table, row, message, row_token);
    std::optional<std::string> columns;
    if (!row.deleted) columns = row.json;
    Result<std::string> body =
        ReconciledWebhook(job, TrackedChangeStepName(table.table), 40, columns, "change_tracking");
    if (!body.ok()) return body.status();
    bool duplicate = false;
    if (!dry_run) {
      Result<bool> appended = sink_->Append(FailedJobKey(job), *body);
      if (!appended.ok()) return appended.status();
      duplicate = *appended;
    }
    if (duplicate) {
      ++summary->already_seen;
      ++summary->tracked_seen;
    } else {
      ++summary->events_journaled;
      ++summary->tracked_journaled;
      if (row.deleted) {
        ++summary->deletes;
        ++summary->tracked_deletes;
      }
    }
    return Status::Ok();
  };

  std::string delta_link;
  while (!resource.empty()) {
    Result<ClientResponse> r = Call("GET", resource, headers, stop, summary);
    if (!r.ok()) return r.status();
    if (!full && TokenExpired(*r)) {
      // Too old for Dataverse: sync the whole table again, comparing with the whole journal.
      ++summary->expired_tokens;
      std::fprintf(stderr, "dvrouter: reconcile: the delta link of %s expired: full resync\n",
                   table.table.c_str());
      full = true;
      token.clear();
      resource = full_query;
      seen = SeenIndex(sink_, table.table, 0, rc_.max_seen_rows);
      continue;
    }
    if (r->status != 200) {
      return Unavailable("GET " + set + " (change tracking): HTTP " + std::to_string(r->status) +
                         ": " + Utf8Excerpt(r->body, 200));
    }
    Result<DeltaPage> page = ParseDeltaPage(r->body, table.table);
    if (!page.ok()) return page.status();
    if (!page->bad.empty()) {
      // Nothing is skipped silently: the delta link stays where it was and the next run reads
      // the same changes again (journaled ones are duplicates by their event ids).
      return InvalidArgument("entry " + std::to_string(page->bad.front().index) + ": " +
                             page->bad.front().reason);
    }
    summary->changes_found += page->rows.size();
    if (!baseline) {
      if (Status st = seen.CatchUp(); !st.ok()) return st;
      for (const TrackedRow& row : page->rows) {
        if (!row.deleted) ++summary->rows_read;
        // A newer version of a row still settling keeps what the first read decided of it.
        std::optional<bool> then;
        if (auto it = carried.find(row.id); it != carried.end()) {
          then = it->second.created;
          carried.erase(it);
        }
        if (Status st = decide(row, token, true, then); !st.ok()) return st;
      }
    }
    resource.clear();
    const std::string& next = page->next_link.empty() ? page->delta_link : page->next_link;
    if (!next.starts_with(base)) {
      return InvalidArgument("change tracking: a link leads elsewhere: " + Utf8Excerpt(next, 200));
    }
    if (!page->next_link.empty()) {
      resource = page->next_link.substr(base.size());
    } else {
      delta_link = page->delta_link;
    }
  }
  // What settled since the last run: journaled now unless the journal got it meanwhile.
  if (Status st = seen.CatchUp(); !st.ok()) return st;
  for (auto& [id, c] : carried) {
    if (Status st = decide(c.row, c.token, !c.row.deleted, c.created); !st.ok()) return st;
  }
  if (seen.full()) {
    std::fprintf(stderr,
                 "dvrouter: reconcile: %s: more changed rows than change_tracking.max_seen_rows; "
                 "rows past it are journaled without comparing\n",
                 table.table.c_str());
  }
  if (full) ++summary->full_syncs;
  if (dry_run) return Status::Ok();
  tt.delta_link = delta_link;
  tt.scan_from_seq = start_seq;
  tt.synced_ms = start_ms;
  if (full) ++tt.full_syncs;
  tt.settling = std::move(settling);
  return SaveTrackingState(state_dir_, *state);
}

}  // namespace dvrouter
