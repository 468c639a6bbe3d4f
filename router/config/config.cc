#include "router/config/config.h"

#include <arpa/inet.h>
#include <simdjson.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <type_traits>

#include "router/common/identifiers.h"
#include "router/common/json_template.h"

namespace dvrouter {

namespace {

Status KeyError(const std::string& path, const std::string& problem) {
  return InvalidArgument(path + ": " + problem);
}

// A mapping being read: remembers which keys were consumed so leftovers can be reported.
class Section {
 public:
  Section(YAML::Node node, std::string path) : node_(std::move(node)), path_(std::move(path)) {}

  // The section is in the file (possibly empty: `tls: {}`).
  bool Present() const { return node_ && !node_.IsNull(); }

  Status Check() const {
    if (node_ && !node_.IsNull() && !node_.IsMap()) return KeyError(Name(), "must be a mapping");
    return Status::Ok();
  }

  std::string Path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  std::string Name() const { return path_.empty() ? "(top level)" : path_; }

  YAML::Node Get(const std::string& key) {
    used_.insert(key);
    if (!node_ || !node_.IsMap()) return YAML::Node();
    return node_[key];
  }

  Section Child(const std::string& key) { return Section(Get(key), Path(key)); }

  Status RejectUnknown() const {
    if (!node_ || !node_.IsMap()) return Status::Ok();
    std::set<std::string> seen;
    for (const auto& kv : node_) {
      std::string key = kv.first.as<std::string>();
      if (!used_.count(key)) return KeyError(Path(key), "unknown key");
      // yaml-cpp keeps both entries but node[key] finds only the first: refuse the repeat.
      if (!seen.insert(key).second) return KeyError(Path(key), "duplicate key");
    }
    return Status::Ok();
  }

  Status String(const std::string& key, std::string* out) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) return Status::Ok();  // absent or empty: keep the default
    if (!n.IsScalar()) return KeyError(Path(key), "must be a string");
    *out = n.Scalar();
    return Status::Ok();
  }

  Status Bool(const std::string& key, bool* out) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) return Status::Ok();  // absent or empty: keep the default
    if (!n.IsScalar()) return KeyError(Path(key), "must be true or false");
    const std::string& s = n.Scalar();
    if (s == "true" || s == "yes" || s == "on") {
      *out = true;
    } else if (s == "false" || s == "no" || s == "off") {
      *out = false;
    } else {
      return KeyError(Path(key), "must be true or false, got '" + s + "'");
    }
    return Status::Ok();
  }

  // Integers with an optional unit. units: pairs of suffix and multiplier; "" is the bare unit.
  Status Quantity(const std::string& key, uint64_t min, uint64_t max,
                  std::initializer_list<std::pair<std::string_view, uint64_t>> units,
                  std::string_view what, uint64_t* out) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) return Status::Ok();  // absent or empty: keep the default
    const std::string path = Path(key);
    if (!n.IsScalar()) return KeyError(path, "must be " + std::string(what));
    std::string s = n.Scalar();
    uint64_t value = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || ptr == s.data()) {
      return KeyError(path, "must be " + std::string(what) + ", got '" + s + "'");
    }
    std::string_view suffix(ptr, static_cast<size_t>(s.data() + s.size() - ptr));
    while (!suffix.empty() && suffix.front() == ' ') suffix.remove_prefix(1);
    bool matched = false;
    for (const auto& [unit, mult] : units) {
      if (suffix == unit) {
        if (mult != 0 && value > UINT64_MAX / mult) return KeyError(path, "value too large");
        value *= mult;
        matched = true;
        break;
      }
    }
    if (!matched) return KeyError(path, "must be " + std::string(what) + ", got '" + s + "'");
    if (value < min || value > max) {
      return KeyError(path, "must be between " + std::to_string(min) + " and " +
                                std::to_string(max) + ", got '" + s + "'");
    }
    *out = value;
    return Status::Ok();
  }

  Status Bytes(const std::string& key, uint64_t min, uint64_t max, uint64_t* out) {
    return Quantity(key, min, max,
                    {{"", 1},
                     {"B", 1},
                     {"KiB", 1ull << 10},
                     {"MiB", 1ull << 20},
                     {"GiB", 1ull << 30},
                     {"TiB", 1ull << 40},
                     {"KB", 1000ull},
                     {"MB", 1000ull * 1000},
                     {"GB", 1000ull * 1000 * 1000}},
                    "a size such as 65536, 64KiB or 64MiB", out);
  }

  // Stored in milliseconds.
  Status DurationMs(const std::string& key, uint64_t min_ms, uint64_t max_ms, uint64_t* out) {
    return Quantity(key, min_ms, max_ms, {{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}},
                    "a duration such as 500ms, 10s, 5m or 24h", out);
  }

  Status Count(const std::string& key, uint64_t min, uint64_t max, uint64_t* out) {
    return Quantity(key, min, max, {{"", 1}}, "a whole number", out);
  }

  Status Double(const std::string& key, double min, double max, double* out) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) return Status::Ok();
    const std::string& s = n.IsScalar() ? n.Scalar() : std::string();
    char* end = nullptr;
    double v = s.empty() ? 0 : std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size() || !(v >= min && v <= max)) {
      return KeyError(Path(key), "must be a number between " + std::to_string(min) + " and " +
                                     std::to_string(max) + ", got '" + s + "'");
    }
    *out = v;
    return Status::Ok();
  }

  // A list of scalars (a single scalar counts as a list of one).
  Status Strings(const std::string& key, std::vector<std::string>* out) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) return Status::Ok();
    if (n.IsScalar()) {
      out->assign(1, n.Scalar());
      return Status::Ok();
    }
    if (!n.IsSequence()) return KeyError(Path(key), "must be a list of strings");
    out->clear();
    for (size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsScalar()) {
        return KeyError(Path(key) + "[" + std::to_string(i) + "]", "must be a string");
      }
      out->push_back(n[i].Scalar());
    }
    return Status::Ok();
  }

  YAML::Node Raw(const std::string& key) { return Get(key); }

  Status Endpoint(const std::string& key, dvrouter::Endpoint* out) {
    std::string text;
    if (Status st = String(key, &text); !st.ok()) return st;
    if (text.empty()) return Status::Ok();
    Result<dvrouter::Endpoint> ep = ParseEndpoint(text);
    if (!ep.ok()) return KeyError(Path(key), std::string(ep.status().message()));
    *out = *ep;
    return Status::Ok();
  }

 private:
  YAML::Node node_;
  std::string path_;
  std::set<std::string> used_;
};

#define DV_TRY(expr)                 \
  do {                               \
    ::dvrouter::Status _st = (expr); \
    if (!_st.ok()) return _st;       \
  } while (0)

// A secret is `${ENV_NAME}` under `secret`, or a path under `secret_file`; literals are refused.
Status ResolveSecret(Section& auth, const std::string& ref, const std::string& file,
                     const std::string& base_dir, std::string* out,
                     const std::string& key = "secret") {
  const std::string file_key = key + "_file";
  if (!ref.empty() && !file.empty()) {
    return KeyError(auth.Path(key), "give either " + key + " or " + file_key + ", not both");
  }
  if (!ref.empty()) {
    if (ref.size() < 4 || !ref.starts_with("${") || !ref.ends_with("}")) {
      return KeyError(auth.Path(key),
                      "must be an environment reference such as ${DVROUTER_WEBHOOK_KEY}; "
                      "secrets are never written in the configuration file");
    }
    std::string name = ref.substr(2, ref.size() - 3);
    const char* value = std::getenv(name.c_str());
    if (value == nullptr || *value == '\0') {
      return KeyError(auth.Path(key), "environment variable " + name + " is not set");
    }
    *out = value;
    // A newline pasted into the variable would end up inside an HTTP header.
    while (!out->empty() && std::isspace(static_cast<unsigned char>(out->back()))) out->pop_back();
    if (out->empty()) return KeyError(auth.Path(key), "environment variable " + name + " is blank");
    return Status::Ok();
  }
  if (!file.empty()) {
    std::string path = file.starts_with("/") ? file : base_dir + "/" + file;
    std::ifstream in(path);
    if (!in) return KeyError(auth.Path(file_key), "cannot read " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string value = ss.str();
    while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) {
      value.pop_back();
    }
    if (value.empty()) return KeyError(auth.Path(file_key), path + " is empty");
    *out = value;
    return Status::Ok();
  }
  return KeyError(auth.Path(key), "missing: set " + key + ": ${ENV_NAME} or " + file_key);
}

Status ParseAuth(Section auth, const std::string& base_dir, AuthConfig* out) {
  DV_TRY(auth.Check());
  std::string mode = "webhook_key";
  DV_TRY(auth.String("mode", &mode));
  if (mode == "webhook_key") {
    out->mode = AuthMode::kWebhookKey;
  } else if (mode == "http_header") {
    out->mode = AuthMode::kHttpHeader;
  } else if (mode == "http_query_string") {
    out->mode = AuthMode::kHttpQueryString;
  } else if (mode == "none") {
    out->mode = AuthMode::kNone;
  } else {
    return KeyError(
        auth.Path("mode"),
        "must be webhook_key, http_header, http_query_string or none, got '" + mode + "'");
  }
  DV_TRY(auth.String("header", &out->header));
  DV_TRY(auth.String("parameter", &out->parameter));
  if (out->mode == AuthMode::kHttpHeader && out->header.empty()) {
    return KeyError(auth.Path("header"), "must name the header that carries the secret");
  }
  if (out->mode == AuthMode::kHttpQueryString && out->parameter.empty()) {
    return KeyError(auth.Path("parameter"), "must name the query parameter");
  }
  std::string ref, file;
  DV_TRY(auth.String("secret", &ref));
  DV_TRY(auth.String("secret_file", &file));
  // Unknown keys first: a misspelt secret_file must be reported as such, not as "missing".
  DV_TRY(auth.RejectUnknown());
  if (out->mode == AuthMode::kNone) {
    if (!ref.empty() || !file.empty()) {
      return KeyError(auth.Path(ref.empty() ? "secret_file" : "secret"),
                      "is set but ingress.auth.mode is none; remove it or choose a mode");
    }
    return Status::Ok();
  }
  return ResolveSecret(auth, ref, file, base_dir, &out->secret);
}

Status ParseTls(Section tls, const std::string& base_dir, TlsConfig* out) {
  DV_TRY(tls.Check());
  if (!tls.Present()) return Status::Ok();
  out->enabled = true;
  DV_TRY(tls.String("cert_file", &out->cert_file));
  DV_TRY(tls.String("key_file", &out->key_file));
  DV_TRY(tls.String("min_version", &out->min_version));
  DV_TRY(tls.RejectUnknown());
  for (auto [key, value] :
       {std::pair{"cert_file", &out->cert_file}, std::pair{"key_file", &out->key_file}}) {
    if (value->empty()) return KeyError(tls.Path(key), "missing: TLS needs a PEM file");
    if (!value->starts_with("/")) *value = base_dir + "/" + *value;
    std::ifstream probe(*value);
    if (!probe) return KeyError(tls.Path(key), "cannot read " + *value);
  }
  if (out->min_version != "1.2" && out->min_version != "1.3") {
    return KeyError(tls.Path("min_version"), "must be 1.2 or 1.3, got '" + out->min_version + "'");
  }
  return Status::Ok();
}

std::string Lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char ch : name) {
    if (!(std::islower(static_cast<unsigned char>(ch)) ||
          std::isdigit(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-')) {
      return false;
    }
  }
  return true;
}

constexpr const char* kSqlTypes[] = {"text",    "integer",     "bigint", "numeric", "double",
                                     "boolean", "timestamptz", "date",   "uuid",    "jsonb"};
// The columns every mapped table has.
constexpr const char* kSqlReserved[] = {"id", "attributes", "version", "deleted", "updated_at"};

Status ParseSqlTables(Section& a, SqlConfig* out) {
  YAML::Node tables = a.Raw("tables");
  if (!tables || tables.IsNull()) return Status::Ok();
  if (!tables.IsMap()) {
    return KeyError(a.Path("tables"), "must be a mapping of Dataverse table to its mapping");
  }
  std::set<std::string> sql_names;
  for (const auto& kv : tables) {
    SqlTable t;
    t.entity = kv.first.as<std::string>();
    Section ts(kv.second, a.Path("tables") + "." + t.entity);
    DV_TRY(ts.Check());
    if (t.entity != Lower(t.entity) || !ValidSqlIdentifier(t.entity)) {
      return KeyError(ts.Name(), "a Dataverse table logical name (a-z, 0-9, '_') is expected");
    }
    if (out->FindTable(t.entity) != nullptr) return KeyError(ts.Name(), "duplicate key");
    t.table = out->table_prefix + t.entity;
    DV_TRY(ts.String("table", &t.table));
    if (!ValidSqlIdentifier(t.table)) {
      return KeyError(ts.Path("table"), "'" + t.table +
                                            "' is not a SQL identifier dvrouter accepts "
                                            "(a-z, 0-9, '_', not starting with a digit, <= 63)");
    }
    if (!sql_names.insert(t.table).second) {
      return KeyError(ts.Path("table"), "'" + t.table + "' is mapped twice");
    }
    YAML::Node cols = ts.Raw("columns");
    if (cols && !cols.IsNull()) {
      if (!cols.IsSequence()) {
        return KeyError(ts.Path("columns"), "must be a list of {attribute, column, type} entries");
      }
      std::set<std::string> col_names;
      for (size_t i = 0; i < cols.size(); ++i) {
        Section cs(cols[i], ts.Path("columns") + "[" + std::to_string(i) + "]");
        DV_TRY(cs.Check());
        if (!cols[i].IsMap()) return KeyError(cs.Name(), "must be a mapping");
        SqlColumn col;
        DV_TRY(cs.String("attribute", &col.attribute));
        col.attribute = Lower(col.attribute);
        if (col.attribute.empty()) return KeyError(cs.Path("attribute"), "missing");
        if (!ValidSqlIdentifier(col.attribute)) {
          return KeyError(cs.Path("attribute"),
                          "'" + col.attribute + "' is not an attribute logical name");
        }
        col.column = col.attribute;
        DV_TRY(cs.String("column", &col.column));
        if (!ValidSqlIdentifier(col.column)) {
          return KeyError(cs.Path("column"),
                          "'" + col.column +
                              "' is not a SQL identifier dvrouter accepts (a-z, 0-9, '_', "
                              "not starting with a digit, <= 63)");
        }
        for (const char* r : kSqlReserved) {
          if (col.column == r) {
            return KeyError(cs.Path("column"),
                            "'" + col.column + "' is one of the columns dvrouter manages");
          }
        }
        if (!col_names.insert(col.column).second) {
          return KeyError(cs.Path("column"), "'" + col.column + "' appears twice");
        }
        DV_TRY(cs.String("type", &col.type));
        col.type = Lower(col.type);
        bool known = false;
        for (const char* ty : kSqlTypes) known = known || col.type == ty;
        if (!known) {
          return KeyError(cs.Path("type"),
                          "must be one of text, integer, bigint, numeric, double, boolean, "
                          "timestamptz, date, uuid, jsonb; got '" +
                              col.type + "'");
        }
        DV_TRY(cs.RejectUnknown());
        t.columns.push_back(std::move(col));
      }
    }
    DV_TRY(ts.RejectUnknown());
    out->tables.push_back(std::move(t));
  }
  return Status::Ok();
}

Status ParseSql(Section& a, const std::string& type, const std::string& data_dir,
                const std::string& base_dir, SqlConfig* out) {
  if (type == "postgres") {
    DV_TRY(a.String("host", &out->host));
    if (out->host.empty()) return KeyError(a.Path("host"), "must not be empty");
    uint64_t port = out->port;
    DV_TRY(a.Count("port", 1, 65535, &port));
    out->port = static_cast<uint16_t>(port);
    DV_TRY(a.String("dbname", &out->dbname));
    DV_TRY(a.String("user", &out->user));
    if (out->dbname.empty()) return KeyError(a.Path("dbname"), "must not be empty");
    if (out->user.empty()) return KeyError(a.Path("user"), "must not be empty");
    std::string ref, file;
    DV_TRY(a.String("password", &ref));
    DV_TRY(a.String("password_file", &file));
    if (!ref.empty() || !file.empty()) {
      DV_TRY(ResolveSecret(a, ref, file, base_dir, &out->password, "password"));
    }
    DV_TRY(a.String("sslmode", &out->sslmode));
    bool mode_ok = false;
    for (const char* m : {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}) {
      mode_ok = mode_ok || out->sslmode == m;
    }
    if (!mode_ok) {
      return KeyError(a.Path("sslmode"),
                      "must be disable, allow, prefer, require, verify-ca or verify-full, got '" +
                          out->sslmode + "'");
    }
    DV_TRY(a.String("sslrootcert", &out->sslrootcert));
    if (!out->sslrootcert.empty()) {
      if (!out->sslrootcert.starts_with("/")) out->sslrootcert = base_dir + "/" + out->sslrootcert;
      std::ifstream probe(out->sslrootcert);
      if (!probe) return KeyError(a.Path("sslrootcert"), "cannot read " + out->sslrootcert);
    } else if (out->sslmode == "verify-ca" || out->sslmode == "verify-full") {
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
  DV_TRY(a.Bool("create_tables", &out->create_tables));
  std::string del = "soft";
  DV_TRY(a.String("delete", &del));
  if (del != "soft" && del != "hard") {
    return KeyError(a.Path("delete"), "must be soft or hard, got '" + del + "'");
  }
  out->hard_delete = del == "hard";
  return ParseSqlTables(a, out);
}

Status ParseClickHouse(Section& a, const std::string& base_dir, ClickHouseConfig* out) {
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
  std::string ref, file;
  DV_TRY(a.String("password", &ref));
  DV_TRY(a.String("password_file", &file));
  if (!ref.empty() || !file.empty()) {
    DV_TRY(ResolveSecret(a, ref, file, base_dir, &out->password, "password"));
  }
  DV_TRY(a.String("ca_file", &out->ca_file));
  if (!out->ca_file.empty()) {
    if (!out->ca_file.starts_with("/")) out->ca_file = base_dir + "/" + out->ca_file;
    std::ifstream probe(out->ca_file);
    if (!probe) return KeyError(a.Path("ca_file"), "cannot read " + out->ca_file);
  }
  DV_TRY(a.Bool("create_table", &out->create_table));
  std::string compression = "gzip";
  DV_TRY(a.String("compression", &compression));
  if (compression != "gzip" && compression != "none") {
    return KeyError(a.Path("compression"), "must be gzip or none, got '" + compression + "'");
  }
  out->gzip = compression == "gzip";
  DV_TRY(a.Bytes("max_insert_bytes", 64 << 10, 1ull << 30, &out->max_insert_bytes));
  DV_TRY(a.Count("connections", 1, 64, &out->connections));
  DV_TRY(a.DurationMs("connect_timeout", 100, 600'000, &out->connect_timeout_ms));
  DV_TRY(a.DurationMs("request_timeout", 100, 3'600'000, &out->request_timeout_ms));
  YAML::Node cols = a.Raw("columns");
  if (!cols || cols.IsNull()) return Status::Ok();
  if (!cols.IsSequence()) {
    return KeyError(a.Path("columns"), "must be a list of {attribute, column, type} entries");
  }
  std::set<std::string> names;
  for (size_t i = 0; i < cols.size(); ++i) {
    Section cs(cols[i], a.Path("columns") + "[" + std::to_string(i) + "]");
    DV_TRY(cs.Check());
    if (!cols[i].IsMap()) return KeyError(cs.Name(), "must be a mapping");
    ClickHouseColumn col;
    DV_TRY(cs.String("attribute", &col.attribute));
    col.attribute = Lower(col.attribute);
    if (col.attribute.empty()) return KeyError(cs.Path("attribute"), "missing");
    if (!ValidSqlIdentifier(col.attribute)) {
      return KeyError(cs.Path("attribute"),
                      "'" + col.attribute + "' is not an attribute logical name");
    }
    col.column = col.attribute;
    DV_TRY(cs.String("column", &col.column));
    if (!ValidSqlIdentifier(col.column)) {
      return KeyError(cs.Path("column"),
                      "'" + col.column + "' is not an identifier dvrouter accepts (a-z, 0-9, '_')");
    }
    for (const char* r :
         {"event_id", "seq", "table_name", "row_id", "message", "stage", "operation_time",
          "operation_time_ms", "received_time", "received_time_ms", "attributes"}) {
      if (col.column == r) {
        return KeyError(cs.Path("column"),
                        "'" + col.column + "' is one of the columns dvrouter manages");
      }
    }
    if (!names.insert(col.column).second) {
      return KeyError(cs.Path("column"), "'" + col.column + "' appears twice");
    }
    DV_TRY(cs.String("type", &col.type));
    bool known = false;
    for (const char* t : {"String", "Int64", "UInt64", "Float64", "UInt8", "DateTime"}) {
      known = known || col.type == t;
    }
    if (!known) {
      return KeyError(
          cs.Path("type"),
          "must be String, Int64, UInt64, Float64, UInt8 or DateTime, got '" + col.type + "'");
    }
    DV_TRY(cs.RejectUnknown());
    out->columns.push_back(std::move(col));
  }
  return Status::Ok();
}

// OAuth 2.0 client credentials: token_url, client_id, client_secret (or _file), scope.
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
  std::string ref, file;
  DV_TRY(auth.String("client_secret", &ref));
  DV_TRY(auth.String("client_secret_file", &file));
  return ResolveSecret(auth, ref, file, base_dir, client_secret, "client_secret");
}

// An http(s) base URL without trailing slashes, and an optional readable CA file.
Status ParseBaseUrl(Section& a, const std::string& key, const std::string& base_dir,
                    std::string* url, std::string* ca_file) {
  DV_TRY(a.String(key, url));
  if (url->empty()) return KeyError(a.Path(key), "missing: the service's base URL");
  if (!(url->starts_with("http://") || url->starts_with("https://"))) {
    return KeyError(a.Path(key), "must start with http:// or https://, got '" + *url + "'");
  }
  while (url->ends_with("/")) url->pop_back();
  DV_TRY(a.String("ca_file", ca_file));
  if (!ca_file->empty()) {
    if (!ca_file->starts_with("/")) *ca_file = base_dir + "/" + *ca_file;
    std::ifstream probe(*ca_file);
    if (!probe) return KeyError(a.Path("ca_file"), "cannot read " + *ca_file);
  }
  return Status::Ok();
}

Status ParseErp(Section& a, const std::string& base_dir, ErpConfig* out) {
  DV_TRY(ParseBaseUrl(a, "base_url", base_dir, &out->base_url, &out->ca_file));
  DV_TRY(a.DurationMs("connect_timeout", 100, 600'000, &out->connect_timeout_ms));
  DV_TRY(a.DurationMs("request_timeout", 100, 3'600'000, &out->request_timeout_ms));
  Section conc = a.Child("concurrency");
  DV_TRY(conc.Check());
  DV_TRY(conc.Count("max", 1, 4096, &out->max_concurrency));
  DV_TRY(conc.Bool("adaptive", &out->adaptive));
  DV_TRY(conc.RejectUnknown());

  Section auth = a.Child("auth");
  DV_TRY(auth.Check());
  ErpAuth& au = out->auth;
  DV_TRY(auth.String("mode", &au.mode));
  std::string ref, file;
  if (au.mode == "none") {
  } else if (au.mode == "basic") {
    DV_TRY(auth.String("user", &au.user));
    if (au.user.empty()) return KeyError(auth.Path("user"), "missing: basic needs a user");
    DV_TRY(auth.String("password", &ref));
    DV_TRY(auth.String("password_file", &file));
    DV_TRY(ResolveSecret(auth, ref, file, base_dir, &au.password, "password"));
  } else if (au.mode == "api_key") {
    DV_TRY(auth.String("header", &au.header));
    if (au.header.empty()) return KeyError(auth.Path("header"), "must name the key's header");
    DV_TRY(auth.String("key", &ref));
    DV_TRY(auth.String("key_file", &file));
    DV_TRY(ResolveSecret(auth, ref, file, base_dir, &au.key, "key"));
  } else if (au.mode == "oauth2") {
    DV_TRY(ParseClientCredentials(auth, base_dir, &au.token_url, &au.client_id, &au.client_secret,
                                  &au.scope));
  } else {
    return KeyError(auth.Path("mode"),
                    "must be none, basic, api_key or oauth2, got '" + au.mode + "'");
  }
  DV_TRY(auth.RejectUnknown());

  DV_TRY(a.String("profile", &out->profile));
  if (out->profile != "generic" && out->profile != "sap_odata") {
    return KeyError(a.Path("profile"), "must be generic or sap_odata, got '" + out->profile + "'");
  }
  DV_TRY(a.String("csrf_path", &out->csrf_path));
  if (!out->csrf_path.starts_with("/")) return KeyError(a.Path("csrf_path"), "must start with '/'");
  Section as = a.Child("async");
  DV_TRY(as.Check());
  ErpAsync& aj = out->async;
  auto pointer = [&](const std::string& key, std::string* p) -> Status {
    DV_TRY(as.String(key, p));
    if (!p->starts_with("/"))
      return KeyError(as.Path(key), "must be a JSON pointer such as /status");
    return Status::Ok();
  };
  DV_TRY(pointer("status_pointer", &aj.status_pointer));
  DV_TRY(pointer("error_pointer", &aj.error_pointer));
  DV_TRY(as.Strings("completed", &aj.completed));
  DV_TRY(as.Strings("failed", &aj.failed));
  if (aj.completed.empty() || aj.failed.empty()) {
    return KeyError(as.Path(aj.completed.empty() ? "completed" : "failed"),
                    "must list the status values that mean it");
  }
  Section cb = as.Child("callback");
  DV_TRY(cb.Check());
  if (cb.Present()) {
    std::string ref, file;
    DV_TRY(cb.String("secret", &ref));
    DV_TRY(cb.String("secret_file", &file));
    DV_TRY(ResolveSecret(cb, ref, file, base_dir, &aj.callback_secret, "secret"));
    DV_TRY(cb.String("public_url", &aj.public_url));
    while (aj.public_url.ends_with("/")) aj.public_url.pop_back();
    if (!aj.public_url.empty() && !aj.public_url.starts_with("https://") &&
        !aj.public_url.starts_with("http://")) {
      return KeyError(cb.Path("public_url"), "must be the router's http(s) base URL");
    }
  }
  DV_TRY(cb.RejectUnknown());
  Section poll = as.Child("poll");
  DV_TRY(poll.Check());
  if (poll.Present()) {
    aj.poll_interval_ms = 5000;
    DV_TRY(poll.String("url_pointer", &aj.poll_url_pointer));
    if (!aj.poll_url_pointer.starts_with("/")) {
      return KeyError(poll.Path("url_pointer"), "must be a JSON pointer such as /statusUrl");
    }
    DV_TRY(poll.DurationMs("interval", 10, 3'600'000, &aj.poll_interval_ms));
    DV_TRY(poll.DurationMs("timeout", 1000, 30ull * 24 * 3'600'000, &aj.poll_timeout_ms));
  }
  DV_TRY(poll.RejectUnknown());
  DV_TRY(as.RejectUnknown());

  YAML::Node reqs = a.Raw("requests");
  if (!reqs || reqs.IsNull() || !reqs.IsSequence() || reqs.size() == 0) {
    return KeyError(a.Path("requests"),
                    "missing: a list of request templates (method, path, body, ...)");
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    Section r(reqs[i], a.Path("requests") + "[" + std::to_string(i) + "]");
    DV_TRY(r.Check());
    if (!reqs[i].IsMap()) return KeyError(r.Name(), "must be a mapping");
    ErpRequest q;
    q.name = "request-" + std::to_string(i);
    DV_TRY(r.String("name", &q.name));
    DV_TRY(r.Strings("tables", &q.tables));
    for (std::string& t : q.tables) t = Lower(t);
    DV_TRY(r.Strings("messages", &q.messages));
    for (std::string& m : q.messages) m = Lower(m);
    DV_TRY(r.String("method", &q.method));
    if (q.method != "POST" && q.method != "PUT" && q.method != "PATCH" && q.method != "DELETE") {
      return KeyError(r.Path("method"),
                      "must be POST, PUT, PATCH or DELETE, got '" + q.method + "'");
    }
    DV_TRY(r.String("path", &q.path));
    if (!q.path.starts_with("/")) return KeyError(r.Path("path"), "must start with '/'");
    if (Result<JsonTemplate> t = JsonTemplate::Compile(q.path); !t.ok()) {
      return KeyError(r.Path("path"), std::string(t.status().message()));
    }
    YAML::Node headers = r.Raw("headers");
    if (headers && !headers.IsNull()) {
      if (!headers.IsMap()) return KeyError(r.Path("headers"), "must be a mapping of name: value");
      for (const auto& kv : headers) {
        if (!kv.second.IsScalar()) {
          return KeyError(r.Path("headers") + "." + kv.first.as<std::string>(), "must be a string");
        }
        q.headers.emplace_back(kv.first.as<std::string>(), kv.second.Scalar());
      }
    }
    DV_TRY(r.String("body", &q.body));
    if (!q.body.empty()) {
      Result<JsonTemplate> t = JsonTemplate::Compile(q.body);
      if (!t.ok()) return KeyError(r.Path("body"), std::string(t.status().message()));
      // Placeholders are JSON values: the body must be JSON with any value in them.
      for (const char* probe : {"null", "\"x\""}) {
        std::string rendered;
        t->Render([&](std::string_view, std::string* o) { *o += probe; }, &rendered);
        simdjson::dom::parser parser;
        simdjson::dom::element e;
        if (auto err = parser.parse(rendered).get(e)) {
          return KeyError(r.Path("body"),
                          std::string("not JSON once placeholders are filled (") +
                              simdjson::error_message(err) +
                              "); write placeholders bare, without quotes: \"id\": {{event.id}}");
        }
      }
    }
    YAML::Node capture = r.Raw("capture");
    if (capture && !capture.IsNull()) {
      if (!capture.IsMap()) {
        return KeyError(r.Path("capture"), "must be a mapping of name: JSON pointer");
      }
      for (const auto& kv : capture) {
        const std::string name = kv.first.as<std::string>();
        if (!kv.second.IsScalar() ||
            !(kv.second.Scalar().empty() || kv.second.Scalar().starts_with("/"))) {
          return KeyError(r.Path("capture") + "." + name,
                          "must be a JSON pointer such as /orderNumber");
        }
        q.capture.emplace_back(name, kv.second.Scalar());
      }
    }
    DV_TRY(r.RejectUnknown());
    out->requests.push_back(std::move(q));
  }
  return Status::Ok();
}

Status ParseDataverse(Section& a, const std::string& base_dir, DataverseConfig* out) {
  DV_TRY(a.String("source", &out->source));
  if (out->source.empty()) {
    return KeyError(a.Path("source"), "missing: the adapter whose statuses are written back");
  }
  DV_TRY(ParseBaseUrl(a, "url", base_dir, &out->url, &out->ca_file));
  if (out->url.find('/', out->url.find("//") + 2) != std::string::npos) {
    return KeyError(a.Path("url"), "must be the organization's root URL, without a path");
  }
  DV_TRY(a.String("api_path", &out->api_path));
  if (!out->api_path.starts_with("/")) return KeyError(a.Path("api_path"), "must start with '/'");
  while (out->api_path.ends_with("/")) out->api_path.pop_back();
  DV_TRY(a.DurationMs("connect_timeout", 100, 600'000, &out->connect_timeout_ms));
  DV_TRY(a.DurationMs("request_timeout", 100, 3'600'000, &out->request_timeout_ms));
  Section auth = a.Child("auth");
  DV_TRY(auth.Check());
  if (!auth.Present()) {
    return KeyError(a.Path("auth"), "missing: token_url, client_id and client_secret");
  }
  DV_TRY(ParseClientCredentials(auth, base_dir, &out->token_url, &out->client_id,
                                &out->client_secret, &out->scope));
  if (out->scope.empty()) out->scope = out->url + "/.default";
  DV_TRY(auth.RejectUnknown());

  auto names = [&](const std::string& key, auto&& each) -> Status {
    YAML::Node n = a.Raw(key);
    if (!n || n.IsNull()) return Status::Ok();
    if (!n.IsMap()) return KeyError(a.Path(key), "must be a mapping");
    for (const auto& kv : n) {
      const std::string k = kv.first.as<std::string>();
      if (!kv.second.IsScalar() || kv.second.Scalar().empty()) {
        return KeyError(a.Path(key) + "." + k, "must be a non-empty value");
      }
      DV_TRY(each(k, kv.second.Scalar()));
    }
    return Status::Ok();
  };
  auto identifier = [](const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    });
  };
  DV_TRY(names("entity_sets", [&](const std::string& table, const std::string& set) -> Status {
    if (!identifier(set)) {
      return KeyError(a.Path("entity_sets") + "." + table, "not an entity set name: '" + set + "'");
    }
    out->entity_sets.emplace_back(Lower(table), set);
    return Status::Ok();
  }));
  DV_TRY(a.String("status_column", &out->status_column));
  if (!identifier(out->status_column)) {
    return KeyError(a.Path("status_column"), "missing or not a column name");
  }
  DV_TRY(names("status_values", [&](const std::string& state, const std::string& v) -> Status {
    const std::string path = a.Path("status_values") + "." + state;
    if (state != "pending" && state != "submitted" && state != "processing" &&
        state != "completed" && state != "failed") {
      return KeyError(path, "states are pending, submitted, processing, completed, failed");
    }
    char* end = nullptr;
    errno = 0;
    const long long value = std::strtoll(v.c_str(), &end, 10);
    if (errno != 0 || *end != '\0' || value < 0 || value > INT32_MAX) {
      return KeyError(path,
                      "must be an option-set value (a non-negative integer), got '" + v + "'");
    }
    out->status_values.emplace_back(state, value);
    return Status::Ok();
  }));
  for (const char* needed : {"completed", "failed"}) {
    bool found = false;
    for (const auto& [state, v] : out->status_values) found = found || state == needed;
    if (!found) {
      return KeyError(a.Path("status_values") + "." + needed, "missing: the option value to write");
    }
  }
  DV_TRY(a.String("error_column", &out->error_column));
  if (!out->error_column.empty() && !identifier(out->error_column)) {
    return KeyError(a.Path("error_column"), "not a column name");
  }
  DV_TRY(names("answer_columns", [&](const std::string& column, const std::string& name) {
    if (!identifier(column)) return KeyError(a.Path("answer_columns"), "not a column: " + column);
    out->answer_columns.emplace_back(column, name);
    return Status::Ok();
  }));
  DV_TRY(a.Count("max_concurrency", 1, 52, &out->max_concurrency));
  DV_TRY(a.Double("max_requests_per_second", 0.1, 100, &out->max_requests_per_second));
  return Status::Ok();
}

Status ParseAdapter(Section a, const std::string& name, const std::string& data_dir,
                    const std::string& base_dir, AdapterConfig* out) {
  DV_TRY(a.Check());
  out->name = name;
  if (!ValidName(name)) {
    return KeyError(a.Name(), "adapter names use a-z, 0-9, '_' and '-' (at most 64)");
  }
  DV_TRY(a.String("type", &out->type));
  if (out->type.empty()) {
    return KeyError(a.Path("type"),
                    "missing: the adapter type (lake, postgres, sqlite, clickhouse, erp)");
  }
  if (out->type == "clickhouse") {
    // ClickHouse wants few large inserts.
    out->max_batch_events = 10'000;
    out->linger_ms = 1000;
  }
  Section batch = a.Child("batch");
  DV_TRY(batch.Check());
  DV_TRY(batch.Count("max_events", 1, 100'000, &out->max_batch_events));
  DV_TRY(batch.DurationMs("linger", 0, 60'000, &out->linger_ms));
  DV_TRY(batch.RejectUnknown());
  DV_TRY(a.Count("max_in_flight", 1, 4096, &out->max_in_flight));
  Section retry = a.Child("retry");
  DV_TRY(retry.Check());
  DV_TRY(retry.DurationMs("initial_backoff", 1, 3'600'000, &out->initial_backoff_ms));
  DV_TRY(retry.DurationMs("max_backoff", 1, 24ull * 3'600'000, &out->max_backoff_ms));
  if (out->max_backoff_ms < out->initial_backoff_ms) {
    return KeyError(retry.Path("max_backoff"), "must be at least retry.initial_backoff");
  }
  DV_TRY(retry.Double("multiplier", 1.0, 10.0, &out->backoff_multiplier));
  DV_TRY(retry.Count("max_attempts", 0, 1'000'000, &out->max_attempts));
  DV_TRY(retry.DurationMs("max_age", 0, 365ull * 24 * 3'600'000, &out->max_age_ms));
  DV_TRY(retry.DurationMs("max_retry_after", 1000, 24ull * 3'600'000, &out->max_retry_after_ms));
  DV_TRY(retry.RejectUnknown());
  Section breaker = a.Child("breaker");
  DV_TRY(breaker.Check());
  DV_TRY(breaker.Count("failures", 1, 1'000'000, &out->breaker_failures));
  DV_TRY(breaker.DurationMs("open_for", 10, 3'600'000, &out->breaker_open_ms));
  DV_TRY(breaker.RejectUnknown());
  if (out->type == "lake") {
    out->lake.dir = data_dir + "/lake";
    DV_TRY(a.String("dir", &out->lake.dir));
    out->lake.dir_defaulted = out->lake.dir == data_dir + "/lake";
    if (out->lake.dir.empty()) return KeyError(a.Path("dir"), "must not be empty");
    DV_TRY(a.Bytes("roll_bytes", 4096, 4ull << 30, &out->lake.roll_bytes));
    DV_TRY(a.DurationMs("roll_interval", 10, 3'600'000, &out->lake.roll_ms));
  } else if (out->type == "postgres" || out->type == "sqlite") {
    DV_TRY(ParseSql(a, out->type, data_dir, base_dir, &out->sql));
  } else if (out->type == "clickhouse") {
    DV_TRY(ParseClickHouse(a, base_dir, &out->clickhouse));
  } else if (out->type == "erp") {
    DV_TRY(ParseErp(a, base_dir, &out->erp));
  } else if (out->type == "dataverse") {
    DV_TRY(ParseDataverse(a, base_dir, &out->dataverse));
  } else {
    return KeyError(a.Path("type"),
                    "unknown adapter type '" + out->type +
                        "' (known: lake, postgres, sqlite, clickhouse, erp, dataverse)");
  }
  return a.RejectUnknown();
}

Status ParseDelivery(Section& root, const std::string& base_dir, Config* c) {
  Section d = root.Child("delivery");
  DV_TRY(d.Check());
  DV_TRY(d.Count("workers", 1, 64, &c->delivery.workers));
  DV_TRY(d.Count("queue_capacity", 16, 1u << 24, &c->delivery.queue_capacity));
  DV_TRY(d.Count("window_events", 1, 1u << 20, &c->delivery.window_events));
  DV_TRY(d.DurationMs("cursor_flush_interval", 10, 60'000, &c->delivery.cursor_flush_ms));
  DV_TRY(d.DurationMs("retention", 0, 365ull * 24 * 3'600'000, &c->delivery.retention_ms));
  DV_TRY(d.Count("status_entries", 0, 100'000'000, &c->delivery.status_entries));
  DV_TRY(d.Bytes("record_cache_bytes", 0, 64ull << 30, &c->delivery.record_cache_bytes));
  DV_TRY(d.RejectUnknown());

  Section guard = root.Child("loop_guard");
  DV_TRY(guard.Check());
  DV_TRY(guard.Strings("user_ids", &c->loop_guard.user_ids));
  DV_TRY(guard.Strings("ignore_columns", &c->loop_guard.ignore_columns));
  for (std::string& u : c->loop_guard.user_ids) u = Lower(u);
  for (std::string& col : c->loop_guard.ignore_columns) col = Lower(col);
  DV_TRY(guard.RejectUnknown());

  YAML::Node adapters = root.Raw("adapters");
  if (!adapters) {
    // The embedded default: everything to the lake.
    AdapterConfig lake;
    lake.name = "lake";
    lake.type = "lake";
    lake.lake.dir = c->journal.data_dir + "/lake";
    c->adapters.push_back(lake);
    RouteConfig all;
    all.name = "everything";
    all.adapters = {"lake"};
    c->routes.push_back(all);
  } else if (!adapters.IsNull()) {
    if (!adapters.IsMap()) return KeyError("adapters", "must be a mapping of name to settings");
    std::set<std::string> names;
    for (const auto& kv : adapters) {
      const std::string name = kv.first.as<std::string>();
      if (!names.insert(name).second) return KeyError("adapters." + name, "duplicate key");
      AdapterConfig a;
      DV_TRY(ParseAdapter(Section(kv.second, "adapters." + name), name, c->journal.data_dir,
                          base_dir, &a));
      c->adapters.push_back(std::move(a));
    }
    if (c->adapters.size() > 64) return KeyError("adapters", "at most 64 adapters");
    for (const AdapterConfig& a : c->adapters) {
      if (a.type != "dataverse") continue;
      const AdapterConfig* src = c->FindAdapter(a.dataverse.source);
      if (src == nullptr || src->type == "dataverse") {
        return KeyError(
            "adapters." + a.name + ".source",
            "must name another adapter (not a dataverse one), got '" + a.dataverse.source + "'");
      }
    }
  }

  YAML::Node routes = root.Raw("routes");
  if (routes && !routes.IsNull()) {
    if (!adapters) c->routes.clear();  // explicit routes replace the default one
    if (!routes.IsSequence()) return KeyError("routes", "must be a list of routes");
    for (size_t i = 0; i < routes.size(); ++i) {
      Section r(routes[i], "routes[" + std::to_string(i) + "]");
      DV_TRY(r.Check());
      RouteConfig route;
      route.name = "route-" + std::to_string(i);
      DV_TRY(r.String("name", &route.name));
      DV_TRY(r.Strings("tables", &route.tables));
      for (std::string& t : route.tables) t = Lower(t);
      DV_TRY(r.Strings("messages", &route.messages));
      for (std::string& m : route.messages) m = Lower(m);
      std::vector<std::string> stages;
      DV_TRY(r.Strings("stages", &stages));
      for (const std::string& st : stages) {
        if (st != "10" && st != "20" && st != "40") {
          return KeyError(r.Path("stages"), "stages are 10, 20 or 40, got '" + st + "'");
        }
        route.stages.push_back(std::stoi(st));
      }
      DV_TRY(r.Strings("changed_columns", &route.changed_columns));
      for (std::string& col : route.changed_columns) col = Lower(col);
      DV_TRY(r.Strings("adapters", &route.adapters));
      if (route.adapters.empty()) {
        return KeyError(r.Path("adapters"), "missing: which adapters the route sends to");
      }
      for (const std::string& a : route.adapters) {
        const AdapterConfig* ac = c->FindAdapter(a);
        if (ac == nullptr) {
          return KeyError(r.Path("adapters"), "no adapter named '" + a + "' under adapters");
        }
        if (ac->type == "dataverse") {
          return KeyError(r.Path("adapters"),
                          "'" + a + "' is a dataverse write-back adapter: it takes the statuses " +
                              "of its source adapter, not routed events");
        }
      }
      DV_TRY(r.RejectUnknown());
      c->routes.push_back(std::move(route));
    }
  }
  return Status::Ok();
}

Status ParseRegistration(Section& root, Config* c) {
  Section r = root.Child("registration");
  DV_TRY(r.Check());
  if (!r.Present()) return Status::Ok();
  RegistrationConfig& out = c->registration;
  out.present = true;
  DV_TRY(r.String("dataverse", &out.dataverse));
  const AdapterConfig* dv = c->FindAdapter(out.dataverse);
  if (dv == nullptr || dv->type != "dataverse") {
    return KeyError(
        r.Path("dataverse"),
        "must name a dataverse adapter (its url and auth are used), got '" + out.dataverse + "'");
  }
  DV_TRY(r.String("endpoint_name", &out.endpoint_name));
  if (out.endpoint_name.empty()) return KeyError(r.Path("endpoint_name"), "must not be empty");
  DV_TRY(r.String("webhook_url", &out.webhook_url));
  if (!out.webhook_url.starts_with("https://") && !out.webhook_url.starts_with("http://")) {
    return KeyError(r.Path("webhook_url"),
                    "missing: the router's public URL (https://host/webhooks/dataverse)");
  }
  if (c->ingress.auth.mode == AuthMode::kNone) {
    return KeyError(r.Path("webhook_url"),
                    "ingress.auth.mode is none: Dataverse would post without a secret");
  }
  YAML::Node steps = r.Raw("steps");
  if (!steps || !steps.IsSequence() || steps.size() == 0) {
    return KeyError(r.Path("steps"), "missing: a list of {table, messages, ...}");
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    Section s(steps[i], r.Path("steps") + "[" + std::to_string(i) + "]");
    DV_TRY(s.Check());
    RegistrationStep st;
    DV_TRY(s.String("table", &st.table));
    st.table = Lower(st.table);
    if (st.table.empty() || !ValidSqlIdentifier(st.table)) {
      return KeyError(s.Path("table"), "missing or not a table's logical name");
    }
    DV_TRY(s.Strings("messages", &st.messages));
    if (st.messages.empty()) return KeyError(s.Path("messages"), "missing: e.g. [Create, Update]");
    for (const std::string& m : st.messages) {
      if (m.empty() || !std::all_of(m.begin(), m.end(), [](char ch) {
            return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_';
          })) {
        return KeyError(s.Path("messages"), "not a message name: '" + m + "'");
      }
    }
    uint64_t stage = 40;
    DV_TRY(s.Count("stage", 10, 40, &stage));
    if (stage != 10 && stage != 20 && stage != 40) {
      return KeyError(s.Path("stage"), "must be 10, 20 or 40");
    }
    st.stage = static_cast<int32_t>(stage);
    std::string mode = "async";
    DV_TRY(s.String("mode", &mode));
    if (mode != "async" && mode != "sync") return KeyError(s.Path("mode"), "must be async or sync");
    st.async = mode == "async";
    if (st.async && st.stage != 40) {
      return KeyError(s.Path("mode"), "asynchronous steps run only at stage 40 (PostOperation)");
    }
    uint64_t rank = 1;
    DV_TRY(s.Count("rank", 1, 1000, &rank));
    st.rank = static_cast<int32_t>(rank);
    DV_TRY(s.Strings("filtering_attributes", &st.filtering_attributes));
    for (std::string& a : st.filtering_attributes) a = Lower(a);
    YAML::Node images = s.Raw("images");
    if (images && !images.IsNull()) {
      if (!images.IsSequence()) return KeyError(s.Path("images"), "must be a list");
      for (size_t k = 0; k < images.size(); ++k) {
        Section im(images[k], s.Path("images") + "[" + std::to_string(k) + "]");
        DV_TRY(im.Check());
        RegistrationImage image;
        DV_TRY(im.String("name", &image.name));
        if (image.name.empty()) return KeyError(im.Path("name"), "missing");
        DV_TRY(im.String("type", &image.type));
        if (image.type != "pre" && image.type != "post" && image.type != "both") {
          return KeyError(im.Path("type"), "must be pre, post or both");
        }
        for (const std::string& m : st.messages) {
          if ((m == "Create" && image.type != "post") || (m == "Delete" && image.type != "pre")) {
            return KeyError(im.Path("type"), "a " + m + " step has only " +
                                                 (m == "Create" ? "post" : "pre") + " images");
          }
        }
        DV_TRY(im.Strings("attributes", &image.attributes));
        for (std::string& a : image.attributes) a = Lower(a);
        DV_TRY(im.RejectUnknown());
        st.images.push_back(std::move(image));
      }
    }
    DV_TRY(s.RejectUnknown());
    out.steps.push_back(std::move(st));
  }
  return r.RejectUnknown();
}

// admin.auth: `token: ${ENV}` or `token_file`, both optional (ValidateAdmin says when one is
// needed).
Status ParseAdminAuth(Section auth, const std::string& base_dir, AdminAuthConfig* out) {
  DV_TRY(auth.Check());
  std::string ref, file;
  DV_TRY(auth.String("token", &ref));
  DV_TRY(auth.String("token_file", &file));
  DV_TRY(auth.Bool("protect_metrics", &out->protect_metrics));
  DV_TRY(auth.RejectUnknown());
  if (!ref.empty() || !file.empty()) {
    DV_TRY(ResolveSecret(auth, ref, file, base_dir, &out->token, "token"));
  }
  if (out->protect_metrics && out->token.empty()) {
    return KeyError("admin.auth.protect_metrics", "needs admin.auth.token");
  }
  return Status::Ok();
}

bool IsLoopbackHost(const std::string& host) {
  unsigned char a[16];
  if (inet_pton(AF_INET, host.c_str(), a) == 1) return a[0] == 127;
  if (inet_pton(AF_INET6, host.c_str(), a) != 1) return false;
  static constexpr unsigned char kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::equal(a, a + 16, kLoopback) ||
         (std::equal(a, a + 12, kMapped) && a[12] == 127);  // ::ffff:127.x.y.z
}

Status ParseRoot(const YAML::Node& root_node, const std::string& base_dir, Config* c) {
  Section root(root_node, "");
  DV_TRY(root.Check());

  Section ingress = root.Child("ingress");
  DV_TRY(ingress.Check());
  DV_TRY(ingress.Endpoint("listen", &c->ingress.listen));
  DV_TRY(ingress.String("path", &c->ingress.path));
  if (!c->ingress.path.starts_with("/")) {
    return KeyError("ingress.path", "must start with '/'");
  }
  uint64_t threads = static_cast<uint64_t>(c->ingress.io_threads);
  DV_TRY(ingress.Count("io_threads", 1, 64, &threads));
  c->ingress.io_threads = static_cast<int>(threads);
  // Dataverse contexts are at most ~256 KB; 16 MiB leaves room and stays far below the journal's
  // 64 MiB frame limit.
  DV_TRY(ingress.Bytes("max_body_bytes", 1024, 16ull << 20, &c->ingress.max_body_bytes));
  DV_TRY(ingress.DurationMs("header_timeout", 10, 3'600'000, &c->ingress.header_timeout_ms));
  DV_TRY(ingress.DurationMs("body_timeout", 10, 3'600'000, &c->ingress.body_timeout_ms));
  DV_TRY(ingress.Count("max_connections", 1, 1'000'000, &c->ingress.max_connections));
  uint64_t retry_after_ms = c->ingress.retry_after_s * 1000;
  DV_TRY(ingress.DurationMs("retry_after", 1000, 3'600'000, &retry_after_ms));
  c->ingress.retry_after_s = retry_after_ms / 1000;
  DV_TRY(ParseAuth(ingress.Child("auth"), base_dir, &c->ingress.auth));
  DV_TRY(ParseTls(ingress.Child("tls"), base_dir, &c->ingress.tls));
  DV_TRY(ingress.RejectUnknown());

  Section admin = root.Child("admin");
  DV_TRY(admin.Check());
  DV_TRY(admin.Endpoint("listen", &c->admin.listen));
  DV_TRY(ParseAdminAuth(admin.Child("auth"), base_dir, &c->admin.auth));
  DV_TRY(admin.RejectUnknown());
  DV_TRY(ValidateAdmin(c->admin));

  Section journal = root.Child("journal");
  DV_TRY(journal.Check());
  DV_TRY(journal.String("data_dir", &c->journal.data_dir));
  if (c->journal.data_dir.empty()) return KeyError("journal.data_dir", "must not be empty");
  uint64_t partitions = c->journal.partitions;
  DV_TRY(journal.Count("partitions", 1, 65536, &partitions));
  c->journal.partitions = static_cast<uint32_t>(partitions);
  DV_TRY(journal.Bytes("segment_bytes", 64 << 10, 4ull << 30, &c->journal.segment_bytes));
  DV_TRY(journal.Bytes("disk_budget_bytes", 1 << 20, UINT64_MAX, &c->journal.disk_budget_bytes));
  // The segment being written is never deleted: room for one more is what lets delivered
  // history yield.
  if (c->journal.disk_budget_bytes / 2 < c->journal.segment_bytes) {
    return KeyError("journal.disk_budget_bytes", "must be at least twice journal.segment_bytes");
  }
  std::string durability = "fsync";
  DV_TRY(journal.String("durability", &durability));
  if (durability == "fsync") {
    c->journal.fsync = true;
  } else if (durability == "unsafe_no_fsync") {
    c->journal.fsync = false;
  } else {
    return KeyError("journal.durability",
                    "must be fsync or unsafe_no_fsync, got '" + durability + "'");
  }
  DV_TRY(journal.Count("max_batch_events", 1, 65536, &c->journal.max_batch_events));
  DV_TRY(journal.Bytes("page_cache_bytes", 0, UINT64_MAX, &c->journal.page_cache_bytes));
  std::string compression = "zstd";
  DV_TRY(journal.String("compression", &compression));
  if (compression != "zstd" && compression != "none") {
    return KeyError("journal.compression", "must be zstd or none, got '" + compression + "'");
  }
  c->journal.compression = compression == "zstd";
  // Higher levels cost the ingress threads many times the CPU for a few percent (bench/README.md).
  DV_TRY(journal.Count("compression_level", 1, 9, &c->journal.compression_level));
  DV_TRY(journal.RejectUnknown());

  Section dedupe = root.Child("dedupe");
  DV_TRY(dedupe.Check());
  DV_TRY(dedupe.DurationMs("window", 0, 30ull * 24 * 3'600'000, &c->dedupe.window_ms));
  DV_TRY(dedupe.Count("max_entries", 1, 100'000'000, &c->dedupe.max_entries));
  DV_TRY(dedupe.RejectUnknown());

  DV_TRY(ParseDelivery(root, base_dir, c));
  DV_TRY(ParseRegistration(root, c));
  return root.RejectUnknown();
}

}  // namespace

void SetDataDir(Config* config, const std::string& data_dir) {
  for (AdapterConfig& a : config->adapters) {
    if (a.type == "lake" && a.lake.dir_defaulted) a.lake.dir = data_dir + "/lake";
    if (a.type == "sqlite" && a.sql.path_defaulted) a.sql.path = data_dir + "/sqlite/dvrouter.db";
  }
  config->journal.data_dir = data_dir;
}

const SqlTable* SqlConfig::FindTable(std::string_view entity) const {
  for (const SqlTable& t : tables) {
    if (t.entity == entity) return &t;
  }
  return nullptr;
}

const AdapterConfig* Config::FindAdapter(std::string_view name) const {
  for (const AdapterConfig& a : adapters) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

Status ValidateAdmin(const AdminConfig& admin) {
  if (!admin.auth.token.empty() || IsLoopbackHost(admin.listen.host)) return Status::Ok();
  return KeyError("admin.auth.token",
                  "missing: admin.listen " + admin.listen.ToString() +
                      " is not a loopback address, so the admin API needs a token (token: "
                      "${ENV_NAME} or token_file)");
}

Result<Endpoint> ParseEndpoint(std::string_view text) {
  Endpoint ep;
  size_t colon;
  if (text.starts_with("[")) {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return InvalidArgument("expected [ipv6]:port, got '" + std::string(text) + "'");
    }
    ep.host = std::string(text.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return InvalidArgument("expected host:port, got '" + std::string(text) + "'");
    }
    ep.host = std::string(text.substr(0, colon));
  }
  std::string_view port = text.substr(colon + 1);
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || ptr != port.data() + port.size() || port.empty() || value > 65535) {
    return InvalidArgument("port must be 0-65535, got '" + std::string(port) + "'");
  }
  ep.port = static_cast<uint16_t>(value);
  return ep;
}

Result<Config> ParseConfig(std::string_view yaml, const std::string& base_dir) {
  Config config;
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    if (Status st = ParseRoot(root, base_dir, &config); !st.ok()) return st;
  } catch (const YAML::Exception& e) {
    // yaml-cpp reports syntax errors by exception; translate at the boundary.
    return InvalidArgument("YAML syntax error at line " + std::to_string(e.mark.line + 1) +
                           ", column " + std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  return config;
}

Result<Config> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot read configuration file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  size_t slash = path.rfind('/');
  std::string base = slash == std::string::npos ? "." : path.substr(0, slash);
  Result<Config> c = ParseConfig(ss.str(), base);
  if (!c.ok()) return InvalidArgument(path + ": " + std::string(c.status().message()));
  return c;
}

std::string DescribeConfig(const Config& c) {
  static constexpr const char* kModes[] = {"none", "webhook_key", "http_header",
                                           "http_query_string"};
  std::ostringstream o;
  o << "ingress.listen: " << c.ingress.listen.ToString() << "\n"
    << "ingress.path: " << c.ingress.path << "\n"
    << "ingress.io_threads: " << c.ingress.io_threads << "\n"
    << "ingress.max_body_bytes: " << c.ingress.max_body_bytes << "\n"
    << "ingress.header_timeout: " << c.ingress.header_timeout_ms << "ms\n"
    << "ingress.body_timeout: " << c.ingress.body_timeout_ms << "ms\n"
    << "ingress.max_connections: " << c.ingress.max_connections << "\n"
    << "ingress.retry_after: " << c.ingress.retry_after_s << "s\n"
    << "ingress.auth.mode: " << kModes[static_cast<int>(c.ingress.auth.mode)] << "\n"
    << "ingress.auth.secret: " << (c.ingress.auth.secret.empty() ? "(none)" : "(set, redacted)")
    << "\n"
    << "ingress.tls: "
    << (c.ingress.tls.enabled
            ? c.ingress.tls.cert_file + " (TLS " + c.ingress.tls.min_version + "+)"
            : std::string("off (plain HTTP)"))
    << "\n"
    << "admin.listen: " << c.admin.listen.ToString() << "\n"
    << "admin.auth.token: " << (c.admin.auth.token.empty() ? "(none)" : "(set, redacted)") << "\n"
    << "admin.auth.protect_metrics: " << (c.admin.auth.protect_metrics ? "true" : "false") << "\n"
    << "journal.data_dir: " << c.journal.data_dir << "\n"
    << "journal.partitions: " << c.journal.partitions << "\n"
    << "journal.segment_bytes: " << c.journal.segment_bytes << "\n"
    << "journal.disk_budget_bytes: " << c.journal.disk_budget_bytes << "\n"
    << "journal.durability: " << (c.journal.fsync ? "fsync" : "unsafe_no_fsync") << "\n"
    << "journal.max_batch_events: " << c.journal.max_batch_events << "\n"
    << "journal.page_cache_bytes: " << c.journal.page_cache_bytes << "\n"
    << "journal.compression: " << (c.journal.compression ? "zstd" : "none") << "\n"
    << "journal.compression_level: " << c.journal.compression_level << "\n"
    << "dedupe.window: " << c.dedupe.window_ms << "ms\n"
    << "dedupe.max_entries: " << c.dedupe.max_entries << "\n"
    << "delivery.workers: " << c.delivery.workers << "\n"
    << "delivery.queue_capacity: " << c.delivery.queue_capacity << "\n"
    << "delivery.window_events: " << c.delivery.window_events << "\n"
    << "delivery.cursor_flush_interval: " << c.delivery.cursor_flush_ms << "ms\n"
    << "delivery.retention: " << c.delivery.retention_ms << "ms\n"
    << "delivery.status_entries: " << c.delivery.status_entries << "\n"
    << "delivery.record_cache_bytes: " << c.delivery.record_cache_bytes << "\n"
    << "loop_guard.user_ids: " << c.loop_guard.user_ids.size() << " listed\n"
    << "loop_guard.ignore_columns: " << c.loop_guard.ignore_columns.size() << " listed\n";
  if (c.adapters.empty()) o << "adapters: none (events are journaled, not delivered)\n";
  for (const AdapterConfig& a : c.adapters) {
    const std::string k = "adapters." + a.name + ".";
    o << k << "type: " << a.type << "\n"
      << k << "batch: max_events " << a.max_batch_events << ", linger " << a.linger_ms << "ms\n"
      << k << "max_in_flight: " << a.max_in_flight << "\n"
      << k << "retry: initial_backoff " << a.initial_backoff_ms << "ms, max_backoff "
      << a.max_backoff_ms << "ms, multiplier " << a.backoff_multiplier << ", max_attempts "
      << a.max_attempts << ", max_age " << a.max_age_ms << "ms, max_retry_after "
      << a.max_retry_after_ms << "ms\n"
      << k << "breaker: failures " << a.breaker_failures << ", open_for " << a.breaker_open_ms
      << "ms\n";
    if (a.type == "lake") {
      o << k << "dir: " << a.lake.dir << "\n"
        << k << "roll_bytes: " << a.lake.roll_bytes << "\n"
        << k << "roll_interval: " << a.lake.roll_ms << "ms\n";
    } else if (a.type == "postgres") {
      o << k << "host: " << a.sql.host << ":" << a.sql.port << " dbname " << a.sql.dbname
        << " user " << a.sql.user << " password " << (a.sql.password.empty() ? "(none)" : "***")
        << "\n"
        << k << "sslmode: " << a.sql.sslmode
        << (a.sql.sslrootcert.empty() ? "" : " sslrootcert " + a.sql.sslrootcert) << "\n"
        << k << "pool_size: " << a.sql.pool_size << ", statement_timeout "
        << a.sql.statement_timeout_ms << "ms, connect_timeout " << a.sql.connect_timeout_ms
        << "ms, application_name " << a.sql.application_name << "\n";
    } else if (a.type == "sqlite") {
      o << k << "path: " << a.sql.path << "\n";
    }
    if (a.type == "erp") {
      o << k << "base_url: " << a.erp.base_url << ", profile " << a.erp.profile << ", auth "
        << a.erp.auth.mode << ", concurrency " << a.erp.max_concurrency
        << (a.erp.adaptive ? " (adaptive)" : "") << "\n";
      for (const ErpRequest& q : a.erp.requests) {
        o << k << "request " << q.name << ": " << q.method << " " << q.path << " for tables "
          << (q.tables.empty() ? "*" : q.tables[0] + (q.tables.size() > 1 ? ",..." : "")) << "\n";
      }
    }
    if (a.type == "dataverse") {
      const DataverseConfig& dv = a.dataverse;
      o << k << "source: " << dv.source << ", url " << dv.url << dv.api_path << ", token_url "
        << dv.token_url << " client_id " << dv.client_id << " client_secret "
        << (dv.client_secret.empty() ? "(none)" : "***") << " scope " << dv.scope << "\n"
        << k << "status_column: " << dv.status_column;
      for (const auto& [state, v] : dv.status_values) o << " " << state << "=" << v;
      o << (dv.error_column.empty() ? "" : ", error_column " + dv.error_column);
      for (const auto& [col, name] : dv.answer_columns) o << ", " << col << "<-" << name;
      o << "\n"
        << k << "max_concurrency: " << dv.max_concurrency << ", max_requests_per_second "
        << dv.max_requests_per_second << "\n";
    }
    if (a.type == "clickhouse") {
      const ClickHouseConfig& ch = a.clickhouse;
      o << k << "url: " << ch.url << " database " << ch.database << " table " << ch.table
        << " user " << ch.user << " password " << (ch.password.empty() ? "(none)" : "***") << "\n"
        << k << "create_table: " << (ch.create_table ? "yes" : "no") << ", compression "
        << (ch.gzip ? "gzip" : "none") << ", max_insert_bytes " << ch.max_insert_bytes
        << ", connections " << ch.connections << "\n";
      for (const ClickHouseColumn& col : ch.columns) {
        o << k << "column " << col.attribute << "->" << col.column << ":" << col.type << "\n";
      }
    }
    if (a.type == "postgres" || a.type == "sqlite") {
      o << k << "tables: prefix " << a.sql.table_prefix << ", create "
        << (a.sql.create_tables ? "yes" : "no") << ", delete "
        << (a.sql.hard_delete ? "hard" : "soft") << "\n";
      for (const SqlTable& t : a.sql.tables) {
        o << k << "table " << t.entity << " -> " << t.table;
        for (const SqlColumn& col : t.columns) {
          o << " " << col.attribute << "->" << col.column << ":" << col.type;
        }
        o << "\n";
      }
    }
  }
  auto list = [](const auto& v) {
    std::string out;
    for (const auto& x : v) {
      if (!out.empty()) out += ",";
      if constexpr (std::is_same_v<std::decay_t<decltype(x)>, std::string>) {
        out += x;
      } else {
        out += std::to_string(x);
      }
    }
    return out.empty() ? std::string("*") : out;
  };
  for (const RouteConfig& r : c.routes) {
    o << "route " << r.name << ": tables " << list(r.tables) << ", messages " << list(r.messages)
      << ", stages " << list(r.stages) << ", changed_columns " << list(r.changed_columns) << " -> "
      << list(r.adapters) << "\n";
  }
  return o.str();
}

}  // namespace dvrouter
