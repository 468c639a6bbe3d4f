// Settings parsers shared by the HTTP adapters (ERP, Dataverse write-back): a service's base URL
// with its CA file, and OAuth 2.0 client credentials. Called while the configuration is parsed.
#pragma once

#include <string>

#include "router/common/status.h"
#include "router/config/section.h"

namespace dvrouter {

// An http(s) base URL under `key`, without trailing slashes, and an optional readable `ca_file`.
Status ParseBaseUrl(Section& a, const std::string& key, const std::string& base_dir,
                    std::string* url, std::string* ca_file);

// OAuth 2.0 client credentials: token_url, client_id, client_secret (or _file), scope.
Status ParseClientCredentials(Section& auth, const std::string& base_dir, std::string* token_url,
                              std::string* client_id, std::string* client_secret,
                              std::string* scope);

}  // namespace dvrouter
