#include "adapters/common/oauth.h"

#include <simdjson.h>

#include <algorithm>
#include <chrono>

namespace dvrouter {

OAuthTokenSource::OAuthTokenSource(OAuthClientCredentials credentials, HttpClient* http,
                                   std::function<int64_t()> now_ms)
    : credentials_(std::move(credentials)), http_(http), now_ms_(std::move(now_ms)) {
  if (!now_ms_) {
    now_ms_ = [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now().time_since_epoch())
          .count();
    };
  }
}

uint64_t OAuthTokenSource::fetches() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fetches_;
}

void OAuthTokenSource::Invalidate(const std::string& token) {
  std::lock_guard<std::mutex> lock(mu_);
  if (token == token_) refresh_at_ms_ = 0;
}

Result<std::string> OAuthTokenSource::Token() {
  std::lock_guard<std::mutex> lock(mu_);  // one fetch at a time; the others wait for it
  const int64_t now = now_ms_();
  if (!token_.empty() && now < refresh_at_ms_) return token_;
  ClientRequest req;
  req.method = "POST";
  req.url = credentials_.token_url;
  req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  req.headers.emplace_back("Accept", "application/json");
  req.body = "grant_type=client_credentials&client_id=" + UrlEncode(credentials_.client_id) +
             "&client_secret=" + UrlEncode(credentials_.client_secret);
  if (!credentials_.scope.empty()) req.body += "&scope=" + UrlEncode(credentials_.scope);
  ++fetches_;
  Result<ClientResponse> res = http_->Send(req);
  if (!res.ok()) {
    return Status(res.status().code(), "token endpoint: " + std::string(res.status().message()));
  }
  const std::string excerpt = res->body.substr(0, 300);
  if (res->status >= 500 || res->status == 429 || res->status == 408) {
    return Unavailable("token endpoint answered " + std::to_string(res->status) + ": " + excerpt);
  }
  if (res->status != 200) {
    return InvalidArgument("token endpoint refused the client credentials (" +
                           std::to_string(res->status) + "): " + excerpt);
  }
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string_view token;
  if (parser.parse(res->body).get(doc) != simdjson::SUCCESS ||
      doc["access_token"].get(token) != simdjson::SUCCESS || token.empty()) {
    return InvalidArgument("token endpoint answered without an access_token: " + excerpt);
  }
  int64_t expires_in = 3600;
  simdjson::dom::element e;
  if (doc["expires_in"].get(e) == simdjson::SUCCESS) {
    int64_t v = 0;
    std::string_view text;
    if (e.get_int64().get(v) == simdjson::SUCCESS) {
      expires_in = v;
    } else if (e.get_string().get(text) == simdjson::SUCCESS) {  // some servers send a string
      expires_in = std::atoll(std::string(text).c_str());
    }
  }
  expires_in = std::max<int64_t>(expires_in, 1);
  const int64_t margin = std::min<int64_t>(expires_in * 100, 300'000);  // a tenth, <= 5 min
  token_ = std::string(token);
  refresh_at_ms_ = now + expires_in * 1000 - margin;
  return token_;
}

}  // namespace dvrouter
