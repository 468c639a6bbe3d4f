#include "router/ingress/admin_handler.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "router/common/clock.h"
#include "router/common/json.h"
#include "router/decode/attributes.h"
#include "router/decode/decode.h"
#include "router/delivery/engine.h"
#include "router/ingress/admin_json.h"
#include "router/ui/assets.h"

namespace dvrouter {

namespace {

bool ParseU64(const std::string& s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

constexpr uint64_t kMaxSearchResults = 200;

bool ParseState(const std::string& s, EventState* out) {
  for (EventState st : {EventState::kPending, EventState::kSubmitted, EventState::kProcessing,
                        EventState::kCompleted, EventState::kFailed}) {
    if (s == EventStateName(st)) {
      *out = st;
      return true;
    }
  }
  return false;
}

// "1,2,3": at most kMaxIds ids.
constexpr size_t kMaxIds = 1000;
bool ParseIds(const std::string& text, std::vector<uint64_t>* ids) {
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    uint64_t v = 0;
    if (!ParseU64(text.substr(at, comma - at), &v) || ids->size() == kMaxIds) return false;
    ids->push_back(v);
    at = comma + 1;
  }
  return !ids->empty();
}

// GET /ui/<file>: an embedded asset, with a policy that lets it load only itself.
HttpResponse ServeConsoleAsset(std::string_view path) {
  std::string_view name = path.substr(std::string_view("/ui/").size());
  if (name.empty()) name = "index.html";
  for (const ConsoleAsset& asset : ConsoleAssets()) {
    if (asset.name != name) continue;
    HttpResponse r;
    r.content_type = name.ends_with(".html")  ? "text/html; charset=utf-8"
                     : name.ends_with(".js")  ? "text/javascript; charset=utf-8"
                     : name.ends_with(".css") ? "text/css; charset=utf-8"
                     : name.ends_with(".svg") ? "image/svg+xml"
                                              : "application/octet-stream";
    r.body = std::string(asset.content);
    r.headers.emplace_back("Content-Security-Policy",
                           "default-src 'none'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                           "base-uri 'none'; form-action 'none'");
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    r.headers.emplace_back("Referrer-Policy", "no-referrer");
    r.headers.emplace_back("Cache-Control", "no-cache");
    return r;
  }
  return ErrorResponse(404, "not_found", "no such console file");
}

HttpResponse MethodNotAllowed(const char* allow) {
  HttpResponse r = ErrorResponse(405, "method_not_allowed", std::string("use ") + allow);
  r.allow = allow;
  return r;
}

}  // namespace

AdminHandler::AdminHandler(RouterMetrics* metrics, std::function<void()> refresh,
                           AdminAuthConfig auth)
    : metrics_(metrics), refresh_(std::move(refresh)), guard_(std::move(auth)) {}

void AdminHandler::set_ready(bool ready) {
  ready_.store(ready);
  metrics_->ready.Set(ready ? 1 : 0);
}

void AdminHandler::Handle(const HttpRequestView& request, HttpConnectionState*,
                          HttpExchange* exchange, int) {
  std::string_view path = TargetPath(request.target);
  HttpResponse r;
  for (AdminOperations* ops :
       {ops_.load(std::memory_order_acquire), reconcile_.load(std::memory_order_acquire),
        cluster_.load(std::memory_order_acquire)}) {
    if (ops == nullptr) continue;
    if (std::optional<HttpResponse> answer = ops->Handle(request.method, request.target)) {
      exchange->Respond(std::move(*answer));
      return;
    }
  }
  if (request.method != "GET" && request.method != "HEAD") {
    r = ErrorResponse(405, "method_not_allowed", "the admin endpoints accept GET only");
    r.allow = "GET, HEAD";
  } else if (path == "/metrics") {
    if (refresh_) refresh_();
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics_->Serialize();
  } else if (path == "/stats") {
    if (refresh_) refresh_();
    r.body = StatsJson(metrics_->registry().Collect(), WallNowMs());
  } else if (path == "/ui") {
    r.status = 308;
    r.headers.emplace_back("Location", "/ui/");
    r.content_type = "text/plain; charset=utf-8";
    r.body = "the console is at /ui/\n";
  } else if (path.starts_with("/ui/")) {
    r = ServeConsoleAsset(path);
  } else if (path == "/healthz") {
    r.body = R"({"status":"ok"})";
  } else if (path == "/readyz") {
    if (ready_.load()) {
      r.body = R"({"status":"ready"})";
    } else {
      r = ErrorResponse(503, "not_ready", "journal recovery in progress");
    }
  } else {
    r = ErrorResponse(404, "not_found", "unknown admin path");
  }
  exchange->Respond(std::move(r));
}

std::optional<HttpResponse> EngineAdmin::Handle(std::string_view method, std::string_view target) {
  const std::string_view path = TargetPath(target);
  const bool get = method == "GET" || method == "HEAD";
  std::string adapter, id_text, all, from_text, to_text;
  QueryParameter(target, "adapter", &adapter);
  const bool has_id = QueryParameter(target, "id", &id_text);
  std::optional<uint64_t> id;
  if (has_id) {
    uint64_t v = 0;
    if (!ParseU64(id_text, &v)) return ErrorResponse(400, "bad_request", "id must be a number");
    id = v;
  }
  if (path == "/events") {
    if (!get) return MethodNotAllowed("GET");
    EventQuery q;
    std::string text;
    QueryParameter(target, "row_id", &q.row_id);
    QueryParameter(target, "table", &q.table);
    QueryParameter(target, "message", &q.message);
    if (QueryParameter(target, "state", &text)) {
      EventState st;
      if (!ParseState(text, &st)) {
        return ErrorResponse(400, "bad_request",
                             "state is pending, submitted, processing, completed or failed");
      }
      q.state = st;
    }
    if (QueryParameter(target, "status_records", &text)) q.status_records = text == "1";
    if (!adapter.empty()) {
      q.adapter = engine_->adapter_index(adapter);
      if (q.adapter == SIZE_MAX) return ErrorResponse(404, "not_found", "no such adapter");
    }
    uint64_t v = 0;
    if (QueryParameter(target, "before", &text)) {
      if (!ParseU64(text, &v)) return ErrorResponse(400, "bad_request", "before is a seq");
      q.before_seq = v;
    }
    if (QueryParameter(target, "limit", &text)) {
      if (!ParseU64(text, &v) || v == 0 || v > kMaxSearchResults) {
        return ErrorResponse(400, "bad_request",
                             "limit is 1 to " + std::to_string(kMaxSearchResults));
      }
      q.limit = v;
    }
    HttpResponse r;
    r.body = engine_->SearchEventsJson(q);
    return r;
  }
  if (path.starts_with("/events/")) {
    if (!get) return MethodNotAllowed("GET");
    std::string record;
    QueryParameter(target, "record", &record);
    auto json = engine_->EventStatusJson(std::string(path.substr(8)), record == "1");
    if (!json.ok()) return ErrorResponse(json.status());
    HttpResponse r;
    r.body = std::move(json).value();
    return r;
  }
  if (path == "/dlq") {
    if (!get) return MethodNotAllowed("GET");
    QueryParameter(target, "all", &all);
    std::string reason, text;
    QueryParameter(target, "reason", &reason);
    uint64_t since = 0, limit = 0;
    if (QueryParameter(target, "since", &text) && !ParseU64(text, &since)) {
      return ErrorResponse(400, "bad_request", "since is milliseconds since the Unix epoch");
    }
    if (QueryParameter(target, "limit", &text) && !ParseU64(text, &limit)) {
      return ErrorResponse(400, "bad_request", "limit must be a number");
    }
    HttpResponse r;
    r.body = engine_->DlqJson(adapter, id, all == "1" || all == "true", reason,
                              static_cast<int64_t>(since), limit);
    return r;
  }
  if (path == "/dlq/replay") {
    if (method != "POST") return MethodNotAllowed("POST");
    std::string ids_text;
    std::vector<uint64_t> ids;
    if (QueryParameter(target, "ids", &ids_text)) {
      if (has_id || !ParseIds(ids_text, &ids)) {
        return ErrorResponse(400, "bad_request",
                             "ids is a comma-separated list of up to " + std::to_string(kMaxIds) +
                                 " DLQ ids (and no id)");
      }
    }
    uint64_t replayed = 0;
    if (ids.empty()) {
      auto n = engine_->ReplayDlq(adapter, id);
      if (!n.ok()) return ErrorResponse(n.status());
      replayed = *n;
    } else {
      // Each id on its own: one that is gone (replayed meanwhile) does not stop the others.
      std::string missing;
      for (uint64_t one : ids) {
        auto n = engine_->ReplayDlq(adapter, one);
        if (n.ok()) {
          replayed += *n;
        } else {
          missing += (missing.empty() ? "" : ",") + std::to_string(one);
        }
      }
      HttpResponse r;
      r.body = "{\"replayed\":" + std::to_string(replayed) + ",\"not_replayed\":[" + missing + "]}";
      return r;
    }
    HttpResponse r;
    r.body = "{\"replayed\":" + std::to_string(replayed) + "}";
    return r;
  }
  if (path == "/replay") {
    if (get) {
      HttpResponse r;
      r.body = engine_->ReplaysJson();
      return r;
    }
    if (method != "POST") return MethodNotAllowed("GET, POST");
    uint64_t from = 0, to = UINT64_MAX;
    const bool has_from = QueryParameter(target, "from", &from_text);
    const bool has_to = QueryParameter(target, "to", &to_text);
    // A time window (from_time, to_time: ISO 8601 or ms since the epoch) instead of, or within,
    // the seqs.
    int64_t from_ms = 0, to_ms = INT64_MAX;
    std::string time_text;
    for (auto [name, out] : {std::pair<const char*, int64_t*>{"from_time", &from_ms},
                             std::pair<const char*, int64_t*>{"to_time", &to_ms}}) {
      if (!QueryParameter(target, name, &time_text)) continue;
      uint64_t ms = 0;
      Result<int64_t> parsed = ParseU64(time_text, &ms) ? Result<int64_t>(static_cast<int64_t>(ms))
                                                        : ParseDataverseDate(time_text);
      constexpr int64_t kYear10000Ms = 253'402'300'800'000;
      if (!parsed.ok() || *parsed < 0 || *parsed >= kYear10000Ms) {
        return ErrorResponse(400, "bad_request",
                             std::string(name) + " is an ISO 8601 time or ms since the epoch");
      }
      *out = *parsed;
    }
    const bool has_from_time = QueryParameter(target, "from_time", &time_text);
    const bool has_to_time = QueryParameter(target, "to_time", &time_text);
    if (has_from_time != has_to_time) {
      return ErrorResponse(400, "bad_request", "a time window needs from_time and to_time");
    }
    const bool window = has_from_time;
    if (adapter.empty() || (has_from && !ParseU64(from_text, &from)) ||
        (has_to && !ParseU64(to_text, &to)) || (!window && (!has_from || !has_to))) {
      return ErrorResponse(400, "bad_request",
                           "replay needs adapter and from and to (seqs), or from_time and to_time");
    }
    if (!has_from) from = 0;  // the oldest retained event
    if (has_from && from == 0) {
      return ErrorResponse(400, "bad_request", "the range must satisfy 1 <= from <= to");
    }
    if (Status st = engine_->ReplayRange(adapter, from, to, &to, from_ms, to_ms); !st.ok()) {
      return ErrorResponse(st);
    }
    HttpResponse r;
    r.body = "{\"replaying\":{\"adapter\":";
    AppendJsonString(&r.body, adapter);
    r.body += ",\"from\":" + std::to_string(from) + ",\"to\":" + std::to_string(to);
    if (from_ms != 0) {
      r.body += ",\"from_time\":";
      AppendJsonString(&r.body, FormatIsoUtc(from_ms));
    }
    if (to_ms != INT64_MAX) {
      r.body += ",\"to_time\":";
      AppendJsonString(&r.body, FormatIsoUtc(to_ms));
    }
    r.body += "}}";
    return r;
  }
  return std::nullopt;
}

}  // namespace dvrouter
