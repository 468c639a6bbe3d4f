#include "router/ingress/admin_auth.h"

#include <string_view>

#include "router/common/ascii.h"

namespace dvrouter {

namespace {

// Liveness, readiness and the scrape: open unless admin.auth.protect_metrics.
bool IsProbe(std::string_view path) {
  return path == "/metrics" || path == "/healthz" || path == "/readyz";
}

// The console's page and scripts: no data, open to anyone who reaches the listener (the page
// then asks for the token).
bool IsConsoleAsset(std::string_view path) { return path == "/ui" || path.starts_with("/ui/"); }

// The host part of a Host header value: "[::1]:9400" -> "::1", "localhost:9400" -> "localhost".
std::string_view HostName(std::string_view host) {
  if (host.starts_with('[')) {
    const size_t close = host.find(']');
    return close == std::string_view::npos ? std::string_view() : host.substr(1, close - 1);
  }
  return host.substr(0, host.find(':'));
}

// A name no DNS answer can point elsewhere: an IP literal or localhost.
bool IsAddressLiteral(std::string_view name) {
  if (name.empty()) return false;
  if (EqualsIgnoreCase(name, "localhost")) return true;
  const bool v6 = name.find(':') != std::string_view::npos;
  for (char c : name) {
    const bool ok = (c >= '0' && c <= '9') || c == '.' ||
                    (v6 && (c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')));
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::optional<HttpResponse> AdminGuard::Check(const HttpRequestView& request) const {
  const HeaderLookup& headers = *request.headers;
  const std::string_view target = TargetPath(request.target);
  {
    const std::string_view site = headers.get("sec-fetch-site");
    const bool browser =
        headers.has("origin") || (!site.empty() && !EqualsIgnoreCase(site, "none"));
    const bool change = request.method != "GET" && request.method != "HEAD";
    if (browser && !IsConsoleAsset(target)) {
      const std::string_view host = headers.get("host");
      // From the console itself: same origin, the Origin naming the host the request went to.
      const std::string_view origin = headers.get("origin");
      const bool same_origin =
          (site.empty() || EqualsIgnoreCase(site, "same-origin")) &&
          (origin.empty() || (!host.empty() && (origin == "http://" + std::string(host) ||
                                                origin == "https://" + std::string(host))));
      if (change && !same_origin) {
        return ErrorResponse(403, "forbidden",
                             "admin changes are not taken from other sites' pages (Origin or "
                             "Sec-Fetch-Site)");
      }
    }
  }
  // Without a token, a page whose name was made to resolve to this host (DNS rebinding) would be
  // same-origin, and not every browser says it is one (Sec-Fetch-Site, Origin): any request
  // naming a Host is answered only at an address literal. The CLI and scrapes of loopback name
  // one; the console's files hold no data.
  if (auth_.token.empty() && !IsConsoleAsset(target)) {
    const std::string_view host = headers.get("host");
    if (!host.empty() && !IsAddressLiteral(HostName(host))) {
      return ErrorResponse(403, "forbidden",
                           "without admin.auth.token the admin API answers only at an IP address "
                           "or localhost (the Host header)");
    }
  }
  if (auth_.token.empty()) return std::nullopt;
  if (!auth_.protect_metrics && IsProbe(target)) return std::nullopt;
  if (IsConsoleAsset(target)) return std::nullopt;
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
