// HttpClient: the outbound HTTP/1.1 client every HTTP-speaking adapter shares (ClickHouse, the
// ERP, Dataverse). Boost.Beast over TCP or TLS (OpenSSL), all of it in http_client.cc.
//
// - Keep-alive: a pool of idle connections per scheme://host:port (at most max_idle_per_host).
//   A request on a pooled connection that the server had already closed (EOF or reset before any
//   answer) is sent once more on a fresh connection; every request dvrouter sends is idempotent
//   at the sink (event id / version guard), so the repeat is safe.
// - Timeouts: connect_timeout for connect + TLS handshake (name resolution is a blocking
//   getaddrinfo outside it), request_timeout for writing
//   the request and reading the whole answer.
// - TLS: TLS 1.2 or newer, the peer's certificate verified against ca_file (PEM; empty: the
//   system's trust store) and its name against the URL's host (SNI sent).
// - Optional gzip of the request body (Content-Encoding: gzip).
//
// Errors: InvalidArgument for a URL the client cannot use or a header value with CR, LF or NUL;
// Unavailable for connection
// failures (refused, reset, TLS handshake or verification); DeadlineExceeded for timeouts;
// ResourceExhausted for an answer larger than max_response_bytes. An HTTP answer of any status
// is a successful Send: classifying statuses is the caller's business.
//
// Threads: Send() is thread-safe and blocking; each call uses one connection exclusively, driven
// on the calling thread. Adapters call it from their own threads, never a delivery worker's.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "router/common/status.h"

namespace dvrouter {

struct HttpClientOptions {
  uint64_t connect_timeout_ms = 5000;
  uint64_t request_timeout_ms = 30'000;
  std::string ca_file;  // PEM bundle for https; empty: the system's default paths
  size_t max_idle_per_host = 8;
  uint64_t max_response_bytes = 16ull << 20;
  std::string user_agent = "dvrouter/0.1";
};

struct Url {
  bool tls = false;
  std::string host;
  uint16_t port = 0;
  std::string target;  // path and query, at least "/"
};
// http://host[:port][/path][?query] or https://...; IPv6 hosts in brackets.
Result<Url> ParseUrl(std::string_view url);
// "http(s)://<lowercase host>:<port>": equal for two URLs exactly when they reach the same
// server the same way (the default port written or not).
std::string CanonicalOrigin(const Url& url);

struct ClientRequest {
  std::string method = "POST";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Sent instead of `body` when not null: bytes the caller keeps alive until Send returns (a
  // slice of a larger buffer, sent without a copy).
  std::string_view body_view;
  bool gzip = false;  // compress the payload and send Content-Encoding: gzip

  std::string_view payload() const { return body_view.data() != nullptr ? body_view : body; }
};

struct ClientResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
  std::string body;
  // The first header of that (lowercase) name, or "".
  std::string Header(std::string_view name) const;
};

// gzip (RFC 1952) of `in` at the given zlib level (1: fastest).
// A Retry-After value as ms from now: delta seconds or an HTTP date; -1 if absent or unreadable.
int64_t ParseRetryAfter(std::string_view value, int64_t now_epoch_s);

Status GzipCompress(std::string_view in, std::string* out, int level = 1);
Status GzipDecompress(std::string_view in, std::string* out);

class HttpClient {
 public:
  explicit HttpClient(HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  Result<ClientResponse> Send(const ClientRequest& request);

  // Connections opened so far (tests check keep-alive with it).
  uint64_t connections_opened() const;

  struct Conn;

 private:
  Result<ClientResponse> SendChecked(const ClientRequest& request);
  Result<std::unique_ptr<Conn>> Open(const Url& url);
  std::unique_ptr<Conn> TakeIdle(const std::string& key);
  void PutIdle(const std::string& key, std::unique_ptr<Conn> conn);

  HttpClientOptions options_;
  struct Tls;
  std::unique_ptr<Tls> tls_;  // the OpenSSL context, built on first https use
  mutable std::mutex mu_;
  std::map<std::string, std::vector<std::unique_ptr<Conn>>> idle_;
  uint64_t opened_ = 0;
};

}  // namespace dvrouter
