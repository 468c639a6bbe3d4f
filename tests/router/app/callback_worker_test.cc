// CallbackWorker: jobs run in order on its own thread, a full queue refuses, Stop runs what was
// queued and refuses the rest.
#include "router/app/callback_worker.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

TEST(CallbackWorker, RunsJobsInOrderOffTheCallersThreadAndRefusesPastItsCapacity) {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  std::vector<int> ran;
  std::thread::id job_thread;
  auto release = [&] {
    {
      std::lock_guard<std::mutex> lock(mu);
      open = true;
    }
    cv.notify_all();
  };
  {
    CallbackWorker worker(2);
    struct ReleaseAtExit {  // gone before the worker: a failed assertion still ends the job
      std::function<void()> release;
      ~ReleaseAtExit() { release(); }
    } release_at_exit{release};
    // The first job holds the thread; two more fill the queue; the next is refused.
    ASSERT_TRUE(worker.TrySubmit([&] {
      std::unique_lock<std::mutex> lock(mu);
      job_thread = std::this_thread::get_id();
      cv.wait(lock, [&] { return open; });
      ran.push_back(0);
    }));
    ASSERT_TRUE(testing::WaitFor([&] {  // the first job has left the queue
      std::lock_guard<std::mutex> lock(mu);
      return job_thread != std::thread::id();
    }));
    for (int i = 1; i <= 2; ++i) {
      ASSERT_TRUE(worker.TrySubmit([&, i] {
        std::lock_guard<std::mutex> lock(mu);
        ran.push_back(i);
      }));
    }
    EXPECT_FALSE(worker.TrySubmit([&] { ran.push_back(99); }));
    release();
    worker.Stop();  // runs the queued jobs first
    EXPECT_FALSE(worker.TrySubmit([&] { ran.push_back(100); }));
  }
  EXPECT_EQ(ran, (std::vector<int>{0, 1, 2}));
  EXPECT_NE(job_thread, std::this_thread::get_id());
}

}  // namespace
}  // namespace dvrouter
