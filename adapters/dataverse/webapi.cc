#include "adapters/dataverse/webapi.h"

namespace dvrouter {

WebApiClient::WebApiClient(const DataverseConfig& config)
    : config_(config),
      http_([&] {
        HttpClientOptions o;
        o.connect_timeout_ms = config.connect_timeout_ms;
        o.request_timeout_ms = config.request_timeout_ms;
        o.ca_file = config.ca_file;
        o.max_idle_per_host = config.max_concurrency;
        return o;
      }()),
      tokens_(OAuthClientCredentials{config.token_url, config.client_id, config.client_secret,
                                     config.scope},
              &http_) {}

std::string WebApiClient::Url(const std::string& resource) const {
  return config_.url + config_.api_path + "/" + resource;
}

Result<ClientResponse> WebApiClient::Send(
    const std::string& method, const std::string& resource, const std::string& body,
    const std::vector<std::pair<std::string, std::string>>& extra) {
  for (int attempt = 0;; ++attempt) {
    Result<std::string> token = tokens_.Token();
    if (!token.ok()) {
      return Status(token.status().code(),
                    "dataverse token: " + std::string(token.status().message()));
    }
    ClientRequest req;
    req.method = method;
    req.url = Url(resource);
    req.body = body;
    req.headers = {{"Authorization", "Bearer " + *token},
                   {"Accept", "application/json"},
                   {"OData-MaxVersion", "4.0"},
                   {"OData-Version", "4.0"}};
    if (!body.empty()) req.headers.emplace_back("Content-Type", "application/json; charset=utf-8");
    for (const auto& h : extra) req.headers.push_back(h);
    Result<ClientResponse> res = http_.Send(req);
    if (res.ok() && res->status == 401 && attempt == 0) {
      tokens_.Invalidate(*token);  // expired or revoked early: once more with a fresh token
      continue;
    }
    return res;
  }
}

}  // namespace dvrouter
