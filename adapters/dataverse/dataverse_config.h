// DataverseConfig: the settings of a `dataverse` adapter (the status write-back,
// dataverse_adapter.h; its connection also serves `dvrouter register`), their parser and
// check-config lines. Built once while the configuration is parsed, then read-only.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "router/config/config.h"

namespace dvrouter {

// The write-back's settings: the statuses of the `source` adapter's events are PATCHed onto the
// CRM rows through the Web API.
struct DataverseConfig : AdapterSettingsOf<DataverseConfig> {
  std::string source;  // the adapter whose statuses are written back
  std::string url;     // https://<org>.crm.dynamics.com, no path
  std::string api_path = "/api/data/v9.2";
  std::string ca_file;  // https: CA bundle (default: the system's)
  uint64_t connect_timeout_ms = 5000;
  uint64_t request_timeout_ms = 30'000;
  std::string token_url, client_id, client_secret, scope;        // scope default: <url>/.default
  std::vector<std::pair<std::string, std::string>> entity_sets;  // table -> entity set name
  std::string status_column;                                     // an option-set (choice) column
  // dvrouter state (pending, submitted, processing, completed, failed) -> option value; a state
  // without a value is not written.
  std::vector<std::pair<std::string, int64_t>> status_values;
  std::string error_column;  // optional: last error text, cleared (null) on success
  std::vector<std::pair<std::string, std::string>> answer_columns;  // column -> captured name
  uint64_t max_concurrency = 8;         // PATCHes in flight (the service allows about 52)
  double max_requests_per_second = 15;  // pacing: 6000 per 5 minutes per user is 20/s

  void Describe(const std::string& prefix, std::ostream& out) const override;
  Status Validate(const std::string& name, const Config& config) const override;
  std::string_view status_source() const override { return source; }
  bool connects_to_dataverse() const override { return true; }
};

extern const AdapterKind kDataverseKind;

}  // namespace dvrouter
