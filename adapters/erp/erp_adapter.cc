#include "adapters/erp/erp_adapter.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "adapters/erp/callback_token.h"
#include "router/common/ascii.h"
#include "router/common/clock.h"
#include "router/common/encoding.h"
#include "router/common/json.h"
#include "router/common/thread_name.h"
#include "router/decode/attributes.h"
#include "router/ingress/http.h"

namespace dvrouter {

namespace {

constexpr size_t kMaxPolls = 100'000;  // jobs polled at once; more wait for their callback
constexpr size_t kMaxPollUrl = 2048;   // longer status URLs are not fetched

// scheme://authority of a URL (IPv6 literals kept as written).
std::string Origin(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const size_t path = url.find('/', scheme + 3);
  return path == std::string::npos ? url : url.substr(0, path);
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

// A JSON value as the text of a URL path segment, before percent-encoding: strings unquoted.
std::string PathValue(const std::string& json) {
  if (json.size() >= 2 && json.front() == '"') {
    simdjson::dom::parser parser;
    std::string_view s;
    if (parser.parse(json).get_string().get(s) == simdjson::SUCCESS) return std::string(s);
  }
  return json == "null" ? "" : json;
}

// A value that would make the request reach another resource than the template names: empty,
// a dot segment, or holding a separator or "..", even percent-encoded (servers decode %2F).
bool UnsafePathValue(std::string_view v) {
  return v.empty() || v == "." || v.find('/') != std::string_view::npos ||
         v.find('\\') != std::string_view::npos || v.find("..") != std::string_view::npos;
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
    : config_(std::move(config)),
      http_([&] {
        HttpClientOptions o;
        o.connect_timeout_ms = erp_.connect_timeout_ms;
        o.request_timeout_ms = erp_.request_timeout_ms;
        o.ca_file = erp_.ca_file;
        o.max_idle_per_host = erp_.max_concurrency;
        return o;
      }()),
      pool_("erp adapter", erp_.max_concurrency,
            erp_.adaptive ? 8.0 : static_cast<double>(erp_.max_concurrency)) {
  for (const ErpRequest& r : erp_.requests) {
    Compiled c;
    c.request = &r;
    // Validated when the configuration was parsed.
    if (Result<JsonTemplate> t = JsonTemplate::Compile(r.path); t.ok()) c.path = *t;
    if (Result<JsonTemplate> t = JsonTemplate::Compile(r.body); t.ok()) c.body = *t;
    templates_.push_back(std::move(c));
    for (const auto& cap : r.capture) {
      bool seen = false;
      for (const auto& have : callback_capture_) seen = seen || have.first == cap.first;
      if (!seen) callback_capture_.push_back(cap);
    }
  }
  const ErpAuth& auth = erp_.auth;
  if (auth.mode == "oauth2") {
    tokens_ = std::make_unique<OAuthTokenSource>(
        OAuthClientCredentials{auth.token_url, auth.client_id, auth.client_secret, auth.scope},
        &http_);
  }
  if (auth.mode == "basic") basic_ = "Basic " + Base64Encode(auth.user + ":" + auth.password);
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
  pool_.set_in_flight_gauge(&prometheus::BuildGauge()
                                 .Name("dvrouter_erp_in_flight")
                                 .Help("ERP calls in progress")
                                 .Register(*registry)
                                 .Add(labels));
  limit_gauge_->Set(pool_.limit());
  csrf_fetches_ = &prometheus::BuildCounter()
                       .Name("dvrouter_erp_csrf_fetches_total")
                       .Help("CSRF tokens fetched from an SAP Gateway (profile sap_odata)")
                       .Register(*registry)
                       .Add(labels);
}

ErpAdapter::~ErpAdapter() { Stop(); }

double ErpAdapter::concurrency_limit() const { return pool_.limit(); }

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
  pool_.Start();
  if (erp_.async.poll_interval_ms > 0 && !poller_.joinable()) {
    poller_ = std::thread([this] { PollLoop(); });
  }
  return Status::Ok();
}

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
  ChangeSet scratch;
  const ChangeSet* cs = nullptr;
  Status st = ExtractChanges(d.body, d.changes, &scratch, &cs);
  if (!st.ok()) return InvalidArgument("body: " + std::string(st.message()));
  const ChangeSet& changes = *cs;
  if (changes.has_target && !changes.is_reference) {
    values.target_json = changes.attributes;
    if (Status m = JsonObjectMembers(changes.attributes, "attributes", &values.target); !m.ok()) {
      return m;
    }
  }
  std::string path, bad;
  call->tmpl->path.Render(
      [&](std::string_view p, std::string* out) {
        std::string json;
        values.Resolve(p, &json);
        const std::string value = PathValue(json);
        if (UnsafePathValue(value)) bad = std::string(p);
        *out += UrlEncode(value);
      },
      &path);
  if (!bad.empty()) {
    return InvalidArgument("path placeholder {{" + bad + "}} of request " +
                           call->tmpl->request->name +
                           " is empty, a dot segment, or holds '/', '\\' or '..' for this event");
  }
  call->tmpl->body.Render([&](std::string_view p, std::string* out) { values.Resolve(p, out); },
                          &call->body);
  call->url = erp_.base_url + path;
  call->event_id = d.key.ToHex();
  call->key = d.key;
  return Status::Ok();
}

void ErpAdapter::Deliver(std::span<const Delivery> batch, DeliveryDone* done) {
  std::vector<DeliveryResult> results(batch.size());
  std::vector<std::pair<size_t, CallPool::Call>> calls;
  for (size_t i = 0; i < batch.size(); ++i) {
    Call call;
    if (Status st = Prepare(batch[i], &call); !st.ok()) {
      results[i].outcome = DeliveryOutcome::kPermanent;
      results[i].error = std::string(st.message());
      continue;
    }
    calls.emplace_back(i, [this, call = std::move(call)] { return Execute(call); });
  }
  pool_.Submit(std::move(results), std::move(calls), done);
}

void ErpAdapter::Stop() {
  pool_.Stop();
  {
    std::lock_guard<std::mutex> lock(poll_mu_);
    poll_stop_ = true;
  }
  poll_cv_.notify_all();
  if (poller_.joinable()) poller_.join();
}

std::optional<DeliveryResult> ErpAdapter::JobOutcome(
    const ErpAsync& async, const std::vector<std::pair<std::string, std::string>>& capture,
    std::string_view body, bool quote_body) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  DeliveryResult r;
  std::string_view status;
  if (parser.parse(body.data(), body.size()).get(doc) != simdjson::SUCCESS ||
      doc.at_pointer(async.status_pointer).get(status) != simdjson::SUCCESS) {
    r.outcome = DeliveryOutcome::kPermanent;
    r.error = "job status without a string at " + async.status_pointer +
              (quote_body ? ": " + Utf8Excerpt(body, 200) : std::string());
    return r;
  }
  std::string lower(status);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto in = [&](const std::vector<std::string>& v) {
    for (const std::string& x : v) {
      std::string lx = x;
      for (char& c : lx) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lx == lower) return true;
    }
    return false;
  };
  if (in(async.completed)) {
    r.answer = Capture(capture, body);
    return r;
  }
  if (in(async.failed)) {
    r.outcome = DeliveryOutcome::kPermanent;
    std::string_view error;
    r.error = "erp job " + std::string(status);
    if (doc.at_pointer(async.error_pointer).get(error) == simdjson::SUCCESS) {
      r.error += ": " + Utf8Excerpt(error, 300);
    }
    return r;
  }
  return std::nullopt;  // still running
}

Result<DeliveryResult> ErpAdapter::ParseCallback(const CallbackCredentials& credentials,
                                                 std::string_view body) {
  if (Status st = AuthorizeCallback(credentials); !st.ok()) return st;
  std::optional<DeliveryResult> r = JobOutcome(erp_.async, callback_capture_, body);
  if (!r) return InvalidArgument("the callback reports no final status (still running?)");
  if (r->outcome == DeliveryOutcome::kPermanent && r->error.starts_with("job status without")) {
    return InvalidArgument(r->error);
  }
  return *r;
}

void ErpAdapter::StartPoll(const Call& call, const ClientResponse& answer) {
  const ErpAsync& as = erp_.async;
  std::string url;
  simdjson::dom::parser parser;
  std::string_view v;
  if (parser.parse(answer.body).at_pointer(as.poll_url_pointer).get(v) == simdjson::SUCCESS) {
    url = std::string(v);
  } else {
    url = answer.Header("location");
  }
  if (url.empty()) return;  // nothing to poll: a callback has to confirm it
  if (url.starts_with("/")) url = Origin(erp_.base_url) + url;  // relative to the ERP
  // Only the ERP's own origin, or one listed, is fetched: a 202 answer must not make the router
  // request arbitrary hosts (its network may reach what the ERP's cannot).
  std::string refused;
  Result<Url> parsed = ParseUrl(url);
  if (url.size() > kMaxPollUrl) {
    refused = "its status URL is longer than " + std::to_string(kMaxPollUrl) + " characters";
  } else if (!parsed.ok()) {
    refused = "its status URL is not an http(s) URL";
  } else if (const std::string origin = CanonicalOrigin(*parsed);
             origin != erp_origin_ &&
             std::find(as.poll_allowed_origins.begin(), as.poll_allowed_origins.end(), origin) ==
                 as.poll_allowed_origins.end()) {
    refused = "its status URL is on " + Utf8Excerpt(origin, 200) +
              ", neither base_url's origin nor in async.poll.allowed_origins";
  }
  if (!refused.empty()) url.clear();
  const int64_t now = SteadyNowMs();
  std::lock_guard<std::mutex> lock(poll_mu_);
  if (polls_.size() >= kMaxPolls) {
    std::fprintf(stderr,
                 "dvrouter: adapters.%s: %zu jobs already polled; event %s waits for a callback\n",
                 config_.name.c_str(), polls_.size(), call.event_id.c_str());
    return;
  }
  polls_.push_back(Poll{call.key, url, refused, call.tmpl,
                        now + static_cast<int64_t>(as.poll_interval_ms),
                        now + static_cast<int64_t>(as.poll_timeout_ms)});
  poll_cv_.notify_all();
}

bool ErpAdapter::StopRequested() {
  std::lock_guard<std::mutex> lock(poll_mu_);
  return poll_stop_;
}

void ErpAdapter::PollLoop() {
  SetThreadName("dv-erp-poll");
  const ErpAsync& as = erp_.async;
  std::unique_lock<std::mutex> lock(poll_mu_);
  while (!poll_stop_) {
    int64_t now = SteadyNowMs();
    int64_t next = now + 1000;
    std::vector<Poll> due;
    for (size_t i = 0; i < polls_.size();) {
      if (polls_[i].next_ms <= now) {
        due.push_back(std::move(polls_[i]));
        polls_[i] = std::move(polls_.back());
        polls_.pop_back();
      } else {
        next = std::min(next, polls_[i].next_ms);
        ++i;
      }
    }
    if (due.empty()) {
      poll_cv_.wait_for(lock, std::chrono::milliseconds(next - now));
      continue;
    }
    lock.unlock();
    std::vector<Poll> again;
    for (Poll& p : due) {
      if (StopRequested()) {  // the rest are answered by callbacks, or polled after a restart
        again.push_back(std::move(p));
        continue;
      }
      std::optional<DeliveryResult> outcome;
      ClientRequest req;
      req.method = "GET";
      req.url = p.url;
      std::string token;
      // The ERP's credentials go to the ERP only, not to another origin a 202 answer names; its
      // answers are quoted in errors, another origin's never.
      Result<Url> parsed = ParseUrl(p.url);
      const bool own = parsed.ok() && CanonicalOrigin(*parsed) == erp_origin_;
      if (own) AuthHeaders(&req, &token);
      if (!p.refused.empty()) {
        DeliveryResult r;
        r.outcome = DeliveryOutcome::kPermanent;
        r.error = "erp job not polled: " + p.refused;
        outcome = r;
      } else if (!own || !token.empty() || erp_.auth.mode != "oauth2") {
        Result<ClientResponse> res = http_.Send(req);
        if (res.ok() && res->status == 200) {
          outcome = JobOutcome(as, p.tmpl->request->capture, res->body, own);
        } else if (res.ok() && res->status >= 400 && res->status < 500 && res->status != 408 &&
                   res->status != 429 && res->status != 401) {
          DeliveryResult r;
          r.outcome = DeliveryOutcome::kPermanent;
          r.error = "erp job status HTTP " + std::to_string(res->status) +
                    (own ? ": " + Utf8Excerpt(res->body, 300) : std::string());
          outcome = r;
        }
      }
      now = SteadyNowMs();
      if (!outcome && now >= p.deadline_ms) {
        DeliveryResult r;
        r.outcome = DeliveryOutcome::kPermanent;
        r.error = "erp job not confirmed within " + std::to_string(as.poll_timeout_ms) + " ms";
        outcome = r;
      }
      if (outcome && sink_ != nullptr) {
        const Status st = sink_->Confirm(p.key, *outcome);
        if (st.code() == StatusCode::kNotFound) {
          // Forgotten by the status table or the journal: nothing can take this outcome now.
          std::fprintf(stderr, "dvrouter: adapters.%s: job outcome for event %s dropped: %s\n",
                       config_.name.c_str(), p.key.ToHex().c_str(), st.ToString().c_str());
        } else if (!st.ok()) {
          outcome.reset();  // not applied (e.g. the DLQ could not be written): poll again
        }
      }
      if (!outcome) {
        p.next_ms = now + static_cast<int64_t>(as.poll_interval_ms);
        again.push_back(std::move(p));
      }
    }
    lock.lock();
    for (Poll& p : again) polls_.push_back(std::move(p));
  }
}

Status ErpAdapter::CsrfHeaders(ClientRequest* req, const std::string& stale, std::string* used) {
  std::lock_guard<std::mutex> lock(csrf_mu_);  // one fetch at a time; the others reuse it
  if (csrf_token_.empty() || csrf_token_ == stale) {
    ClientRequest fetch;
    fetch.method = "GET";
    fetch.url = erp_.base_url + erp_.csrf_path;
    fetch.headers = {{"x-csrf-token", "Fetch"}, {"Accept", "application/json"}};
    std::string ignored;
    AuthHeaders(&fetch, &ignored);
    Result<ClientResponse> res = http_.Send(fetch);
    if (!res.ok()) return Unavailable("csrf token fetch: " + std::string(res.status().message()));
    const std::string token = res->Header("x-csrf-token");
    if (res->status / 100 != 2 || token.empty() || token == "Required") {
      return Unavailable("csrf token fetch: HTTP " + std::to_string(res->status) +
                         " without a token: " + Utf8Excerpt(res->body, 200));
    }
    csrf_token_ = token;
    csrf_cookies_.clear();
    for (const auto& [name, value] : res->headers) {
      if (name != "set-cookie") continue;
      if (!csrf_cookies_.empty()) csrf_cookies_ += "; ";
      csrf_cookies_ += value.substr(0, value.find(';'));  // name=value, without attributes
    }
    if (csrf_fetches_ != nullptr) csrf_fetches_->Increment();
  }
  req->headers.emplace_back("x-csrf-token", csrf_token_);
  if (!csrf_cookies_.empty()) req->headers.emplace_back("Cookie", csrf_cookies_);
  *used = csrf_token_;
  return Status::Ok();
}

void ErpAdapter::AuthHeaders(ClientRequest* req, std::string* token) {
  const ErpAuth& auth = erp_.auth;
  if (auth.mode == "basic") {
    req->headers.emplace_back("Authorization", basic_);
  } else if (auth.mode == "api_key") {
    req->headers.emplace_back(auth.header, auth.key);
  } else if (auth.mode == "oauth2") {
    Result<std::string> tok = tokens_->Token();
    if (!tok.ok()) return;
    *token = *tok;
    req->headers.emplace_back("Authorization", "Bearer " + *token);
  }
}

void ErpAdapter::Adapt(bool congested) {
  if (!erp_.adaptive) return;
  const double max = static_cast<double>(erp_.max_concurrency);
  double limit;
  if (congested) {
    {
      std::lock_guard<std::mutex> lock(adapt_mu_);
      const int64_t now = SteadyNowMs();
      if (now - last_decrease_ms_ < 200) return;  // one decrease per burst of failures
      last_decrease_ms_ = now;
    }
    limit = pool_.AdjustLimit([](double l) { return l / 2; });
  } else {
    limit = pool_.AdjustLimit([max](double l) { return std::min(max, l + 1.0 / l); });
  }
  if (limit_gauge_ != nullptr) limit_gauge_->Set(limit);
}

DeliveryResult ErpAdapter::Execute(const Call& call) {
  const ErpRequest& t = *call.tmpl->request;
  const ErpAuth& auth = erp_.auth;
  DeliveryResult r;
  auto count = [&](int status) {  // 0: no answer
    const int k = status == 0 ? 3 : status < 300 ? 0 : status < 500 ? 1 : 2;
    if (answers_[k] != nullptr) answers_[k]->Increment();
  };
  bool token_retried = false;
  std::string stale_csrf;
  for (;;) {
    ClientRequest req;
    req.method = t.method;
    req.url = call.url;
    req.body = call.body;
    req.headers = {{"Content-Type", "application/json"},
                   {"Accept", "application/json"},
                   {"Idempotency-Key", call.event_id}};
    std::string token;
    if (auth.mode == "oauth2") {
      Result<std::string> tok = tokens_->Token();
      if (!tok.ok()) {
        r.outcome = DeliveryOutcome::kRetryable;  // credentials to fix or an endpoint down
        r.error = std::string(tok.status().message());
        count(0);
        return r;
      }
    }
    AuthHeaders(&req, &token);
    std::string csrf;
    if (erp_.profile == "sap_odata") {
      if (Status st = CsrfHeaders(&req, stale_csrf, &csrf); !st.ok()) {
        r.outcome = DeliveryOutcome::kRetryable;
        r.error = "erp: " + std::string(st.message());
        count(0);
        return r;
      }
    }
    if (!erp_.async.public_url.empty()) {
      req.headers.emplace_back(
          "X-Callback-Url",
          erp_.async.public_url + "/callbacks/" + config_.name + "/" + call.event_id +
              "?token=" + CallbackToken(erp_.async.callback_secret, config_.name, call.event_id));
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
    if (status == 401 && tokens_ && !token_retried) {
      token_retried = true;
      tokens_->Invalidate(token);  // expired or revoked early: one more try with a fresh token
      continue;
    }
    if (status == 403 && !csrf.empty() && stale_csrf.empty() &&
        (EqualsIgnoreCase(res->Header("x-csrf-token"), "Required") ||
         res->body.find("CSRF token validation failed") != std::string::npos)) {
      stale_csrf = csrf;  // the session expired: one more try with a fresh token
      continue;
    }
    const std::string excerpt = Utf8Excerpt(res->body, 300);
    if (status >= 200 && status < 300) {
      r.outcome = status == 202 ? DeliveryOutcome::kProcessing : DeliveryOutcome::kDelivered;
      r.answer = Capture(t.capture, res->body);
      if (status == 202 && erp_.async.poll_interval_ms > 0) StartPoll(call, *res);
      Adapt(false);
      return r;
    }
    if (status == 408 || status == 429 || status >= 500) {
      r.outcome = DeliveryOutcome::kRetryable;
      r.retry_after_ms = dvrouter::ParseRetryAfter(res->Header("retry-after"), std::time(nullptr));
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

Status ErpAdapter::AuthorizeCallback(const CallbackCredentials& credentials) const {
  const std::string& secret = erp_.async.callback_secret;
  if (secret.empty()) return NotFound("adapter " + config_.name + " takes no callbacks");
  std::string token;
  if (QueryParameter(credentials.target, "token", &token) &&
      ConstantTimeEquals(CallbackToken(secret, config_.name, credentials.event_id), token)) {
    return Status::Ok();
  }
  const std::string_view authorization = credentials.authorization;
  if (authorization.starts_with("Bearer ") && ConstantTimeEquals(secret, authorization.substr(7))) {
    return Status::Ok();
  }
  return PermissionDenied("missing or wrong callback credentials");
}

}  // namespace dvrouter
