// Config: dvrouter's one YAML configuration file, parsed and validated at start.
//
// Every key has a default (given below) so an empty file is a working single-node router, except
// the webhook secret, which must come from an environment variable (`${NAME}`) or a file
// (`secret_file`), never from the configuration file itself. Every error names the key path
// ("journal.segment_bytes: ...") and what is wrong; unknown keys are errors, so a typo never
// passes silently. Plain values: build on one thread, then share read-only.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "router/common/status.h"

namespace dvrouter {

struct Config;
class Section;  // router/config/section.h

struct Endpoint {
  std::string host;
  uint16_t port = 0;
  // "host:port", or "[v6]:port" for an IPv6 host: what ParseEndpoint reads back.
  std::string ToString() const {
    const bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
  }
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

// journal.nats (docs/journal-nats.md): the journal on a NATS JetStream stream.
struct NatsConfig {
  std::vector<std::string> servers;  // nats://host:port
  std::string stream = "DVROUTER";
  uint64_t replicas = 3;
  uint64_t duplicate_window_ms = 0;  // 0: dedupe.window
  uint64_t max_bytes = 0;            // 0: journal.disk_budget_bytes
  uint64_t ack_timeout_ms = 15000;
  uint64_t max_pending = 4096;
  std::string user, password, creds_file, ca_file;
};

struct JournalConfig {
  bool nats = false;  // backend: file (default) or nats
  NatsConfig nats_config;
  std::string data_dir = "./data";  // the journal lives in <data_dir>/journal
  uint32_t partitions = 64;
  uint64_t segment_bytes = 64ull << 20;
  uint64_t disk_budget_bytes = 8ull << 30;
  bool fsync = true;  // `durability: unsafe_no_fsync` sets false
  // With fsync: the next segment is written full of zeros ahead of need, so that a group's
  // fdatasync flushes data only (docs/architecture.md, "Preallocated segments").
  bool preallocate = true;
  uint64_t max_batch_events = 2048;
  // A writer that wakes with fewer than group_window_events events waiting waits up to
  // group_window_us for more (docs/architecture.md, "Group commit").
  uint64_t group_window_us = 200;
  uint64_t group_window_events = 64;
  uint64_t page_cache_bytes = 256ull << 20;  // newest synced journal bytes kept cached; 0: all
  bool compression = true;                   // `compression: zstd` (default) or `none`
  uint64_t compression_level = 1;            // zstd level, 1 (fastest) to 9
  bool compression_dictionaries = true;      // zstd with dictionaries of recent bodies
  uint64_t read_tail_records = 2048;         // newest committed records kept plain; 0: off
};

// Several router nodes on one NATS stream (docs/journal-nats.md, "Several router nodes"): present
// only with a `cluster` section, which needs journal.backend: nats.
struct ClusterConfig {
  bool enabled = false;
  std::string node;              // this node's name; default: the host name
  uint64_t lease_ttl_ms = 5000;  // the delivery lease's TTL; renewed every quarter of it
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

// An adapter type's own settings: the struct, its parser and its check-config lines live in the
// adapter's folder (adapters/<type>/<type>_config.h); the factory table (adapters/registry.cc)
// names the parser next to the adapter's constructor.
class AdapterSettings {
 public:
  virtual ~AdapterSettings() = default;
  virtual std::unique_ptr<AdapterSettings> Clone() const = 0;
  // check-config lines, each starting with `prefix` ("adapters.<name>."), secrets redacted.
  virtual void Describe(const std::string& prefix, std::ostream& out) const = 0;
  // The --data-dir override moved journal.data_dir: paths that follow it by default move too.
  virtual void SetDataDir(const std::string& /*data_dir*/) {}
  // Checks against the whole configuration, once every adapter is parsed (`name`: this one's).
  virtual Status Validate(const std::string& /*name*/, const Config& /*config*/) const {
    return Status::Ok();
  }
  // Settings that follow from the rest of the configuration (e.g. the routes to this adapter),
  // once the routes are parsed too.
  virtual void Resolve(const std::string& /*name*/, const Config& /*config*/) {}
  // Capability: the adapter whose statuses this one writes back (empty: none). Such an adapter
  // receives only that adapter's status records, never routed events (docs/architecture.md,
  // "Status write-back").
  virtual std::string_view status_source() const { return {}; }
  // Capability: its connection reaches the Dataverse Web API (`dvrouter register` uses it).
  virtual bool connects_to_dataverse() const { return false; }
};

// Settings structs derive from this to be copyable through AdapterSettings.
template <class T>
class AdapterSettingsOf : public AdapterSettings {
 public:
  std::unique_ptr<AdapterSettings> Clone() const override {
    return std::make_unique<T>(static_cast<const T&>(*this));
  }
};

// Owns one AdapterSettings; copies clone it, so a copied Config shares nothing.
class AdapterSettingsBox {
 public:
  AdapterSettingsBox() = default;
  explicit AdapterSettingsBox(std::unique_ptr<AdapterSettings> s) : p_(std::move(s)) {}
  AdapterSettingsBox(const AdapterSettingsBox& o) : p_(o.p_ ? o.p_->Clone() : nullptr) {}
  AdapterSettingsBox& operator=(const AdapterSettingsBox& o) {
    if (this != &o) p_ = o.p_ ? o.p_->Clone() : nullptr;
    return *this;
  }
  AdapterSettingsBox(AdapterSettingsBox&&) noexcept = default;
  AdapterSettingsBox& operator=(AdapterSettingsBox&&) noexcept = default;
  const AdapterSettings* get() const { return p_.get(); }
  AdapterSettings* get() { return p_.get(); }
  void reset(std::unique_ptr<AdapterSettings> s) { p_ = std::move(s); }

 private:
  std::unique_ptr<AdapterSettings> p_;
};

// Settings every adapter has; the type's own are in `settings`.
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
  AdapterSettingsBox settings;  // the type's own (adapters/<type>/<type>_config.h)

  // The type's settings; T must be this adapter's settings type (a mismatch aborts).
  template <class T>
  const T& Settings() const {
    const T* s = dynamic_cast<const T*>(settings.get());
    if (s == nullptr) SettingsMismatch();
    return *s;
  }
  // Mutable, created with T's defaults when absent (tests and tools build configs this way).
  template <class T>
  T& Settings() {
    if (settings.get() == nullptr) settings.reset(std::make_unique<T>());
    T* s = dynamic_cast<T*>(settings.get());
    if (s == nullptr) SettingsMismatch();
    return *s;
  }
  // Capabilities of the type's settings (none when absent).
  std::string_view status_source() const {
    return settings.get() ? settings.get()->status_source() : std::string_view();
  }

 private:
  [[noreturn]] void SettingsMismatch() const;
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

// A table whose changes reconciliation catches up on (reconcile.change_tracking.tables).
struct TrackedTableConfig {
  std::string table;                 // logical name, change tracking on in Dataverse
  std::vector<std::string> columns;  // $select; empty: all columns
  bool initial_full = false;         // initial: full (journal every unseen row) or from_now
};

// Reconciliation with Dataverse (docs/reconciliation.md): what the webhook never delivered,
// recovered from the failed system jobs of the registered steps and from the change tracking of
// the listed tables. The Web API connection is a dataverse adapter's; the steps are the
// registration's.
struct ReconcileConfig {
  bool present = false;
  std::string dataverse;                 // a dataverse adapter; default: registration.dataverse
  uint64_t interval_ms = 5 * 60 * 1000;  // between runs in `dvrouter serve` (0: only on demand)
  bool failed_jobs = true;               // failed_jobs.enabled
  uint64_t lookback_ms = 24 * 3600 * 1000ull;  // the first run's look back
  bool delete_handled = false;                 // delete a failed job once its event is journaled
  uint64_t page_size = 500;                    // asyncoperations per page
  double max_requests_per_second = 5;          // pacing of its Web API calls
  std::vector<TrackedTableConfig> tracked_tables;  // change_tracking.tables
  uint64_t tracking_page_size = 5000;              // change_tracking.page_size
  uint64_t settle_ms = 120'000;      // change_tracking.settle: a younger unseen change waits a run
  uint64_t max_seen_rows = 500'000;  // change_tracking.max_seen_rows: the seen index's bound
};

struct Config {
  IngressConfig ingress;
  AdminConfig admin;
  JournalConfig journal;
  ClusterConfig cluster;
  DedupeConfig dedupe;
  DeliveryConfig delivery;
  LoopGuardConfig loop_guard;
  // Without an `adapters` section: one lake adapter named "lake" and a route of everything to it.
  std::vector<AdapterConfig> adapters;
  std::vector<RouteConfig> routes;
  RegistrationConfig registration;
  ReconcileConfig reconcile;
  const AdapterConfig* FindAdapter(std::string_view name) const;
};

// What the configuration parser needs to know of an adapter type; adapters/registry.cc holds
// the one table of them (next to each type's constructor).
struct AdapterParseContext {
  const std::string& data_dir;  // journal.data_dir
  const std::string& base_dir;  // relative paths and secret files resolve against it
};
using AdapterSettingsParser = Result<std::unique_ptr<AdapterSettings>> (*)(
    Section& section, const AdapterParseContext& context);
struct AdapterKind {
  std::string_view type;
  AdapterSettingsParser parse = nullptr;
  uint64_t max_batch_events = 500;  // this type's defaults of batch.max_events...
  uint64_t linger_ms = 20;          // ...and batch.linger
  // Sections of this type (YAML without `type`) that together read every key the parser knows:
  // docs/config-reference.md is built from them, and a test parses each.
  std::span<const std::string_view> examples;
};
using AdapterKinds = std::span<const AdapterKind* const>;

// Parses YAML text; env lookups go through getenv, files are read relative to base_dir.
// adapters/registry.h has the forms with the built-in adapter types.
Result<Config> ParseConfig(std::string_view yaml, const std::string& base_dir, AdapterKinds kinds);
Result<Config> LoadConfigFile(const std::string& path, AdapterKinds kinds);

// Every key with its kind, default and range, as Markdown (docs/config-reference.md).
std::string ConfigReference(AdapterKinds kinds);

// Moves the data directory (the --data-dir override): the journal and every path derived from
// it by default (lake directories without an explicit `dir`).
void SetDataDir(Config* config, const std::string& data_dir);

// Human-readable summary with secrets redacted (check-config prints it).
std::string DescribeConfig(const Config& config);

}  // namespace dvrouter
