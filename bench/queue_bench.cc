// Handoff of record handles between two threads: the journal's writer (producer) and a worker
// (consumer), through PartitionQueue, against a mutex-protected deque as the same-run baseline.
#include <benchmark/benchmark.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <thread>

#include "router/delivery/status_table.h"
#include "router/partition/partition_queue.h"

namespace dvrouter::bench {
namespace {

constexpr uint64_t kHandles = 1 << 20;

void BM_PartitionQueueHandoff(benchmark::State& state) {
  for (auto _ : state) {
    PartitionQueue queue(static_cast<size_t>(state.range(0)));
    std::thread consumer([&] {
      RecordHandle batch[256];
      uint64_t got = 0, sum = 0;
      while (got < kHandles) {
        const size_t n = queue.PopBatch(batch, 256);
        for (size_t i = 0; i < n; ++i) sum += batch[i].seq;
        got += n;
      }
      benchmark::DoNotOptimize(sum);
    });
    RecordHandle h;
    for (uint64_t s = 1; s <= kHandles; ++s) {
      h.seq = s;
      while (!queue.TryPush(h)) {
      }
    }
    consumer.join();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kHandles));
}
BENCHMARK(BM_PartitionQueueHandoff)
    ->Arg(1024)
    ->Arg(16384)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_MutexDequeHandoffBaseline(benchmark::State& state) {
  for (auto _ : state) {
    std::mutex mu;
    std::deque<RecordHandle> queue;
    std::thread consumer([&] {
      uint64_t got = 0, sum = 0;
      std::deque<RecordHandle> local;
      while (got < kHandles) {
        {
          std::lock_guard<std::mutex> lock(mu);
          local.swap(queue);
        }
        for (const auto& h : local) sum += h.seq;
        got += local.size();
        local.clear();
      }
      benchmark::DoNotOptimize(sum);
    });
    RecordHandle h;
    for (uint64_t s = 1; s <= kHandles; ++s) {
      h.seq = s;
      std::lock_guard<std::mutex> lock(mu);
      queue.push_back(h);
    }
    consumer.join();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kHandles));
}
BENCHMARK(BM_MutexDequeHandoffBaseline)->UseRealTime()->Unit(benchmark::kMillisecond);

// An event's status timeline at one adapter as the engine writes it on a clean delivery
// (pending, submitted, completed), into a fresh entry: what each event costs each adapter.
void BM_StatusTimeline(benchmark::State& state) {
  const std::string none;
  for (auto _ : state) {
    AdapterStatus s;
    s.Step(EventState::kPending, 1, 0, none, none);
    s.Step(EventState::kSubmitted, 2, 1, none, none);
    s.Step(EventState::kCompleted, 3, 1, none, none);
    benchmark::DoNotOptimize(s.steps.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_StatusTimeline);

}  // namespace
}  // namespace dvrouter::bench
