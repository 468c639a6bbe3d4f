#include "adapters/sql/sql_config.h"

#include "adapters/common/column_config.h"

#include <algorithm>
#include <ostream>
#include <set>

#include "router/common/identifiers.h"
#include "router/config/section.h"

namespace dvrouter {

namespace {

constexpr std::string_view kSqlTypes[] = {"text",    "integer",     "bigint", "numeric", "double",
                                          "boolean", "timestamptz", "date",   "uuid",    "jsonb"};
// The columns every mapped table has.
constexpr std::string_view kSqlReserved[] = {"id", "attributes", "version", "deleted",
                                             "updated_at"};
const ColumnRules kSqlColumnRules{
    .types = kSqlTypes,
    .lower_type = true,
    .managed = kSqlReserved,
    .identifier_rule =
        "a SQL identifier dvrouter accepts (a-z, 0-9, '_', not starting with a digit, <= 63)"};

Status ParseSqlTables(Section& a, SqlConfig* out) {
  YAML::Node tables = a.Raw("tables", "mapping of table to its mapping");
  if (!tables || tables.IsNull()) return Status::Ok();
  if (!tables.IsMap()) {
    return KeyError(a.Path("tables"), "must be a mapping of Dataverse table to its mapping");
  }
  std::set<std::string> sql_names;
  for (const auto& kv : tables) {
    SqlTable t;
    t.entity = kv.first.as<std::string>();
    Section ts = a.Item(kv.second, ".tables." + t.entity, ".tables.<table>");
    DV_TRY(ts.Check());
    if (t.entity != Lower(t.entity) || !ValidSqlIdentifier(t.entity)) {
      return KeyError(ts.Name(), "a Dataverse table logical name (a-z, 0-9, '_') is expected");
    }
    if (out->FindTable(t.entity) != nullptr) return KeyError(ts.Name(), "duplicate key");
    t.table = out->table_prefix + t.entity;
    ts.Record("table", {"string", "", "default: table_prefix + the table's name"});
    DV_TRY(ts.String("table", &t.table));
    if (!ValidSqlIdentifier(t.table)) {
      return KeyError(ts.Path("table"), "'" + t.table +
                                            "' is not a SQL identifier dvrouter accepts "
                                            "(a-z, 0-9, '_', not starting with a digit, <= 63)");
    }
    if (t.table.starts_with(kReservedTablePrefix)) {
      return KeyError(ts.Path("table"), "'" + t.table + "': the prefix " +
                                            std::string(kReservedTablePrefix) +
                                            " is reserved for the router's own tables");
    }
    if (!sql_names.insert(t.table).second) {
      return KeyError(ts.Path("table"), "'" + t.table + "' is mapped twice");
    }
    DV_TRY(ParseColumns(ts, "columns", kSqlColumnRules, &t.columns));
    DV_TRY(ts.RejectUnknown());
    out->tables.push_back(std::move(t));
  }
  return Status::Ok();
}

Result<std::unique_ptr<AdapterSettings>> ParseSql(Section& a, const AdapterParseContext& ctx,
                                                  bool postgres) {
  auto out = std::make_unique<SqlConfig>();
  out->postgres = postgres;
  const std::string& base_dir = ctx.base_dir;
  const std::string& data_dir = ctx.data_dir;
  if (postgres) {
    DV_TRY(a.String("host", &out->host));
    if (out->host.empty()) return KeyError(a.Path("host"), "must not be empty");
    uint64_t port = out->port;
    DV_TRY(a.Count("port", 1, 65535, &port));
    out->port = static_cast<uint16_t>(port);
    DV_TRY(a.String("dbname", &out->dbname));
    DV_TRY(a.String("user", &out->user));
    if (out->dbname.empty()) return KeyError(a.Path("dbname"), "must not be empty");
    if (out->user.empty()) return KeyError(a.Path("user"), "must not be empty");
    DV_TRY(ReadSecret(a, "password", base_dir, /*optional=*/true, &out->password));
    DV_TRY(a.Choice("sslmode",
                    {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"},
                    &out->sslmode));
    DV_TRY(a.ReadableFile("sslrootcert", base_dir, &out->sslrootcert));
    if (out->sslrootcert.empty() &&
        (out->sslmode == "verify-ca" || out->sslmode == "verify-full")) {
      return KeyError(a.Path("sslrootcert"),
                      "missing: sslmode " + out->sslmode + " needs the CA certificate file");
    }
    DV_TRY(a.String("application_name", &out->application_name));
    DV_TRY(a.DurationMs("connect_timeout", 1000, 600'000, &out->connect_timeout_ms));
    DV_TRY(a.DurationMs("statement_timeout", 0, 3'600'000, &out->statement_timeout_ms));
    DV_TRY(a.Count("pool_size", 1, 64, &out->pool_size));
  } else {
    out->path = data_dir + "/sqlite/dvrouter.db";
    DV_TRY(a.String("path", &out->path));
    out->path_defaulted = out->path == data_dir + "/sqlite/dvrouter.db";
    if (out->path.empty()) return KeyError(a.Path("path"), "must not be empty");
    DV_TRY(a.DurationMs("busy_timeout", 0, 600'000, &out->busy_timeout_ms));
  }
  DV_TRY(a.String("table_prefix", &out->table_prefix));
  if (!out->table_prefix.empty() && !ValidSqlIdentifier(out->table_prefix)) {
    return KeyError(a.Path("table_prefix"),
                    "must be a SQL identifier prefix (a-z, 0-9, '_', not starting with a digit)");
  }
  if (out->table_prefix.starts_with(kReservedTablePrefix)) {
    return KeyError(a.Path("table_prefix"), "the prefix " + std::string(kReservedTablePrefix) +
                                                " is reserved for the router's own tables");
  }
  DV_TRY(a.Bool("create_tables", &out->create_tables));
  std::string del = "soft";
  DV_TRY(a.Choice("delete", {"soft", "hard"}, &del));
  out->hard_delete = del == "hard";
  if (out->hard_delete && out->table_prefix.empty()) {
    return KeyError(a.Path("delete"),
                    "hard deletes need a table_prefix: without one, CRM tables and the router's "
                    "tombstone table share one namespace");
  }
  a.Record("tables_allowed", {"list of strings", "",
                              "default: the tables the routes name and the mapped ones, or any "
                              "when a route names none"});
  if (YAML::Node listed = a.Get("tables_allowed"); listed && !listed.IsNull()) {
    DV_TRY(a.Strings("tables_allowed", &out->tables_allowed));
    out->tables_allowed_set = true;
    for (std::string& t : out->tables_allowed) {
      t = Lower(t);
      if (!ValidSqlIdentifier(t)) {
        return KeyError(a.Path("tables_allowed"), "'" + t + "' is not a table's logical name");
      }
    }
  }
  DV_TRY(a.Count("create_tables_limit", 1, 100'000, &out->create_tables_limit));
  DV_TRY(ParseSqlTables(a, out.get()));
  return std::unique_ptr<AdapterSettings>(std::move(out));
}

Result<std::unique_ptr<AdapterSettings>> ParsePostgres(Section& a, const AdapterParseContext& ctx) {
  return ParseSql(a, ctx, /*postgres=*/true);
}

Result<std::unique_ptr<AdapterSettings>> ParseSqlite(Section& a, const AdapterParseContext& ctx) {
  return ParseSql(a, ctx, /*postgres=*/false);
}

constexpr std::string_view kPostgresExamples[] = {
    R"(host: db.example.com
password: ${PG_PASSWORD}
sslmode: verify-full
sslrootcert: ca.pem
tables:
  account:
    table: crm_account
    columns: [{attribute: name, column: name, type: text}]
)",
};

constexpr std::string_view kSqliteExamples[] = {
    R"(path: /var/lib/dvrouter/crm.db
)",
};

}  // namespace

const SqlTable* SqlConfig::FindTable(std::string_view entity) const {
  for (const SqlTable& t : tables) {
    if (t.entity == entity) return &t;
  }
  return nullptr;
}

void SqlConfig::Describe(const std::string& k, std::ostream& o) const {
  if (postgres) {
    o << k << "host: " << host << ":" << port << " dbname " << dbname << " user " << user
      << " password " << (password.empty() ? "(none)" : "***") << "\n"
      << k << "sslmode: " << sslmode << (sslrootcert.empty() ? "" : " sslrootcert " + sslrootcert)
      << "\n"
      << k << "pool_size: " << pool_size << ", statement_timeout " << statement_timeout_ms
      << "ms, connect_timeout " << connect_timeout_ms << "ms, application_name " << application_name
      << "\n";
  } else {
    o << k << "path: " << path << "\n";
  }
  o << k << "tables: prefix " << table_prefix << ", create " << (create_tables ? "yes" : "no")
    << ", delete " << (hard_delete ? "hard" : "soft") << "\n";
  o << k << "tables_allowed: ";
  if (any_table) {
    o << "any (at most " << create_tables_limit << " tables)";
  } else {
    for (size_t i = 0; i < tables_allowed.size(); ++i) o << (i ? "," : "") << tables_allowed[i];
  }
  o << "\n";
  for (const SqlTable& t : tables) {
    o << k << "table " << t.entity << " -> " << t.table;
    for (const SqlColumn& col : t.columns) {
      o << " " << col.attribute << "->" << col.column << ":" << col.type;
    }
    o << "\n";
  }
}

void SqlConfig::Resolve(const std::string& name, const Config& config) {
  if (tables_allowed_set) {
    any_table = false;
    return;
  }
  any_table = false;
  std::vector<std::string> allowed;
  for (const SqlTable& t : tables) allowed.push_back(t.entity);
  for (const RouteConfig& r : config.routes) {
    if (std::find(r.adapters.begin(), r.adapters.end(), name) == r.adapters.end()) continue;
    if (r.tables.empty()) any_table = true;
    allowed.insert(allowed.end(), r.tables.begin(), r.tables.end());
  }
  if (!any_table) tables_allowed = std::move(allowed);
}

bool SqlConfig::Allows(std::string_view entity) const {
  if (any_table) return true;
  return std::find(tables_allowed.begin(), tables_allowed.end(), entity) != tables_allowed.end();
}

void SqlConfig::SetDataDir(const std::string& data_dir) {
  if (!postgres && path_defaulted) path = data_dir + "/sqlite/dvrouter.db";
}

const AdapterKind kPostgresKind{
    .type = "postgres", .parse = &ParsePostgres, .examples = kPostgresExamples};
const AdapterKind kSqliteKind{.type = "sqlite", .parse = &ParseSqlite, .examples = kSqliteExamples};

}  // namespace dvrouter
