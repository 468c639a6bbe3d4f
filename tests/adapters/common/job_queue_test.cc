// The adapters' job queue: jobs run in order on the queue's threads and are then answered; a job
// that cannot run (not started, stopping, still queued at Stop) is answered by `fail` instead;
// each thread has its own state.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "adapters/common/job_queue.h"
#include "tests/support/delivery_done.h"

namespace dvrouter {
namespace {

using ::dvrouter::testing::Done;

struct TestJob {
  int id = 0;
  std::vector<DeliveryResult> results = std::vector<DeliveryResult>(1);
  DeliveryDone* done = nullptr;
};

std::unique_ptr<TestJob> MakeJob(int id, Done* done) {
  auto job = std::make_unique<TestJob>();
  job->id = id;
  job->done = done;
  return job;
}

void FailJob(TestJob& job) {
  job.results[0].outcome = DeliveryOutcome::kRetryable;
  job.results[0].error = "stopped";
  job.done->OnDelivered(job.results);
}

TEST(JobQueue, AJobPushedBeforeStartIsFailedAtOnce) {
  JobQueue<TestJob> queue(&FailJob);
  EXPECT_FALSE(queue.started());
  Done done;
  queue.Push(MakeJob(1, &done));
  ASSERT_TRUE(done.called());
  const std::vector<DeliveryResult> r = done.Wait();
  EXPECT_EQ(r[0].outcome, DeliveryOutcome::kRetryable);
  EXPECT_EQ(r[0].error, "stopped");
}

TEST(JobQueue, OneThreadRunsJobsInOrderAndAnswersEachAfterRunning) {
  JobQueue<TestJob> queue(&FailJob);
  std::mutex mu;
  std::vector<int> ran;
  queue.Start(1, "dv-test", [&](std::monostate&, TestJob& job) {
    std::lock_guard<std::mutex> lock(mu);
    ran.push_back(job.id);
    job.results[0].error = "ran " + std::to_string(job.id);
  });
  EXPECT_TRUE(queue.started());
  std::vector<std::unique_ptr<Done>> dones;
  for (int i = 0; i < 50; ++i) {
    dones.push_back(std::make_unique<Done>());
    queue.Push(MakeJob(i, dones.back().get()));
  }
  for (int i = 0; i < 50; ++i) {
    const std::vector<DeliveryResult> r = dones[static_cast<size_t>(i)]->Wait();
    EXPECT_EQ(r[0].outcome, DeliveryOutcome::kDelivered);
    EXPECT_EQ(r[0].error, "ran " + std::to_string(i));
  }
  queue.Stop();
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(ran.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(ran[static_cast<size_t>(i)], i);
}

TEST(JobQueue, StopFailsQueuedJobsWaitsForTheRunningOneAndRefusesLaterOnes) {
  JobQueue<TestJob> queue(&FailJob);
  std::mutex mu;
  std::condition_variable cv;
  bool running = false, release = false;
  queue.Start(1, "dv-test", [&](std::monostate&, TestJob&) {
    std::unique_lock<std::mutex> lock(mu);
    running = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  });
  Done first, queued;
  queue.Push(MakeJob(1, &first));
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return running; });
  }
  queue.Push(MakeJob(2, &queued));
  std::thread stopper([&] { queue.Stop(); });
  const std::vector<DeliveryResult> q = queued.Wait();  // failed by Stop, not run
  EXPECT_EQ(q[0].outcome, DeliveryOutcome::kRetryable);
  EXPECT_FALSE(first.called());
  EXPECT_TRUE(queue.stopping());
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
    cv.notify_all();
  }
  stopper.join();  // returns only after the running job finished and was answered
  ASSERT_TRUE(first.called());
  EXPECT_EQ(first.Wait()[0].outcome, DeliveryOutcome::kDelivered);
  Done late;
  queue.Push(MakeJob(3, &late));
  ASSERT_TRUE(late.called());
  EXPECT_EQ(late.Wait()[0].error, "stopped");
}

// Per-thread state: made once per thread, kept across that thread's jobs, destroyed when the
// thread ends.
struct Counter {
  static inline std::atomic<int> live{0};
  int jobs = 0;
  Counter() { ++live; }
  ~Counter() { --live; }
};

TEST(JobQueue, EachThreadKeepsItsOwnStateUntilStop) {
  JobQueue<TestJob, Counter> queue(&FailJob);
  std::mutex mu;
  std::set<const Counter*> states;
  int most = 0;
  queue.Start(3, "dv-test", [&](Counter& c, TestJob&) {
    ++c.jobs;
    std::lock_guard<std::mutex> lock(mu);
    states.insert(&c);
    most = std::max(most, c.jobs);
  });
  std::vector<std::unique_ptr<Done>> dones;
  for (int i = 0; i < 30; ++i) {
    dones.push_back(std::make_unique<Done>());
    queue.Push(MakeJob(i, dones.back().get()));
  }
  for (auto& d : dones) d->Wait();
  EXPECT_LE(Counter::live.load(), 3);
  queue.Stop();
  EXPECT_EQ(Counter::live.load(), 0);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_GE(states.size(), 1u);
  EXPECT_LE(states.size(), 3u);
  EXPECT_GE(most, 10);  // 30 jobs over at most 3 states
}

}  // namespace
}  // namespace dvrouter
