// HttpServer: an HTTP/1.1 listener on Boost.Beast that feeds an HttpHandler.
//
// Several listeners (ingress, admin) share one IoRuntime: one single-threaded io_context per I/O
// thread; accepted connections are spread over them round robin and stay on theirs, so a
// session needs no strand. Each session does paired read/respond steps: it
// reads the header under header_timeout (also the keep-alive idle time), answers
// `Expect: 100-continue`, reads the body under body_timeout into a buffer that keeps capacity
// for the decoder's padding, hands the request to the handler and reads the next request only
// after the response is written (no pipelining beyond one). Bodies over max_body_bytes get 413,
// headers, chunk-size lines and trailers over max_header_bytes 431, unparsable requests 400,
// slow clients are closed; each is told to the handler for counting.
// Connections beyond max_connections are closed at accept.
//
// Threads: construct and Start/Stop from the owner's thread; handlers run on I/O threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "router/common/status.h"
#include "router/config/config.h"
#include "router/ingress/http.h"

namespace dvrouter {

class IoRuntime {
 public:
  explicit IoRuntime(int threads);
  ~IoRuntime();
  void Start();
  // Stops the io_context and joins its threads; pending operations are abandoned.
  void Stop();
  int threads() const;

 private:
  friend class HttpServer;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct HttpServerLimits {
  uint64_t max_body_bytes = 1ull << 20;
  uint64_t max_header_bytes = 16 << 10;
  uint64_t header_timeout_ms = 10'000;
  uint64_t body_timeout_ms = 30'000;
  uint64_t max_connections = 1024;
  size_t body_padding = 64;  // spare capacity kept after every body
};

class HttpServer {
 public:
  HttpServer(IoRuntime* runtime, HttpHandler* handler, HttpServerLimits limits);
  ~HttpServer();
  // Makes the listener HTTPS; call before Listen. Errors name the file that is wrong.
  Status EnableTls(const TlsConfig& tls);
  // Binds and starts accepting. The bound port (useful with port 0) is port() afterwards.
  Status Listen(const Endpoint& endpoint);
  uint16_t port() const;
  // Stops accepting; open connections finish their current request.
  void StopAccepting();
  // Requests read and not yet answered.
  int64_t in_flight() const;
  int64_t connections() const;

  struct Impl;  // public so the session type in server.cc can name it

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace dvrouter
