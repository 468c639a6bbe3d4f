// NatsLease: the delivery lease of a cluster of router nodes (docs/journal-nats.md, "Several
// router nodes"). The key `leader` of the bucket `<stream>_state`, whose TTL is lease_ttl, holds
// {"node","since_ms","renewed_ms"} of the node that delivers. A follower acquires it with a
// create (which succeeds only when the key is absent: never written, deleted, or expired); the
// leader renews it every lease_ttl/4 with an update checked against the revision it last wrote.
// A revision conflict (unless the key holds this node's own value: a renewal whose answer was
// lost), or no successful renewal for 3/4 of lease_ttl (before the key could expire and another
// node take it), loses the lease. Every step also writes this node's
// heartbeat, `node.<name>`, which the TTL removes when the node stops.
//
// Threads: Step on one thread at a time (the lease thread once Start ran, else the caller); a
// watchdog thread ends the lease at 3/4 of lease_ttl without a renewal even while one blocks;
// held, WaitHeld, Leader and Nodes from any thread; Start, Stop and Release on the owner's.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "router/common/status.h"

typedef struct __kvStore kvStore;  // <nats/nats.h>

namespace dvrouter {

struct LeaseOptions {
  std::string node;       // this node's name (cluster.node)
  int64_t ttl_ms = 5000;  // cluster.lease_ttl: the bucket's TTL
};

struct LeaderInfo {
  std::string node;
  int64_t since_ms = 0;    // wall clock, when it acquired the lease
  int64_t renewed_ms = 0;  // wall clock, its last renewal
  uint64_t revision = 0;
};

struct NodeInfo {
  std::string node;
  std::string role;  // "leader" or "follower"
  int64_t seen_ms = 0;
};

class NatsLease {
 public:
  // `bucket` (NatsKv::Bucket with ttl_ms) must outlive this object.
  NatsLease(kvStore* bucket, LeaseOptions options);
  ~NatsLease();  // Stop()
  NatsLease(const NatsLease&) = delete;
  NatsLease& operator=(const NatsLease&) = delete;

  enum class Change { kNone, kAcquired, kLost };
  // One round: a follower tries to acquire, the leader renews; then the heartbeat. `*why` says
  // why a lease was lost.
  Change Step(std::string* why = nullptr);

  // Runs Step every lease_ttl/4 on the lease thread; `on_lost` runs once when the lease is lost
  // (the loop then ends): on the lease thread, or on the watchdog thread when no renewal
  // succeeded for 3/4 of lease_ttl while one blocks. Acquisition is seen through held() /
  // WaitHeld().
  void Start(std::function<void(const std::string& why)> on_lost);
  void Stop();
  // Deletes the key when this node still holds it (a graceful stop, after delivery stopped), so
  // a follower takes over at its next step instead of after lease_ttl.
  void Release();

  bool held() const { return held_.load(std::memory_order_acquire); }
  // True once held, false after `ms` or Stop.
  bool WaitHeld(int64_t ms);
  // The lease's holder as stored (NotFound when nobody holds it).
  Result<LeaderInfo> Leader() const;
  // The nodes whose heartbeat has not expired.
  std::vector<NodeInfo> Nodes() const;

  const std::string& node() const { return opt_.node; }
  int64_t ttl_ms() const { return opt_.ttl_ms; }
  int64_t renew_interval_ms() const { return opt_.ttl_ms / 4; }

 private:
  std::string Value(int64_t since_ms, int64_t renewed_ms) const;
  void Heartbeat();
  void Loop();
  void Watch();
  void ReportLost(const std::string& why);  // once: held() false, then on_lost

  kvStore* const kv_;
  const LeaseOptions opt_;
  std::atomic<bool> held_{false};
  uint64_t revision_ = 0;               // Step's thread
  int64_t since_ms_ = 0;                // Step's thread
  std::atomic<int64_t> last_ok_ms_{0};  // steady clock at the start of the last good write
  std::function<void(const std::string&)> on_lost_;
  std::atomic<bool> lost_reported_{false};
  std::thread watchdog_;  // ends the lease at 3/4 of lease_ttl even while a renewal blocks
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace dvrouter
