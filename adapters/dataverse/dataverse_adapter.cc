#include "adapters/dataverse/dataverse_adapter.h"

#include "router/delivery/status_record.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <simdjson.h>

#include <chrono>
#include <cmath>
#include <ctime>

#include "router/common/clock.h"
#include "router/common/json.h"

namespace dvrouter {

namespace {

constexpr size_t kMaxErrorText = 2000;  // a "multiple lines of text" column's default size

enum WriteResult { kWritten, kNotFound, kThrottled, kRetried, kRejected, kSuperseded };
const char* kWriteResults[] = {"written", "not_found", "throttled",
                               "retried", "rejected",  "superseded"};
constexpr size_t kRowsRemembered = 100'000;

// What the service said: error.message of an OData error, else the start of the body.
std::string ServiceMessage(int status, std::string_view body) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string_view message;
  std::string text = "dataverse HTTP " + std::to_string(status) + ": ";
  if (parser.parse(body.data(), body.size()).get(doc) == simdjson::SUCCESS &&
      doc.at_pointer("/error/message").get(message) == simdjson::SUCCESS) {
    return text + Utf8Excerpt(message, 500);
  }
  return text + Utf8Excerpt(body, 300);
}

}  // namespace

DataverseAdapter::DataverseAdapter(AdapterConfig config, prometheus::Registry* registry)
    : config_(std::move(config)),
      web_(dataverse_),
      pool_("dataverse adapter", dataverse_.max_concurrency,
            static_cast<double>(dataverse_.max_concurrency)) {
  if (registry == nullptr) return;
  auto& writes = prometheus::BuildCounter()
                     .Name("dvrouter_dataverse_writes_total")
                     .Help(
                         "Status write-backs (PATCH) by result: written, not_found (row gone), "
                         "throttled (429), retried (other retryable), rejected (to the DLQ)")
                     .Register(*registry);
  for (int i = 0; i < 6; ++i)
    writes_[i] = &writes.Add({{"adapter", config_.name}, {"result", kWriteResults[i]}});
  duration_ = &prometheus::BuildHistogram()
                   .Name("dvrouter_dataverse_request_duration_seconds")
                   .Help("Time of one Web API PATCH, request to answer")
                   .Register(*registry)
                   .Add({{"adapter", config_.name}},
                        prometheus::Histogram::BucketBoundaries{0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                                1, 2.5, 5, 10, 30});
  pool_.set_in_flight_gauge(&prometheus::BuildGauge()
                                 .Name("dvrouter_dataverse_in_flight")
                                 .Help("Web API PATCHes in progress")
                                 .Register(*registry)
                                 .Add({{"adapter", config_.name}}));
}

DataverseAdapter::~DataverseAdapter() { Stop(); }

Status DataverseAdapter::Start(uint64_t) {
  pool_.Start();
  return Status::Ok();
}

void DataverseAdapter::Stop() {
  {
    std::lock_guard<std::mutex> lock(pace_mu_);
    stopping_ = true;
  }
  pace_cv_.notify_all();
  pool_.Stop();
}

std::string DataverseAdapter::EntitySet(const DataverseConfig& c, const std::string& table) {
  for (const auto& [t, set] : c.entity_sets) {
    if (t == table) return set;
  }
  auto ends = [&](std::string_view s) { return table.ends_with(s); };
  if (ends("y") && !(ends("ay") || ends("ey") || ends("oy") || ends("uy"))) {
    return table.substr(0, table.size() - 1) + "ies";
  }
  if (ends("s") || ends("x") || ends("z") || ends("ch") || ends("sh")) return table + "es";
  return table + "s";
}

Result<DataverseAdapter::Patch> DataverseAdapter::BuildPatch(const DataverseConfig& c,
                                                             const EventHeader& header,
                                                             std::string_view body) {
  if (!header.status_record) {
    return InvalidArgument(
        "not a status record: a dataverse adapter takes only the statuses of its source adapter");
  }
  Result<StatusRecord> record = DecodeStatusRecord(body);
  if (!record.ok()) return record.status();
  const std::string& state = record->state;
  const std::string& table = header.primary_entity_name;
  const std::string& row = header.primary_entity_id;
  // The table goes into the PATCH URL: only a logical name, never '#', '?' or '/'.
  if (!IsLogicalName(table) || table == "none") {
    return InvalidArgument("status record without a table: '" + Utf8Excerpt(table, 200) +
                           "' is not a Dataverse logical name");
  }
  if (!IsGuid(row)) {
    return InvalidArgument("status record without a row id (table '" + table + "', row '" +
                           Utf8Excerpt(row, 200) + "')");
  }
  Patch p;
  p.state = state;
  p.order = record->order;
  p.resource = EntitySet(c, table) + "(" + row + ")";
  const int64_t* value = nullptr;
  for (const auto& [s, v] : c.status_values) {
    if (s == state) value = &v;
  }
  if (value == nullptr) return p;  // this state is not shown on the row
  std::string& b = p.body;
  b = "{";
  AppendJsonString(&b, c.status_column);
  b += ":" + std::to_string(*value);
  if (!c.error_column.empty()) {
    b += ",";
    AppendJsonString(&b, c.error_column);
    if ((state == "pending" || state == "failed") && !record->error.empty()) {
      b += ":";
      AppendJsonString(&b, Utf8Excerpt(record->error, kMaxErrorText));
    } else {
      b += ":null";
    }
  }
  simdjson::dom::parser parser;
  simdjson::dom::object answer;
  if (!c.answer_columns.empty() && record->answer.starts_with("{") &&
      parser.parse(record->answer).get(answer) == simdjson::SUCCESS) {
    for (const auto& [column, name] : c.answer_columns) {
      simdjson::dom::element v;
      if (answer[name].get(v) != simdjson::SUCCESS || v.is_null()) continue;
      b += ",";
      AppendJsonString(&b, column);
      b += ":" + simdjson::minify(v);
    }
  }
  b += "}";
  return p;
}

void DataverseAdapter::Deliver(std::span<const Delivery> batch, DeliveryDone* done) {
  std::vector<DeliveryResult> results(batch.size());
  std::vector<std::pair<size_t, CallPool::Call>> calls;
  for (size_t i = 0; i < batch.size(); ++i) {
    Result<Patch> p = BuildPatch(dataverse_, *batch[i].header, batch[i].body);
    if (!p.ok()) {
      results[i].outcome = DeliveryOutcome::kPermanent;
      results[i].error = std::string(p.status().message());
      if (writes_[kRejected] != nullptr) writes_[kRejected]->Increment();
      continue;
    }
    if (p->body.empty()) {
      results[i].answer = "not written: no status value for state " + p->state;
      continue;
    }
    calls.emplace_back(i, [this, patch = std::move(*p)] { return Execute(patch); });
  }
  pool_.Submit(std::move(results), std::move(calls), done);
}

bool DataverseAdapter::Pace() {
  const double rate = dataverse_.max_requests_per_second;
  const int64_t gap = static_cast<int64_t>(std::ceil(1000.0 / rate));
  std::unique_lock<std::mutex> lock(pace_mu_);
  for (;;) {
    if (stopping_) return false;
    const int64_t now = SteadyNowMs();
    const int64_t at = std::max(next_slot_ms_, paused_until_ms_);
    if (at <= now) {
      // Slots do not accumulate while idle beyond one second's worth of requests.
      next_slot_ms_ = std::max(next_slot_ms_, now - 1000) + gap;
      return true;
    }
    pace_cv_.wait_for(lock, std::chrono::milliseconds(at - now));
  }
}

bool DataverseAdapter::Superseded(const Patch& p) {
  std::lock_guard<std::mutex> lock(order_mu_);
  auto it = last_order_.find(p.resource);
  return it != last_order_.end() && p.order < it->second;
}

void DataverseAdapter::Remember(const Patch& p) {
  std::lock_guard<std::mutex> lock(order_mu_);
  auto [it, inserted] = last_order_.try_emplace(p.resource, p.order);
  if (!inserted) {
    it->second = std::max(it->second, p.order);
    return;
  }
  order_fifo_.push_back(p.resource);
  while (order_fifo_.size() > kRowsRemembered) {
    last_order_.erase(order_fifo_.front());
    order_fifo_.pop_front();
  }
}

DeliveryResult DataverseAdapter::Execute(const Patch& patch) {
  DeliveryResult r;
  auto count = [&](WriteResult w) {
    if (writes_[w] != nullptr) writes_[w]->Increment();
  };
  if (Superseded(patch)) {  // a row's statuses are handled one at a time (adapter.h)
    count(kSuperseded);
    r.answer = "superseded: the row shows a newer status; " + patch.state + " not written";
    return r;
  }
  if (!Pace()) {
    r.outcome = DeliveryOutcome::kRetryable;
    r.error = "dataverse adapter stopped";
    return r;
  }
  const auto start = std::chrono::steady_clock::now();
  Result<ClientResponse> res = web_.Send("PATCH", patch.resource, patch.body, {{"If-Match", "*"}});
  if (duration_ != nullptr) {
    duration_->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  if (!res.ok()) {  // no answer, or no token (credentials to fix, or the endpoint down)
    count(kRetried);
    r.outcome = DeliveryOutcome::kRetryable;
    r.error = "dataverse: " + std::string(res.status().message());
    return r;
  }
  const int status = res->status;
  if (status >= 200 && status < 300) {
    count(kWritten);
    Remember(patch);
    r.answer = patch.state + " written";
    return r;
  }
  if (status == 404) {  // the row is gone: nothing to write, and no retry storm
    count(kNotFound);
    r.answer = "row not found (HTTP 404): " + patch.state + " not written";
    return r;
  }
  r.error = ServiceMessage(status, res->body);
  if (status == 429) {
    count(kThrottled);
    int64_t after = ParseRetryAfter(res->Header("retry-after"), std::time(nullptr));
    if (after < 0) after = 5000;
    {
      std::lock_guard<std::mutex> lock(pace_mu_);  // every PATCH waits, not just this one
      paused_until_ms_ = std::max(paused_until_ms_, SteadyNowMs() + after);
      next_slot_ms_ = std::max(next_slot_ms_, paused_until_ms_);  // no burst after the pause
    }
    r.outcome = DeliveryOutcome::kRetryable;
    r.retry_after_ms = after;
    return r;
  }
  if (status == 408 || status >= 500 || status == 401 || status == 403) {
    count(kRetried);
    r.outcome = DeliveryOutcome::kRetryable;
    return r;
  }
  count(kRejected);
  r.outcome = DeliveryOutcome::kPermanent;
  return r;
}

}  // namespace dvrouter
