// ClickHouseConfig: the settings of a `clickhouse` adapter (ClickHouse over HTTP,
// clickhouse_adapter.h), their parser and check-config lines. Built once while the configuration
// is parsed, then read-only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "adapters/common/column_config.h"
#include "router/config/config.h"

namespace dvrouter {

// A flattened typed column of the ClickHouse events table (always Nullable: absent -> NULL).
// Types: String, Int64, UInt64, Float64, UInt8 (booleans), DateTime.
using ClickHouseColumn = TypedColumn;

// The warehouse adapter's settings.
struct ClickHouseConfig : AdapterSettingsOf<ClickHouseConfig> {
  std::string url = "http://127.0.0.1:8123";  // http:// or https://, no path
  std::string database = "default";
  std::string table = "dvrouter_events";
  std::string user = "default";
  std::string password;  // ${ENV} or password_file; never printed
  std::string ca_file;   // https: CA bundle (default: the system's)
  bool create_table = true;
  bool gzip = true;                         // `compression: gzip` (default) or `none`
  uint64_t max_insert_bytes = 32ull << 20;  // a batch is split into inserts of at most this
  uint64_t connections = 2;                 // inserts in flight (one thread each)
  uint64_t connect_timeout_ms = 5000;
  uint64_t request_timeout_ms = 60'000;
  std::vector<ClickHouseColumn> columns;

  void Describe(const std::string& prefix, std::ostream& out) const override;
};

extern const AdapterKind kClickHouseKind;

}  // namespace dvrouter
