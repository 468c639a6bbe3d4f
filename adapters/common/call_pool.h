// CallPool: runs an adapter's per-event calls (one HTTP request each) on the adapter's own
// threads, at most `limit` at once, and reports a Deliver's results once all its calls are done.
// The ERP adapter and the Dataverse write-back share it.
//
// Threads: Submit from the delivery workers; calls run on the pool's threads; `done` is called on
// a pool thread (or in Submit/Stop when nothing is left to run). Stop answers the calls that have
// not started with kRetryable and returns once no call runs any more.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "adapters/adapter.h"

namespace prometheus {
class Gauge;
}

namespace dvrouter {

class CallPool {
 public:
  using Call = std::function<DeliveryResult()>;

  // `threads`: the most calls that can ever run at once; `limit`: how many may now.
  CallPool(std::string what, size_t threads, double limit);
  ~CallPool();

  void Start();
  // results[i] is the outcome of event i; calls[k] = {i, call} fills results[i] when it ran.
  // `done` gets the results once every call finished.
  void Submit(std::vector<DeliveryResult> results, std::vector<std::pair<size_t, Call>> calls,
              DeliveryDone* done);
  void Stop();

  // Applies fn to the current limit (kept within [1, threads]) and returns the new one.
  double AdjustLimit(const std::function<double(double)>& fn);
  double limit() const;
  void set_in_flight_gauge(prometheus::Gauge* g) { in_flight_gauge_ = g; }

 private:
  struct Job {
    std::vector<DeliveryResult> results;
    DeliveryDone* done = nullptr;
    size_t remaining = 0;  // under mu_
  };
  struct Item {
    Job* job = nullptr;
    size_t index = 0;
    Call call;
  };
  void Run();
  void Finish(Job* job);

  const std::string what_;
  const size_t threads_max_;
  prometheus::Gauge* in_flight_gauge_ = nullptr;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool started_ = false;
  bool stopping_ = false;
  int active_ = 0;
  double limit_;
  std::vector<std::thread> threads_;
};

}  // namespace dvrouter
