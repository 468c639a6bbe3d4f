// SqlConfig: the settings of the `postgres` and `sqlite` adapters (connection, table mapping,
// typed columns; sql_row.h), their parsers and check-config lines. Built once while the
// configuration is parsed, then read-only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/common/column_config.h"
#include "router/config/config.h"

namespace dvrouter {

// A typed column of a SQL table: a Target attribute copied into its own column, besides the
// `attributes` JSON (sql_row.h).
// Types: text, integer, bigint, numeric, double, boolean, timestamptz, date, uuid, jsonb (an
// EntityReference gives its id for uuid, else its JSON).
using SqlColumn = TypedColumn;

struct SqlTable {
  std::string entity;  // Dataverse table logical name (the key under `tables`)
  std::string table;   // SQL table name (default: table_prefix + entity)
  std::vector<SqlColumn> columns;
};

// The SQL adapters' settings: `postgres` (libpq) and `sqlite` (embedded file).
struct SqlConfig : AdapterSettingsOf<SqlConfig> {
  bool postgres = true;  // false: sqlite
  // postgres
  std::string host = "127.0.0.1";
  uint16_t port = 5432;
  std::string dbname = "dvrouter";
  std::string user = "dvrouter";
  std::string password;  // resolved from ${ENV} or password_file, never printed; may be empty
  std::string sslmode = "prefer";  // disable, allow, prefer, require, verify-ca, verify-full
  std::string sslrootcert;         // CA file for verify-ca / verify-full
  std::string application_name = "dvrouter";
  uint64_t connect_timeout_ms = 5000;
  uint64_t statement_timeout_ms = 30'000;
  uint64_t pool_size = 4;  // connections, each with its own thread
  // sqlite
  std::string path;            // default <journal.data_dir>/sqlite/dvrouter.db
  bool path_defaulted = true;  // path follows journal.data_dir (SetDataDir)
  uint64_t busy_timeout_ms = 5000;
  // mapping (both)
  std::string table_prefix = "crm_";
  bool create_tables = true;  // CREATE TABLE IF NOT EXISTS on a table's first event
  bool hard_delete = false;   // `delete: hard`; default soft (deleted = true)
  // Which Dataverse tables may become SQL tables (docs/adapters/sql.md, "Which tables"): the
  // `tables_allowed` list; without one, the tables the routes to this adapter name and the
  // mapped ones, or any (up to create_tables_limit distinct tables) when a route to it names none.
  std::vector<std::string> tables_allowed;
  bool tables_allowed_set = false;  // `tables_allowed` was given
  bool any_table = true;            // resolved: no list applies
  uint64_t create_tables_limit = 200;
  std::vector<SqlTable> tables;
  const SqlTable* FindTable(std::string_view entity) const;

  void Describe(const std::string& prefix, std::ostream& out) const override;
  void SetDataDir(const std::string& data_dir) override;
  void Resolve(const std::string& name, const Config& config) override;
  // The table may become a SQL table (any_table, or listed in tables_allowed).
  bool Allows(std::string_view entity) const;
};

// SQL table names with this prefix are the router's own (dvrouter_tombstones).
inline constexpr std::string_view kReservedTablePrefix = "dvrouter_";

extern const AdapterKind kPostgresKind;
extern const AdapterKind kSqliteKind;

}  // namespace dvrouter
