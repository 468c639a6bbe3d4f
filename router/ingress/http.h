// The HTTP seam between the socket code (server.cc, Boost.Beast) and request logic.
//
// Handlers see an HttpRequestView and answer through HttpExchange::Respond; they never touch a
// socket, so the webhook and admin logic are tested without one. A handler may answer later from
// another thread (the webhook answers from the journal's writer thread once the event is
// durable); Respond() is thread-safe and must be called exactly once per request.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "router/common/status.h"

namespace dvrouter {

class HeaderLookup {
 public:
  virtual ~HeaderLookup() = default;
  // Case-insensitive; empty when absent. has() tells an empty value from an absent header.
  virtual std::string_view get(std::string_view name) const = 0;
  virtual bool has(std::string_view name) const = 0;
};

struct HttpRequestView {
  std::string_view method;  // as sent: "POST", "GET", ...
  std::string_view target;  // path and query, as sent
  const HeaderLookup* headers = nullptr;
  // The body; `body_capacity` bytes from body_data are readable (>= body_size), so decoders
  // that need padding can read in place.
  const char* body_data = nullptr;
  size_t body_size = 0;
  size_t body_capacity = 0;
  std::string_view body() const { return {body_data, body_size}; }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  uint32_t retry_after_s = 0;  // sent as Retry-After when non-zero
  std::string allow;           // sent as Allow when non-empty (405)
  bool close = false;          // close the connection after this response
  std::vector<std::pair<std::string, std::string>> headers;  // any others (simulators)
};

class HttpExchange {
 public:
  virtual ~HttpExchange() = default;
  virtual void Respond(HttpResponse response) = 0;
};

// Per-connection state a handler keeps between requests (buffers it reuses).
class HttpConnectionState {
 public:
  virtual ~HttpConnectionState() = default;
};

// Things the transport itself rejects, told to the handler so it can count them.
enum class TransportReject { kTooLarge, kMalformed, kTimeout, kConnectionLimit, kTlsHandshake };

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  virtual std::unique_ptr<HttpConnectionState> NewConnection() { return nullptr; }
  // Called once the header is read, before the body is (and before `100 Continue` is sent):
  // return a response to refuse the request without reading its body. The connection is then
  // closed after the response. Body and headers-only fields of the view are set; body is empty.
  virtual std::optional<HttpResponse> Precheck(const HttpRequestView& /*request*/) {
    return std::nullopt;
  }
  // Called on the I/O thread that owns the connection, number io_thread (0 .. io_threads-1).
  virtual void Handle(const HttpRequestView& request, HttpConnectionState* state,
                      HttpExchange* exchange, int io_thread) = 0;
  virtual void OnTransportReject(TransportReject) {}
};

// Splits "path?query" and finds a query parameter (percent-decoded). False when absent.
std::string_view TargetPath(std::string_view target);
bool QueryParameter(std::string_view target, std::string_view name, std::string* value);

// A JSON error answer: {"error": error, "message": message}.
HttpResponse ErrorResponse(int status, std::string_view error, std::string_view message);
// The error answer for a failed Status: NotFound 404 not_found, InvalidArgument 400 bad_request,
// Unavailable 503 unavailable, PermissionDenied 401 unauthorized, FailedPrecondition 409
// conflict, anything else 500 internal; the message is the status's.
HttpResponse ErrorResponse(const Status& st);

// Compares secrets in time that depends only on their lengths, not their contents.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace dvrouter
