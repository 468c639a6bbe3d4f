// AdminGuard: who may use the admin listener, decided on each request's header before its body
// is read (docs/operations.md, "Admin authentication").
//
// With a token configured, every route but /metrics, /healthz and /readyz (those too with
// protect_metrics) and the console's assets (/ui/) needs `Authorization: Bearer <token>`,
// compared in constant time: 401 otherwise. Requests from a browser (Origin, Sec-Fetch-Site)
// that would change something are taken only from the same origin (the console), and without
// a token browsers are answered only at an address literal (no DNS rebinding): 403.
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
