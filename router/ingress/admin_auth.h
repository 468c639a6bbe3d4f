// AdminGuard: who may use the admin listener, decided on each request's header before its body
// is read (docs/operations.md, "Admin authentication").
//
// With a token configured, every route but /metrics, /healthz and /readyz (those too with
// protect_metrics) needs `Authorization: Bearer <token>`, compared in constant time: 401
// otherwise. Whatever the token, a request that may change something (any method but GET and
// HEAD) is refused with 403 when it carries an Origin header or `Sec-Fetch-Site: cross-site`:
// what a browser sends, so a page open on the host cannot replay or drain the DLQ.
//
// Threads: constructed by the owner of the admin listener; Check runs on admin I/O threads.
#pragma once

#include <optional>

#include "router/config/config.h"
#include "router/ingress/http.h"

namespace dvrouter {

class AdminGuard {
 public:
  explicit AdminGuard(AdminAuthConfig auth) : auth_(std::move(auth)) {}
  // nullopt when the request may proceed; else the refusal to answer.
  std::optional<HttpResponse> Check(const HttpRequestView& request) const;

 private:
  const AdminAuthConfig auth_;
};

}  // namespace dvrouter
