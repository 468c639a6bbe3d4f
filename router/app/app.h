// App: a running dvrouter node, wired from a Config.
//
// Start() brings up the admin listener first (so /healthz answers and /readyz says "not ready"
// during recovery), recovers the journal, then opens the webhook listener. Shutdown() stops
// accepting, completes every request already handed to the journal (so nothing in flight is
// answered with a reset), and stops the threads. Construct, Start and Shutdown on one thread.
#pragma once

#include <memory>

#include "router/common/status.h"
#include "router/config/config.h"

namespace dvrouter {

// Test seams; production leaves them empty.
struct AppHooks {
  class JournalIo* journal_io = nullptr;  // the journal's syscalls (fault injection)
};

class App {
 public:
  explicit App(Config config, AppHooks hooks = {});
  ~App();
  Status Start();
  void Shutdown();
  // Bound ports (0 until listening); any thread, also while Start() runs.
  uint16_t ingress_port() const;
  uint16_t admin_port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dvrouter
