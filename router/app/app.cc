#include "router/app/app.h"

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <thread>

#include "adapters/registry.h"
#include "router/app/callback_worker.h"
#include "router/app/reconcile_runner.h"
#include "router/cluster/cluster_admin.h"
#include "router/cluster/lease.h"
#include "router/cluster/nats_cursor_store.h"
#include "router/cluster/nats_dlq_log.h"
#include "router/cluster/nats_kv.h"
#include "router/common/clock.h"
#include "router/common/fs.h"
#include "router/common/thread_name.h"
#include "router/delivery/engine.h"
#include "router/ingress/admin_handler.h"
#include "router/ingress/server.h"
#include "router/ingress/webhook_handler.h"
#include "router/journal/file_journal.h"
#include "router/journal/nats_journal.h"
#include "router/metrics/metrics.h"

namespace dvrouter {

namespace {

// Callbacks waiting for the worker; past this many the ingress answers 503 with Retry-After.
constexpr size_t kCallbacksQueued = 1024;

// Sinks' callbacks on the ingress listener: the adapter named authenticates and reads it, the
// engine applies it to the event (status, write-back, DLQ). The header check runs on the I/O
// thread; the rest on the callback worker, which answers when the confirmation is done.
class EngineCallbacks final : public CallbackOperations {
 public:
  EngineCallbacks(DeliveryEngine* engine, const std::vector<std::unique_ptr<Adapter>>* adapters,
                  RouterMetrics* metrics, uint32_t retry_after_s)
      : engine_(engine),
        adapters_(adapters),
        counts_(metrics->callbacks),
        retry_after_s_(retry_after_s),
        worker_(kCallbacksQueued) {}
  // Answers the callbacks queued so far; any later one is answered 503.
  void Stop() { worker_.Stop(); }
  Status Authorize(const CallbackRequest& request) override {
    Adapter* a = Find(request.adapter);
    AsyncConfirmations* async = a == nullptr ? nullptr : a->async_confirmations();
    Status st = a == nullptr ? NotFound("no such adapter")
                : async == nullptr
                    ? NotFound("adapter " + std::string(request.adapter) + " takes no callbacks")
                    : async->AuthorizeCallback(Credentials(request));
    if (!st.ok()) Count(ErrorResponse(st).status);
    return st;
  }
  void Callback(const CallbackRequest& request, std::string_view body,
                HttpExchange* exchange) override {
    // Copies: the job does not rely on the request's buffers.
    auto job = [this, exchange, adapter = std::string(request.adapter),
                event_id = std::string(request.event_id), target = std::string(request.target),
                authorization = std::string(request.authorization), body = std::string(body)] {
      HttpResponse r = Apply(CallbackRequest{adapter, event_id, target, authorization}, body);
      Count(r.status);
      exchange->Respond(std::move(r));
    };
    if (!worker_.TrySubmit(std::move(job))) {
      HttpResponse r = ErrorResponse(503, "overloaded", "too many callbacks waiting");
      r.retry_after_s = retry_after_s_;
      Count(r.status);
      exchange->Respond(std::move(r));
    }
  }

 private:
  void Count(int status) {
    const int k = status == 200 ? 0 : status == 401 ? 1 : status == 404 ? 2 : status == 400 ? 3 : 4;
    counts_[k]->Increment();
  }
  Adapter* Find(std::string_view name) const {
    for (const auto& x : *adapters_) {
      if (x->name() == name) return x.get();
    }
    return nullptr;
  }
  static CallbackCredentials Credentials(const CallbackRequest& request) {
    return CallbackCredentials{request.event_id, request.target, request.authorization};
  }
  HttpResponse Apply(const CallbackRequest& request, std::string_view body) {
    Adapter* a = Find(request.adapter);
    if (a == nullptr) return ErrorResponse(404, "not_found", "no such adapter");
    AsyncConfirmations* async = a->async_confirmations();
    if (async == nullptr) {
      return ErrorResponse(
          NotFound("adapter " + std::string(request.adapter) + " takes no callbacks"));
    }
    Result<DeliveryResult> result = async->ParseCallback(Credentials(request), body);
    if (!result.ok()) return ErrorResponse(result.status());
    if (Status st = engine_->Confirm(request.adapter, std::string(request.event_id), *result);
        !st.ok()) {
      return ErrorResponse(st);
    }
    HttpResponse r;
    r.body = R"({"status":"confirmed"})";
    return r;
  }

  DeliveryEngine* engine_;
  const std::vector<std::unique_ptr<Adapter>>* adapters_;
  prometheus::Counter* const* counts_;  // RouterMetrics::callbacks, by result
  const uint32_t retry_after_s_;
  CallbackWorker worker_;  // last: stopped (its jobs run) before the members they use go
};

}  // namespace

struct App::Impl {
  Impl(Config c, AppHooks h)
      : config(std::move(c)),
        hooks(h),
        runtime(config.ingress.io_threads),
        webhook(config.ingress, config.journal.partitions, config.ingress.io_threads, &metrics),
        admin(
            &metrics, [this] { RefreshGauges(); }, config.admin.auth) {}

  // Runs on an admin I/O thread, possibly while Start() is still recovering: it reads the
  // components through atomics published once they are ready.
  void RefreshGauges() {
    if (NatsLease* l = lease_ready.load(std::memory_order_acquire)) {
      cluster_metrics->leader.Set(l->held() ? 1 : 0);
    }
    if (HttpServer* s = ingress_ready.load(std::memory_order_acquire)) {
      metrics.connections_open.Set(static_cast<double>(s->connections()));
    }
    if (Journal* j = journal_ready.load(std::memory_order_acquire)) {
      metrics.OnJournalStats(j->Stats(), WallNowMs());
    }
    if (DeliveryEngine* e = engine_ready.load(std::memory_order_acquire)) e->RefreshMetrics();
  }

  Config config;
  AppHooks hooks;
  std::atomic<HttpServer*> ingress_ready{nullptr};
  std::atomic<Journal*> journal_ready{nullptr};
  std::atomic<DeliveryEngine*> engine_ready{nullptr};
  std::atomic<NatsLease*> lease_ready{nullptr};
  std::atomic<uint16_t> ingress_port{0};
  std::atomic<uint16_t> admin_port{0};
  RouterMetrics metrics;
  IoRuntime runtime;
  WebhookHandler webhook;
  AdminHandler admin;
  std::unique_ptr<HttpServer> admin_server;
  std::unique_ptr<HttpServer> ingress;
  std::vector<std::unique_ptr<Adapter>> adapters;
  std::unique_ptr<DeliveryEngine> engine;
  std::unique_ptr<EngineAdmin> engine_admin;
  std::unique_ptr<EngineCallbacks> engine_callbacks;
  std::unique_ptr<ReconcileRunner> reconcile;
  // With a `cluster` section (docs/journal-nats.md, "Several router nodes"): the lease and cursor
  // buckets' connection, the lease, and the thread that starts delivery once the lease is held.
  std::unique_ptr<NatsKv> cluster_kv;
  std::unique_ptr<NatsLease> lease;
  std::unique_ptr<ClusterMetrics> cluster_metrics;
  std::unique_ptr<ClusterAdmin> cluster_admin;
  std::thread leader_waiter;
  std::atomic<bool> stopping{false};
  std::unique_ptr<Journal> journal;
};

App::App(Config config, AppHooks hooks) : impl_(std::make_unique<Impl>(std::move(config), hooks)) {}

App::~App() { Shutdown(); }

// The journal of journal.backend (docs/journal-nats.md for nats), the engine its listener.
Status App::OpenJournal(Impl& m) {
  if (m.config.journal.nats) {
    const NatsConfig& n = m.config.journal.nats_config;
    NatsJournalOptions no;
    no.servers = n.servers;
    no.stream = n.stream;
    no.replicas = static_cast<int64_t>(n.replicas);
    no.duplicate_window_ms = static_cast<int64_t>(n.duplicate_window_ms);
    no.max_bytes = n.max_bytes;
    no.ack_timeout_ms = static_cast<int64_t>(n.ack_timeout_ms);
    no.max_pending = static_cast<int64_t>(n.max_pending);
    no.user = n.user;
    no.password = n.password;
    no.creds_file = n.creds_file;
    no.ca_file = n.ca_file;
    no.partitions = m.config.journal.partitions;
    no.compression = m.config.journal.compression ? Codec::kZstd : Codec::kNone;
    no.compression_level = static_cast<int>(m.config.journal.compression_level);
    no.listener = m.engine.get();
    no.registry = &m.metrics.registry();
    auto journal = NatsJournal::Open(std::move(no));
    if (!journal.ok()) return journal.status();
    m.journal = std::move(journal).value();
    const JournalStats stats = m.journal->Stats();
    std::fprintf(stderr,
                 "dvrouter: journal on JetStream stream %s (%llu replicas): next seq %llu, %llu "
                 "bytes\n",
                 n.stream.c_str(), static_cast<unsigned long long>(n.replicas),
                 static_cast<unsigned long long>(stats.next_seq),
                 static_cast<unsigned long long>(stats.bytes));
    return Status::Ok();
  }
  FileJournalOptions jo;
  jo.dir = m.config.journal.data_dir + "/journal";
  jo.partitions = m.config.journal.partitions;
  jo.segment_bytes = m.config.journal.segment_bytes;
  jo.disk_budget_bytes = m.config.journal.disk_budget_bytes;
  jo.fsync = m.config.journal.fsync;
  jo.preallocate = m.config.journal.preallocate;
  jo.page_cache_bytes = m.config.journal.page_cache_bytes;
  jo.compression = m.config.journal.compression ? Codec::kZstd : Codec::kNone;
  jo.compression_level = static_cast<int>(m.config.journal.compression_level);
  jo.dictionaries = m.config.journal.compression_dictionaries;
  // Without adapters nothing reads what was just committed: no frames laid out for the tail.
  jo.read_tail_records = m.config.adapters.empty() ? 0 : m.config.journal.read_tail_records;
  jo.dedupe_window_ms = static_cast<int64_t>(m.config.dedupe.window_ms);
  jo.dedupe_max_entries = m.config.dedupe.max_entries;
  jo.max_batch_events = m.config.journal.max_batch_events;
  jo.group_window_us = static_cast<int64_t>(m.config.journal.group_window_us);
  jo.group_window_events = m.config.journal.group_window_events;
  jo.observer = &m.metrics;
  jo.io = m.hooks.journal_io;
  jo.listener = m.engine.get();
  auto journal = FileJournal::Open(std::move(jo));
  if (!journal.ok()) return journal.status();
  m.journal = std::move(journal).value();
  JournalStats stats = m.journal->Stats();
  m.metrics.journal_corrupt_records.Set(static_cast<double>(stats.corrupt_records));
  m.metrics.journal_truncated_bytes.Set(static_cast<double>(stats.truncated_bytes));
  std::fprintf(stderr,
               "dvrouter: journal %s/journal recovered: next seq %llu, %llu segments, %llu bytes, "
               "%llu corrupt records skipped, %llu torn bytes truncated\n",
               m.config.journal.data_dir.c_str(), static_cast<unsigned long long>(stats.next_seq),
               static_cast<unsigned long long>(stats.segments),
               static_cast<unsigned long long>(stats.bytes),
               static_cast<unsigned long long>(stats.corrupt_records),
               static_cast<unsigned long long>(stats.truncated_bytes));
  return Status::Ok();
}

// The delivery engine and what needs it: the admin operations, sinks' callbacks,
// reconciliation. At Start with one node; on the lease thread's waiter once this node holds the
// delivery lease in a cluster.
Status App::StartDelivery(Impl& m) {
  if (Status st = m.engine->Start(m.journal.get()); !st.ok()) return st;
  m.engine_ready.store(m.engine.get(), std::memory_order_release);
  m.engine_admin = std::make_unique<EngineAdmin>(m.engine.get());
  m.admin.set_operations(m.engine_admin.get());
  m.engine_callbacks =
      std::make_unique<EngineCallbacks>(m.engine.get(), &m.adapters, &m.metrics,
                                        static_cast<uint32_t>(m.config.ingress.retry_after_s));
  m.webhook.set_callbacks(m.engine_callbacks.get());
  if (m.config.reconcile.present) {
    m.reconcile =
        std::make_unique<ReconcileRunner>(m.config, m.journal.get(), &m.metrics.registry());
    m.admin.set_reconcile(m.reconcile.get());
    m.reconcile->Start();
  }
  return Status::Ok();
}

// A node of a cluster: the lease's buckets and the cursor store were set up before the engine
// was built (ClusterSetup). One lease step now, so a node that finds the lease free delivers from
// its start; otherwise the waiter starts delivery when the lease is acquired. Losing the lease
// ends the process (crash-only failover, docs/journal-nats.md): the supervisor restarts it as a
// follower.
Status App::StartCluster(Impl& m) {
  m.cluster_admin = std::make_unique<ClusterAdmin>(
      m.lease.get(), m.journal.get(), m.cluster_kv.get(), m.config.journal.nats_config.stream);
  m.admin.set_cluster(m.cluster_admin.get());
  m.lease_ready.store(m.lease.get(), std::memory_order_release);
  (void)m.lease->Step();
  const std::string node = m.config.cluster.node;
  // Renewals run from now on, also while delivery starts (adapters may take a while).
  m.lease->Start([node](const std::string& why) {
    std::fprintf(stderr,
                 "dvrouter: cluster node %s lost the delivery lease (%s): exiting with code %d, "
                 "to be restarted as a follower (crash-only failover)\n",
                 node.c_str(), why.c_str(), App::kExitLeaseLost);
    std::fflush(stderr);
    std::_Exit(App::kExitLeaseLost);
  });
  if (m.lease->held()) {
    std::fprintf(stderr, "dvrouter: cluster node %s holds the delivery lease: delivering\n",
                 node.c_str());
    if (Status st = StartDelivery(m); !st.ok()) return st;
  } else {
    std::fprintf(stderr, "dvrouter: cluster node %s is a follower (ingress only)\n", node.c_str());
    m.leader_waiter = std::thread([&m, node] {
      SetThreadName("dv-cluster");
      while (!m.stopping.load()) {
        if (!m.lease->WaitHeld(250) || m.stopping.load()) continue;
        std::fprintf(stderr,
                     "dvrouter: cluster node %s acquired the delivery lease: delivering "
                     "(leader since %lld)\n",
                     node.c_str(), static_cast<long long>(WallNowMs()));
        if (Status st = StartDelivery(m); !st.ok()) {
          std::fprintf(stderr, "dvrouter: starting delivery failed: %s; exiting\n",
                       st.ToString().c_str());
          std::fflush(stderr);
          std::_Exit(1);
        }
        return;
      }
    });
  }
  return Status::Ok();
}

// Before the engine is built: the cluster's buckets, the lease and the cursor store in the KV.
Status App::ClusterSetup(Impl& m, EngineOptions* eo) {
  const NatsConfig& n = m.config.journal.nats_config;
  const ClusterConfig& c = m.config.cluster;
  NatsKvOptions ko;
  ko.servers = n.servers;
  ko.user = n.user;
  ko.password = n.password;
  ko.creds_file = n.creds_file;
  ko.ca_file = n.ca_file;
  ko.request_timeout_ms = std::max<int64_t>(250, static_cast<int64_t>(c.lease_ttl_ms) / 4);
  auto kv = NatsKv::Connect(ko);
  if (!kv.ok()) return kv.status();
  m.cluster_kv = std::move(kv).value();
  const int64_t replicas = static_cast<int64_t>(n.replicas);
  auto state =
      m.cluster_kv->Bucket(n.stream + "_state", static_cast<int64_t>(c.lease_ttl_ms), replicas);
  if (!state.ok()) return state.status();
  auto cursors = m.cluster_kv->Bucket(n.stream + "_cursors", 0, replicas);
  if (!cursors.ok()) return cursors.status();
  LeaseOptions lo;
  lo.node = c.node;
  lo.ttl_ms = static_cast<int64_t>(c.lease_ttl_ms);
  m.lease = std::make_unique<NatsLease>(*state, lo);
  m.cluster_metrics = std::make_unique<ClusterMetrics>(&m.metrics.registry(), c.node);
  NatsLease* lease = m.lease.get();
  eo->cursor_store = std::make_shared<NatsCursorStore>(*cursors, n.stream + "_cursors",
                                                       [lease] { return lease->held(); });
  NatsKv* conn = m.cluster_kv.get();
  eo->dlq_log = [conn, name = n.stream + "_DLQ", replicas]() -> Result<std::unique_ptr<DlqLog>> {
    auto log = NatsDlqLog::Open(conn, name, replicas);
    if (!log.ok()) return log.status();
    return std::unique_ptr<DlqLog>(std::move(log).value());
  };
  for (const AdapterConfig& ac : m.config.adapters) {
    if (ac.type == "lake" || ac.type == "sqlite") {
      std::fprintf(stderr,
                   "dvrouter: NOTE: adapters.%s (%s) writes local files: in a cluster every node "
                   "must see the same files (a shared volume), since the leader writes them "
                   "(docs/journal-nats.md)\n",
                   ac.name.c_str(), ac.type.c_str());
    }
  }
  return Status::Ok();
}

Status App::Start() {
  Impl& m = *impl_;
  if (Status st = ValidateAdmin(m.config.admin); !st.ok()) return st;
  m.runtime.Start();
  m.admin_server = std::make_unique<HttpServer>(&m.runtime, &m.admin, HttpServerLimits{});
  if (Status st = m.admin_server->Listen(m.config.admin.listen); !st.ok()) return st;
  m.admin_port = m.admin_server->port();

  // Adapters and the engine exist before the journal opens: the engine is its CommitListener.
  std::vector<EngineAdapter> engine_adapters;
  AdapterContext ctx;
  ctx.registry = &m.metrics.registry();
  for (const AdapterConfig& ac : m.config.adapters) {
    std::unique_ptr<Adapter> adapter;
    if (m.hooks.make_adapter) adapter = m.hooks.make_adapter(ac);
    if (!adapter) {
      auto made = MakeAdapter(ac, ctx);
      if (!made.ok()) return made.status();
      adapter = std::move(made).value();
    }
    engine_adapters.push_back(EngineAdapter{ac, adapter.get()});
    m.adapters.push_back(std::move(adapter));
  }
  EngineOptions eo;
  eo.delivery = m.config.delivery;
  eo.loop_guard = m.config.loop_guard;
  eo.routes = m.config.routes;
  eo.partitions = m.config.journal.partitions;
  eo.state_dir = m.config.journal.data_dir + "/delivery";
  eo.max_body_bytes = m.config.ingress.max_body_bytes;
  eo.registry = &m.metrics.registry();
  if (m.config.cluster.enabled) {
    if (Status st = ClusterSetup(m, &eo); !st.ok()) return st;
  }
  m.engine = std::make_unique<DeliveryEngine>(std::move(eo), std::move(engine_adapters));

  if (Status st = MakeDirectories(m.config.journal.data_dir); !st.ok()) return st;
  if (Status st = OpenJournal(m); !st.ok()) return st;
  m.journal_ready.store(m.journal.get(), std::memory_order_release);
  m.webhook.set_journal(m.journal.get());
  if (m.lease) {
    if (Status st = StartCluster(m); !st.ok()) return st;
  } else if (Status st = StartDelivery(m); !st.ok()) {
    return st;
  }

  HttpServerLimits limits;
  limits.max_body_bytes = m.config.ingress.max_body_bytes;
  limits.header_timeout_ms = m.config.ingress.header_timeout_ms;
  limits.body_timeout_ms = m.config.ingress.body_timeout_ms;
  limits.max_connections = m.config.ingress.max_connections;
  limits.body_padding = Decoder::kPadding;
  m.ingress = std::make_unique<HttpServer>(&m.runtime, &m.webhook, limits);
  if (m.config.ingress.tls.enabled) {
    if (Status st = m.ingress->EnableTls(m.config.ingress.tls); !st.ok()) return st;
  }
  if (Status st = m.ingress->Listen(m.config.ingress.listen); !st.ok()) return st;
  m.ingress_ready.store(m.ingress.get(), std::memory_order_release);
  m.ingress_port = m.ingress->port();
  if (m.config.ingress.auth.mode == AuthMode::kNone) {
    std::fprintf(stderr,
                 "dvrouter: WARNING: ingress.auth.mode is none: webhooks unauthenticated\n");
  }
  for (const AdapterConfig& ac : m.config.adapters) {
    if (!ac.status_source().empty() && m.config.loop_guard.user_ids.empty()) {
      std::fprintf(
          stderr,
          "dvrouter: WARNING: adapters.%s writes statuses back to the CRM but loop_guard.user_ids "
          "is empty: the Updates its PATCHes raise come back as events "
          "(docs/adapters/dataverse.md)\n",
          ac.name.c_str());
    }
  }
  if (!m.config.journal.fsync) {
    std::fprintf(stderr,
                 "dvrouter: WARNING: journal.durability is unsafe_no_fsync: acknowledged events "
                 "can be lost if the machine crashes\n");
  }
  m.admin.set_ready(true);
  std::fprintf(stderr, "dvrouter: ingress on %s%s:%u%s, admin on %s:%u\n",
               m.config.ingress.tls.enabled ? "https://" : "", m.config.ingress.listen.host.c_str(),
               m.ingress->port(), m.config.ingress.path.c_str(), m.config.admin.listen.host.c_str(),
               m.admin_server->port());
  return Status::Ok();
}

void App::Shutdown() {
  Impl& m = *impl_;
  // No delivery starts from here on (a start under way completes first).
  m.stopping.store(true);
  if (m.leader_waiter.joinable()) m.leader_waiter.join();
  m.admin.set_ready(false);
  m.ingress_ready.store(nullptr, std::memory_order_release);
  if (m.ingress) m.ingress->StopAccepting();
  // A reconciliation run ends at its next request; it appends no more.
  if (m.reconcile) m.reconcile->Stop();
  // Completes every Append already queued: their callbacks post the responses.
  if (m.journal) m.journal->Stop();
  // Give the I/O threads a bounded moment to write those responses.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (m.ingress && m.ingress->in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Callbacks still queued are confirmed and answered; later ones get 503.
  if (m.engine_callbacks) m.engine_callbacks->Stop();
  if (m.admin_server) m.admin_server->StopAccepting();
  m.runtime.Stop();  // no admin request runs from here on
  m.admin.set_operations(nullptr);
  m.admin.set_reconcile(nullptr);
  m.admin.set_cluster(nullptr);
  m.webhook.set_callbacks(nullptr);
  m.engine_ready.store(nullptr, std::memory_order_release);
  // No commit can come any more: stop delivery (persists the cursors).
  if (m.engine) m.engine->Stop();
  m.journal_ready.store(nullptr, std::memory_order_release);
  m.ingress.reset();
  m.admin_server.reset();
  m.engine_admin.reset();
  m.engine_callbacks.reset();
  m.reconcile.reset();
  m.engine.reset();
  m.adapters.clear();
  // The cursors are saved: a follower may take over at once.
  m.lease_ready.store(nullptr, std::memory_order_release);
  if (m.lease) {
    m.lease->Stop();
    m.lease->Release();
  }
  m.cluster_admin.reset();
  m.lease.reset();
  m.cluster_kv.reset();
  m.journal.reset();
}

uint16_t App::ingress_port() const { return impl_->ingress_port.load(); }
uint16_t App::admin_port() const { return impl_->admin_port.load(); }
DeliveryEngine* App::engine() const { return impl_->engine_ready.load(); }

}  // namespace dvrouter
