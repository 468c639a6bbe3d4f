// ErpConfig: the settings of an `erp` adapter (erp_adapter.h): base URL, auth, request templates
// chosen by table and message, and how asynchronous (202) jobs are confirmed; their parser and
// check-config lines. Built once while the configuration is parsed, then read-only.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "router/config/config.h"

namespace dvrouter {

// One ERP call, chosen for an event by table and message (first match wins).
struct ErpRequest {
  std::string name;
  std::vector<std::string> tables;    // logical names, lowercase; empty: any
  std::vector<std::string> messages;  // lowercase; empty: any
  std::string method = "POST";
  std::string path;  // appended to base_url; may hold {{placeholders}}
  std::vector<std::pair<std::string, std::string>> headers;
  // JSON with {{placeholders}} replaced by JSON values (adapters/erp/erp_template.h):
  // {{target.<attr>}}, {{target.<attr>.<field>}}, {{target}}, {{header.<field>}},
  // {{event.id}}, {{event.seq}}.
  std::string body;
  std::vector<std::pair<std::string, std::string>> capture;  // answer name -> JSON pointer
};

struct ErpAuth {
  std::string mode = "none";              // none, basic, api_key, oauth2
  std::string user, password;             // basic (password: ${ENV} or password_file)
  std::string header = "X-API-Key", key;  // api_key (key: ${ENV} or key_file)
  std::string token_url, client_id, client_secret, scope;  // oauth2 client credentials
};

// Jobs the ERP accepts with 202 and confirms later: by calling back
// (POST /callbacks/<adapter>/<event id> on the ingress listener, with the event's token or
// `Authorization: Bearer <secret>`) or by being polled at the status URL its 202 answer names.
struct ErpAsync {
  std::string status_pointer = "/status";  // in a callback or poll answer
  std::vector<std::string> completed = {"completed", "succeeded", "done"};
  std::vector<std::string> failed = {"failed", "rejected", "error"};
  std::string error_pointer = "/error";
  std::string callback_secret;  // empty: callbacks refused
  std::string public_url;  // X-Callback-Url: <public_url>/callbacks/<adapter>/<id>?token=<token>
  std::string poll_url_pointer = "/statusUrl";  // in the 202 answer; else its Location header
  uint64_t poll_interval_ms = 0;                // 0: no polling
  uint64_t poll_timeout_ms = 3'600'000;         // then the event fails (DLQ)
  // Origins (scheme://host:port, canonical) whose status URLs are polled besides base_url's;
  // any other URL a 202 names fails the event instead of being fetched.
  std::vector<std::string> poll_allowed_origins;
};

// The ERP adapter's settings (erp_adapter.h).
struct ErpConfig : AdapterSettingsOf<ErpConfig> {
  std::string base_url;  // http(s)://host[:port][/prefix]
  std::string ca_file;   // https: CA bundle (default: the system's)
  uint64_t connect_timeout_ms = 5000;
  uint64_t request_timeout_ms = 30'000;
  uint64_t max_concurrency = 64;  // requests in flight, at most
  bool adaptive = true;  // AIMD limit below max_concurrency, backing off on 429/5xx/timeouts
  ErpAuth auth;
  std::vector<ErpRequest> requests;
  ErpAsync async;
  // `sap_odata`: every call carries the x-csrf-token (and the session cookies) fetched with a GET
  // of base_url + csrf_path carrying `x-csrf-token: Fetch`; fetched again once on a 403 "CSRF
  // token validation failed".
  std::string profile = "generic";
  std::string csrf_path = "/";

  void Describe(const std::string& prefix, std::ostream& out) const override;
};

extern const AdapterKind kErpKind;

}  // namespace dvrouter
