#include "router/ingress/webhook_handler.h"

#include <chrono>

#include "router/common/clock.h"
#include "router/common/json.h"
#include "router/partition/partition.h"

namespace dvrouter {

namespace {

using SteadyClock = std::chrono::steady_clock;

// /callbacks/<adapter>/<event id>[?query] into *out (its authorization left empty); false when
// the path has no adapter or no event id.
bool ParseCallbackTarget(std::string_view target, CallbackRequest* out) {
  const std::string_view rest = TargetPath(target).substr(kCallbackPrefix.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == rest.size()) return false;
  out->adapter = rest.substr(0, slash);
  out->event_id = rest.substr(slash + 1);
  out->target = target;
  return true;
}

}  // namespace

struct WebhookHandler::Call final : HttpConnectionState, AppendCallback {
  WebhookHandler* handler = nullptr;
  HttpExchange* exchange = nullptr;
  EventHeader header;
  AppendRequest append;
  SteadyClock::time_point started;

  void OnAppendDone(const AppendResult& result) override { handler->Finish(this, result); }
};

WebhookHandler::WebhookHandler(const IngressConfig& config, uint32_t partitions, int io_threads,
                               RouterMetrics* metrics)
    : config_(config), partitions_(partitions), metrics_(metrics) {
  for (int i = 0; i < io_threads; ++i) {
    decoders_.push_back(std::make_unique<Decoder>(config.max_body_bytes));
  }
}

std::unique_ptr<HttpConnectionState> WebhookHandler::NewConnection() {
  auto call = std::make_unique<Call>();
  call->handler = this;
  return call;
}

void WebhookHandler::OnTransportReject(TransportReject reject) {
  switch (reject) {
    case TransportReject::kTooLarge:
      metrics_->Count(RequestOutcome::kTooLarge);
      break;
    case TransportReject::kMalformed:
      metrics_->Count(RequestOutcome::kBadRequest);
      break;
    case TransportReject::kTimeout:
      metrics_->connections_timed_out.Increment();
      break;
    case TransportReject::kConnectionLimit:
      metrics_->connections_refused.Increment();
      break;
    case TransportReject::kTlsHandshake:
      metrics_->tls_handshake_failures.Increment();
      break;
  }
}

bool WebhookHandler::Authorized(const HttpRequestView& request) const {
  const AuthConfig& auth = config_.auth;
  std::string presented;
  switch (auth.mode) {
    case AuthMode::kNone:
      return true;
    case AuthMode::kWebhookKey:
      return QueryParameter(request.target, "code", &presented) &&
             ConstantTimeEquals(auth.secret, presented);
    case AuthMode::kHttpQueryString:
      return QueryParameter(request.target, auth.parameter, &presented) &&
             ConstantTimeEquals(auth.secret, presented);
    case AuthMode::kHttpHeader:
      return request.headers->has(auth.header) &&
             ConstantTimeEquals(auth.secret, request.headers->get(auth.header));
  }
  return false;
}

void WebhookHandler::Reply(Call* call, HttpExchange* exchange, RequestOutcome outcome,
                           HttpResponse response) {
  metrics_->CountRequest(outcome,
                         std::chrono::duration<double>(SteadyClock::now() - call->started).count());
  exchange->Respond(std::move(response));
}

std::optional<HttpResponse> WebhookHandler::Precheck(const HttpRequestView& request) {
  // Decided on the header alone, so a refused client never gets `100 Continue` and its body is
  // never read.
  if (TargetPath(request.target).starts_with(kCallbackPrefix)) return PrecheckCallback(request);
  if (TargetPath(request.target) != config_.path) {
    metrics_->Count(RequestOutcome::kNotFound);
    return ErrorResponse(404, "not_found", "no webhook at this path");
  }
  if (request.method != "POST") {
    metrics_->Count(RequestOutcome::kMethodNotAllowed);
    HttpResponse r = ErrorResponse(405, "method_not_allowed", "the webhook accepts POST only");
    r.allow = "POST";
    return r;
  }
  if (!Authorized(request)) {
    metrics_->Count(RequestOutcome::kUnauthorized);
    return ErrorResponse(401, "unauthorized", "missing or wrong webhook credentials");
  }
  // Dataverse sends Content-Length; a chunked body's size lines and trailers are bytes the
  // webhook has no use for (docs/operations.md, "Security").
  if (request.headers->has("transfer-encoding")) {
    metrics_->Count(RequestOutcome::kBadRequest);
    return ErrorResponse(411, "length_required",
                         "the webhook needs Content-Length; Transfer-Encoding is not accepted");
  }
  return std::nullopt;
}

// A callback is authenticated on its header by the adapter it names, so a client without the
// secret never gets to send a body (docs/operations.md, "Security").
std::optional<HttpResponse> WebhookHandler::PrecheckCallback(const HttpRequestView& request) {
  if (request.method != "POST") {
    HttpResponse r = ErrorResponse(405, "method_not_allowed", "callbacks are POSTed");
    r.allow = "POST";
    return r;
  }
  CallbackRequest callback;
  if (!ParseCallbackTarget(request.target, &callback)) {
    return ErrorResponse(404, "not_found", "callbacks go to /callbacks/<adapter>/<event id>");
  }
  callback.authorization = request.headers->get("authorization");
  CallbackOperations* ops = callbacks_.load(std::memory_order_acquire);
  if (ops == nullptr) {
    HttpResponse r = ErrorResponse(503, "overloaded", "delivery is not running yet");
    r.retry_after_s = static_cast<uint32_t>(config_.retry_after_s);
    return r;
  }
  if (Status st = ops->Authorize(callback); !st.ok()) return ErrorResponse(st);
  return std::nullopt;
}

void WebhookHandler::Handle(const HttpRequestView& request, HttpConnectionState* state,
                            HttpExchange* exchange, int io_thread) {
  const std::string_view path = TargetPath(request.target);
  if (path.starts_with(kCallbackPrefix)) {
    CallbackRequest callback;
    CallbackOperations* ops = callbacks_.load(std::memory_order_acquire);
    if (!ParseCallbackTarget(request.target, &callback)) {
      return exchange->Respond(
          ErrorResponse(404, "not_found", "callbacks go to /callbacks/<adapter>/<event id>"));
    }
    if (ops == nullptr) {
      HttpResponse r = ErrorResponse(503, "overloaded", "delivery is not running yet");
      r.retry_after_s = static_cast<uint32_t>(config_.retry_after_s);
      return exchange->Respond(std::move(r));
    }
    callback.authorization = request.headers->get("authorization");
    return ops->Callback(callback, request.body(), exchange);
  }
  // Path, method and credentials were checked by Precheck on the header.
  Call* call = static_cast<Call*>(state);
  call->started = SteadyClock::now();
  metrics_->received_bytes.Increment(static_cast<double>(request.body_size));
  Decoder& decoder = *decoders_[static_cast<size_t>(io_thread) % decoders_.size()];
  if (Status st = decoder.Decode(request.body_data, request.body_size, request.body_capacity,
                                 &call->header);
      !st.ok()) {
    metrics_->decode_errors.Increment();
    return Reply(call, exchange, RequestOutcome::kBadRequest,
                 ErrorResponse(400, "bad_request", st.message()));
  }
  const HeaderLookup& h = *request.headers;
  WebhookHttpHeaders headers;
  headers.organization = h.get("x-ms-dynamics-organization");
  headers.entity_name = h.get("x-ms-dynamics-entity-name");
  headers.request_name = h.get("x-ms-dynamics-request-name");
  headers.request_id = h.get("x-request-id");
  headers.correlation_request_id = h.get("x-ms-correlation-request-id");
  headers.size_exceeded = h.has("x-ms-dynamics-msg-size-exceeded");
  ApplyHttpHeaders(headers, &call->header);

  Journal* journal = journal_.load(std::memory_order_acquire);
  if (journal == nullptr) {
    HttpResponse r = ErrorResponse(503, "overloaded", "recovery in progress");
    r.retry_after_s = static_cast<uint32_t>(config_.retry_after_s);
    return Reply(call, exchange, RequestOutcome::kOverloaded, std::move(r));
  }
  call->exchange = exchange;
  call->append.key = call->header.DedupeKey();
  call->append.partition =
      PartitionOf(call->header.primary_entity_name, call->header.primary_entity_id, partitions_);
  call->append.received_ms = WallNowMs();
  call->append.header = &call->header;
  call->append.body = request.body();
  call->append.callback = call;
  journal->Append(&call->append);
}

void WebhookHandler::Finish(Call* call, const AppendResult& result) {
  HttpExchange* exchange = call->exchange;
  call->exchange = nullptr;
  if (!result.status.ok() && !IsRetryable(result.status.code())) {
    // The journal refuses this event for good (larger than a frame can hold).
    return Reply(call, exchange, RequestOutcome::kTooLarge,
                 ErrorResponse(413, "too_large", result.status.message()));
  }
  if (!result.status.ok()) {
    HttpResponse r = ErrorResponse(503, "overloaded", result.status.message());
    r.retry_after_s = static_cast<uint32_t>(config_.retry_after_s);
    return Reply(call, exchange, RequestOutcome::kOverloaded, std::move(r));
  }
  HttpResponse r;
  r.body = result.duplicate ? R"({"status":"duplicate","event_id":")"
                            : R"({"status":"accepted","event_id":")";
  r.body += call->append.key.ToHex();
  r.body += "\",\"seq\":";
  r.body += std::to_string(result.seq);
  r.body += "}";
  Reply(call, exchange, result.duplicate ? RequestOutcome::kDuplicate : RequestOutcome::kAccepted,
        std::move(r));
}

}  // namespace dvrouter
