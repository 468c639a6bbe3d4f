#include "adapters/common/call_pool.h"

#include <prometheus/gauge.h>

#include <algorithm>
#include <exception>

#include "router/common/thread_name.h"

namespace dvrouter {

CallPool::CallPool(std::string what, size_t threads, double limit)
    : what_(std::move(what)),
      threads_max_(std::max<size_t>(1, threads)),
      limit_(std::clamp(limit, 1.0, static_cast<double>(std::max<size_t>(1, threads)))) {}

CallPool::~CallPool() { Stop(); }

void CallPool::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_) return;
  started_ = true;
  for (size_t i = 0; i < threads_max_; ++i) threads_.emplace_back([this] { Run(); });
}

void CallPool::Submit(std::vector<DeliveryResult> results,
                      std::vector<std::pair<size_t, Call>> calls, DeliveryDone* done) {
  auto* job = new Job;
  job->results = std::move(results);
  job->done = done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!calls.empty() && started_ && !stopping_) {
      job->remaining = calls.size();
      for (auto& [index, call] : calls) queue_.push_back(Item{job, index, std::move(call)});
      cv_.notify_all();
      return;
    }
  }
  for (const auto& c : calls) {
    job->results[c.first].outcome = DeliveryOutcome::kRetryable;
    job->results[c.first].error = what_ + " stopped";
  }
  done->OnDelivered(job->results);
  delete job;
}

void CallPool::Stop() {
  std::deque<Item> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    left.swap(queue_);
    cv_.notify_all();
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  for (Item& item : left) {
    item.job->results[item.index].outcome = DeliveryOutcome::kRetryable;
    item.job->results[item.index].error = what_ + " stopped";
    Finish(item.job);
  }
}

double CallPool::AdjustLimit(const std::function<double(double)>& fn) {
  std::lock_guard<std::mutex> lock(mu_);
  const int before = static_cast<int>(limit_);
  limit_ = std::clamp(fn(limit_), 1.0, static_cast<double>(threads_max_));
  if (static_cast<int>(limit_) > before) cv_.notify_all();  // more calls may start
  return limit_;
}

double CallPool::limit() const {
  std::lock_guard<std::mutex> lock(mu_);
  return limit_;
}

void CallPool::Finish(Job* job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (--job->remaining != 0) return;
  }
  job->done->OnDelivered(job->results);
  delete job;
}

void CallPool::Run() {
  SetThreadName("dv-calls");
  for (;;) {
    Item item;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stopping_ || (!queue_.empty() && active_ < static_cast<int>(limit_));
      });
      if (stopping_) return;
      item = std::move(queue_.front());
      queue_.pop_front();
      ++active_;
      if (in_flight_gauge_ != nullptr) in_flight_gauge_->Set(active_);
    }
    DeliveryResult& r = item.job->results[item.index];
    try {
      r = item.call();
    } catch (const std::exception& e) {  // never out of the thread: the event is tried again
      r = DeliveryResult{};
      r.outcome = DeliveryOutcome::kRetryable;
      r.error = what_ + ": " + e.what();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      --active_;
      if (in_flight_gauge_ != nullptr) in_flight_gauge_->Set(active_);
    }
    cv_.notify_one();
    Finish(item.job);
  }
}

}  // namespace dvrouter
