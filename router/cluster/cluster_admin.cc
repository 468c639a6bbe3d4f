#include "router/cluster/cluster_admin.h"

#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "router/cluster/lease.h"
#include "router/cluster/nats_kv.h"
#include "router/common/clock.h"
#include "router/common/json.h"
#include "router/journal/journal.h"

namespace dvrouter {

ClusterMetrics::ClusterMetrics(prometheus::Registry* r, const std::string& node)
    : family(prometheus::BuildGauge()
                 .Name("dvrouter_cluster_leader")
                 .Help("1 while this node holds the delivery lease (delivers), else 0")
                 .Register(*r)),
      leader(family.Add({{"node", node}})) {}

std::optional<HttpResponse> ClusterAdmin::Handle(std::string_view method, std::string_view target) {
  if (TargetPath(target) != "/cluster") return std::nullopt;
  if (method != "GET" && method != "HEAD") {
    HttpResponse r = ErrorResponse(405, "method_not_allowed", "/cluster accepts GET only");
    r.allow = "GET, HEAD";
    return r;
  }
  HttpResponse r;
  r.body = Json();
  return r;
}

std::string ClusterAdmin::Json() const {
  const int64_t now = WallNowMs();
  std::string out = "{\"node\":";
  AppendJsonString(&out, lease_->node());
  out += std::string(",\"role\":\"") + (lease_->held() ? "leader" : "follower") + "\"";
  out += ",\"lease_ttl_ms\":" + std::to_string(lease_->ttl_ms());
  out += ",\"leader\":";
  Result<LeaderInfo> leader = lease_->Leader();
  if (leader.ok()) {
    out += "{\"node\":";
    AppendJsonString(&out, leader->node);
    out += ",\"since_ms\":" + std::to_string(leader->since_ms) +
           ",\"renewed_ms\":" + std::to_string(leader->renewed_ms) +
           ",\"lease_age_ms\":" + std::to_string(now - leader->since_ms) +
           ",\"revision\":" + std::to_string(leader->revision) + "}";
  } else if (leader.status().code() == StatusCode::kNotFound) {
    out += "null";
  } else {
    out += "{\"error\":";
    AppendJsonString(&out, leader.status().message());
    out += "}";
  }
  out += ",\"nodes\":[";
  bool first = true;
  for (const NodeInfo& n : lease_->Nodes()) {
    if (!first) out += ',';
    first = false;
    out += "{\"node\":";
    AppendJsonString(&out, n.node);
    out += ",\"role\":";
    AppendJsonString(&out, n.role);
    out += ",\"seen_ms\":" + std::to_string(n.seen_ms) + "}";
  }
  const JournalStats s = journal_->Stats();
  out += "],\"stream\":{\"name\":";
  AppendJsonString(&out, stream_);
  out += ",\"last_seq\":" + std::to_string(s.next_seq == 0 ? 0 : s.next_seq - 1) +
         ",\"bytes\":" + std::to_string(s.bytes) +
         ",\"max_bytes\":" + std::to_string(s.budget_bytes) +
         ",\"oldest_received_ms\":" + std::to_string(s.oldest_received_ms);
  if (kv_ != nullptr) {
    out += ",\"replicas\":";
    Result<std::vector<NatsKv::Replica>> replicas = kv_->StreamReplicas(stream_);
    if (!replicas.ok()) {
      out += "{\"error\":";
      AppendJsonString(&out, replicas.status().message());
      out += "}";
    } else {
      out += "[";
      for (size_t i = 0; i < replicas->size(); ++i) {
        const NatsKv::Replica& r = (*replicas)[i];
        out += i == 0 ? "{\"server\":" : ",{\"server\":";
        AppendJsonString(&out, r.server);
        out += std::string(",\"leader\":") + (r.leader ? "true" : "false") +
               ",\"current\":" + (r.current ? "true" : "false") +
               ",\"offline\":" + (r.offline ? "true" : "false") +
               ",\"active_ms\":" + std::to_string(r.active_ms) +
               ",\"lag\":" + std::to_string(r.lag) + "}";
      }
      out += "]";
    }
  }
  out += "}}";
  return out;
}

}  // namespace dvrouter
