#include "router/app/reconcile_runner.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <random>
#include <sstream>

#include "router/common/clock.h"
#include "router/common/json.h"
#include "router/common/thread_name.h"
#include "router/decode/decode.h"
#include "router/partition/partition.h"

namespace dvrouter {

namespace {

constexpr size_t kRunsKept = 20;
constexpr int64_t kMaxSinceMs = 365LL * 24 * 3600 * 1000;

// "90m", "36h", "2d", "45s": milliseconds; 0 when it is not such a duration.
int64_t ParseSinceMs(std::string_view text) {
  int64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  const std::string_view unit(ptr, static_cast<size_t>(text.data() + text.size() - ptr));
  int64_t mult = 0;
  if (unit == "s") mult = 1000;
  if (unit == "m") mult = 60'000;
  if (unit == "h") mult = 3'600'000;
  if (unit == "d") mult = 86'400'000;
  if (ec != std::errc() || ptr == text.data() || mult == 0 || value <= 0 ||
      value > kMaxSinceMs / mult) {
    return 0;
  }
  return value * mult;
}

}  // namespace

// Appends like the webhook handler does, then waits for the journal's answer.
class ReconcileRunner::JournalSink final : public ReconcileSink, AppendCallback {
 public:
  // Bodies up to `max_body_bytes` (ingress.max_body_bytes): what the delivery workers parse.
  JournalSink(Journal* journal, uint32_t partitions, size_t max_body_bytes)
      : journal_(journal),
        partitions_(partitions),
        max_body_bytes_(max_body_bytes),
        decoder_(max_body_bytes) {}

  Result<bool> Append(const EventKey& key, std::string_view body) override {
    if (body.size() > max_body_bytes_) {
      return InvalidArgument("the rebuilt webhook has " + std::to_string(body.size()) +
                             " bytes, over ingress.max_body_bytes (" +
                             std::to_string(max_body_bytes_) + ")");
    }
    std::string padded(body);
    padded.resize(body.size() + Decoder::kPadding);
    EventHeader header;
    if (Status st = decoder_.Decode(padded.data(), body.size(), padded.size(), &header); !st.ok()) {
      return st;
    }
    AppendRequest request;
    request.key = key;
    request.partition =
        PartitionOf(header.primary_entity_name, header.primary_entity_id, partitions_);
    request.received_ms = WallNowMs();
    request.header = &header;
    request.body = body;
    request.callback = this;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = false;
    }
    journal_->Append(&request);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
    if (!result_.status.ok()) return result_.status;
    return result_.duplicate;
  }

  uint64_t NextSeq() override { return journal_->Stats().next_seq; }

  Status ScanTable(uint64_t from_seq, std::string_view table,
                   const std::function<bool(const EventHeader&, std::string_view)>& fn) override {
    return journal_->Scan(from_seq, [&](const RecordView& r) {
      if (r.header->status_record || r.header->primary_entity_name != table) return true;
      return fn(*r.header, r.body);
    });
  }

  uint64_t FirstSeq() override {
    uint64_t first = 0;
    (void)journal_->Scan(0, [&](const RecordView& r) {
      first = r.handle.seq;
      return false;
    });
    return first;
  }

  void OnAppendDone(const AppendResult& result) override {
    std::lock_guard<std::mutex> lock(mu_);
    result_ = result;
    done_ = true;
    cv_.notify_all();
  }

 private:
  Journal* journal_;
  uint32_t partitions_;
  size_t max_body_bytes_;
  Decoder decoder_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  AppendResult result_;
};

ReconcileMetrics::ReconcileMetrics(prometheus::Registry* r)
    : runs(prometheus::BuildCounter()
               .Name("dvrouter_reconcile_runs_total")
               .Help("Reconciliation runs, by result (ok: no error)")
               .Register(*r)),
      events(prometheus::BuildCounter()
                 .Name("dvrouter_reconcile_events_total")
                 .Help("Events reconciliation found, by source and outcome (journaled: new; "
                       "already_seen: the journal had it)")
                 .Register(*r)),
      ok(runs.Add({{"result", "ok"}})),
      failed(runs.Add({{"result", "error"}})),
      journaled(events.Add({{"source", "failed_jobs"}, {"outcome", "journaled"}})),
      seen(events.Add({{"source", "failed_jobs"}, {"outcome", "already_seen"}})),
      deletes(events.Add({{"source", "failed_jobs"}, {"outcome", "deleted_row"}})),
      tracked_journaled(events.Add({{"source", "change_tracking"}, {"outcome", "journaled"}})),
      tracked_seen(events.Add({{"source", "change_tracking"}, {"outcome", "already_seen"}})),
      tracked_deletes(events.Add({{"source", "change_tracking"}, {"outcome", "deleted_row"}})),
      own_changes(events.Add({{"source", "change_tracking"}, {"outcome", "own_change"}})),
      resyncs(prometheus::BuildCounter()
                  .Name("dvrouter_reconcile_full_syncs_total")
                  .Help("Full syncs of change tracked tables, by reason (initial: the first; "
                        "expired: Dataverse no longer knew the delta link)")
                  .Register(*r)),
      initial_syncs(resyncs.Add({{"reason", "initial"}})),
      expired_syncs(resyncs.Add({{"reason", "expired"}})),
      last_success(prometheus::BuildGauge()
                       .Name("dvrouter_reconcile_last_success_timestamp_seconds")
                       .Help("When the last reconciliation run without an error finished (the "
                             "router's start until one did)")
                       .Register(*r)
                       .Add({})),
      interval(prometheus::BuildGauge()
                   .Name("dvrouter_reconcile_interval_seconds")
                   .Help("reconcile.interval: the time between runs (0: only when asked)")
                   .Register(*r)
                   .Add({})),
      throttled(prometheus::BuildCounter()
                    .Name("dvrouter_reconcile_throttled_total")
                    .Help("429 answers reconciliation waited out")
                    .Register(*r)
                    .Add({})) {}

ReconcileRunner::ReconcileRunner(const Config& config, Journal* journal,
                                 prometheus::Registry* registry)
    : config_(config),
      sink_(std::make_unique<JournalSink>(journal, config.journal.partitions,
                                          config.ingress.max_body_bytes)),
      reconciler_(std::make_unique<Reconciler>(config, sink_.get(),
                                               config.journal.data_dir + "/reconcile", WallNowMs)),
      metrics_(std::make_unique<ReconcileMetrics>(registry)) {
  metrics_->interval.Set(static_cast<double>(config.reconcile.interval_ms) / 1000.0);
  // Until a run succeeds, the router's start: a router that just started is not late yet.
  metrics_->last_success.Set(static_cast<double>(WallNowMs()) / 1000.0);
}

ReconcileRunner::~ReconcileRunner() { Stop(); }

void ReconcileRunner::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_) return;
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void ReconcileRunner::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    cv_.notify_all();
  }
  reconciler_->Wake();
  if (thread_.joinable()) thread_.join();
}

Result<uint64_t> ReconcileRunner::Trigger(const ReconcileRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_ || pending_) return FailedPrecondition("a reconciliation run is in progress");
  if (stop_.load()) return Unavailable("the router is stopping");
  pending_ = true;
  pending_request_ = request;
  cv_.notify_all();
  return next_id_;
}

void ReconcileRunner::Loop() {
  SetThreadName("dv-reconcile");
  std::mt19937_64 rng(std::random_device{}());
  const auto interval = static_cast<int64_t>(config_.reconcile.interval_ms);
  // The first run soon after start (what a restart missed), then every interval ±10%.
  int64_t next = interval > 0 ? SteadyNowMs() + std::min<int64_t>(interval, 10'000) : INT64_MAX;
  for (;;) {
    ReconcileRequest request;
    uint64_t id = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      const int64_t wait = std::clamp<int64_t>(next - SteadyNowMs(), 0, 3'600'000);
      cv_.wait_for(lock, std::chrono::milliseconds(wait), [&] { return stop_.load() || pending_; });
      if (stop_.load()) return;
      if (!pending_ && SteadyNowMs() < next) continue;
      if (pending_) request = pending_request_;
      pending_ = false;
      running_ = true;
      id = next_id_++;
      ReconcileSummary s;
      s.id = id;
      s.running = true;
      s.dry_run = request.dry_run;
      s.started_ms = WallNowMs();
      runs_.push_front(s);
      if (runs_.size() > kRunsKept) runs_.pop_back();
    }
    RunOnce(request, id);
    if (interval > 0) {
      std::uniform_int_distribution<int64_t> jitter(-interval / 10, interval / 10);
      next = SteadyNowMs() + interval + jitter(rng);
    }
  }
}

void ReconcileRunner::RunOnce(const ReconcileRequest& request, uint64_t id) {
  const bool dry_run = request.dry_run;
  ReconcileSummary s;
  s.id = id;
  s.dry_run = dry_run;
  s.started_ms = WallNowMs();
  std::ostringstream progress;
  reconciler_->Run(request, stop_, &s, &progress);
  {
    constexpr size_t kProgressKept = 200;  // lines a run keeps for GET /reconcile
    std::istringstream lines(progress.str());
    for (std::string line; std::getline(lines, line) && s.progress.size() < kProgressKept;) {
      s.progress.push_back(line);
    }
  }
  s.finished_ms = WallNowMs();
  if (stop_.load()) {  // cut short: not a success
    ++s.errors;
    s.error_texts.push_back("stopped: the router is stopping");
  }
  std::fprintf(stderr, "%sdvrouter: reconcile run %llu: %s\n", progress.str().c_str(),
               static_cast<unsigned long long>(id), s.Json().c_str());
  if (!dry_run) {
    (s.ok() ? metrics_->ok : metrics_->failed).Increment();
    if (s.ok()) metrics_->last_success.Set(static_cast<double>(s.finished_ms) / 1000.0);
    metrics_->journaled.Increment(static_cast<double>(s.events_journaled - s.tracked_journaled));
    metrics_->seen.Increment(static_cast<double>(s.already_seen - s.tracked_seen));
    metrics_->deletes.Increment(static_cast<double>(s.deletes - s.tracked_deletes));
    metrics_->tracked_journaled.Increment(static_cast<double>(s.tracked_journaled));
    metrics_->tracked_seen.Increment(static_cast<double>(s.tracked_seen));
    metrics_->tracked_deletes.Increment(static_cast<double>(s.tracked_deletes));
    metrics_->own_changes.Increment(static_cast<double>(s.own_changes));
    metrics_->expired_syncs.Increment(static_cast<double>(s.expired_tokens));
    // An expired token is counted when found, its resync when done: a failed resync counts no
    // initial sync.
    metrics_->initial_syncs.Increment(
        static_cast<double>(s.full_syncs > s.expired_tokens ? s.full_syncs - s.expired_tokens : 0));
  }
  metrics_->throttled.Increment(static_cast<double>(s.throttled));
  std::lock_guard<std::mutex> lock(mu_);
  running_ = false;
  for (ReconcileSummary& kept : runs_) {
    if (kept.id == id) kept = s;
  }
}

std::string ReconcileRunner::Json() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out =
      std::string("{\"running\":") + (running_ || pending_ ? "true" : "false") + ",\"runs\":[";
  for (size_t i = 0; i < runs_.size(); ++i) {
    if (i > 0) out += ",\n";
    out += runs_[i].Json();
  }
  out += "]}";
  return out;
}

std::optional<HttpResponse> ReconcileRunner::Handle(std::string_view method,
                                                    std::string_view target) {
  if (TargetPath(target) != "/reconcile") return std::nullopt;
  HttpResponse r;
  if (method == "GET" || method == "HEAD") {
    r.body = Json();
    return r;
  }
  if (method != "POST") {
    r = ErrorResponse(405, "method_not_allowed", "use GET or POST");
    r.allow = "GET, POST";
    return r;
  }
  ReconcileRequest request;
  std::string dry, since;
  QueryParameter(target, "dry_run", &dry);
  request.dry_run = dry == "1" || dry == "true";
  QueryParameter(target, "table", &request.table);
  if (!request.table.empty() && !IsLogicalName(request.table)) {
    return ErrorResponse(400, "bad_request", "table must be a logical name");
  }
  if (QueryParameter(target, "since", &since)) {
    request.since_ms = ParseSinceMs(since);
    if (request.since_ms == 0) {
      return ErrorResponse(400, "bad_request",
                           "since must be a duration like 45s, 90m, 36h or 2d (at most 365d), "
                           "got '" +
                               Utf8Excerpt(since, 40) + "'");
    }
  }
  Result<uint64_t> id = Trigger(request);
  if (!id.ok()) {
    return ErrorResponse(id.status().code() == StatusCode::kFailedPrecondition ? 409 : 503,
                         "conflict", id.status().message());
  }
  r.status = 202;
  r.body = "{\"started\":" + std::to_string(*id) + "}";
  return r;
}

}  // namespace dvrouter
