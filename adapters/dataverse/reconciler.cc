#include "adapters/dataverse/reconciler.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include <simdjson.h>

#include "adapters/dataverse/dataverse_adapter.h"
#include "adapters/dataverse/failed_jobs.h"
#include "adapters/dataverse/reconcile_state.h"
#include "adapters/dataverse/tracking_state.h"
#include "router/common/clock.h"
#include "router/common/encoding.h"
#include "router/common/json.h"
#include "router/decode/attributes.h"
#include "router/decode/decode.h"

namespace dvrouter {

namespace {

constexpr size_t kMaxErrorTexts = 10;
constexpr int kMaxThrottledPerCall = 30;       // 429s waited out for one request
constexpr int64_t kMaxRetryAfterMs = 300'000;  // a longer Retry-After is capped
constexpr int64_t kDefaultRetryAfterMs = 5000;

}  // namespace

void NoteReconcileError(ReconcileSummary* s, const std::string& text) {
  ++s->errors;
  if (s->error_texts.size() < kMaxErrorTexts) s->error_texts.push_back(Utf8Excerpt(text, 400));
}

namespace {

void Note(ReconcileSummary* s, const std::string& text) { NoteReconcileError(s, text); }

std::string Failed(const std::string& what, const ClientResponse& r) {
  return what + ": HTTP " + std::to_string(r.status) + ": " + Utf8Excerpt(r.body, 200);
}

}  // namespace

std::string ReconcileSummary::Json() const {
  std::string out = "{\"id\":" + std::to_string(id) +
                    ",\"dry_run\":" + (dry_run ? "true" : "false") + ",\"state\":\"" +
                    (running ? "running"
                     : ok()  ? "ok"
                             : "errors") +
                    "\",\"started_at\":";
  AppendJsonString(&out, FormatIsoUtc(started_ms));
  if (!running) {
    out += ",\"finished_at\":";
    AppendJsonString(&out, FormatIsoUtc(finished_ms));
  }
  out += ",\"steps\":" + std::to_string(steps) +
         ",\"failed_jobs_found\":" + std::to_string(failed_jobs_found) +
         ",\"rows_read\":" + std::to_string(rows_read) +
         ",\"events_journaled\":" + std::to_string(events_journaled) +
         ",\"already_seen\":" + std::to_string(already_seen) +
         ",\"deletes\":" + std::to_string(deletes) +
         ",\"jobs_deleted\":" + std::to_string(jobs_deleted) +
         ",\"throttled\":" + std::to_string(throttled) + ",\"tables\":" + std::to_string(tables) +
         ",\"changes_found\":" + std::to_string(changes_found) +
         ",\"tracked_journaled\":" + std::to_string(tracked_journaled) +
         ",\"tracked_seen\":" + std::to_string(tracked_seen) +
         ",\"tracked_deletes\":" + std::to_string(tracked_deletes) +
         ",\"own_changes\":" + std::to_string(own_changes) +
         ",\"settling\":" + std::to_string(settling) +
         ",\"full_syncs\":" + std::to_string(full_syncs) +
         ",\"expired_tokens\":" + std::to_string(expired_tokens) +
         ",\"errors\":" + std::to_string(errors) + ",\"error_texts\":[";
  for (size_t i = 0; i < error_texts.size(); ++i) {
    if (i > 0) out += ',';
    AppendJsonString(&out, error_texts[i]);
  }
  out += "],\"progress\":[";
  for (size_t i = 0; i < progress.size(); ++i) {
    if (i > 0) out += ',';
    AppendJsonString(&out, progress[i]);
  }
  out += "]}";
  return out;
}

Reconciler::Reconciler(const Config& config, ReconcileSink* sink, std::string state_dir,
                       std::function<int64_t()> now_ms)
    : config_(config),
      rc_(config.reconcile),
      dataverse_(config.FindAdapter(config.reconcile.dataverse)->Settings<DataverseConfig>()),
      sink_(sink),
      state_dir_(std::move(state_dir)),
      now_ms_(std::move(now_ms)),
      web_(dataverse_) {}

void Reconciler::Wake() {
  std::lock_guard<std::mutex> lock(mu_);
  cv_.notify_all();
}

bool Reconciler::Wait(int64_t ms, const std::atomic<bool>& stop) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(ms, 0)),
               [&] { return stop.load(); });
  return !stop.load();
}

Result<ClientResponse> Reconciler::Call(
    const std::string& method, const std::string& resource,
    const std::vector<std::pair<std::string, std::string>>& headers, const std::atomic<bool>& stop,
    ReconcileSummary* summary) {
  const auto interval_ms = static_cast<int64_t>(1000.0 / rc_.max_requests_per_second);
  for (int throttled = 0;; ++throttled) {
    const int64_t now = SteadyNowMs();
    if (next_call_ms_ > now && !Wait(next_call_ms_ - now, stop)) {
      return Unavailable("the router is stopping");
    }
    if (stop.load()) return Unavailable("the router is stopping");
    next_call_ms_ = SteadyNowMs() + interval_ms;
    Result<ClientResponse> r = web_.Send(method, resource, "", headers);
    if (!r.ok() || r->status != 429) return r;
    // Service protection: wait as told, without failing the run (docs/reconciliation.md).
    ++summary->throttled;
    if (throttled == kMaxThrottledPerCall) return r;
    int64_t wait = ParseRetryAfter(r->Header("retry-after"), WallNowMs() / 1000);
    if (wait < 0) wait = kDefaultRetryAfterMs;
    next_call_ms_ = SteadyNowMs() + std::min(wait, kMaxRetryAfterMs);
  }
}

Result<std::optional<std::string>> Reconciler::StepId(const std::string& name,
                                                      const std::atomic<bool>& stop,
                                                      ReconcileSummary* summary) {
  std::string quoted;
  for (char c : name) quoted += c == '\'' ? std::string("''") : std::string(1, c);
  const std::string resource =
      "sdkmessageprocessingsteps?$select=sdkmessageprocessingstepid,mode&$filter=" +
      UrlEncode("name eq '" + quoted + "'");
  Result<ClientResponse> r = Call("GET", resource, {}, stop, summary);
  if (!r.ok()) return r.status();
  if (r->status != 200) return Unavailable(Failed("GET sdkmessageprocessingsteps", *r));
  simdjson::dom::parser parser;
  simdjson::dom::array rows;
  if (parser.parse(r->body).at_key("value").get(rows) != simdjson::SUCCESS) {
    return InvalidArgument("GET sdkmessageprocessingsteps: answer without a value array: " +
                           Utf8Excerpt(r->body, 200));
  }
  if (rows.size() == 0) return std::optional<std::string>();
  std::string_view id;
  std::string canonical;
  if (rows.at(0).at_key("sdkmessageprocessingstepid").get(id) != simdjson::SUCCESS ||
      !CanonicalGuid(id, &canonical)) {
    return InvalidArgument("GET sdkmessageprocessingsteps: a step without a GUID id");
  }
  return std::optional<std::string>(canonical);
}

Status Reconciler::ReconcileStep(const std::string& step_id, const StepRef& step,
                                 const ReconcileRequest& request, const std::atomic<bool>& stop,
                                 ReconcileSummary* summary, ReconcileState* state) {
  const bool dry_run = request.dry_run;
  StepWatermark& mark = state->steps[step_id];
  int64_t since =
      mark.completed_ms > 0 ? mark.ReadFrom() : now_ms_() - static_cast<int64_t>(rc_.lookback_ms);
  // --since: every failed job of that span again, handled or not: those the journal holds are
  // duplicates of their first event (the same event id) and counted as already_seen.
  if (request.since_ms > 0) since = now_ms_() - request.since_ms;
  // From the overlap before the watermark: jobs that became visible late are read, those
  // already handled are skipped by id (reconcile_state.h).
  std::string resource =
      "asyncoperations?$select=asyncoperationid,messagename,primaryentitytype,"
      "_regardingobjectid_value,_owningextensionid_value,_createdby_value,completedon,createdon,"
      "correlationid&"
      "$filter=" +
      UrlEncode("statuscode eq 31 and _owningextensionid_value eq " + step_id +
                " and completedon ge " + FormatIsoUtc(std::max<int64_t>(since, 0))) +
      "&$orderby=" + UrlEncode("completedon asc");
  const std::string base = web_.Url("");
  const std::vector<std::pair<std::string, std::string>> paging = {
      {"Prefer", "odata.maxpagesize=" + std::to_string(rc_.page_size)}};
  while (!resource.empty()) {
    Result<ClientResponse> r = Call("GET", resource, paging, stop, summary);
    if (!r.ok()) return r.status();
    if (r->status != 200) return Unavailable(Failed("GET asyncoperations", *r));
    Result<FailedJobsPage> page = ParseFailedJobsPage(r->body);
    if (!page.ok()) return page.status();
    // Jobs are handled in completedon order; a bad row stops the step there, so the watermark
    // never passes a job that was not handled.
    size_t stop_at = page->jobs.size();
    if (!page->bad.empty()) {
      const BadJobRow& bad = page->bad.front();
      Note(summary, "asyncoperations row " + std::to_string(bad.index) + ": " + bad.reason);
      stop_at = std::min(stop_at, bad.index);
    }
    for (size_t i = 0; i < stop_at && i < page->jobs.size(); ++i) {
      const FailedJob& job = page->jobs[i];
      if (job.step_id != step_id) {
        return InvalidArgument("asyncoperations: a job of another step in the answer: " + job.id);
      }
      if (request.since_ms == 0 && mark.IsHandled(job.id, job.completed_ms)) continue;
      ++summary->failed_jobs_found;
      std::optional<std::string> row;
      if (job.message != "Delete") {
        const std::string set = DataverseAdapter::EntitySet(dataverse_, job.table);
        Result<ClientResponse> got =
            Call("GET", set + "(" + job.row_id + ")",
                 {{"Prefer", "odata.include-annotations=\"*\""}}, stop, summary);
        if (!got.ok()) return got.status();
        if (got->status == 200) {
          ++summary->rows_read;
          row = std::move(got->body);
        } else if (got->status != 404) {
          return Unavailable(Failed("GET " + set + "(" + job.row_id + ")", *got));
        }
      }
      Result<std::string> body = ReconciledWebhook(job, step.name, step.stage, row);
      if (!body.ok()) {
        return InvalidArgument("job " + job.id + ": " + std::string(body.status().message()));
      }
      if (!dry_run) {
        Result<bool> duplicate = sink_->Append(FailedJobKey(job), *body);
        if (!duplicate.ok()) return duplicate.status();
        if (*duplicate) {
          ++summary->already_seen;
        } else {
          ++summary->events_journaled;
          if (!row) ++summary->deletes;
        }
        if (rc_.delete_handled) {
          Result<ClientResponse> del =
              Call("DELETE", "asyncoperations(" + job.id + ")", {}, stop, summary);
          if (del.ok() && (del->status == 204 || del->status == 404)) {
            ++summary->jobs_deleted;
          } else {
            Note(summary, del.ok() ? Failed("DELETE asyncoperations", *del)
                                   : std::string(del.status().message()));
          }
        }
      } else {
        ++summary->events_journaled;  // would be: a dry run shows what it would journal
        if (!row) ++summary->deletes;
      }
      mark.Handled(job.id, job.completed_ms);
    }
    if (!dry_run) {
      if (Status saved = SaveReconcileState(state_dir_, *state); !saved.ok()) return saved;
    }
    if (stop_at < page->jobs.size() || !page->bad.empty()) return Status::Ok();  // noted above
    resource.clear();
    if (!page->next_link.empty()) {
      // Only links into the same Web API are followed.
      if (!page->next_link.starts_with(base)) {
        return InvalidArgument("asyncoperations: @odata.nextLink leads elsewhere: " +
                               Utf8Excerpt(page->next_link, 200));
      }
      resource = page->next_link.substr(base.size());
    }
  }
  return Status::Ok();
}

void Reconciler::Run(const ReconcileRequest& request, const std::atomic<bool>& stop,
                     ReconcileSummary* summary, std::ostream* progress) {
  summary->dry_run = request.dry_run;
  if (rc_.failed_jobs) RunFailedJobs(request, stop, summary, progress);
  if (rc_.tracked_tables.empty() || stop.load()) return;
  Result<TrackingState> tracking = LoadTrackingState(state_dir_);
  if (!tracking.ok()) {
    Note(summary, std::string(tracking.status().message()));
    return;
  }
  for (const TrackedTableConfig& table : rc_.tracked_tables) {
    if (stop.load()) return;
    if (!request.table.empty() && request.table != table.table) continue;
    ++summary->tables;
    const ReconcileSummary before = *summary;
    Status st = TrackTable(table, request.dry_run, stop, summary, &*tracking);
    if (!st.ok() && !stop.load()) {
      Note(summary, "change tracking of " + table.table + ": " + std::string(st.message()));
    }
    if (progress != nullptr) {
      *progress << "reconcile: change tracking of " << table.table << ": "
                << summary->changes_found - before.changes_found << " changes, "
                << summary->tracked_journaled - before.tracked_journaled << " journaled, "
                << summary->tracked_seen - before.tracked_seen << " already seen, "
                << summary->own_changes - before.own_changes << " own, "
                << summary->settling - before.settling << " settling"
                << (st.ok() ? "" : " (stopped: error)") << "\n";
    }
  }
}

void Reconciler::RunFailedJobs(const ReconcileRequest& request, const std::atomic<bool>& stop,
                               ReconcileSummary* summary, std::ostream* progress) {
  Result<ReconcileState> state = LoadReconcileState(state_dir_);
  if (!state.ok()) {
    Note(summary, std::string(state.status().message()));
    return;
  }
  const RegistrationConfig& reg = config_.registration;
  for (const RegistrationStep& st : reg.steps) {
    if (!st.async) continue;  // a synchronous step's failure rolls the change back: no job
    if (!request.table.empty() && request.table != st.table) continue;
    for (const std::string& message : st.messages) {
      if (stop.load()) return;
      StepRef ref;
      ref.name =
          reg.endpoint_name + ": " + st.table + " " + message + " " + std::to_string(st.stage);
      ref.stage = st.stage;
      Result<std::optional<std::string>> id = StepId(ref.name, stop, summary);
      if (!id.ok()) {
        Note(summary, "step '" + ref.name + "': " + std::string(id.status().message()));
        continue;
      }
      if (!id->has_value()) {
        Note(summary, "step '" + ref.name + "' is not registered (run dvrouter register)");
        continue;
      }
      ++summary->steps;
      const uint64_t before = summary->events_journaled + summary->already_seen;
      Status st_run = ReconcileStep(**id, ref, request, stop, summary, &*state);
      if (!st_run.ok() && !stop.load()) {
        Note(summary, "step '" + ref.name + "': " + std::string(st_run.message()));
      }
      if (progress != nullptr) {
        *progress << "reconcile: " << ref.name << ": "
                  << summary->events_journaled + summary->already_seen - before
                  << " failed jobs handled" << (st_run.ok() ? "" : " (stopped: error)") << "\n";
      }
    }
  }
}

}  // namespace dvrouter
