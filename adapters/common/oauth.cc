#include "adapters/common/oauth.h"

#include <simdjson.h>

#include <algorithm>
#include <chrono>

#include "router/common/encoding.h"

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
  if (token == token_) {
    refresh_at_ms_ = 0;
    expires_at_ms_ = 0;  // refused: do not hand it out again
  }
}

Result<std::string> OAuthTokenSource::Token() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    const int64_t now = now_ms_();
    const bool valid = !token_.empty() && now < expires_at_ms_;
    if (valid && now < refresh_at_ms_) return token_;
    if (!last_error_.ok() && now < retry_at_ms_) {
      if (valid) return token_;
      return last_error_;
    }
    if (fetching_) {
      if (valid) return token_;  // another caller is renewing it
      cv_.wait(lock);
      continue;
    }
    fetching_ = true;
    lock.unlock();
    int64_t expires_at = 0, refresh_at = 0;
    Result<std::string> fetched = Fetch(now, &expires_at, &refresh_at);
    lock.lock();
    fetching_ = false;
    ++fetches_;
    cv_.notify_all();
    if (fetched.ok()) {
      token_ = *fetched;
      expires_at_ms_ = expires_at;
      refresh_at_ms_ = refresh_at;
      last_error_ = Status::Ok();
      return token_;
    }
    last_error_ = fetched.status();
    retry_at_ms_ = now_ms_() + 1000;
    if (!token_.empty() && now_ms_() < expires_at_ms_) return token_;
    return last_error_;
  }
}

Result<std::string> OAuthTokenSource::Fetch(int64_t now, int64_t* expires_at, int64_t* refresh_at) {
  ClientRequest req;
  req.method = "POST";
  req.url = credentials_.token_url;
  req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  req.headers.emplace_back("Accept", "application/json");
  req.body = "grant_type=client_credentials&client_id=" + UrlEncode(credentials_.client_id) +
             "&client_secret=" + UrlEncode(credentials_.client_secret);
  if (!credentials_.scope.empty()) req.body += "&scope=" + UrlEncode(credentials_.scope);
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
  expires_in = std::clamp<int64_t>(expires_in, 1, 366LL * 24 * 3600);
  const int64_t margin = std::min<int64_t>(expires_in * 100, 300'000);  // a tenth, <= 5 min
  *expires_at = now + expires_in * 1000;
  *refresh_at = *expires_at - margin;
  return std::string(token);
}

}  // namespace dvrouter
