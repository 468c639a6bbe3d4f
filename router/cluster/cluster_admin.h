// The cluster's view on a router node (docs/journal-nats.md, "Several router nodes"):
// `GET /cluster` on the admin listener (this node and its role, the lease's holder and age, the
// nodes whose heartbeat is alive, the stream's state and its replicas' lag) and the gauge
// dvrouter_cluster_leader.
//
// Threads: Handle on the admin I/O threads; ClusterMetrics::Refresh before each scrape (admin
// I/O threads). Both read the lease (thread-safe) and the journal's Stats (any thread).
#pragma once

#include <optional>
#include <string>

#include "router/ingress/admin_handler.h"

namespace prometheus {
template <typename T>
class Family;
class Gauge;
class Registry;
}  // namespace prometheus

namespace dvrouter {

class Journal;
class NatsKv;
class NatsLease;

// dvrouter_cluster_leader{node}: 1 while this node holds the delivery lease, else 0.
struct ClusterMetrics {
  ClusterMetrics(prometheus::Registry* registry, const std::string& node);
  prometheus::Family<prometheus::Gauge>& family;
  prometheus::Gauge& leader;
};

class ClusterAdmin final : public AdminOperations {
 public:
  // `lease`, `journal` and `kv` (may be null: no replicas shown) must outlive this object;
  // `stream` is the journal's stream name.
  ClusterAdmin(const NatsLease* lease, const Journal* journal, const NatsKv* kv, std::string stream)
      : lease_(lease), journal_(journal), kv_(kv), stream_(std::move(stream)) {}
  std::optional<HttpResponse> Handle(std::string_view method, std::string_view target) override;
  // The JSON of GET /cluster.
  std::string Json() const;

 private:
  const NatsLease* lease_;
  const Journal* journal_;
  const NatsKv* kv_;
  const std::string stream_;
};

}  // namespace dvrouter
