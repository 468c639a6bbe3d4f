// The results of one Adapter::Deliver call, awaited by a test. Deliver's thread reports, the
// test's thread waits.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <span>
#include <vector>

#include "adapters/adapter.h"

namespace dvrouter::testing {

class Done final : public DeliveryDone {
 public:
  void OnDelivered(std::span<const DeliveryResult> r) override {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_FALSE(called_) << "done called twice";
    results_.assign(r.begin(), r.end());
    called_ = true;
    cv_.notify_all();
  }
  // The results of the one OnDelivered call; fails the test if none comes within a minute.
  std::vector<DeliveryResult> Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(60), [&] { return called_; })) {
      ADD_FAILURE() << "the adapter never called done";
    }
    return results_;
  }
  bool called() {
    std::lock_guard<std::mutex> lock(mu_);
    return called_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool called_ = false;
  std::vector<DeliveryResult> results_;
};

}  // namespace dvrouter::testing
