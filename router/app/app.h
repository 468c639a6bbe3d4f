// App: a running dvrouter node, wired from a Config.
//
// Start() brings up the admin listener first (so /healthz answers and /readyz says "not ready"
// during recovery), recovers the journal, then opens the webhook listener. Shutdown() stops
// accepting, completes every request already handed to the journal (so nothing in flight is
// answered with a reset), stops delivery (batches in flight finish or come back later: cursors
// are persisted) and stops the threads. Construct, Start and Shutdown on one thread.
// With a `cluster` section (docs/journal-nats.md, "Several router nodes") every node serves the
// ingress and delivery starts only once this node holds the delivery lease (on the dv-cluster
// thread when it is acquired later); losing the lease ends the process with kExitLeaseLost.
#pragma once

#include <functional>
#include <memory>

#include "adapters/adapter.h"
#include "router/common/status.h"
#include "router/config/config.h"

namespace dvrouter {

// Test seams; production leaves them empty.
struct AppHooks {
  class JournalIo* journal_io = nullptr;  // the journal's syscalls (fault injection)
  // Builds adapters instead of the factory table when set (test adapters); may return null to
  // fall back to the table for a given adapter.
  std::function<std::unique_ptr<Adapter>(const AdapterConfig&)> make_adapter;
};

struct EngineOptions;

class App {
 public:
  // The exit code of a cluster node that lost the delivery lease (docs/journal-nats.md,
  // "Several router nodes"): its supervisor restarts it, as a follower.
  static constexpr int kExitLeaseLost = 75;

  explicit App(Config config, AppHooks hooks = {});
  ~App();
  Status Start();
  void Shutdown();
  // Bound ports (0 until listening); any thread, also while Start() runs.
  uint16_t ingress_port() const;
  uint16_t admin_port() const;
  // The delivery engine (null before Start): tests inspect cursors and lag through it.
  class DeliveryEngine* engine() const;

 private:
  struct Impl;
  static Status OpenJournal(Impl& m);
  static Status StartDelivery(Impl& m);
  static Status StartCluster(Impl& m);
  static Status ClusterSetup(Impl& m, EngineOptions* eo);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dvrouter
