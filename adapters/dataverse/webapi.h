// WebApiClient: requests to one Dataverse organization's Web API (docs/dataverse.md): the OData
// headers, an OAuth 2.0 client-credentials bearer token (cached, renewed before expiry, fetched
// again once after a 401). Shared by the status write-back and `dvrouter register`.
// Threads: Send from any thread.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "adapters/common/http_client.h"
#include "adapters/common/oauth.h"
#include "adapters/dataverse/dataverse_config.h"
#include "router/config/config.h"

namespace dvrouter {

class WebApiClient {
 public:
  explicit WebApiClient(const DataverseConfig& config);

  // `resource` is relative to <url><api_path>/ (e.g. "accounts(<id>)" or
  // "serviceendpoints?$filter=..."). A token that cannot be had is returned as the error
  // (Unavailable / DeadlineExceeded: retry later; InvalidArgument: credentials refused).
  Result<ClientResponse> Send(const std::string& method, const std::string& resource,
                              const std::string& body = "",
                              const std::vector<std::pair<std::string, std::string>>& extra = {});
  std::string Url(const std::string& resource) const;

 private:
  DataverseConfig config_;
  HttpClient http_;
  OAuthTokenSource tokens_;
};

}  // namespace dvrouter
