#include "router/app/reconcile_runner.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <sstream>

#include "router/common/clock.h"
#include "router/common/thread_name.h"
#include "router/decode/decode.h"
#include "router/partition/partition.h"

namespace dvrouter {

namespace {
constexpr size_t kRunsKept = 20;
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

Result<uint64_t> ReconcileRunner::Trigger(bool dry_run) {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_ || pending_) return FailedPrecondition("a reconciliation run is in progress");
  if (stop_.load()) return Unavailable("the router is stopping");
  pending_ = true;
  pending_dry_run_ = dry_run;
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
    bool dry_run = false;
    uint64_t id = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      const int64_t wait = std::clamp<int64_t>(next - SteadyNowMs(), 0, 3'600'000);
      cv_.wait_for(lock, std::chrono::milliseconds(wait), [&] { return stop_.load() || pending_; });
      if (stop_.load()) return;
      if (!pending_ && SteadyNowMs() < next) continue;
      dry_run = pending_ && pending_dry_run_;
      pending_ = false;
      running_ = true;
      id = next_id_++;
      ReconcileSummary s;
      s.id = id;
      s.running = true;
      s.dry_run = dry_run;
      s.started_ms = WallNowMs();
      runs_.push_front(s);
      if (runs_.size() > kRunsKept) runs_.pop_back();
    }
    RunOnce(dry_run, id);
    if (interval > 0) {
      std::uniform_int_distribution<int64_t> jitter(-interval / 10, interval / 10);
      next = SteadyNowMs() + interval + jitter(rng);
    }
  }
}

void ReconcileRunner::RunOnce(bool dry_run, uint64_t id) {
  ReconcileSummary s;
  s.id = id;
  s.dry_run = dry_run;
  s.started_ms = WallNowMs();
  std::ostringstream progress;
  reconciler_->Run(dry_run, stop_, &s, &progress);
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
    metrics_->journaled.Increment(static_cast<double>(s.events_journaled));
    metrics_->seen.Increment(static_cast<double>(s.already_seen));
    metrics_->deletes.Increment(static_cast<double>(s.deletes));
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
  std::string dry;
  QueryParameter(target, "dry_run", &dry);
  Result<uint64_t> id = Trigger(dry == "1" || dry == "true");
  if (!id.ok()) {
    return ErrorResponse(id.status().code() == StatusCode::kFailedPrecondition ? 409 : 503,
                         "conflict", id.status().message());
  }
  r.status = 202;
  r.body = "{\"started\":" + std::to_string(*id) + "}";
  return r;
}

}  // namespace dvrouter
