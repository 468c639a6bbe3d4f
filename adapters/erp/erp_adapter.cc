#include "adapters/erp/erp_adapter.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <ctime>

#include "router/common/json.h"
#include "router/decode/attributes.h"
#include "router/delivery/dlq.h"

namespace dvrouter {

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool Matches(const std::vector<std::string>& wanted, const std::string& value) {
  if (wanted.empty()) return true;
  std::string lower = value;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return std::find(wanted.begin(), wanted.end(), lower) != wanted.end();
}

std::string JsonString(std::string_view s) {
  std::string out;
  AppendJsonString(&out, s);
  return out;
}

// The raw JSON of member `key` of object `json`, or "null".
std::string Member(std::string_view json, std::string_view key) {
  std::vector<std::pair<std::string, std::string>> members;
  if (!JsonObjectMembers(json, "value", &members).ok()) return "null";
  for (auto& [k, v] : members) {
    if (k == key) return v;
  }
  return "null";
}

// A JSON value as text for a URL path: strings unquoted, then percent-encoded.
std::string PathText(const std::string& json) {
  if (json.size() >= 2 && json.front() == '"') {
    simdjson::dom::parser parser;
    std::string_view s;
    if (parser.parse(json).get_string().get(s) == simdjson::SUCCESS) return UrlEncode(s);
  }
  return UrlEncode(json == "null" ? "" : json);
}

struct EventValues {
  const Delivery* d = nullptr;
  std::vector<std::pair<std::string, std::string>> target;  // converted attributes, raw JSON
  std::string target_json = "{}";

  void Resolve(std::string_view path, std::string* out) const {
    const EventHeader& h = *d->header;
    if (path == "event.id") {
      *out += "\"" + d->key.ToHex() + "\"";
    } else if (path == "event.seq") {
      *out += std::to_string(d->seq);
    } else if (path == "target") {
      *out += target_json;
    } else if (path.starts_with("header.")) {
      const std::string_view f = path.substr(7);
      if (f == "message") *out += JsonString(h.message_name);
      if (f == "table") *out += JsonString(h.primary_entity_name);
      if (f == "row_id") *out += JsonString(h.primary_entity_id);
      if (f == "stage") *out += std::to_string(h.stage);
      if (f == "correlation_id") *out += JsonString(h.correlation_id);
      if (f == "initiating_user_id") *out += JsonString(h.initiating_user_id);
      if (f == "organization") *out += JsonString(h.organization_name);
      if (f == "operation_time") {
        *out += JsonString(FormatIsoUtc(h.operation_created_on_ms != 0 ? h.operation_created_on_ms
                                                                       : d->received_ms));
      }
    } else if (path.starts_with("target.")) {
      std::string_view rest = path.substr(7);
      const size_t dot = rest.find('.');
      const std::string_view attr = rest.substr(0, dot);
      std::string value = "null";
      for (const auto& [k, v] : target) {
        if (k == attr) value = v;
      }
      if (dot != std::string_view::npos && value != "null")
        value = Member(value, rest.substr(dot + 1));
      *out += value;
    } else {
      *out += "null";
    }
  }
};

}  // namespace

ErpAdapter::ErpAdapter(AdapterConfig config, prometheus::Registry* registry)
    : config_(std::move(config)), http_([&] {
        HttpClientOptions o;
        o.connect_timeout_ms = config_.erp.connect_timeout_ms;
        o.request_timeout_ms = config_.erp.request_timeout_ms;
        o.ca_file = config_.erp.ca_file;
        o.max_idle_per_host = config_.erp.max_concurrency;
        return o;
      }()) {
  for (const ErpRequest& r : config_.erp.requests) {
    Compiled c;
    c.request = &r;
    // Validated when the configuration was parsed.
    if (Result<JsonTemplate> t = JsonTemplate::Compile(r.path); t.ok()) c.path = *t;
    if (Result<JsonTemplate> t = JsonTemplate::Compile(r.body); t.ok()) c.body = *t;
    templates_.push_back(std::move(c));
  }
  const ErpAuth& auth = config_.erp.auth;
  if (auth.mode == "oauth2") {
    tokens_ = std::make_unique<OAuthTokenSource>(
        OAuthClientCredentials{auth.token_url, auth.client_id, auth.client_secret, auth.scope},
        &http_);
  }
  if (auth.mode == "basic") basic_ = "Basic " + Base64Encode(auth.user + ":" + auth.password);
  const double max = static_cast<double>(config_.erp.max_concurrency);
  limit_ = config_.erp.adaptive ? std::min(max, 8.0) : max;
  if (registry == nullptr) return;
  const prometheus::Labels labels{{"adapter", config_.name}};
  requests_ = &prometheus::BuildCounter()
                   .Name("dvrouter_erp_requests_total")
                   .Help("ERP calls by answer: 2xx, 4xx, 5xx, or error (no answer)")
                   .Register(*registry);
  int k = 0;
  for (const char* answer : {"2xx", "4xx", "5xx", "error"}) {  // exported at 0 from the start
    answers_[k++] = &requests_->Add({{"adapter", config_.name}, {"answer", answer}});
  }
  duration_ = &prometheus::BuildHistogram()
                   .Name("dvrouter_erp_request_duration_seconds")
                   .Help("Time of one ERP call, request to answer")
                   .Register(*registry)
                   .Add(labels, prometheus::Histogram::BucketBoundaries{
                                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
  limit_gauge_ = &prometheus::BuildGauge()
                      .Name("dvrouter_erp_concurrency_limit")
                      .Help("Calls the ERP adapter allows at once (adaptive)")
                      .Register(*registry)
                      .Add(labels);
  in_flight_gauge_ = &prometheus::BuildGauge()
                          .Name("dvrouter_erp_in_flight")
                          .Help("ERP calls in progress")
                          .Register(*registry)
                          .Add(labels);
  limit_gauge_->Set(limit_);
}

ErpAdapter::~ErpAdapter() { Stop(); }

double ErpAdapter::concurrency_limit() const {
  std::lock_guard<std::mutex> lock(mu_);
  return limit_;
}

int64_t ErpAdapter::ParseRetryAfter(std::string_view value, int64_t now_epoch_s) {
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  if (value.empty()) return -1;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (value.size() > 9) return -1;
    return std::stoll(std::string(value)) * 1000;
  }
  std::tm tm{};
  const std::string text(value);
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return -1;
  const int64_t at = timegm(&tm);
  return std::max<int64_t>(0, (at - now_epoch_s) * 1000);
}

std::string ErpAdapter::Capture(const std::vector<std::pair<std::string, std::string>>& capture,
                                std::string_view body) {
  if (capture.empty()) return "";
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element doc;
  const bool parsed = parser.parse(body.data(), body.size()).get(doc) == simdjson::SUCCESS;
  std::string out = "{";
  for (const auto& [name, pointer] : capture) {
    if (out.size() > 1) out += ',';
    AppendJsonString(&out, name);
    out += ':';
    simdjson::dom::element v;
    if (parsed && doc.at_pointer(pointer).get(v) == simdjson::SUCCESS) {
      out += simdjson::minify(v);
    } else {
      out += "null";
    }
  }
  return out + "}";
}

Status ErpAdapter::Start(uint64_t) {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_) return Status::Ok();
  started_ = true;
  for (uint64_t i = 0; i < config_.erp.max_concurrency; ++i) {
    threads_.emplace_back([this] { Worker(); });
  }
  return Status::Ok();
}

struct ErpAdapter::Job {
  std::vector<DeliveryResult> results;
  DeliveryDone* done = nullptr;
  size_t remaining = 0;  // under mu_
};

Status ErpAdapter::Prepare(const Delivery& d, Call* call) const {
  const EventHeader& h = *d.header;
  for (const Compiled& c : templates_) {
    if (Matches(c.request->tables, h.primary_entity_name) &&
        Matches(c.request->messages, h.message_name)) {
      call->tmpl = &c;
      break;
    }
  }
  if (call->tmpl == nullptr) {
    return InvalidArgument("no request template of adapter " + config_.name + " matches table '" +
                           h.primary_entity_name + "' and message '" + h.message_name + "'");
  }
  EventValues values;
  values.d = &d;
  ChangeSet changes;
  Status st =
      ThreadAttributeExtractor().Extract(d.body.data(), d.body.size(), d.body.size(), &changes);
  if (!st.ok()) return InvalidArgument("body: " + std::string(st.message()));
  if (changes.has_target && !changes.is_reference) {
    values.target_json = changes.attributes;
    if (Status m = JsonObjectMembers(changes.attributes, "attributes", &values.target); !m.ok()) {
      return m;
    }
  }
  std::string path;
  call->tmpl->path.Render(
      [&](std::string_view p, std::string* out) {
        std::string json;
        values.Resolve(p, &json);
        *out += PathText(json);
      },
      &path);
  call->tmpl->body.Render([&](std::string_view p, std::string* out) { values.Resolve(p, out); },
                          &call->body);
  call->url = config_.erp.base_url + path;
  call->event_id = d.key.ToHex();
  return Status::Ok();
}

void ErpAdapter::Deliver(std::span<const Delivery> batch, DeliveryDone* done) {
  auto* job = new Job;
  job->done = done;
  job->results.resize(batch.size());
  std::vector<Call> calls;
  for (size_t i = 0; i < batch.size(); ++i) {
    Call call;
    call.job = job;
    call.index = i;
    if (Status st = Prepare(batch[i], &call); !st.ok()) {
      job->results[i].outcome = DeliveryOutcome::kPermanent;
      job->results[i].error = std::string(st.message());
      continue;
    }
    calls.push_back(std::move(call));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!calls.empty() && !stopping_ && started_) {
      job->remaining = calls.size();
      for (Call& c : calls) queue_.push_back(std::move(c));
      cv_.notify_all();
      return;
    }
  }
  for (const Call& c : calls) {
    job->results[c.index].outcome = DeliveryOutcome::kRetryable;
    job->results[c.index].error = "erp adapter stopped";
  }
  done->OnDelivered(job->results);
  delete job;
}

void ErpAdapter::Stop() {
  std::deque<Call> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    left.swap(queue_);
    cv_.notify_all();
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  for (const Call& c : left) {
    c.job->results[c.index].outcome = DeliveryOutcome::kRetryable;
    c.job->results[c.index].error = "erp adapter stopped";
    Finish(c.job);
  }
}

void ErpAdapter::Finish(Job* job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (--job->remaining != 0) return;
  }
  job->done->OnDelivered(job->results);
  delete job;
}

void ErpAdapter::Adapt(bool congested) {
  if (!config_.erp.adaptive) return;
  std::lock_guard<std::mutex> lock(mu_);
  const double max = static_cast<double>(config_.erp.max_concurrency);
  const int before = static_cast<int>(limit_);
  if (congested) {
    const int64_t now = NowMs();
    if (now - last_decrease_ms_ < 200) return;  // one decrease per burst of failures
    last_decrease_ms_ = now;
    limit_ = std::max(1.0, limit_ / 2);
  } else {
    limit_ = std::min(max, limit_ + 1.0 / limit_);
  }
  if (limit_gauge_ != nullptr) limit_gauge_->Set(limit_);
  if (static_cast<int>(limit_) > before) cv_.notify_one();  // one more call may start
}

void ErpAdapter::Worker() {
  for (;;) {
    Call call;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stopping_ || (!queue_.empty() && active_ < static_cast<int>(limit_));
      });
      if (stopping_) return;
      call = std::move(queue_.front());
      queue_.pop_front();
      ++active_;
      if (in_flight_gauge_ != nullptr) in_flight_gauge_->Set(active_);
    }
    try {
      call.job->results[call.index] = Execute(call);
    } catch (const std::exception& e) {  // never out of the thread: the event is tried again
      call.job->results[call.index].outcome = DeliveryOutcome::kRetryable;
      call.job->results[call.index].error = std::string("erp adapter: ") + e.what();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      --active_;
      if (in_flight_gauge_ != nullptr) in_flight_gauge_->Set(active_);
    }
    cv_.notify_one();
    Finish(call.job);
  }
}

DeliveryResult ErpAdapter::Execute(const Call& call) {
  const ErpRequest& t = *call.tmpl->request;
  const ErpAuth& auth = config_.erp.auth;
  DeliveryResult r;
  auto count = [&](int status) {  // 0: no answer
    const int k = status == 0 ? 3 : status < 300 ? 0 : status < 500 ? 1 : 2;
    if (answers_[k] != nullptr) answers_[k]->Increment();
  };
  for (int attempt = 0;; ++attempt) {
    ClientRequest req;
    req.method = t.method;
    req.url = call.url;
    req.body = call.body;
    req.headers = {{"Content-Type", "application/json"},
                   {"Accept", "application/json"},
                   {"Idempotency-Key", call.event_id}};
    std::string token;
    if (auth.mode == "basic") {
      req.headers.emplace_back("Authorization", basic_);
    } else if (auth.mode == "api_key") {
      req.headers.emplace_back(auth.header, auth.key);
    } else if (auth.mode == "oauth2") {
      Result<std::string> tok = tokens_->Token();
      if (!tok.ok()) {
        r.outcome = DeliveryOutcome::kRetryable;  // credentials to fix or an endpoint down
        r.error = std::string(tok.status().message());
        count(0);
        return r;
      }
      token = *tok;
      req.headers.emplace_back("Authorization", "Bearer " + token);
    }
    for (const auto& h : t.headers) req.headers.push_back(h);
    const auto start = std::chrono::steady_clock::now();
    Result<ClientResponse> res = http_.Send(req);
    if (duration_ != nullptr) {
      duration_->Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    if (!res.ok()) {
      r.outcome = DeliveryOutcome::kRetryable;
      r.error = "erp: " + std::string(res.status().message());
      count(0);
      Adapt(true);
      return r;
    }
    const int status = res->status;
    count(status);
    if (status == 401 && tokens_ && attempt == 0) {
      tokens_->Invalidate(token);  // expired or revoked early: one more try with a fresh token
      continue;
    }
    const std::string excerpt = res->body.substr(0, 300);
    if (status >= 200 && status < 300) {
      r.outcome = status == 202 ? DeliveryOutcome::kProcessing : DeliveryOutcome::kDelivered;
      r.answer = Capture(t.capture, res->body);
      Adapt(false);
      return r;
    }
    if (status == 408 || status == 429 || status >= 500) {
      r.outcome = DeliveryOutcome::kRetryable;
      r.retry_after_ms = ParseRetryAfter(res->Header("retry-after"), std::time(nullptr));
      r.error = "erp HTTP " + std::to_string(status) + ": " + excerpt;
      Adapt(status == 429 || status == 503);
      return r;
    }
    // 401/403: credentials to fix (they would send everything to the DLQ); 409/425: the ERP is
    // still working on an earlier copy of this Idempotency-Key. Both are retried.
    r.outcome = status == 401 || status == 403 || status == 409 || status == 425
                    ? DeliveryOutcome::kRetryable
                    : DeliveryOutcome::kPermanent;
    r.error = "erp HTTP " + std::to_string(status) + ": " + excerpt;
    return r;
  }
}

}  // namespace dvrouter
