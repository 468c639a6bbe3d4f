// The delivery engine without sinks: events journaled first (FileJournal, unsafe_no_fsync, zstd
// as in production; the benchmark's thread compresses, as an I/O thread would), then delivered to
// three adapters that answer at once from a thread of their own, in bench/run.sh (c)'s shapes: a
// lake and a ClickHouse (pipelined) and a PostgreSQL (one batch in flight per record). Each reads
// its events' Target as the real adapters do, but encodes nothing. Reports the CPU per event of
// the delivery workers (dv-worker threads), of the journal writer and of the whole process, so the
// scheduler, the status table, the record cache and the conversion are measured apart from the
// sinks' clients (bench/README.md, "Issue 23, fifth round").
#include <benchmark/benchmark.h>
#include <dirent.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "adapters/adapter.h"
#include "bench/bench_util.h"
#include "router/decode/attributes.h"
#include "router/delivery/engine.h"
#include "router/delivery/lanes.h"
#include "router/journal/file_journal.h"
#include "router/partition/partition.h"

namespace dvrouter::bench {
namespace {

constexpr uint32_t kPartitions = 64;
constexpr int kRecords = 2000;  // distinct CRM rows, so per-record order has work to do

// Answers every batch as delivered from its own thread, after reading each event's Target.
class NullAdapter final : public Adapter {
 public:
  NullAdapter(std::string name, RecordOrdering ordering)
      : name_(std::move(name)), ordering_(ordering), thread_([this] { Run(); }) {}
  ~NullAdapter() override { Stop(); }
  std::string_view name() const override { return name_; }
  RecordOrdering record_ordering() const override { return ordering_; }
  void Deliver(std::span<const Delivery> batch, DeliveryDone* done) override {
    for (const Delivery& d : batch) {
      ChangeSet scratch;
      const ChangeSet* changes = nullptr;
      if (!ExtractChanges(d.body, d.changes, &scratch, &changes).ok()) failures_.fetch_add(1);
    }
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back({batch.size(), done});
    cv_.notify_one();
  }
  void Stop() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      cv_.notify_one();
    }
    thread_.join();
  }
  uint64_t delivered() const { return delivered_.load(); }
  uint64_t failures() const { return failures_.load(); }

 private:
  void Run() {
    std::vector<DeliveryResult> results;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      const auto [size, done] = jobs_.front();
      jobs_.pop_front();
      lock.unlock();
      results.assign(size, DeliveryResult{});
      done->OnDelivered(results);
      delivered_.fetch_add(size);
      lock.lock();
    }
  }
  const std::string name_;
  const RecordOrdering ordering_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<size_t, DeliveryDone*>> jobs_;
  bool stopping_ = false;
  std::atomic<uint64_t> delivered_{0}, failures_{0};
  std::thread thread_;  // last: starts once the rest exists
};

// Nanoseconds on a CPU of this process's threads named `name`, or whose name starts with it when
// `prefix` ("" for all), from /proc/self/task/<tid>/schedstat.
uint64_t ThreadsCpuNs(const std::string& name, bool prefix = true) {
  uint64_t total = 0;
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const std::string task = std::string("/proc/self/task/") + e->d_name;
    std::string comm;
    std::ifstream(task + "/comm") >> comm;
    if (prefix ? comm.compare(0, name.size(), name) != 0 : comm != name) continue;
    uint64_t ns = 0;
    std::ifstream(task + "/schedstat") >> ns;
    total += ns;
  }
  ::closedir(dir);
  return total;
}

// Each iteration journals `events` events (their delivery waits meanwhile: the adapters' first
// batches start as the journal commits), then waits until all three adapters have all of them.
void BM_EngineDelivers(benchmark::State& state) {
  const size_t events = static_cast<size_t>(state.range(0));
  const std::string bodies[] = {LoadFixture("update-msdyn_agentstatus-postop-async.json"),
                                LoadFixture("create-msdyn_agentstatus-postop-sync.json")};
  std::vector<EventHeader> headers(2 * kRecords);
  for (int r = 0; r < kRecords; ++r) {
    for (int m = 0; m < 2; ++m) {
      EventHeader& h = headers[static_cast<size_t>(2 * r + m)];
      h.message_name = m == 0 ? "Update" : "Create";
      h.primary_entity_name = "msdyn_agentstatus";
      char id[40];
      std::snprintf(id, sizeof(id), "4b1e3d75-a749-ef11-acce-%012d", r);
      h.primary_entity_id = id;
      h.owning_extension_id = "09097f27-6123-4c61-b463-af00adb2e082";
    }
  }
  const std::string dir = std::filesystem::temp_directory_path() / "dvrouter-bench-engine";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  NullAdapter lake("lake", RecordOrdering::kPipelined);
  NullAdapter clickhouse("ch", RecordOrdering::kPipelined);
  NullAdapter postgres("pg", RecordOrdering::kOneBatchInFlight);
  std::vector<EngineAdapter> adapters;
  RouteConfig all;
  all.name = "all";
  for (NullAdapter* a : {&lake, &clickhouse, &postgres}) {
    AdapterConfig c;
    c.name = std::string(a->name());
    c.type = "null";
    if (a == &lake) c.max_in_flight = 64;
    if (a == &clickhouse) c.linger_ms = 500;
    adapters.push_back(EngineAdapter{c, a});
    all.adapters.push_back(c.name);
  }
  EngineOptions eo;
  eo.routes = {all};
  eo.partitions = kPartitions;
  eo.state_dir = dir + "/delivery";
  DeliveryEngine engine(std::move(eo), std::move(adapters));
  FileJournalOptions jo;
  jo.dir = dir + "/journal";
  jo.partitions = kPartitions;
  jo.compression = Codec::kZstd;
  jo.fsync = false;
  jo.listener = &engine;
  auto journal = FileJournal::Open(jo);
  const Status started = journal.ok() ? engine.Start(journal->get()) : journal.status();
  if (!started.ok()) {
    state.SkipWithError(("engine did not start: " + started.ToString()).c_str());
    return;
  }
  std::vector<AppendRequest> requests(events);
  uint64_t n = 0, target = 0;
  double worker_ns = 0, journal_ns = 0, process_ns = 0;
  for (auto _ : state) {
    const uint64_t workers_before = ThreadsCpuNs("dv-worker");
    const uint64_t journal_before = ThreadsCpuNs("dv-journal", false);
    const uint64_t process_before = ThreadsCpuNs("");
    AppendWaiter waiter;
    waiter.remaining = events;
    for (AppendRequest& r : requests) {
      const uint64_t i = n++;
      r = AppendRequest{};
      r.key = EventKey{0xe7, i};
      r.header = &headers[i % headers.size()];
      r.body = bodies[i % 2];
      r.partition =
          PartitionOf(r.header->primary_entity_name, r.header->primary_entity_id, kPartitions);
      r.received_ms = 0;
      r.callback = &waiter;
      (*journal)->Append(&r);
    }
    if (!waiter.Wait()) {
      state.SkipWithError("appends failed");
      break;
    }
    target += events;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (lake.delivered() < target || clickhouse.delivered() < target ||
           postgres.delivered() < target) {
      if (std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // benchmark only: no test
    }
    if (lake.delivered() < target || clickhouse.delivered() < target ||
        postgres.delivered() < target) {
      state.SkipWithError("not every event was delivered within 60 s");
      break;
    }
    worker_ns += static_cast<double>(ThreadsCpuNs("dv-worker") - workers_before);
    journal_ns += static_cast<double>(ThreadsCpuNs("dv-journal", false) - journal_before);
    process_ns += static_cast<double>(ThreadsCpuNs("") - process_before);
  }
  (*journal)->Stop();
  engine.Stop();
  if (lake.failures() + clickhouse.failures() + postgres.failures() != 0) {
    state.SkipWithError("an event did not convert");
  }
  if (process_ns == 0) state.SkipWithError("no /proc/self/task/*/schedstat to read");
  const double total = static_cast<double>(state.iterations() * events);
  state.counters["worker_us_per_event"] = worker_ns / total / 1000;
  state.counters["journal_us_per_event"] = journal_ns / total / 1000;
  state.counters["process_us_per_event"] = process_ns / total / 1000;
  state.SetItemsProcessed(static_cast<int64_t>(total));
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_EngineDelivers)
    ->Arg(30000)
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// A lane's waiting events as a stream of events sees them: each routed event is marked
// waiting, every `batch` events a gather walks the waiting ones in seq order (each looked up in
// the window), takes them and unmarks them, and the finished ones leave the window's front.
// kBitmap=false: the seqs in a std::set, each found in the window by WindowCursor (the baseline,
// the scheduler before WaitingSet); true: WaitingSet's positions. range(0): events per batch.
template <bool kBitmap>
void BM_LaneWaitingFlow(benchmark::State& state) {
  const size_t batch = static_cast<size_t>(state.range(0));
  constexpr size_t kEvents = 100000;
  std::vector<delivery::Entry*> picked;
  std::vector<size_t> at;
  std::atomic<uint64_t> published{0};
  for (auto _ : state) {
    delivery::Lane lane;
    lane.published = &published;
    std::set<uint64_t> seqs;
    uint64_t sum = 0;
    for (size_t i = 0; i < kEvents; ++i) {
      const uint64_t seq = 1 + 3 * i;
      lane.window.emplace_back().seq = seq;
      if constexpr (kBitmap) {
        delivery::MarkWaiting(lane, lane.window.size() - 1);
      } else {
        seqs.emplace_hint(seqs.end(), seq);
      }
      if ((i + 1) % batch != 0) continue;
      picked.clear();
      if constexpr (kBitmap) {
        at.clear();
        lane.waiting.ForEach([&](uint64_t pos) {
          at.push_back(static_cast<size_t>(pos - lane.popped));
          return true;
        });
        for (size_t k : at) {
          picked.push_back(&lane.window[k]);
          delivery::UnmarkWaiting(lane, k);
        }
      } else {
        delivery::WindowCursor cursor;
        for (uint64_t s : seqs) picked.push_back(&lane.window[cursor.Find(lane, s)]);
        for (delivery::Entry* e : picked) seqs.erase(e->seq);
      }
      for (delivery::Entry* e : picked) {
        sum += e->seq;
        e->state = delivery::EntryState::kDone;
      }
      delivery::Finish(lane);
    }
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kEvents));
}
BENCHMARK(BM_LaneWaitingFlow<false>)->Arg(50)->Arg(500)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LaneWaitingFlow<true>)->Arg(50)->Arg(500)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace dvrouter::bench
