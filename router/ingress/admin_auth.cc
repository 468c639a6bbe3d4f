#include "router/ingress/admin_auth.h"

#include <string_view>

namespace dvrouter {

namespace {

// Liveness, readiness and the scrape: open unless admin.auth.protect_metrics.
bool IsProbe(std::string_view path) {
  return path == "/metrics" || path == "/healthz" || path == "/readyz";
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

}  // namespace

std::optional<HttpResponse> AdminGuard::Check(const HttpRequestView& request) const {
  const HeaderLookup& headers = *request.headers;
  if (request.method != "GET" && request.method != "HEAD" &&
      (headers.has("origin") || EqualsIgnoreCase(headers.get("sec-fetch-site"), "cross-site"))) {
    return ErrorResponse(403, "forbidden",
                         "admin changes are not taken from browsers (Origin or Sec-Fetch-Site)");
  }
  if (auth_.token.empty()) return std::nullopt;
  if (!auth_.protect_metrics && IsProbe(TargetPath(request.target))) return std::nullopt;
  const std::string_view presented = headers.get("authorization");
  static constexpr std::string_view kBearer = "Bearer ";
  if (presented.size() > kBearer.size() &&
      EqualsIgnoreCase(presented.substr(0, kBearer.size()), kBearer) &&
      ConstantTimeEquals(auth_.token, presented.substr(kBearer.size()))) {
    return std::nullopt;
  }
  HttpResponse r =
      ErrorResponse(401, "unauthorized", "the admin API needs Authorization: Bearer <token>");
  r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

}  // namespace dvrouter
