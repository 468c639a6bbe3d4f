// What every simulator's main does: parse --listen, block SIGTERM/SIGINT before any thread
// starts, build the handler, serve it (HTTPS when a certificate is given), print
// "<name> listening on HOST:PORT" on stderr once ready (after telling `on_listening` the port),
// and stop on the first signal.
#pragma once

#include <csignal>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "router/ingress/server.h"

namespace dvrouter::sim {

inline int RunSimulator(const std::string& name, const std::string& listen,
                        const std::string& tls_cert, const std::string& tls_key,
                        HttpServerLimits limits,
                        const std::function<std::unique_ptr<HttpHandler>()>& make_handler,
                        const std::function<void(uint16_t)>& on_listening = {}) {
  Result<Endpoint> ep = ParseEndpoint(listen);
  if (!ep.ok()) {
    std::fprintf(stderr, "%s: --listen: %s\n", name.c_str(),
                 std::string(ep.status().message()).c_str());
    return 2;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::unique_ptr<HttpHandler> handler = make_handler();
  IoRuntime runtime(2);
  runtime.Start();
  HttpServer server(&runtime, handler.get(), limits);
  if (!tls_cert.empty()) {
    TlsConfig tls;
    tls.enabled = true;
    tls.cert_file = tls_cert;
    tls.key_file = tls_key;
    if (Status st = server.EnableTls(tls); !st.ok()) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), st.ToString().c_str());
      return 1;
    }
  }
  if (Status st = server.Listen(*ep); !st.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), st.ToString().c_str());
    return 1;
  }
  if (on_listening) on_listening(server.port());
  std::fprintf(stderr, "%s listening on %s:%u\n", name.c_str(), ep->host.c_str(), server.port());
  int sig = 0;
  sigwait(&signals, &sig);
  server.StopAccepting();
  runtime.Stop();
  // The handler's threads (answers waiting for their latency, job callbacks) go while the
  // runtime they post to still exists.
  handler.reset();
  return 0;
}

}  // namespace dvrouter::sim
