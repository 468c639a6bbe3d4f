// OAuthTokenSource: OAuth 2.0 client credentials (RFC 6749 4.4) for the ERP and, later, the
// Dataverse write-back. The token is cached and fetched again before it expires (when less than
// a tenth of its lifetime, at most 5 minutes, is left) or when the caller reports it rejected.
// Thread-safe: one caller fetches (without holding the lock), the others keep using the current
// token while it is valid or wait for the fetch; a failed fetch is remembered for a second.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "adapters/common/http_client.h"
#include "router/common/status.h"

namespace dvrouter {

struct OAuthClientCredentials {
  std::string token_url;
  std::string client_id;
  std::string client_secret;
  std::string scope;  // optional (Dataverse: https://<org>/.default)
};

class OAuthTokenSource {
 public:
  // `now_ms`: a monotonic clock in ms (tests pass a fake one).
  OAuthTokenSource(OAuthClientCredentials credentials, HttpClient* http,
                   std::function<int64_t()> now_ms = nullptr);

  // The current token, fetching one if needed. Unavailable/DeadlineExceeded when the token
  // endpoint cannot be reached or answers 5xx (retry later); InvalidArgument when it refuses
  // the credentials (4xx) or answers without an access_token.
  Result<std::string> Token();
  // The token was refused (401): the next Token() fetches a new one.
  void Invalidate(const std::string& token);
  uint64_t fetches() const;

 private:
  OAuthClientCredentials credentials_;
  HttpClient* http_;
  std::function<int64_t()> now_ms_;
  Result<std::string> Fetch(int64_t now, int64_t* expires_at, int64_t* refresh_at);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool fetching_ = false;  // one thread fetches, without the lock; the others wait or reuse
  std::string token_;
  int64_t refresh_at_ms_ = 0;  // fetch a new one from here on...
  int64_t expires_at_ms_ = 0;  // ...while the current one still serves until here
  Status last_error_;          // a failed fetch is remembered briefly (no fetch per call)
  int64_t retry_at_ms_ = 0;
  uint64_t fetches_ = 0;
};

}  // namespace dvrouter
