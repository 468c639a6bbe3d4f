// JobQueue: the queue between the delivery workers and an adapter's own threads (PostgreSQL,
// SQLite, ClickHouse). It owns the mutex, the deque of jobs, started / stopping, the threads
// that take jobs one at a time in order, and answering the jobs still queued at Stop. The
// adapter supplies what a thread does with a job (`run`) and how a job that will not run is
// answered (`fail`: every row retryable, then done).
//
// Threads: Push on the delivery workers; Start and Stop on the engine's thread; `run` on the
// queue's threads, each with its own `ThreadState` (a connection, say), made when the thread
// starts and destroyed when it ends. `fail` runs on whichever thread pushes or stops.
// A job needs `done` (DeliveryDone*) and `results`: done->OnDelivered(results) follows `run`.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "router/common/thread_name.h"

namespace dvrouter {

template <typename Job, typename ThreadState = std::monostate>
class JobQueue {
 public:
  using Run = std::function<void(ThreadState&, Job&)>;
  using Fail = std::function<void(Job&)>;

  explicit JobQueue(Fail fail) : fail_(std::move(fail)) {}
  ~JobQueue() { Stop(); }
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  bool started() const {
    std::lock_guard<std::mutex> lock(mu_);
    return started_;
  }
  bool stopping() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_;
  }

  // Starts `threads` threads named `name`; nothing if started before (even if stopped since).
  void Start(size_t threads, std::string name, Run run) {
    std::lock_guard<std::mutex> lock(mu_);
    if (started_) return;
    started_ = true;
    run_ = std::move(run);
    for (size_t i = 0; i < threads; ++i) {
      threads_.emplace_back([this, name] {
        SetThreadName(name.c_str());
        ThreadState state;
        while (std::unique_ptr<Job> job = Pop()) {
          run_(state, *job);
          job->done->OnDelivered(job->results);
        }
      });
    }
  }

  // Queues the job for a thread, or, not started or stopping, answers it with `fail` at once.
  void Push(std::unique_ptr<Job> job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!stopping_ && started_) {
        queue_.push_back(std::move(job));
        cv_.notify_one();
        return;
      }
    }
    fail_(*job);
  }

  // Takes no more jobs, answers the queued ones with `fail`, waits for the threads to finish
  // the jobs they hold.
  void Stop() {
    std::deque<std::unique_ptr<Job>> left;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      left.swap(queue_);
      cv_.notify_all();
    }
    for (auto& job : left) fail_(*job);
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
  }

 private:
  // The next job, or nullptr once stopping.
  std::unique_ptr<Job> Pop() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return nullptr;
    std::unique_ptr<Job> job = std::move(queue_.front());
    queue_.pop_front();
    return job;
  }

  const Fail fail_;
  Run run_;  // set by Start before any thread runs
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  bool stopping_ = false;
  bool started_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace dvrouter
