// The admin listener's routes: /metrics, /healthz, /readyz, /stats and the console (/ui/)
// (AdminHandler), and the delivery engine's operations plugged into it once the engine runs
// (EngineAdmin). docs/operations.md, "Admin API", documents each:
//   GET  /events?row_id=&table=&message=&state=&before=&limit=   search, newest first
//   GET  /events/{id}[?record=1]           status per adapter, timeline (and header and body)
//   GET  /dlq[?adapter=A][&id=N][&all=1][&reason=R][&since=MS][&limit=N]   DLQ entries
//   POST /dlq/replay[?adapter=A][&id=N|&ids=N,M,...]   send DLQ entries back to their adapter
//   POST /replay?adapter=A&from=S&to=S     deliver a retained journal range again
//   GET  /replay                           the replays queued and running
//   POST /reconcile[?dry_run=1], GET /reconcile   reconciliation runs (ReconcileRunner)
//   GET  /cluster                          the cluster's nodes, leader, stream (ClusterAdmin)
// The JSON bodies are rendered by admin_json.h (through the engine).
//
// Threads: Handle runs on the admin listener's I/O threads; set_ready and set_operations on the
// thread that starts and stops the router (App).
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string_view>

#include "router/ingress/admin_auth.h"
#include "router/ingress/http.h"
#include "router/metrics/metrics.h"

namespace dvrouter {

class DeliveryEngine;

// Operations beyond metrics and health (the delivery engine's: event status, DLQ, replay),
// plugged into the admin listener once they exist. Called on admin I/O threads.
class AdminOperations {
 public:
  virtual ~AdminOperations() = default;
  // A response for the paths it serves, nullopt for others (404).
  virtual std::optional<HttpResponse> Handle(std::string_view method, std::string_view target) = 0;
};

// The admin listener's routes: /metrics, /healthz, /readyz, and AdminOperations' paths.
class AdminHandler final : public HttpHandler {
 public:
  // `refresh` runs before each /metrics scrape to update gauges read from other components;
  // `auth` says who may call (AdminGuard, on each request's header).
  AdminHandler(RouterMetrics* metrics, std::function<void()> refresh, AdminAuthConfig auth = {});
  void set_ready(bool ready);
  void set_operations(AdminOperations* ops) { ops_.store(ops, std::memory_order_release); }
  // Reconciliation's routes (/reconcile), when it is configured.
  void set_reconcile(AdminOperations* ops) { reconcile_.store(ops, std::memory_order_release); }
  // The cluster's route (/cluster), with a `cluster` section.
  void set_cluster(AdminOperations* ops) { cluster_.store(ops, std::memory_order_release); }
  std::optional<HttpResponse> Precheck(const HttpRequestView& request) override {
    return guard_.Check(request);
  }
  void Handle(const HttpRequestView& request, HttpConnectionState* state, HttpExchange* exchange,
              int io_thread) override;

 private:
  RouterMetrics* metrics_;
  std::function<void()> refresh_;
  AdminGuard guard_;
  std::atomic<bool> ready_{false};
  std::atomic<AdminOperations*> ops_{nullptr};
  std::atomic<AdminOperations*> reconcile_{nullptr};
  std::atomic<AdminOperations*> cluster_{nullptr};
};

// The delivery engine's operations (the paths above), answered from `engine`, which must
// outlive it.
class EngineAdmin final : public AdminOperations {
 public:
  explicit EngineAdmin(DeliveryEngine* engine) : engine_(engine) {}
  std::optional<HttpResponse> Handle(std::string_view method, std::string_view target) override;

 private:
  DeliveryEngine* engine_;
};

}  // namespace dvrouter
