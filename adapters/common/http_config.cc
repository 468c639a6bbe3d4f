#include "adapters/common/http_config.h"

namespace dvrouter {

Status ParseClientCredentials(Section& auth, const std::string& base_dir, std::string* token_url,
                              std::string* client_id, std::string* client_secret,
                              std::string* scope) {
  DV_TRY(auth.String("token_url", token_url));
  if (!(token_url->starts_with("http://") || token_url->starts_with("https://"))) {
    return KeyError(auth.Path("token_url"), "missing or not an http(s) URL");
  }
  DV_TRY(auth.String("client_id", client_id));
  if (client_id->empty()) return KeyError(auth.Path("client_id"), "missing");
  DV_TRY(auth.String("scope", scope));
  return ReadSecret(auth, "client_secret", base_dir, /*optional=*/false, client_secret);
}

Status ParseBaseUrl(Section& a, const std::string& key, const std::string& base_dir,
                    std::string* url, std::string* ca_file) {
  DV_TRY(a.String(key, url));
  if (url->empty()) return KeyError(a.Path(key), "missing: the service's base URL");
  if (!(url->starts_with("http://") || url->starts_with("https://"))) {
    return KeyError(a.Path(key), "must start with http:// or https://, got '" + *url + "'");
  }
  while (url->ends_with("/")) url->pop_back();
  return a.ReadableFile("ca_file", base_dir, ca_file);
}

}  // namespace dvrouter
