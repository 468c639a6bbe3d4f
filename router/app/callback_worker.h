// CallbackWorker: runs sinks' callbacks (authenticating the body, confirming the event: a status
// table lookup, a journal read, a DLQ write and its fdatasync) on a thread of its own, so the
// ingress I/O thread that read a callback goes on serving webhooks meanwhile. A bounded queue
// (a full one refuses the job: the caller answers 503) and one thread, dv-callbacks, which runs
// the jobs in order. Submit from any thread (the ingress I/O threads); Stop from the owner's.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace dvrouter {

class CallbackWorker {
 public:
  explicit CallbackWorker(size_t capacity);
  ~CallbackWorker();  // Stop()
  CallbackWorker(const CallbackWorker&) = delete;
  CallbackWorker& operator=(const CallbackWorker&) = delete;

  // Queues `job`; false (and `job` not run) when `capacity` jobs wait already or once stopping.
  bool TrySubmit(std::function<void()> job);
  // Runs the jobs queued so far, refuses new ones, and joins the thread.
  void Stop();

 private:
  void Run();

  const size_t capacity_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace dvrouter
