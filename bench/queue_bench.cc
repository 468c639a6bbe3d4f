// Handoff of record handles between two threads: the journal's writer (producer) and a worker
// (consumer), through PartitionQueue, against a mutex-protected deque as the same-run baseline.
#include <benchmark/benchmark.h>

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

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

// The status table as the delivery workers drive it at 15 000 events/s with three adapters:
// each event set pending at all of them (routing), submitted at each shortly after (kSubmitLag
// events later), and completed at each about a second after routing (kCompleteLag events later),
// through the slot routing kept. The table holds 100 000 events (delivery.status_entries'
// default) and is filled first, untimed: the timed events each reuse the oldest event's storage,
// and their completions find their entries cold, as in the router. Every step is without texts
// (the lake, SQL and ClickHouse adapters'; ERP and Dataverse answers add one allocation).
void BM_StatusTableFlow(benchmark::State& state) {
  constexpr size_t kAdapters = 3, kCapacity = 100'000, kEvents = 200'000;
  constexpr size_t kSubmitLag = 100, kCompleteLag = 15'000;
  std::vector<EventKey> keys(kCapacity + kEvents);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (EventKey& k : keys) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    k.hi = x;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    k.lo = x;
  }
  const std::string table = "msdyn_agentstatus", row = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
  const std::string message = "Update", none;
  std::vector<StatusTable::Slot> slots(keys.size());
  const auto step = [&](StatusTable& status, size_t i, size_t end) {
    const int64_t now = static_cast<int64_t>(i);
    if (i < end) {
      RecordHandle h;
      h.seq = i + 1;
      const EventSummaryView summary{table, row, message, now, false};
      slots[i] = status.UpdateEach(
          keys[i], i + 1, (1u << kAdapters) - 1,
          [&](AdapterStatus& s) { s.Step(EventState::kPending, now, 0, none, none); }, &h,
          &summary);
    }
    const auto advance = [&](size_t j, EventState to) {
      for (size_t a = 0; a < kAdapters; ++a) {
        status.Update(
            keys[j], j + 1, a, [&](AdapterStatus& s) { s.Step(to, now, 1, none, none); }, nullptr,
            slots[j]);
      }
    };
    if (i >= kSubmitLag && i - kSubmitLag < end) advance(i - kSubmitLag, EventState::kSubmitted);
    if (i >= kCompleteLag && i - kCompleteLag < end)
      advance(i - kCompleteLag, EventState::kCompleted);
  };
  for (auto _ : state) {
    state.PauseTiming();
    auto status = std::make_unique<StatusTable>(kCapacity, kAdapters);
    for (size_t i = 0; i < kCapacity; ++i) step(*status, i, keys.size());
    state.ResumeTiming();
    for (size_t i = kCapacity; i < keys.size(); ++i) step(*status, i, keys.size());
    state.PauseTiming();
    benchmark::DoNotOptimize(status->size());
    status.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kEvents));
}
BENCHMARK(BM_StatusTableFlow)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace dvrouter::bench
