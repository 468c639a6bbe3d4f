#include "router/ingress/admin_handler.h"

#include <cstdint>
#include <string>
#include <utility>

#include "router/common/json.h"
#include "router/delivery/engine.h"

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
  if (AdminOperations* ops = ops_.load(std::memory_order_acquire)) {
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
  if (path.starts_with("/events/")) {
    if (!get) return MethodNotAllowed("GET");
    auto json = engine_->EventStatusJson(std::string(path.substr(8)));
    if (!json.ok()) return ErrorResponse(json.status());
    HttpResponse r;
    r.body = std::move(json).value();
    return r;
  }
  if (path == "/dlq") {
    if (!get) return MethodNotAllowed("GET");
    QueryParameter(target, "all", &all);
    HttpResponse r;
    r.body = engine_->DlqJson(adapter, id, all == "1" || all == "true");
    return r;
  }
  if (path == "/dlq/replay") {
    if (method != "POST") return MethodNotAllowed("POST");
    auto n = engine_->ReplayDlq(adapter, id);
    if (!n.ok()) return ErrorResponse(n.status());
    HttpResponse r;
    r.body = "{\"replayed\":" + std::to_string(*n) + "}";
    return r;
  }
  if (path == "/replay") {
    if (get) {
      HttpResponse r;
      r.body = engine_->ReplaysJson();
      return r;
    }
    if (method != "POST") return MethodNotAllowed("GET, POST");
    uint64_t from = 0, to = 0;
    QueryParameter(target, "from", &from_text);
    QueryParameter(target, "to", &to_text);
    if (adapter.empty() || !ParseU64(from_text, &from) || !ParseU64(to_text, &to)) {
      return ErrorResponse(400, "bad_request", "replay needs adapter, from and to");
    }
    if (Status st = engine_->ReplayRange(adapter, from, to, &to); !st.ok()) {
      return ErrorResponse(st);
    }
    HttpResponse r;
    r.body = "{\"replaying\":{\"adapter\":";
    AppendJsonString(&r.body, adapter);
    r.body += ",\"from\":" + std::to_string(from) + ",\"to\":" + std::to_string(to) + "}}";
    return r;
  }
  return std::nullopt;
}

}  // namespace dvrouter
