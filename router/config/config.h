// Config: dvrouter's one YAML configuration file, parsed and validated at start.
//
// Every key has a default (given below) so an empty file is a working single-node router, except
// the webhook secret, which must come from an environment variable (`${NAME}`) or a file
// (`secret_file`), never from the configuration file itself. Every error names the key path
// ("journal.segment_bytes: ...") and what is wrong; unknown keys are errors, so a typo never
// passes silently. Plain values: build on one thread, then share read-only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "router/common/status.h"

namespace dvrouter {

struct Endpoint {
  std::string host;
  uint16_t port = 0;
  std::string ToString() const { return host + ":" + std::to_string(port); }
};

// "host:port" or "[v6]:port"; port 0 picks a free port.
Result<Endpoint> ParseEndpoint(std::string_view text);

enum class AuthMode {
  kNone,             // no check (only for tests and trusted networks; warned at start)
  kWebhookKey,       // Dataverse WebhookKey: ?code=<secret>
  kHttpHeader,       // Dataverse HttpHeader: <header>: <secret>
  kHttpQueryString,  // Dataverse HttpQueryString: ?<parameter>=<secret>
};

struct AuthConfig {
  AuthMode mode = AuthMode::kWebhookKey;
  std::string secret;                     // resolved value, never printed
  std::string header = "x-dvrouter-key";  // for http_header
  std::string parameter = "key";          // for http_query_string
};

// HTTPS on the ingress (Dataverse posts to port 443 only: terminate TLS here or in front).
struct TlsConfig {
  bool enabled = false;             // true when the `ingress.tls` section is present
  std::string cert_file;            // PEM certificate chain, leaf first
  std::string key_file;             // PEM private key (a secret: a file path, never inline)
  std::string min_version = "1.2";  // "1.2" or "1.3"
};

struct IngressConfig {
  Endpoint listen{"0.0.0.0", 8080};
  std::string path = "/webhooks/dataverse";
  int io_threads = 4;                    // twice the cores: docs/architecture.md, "Design choices"
  uint64_t max_body_bytes = 1ull << 20;  // 1 MiB; Dataverse contexts are at most ~256 KB
  uint64_t header_timeout_ms = 10'000;   // also the keep-alive idle timeout
  uint64_t body_timeout_ms = 30'000;
  uint64_t max_connections = 1024;
  uint64_t retry_after_s = 5;  // sent with every 503
  AuthConfig auth;
  TlsConfig tls;
};

// Who may use the admin listener (docs/operations.md, "Admin authentication").
struct AdminAuthConfig {
  std::string token;             // resolved value, never printed; empty: no authentication
  bool protect_metrics = false;  // the token also for /metrics, /healthz and /readyz
};

struct AdminConfig {
  Endpoint listen{"127.0.0.1", 9400};
  AdminAuthConfig auth;
};

// An admin listener on a non-loopback address needs a token: the error names admin.auth.token.
// ParseConfig checks it; call it again after overriding admin.listen.
Status ValidateAdmin(const AdminConfig& admin);

struct JournalConfig {
  std::string data_dir = "./data";  // the journal lives in <data_dir>/journal
  uint32_t partitions = 64;
  uint64_t segment_bytes = 64ull << 20;
  uint64_t disk_budget_bytes = 8ull << 30;
  bool fsync = true;  // `durability: unsafe_no_fsync` sets false
  uint64_t max_batch_events = 2048;
  uint64_t page_cache_bytes = 256ull << 20;  // newest synced journal bytes kept cached; 0: all
  bool compression = true;                   // `compression: zstd` (default) or `none`
  uint64_t compression_level = 1;            // zstd level, 1 (fastest) to 9
};

struct DedupeConfig {
  uint64_t window_ms = 24ull * 3600 * 1000;
  uint64_t max_entries = 1'000'000;
};

// How events leave the journal (router/delivery/engine.h).
struct DeliveryConfig {
  uint64_t workers = 2;            // delivery threads; partition p belongs to worker p % workers
  uint64_t queue_capacity = 4096;  // handles per partition queue; past it, read from the journal
  uint64_t window_events = 1024;   // per adapter and partition: events tracked in memory
  uint64_t cursor_flush_ms = 200;  // how often delivered cursors are persisted
  uint64_t retention_ms = 24ull * 3'600'000;  // keep delivered segments this long (for replay)
  uint64_t status_entries = 100'000;          // recent events whose status GET /events/{id} knows
  // Records read for routing stay in memory, shared by the adapters they go to, until each
  // adapter's batch is built (then the Target is also extracted once for all): at most this
  // many bytes in all workers together; 0 reads the journal again for every adapter.
  uint64_t record_cache_bytes = 512ull << 20;
};

// Events the router itself caused (its write-back to Dataverse) must not loop back out.
struct LoopGuardConfig {
  std::vector<std::string> user_ids;        // InitiatingUserId values to skip (lowercase GUIDs)
  std::vector<std::string> ignore_columns;  // an Update changing only these columns is skipped
};

// The embedded warehouse: JSON lines per table and day (adapters/lake/lake_adapter.h).
struct LakeConfig {
  std::string dir;                    // default <journal.data_dir>/lake
  bool dir_defaulted = true;          // dir follows journal.data_dir (SetDataDir)
  uint64_t roll_bytes = 64ull << 20;  // a file is finalized past this size...
  uint64_t roll_ms = 1000;            // ...or this long after its first row
};

// A typed column of a SQL table: a Target attribute copied into its own column, besides the
// `attributes` JSON (adapters/sql/sql_mapping.h).
struct SqlColumn {
  std::string attribute;  // Target attribute logical name
  std::string column;     // SQL column name (default: the attribute name)
  std::string type;       // text, integer, bigint, numeric, double, boolean, timestamptz, date,
                          // uuid, jsonb (an EntityReference gives its id for uuid, else its JSON)
};

struct SqlTable {
  std::string entity;  // Dataverse table logical name (the key under `tables`)
  std::string table;   // SQL table name (default: table_prefix + entity)
  std::vector<SqlColumn> columns;
};

// The SQL adapters: `postgres` (libpq) and `sqlite` (embedded file).
struct SqlConfig {
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
  std::vector<SqlTable> tables;
  const SqlTable* FindTable(std::string_view entity) const;
};

// A flattened typed column of the ClickHouse events table (always Nullable: absent -> NULL).
struct ClickHouseColumn {
  std::string attribute;  // Target attribute logical name
  std::string column;     // column name (default: the attribute name)
  std::string type;       // String, Int64, UInt64, Float64, UInt8 (booleans), DateTime
};

// The warehouse adapter: ClickHouse over HTTP (adapters/clickhouse/clickhouse_adapter.h).
struct ClickHouseConfig {
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
};

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
// (POST /callbacks/<adapter>/<event id> on the ingress listener, `Authorization: Bearer
// <secret>`) or by being polled at the status URL its 202 answer names.
struct ErpAsync {
  std::string status_pointer = "/status";  // in a callback or poll answer
  std::vector<std::string> completed = {"completed", "succeeded", "done"};
  std::vector<std::string> failed = {"failed", "rejected", "error"};
  std::string error_pointer = "/error";
  std::string callback_secret;  // empty: callbacks refused
  std::string public_url;       // sent as X-Callback-Url: <public_url>/callbacks/<adapter>/<id>
  std::string poll_url_pointer = "/statusUrl";  // in the 202 answer; else its Location header
  uint64_t poll_interval_ms = 0;                // 0: no polling
  uint64_t poll_timeout_ms = 3'600'000;         // then the event fails (DLQ)
};

// The ERP adapter (adapters/erp/erp_adapter.h).
struct ErpConfig {
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
};

// Status write-back to Dataverse (adapters/dataverse/dataverse_adapter.h): the statuses of the
// `source` adapter's events are PATCHed onto the CRM rows through the Web API.
struct DataverseConfig {
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
};

// Settings every adapter has, and the type-specific ones.
struct AdapterConfig {
  std::string name;  // the key under `adapters`: [a-z0-9_-], used in metrics, DLQ and files
  std::string type;  // a key of the factory table (adapters/registry.h)
  uint64_t max_batch_events = 500;
  uint64_t linger_ms = 20;     // a partial batch waits at most this long for more events
  uint64_t max_in_flight = 8;  // batches outstanding per delivery worker
  uint64_t initial_backoff_ms = 200;
  uint64_t max_backoff_ms = 60'000;
  double backoff_multiplier = 2.0;
  uint64_t max_attempts = 0;                // 0: no limit
  uint64_t max_age_ms = 24ull * 3'600'000;  // 0: no limit
  uint64_t max_retry_after_ms = 15 * 60'000;
  uint64_t breaker_failures = 5;
  uint64_t breaker_open_ms = 30'000;
  LakeConfig lake;              // type: lake
  SqlConfig sql;                // type: postgres, sqlite
  ClickHouseConfig clickhouse;  // type: clickhouse
  ErpConfig erp;                // type: erp
  DataverseConfig dataverse;    // type: dataverse
};

// Which events go to which adapters. Empty lists match anything; an event may match several
// routes and goes to the union of their adapters.
struct RouteConfig {
  std::string name;
  std::vector<std::string> tables;           // PrimaryEntityName, lowercase
  std::vector<std::string> messages;         // MessageName, compared case-insensitively
  std::vector<int32_t> stages;               // 10, 20, 40
  std::vector<std::string> changed_columns;  // at least one of them is in Target
  std::vector<std::string> adapters;         // names under `adapters`
};

// One step image (`sdkmessageprocessingstepimage`): the row's columns before or after the
// operation, sent in PreEntityImages / PostEntityImages.
struct RegistrationImage {
  std::string name;                     // also the entity alias
  std::string type = "post";            // pre, post, both
  std::vector<std::string> attributes;  // empty: all columns
};

// Steps (`sdkmessageprocessingstep`) on the webhook, one per message.
struct RegistrationStep {
  std::string table;                  // logical name
  std::vector<std::string> messages;  // Create, Update, Delete, ...
  int32_t stage = 40;                 // 10, 20, 40
  bool async = true;                  // mode 1 (asynchronous) or 0 (synchronous)
  int32_t rank = 1;
  std::vector<std::string> filtering_attributes;  // Update: only changes of these columns
  std::vector<RegistrationImage> images;
};

// `dvrouter register`: the webhook service endpoint and its steps in Dataverse, created or
// updated from this (adapters/dataverse/registration.h). The Web API connection is a dataverse
// adapter's (url, auth).
struct RegistrationConfig {
  bool present = false;
  std::string dataverse;  // the name of a dataverse adapter
  std::string endpoint_name = "dvrouter";
  std::string webhook_url;  // the router's public URL, https://.../webhooks/dataverse
  std::vector<RegistrationStep> steps;
};

struct Config {
  IngressConfig ingress;
  AdminConfig admin;
  JournalConfig journal;
  DedupeConfig dedupe;
  DeliveryConfig delivery;
  LoopGuardConfig loop_guard;
  // Without an `adapters` section: one lake adapter named "lake" and a route of everything to it.
  std::vector<AdapterConfig> adapters;
  std::vector<RouteConfig> routes;
  RegistrationConfig registration;
  const AdapterConfig* FindAdapter(std::string_view name) const;
};

// Parses YAML text; env lookups go through getenv, files are read relative to base_dir.
Result<Config> ParseConfig(std::string_view yaml, const std::string& base_dir = ".");
Result<Config> LoadConfigFile(const std::string& path);

// Moves the data directory (the --data-dir override): the journal and every path derived from
// it by default (lake directories without an explicit `dir`).
void SetDataDir(Config* config, const std::string& data_dir);

// Human-readable summary with secrets redacted (check-config prints it).
std::string DescribeConfig(const Config& config);

}  // namespace dvrouter
