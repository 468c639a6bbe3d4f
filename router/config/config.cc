#include "router/config/config.h"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <type_traits>

#include "router/common/identifiers.h"
#include "router/common/json.h"
#include "router/config/section.h"
#include "router/decode/event.h"

namespace dvrouter {

namespace {

Status ParseAuth(Section auth, const std::string& base_dir, AuthConfig* out) {
  DV_TRY(auth.Check());
  std::string mode = "webhook_key";
  DV_TRY(auth.Choice("mode", {"webhook_key", "http_header", "http_query_string", "none"}, &mode));
  if (mode == "webhook_key") {
    out->mode = AuthMode::kWebhookKey;
  } else if (mode == "http_header") {
    out->mode = AuthMode::kHttpHeader;
  } else if (mode == "http_query_string") {
    out->mode = AuthMode::kHttpQueryString;
  } else {
    out->mode = AuthMode::kNone;
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
  auth.Record("secret", {"secret", "", "${ENV_NAME}, never a literal; required unless mode none"});
  auth.Record("secret_file", {"file", "", "instead of secret: a file holding it"});
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
  DV_TRY(tls.ReadableFile("cert_file", base_dir, &out->cert_file));
  DV_TRY(tls.ReadableFile("key_file", base_dir, &out->key_file));
  DV_TRY(tls.Choice("min_version", {"1.2", "1.3"}, &out->min_version));
  DV_TRY(tls.RejectUnknown());
  for (auto [key, value] :
       {std::pair{"cert_file", &out->cert_file}, std::pair{"key_file", &out->key_file}}) {
    if (value->empty()) return KeyError(tls.Path(key), "missing: TLS needs a PEM file");
  }
  return Status::Ok();
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

const AdapterKind* FindKind(AdapterKinds kinds, std::string_view type) {
  for (const AdapterKind* k : kinds) {
    if (k->type == type) return k;
  }
  return nullptr;
}

std::string KindNames(AdapterKinds kinds) {
  std::string out;
  for (const AdapterKind* k : kinds) out += (out.empty() ? "" : ", ") + std::string(k->type);
  return out;
}

// Where the reference lists an adapter type's own keys.
std::string KindRefPath(std::string_view type) { return "adapters.<" + std::string(type) + ">"; }

// The type's settings, parsed from `a` (whose common keys are read already).
Status ParseSettings(Section& a, const AdapterKind& kind, const AdapterParseContext& ctx,
                     AdapterConfig* out) {
  Section typed = a.View(KindRefPath(kind.type));
  Result<std::unique_ptr<AdapterSettings>> settings = kind.parse(typed, ctx);
  if (!settings.ok()) return settings.status();
  out->settings.reset(std::move(*settings));
  return typed.RejectUnknown();
}

Status ParseAdapter(Section a, const std::string& name, const AdapterParseContext& ctx,
                    AdapterKinds kinds, AdapterConfig* out) {
  DV_TRY(a.Check());
  out->name = name;
  if (!ValidName(name)) {
    return KeyError(a.Name(), "adapter names use a-z, 0-9, '_' and '-' (at most 64)");
  }
  DV_TRY(a.String("type", &out->type));
  if (out->type.empty()) {
    return KeyError(a.Path("type"), "missing: the adapter type (" + KindNames(kinds) + ")");
  }
  const AdapterKind* kind = FindKind(kinds, out->type);
  if (kind == nullptr) {
    return KeyError(a.Path("type"),
                    "unknown adapter type '" + out->type + "' (known: " + KindNames(kinds) + ")");
  }
  out->max_batch_events = kind->max_batch_events;
  out->linger_ms = kind->linger_ms;
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
  return ParseSettings(a, *kind, ctx, out);
}

Status ParseDelivery(Section& root, const std::string& base_dir, AdapterKinds kinds, Config* c) {
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

  YAML::Node adapters = root.Raw("adapters", "mapping of name to adapter");
  const AdapterParseContext ctx{c->journal.data_dir, base_dir};
  if (!adapters) {
    // The embedded default: everything to the lake, with the lake's defaults.
    AdapterConfig lake;
    lake.name = "lake";
    lake.type = "lake";
    const AdapterKind* kind = FindKind(kinds, "lake");
    if (kind == nullptr) return KeyError("adapters", "missing: no lake adapter type is built in");
    Section none(YAML::Node(), "adapters.lake");
    DV_TRY(ParseSettings(none, *kind, ctx, &lake));
    c->adapters.push_back(std::move(lake));
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
      DV_TRY(ParseAdapter(Section(kv.second, "adapters." + name, "adapters.<name>"), name, ctx,
                          kinds, &a));
      c->adapters.push_back(std::move(a));
    }
    if (c->adapters.size() > 64) return KeyError("adapters", "at most 64 adapters");
    for (const AdapterConfig& a : c->adapters) DV_TRY(a.settings.get()->Validate(a.name, *c));
  }

  YAML::Node routes = root.Raw("routes", "list of routes");
  if (routes && !routes.IsNull()) {
    if (!adapters) c->routes.clear();  // explicit routes replace the default one
    if (!routes.IsSequence()) return KeyError("routes", "must be a list of routes");
    for (size_t i = 0; i < routes.size(); ++i) {
      Section r = root.Item(routes[i], "routes[" + std::to_string(i) + "]", "routes[]");
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
        if (!ac->status_source().empty()) {
          return KeyError(r.Path("adapters"),
                          "'" + a + "' is a write-back adapter: it takes the statuses " +
                              "of its source adapter, not routed events");
        }
      }
      DV_TRY(r.RejectUnknown());
      c->routes.push_back(std::move(route));
    }
  }
  return Status::Ok();
}

// Settings that depend on the routes (AdapterSettings::Resolve).
void ResolveAdapters(Config* c) {
  for (AdapterConfig& a : c->adapters) {
    if (a.settings.get() != nullptr) a.settings.get()->Resolve(a.name, *c);
  }
}

// journal.nats (docs/journal-nats.md); required with backend: nats, refused without it.
Status ParseNats(Section n, const std::string& base_dir, JournalConfig* journal) {
  DV_TRY(n.Check());
  if (!n.Present()) {
    if (journal->nats) return KeyError("journal.nats", "backend: nats needs journal.nats.servers");
    return Status::Ok();
  }
  if (!journal->nats) return KeyError("journal.nats", "only with journal.backend: nats");
  NatsConfig& out = journal->nats_config;
  DV_TRY(n.Strings("servers", &out.servers));
  if (out.servers.empty()) return KeyError(n.Path("servers"), "at least one nats://host:port");
  for (const std::string& s : out.servers) {
    if (!s.starts_with("nats://") && !s.starts_with("tls://")) {
      return KeyError(n.Path("servers"), "'" + s + "' is not a nats://host:port URL");
    }
  }
  DV_TRY(n.String("stream", &out.stream));
  const bool stream_ok = !out.stream.empty() && out.stream.size() <= 64 &&
                         std::all_of(out.stream.begin(), out.stream.end(), [](char ch) {
                           return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
                         });
  if (!stream_ok) {
    return KeyError(n.Path("stream"),
                    "letters, digits, '_' and '-' only (a JetStream stream name)");
  }
  DV_TRY(n.Count("replicas", 1, 5, &out.replicas));
  DV_TRY(n.DurationMs("duplicate_window", 1000, 30ull * 24 * 3'600'000, &out.duplicate_window_ms));
  DV_TRY(n.Bytes("max_bytes", 1 << 20, UINT64_MAX, &out.max_bytes));
  DV_TRY(n.DurationMs("ack_timeout", 100, 60'000, &out.ack_timeout_ms));
  DV_TRY(n.Count("max_pending", 1, 1'000'000, &out.max_pending));
  DV_TRY(n.String("user", &out.user));
  DV_TRY(ReadSecret(n, "password", base_dir, /*optional=*/true, &out.password));
  if (out.user.empty() != out.password.empty()) {
    return KeyError(n.Path("user"), "user and password go together");
  }
  DV_TRY(n.ReadableFile("creds_file", base_dir, &out.creds_file));
  Section tls = n.Child("tls");
  DV_TRY(tls.Check());
  DV_TRY(tls.ReadableFile("ca_file", base_dir, &out.ca_file));
  DV_TRY(tls.RejectUnknown());
  return n.RejectUnknown();
}

// cluster (docs/journal-nats.md, "Several router nodes"): only with journal.backend: nats.
Status ParseCluster(Section c, Config* config) {
  DV_TRY(c.Check());
  if (!c.Present()) return Status::Ok();
  ClusterConfig& out = config->cluster;
  if (!config->journal.nats) {
    return KeyError("cluster",
                    "several router nodes share a NATS JetStream journal: set journal.backend: "
                    "nats (and journal.nats) or remove the cluster section");
  }
  out.enabled = true;
  c.Record("node", {"string", "the host name", "letters, digits, `_`, `-`, `.`"});
  DV_TRY(c.String("node", &out.node));
  if (out.node.empty()) {
    char host[256] = {};
    if (::gethostname(host, sizeof(host) - 1) == 0) out.node = host;
  }
  const bool node_ok = !out.node.empty() && out.node.size() <= 128 &&
                       std::all_of(out.node.begin(), out.node.end(), [](char ch) {
                         return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                                (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.';
                       });
  if (!node_ok) {
    return KeyError(c.Path("node"), "'" + out.node +
                                        "': letters, digits, '_', '-' and '.' only (a key in the "
                                        "cluster's key-value bucket)");
  }
  DV_TRY(c.DurationMs("lease_ttl", 1000, 60'000, &out.lease_ttl_ms));
  return c.RejectUnknown();
}

// reconcile.change_tracking (docs/reconciliation.md, "Change tracking").
Status ParseChangeTracking(Section t, ReconcileConfig* out) {
  DV_TRY(t.Check());
  YAML::Node tables = t.Raw("tables", "list of mappings");
  if (tables && !tables.IsNull()) {
    if (!tables.IsSequence()) {
      return KeyError(t.Path("tables"), "must be a list of {table, columns, initial}");
    }
    for (size_t i = 0; i < tables.size(); ++i) {
      if (!tables[i].IsMap()) {
        return KeyError(t.Path("tables") + "[" + std::to_string(i) + "]",
                        "must be a mapping {table, columns, initial}");
      }
      Section item = t.Item(tables[i], ".tables[" + std::to_string(i) + "]", ".tables[]");
      TrackedTableConfig tt;
      DV_TRY(item.String("table", &tt.table));
      if (!IsLogicalName(tt.table) || tt.table == "none") {
        return KeyError(item.Path("table"),
                        "must be a table's logical name, got '" + tt.table + "'");
      }
      for (const TrackedTableConfig& other : out->tracked_tables) {
        if (other.table == tt.table) return KeyError(item.Path("table"), "listed twice");
      }
      DV_TRY(item.Strings("columns", &tt.columns));
      for (std::string& col : tt.columns) {
        if (!IsLogicalName(col) &&
            !(col.starts_with('_') && col.ends_with("_value") && IsLogicalName(col.substr(1)))) {
          return KeyError(item.Path("columns"), "'" + col + "' is not a column's logical name");
        }
      }
      std::string initial = "from_now";
      DV_TRY(item.Choice("initial", {"from_now", "full"}, &initial));
      tt.initial_full = initial == "full";
      DV_TRY(item.RejectUnknown());
      out->tracked_tables.push_back(std::move(tt));
    }
  }
  DV_TRY(t.Count("page_size", 1, 5000, &out->tracking_page_size));
  DV_TRY(t.DurationMs("settle", 0, 24 * 3600 * 1000ull, &out->settle_ms));
  DV_TRY(t.Count("max_seen_rows", 1000, 50'000'000, &out->max_seen_rows));
  return t.RejectUnknown();
}

Status ParseReconcile(Section& root, Config* c) {
  Section r = root.Child("reconcile");
  DV_TRY(r.Check());
  if (!r.Present()) return Status::Ok();
  ReconcileConfig& out = c->reconcile;
  out.present = true;
  out.dataverse = c->registration.dataverse;
  DV_TRY(r.String("dataverse", &out.dataverse));
  const AdapterConfig* dv = c->FindAdapter(out.dataverse);
  if (dv == nullptr || !dv->settings.get()->connects_to_dataverse()) {
    return KeyError(r.Path("dataverse"),
                    "must name a dataverse adapter (its url and auth are "
                    "used; default: registration.dataverse), got '" +
                        out.dataverse + "'");
  }
  DV_TRY(r.DurationMs("interval", 0, 7 * 24 * 3600 * 1000ull, &out.interval_ms));
  if (out.interval_ms != 0 && out.interval_ms < 10'000) {
    return KeyError(r.Path("interval"), "at least 10s (or 0: runs only when asked)");
  }
  DV_TRY(r.Double("max_requests_per_second", 0.1, 100, &out.max_requests_per_second));
  Section f = r.Child("failed_jobs");
  DV_TRY(f.Check());
  DV_TRY(f.Bool("enabled", &out.failed_jobs));
  DV_TRY(f.DurationMs("lookback", 60'000, 365 * 24 * 3600 * 1000ull, &out.lookback_ms));
  DV_TRY(f.Bool("delete_handled", &out.delete_handled));
  DV_TRY(f.Count("page_size", 1, 5000, &out.page_size));
  // A webhook that did reach the router is a duplicate only within the dedupe window
  // (docs/reconciliation.md, "The event").
  // With the journal on NATS, the stream's duplicate window is the one that counts.
  const uint64_t window =
      c->journal.nats ? c->journal.nats_config.duplicate_window_ms : c->dedupe.window_ms;
  if (out.lookback_ms > window) {
    return KeyError(f.Path("lookback"),
                    std::string("longer than ") +
                        (c->journal.nats ? "journal.nats.duplicate_window" : "dedupe.window") +
                        " (" + std::to_string(window / 1000) +
                        "s): a change the router did receive would be journaled again");
  }
  DV_TRY(f.RejectUnknown());
  if (out.failed_jobs && !c->registration.present) {
    return KeyError(f.Path("enabled"),
                    "failed jobs are those of the registration's steps: add the registration "
                    "section, or set failed_jobs.enabled: false to use change tracking alone");
  }
  DV_TRY(ParseChangeTracking(r.Child("change_tracking"), &out));
  if (!out.failed_jobs && out.tracked_tables.empty()) {
    return KeyError(r.Path("change_tracking.tables"),
                    "with failed_jobs.enabled: false, list the tables to track (else reconcile "
                    "has nothing to do)");
  }
  return r.RejectUnknown();
}

Status ParseRegistration(Section& root, Config* c) {
  Section r = root.Child("registration");
  DV_TRY(r.Check());
  if (!r.Present()) return Status::Ok();
  RegistrationConfig& out = c->registration;
  out.present = true;
  DV_TRY(r.String("dataverse", &out.dataverse));
  const AdapterConfig* dv = c->FindAdapter(out.dataverse);
  if (dv == nullptr || !dv->settings.get()->connects_to_dataverse()) {
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
  YAML::Node steps = r.Raw("steps", "list of steps");
  if (!steps || !steps.IsSequence() || steps.size() == 0) {
    return KeyError(r.Path("steps"), "missing: a list of {table, messages, ...}");
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    Section s = r.Item(steps[i], ".steps[" + std::to_string(i) + "]", ".steps[]");
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
    YAML::Node images = s.Raw("images", "list of images");
    if (images && !images.IsNull()) {
      if (!images.IsSequence()) return KeyError(s.Path("images"), "must be a list");
      for (size_t k = 0; k < images.size(); ++k) {
        Section im = s.Item(images[k], ".images[" + std::to_string(k) + "]", ".images[]");
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
  DV_TRY(ReadSecret(auth, "token", base_dir, /*optional=*/true, &out->token));
  DV_TRY(auth.Bool("protect_metrics", &out->protect_metrics));
  DV_TRY(auth.RejectUnknown());
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

Status ParseRoot(const YAML::Node& root_node, const std::string& base_dir, AdapterKinds kinds,
                 Config* c) {
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
  DV_TRY(journal.Choice("durability", {"fsync", "unsafe_no_fsync"}, &durability));
  c->journal.fsync = durability == "fsync";
  DV_TRY(journal.Bool("preallocate", &c->journal.preallocate));
  DV_TRY(journal.Count("max_batch_events", 1, 65536, &c->journal.max_batch_events));
  DV_TRY(journal.DurationUs("group_window", 0, 100'000, &c->journal.group_window_us));
  DV_TRY(journal.Count("group_window_events", 1, 65536, &c->journal.group_window_events));
  DV_TRY(journal.Bytes("page_cache_bytes", 0, UINT64_MAX, &c->journal.page_cache_bytes));
  std::string compression = "zstd";
  DV_TRY(journal.Choice("compression", {"zstd", "none"}, &compression));
  c->journal.compression = compression == "zstd";
  // Higher levels cost the ingress threads many times the CPU for a few percent (bench/README.md).
  DV_TRY(journal.Count("compression_level", 1, 9, &c->journal.compression_level));
  DV_TRY(journal.Bool("compression_dictionaries", &c->journal.compression_dictionaries));
  DV_TRY(journal.Count("read_tail_records", 0, 1'000'000, &c->journal.read_tail_records));
  std::string backend = "file";
  DV_TRY(journal.Choice("backend", {"file", "nats"}, &backend));
  c->journal.nats = backend == "nats";
  DV_TRY(ParseNats(journal.Child("nats"), base_dir, &c->journal));
  DV_TRY(journal.RejectUnknown());
  DV_TRY(ParseCluster(root.Child("cluster"), c));

  Section dedupe = root.Child("dedupe");
  DV_TRY(dedupe.Check());
  DV_TRY(dedupe.DurationMs("window", 0, 30ull * 24 * 3'600'000, &c->dedupe.window_ms));
  DV_TRY(dedupe.Count("max_entries", 1, 100'000'000, &c->dedupe.max_entries));
  DV_TRY(dedupe.RejectUnknown());
  NatsConfig& nats = c->journal.nats_config;
  // dedupe.window 0 (no dedupe) cannot be had from a stream: its shortest window then.
  if (nats.duplicate_window_ms == 0)
    nats.duplicate_window_ms = std::max<uint64_t>(c->dedupe.window_ms, 1000);
  if (nats.max_bytes == 0) nats.max_bytes = c->journal.disk_budget_bytes;

  DV_TRY(ParseDelivery(root, base_dir, kinds, c));
  ResolveAdapters(c);
  DV_TRY(ParseRegistration(root, c));
  DV_TRY(ParseReconcile(root, c));
  return root.RejectUnknown();
}

}  // namespace

void SetDataDir(Config* config, const std::string& data_dir) {
  for (AdapterConfig& a : config->adapters) {
    if (a.settings.get() != nullptr) a.settings.get()->SetDataDir(data_dir);
  }
  config->journal.data_dir = data_dir;
}

void AdapterConfig::SettingsMismatch() const {
  std::fprintf(stderr, "dvrouter: adapter %s (type %s) has no settings of the type asked for\n",
               name.c_str(), type.c_str());
  std::abort();
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
    if (close == std::string_view::npos || close == 1 || close + 1 >= text.size() ||
        text[close + 1] != ':') {
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
  // A host name or an IPv4 address (letters, digits, '.', '-', '_'), or in brackets an IPv6
  // address (also ':' and a '%' zone): nothing else reaches the resolver or a log line.
  const bool v6 = text.starts_with("[");
  if (v6 && ep.host.find(':') == std::string::npos) {
    return InvalidArgument("expected [ipv6]:port, got '" + Utf8Excerpt(text, 200) + "'");
  }
  for (char c : ep.host) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
                    c == '_' || (v6 && (c == ':' || c == '%'));
    if (!ok) {
      return InvalidArgument("expected host:port or [ipv6]:port, got '" + Utf8Excerpt(text, 200) +
                             "'");
    }
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

Result<Config> ParseConfig(std::string_view yaml, const std::string& base_dir, AdapterKinds kinds) {
  Config config;
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    if (Status st = ParseRoot(root, base_dir, kinds, &config); !st.ok()) return st;
  } catch (const YAML::Exception& e) {
    // yaml-cpp reports syntax errors by exception; translate at the boundary.
    return InvalidArgument("YAML syntax error at line " + std::to_string(e.mark.line + 1) +
                           ", column " + std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  return config;
}

Result<Config> LoadConfigFile(const std::string& path, AdapterKinds kinds) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot read configuration file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  size_t slash = path.rfind('/');
  std::string base = slash == std::string::npos ? "." : path.substr(0, slash);
  Result<Config> c = ParseConfig(ss.str(), base, kinds);
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
    << "journal.preallocate: " << (c.journal.preallocate ? "true" : "false") << "\n"
    << "journal.max_batch_events: " << c.journal.max_batch_events << "\n"
    << "journal.group_window: " << c.journal.group_window_us << "us\n"
    << "journal.group_window_events: " << c.journal.group_window_events << "\n"
    << "journal.page_cache_bytes: " << c.journal.page_cache_bytes << "\n"
    << "journal.compression: " << (c.journal.compression ? "zstd" : "none") << "\n"
    << "journal.backend: " << (c.journal.nats ? "nats" : "file") << "\n"
    << "journal.compression_level: " << c.journal.compression_level << "\n"
    << "journal.compression_dictionaries: "
    << (c.journal.compression_dictionaries ? "true" : "false") << "\n"
    << "journal.read_tail_records: " << c.journal.read_tail_records << "\n"
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
    if (a.settings.get() != nullptr) a.settings.get()->Describe(k, o);
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
  if (c.journal.nats) {
    const NatsConfig& n = c.journal.nats_config;
    o << "journal.nats: servers " << list(n.servers) << ", stream " << n.stream << ", replicas "
      << n.replicas << ", duplicate_window " << n.duplicate_window_ms << "ms, max_bytes "
      << n.max_bytes << ", ack_timeout " << n.ack_timeout_ms << "ms, max_pending " << n.max_pending
      << (n.user.empty() ? "" : ", user " + n.user)
      << (n.creds_file.empty() ? "" : ", creds_file " + n.creds_file)
      << (n.ca_file.empty() ? "" : ", tls.ca_file " + n.ca_file) << "\n";
  }
  if (c.cluster.enabled) {
    o << "cluster: node " << c.cluster.node << ", lease_ttl " << c.cluster.lease_ttl_ms << "ms\n";
  }
  if (c.reconcile.present) {
    const ReconcileConfig& r = c.reconcile;
    o << "reconcile: through " << r.dataverse << ", every " << r.interval_ms
      << "ms, max_requests_per_second " << r.max_requests_per_second << "\n"
      << "reconcile.failed_jobs: " << (r.failed_jobs ? "enabled" : "disabled") << ", lookback "
      << r.lookback_ms << "ms, page_size " << r.page_size << ", delete_handled "
      << (r.delete_handled ? "true" : "false") << "\n";
    for (const TrackedTableConfig& t : r.tracked_tables) {
      o << "reconcile.change_tracking: " << t.table << ", columns " << list(t.columns)
        << ", initial " << (t.initial_full ? "full" : "from_now") << "\n";
    }
    if (!r.tracked_tables.empty()) {
      o << "reconcile.change_tracking: page_size " << r.tracking_page_size << ", settle "
        << r.settle_ms << "ms, max_seen_rows " << r.max_seen_rows << "\n";
    }
  }
  return o.str();
}

namespace {

// Reaches every section the parser has: TLS, each auth mode's keys, routes, registration (with
// the adapter it needs). Values are only what it takes to get there; defaults are recorded
// before they are read.
constexpr std::string_view kReferenceExample = R"(
ingress:
  auth: {mode: http_header, secret: "${DVROUTER_WEBHOOK_KEY}"}
  tls: {cert_file: cert.pem, key_file: key.pem}
adapters:
  lake: {type: lake}
  crm:
    type: dataverse
    source: lake
    url: https://contoso.crm.dynamics.com
    auth: {token_url: https://login.example.com/token, client_id: app, client_secret: "${S}"}
    status_column: new_status
    status_values: {completed: 1, failed: 2}
routes:
  - {name: orders, tables: [salesorder], messages: [Create], stages: [40],
     changed_columns: [name], adapters: [lake]}
registration:
  dataverse: crm
  webhook_url: https://router.example.com/webhooks/dataverse
  steps:
    - table: account
      messages: [Update]
      filtering_attributes: [name]
      images: [{name: pre, type: pre, attributes: [name]}]
reconcile:
  dataverse: crm
  failed_jobs: {enabled: true}
  change_tracking:
    tables:
      - {table: account, columns: [name], initial: from_now}
)";

std::string Indent(std::string_view text, std::string_view by) {
  std::string out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    out += std::string(by) + std::string(text.substr(start, end - start)) + "\n";
    start = end + 1;
  }
  return out;
}

std::string Cell(const std::string& s) { return s.empty() ? "" : "`" + s + "`"; }

}  // namespace

std::string ConfigReference(AdapterKinds kinds) {
  KeyLog log;
  {
    ScopedKeyLog scope(&log);
    // Parse errors are expected (examples refer to adapters they do not define); what matters is
    // which keys were read on the way.
    (void)ParseConfig("{}", ".", kinds);
    (void)ParseConfig(kReferenceExample, ".", kinds);
    // The replicated journal's keys (its files do not exist here: the parse ends at them).
    (void)ParseConfig(
        "journal:\n"
        "  backend: nats\n"
        "  nats: {servers: [nats://nats-0:4222]}\n"
        "cluster: {node: router-0, lease_ttl: 5s}\n",
        ".", kinds);
    (void)ParseConfig(
        "journal:\n"
        "  backend: nats\n"
        "  nats: {servers: [nats://nats-0:4222], creds_file: x.creds, tls: {ca_file: ca.pem}}\n",
        ".", kinds);
    for (const AdapterKind* k : kinds) {
      for (std::string_view example : k->examples) {
        const std::string doc = "adapters:\n  example:\n    type: " + std::string(k->type) + "\n" +
                                Indent(example, "    ");
        (void)ParseConfig(doc, ".", kinds);
      }
    }
  }
  // Groups in the order first read: a top-level section, the keys every adapter has, each
  // adapter type's own keys.
  std::vector<std::string> groups;
  std::vector<std::vector<const std::pair<std::string, KeyInfo>*>> members;
  auto group_of = [&](const std::string& path) {
    if (path == "adapters" || path.starts_with("adapters.<name>.")) {
      return std::string("adapters (every type)");
    }
    for (const AdapterKind* k : kinds) {
      if (path.starts_with(KindRefPath(k->type) + ".")) {
        return "adapters of type " + std::string(k->type);
      }
    }
    return path.substr(0, path.find_first_of(".["));
  };
  for (const auto& entry : log.keys()) {
    const std::string g = group_of(entry.first);
    auto it = std::find(groups.begin(), groups.end(), g);
    if (it == groups.end()) {
      groups.push_back(g);
      members.emplace_back();
      it = groups.end() - 1;
    }
    members[static_cast<size_t>(it - groups.begin())].push_back(&entry);
  }
  std::ostringstream o;
  o << "# Configuration reference\n\n"
    << "Generated by `dvrouter check-config --reference` from the parser itself (a test fails\n"
    << "when this file differs from what it prints). What the keys mean, with examples:\n"
    << "[configuration.md](configuration.md).\n";
  auto emit = [&](size_t g) {
    o << "\n## " << groups[g] << "\n\n";
    for (const AdapterKind* k : kinds) {
      if (groups[g] == "adapters of type " + std::string(k->type) &&
          (k->max_batch_events != AdapterKind{}.max_batch_events ||
           k->linger_ms != AdapterKind{}.linger_ms)) {
        o << "This type's defaults of the common keys: `batch.max_events` " << k->max_batch_events
          << ", `batch.linger` " << k->linger_ms << "ms.\n\n";
      }
    }
    o << "| key | kind | default | range |\n|---|---|---|---|\n";
    for (const auto* entry : members[g]) {
      std::string key = entry->first;
      for (const AdapterKind* k : kinds) {
        const std::string prefix = KindRefPath(k->type) + ".";
        if (key.starts_with(prefix)) key = "adapters.<name>." + key.substr(prefix.size());
      }
      const KeyInfo& info = entry->second;
      o << "| `" << key << "` | " << info.kind << " | " << Cell(info.default_text) << " | "
        << info.range << " |\n";
    }
  };
  // Sections in the order first read, each adapter type's own keys after the common ones.
  for (size_t g = 0; g < groups.size(); ++g) {
    if (groups[g].starts_with("adapters of type ")) continue;
    emit(g);
    if (groups[g] != "adapters (every type)") continue;
    for (size_t t = 0; t < groups.size(); ++t) {
      if (groups[t].starts_with("adapters of type ")) emit(t);
    }
  }
  return o.str();
}

}  // namespace dvrouter
