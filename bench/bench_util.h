// Shared by the micro-benchmarks: fixture bodies, loaded once (single-threaded use), and a
// countdown of journal appends' answers (answered on the journal's writer thread, awaited on the
// benchmark's).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

#include "router/journal/journal.h"

namespace dvrouter::bench {

inline std::string LoadFixture(const std::string& name) {
  std::ifstream in(std::string(DVROUTER_FIXTURES_DIR) + "/" + name, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline const char* const kFixtures[] = {
    "create-msdyn_agentstatus-postop-sync.json",
    "customaction-context-devkit-isodates.json",
    "update-contact-postop-async.json",
    "update-msdyn_agentstatus-postop-async.json",
};

// Set `remaining` to the appends handed over, then Wait: false if any was refused or a duplicate.
struct AppendWaiter final : AppendCallback {
  std::mutex mu;
  std::condition_variable cv;
  size_t remaining = 0;
  size_t failures = 0;
  void OnAppendDone(const AppendResult& r) override {
    std::lock_guard<std::mutex> lock(mu);
    if (!r.status.ok() || r.duplicate) ++failures;
    if (--remaining == 0) cv.notify_all();
  }
  bool Wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return remaining == 0; });
    return failures == 0;
  }
};

}  // namespace dvrouter::bench
