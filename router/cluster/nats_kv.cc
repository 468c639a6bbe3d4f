#include "router/cluster/nats_kv.h"

#include <nats/nats.h>

#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace dvrouter {

namespace {
constexpr int64_t kBucketWaitMs = 30'000;  // a JetStream cluster that just started elects a leader
}

std::string NatsErrorText(int status) {
  const char* last = nats_GetLastError(nullptr);
  std::string out = natsStatus_GetText(static_cast<natsStatus>(status));
  if (last != nullptr && *last != '\0') out += std::string(" (") + last + ")";
  return out;
}

struct NatsKv::Impl {
  natsOptions* nopts = nullptr;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  std::mutex mu;
  std::vector<kvStore*> buckets;

  ~Impl() {
    for (kvStore* kv : buckets) kvStore_Destroy(kv);
    if (js != nullptr) jsCtx_Destroy(js);
    if (nc != nullptr) natsConnection_Destroy(nc);
    if (nopts != nullptr) natsOptions_Destroy(nopts);
  }
};

NatsKv::NatsKv(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NatsKv::~NatsKv() = default;

Result<std::unique_ptr<NatsKv>> NatsKv::Connect(const NatsKvOptions& o) {
  auto impl = std::make_unique<Impl>();
  natsStatus s = natsOptions_Create(&impl->nopts);
  std::vector<const char*> urls;
  for (const std::string& u : o.servers) urls.push_back(u.c_str());
  natsOptions* n = impl->nopts;
  if (s == NATS_OK) s = natsOptions_SetServers(n, urls.data(), static_cast<int>(urls.size()));
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(n, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(n, 250);
  if (s == NATS_OK) s = natsOptions_SetTimeout(n, 2000);
  if (s == NATS_OK && !o.user.empty()) {
    s = natsOptions_SetUserInfo(n, o.user.c_str(), o.password.c_str());
  }
  if (s == NATS_OK && !o.creds_file.empty()) {
    s = natsOptions_SetUserCredentialsFromFiles(n, o.creds_file.c_str(), nullptr);
  }
  if (s == NATS_OK && !o.ca_file.empty()) {
    s = natsOptions_SetSecure(n, true);
    if (s == NATS_OK) s = natsOptions_LoadCATrustedCertificates(n, o.ca_file.c_str());
  }
  if (s != NATS_OK) return InvalidArgument("cluster: NATS client options: " + NatsErrorText(s));
  s = natsConnection_Connect(&impl->nc, n);
  if (s != NATS_OK) {
    std::string list;
    for (const std::string& u : o.servers) list += (list.empty() ? "" : ", ") + u;
    return Unavailable("cluster: cannot connect to " + list + ": " + NatsErrorText(s));
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = o.request_timeout_ms;
  s = natsConnection_JetStream(&impl->js, impl->nc, &jo);
  if (s != NATS_OK) return Unavailable("cluster: JetStream context: " + NatsErrorText(s));
  return std::unique_ptr<NatsKv>(new NatsKv(std::move(impl)));
}

Result<kvStore*> NatsKv::Bucket(const std::string& name, int64_t ttl_ms, int64_t replicas) {
  Impl& m = *impl_;
  kvStore* kv = nullptr;
  natsStatus s = NATS_OK;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kBucketWaitMs);
  for (;;) {
    s = js_KeyValue(&kv, m.js, name.c_str());
    if (s == NATS_NOT_FOUND) {
      kvConfig cfg;
      kvConfig_Init(&cfg);
      cfg.Bucket = name.c_str();
      cfg.History = 1;
      cfg.TTL = ttl_ms * 1'000'000;  // nanoseconds: the bucket stream's max age
      cfg.StorageType = js_FileStorage;
      cfg.Replicas = static_cast<int>(replicas);
      s = js_CreateKeyValue(&kv, m.js, &cfg);
    }
    if (s == NATS_OK || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));  // JetStream not ready yet
  }
  if (s != NATS_OK) {
    return Unavailable("cluster: key-value bucket " + name + ": " + NatsErrorText(s));
  }
  kvStatus* st = nullptr;
  s = kvStore_Status(&st, kv);
  if (s != NATS_OK) {
    kvStore_Destroy(kv);
    return Unavailable("cluster: key-value bucket " + name + ": " + NatsErrorText(s));
  }
  const int64_t have_ms = kvStatus_TTL(st) / 1'000'000;
  kvStatus_Destroy(st);
  if (have_ms != ttl_ms) {
    kvStore_Destroy(kv);
    return FailedPrecondition("cluster: key-value bucket " + name + " has a TTL of " +
                              std::to_string(have_ms) + " ms, this node wants " +
                              std::to_string(ttl_ms) +
                              " ms: give every node the same cluster.lease_ttl (or delete the "
                              "bucket while no node runs)");
  }
  std::lock_guard<std::mutex> lock(m.mu);
  m.buckets.push_back(kv);
  return kv;
}

jsCtx* NatsKv::js() const { return impl_->js; }

Result<std::vector<NatsKv::Replica>> NatsKv::StreamReplicas(const std::string& stream) const {
  jsStreamInfo* si = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  const natsStatus s = js_GetStreamInfo(&si, impl_->js, stream.c_str(), nullptr, &code);
  if (s != NATS_OK) return Unavailable("stream " + stream + ": " + NatsErrorText(s));
  std::vector<Replica> out;
  if (si->Cluster != nullptr) {
    if (si->Cluster->Leader != nullptr) {
      Replica r;
      r.server = si->Cluster->Leader;
      r.leader = r.current = true;
      out.push_back(std::move(r));
    }
    for (int i = 0; i < si->Cluster->ReplicasLen; ++i) {
      const jsPeerInfo* p = si->Cluster->Replicas[i];
      Replica r;
      r.server = p->Name != nullptr ? p->Name : "";
      r.current = p->Current;
      r.offline = p->Offline;
      r.active_ms = p->Active / 1'000'000;
      r.lag = p->Lag;
      out.push_back(std::move(r));
    }
  }
  jsStreamInfo_Destroy(si);
  return out;
}

}  // namespace dvrouter
