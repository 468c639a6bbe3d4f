#include "adapters/clickhouse/clickhouse_config.h"

#include "adapters/common/column_config.h"

#include <ostream>
#include <set>

#include "router/common/identifiers.h"
#include "router/config/section.h"

namespace dvrouter {

namespace {

constexpr std::string_view kColumnTypes[] = {"String",  "Int64", "UInt64",
                                             "Float64", "UInt8", "DateTime"};
// The columns of the events table every row has.
constexpr std::string_view kManaged[] = {"event_id",       "seq",
                                         "table_name",     "row_id",
                                         "message",        "stage",
                                         "operation_time", "operation_time_ms",
                                         "received_time",  "received_time_ms",
                                         "attributes"};
const ColumnRules kColumnRules{.types = kColumnTypes,
                               .managed = kManaged,
                               .identifier_rule = "an identifier dvrouter accepts (a-z, 0-9, '_')"};

Result<std::unique_ptr<AdapterSettings>> ParseClickHouse(Section& a,
                                                         const AdapterParseContext& ctx) {
  auto out = std::make_unique<ClickHouseConfig>();
  DV_TRY(a.String("url", &out->url));
  const bool http = out->url.starts_with("http://"), https = out->url.starts_with("https://");
  const std::string rest = out->url.substr(http ? 7 : https ? 8 : 0);
  if ((!http && !https) || rest.empty() || rest.find_first_of("/?#@") != std::string::npos) {
    return KeyError(a.Path("url"),
                    "must be http://host:port or https://host:port (no path, query or "
                    "credentials), got '" +
                        out->url + "'");
  }
  DV_TRY(a.String("database", &out->database));
  if (!ValidSqlIdentifier(out->database)) {
    return KeyError(
        a.Path("database"),
        "'" + out->database + "' is not an identifier dvrouter accepts (a-z, 0-9, '_')");
  }
  DV_TRY(a.String("table", &out->table));
  if (!ValidSqlIdentifier(out->table)) {
    return KeyError(a.Path("table"),
                    "'" + out->table + "' is not an identifier dvrouter accepts (a-z, 0-9, '_')");
  }
  DV_TRY(a.String("user", &out->user));
  if (out->user.empty()) return KeyError(a.Path("user"), "must not be empty");
  DV_TRY(ReadSecret(a, "password", ctx.base_dir, /*optional=*/true, &out->password));
  DV_TRY(a.ReadableFile("ca_file", ctx.base_dir, &out->ca_file));
  DV_TRY(a.Bool("create_table", &out->create_table));
  std::string compression = "gzip";
  DV_TRY(a.Choice("compression", {"gzip", "none"}, &compression));
  out->gzip = compression == "gzip";
  DV_TRY(a.Bytes("max_insert_bytes", 64 << 10, 1ull << 30, &out->max_insert_bytes));
  DV_TRY(a.Count("connections", 1, 64, &out->connections));
  DV_TRY(a.DurationMs("connect_timeout", 100, 600'000, &out->connect_timeout_ms));
  DV_TRY(a.DurationMs("request_timeout", 100, 3'600'000, &out->request_timeout_ms));
  DV_TRY(ParseColumns(a, "columns", kColumnRules, &out->columns));
  return std::unique_ptr<AdapterSettings>(std::move(out));
}

constexpr std::string_view kExamples[] = {
    R"(url: https://clickhouse.example.com:8443
password: ${CLICKHOUSE_PASSWORD}
ca_file: ca.pem
columns: [{attribute: name, column: name, type: String}]
)",
};

}  // namespace

void ClickHouseConfig::Describe(const std::string& k, std::ostream& o) const {
  o << k << "url: " << url << " database " << database << " table " << table << " user " << user
    << " password " << (password.empty() ? "(none)" : "***") << "\n"
    << k << "create_table: " << (create_table ? "yes" : "no") << ", compression "
    << (gzip ? "gzip" : "none") << ", max_insert_bytes " << max_insert_bytes << ", connections "
    << connections << "\n";
  for (const ClickHouseColumn& col : columns) {
    o << k << "column " << col.attribute << "->" << col.column << ":" << col.type << "\n";
  }
}

// ClickHouse wants few large inserts.
const AdapterKind kClickHouseKind{.type = "clickhouse",
                                  .parse = &ParseClickHouse,
                                  .max_batch_events = 10'000,
                                  .linger_ms = 1000,
                                  .examples = kExamples};

}  // namespace dvrouter
