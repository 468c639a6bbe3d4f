// NatsKv: the NATS connection of a router node's cluster state (docs/journal-nats.md, "Several
// router nodes"), apart from the journal's: the key-value buckets of the delivery lease
// (`<stream>_state`, with a TTL) and of the delivery cursors (`<stream>_cursors`), created on
// first use or bound when they exist. The connection reconnects to any listed server for ever.
//
// Threads: Connect and Bucket from the owner's thread (App::Start); the kvStore handles it
// returns are used from the lease thread and the engine's maintenance thread, StreamReplicas
// from the admin I/O threads (the client is thread-safe).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "router/common/status.h"

typedef struct __kvStore kvStore;  // <nats/nats.h>
typedef struct __jsCtx jsCtx;      // <nats/nats.h>

namespace dvrouter {

struct NatsKvOptions {
  std::vector<std::string> servers;  // nats://host:port
  std::string user, password, creds_file, ca_file;
  int64_t request_timeout_ms = 1000;  // each key-value request's wait
};

class NatsKv {
 public:
  // Unavailable when no server answers; InvalidArgument for bad client options.
  static Result<std::unique_ptr<NatsKv>> Connect(const NatsKvOptions& options);
  ~NatsKv();
  NatsKv(const NatsKv&) = delete;
  NatsKv& operator=(const NatsKv&) = delete;

  // The bucket `name` (history 1, file storage), created with `ttl_ms` (0: none) and `replicas`
  // when missing. An existing bucket with another TTL is refused (FailedPrecondition): every
  // node must use the same lease_ttl. Owned by this object; valid until it goes.
  Result<kvStore*> Bucket(const std::string& name, int64_t ttl_ms, int64_t replicas);

  // The stream's replicas as JetStream reports them (GET /cluster). Any thread.
  struct Replica {
    std::string server;
    bool leader = false, current = false, offline = false;
    int64_t active_ms = 0;  // since the leader last heard from it
    uint64_t lag = 0;       // operations behind the leader
  };
  Result<std::vector<Replica>> StreamReplicas(const std::string& stream) const;

  // The JetStream context of this connection (for the DLQ's stream, NatsDlqLog).
  jsCtx* js() const;

  struct Impl;

 private:
  explicit NatsKv(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The text of a NATS status with the client's last error detail (for error messages).
std::string NatsErrorText(int status);

}  // namespace dvrouter
