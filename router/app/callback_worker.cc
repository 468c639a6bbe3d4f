#include "router/app/callback_worker.h"

#include <utility>

#include "router/common/thread_name.h"

namespace dvrouter {

CallbackWorker::CallbackWorker(size_t capacity) : capacity_(capacity) {
  thread_ = std::thread([this] { Run(); });
}

CallbackWorker::~CallbackWorker() { Stop(); }

bool CallbackWorker::TrySubmit(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || jobs_.size() >= capacity_) return false;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

void CallbackWorker::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void CallbackWorker::Run() {
  SetThreadName("dv-callbacks");
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, and every queued job has run
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

}  // namespace dvrouter
